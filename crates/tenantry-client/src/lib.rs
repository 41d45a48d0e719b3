//! A small HTTP client for Tenantry's API, used by the CLI and the black-box tests. Errors come
//! back as [`ClientError::Api`] carrying the server's stable code, so callers match on codes,
//! never on words.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Everything but unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String, request_id: String },
    #[error("cannot reach the server at {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Percent-encodes a file path segment by segment, keeping its slashes.
pub fn encode_path(path: &str) -> String {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    trimmed.split('/').map(|s| utf8_percent_encode(s, SEGMENT).to_string()).collect::<Vec<_>>().join("/")
}

pub fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    tenant: Option<String>,
    /// Times a request answered 429 is sent again after its `Retry-After` (0: never).
    rate_limit_retries: u32,
    /// No note on standard error when waiting out a 429.
    quiet_retries: bool,
}

/// The longest `Retry-After` a retrying client waits out; a longer one is answered as it is.
pub const MAX_RETRY_WAIT_SECS: u64 = 30;

/// A raw answer: status, headers and body bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl RawResponse {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub fn new(base: &str, key: Option<String>) -> Client {
        let http = reqwest::Client::builder().build().unwrap_or_default();
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            tenant: None,
            rate_limit_retries: 0,
            quiet_retries: false,
        }
    }

    /// Sends a request refused with 429 again after its `Retry-After` (at most
    /// [`MAX_RETRY_WAIT_SECS`]), up to `times` times: what a person at a terminal wants, not a
    /// test of the limit.
    pub fn retrying_when_rate_limited(mut self, times: u32) -> Client {
        self.rate_limit_retries = times;
        self
    }

    /// Waits out 429s without the note on standard error (for output that must stay one
    /// document).
    pub fn quietly(mut self) -> Client {
        self.quiet_retries = true;
        self
    }

    /// Names a tenant on every request (`X-Tenant-ID`): the operator key acts on it; a tenant key
    /// is refused with `tenant_mismatch` if it is not its own.
    pub fn with_tenant(mut self, tenant: Option<String>) -> Client {
        self.tenant = tenant;
        self
    }

    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; `extra` headers are added. Any status is returned as is (a 429 after
    /// the retries [`retrying_when_rate_limited`](Self::retrying_when_rate_limited) allows).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse> {
        if self.rate_limit_retries == 0 {
            return self.send_once(method, path, body, extra).await;
        }
        let mut retries = self.rate_limit_retries;
        loop {
            let res = self.send_once(method.clone(), path, body.clone(), extra).await?;
            let wait = res.header("retry-after").and_then(|s| s.parse::<u64>().ok());
            match wait {
                Some(secs)
                    if res.status == StatusCode::TOO_MANY_REQUESTS && retries > 0 && secs <= MAX_RETRY_WAIT_SECS =>
                {
                    if !self.quiet_retries {
                        eprintln!("rate limited: retrying in {secs} s");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                    retries -= 1;
                }
                _ => return Ok(res),
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(k) = &self.key {
            req = req.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        if let Some(t) = &self.tenant {
            req = req.header("x-tenant-id", t);
        }
        for (name, value) in extra {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                req = req.header(n, v);
            }
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res =
            req.send().await.map_err(|e| ClientError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        let status = res.status();
        let headers = res.headers().clone();
        let body =
            res.bytes().await.map_err(|e| ClientError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        Ok(RawResponse { status, headers, body })
    }

    /// Like [`send`](Self::send), but a non-2xx status becomes [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse> {
        let res = self.send(method, path, body, extra).await?;
        if res.status.is_success() || res.status == StatusCode::NOT_MODIFIED {
            return Ok(res);
        }
        let v: Value = serde_json::from_slice(&res.body).unwrap_or(Value::Null);
        let e = &v["error"];
        Err(ClientError::Api {
            status: res.status.as_u16(),
            code: e["code"].as_str().unwrap_or("unknown").to_owned(),
            message: e["message"].as_str().unwrap_or("no error body").to_owned(),
            request_id: e["request_id"].as_str().unwrap_or("").to_owned(),
        })
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let extra: &[(&str, &str)] = if bytes.is_some() { &[(CONTENT_TYPE.as_str(), "application/json")] } else { &[] };
        let res = self.call(method, path, bytes, extra).await?;
        if res.body.is_empty() {
            return Ok(Value::Null);
        }
        res.json()
    }

    // ---- typed helpers over the contract ----

    pub async fn create_tenant(&self, body: &Value) -> Result<Value> {
        self.json(Method::POST, "/v1/tenants", Some(body)).await
    }
    pub async fn list_tenants(&self, query: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/tenants{query}"), None).await
    }
    pub async fn show_tenant(&self, slug: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/tenants/{}", encode_query(slug)), None).await
    }
    pub async fn update_tenant(&self, slug: &str, patch: &Value) -> Result<Value> {
        self.json(Method::PATCH, &format!("/v1/tenants/{}", encode_query(slug)), Some(patch)).await
    }
    /// `action`: suspend, resume or restore.
    pub async fn tenant_action(&self, slug: &str, action: &str) -> Result<Value> {
        self.json(Method::POST, &format!("/v1/tenants/{}/{action}", encode_query(slug)), None).await
    }
    /// `POST /v1/tenants/{slug}/move`: answers when the move is done, with its report.
    pub async fn move_tenant(&self, slug: &str, placement: &str) -> Result<Value> {
        let body = serde_json::json!({ "placement": placement });
        self.json(Method::POST, &format!("/v1/tenants/{}/move", encode_query(slug)), Some(&body)).await
    }
    /// `GET /v1/tenants/{slug}/move`: placement, and a move's progress while one runs.
    pub async fn move_status(&self, slug: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/tenants/{}/move", encode_query(slug)), None).await
    }
    pub async fn archive_tenant(&self, slug: &str) -> Result<Value> {
        self.json(Method::DELETE, &format!("/v1/tenants/{}", encode_query(slug)), None).await
    }
    pub async fn purge_tenant(&self, slug: &str) -> Result<()> {
        self.json(Method::DELETE, &format!("/v1/tenants/{}?purge=true", encode_query(slug)), None).await.map(|_| ())
    }
    pub async fn whoami(&self) -> Result<Value> {
        self.json(Method::GET, "/v1/whoami", None).await
    }
    pub async fn create_key(&self, body: &Value) -> Result<Value> {
        self.json(Method::POST, "/v1/keys", Some(body)).await
    }
    pub async fn list_keys(&self) -> Result<Value> {
        self.json(Method::GET, "/v1/keys", None).await
    }
    pub async fn revoke_key(&self, id: &str) -> Result<()> {
        self.json(Method::DELETE, &format!("/v1/keys/{}", encode_query(id)), None).await.map(|_| ())
    }
    pub async fn create_user(&self, body: &Value) -> Result<Value> {
        self.json(Method::POST, "/v1/users", Some(body)).await
    }
    /// A page of users after `cursor`.
    pub async fn list_users(&self, cursor: Option<&str>) -> Result<Value> {
        let after = cursor.map(|c| format!("&cursor={}", encode_query(c))).unwrap_or_default();
        self.json(Method::GET, &format!("/v1/users?limit=1000{after}"), None).await
    }
    pub async fn get_user(&self, id: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/users/{}", encode_query(id)), None).await
    }
    pub async fn update_user(&self, id: &str, patch: &Value) -> Result<Value> {
        self.json(Method::PATCH, &format!("/v1/users/{}", encode_query(id)), Some(patch)).await
    }
    pub async fn add_member(&self, body: &Value) -> Result<Value> {
        self.json(Method::POST, "/v1/members", Some(body)).await
    }
    pub async fn list_members(&self) -> Result<Value> {
        self.json(Method::GET, "/v1/members", None).await
    }
    pub async fn set_member_role(&self, user_id: &str, role: &str) -> Result<Value> {
        let body = serde_json::json!({ "role": role });
        self.json(Method::PATCH, &format!("/v1/members/{}", encode_query(user_id)), Some(&body)).await
    }
    pub async fn remove_member(&self, user_id: &str) -> Result<()> {
        self.json(Method::DELETE, &format!("/v1/members/{}", encode_query(user_id)), None).await.map(|_| ())
    }
    pub async fn withdraw_invitation(&self, id: &str) -> Result<()> {
        self.json(Method::DELETE, &format!("/v1/invitations/{}", encode_query(id)), None).await.map(|_| ())
    }
    pub async fn put_file(&self, path: &str, content: Vec<u8>, content_type: Option<&str>) -> Result<Value> {
        let extra: Vec<(&str, &str)> = content_type.map(|c| vec![("content-type", c)]).unwrap_or_default();
        self.call(Method::PUT, &format!("/v1/files/{}", encode_path(path)), Some(content), &extra).await?.json()
    }
    pub async fn get_file(&self, path: &str) -> Result<bytes::Bytes> {
        Ok(self.call(Method::GET, &format!("/v1/files/{}", encode_path(path)), None, &[]).await?.body)
    }
    pub async fn delete_file(&self, path: &str) -> Result<()> {
        self.call(Method::DELETE, &format!("/v1/files/{}", encode_path(path)), None, &[]).await.map(|_| ())
    }
    /// One page of a listing; `cursor` from the previous page's `next_cursor`.
    pub async fn list_files(&self, prefix: &str, recursive: bool, cursor: Option<&str>) -> Result<Value> {
        let mut q = format!("/v1/files?prefix={}&recursive={recursive}", encode_query(prefix));
        if let Some(c) = cursor {
            q.push_str(&format!("&cursor={}", encode_query(c)));
        }
        self.json(Method::GET, &q, None).await
    }
    /// One page of a folder's listing (`delimiter=/`): its files and the folders under it.
    pub async fn list_folder(&self, prefix: &str, cursor: Option<&str>) -> Result<Value> {
        let mut q = format!("/v1/files?prefix={}&delimiter=%2F", encode_query(prefix));
        if let Some(c) = cursor {
            q.push_str(&format!("&cursor={}", encode_query(c)));
        }
        self.json(Method::GET, &q, None).await
    }
    /// `GET /v1/tenants/{slug}/usage` with a query string (`?from=..&to=..&granularity=..`).
    pub async fn tenant_usage(&self, slug: &str, query: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/tenants/{}/usage{query}", encode_query(slug)), None).await
    }
    /// The CSV billing export of a tenant's usage.
    pub async fn tenant_usage_csv(&self, slug: &str, query: &str) -> Result<bytes::Bytes> {
        let sep = if query.is_empty() { "?" } else { "&" };
        let path = format!("/v1/tenants/{}/usage{query}{sep}format=csv", encode_query(slug));
        Ok(self.call(Method::GET, &path, None, &[]).await?.body)
    }
    pub async fn audit(&self, query: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/audit{query}"), None).await
    }
    pub async fn verify_audit(&self) -> Result<Value> {
        self.json(Method::GET, "/v1/audit/verify", None).await
    }
    // ---- the data plane (API.md §7) ----

    fn memory_path(namespace: &str, key: &str) -> String {
        format!("/v1/memory/{}/{}", encode_query(namespace), encode_path(key))
    }
    /// Sets a memory value; `ttl_seconds` makes it expire.
    pub async fn set_memory(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl_seconds: Option<u64>,
    ) -> Result<Value> {
        let mut path = Self::memory_path(namespace, key);
        if let Some(t) = ttl_seconds {
            path.push_str(&format!("?ttl_seconds={t}"));
        }
        self.json(Method::PUT, &path, Some(value)).await
    }
    pub async fn get_memory(&self, namespace: &str, key: &str) -> Result<Value> {
        self.json(Method::GET, &Self::memory_path(namespace, key), None).await
    }
    pub async fn delete_memory(&self, namespace: &str, key: &str) -> Result<()> {
        self.json(Method::DELETE, &Self::memory_path(namespace, key), None).await.map(|_| ())
    }
    /// One page of a namespace; `query` is appended as is (`?prefix=..&cursor=..`).
    pub async fn list_memory(&self, namespace: &str, query: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/memory/{}{query}", encode_query(namespace)), None).await
    }
    /// `GET /v1/search?q=..` plus extra query (`&prefix=..&limit=..`).
    pub async fn search(&self, q: &str, extra: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/search?q={}{extra}", encode_query(q)), None).await
    }
    pub async fn events(&self, after: u64, limit: Option<usize>) -> Result<Value> {
        let limit = limit.map(|l| format!("&limit={l}")).unwrap_or_default();
        self.json(Method::GET, &format!("/v1/events?after={after}{limit}"), None).await
    }
    /// Opens the live event stream (SSE) after `after`; read it with [`EventStream::next`].
    pub async fn event_stream(&self, after: Option<u64>) -> Result<EventStream> {
        let mut req = self.http.get(format!("{}/v1/events", self.base)).header("accept", "text/event-stream");
        if let Some(k) = &self.key {
            req = req.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        if let Some(t) = &self.tenant {
            req = req.header("x-tenant-id", t);
        }
        if let Some(a) = after {
            req = req.header("last-event-id", a.to_string());
        }
        let res =
            req.send().await.map_err(|e| ClientError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        if !res.status().is_success() {
            return Err(api_error(res).await);
        }
        Ok(EventStream { res, buf: String::new() })
    }
    /// Streams `GET path` into `out`, calling `progress` with the bytes received so far; non-2xx
    /// answers become [`ClientError::Api`]. Returns the number of bytes written.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        let transport = |e: reqwest::Error| ClientError::Transport { url: self.base.clone(), reason: e.to_string() };
        let mut res = req.send().await.map_err(transport)?;
        if !res.status().is_success() {
            return Err(api_error(res).await);
        }
        let mut n = 0u64;
        while let Some(chunk) = res.chunk().await.map_err(transport)? {
            out.write_all(&chunk)
                .map_err(|e| ClientError::Transport { url: self.base.clone(), reason: format!("writing: {e}") })?;
            n += chunk.len() as u64;
            progress(n);
        }
        Ok(n)
    }

    /// POSTs the bytes of `input` as a stream (a bundle to import): read on a blocking thread in
    /// 256 KiB chunks, so memory stays flat whatever the size; `progress` hears the bytes read
    /// so far. The answer's JSON, or the API error.
    pub async fn upload(
        &self,
        path: &str,
        input: Box<dyn std::io::Read + Send>,
        progress: std::sync::Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Value> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        std::thread::spawn(move || {
            let mut input = input;
            let mut sent = 0u64;
            loop {
                let mut buf = vec![0u8; 256 << 10];
                match std::io::Read::read(&mut input, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        sent += n as u64;
                        if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                            break; // the request ended (the server answered early)
                        }
                        progress(sent);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        break;
                    }
                }
            }
        });
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/vnd.tenantry.bundle")
            .body(reqwest::Body::wrap(ChannelBody { rx }));
        if let Some(k) = &self.key {
            req = req.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        let res =
            req.send().await.map_err(|e| ClientError::Transport { url: self.base.clone(), reason: e.to_string() })?;
        if !res.status().is_success() {
            return Err(api_error(res).await);
        }
        res.json().await.map_err(|e| ClientError::Transport { url: self.base.clone(), reason: e.to_string() })
    }

    pub async fn create_webhook(&self, body: &Value) -> Result<Value> {
        self.json(Method::POST, "/v1/webhooks", Some(body)).await
    }
    pub async fn list_webhooks(&self) -> Result<Value> {
        self.json(Method::GET, "/v1/webhooks", None).await
    }
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        self.json(Method::DELETE, &format!("/v1/webhooks/{}", encode_query(id)), None).await.map(|_| ())
    }
    pub async fn webhook_deliveries(&self, id: &str) -> Result<Value> {
        self.json(Method::GET, &format!("/v1/webhooks/{}/deliveries", encode_query(id)), None).await
    }
}

/// The error a non-2xx answer carries, in the shape of API.md §2.
async fn api_error(res: reqwest::Response) -> ClientError {
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    let e = &v["error"];
    ClientError::Api {
        status,
        code: e["code"].as_str().unwrap_or("unknown").to_owned(),
        message: e["message"].as_str().unwrap_or("no error body").to_owned(),
        request_id: e["request_id"].as_str().unwrap_or("").to_owned(),
    }
}

/// A live event stream: each [`next`](Self::next) returns the next event's JSON (comments and
/// keep-alives skipped), or `None` when the server ends the stream.
pub struct EventStream {
    res: reqwest::Response,
    buf: String,
}

impl EventStream {
    pub async fn next(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                if data.is_empty() {
                    continue;
                }
                return serde_json::from_str(&data.join("\n"))
                    .map(Some)
                    .map_err(|e| ClientError::Transport { url: String::new(), reason: format!("bad event: {e}") });
            }
            match self.res.chunk().await {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return Ok(None),
                Err(e) => return Err(ClientError::Transport { url: String::new(), reason: e.to_string() }),
            }
        }
    }
}

/// A request body fed from a channel (see [`Client::upload`]).
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
}

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|c| c.map(http_body::Frame::data)))
    }
}
