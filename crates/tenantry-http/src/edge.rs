//! The edge: what every request passes through before and after its handler. A request gets an
//! id, is turned into a `Caller` by [`Authed`] (the only way a handler obtains one), and on the
//! way out every error gets the one JSON shape of API.md §2, refusals are audited, and metrics
//! are recorded.

use crate::error::{error_response, ApiError, ErrorInfo, InternalCause};
use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tenantry_core::caller::{Caller, RequestFacts};
use tenantry_core::ids::TenantId;
use tenantry_core::ratelimit::RateDecision;

/// The tenant a `/t/{slug}/v1/...` path named, moved out of the path before routing.
#[derive(Debug, Clone)]
pub struct PathTenant(pub String);

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Where [`Authed`] leaves the caller (so [`finish`] can audit a refusal in the right tenant),
/// the rate-limit decision (for the `RateLimit-*` headers), whether the request was admitted
/// (admitted requests are metered), and the tenant's in-flight slot (freed when the request is
/// done with).
#[derive(Debug, Clone, Default)]
struct CallerSlot(Arc<SlotInner>);

#[derive(Debug, Default)]
struct SlotInner {
    caller: OnceLock<Caller>,
    decision: OnceLock<RateDecision>,
    admitted: std::sync::atomic::AtomicBool,
    in_flight: OnceLock<crate::fairness::Entered>,
}

/// `/t/{slug}/v1/...` → `/v1/...` with the slug kept aside: the same routes serve both forms.
pub fn rewrite_tenant_path(mut req: Request) -> Request {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/t/") else { return req };
    let Some((slug, tail)) = rest.split_once('/') else { return req };
    if !(tail == "v1" || tail.starts_with("v1/")) || slug.is_empty() {
        return req;
    }
    let slug = percent_encoding::percent_decode_str(slug).decode_utf8_lossy().into_owned();
    let new_path = format!("/{tail}");
    let new_uri = match req.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    if let Ok(uri) = new_uri.parse::<Uri>() {
        *req.uri_mut() = uri;
        req.extensions_mut().insert(PathTenant(slug));
    }
    req
}

/// The name of the cookie a signed-in browser sends (API.md §11).
pub const SESSION_COOKIE: &str = "tenantry_session";

/// The value of the session cookie, if the request carries one.
fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the browser says the request comes from this server's own pages: `Sec-Fetch-Site:
/// same-origin`, or an `Origin` whose host and port are the request's `Host`.
fn same_origin(headers: &axum::http::HeaderMap, host: Option<&str>) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("same-origin")) {
        return true;
    }
    let (Some(origin), Some(host)) = (get("origin"), host) else { return false };
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let with_port = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.rsplit_once(':') {
            Some((_, p)) if !a.ends_with(']') && p.bytes().all(|b| b.is_ascii_digit()) => a,
            _ => format!("{a}:{default_port}"),
        }
    };
    !authority.contains('/') && with_port(authority) == with_port(host)
}

/// Whether a browser said the request comes from another site: an `Origin` not this server's, or
/// `Sec-Fetch-Site` other than `same-origin` and `none` (typed in the address bar).
fn cross_site(headers: &axum::http::HeaderMap, host: Option<&str>) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site {
        return !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"));
    }
    headers.contains_key("origin") && !same_origin(headers, host)
}

/// What the edge reads off a request for authentication, nothing trusted yet. Without
/// `for_people`, a request with a bearer key skips the cookie and origin headers: authentication
/// goes by the key alone then, so the key's hot path reads no more than it needs.
pub fn request_facts(parts: &Parts, for_people: bool) -> RequestFacts {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|v| v.trim().to_owned());
    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let changes =
        !matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS);
    let people = for_people || bearer.is_none();
    RequestFacts {
        session: if people { session_cookie(&parts.headers) } else { None },
        changes,
        same_origin: people && same_origin(&parts.headers, host.as_deref()),
        cross_site: people && cross_site(&parts.headers, host.as_deref()),
        bearer,
        path_tenant: parts.extensions.get::<PathTenant>().map(|p| p.0.clone()),
        header_tenant: header("x-tenant-id"),
        host,
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default(),
        ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default(),
    }
}

/// A request's facts without authenticating: for the routes that sign in and out.
pub struct Facts(pub RequestFacts);

impl<S: Send + Sync> FromRequestParts<S> for Facts {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Facts(request_facts(parts, true)))
    }
}

/// An authenticated request: the extractor every tenant-facing handler takes.
pub struct Authed(pub Caller);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = state.svc.authenticate(request_facts(parts, false)).await?;
        let decision = state.svc.admit(&caller);
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            let _ = slot.0.caller.set(caller.clone());
            if let Some(d) = decision {
                let _ = slot.0.decision.set(d);
            }
        }
        match decision {
            Some(d) if !d.allowed => Err(ApiError(tenantry_core::Error::rate_limited(d.limit, d.retry_after_secs))),
            _ => {
                state.svc.check_allowance(&caller)?;
                // The operator's work is not a tenant's load.
                let read = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
                let permit = if caller.is_operator() {
                    None
                } else {
                    let entered = state.fairness.enter(&caller.tenant().id, read).await;
                    Some(entered.map_err(|crate::fairness::TooManyWaiting(max)| {
                        ApiError(tenantry_core::Error::too_many_held("requests in flight or waiting", max, 1))
                    })?)
                };
                if let Some(slot) = parts.extensions.get::<CallerSlot>() {
                    slot.0.admitted.store(true, std::sync::atomic::Ordering::Relaxed);
                    if let Some(p) = permit {
                        let _ = slot.0.in_flight.set(p);
                    }
                }
                Ok(Authed(caller))
            }
        }
    }
}

/// A request body read into memory, holding its share of the server's body-memory budget until
/// dropped (see [`BodyBudget`]).
pub struct Buffered {
    bytes: Bytes,
    held: BudgetShare,
}

/// A body's share of the budget, given back when dropped.
pub struct BudgetShare {
    _server: Option<tokio::sync::OwnedSemaphorePermit>,
    _tenant: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Buffered {
    /// The bytes without a copy, and the share to keep for as long as they (or what they were
    /// moved into) live.
    pub fn into_parts(self) -> (Bytes, BudgetShare) {
        (self.bytes, self.held)
    }
}

impl std::ops::Deref for Buffered {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Bounds the memory that request bodies being read and handled take at once
/// (`max_body_memory_bytes`): without it, a thousand concurrent 64 MiB uploads would ask for
/// 64 GiB. A body declares its size (`Content-Length`) and waits, before a byte is read, until
/// that much of the budget is free (within the request timeout); a body of unknown length
/// reserves its route's whole limit. Bodies of at most [`BodyBudget::FREE_BYTES`] are not
/// counted: the connection's own buffers are of that order.
///
/// Each tenant may hold at most its share of the budget ([`BodyBudget::TENANT_SHARE`] of it, at
/// least the largest single body): its bodies first wait for room in its own share, holding
/// nothing of the server's while they do, then for the server's. So a tenant whose uploads
/// stall (declared large, sent slowly) holds at most its share until they time out, and the
/// rest of the budget stays for the others.
pub struct BodyBudget {
    permits: Arc<tokio::sync::Semaphore>,
    total_kib: usize,
    per_tenant_kib: usize,
    tenants: std::sync::Mutex<HashMap<TenantId, Arc<tokio::sync::Semaphore>>>,
}

impl BodyBudget {
    pub const FREE_BYTES: u64 = 64 << 10;
    /// One tenant's share: this fraction of the budget (one eighth).
    pub const TENANT_SHARE: usize = 8;
    /// Tenants' semaphores kept before idle ones are forgotten.
    const TENANTS_KEPT: usize = 1024;

    /// A budget of `bytes`, raised to `largest_body` so that any body a route accepts can be
    /// read once the others are done; each tenant's share likewise holds at least one.
    pub fn new(bytes: usize, largest_body: usize) -> BodyBudget {
        let total_kib = bytes.max(largest_body).div_ceil(1024).max(1);
        let per_tenant_kib = (total_kib / Self::TENANT_SHARE).max(largest_body.div_ceil(1024)).clamp(1, total_kib);
        BodyBudget {
            permits: Arc::new(tokio::sync::Semaphore::new(total_kib)),
            total_kib,
            per_tenant_kib,
            tenants: std::sync::Mutex::default(),
        }
    }

    /// Prometheus text: the bytes held now (with what a waiting body has already claimed), the
    /// budget and one tenant's share of it.
    pub fn render(&self) -> String {
        let held = (self.total_kib - self.permits.available_permits()) as u64 * 1024;
        format!(
            "# HELP tenantry_body_memory_bytes Memory reserved for request bodies being read or handled (with what a waiting body has already claimed), the budget, and what one tenant may hold of it.\n\
             # TYPE tenantry_body_memory_bytes gauge\n\
             tenantry_body_memory_bytes{{state=\"held\"}} {held}\n\
             tenantry_body_memory_bytes{{state=\"budget\"}} {}\n\
             tenantry_body_memory_bytes{{state=\"tenant_share\"}} {}\n",
            self.total_kib as u64 * 1024,
            self.per_tenant_kib as u64 * 1024,
        )
    }

    fn tenant_share(&self, tenant: &TenantId) -> Arc<tokio::sync::Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if tenants.len() >= Self::TENANTS_KEPT && !tenants.contains_key(tenant) {
            // Forget the shares nobody holds or waits on.
            let whole = self.per_tenant_kib;
            tenants.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < whole);
        }
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_tenant_kib)))
            .clone()
    }

    /// Waits for room for a body of `bytes` sent for `tenant` (`None`: the operator's, counted in
    /// the server's budget only).
    async fn reserve(&self, bytes: u64, tenant: Option<&TenantId>) -> BudgetShare {
        if bytes <= Self::FREE_BYTES {
            return BudgetShare { _server: None, _tenant: None };
        }
        let kib = (bytes.div_ceil(1024) as usize).min(self.total_kib);
        let own = match tenant {
            Some(t) => {
                let share = self.tenant_share(t);
                let kib = u32::try_from(kib.min(self.per_tenant_kib)).unwrap_or(u32::MAX);
                // Never closed, so acquiring cannot fail.
                Some(share.acquire_many_owned(kib).await.expect("a tenant's body share is never closed"))
            }
            None => None,
        };
        let kib = u32::try_from(kib).unwrap_or(u32::MAX);
        let permit = self.permits.clone().acquire_many_owned(kib).await.expect("the body budget is never closed");
        BudgetShare { _server: Some(permit), _tenant: own }
    }
}

/// Whose share of the body budget a caller's bodies count in: its tenant's, or none for the
/// operator (whose work is not a tenant's load).
pub fn body_tenant(caller: &Caller) -> Option<&TenantId> {
    (!caller.is_operator()).then(|| &caller.tenant().id)
}

/// Reads a whole body of at most `limit` bytes. A declared `Content-Length` over the limit is
/// refused before a byte is read, so a client cannot make us wait for a body we would refuse.
/// The body's share of the memory budget is taken before reading and held by the answer.
pub async fn read_body(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
    budget: &BodyBudget,
    tenant: Option<&TenantId>,
) -> Result<Buffered, ApiError> {
    let too_large = || {
        ApiError(tenantry_core::Error::new(
            tenantry_core::ErrorCode::TooLarge,
            format!("request body is larger than {limit} bytes"),
        ))
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let held = budget.reserve(declared.unwrap_or(limit as u64), tenant).await;
    let limited = http_body_util::Limited::new(body, limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(Buffered { bytes: collected.to_bytes(), held }),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::invalid(format!("could not read the request body: {e}"))),
    }
}

/// A JSON body (at most `max_json_bytes`), with every failure answered as `invalid_request`
/// (or `too_large`) in our shape. The Content-Type is not insisted on: a body that parses as JSON
/// is taken.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        // Handlers take `Authed` before their body, so the caller is known by now.
        let tenant = parts.extensions.get::<CallerSlot>().and_then(|s| s.0.caller.get()).and_then(body_tenant);
        let bytes = read_body(body, &parts.headers, state.config.max_json_bytes, &state.bodies, tenant).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid("expected a JSON body"));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// Query parameters, with failures answered as `invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_lite::from_str(q).map(ApiQuery).map_err(|e| ApiError::invalid(format!("invalid query: {e}")))
    }
}

/// Query strings into a struct through serde_json: every value is a string; handlers parse
/// numbers and booleans with [`num_param`] and [`bool_param`] so each bad value gets its own message.
mod serde_urlencoded_lite {
    use serde::de::DeserializeOwned;
    use serde_json::{Map, Value};

    pub fn from_str<T: DeserializeOwned>(q: &str) -> Result<T, String> {
        let mut map = Map::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| "not UTF-8".to_owned())
            };
            map.insert(decode(k)?, Value::String(decode(v)?));
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())
    }
}

/// A numeric query parameter: absent or empty is `None`, anything but a whole number is refused.
pub fn num_param<T: std::str::FromStr>(value: &Option<String>, name: &str) -> Result<Option<T>, ApiError> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            v.parse().map(Some).map_err(|_| ApiError::invalid(format!("`{name}` must be a non-negative whole number")))
        }
    }
}

/// A boolean query parameter: `true`/`false`/`1`/`0`, absent is `false`.
pub fn bool_param(value: &Option<String>, name: &str) -> Result<bool, ApiError> {
    match value.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::invalid(format!("`{name}` must be true or false"))),
    }
}

pub async fn no_route() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route; GET /openapi.json lists them".into())
}

async fn error_from_bare_status(res: Response) -> (Response, ErrorInfo) {
    let status = res.status();
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "not found".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => ("invalid_request", "method not allowed on this route".to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "request body is too large".to_owned()),
        StatusCode::UNAUTHORIZED => ("unauthenticated", "unauthenticated".to_owned()),
        s if s.is_client_error() => ("invalid_request", if text.is_empty() { s.to_string() } else { text }),
        _ => ("internal", "internal error".to_owned()),
    };
    let info = ErrorInfo { code, message, details: None };
    (Response::from_parts(parts, Body::empty()), info)
}

/// Runs around every routed request: request id in, error body / audit / metrics out.
pub async fn finish(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = state.metrics.next_request_id();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let bytes_in = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map(MatchedPath::as_str);
    // Cheap to clone (shared bytes); decoded only if the request is refused.
    let uri = req.uri().clone();

    // An import's body may be gigabytes (it has its own idle timeout instead, api::bundles), and
    // a move takes as long as copying the tenant does.
    let limit = if matches!(route, Some("/v1/tenants/{slug}/import" | "/v1/tenants/{slug}/move")) {
        std::time::Duration::from_secs(u32::MAX as u64)
    } else {
        state.config.request_timeout
    };
    // hyper bounds its read buffer, not the head: a head somewhat over the limit can still fit
    // in one read. The limit is enforced here, on what was received.
    let mut res = if head_bytes(&req) > state.config.max_header_bytes {
        let mut res = error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request",
            format!("the request line and headers are over {} bytes", state.config.max_header_bytes),
        );
        res.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
        res
    } else {
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(res) => res,
            Err(_) => error_response(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                format!("the request took longer than {} s (slow body?)", state.config.request_timeout.as_secs()),
            ),
        }
    };
    let status = res.status();

    if status.is_client_error() || status.is_server_error() {
        let info = match res.extensions().get::<ErrorInfo>().cloned() {
            Some(info) => info,
            None => {
                let (bare, info) = error_from_bare_status(res).await;
                res = bare;
                info
            }
        };
        if let Some(InternalCause(cause)) = res.extensions().get::<InternalCause>() {
            tracing::error!(request_id = %request_id, route = route.unwrap_or("-"), "internal error: {cause}");
        }
        if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
            if let Some(caller) = slot.0.caller.get() {
                let action = state.routes.action(&method, route);
                let target = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
                let rate_bucket = slot.0.decision.get().is_some_and(|d| !d.allowed);
                if let Err(e) = state.svc.audit_refusal(caller, action, &target, info.code, rate_bucket).await {
                    tracing::error!(request_id = %request_id, "could not audit a refused request: {e}");
                }
            }
        }
        // A 429 says when to come back, whichever check refused it.
        if let Some(secs) = info.details.as_ref().and_then(|d| d.get("retry_after")).and_then(|v| v.as_u64()) {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        let mut error = serde_json::Map::new();
        error.insert("code".into(), info.code.into());
        error.insert("message".into(), info.message.clone().into());
        error.insert("request_id".into(), request_id.clone().into());
        for (k, v) in info.details.iter().flatten() {
            error.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let body = serde_json::json!({ "error": error });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.headers_mut().remove(axum::http::header::CONTENT_LENGTH);
        res.headers_mut().remove(axum::http::header::ETAG);
        *res.body_mut() = Body::from(bytes);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    if let Some(caller) = slot.0.caller.get() {
        caller.activity().count_request();
    }
    if let (Some(caller), true) = (slot.0.caller.get(), slot.0.admitted.load(std::sync::atomic::Ordering::Relaxed)) {
        let bytes_out = axum::body::HttpBody::size_hint(res.body()).exact().unwrap_or(0);
        let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
        state.svc.record_request(caller, read, bytes_in, bytes_out);
    }
    if let Some(d) = slot.0.decision.get() {
        let h = res.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(d.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
        if !d.allowed {
            h.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(d.retry_after_secs));
        }
    }
    state.metrics.record(route.unwrap_or("unmatched"), &method, status.as_u16(), started.elapsed());
    res
}

/// The size of a request's head as sent: request line and header lines.
fn head_bytes(req: &Request) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() + line + 2
}

/// For handlers that want to answer a plain error quickly.
pub fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    error_response(status, code, message.into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rewrite(path: &str) -> (String, Option<String>) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let out = rewrite_tenant_path(req);
        (out.uri().to_string(), out.extensions().get::<PathTenant>().map(|p| p.0.clone()))
    }

    #[test]
    fn tenant_paths_are_moved_out_of_the_uri() {
        assert_eq!(rewrite("/t/acme/v1/files/a?x=1"), ("/v1/files/a?x=1".into(), Some("acme".into())));
        assert_eq!(rewrite("/t/acme/v1"), ("/v1".into(), Some("acme".into())));
        assert_eq!(rewrite("/t/a%20b/v1/whoami"), ("/v1/whoami".into(), Some("a b".into())));
        assert_eq!(rewrite("/t/acme/v2/x"), ("/t/acme/v2/x".into(), None));
        assert_eq!(rewrite("/t//v1/x"), ("/t//v1/x".into(), None));
        assert_eq!(rewrite("/v1/files/t/acme/v1"), ("/v1/files/t/acme/v1".into(), None));
    }

    proptest! {
        #[test]
        fn rewriting_never_panics_and_only_yields_v1_paths(path in "/[a-zA-Z0-9%/._~-]{0,60}") {
            prop_assume!(path.parse::<Uri>().is_ok());
            let (uri, tenant) = rewrite(&path);
            if tenant.is_some() {
                prop_assert!(uri.starts_with("/v1"));
            } else {
                prop_assert_eq!(uri, path);
            }
        }
    }
}
