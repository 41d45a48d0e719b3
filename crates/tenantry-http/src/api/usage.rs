//! Usage (API.md §8): this month's metered requests, stored bytes, files and keys, and limits.

use crate::edge::Authed;
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tenantry_core::service::UsageReport;

/// The caller's tenant's usage this month.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", responses((status = 200, description = "usage and limits", body = UsageReport)))]
pub async fn own(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Response> {
    Ok(Json(state.svc.usage(&caller).await?).into_response())
}

/// Any tenant's usage this month (operator).
#[utoipa::path(get, path = "/v1/tenants/{slug}/usage", tag = "usage", params(("slug" = String, Path)),
    responses((status = 200, description = "usage and limits", body = UsageReport)))]
pub async fn tenant(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.tenant_usage(&caller, &slug).await?).into_response())
}
