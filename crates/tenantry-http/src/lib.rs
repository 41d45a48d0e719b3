//! Tenantry's HTTP server: thin axum handlers over tenantry-core's services.
//!
//! # Layout
//! - [`edge`]: everything every request passes through: the `/t/{slug}` rewrite, request ids,
//!   the one error body, metrics, auditing of refusals, and the [`edge::Authed`] extractor that
//!   turns a request into a `Caller` (the only way a handler gets one).
//! - [`error`]: [`error::ApiError`] and the one mapping from error codes to HTTP statuses.
//! - [`api`]: one module per resource, each with its `routes()` and handlers `<resource>::<verb>`.
//! - [`openapi`]: the OpenAPI 3.1 document, checked against the route table by a test;
//!   [`schemas`]: the schemas it names that no type of the API has (a binary body).
//! - [`metrics`]: counters and a latency histogram in Prometheus text.
//! - [`live`]: the SSE event hub and streams; [`delivery`]: the webhook worker and the resolvers
//!   that keep deliveries off private networks.
//!
//! [`serve`] is the seam: the binary and the tests both start the real server through it.

pub mod api;
pub mod cluster;
pub mod delivery;
pub mod edge;
pub mod error;
pub mod fairness;
pub mod live;
pub mod metrics;
pub mod offload;
pub mod openapi;
pub mod reference;
pub mod schemas;

use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::service::Tenantry;
use tokio::net::TcpListener;
use tower::Layer;

/// Limits of the HTTP layer (docs/SECURITY.md lists them with their reasons).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest JSON body accepted (413 `too_large` beyond).
    pub max_json_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Open connections beyond this are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time to send a request's head; also how long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// Time for a whole request, body included (408 beyond): slow bodies cannot pin a handler.
    pub request_timeout: Duration,
    /// Largest request head (request line and headers); larger gets 431 and a closed connection.
    pub max_header_bytes: usize,
    /// Requests of one tenant inside handlers at once; more wait for a slot (see `fairness`).
    pub max_in_flight_per_tenant: usize,
    /// Memory for request bodies read at once, all requests together (see `edge::BodyBudget`).
    pub max_body_memory_bytes: usize,
    /// Event streams (SSE) one tenant may have open at once; more get 429 `rate_limited`.
    pub max_streams_per_tenant: usize,
    /// A stream whose client reads nothing for this long, while events wait for it, is ended.
    pub stream_stall_timeout: Duration,
    /// Mark the session cookie `Secure` (browsers then send it over HTTPS only): on when the
    /// server is reached through a TLS-terminating proxy (`secure_cookies` in the config file).
    pub secure_cookies: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_json_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(30),
            max_connections: 16_384,
            header_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(120),
            max_header_bytes: 64 << 10,
            max_in_flight_per_tenant: fairness::default_per_tenant(),
            max_body_memory_bytes: 1 << 30,
            max_streams_per_tenant: 64,
            stream_stall_timeout: Duration::from_secs(30),
            secure_cookies: false,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub svc: Arc<Tenantry>,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<HttpConfig>,
    pub routes: Arc<api::RouteTable>,
    pub hub: Arc<live::EventHub>,
    pub fairness: Arc<fairness::Fairness>,
    pub bodies: Arc<edge::BodyBudget>,
    pub resolver: Arc<dyn tenantry_core::webhook::HostResolver>,
    /// The OpenAPI document `/openapi.json` serves, built once.
    pub openapi: Arc<utoipa::openapi::OpenApi>,
}

/// The router with every route and the edge middleware, before the `/t/{slug}` rewrite. The
/// event hub is registered with the store here and handed back so a shutdown can end its streams.
pub fn router(svc: Arc<Tenantry>, config: HttpConfig) -> (Router, Arc<live::EventHub>) {
    let (router, table) = api::routes();
    let hub = Arc::new(live::EventHub::default());
    svc.add_event_sink(hub.clone());
    let fairness = Arc::new(fairness::Fairness::new(config.max_in_flight_per_tenant));
    fairness.spawn_probe();
    let largest_body =
        api::files::body_limit(&svc).max(api::memory::body_limit(&svc, &config)).max(config.max_json_bytes);
    let bodies = Arc::new(edge::BodyBudget::new(config.max_body_memory_bytes, largest_body));
    let state = AppState {
        openapi: Arc::new(openapi::spec()),
        svc,
        metrics: Arc::new(metrics::Metrics::default()),
        config: Arc::new(config),
        routes: Arc::new(table),
        hub: hub.clone(),
        fairness,
        bodies,
        resolver: Arc::new(delivery::SystemResolver),
    };
    let router = router
        .fallback(edge::no_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::finish))
        .with_state(state);
    (router, hub)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
/// (for at most `shutdown_grace`). Each connection is HTTP/1.1 with a head-read timeout, a head
/// size limit and a connection cap, so idle or slow clients cannot exhaust the server.
pub async fn serve(
    listener: TcpListener,
    svc: Arc<Tenantry>,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let (router, hub) = router(svc, config.clone());
    let app = tower::util::MapRequestLayer::new(edge::rewrite_tenant_path).layer(router);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .max_headers(128);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream); // over the connection cap: closed at once
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    // Event streams never end on their own: end them so the drain below can finish.
    hub.close();
    let grace = config.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
        }
    }
    Ok(())
}
