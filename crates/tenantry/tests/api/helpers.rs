//! `spawn_app()`: the real server on port 0 over a fresh temp data dir, and typed helpers.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use tenantry::config::{Overrides, ServeConfig};
use tenantry::server::{start, Running};
use tenantry_client::{Client, RawResponse};

pub struct TestApp {
    pub url: String,
    pub admin_key: String,
    pub data: PathBuf,
    running: Option<Running>,
    _dir: Option<tempfile::TempDir>,
    _database: Option<tenantry_store_postgres::testing::TestDatabase>,
    cfg: ServeConfig,
}

/// Whether this run serves from PostgreSQL (`TENANTRY_TEST_BACKEND=postgres`, on the test
/// cluster of scripts/pg-cluster.sh) instead of the embedded store.
pub fn on_postgres() -> bool {
    std::env::var("TENANTRY_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// True (after saying so) when this run is on PostgreSQL and the test is about the embedded
/// store itself (its files, its dedicated databases, its moves): the test then returns at once.
pub fn sqlite_only(why: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: {why}");
    }
    on_postgres()
}

/// A migrated database of its own on the test cluster, for a server of this run on PostgreSQL.
async fn postgres_for(cfg: &mut ServeConfig) -> Option<tenantry_store_postgres::testing::TestDatabase> {
    if !on_postgres() {
        return None;
    }
    let db = tenantry_store_postgres::testing::TestDatabase::create()
        .await
        .expect("TENANTRY_TEST_BACKEND=postgres needs the test cluster (TENANTRY_TEST_POSTGRES)");
    let mut owner = db.connect_as(&db.owner_role).await;
    tenantry_store_postgres::schema::migrate(&mut owner, &db.app_role).await.unwrap();
    cfg.database_url = Some(db.app_url());
    cfg.database_owner_url = Some(db.owner_url());
    Some(db)
}

pub fn config_in(data: PathBuf) -> ServeConfig {
    let mut cfg =
        ServeConfig::load(Overrides { listen: Some("127.0.0.1:0".into()), data: Some(data), ..Default::default() })
            .unwrap();
    cfg.base_domain = Some("tenantry.test".into());
    cfg
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts with a configuration tweaked by `f`.
pub async fn spawn_with(f: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config_in(dir.path().join("data"));
    f(&mut cfg);
    let database = postgres_for(&mut cfg).await;
    let running = start(cfg.clone()).await.unwrap();
    TestApp {
        url: format!("http://{}", running.addr),
        admin_key: running.admin_key.clone(),
        data: cfg.data.clone(),
        running: Some(running),
        _dir: Some(dir),
        _database: database,
        cfg,
    }
}

pub struct Tenant {
    #[allow(dead_code)]
    pub slug: String,
    pub id: String,
    pub owner: String,
}

impl TestApp {
    /// The test cluster's database this server runs on (on PostgreSQL).
    pub fn database(&self) -> Option<&tenantry_store_postgres::testing::TestDatabase> {
        self._database.as_ref()
    }

    pub fn operator(&self) -> Client {
        Client::new(&self.url, Some(self.admin_key.clone()))
    }

    pub fn as_key(&self, key: &str) -> Client {
        Client::new(&self.url, Some(key.to_owned()))
    }

    /// Sends `METHOD path` exactly as written (no URL normalisation, unlike reqwest), for dot
    /// segments and other tricks; returns the status and the body.
    pub async fn raw_request(&self, method: &str, path: &str, key: &str, body: &[u8]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// An `enterprise` tenant (no limits), so tests of other things are not bounded by quotas.
    pub async fn create_tenant(&self, slug: &str) -> Tenant {
        self.create_tenant_with(json!({ "slug": slug, "tier": "enterprise" })).await
    }

    pub async fn create_tenant_with(&self, body: serde_json::Value) -> Tenant {
        let slug = body["slug"].as_str().unwrap().to_owned();
        let t = self.operator().create_tenant(&body).await.unwrap();
        Tenant { slug, id: t["id"].as_str().unwrap().into(), owner: t["owner_key"].as_str().unwrap().into() }
    }

    /// Mints a key in `tenant` with `role` and optional prefix; returns (id, secret).
    pub async fn key(&self, tenant: &Tenant, role: &str, prefix: Option<&str>) -> (String, String) {
        let mut body = json!({ "name": format!("{role}-key"), "role": role });
        if let Some(p) = prefix {
            body["prefix"] = json!(p);
        }
        let k = self.as_key(&tenant.owner).create_key(&body).await.unwrap();
        (k["id"].as_str().unwrap().into(), k["key"].as_str().unwrap().into())
    }

    pub async fn raw(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> RawResponse {
        let c = Client::new(&self.url, key.map(str::to_owned));
        c.send(method, path, body.map(|b| b.to_vec()), headers).await.unwrap()
    }

    /// Changes the configuration the next [`restart`](Self::restart) uses.
    pub fn set_config(&mut self, f: impl FnOnce(&mut ServeConfig)) {
        f(&mut self.cfg);
    }

    /// Stops the server cleanly and starts it again on the same data dir.
    /// A second server on the same storage (on PostgreSQL: one more node on the same database),
    /// and its address.
    pub async fn another_node(&self) -> (Running, String) {
        let mut cfg = self.cfg.clone();
        cfg.admin_key = Some(self.admin_key.clone());
        let running = start(cfg).await.unwrap();
        let url = format!("http://{}", running.addr);
        (running, url)
    }

    pub async fn restart(&mut self) {
        self.running.take().unwrap().stop().await.unwrap();
        let mut cfg = self.cfg.clone();
        cfg.admin_key = Some(self.admin_key.clone());
        let running = start(cfg).await.unwrap();
        self.url = format!("http://{}", running.addr);
        self.running = Some(running);
    }
}

/// The error code of a raw answer.
pub fn code(res: &RawResponse) -> String {
    res.json().ok().and_then(|v| v["error"]["code"].as_str().map(str::to_owned)).unwrap_or_default()
}

pub fn assert_error(res: &RawResponse, status: u16, expected_code: &str) {
    assert_eq!(res.status, StatusCode::from_u16(status).unwrap(), "body: {}", String::from_utf8_lossy(&res.body));
    let v: Value = res.json().unwrap();
    assert_eq!(v["error"]["code"], expected_code, "body: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(v["error"]["request_id"].as_str(), res.header("x-request-id"));
}

/// A webhook receiver on a local port: records every request and answers with the status set
/// in `status` (200 unless changed).
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (g, st) = (got.clone(), status.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let (g, st) = (g.clone(), st.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = buf[head_end..(head_end + len).min(buf.len())].to_vec();
                    g.lock().unwrap().push(Received { headers, body });
                    let code = st.load(std::sync::atomic::Ordering::SeqCst);
                    let res = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = s.write_all(res.as_bytes()).await;
                });
            }
        });
        Receiver { url, got, status }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Polls `check` every 50 ms for up to `secs` seconds; panics with `what` if it never holds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Starts a file upload over a raw connection: the head declares `declared` bytes, `first` of
/// them are sent, and the connection is handed back for the caller to finish (or not).
pub async fn start_upload(
    app: &TestApp,
    key: &str,
    path: &str,
    declared: usize,
    first: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = app.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/files/{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    s
}

/// A `tenantry_body_memory_bytes{state=...}` value from `GET /metrics`.
pub async fn body_memory(app: &TestApp, state: &str) -> Option<u64> {
    let text = String::from_utf8(app.raw(None, Method::GET, "/metrics", None, &[]).await.body.to_vec()).unwrap();
    let prefix = format!("tenantry_body_memory_bytes{{state=\"{state}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.trim().parse().unwrap())
}
