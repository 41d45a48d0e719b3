//! Tenantry's HTTP server: thin axum handlers over tenantry-core's services.
//!
//! # Layout
//! - [`edge`]: everything every request passes through: the `/t/{slug}` rewrite, request ids,
//!   the one error body, metrics, auditing of refusals, and the [`edge::Authed`] extractor that
//!   turns a request into a `Caller` (the only way a handler gets one).
//! - [`error`]: [`error::ApiError`] and the one mapping from error codes to HTTP statuses.
//! - [`api`]: one module per resource, each with its `routes()` and handlers `<resource>::<verb>`.
//! - [`openapi`]: the OpenAPI 3.1 document, checked against the route table by a test.
//! - [`metrics`]: counters and a latency histogram in Prometheus text.
//!
//! [`serve`] is the seam: the binary and the tests both start the real server through it.

pub mod api;
pub mod edge;
pub mod error;
pub mod metrics;
pub mod openapi;

use axum::extract::Request;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::service::Tenantry;
use tokio::net::TcpListener;
use tower::Layer;

/// Limits of the HTTP layer (documented in docs/SECURITY.md once it exists; see README).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest JSON body accepted.
    pub max_json_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { max_json_bytes: 1 << 20, shutdown_grace: Duration::from_secs(30) }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub svc: Arc<Tenantry>,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<HttpConfig>,
    pub routes: Arc<api::RouteTable>,
}

/// The router with every route and the edge middleware, before the `/t/{slug}` rewrite.
pub fn router(svc: Arc<Tenantry>, config: HttpConfig) -> Router {
    let (router, table) = api::routes(svc.config().max_file_bytes, &config);
    let state = AppState {
        svc,
        metrics: Arc::new(metrics::Metrics::default()),
        config: Arc::new(config),
        routes: Arc::new(table),
    };
    router
        .fallback(edge::no_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::finish))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
/// (for at most `shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    svc: Arc<Tenantry>,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = config.shutdown_grace;
    let app = tower::util::MapRequestLayer::new(edge::rewrite_tenant_path).layer(router(svc, config));
    let make = axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, make).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => res,
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
            Ok(())
        }
    }
}
