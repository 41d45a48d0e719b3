//! Operations (API.md §10): liveness, readiness, metrics and the OpenAPI document.

use crate::error::error_response;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Alive: the process answers.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "the server is alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: storage answers a query.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "operations", security(()), responses(
    (status = 200, description = "storage is reachable"),
    (status = 503, description = "storage is not reachable")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.svc.storage_ready().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::error!("readiness check failed: {e}");
            error_response(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "storage is not reachable".into())
        }
    }
}

/// Prometheus text: requests by route and status, latency histogram, tenants by status; with the
/// operator key, also requests, stored bytes and files of the 20 busiest tenants.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "operations", security(()), responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut body = state.metrics.render(state.svc.directory());
    {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let _ = writeln!(body, "# HELP tenantry_event_streams Open SSE event streams.");
        let _ = writeln!(body, "# TYPE tenantry_event_streams gauge");
        let _ = writeln!(body, "tenantry_event_streams {}", state.hub.subscribers());
        let _ = writeln!(body, "# HELP tenantry_webhook_attempts_total Webhook delivery attempts by outcome.");
        let _ = writeln!(body, "# TYPE tenantry_webhook_attempts_total counter");
        let delivered = crate::delivery::ATTEMPTS_DELIVERED.load(Relaxed);
        let failed = crate::delivery::ATTEMPTS_FAILED.load(Relaxed);
        let _ = writeln!(body, "tenantry_webhook_attempts_total{{outcome=\"delivered\"}} {delivered}");
        let _ = writeln!(body, "tenantry_webhook_attempts_total{{outcome=\"failed\"}} {failed}");
        body.push_str(&state.fairness.render());
        body.push_str(&state.bodies.render());
        for m in state.svc.storage_metrics().into_iter().chain(state.svc.worker_metrics()) {
            let kind = if m.counter { "counter" } else { "gauge" };
            let _ = writeln!(body, "# HELP {} {}", m.name, m.help);
            let _ = writeln!(body, "# TYPE {} {kind}", m.name);
            let _ = writeln!(body, "{} {}", m.name, m.value);
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if bearer.is_some_and(|b| state.svc.is_operator_key(b)) {
        let busiest = state.svc.busiest_tenants(crate::metrics::TOP_TENANTS);
        match state.svc.tenant_gauges(busiest).await {
            Ok(rows) => body.push_str(&crate::metrics::Metrics::render_tenants(&rows)),
            Err(e) => tracing::error!("per-tenant metrics: {e}"),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// This document.
#[utoipa::path(get, operation_id = "openapi", path = "/openapi.json", tag = "operations", security(()), responses((status = 200, description = "the OpenAPI 3.1 document")))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    Json(&*state.openapi).into_response()
}
