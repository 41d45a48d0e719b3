//! The audit log (API.md §8): own tenant for tenant admins; any tenant for the operator.

use crate::edge::{num_param, ApiQuery, Authed};
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tenantry_core::audit::ChainReport;
use tenantry_core::model::{AuditEntry, Page};

#[derive(Deserialize)]
pub struct AuditQuery {
    after: Option<String>,
    action: Option<String>,
    limit: Option<String>,
}

/// Entries after `after`, in seq order.
#[utoipa::path(get, operation_id = "list_audit", path = "/v1/audit", tag = "audit", params(
    ("after" = Option<u64>, Query, description = "entries after this seq"),
    ("action" = Option<String>, Query, description = "only this action, such as `file.write` or `key.create`"),
    ("limit" = Option<u32>, Query, description = "page size, 1 to 1000 (default 100)")),
    responses((status = 200, description = "a page of entries", body = Page<AuditEntry>), (status = 403, description = "needs admin")))]
pub async fn list(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    let after = num_param(&q.after, "after")?;
    let limit = num_param(&q.limit, "limit")?;
    let page = state.svc.list_audit(&caller, after, q.action.as_deref(), limit).await?;
    Ok(Json(page).into_response())
}

/// Walks the tenant's hash chain and reports the first broken link.
#[utoipa::path(get, operation_id = "verify_audit", path = "/v1/audit/verify", tag = "audit", responses((status = 200, description = "the result of walking the chain", body = ChainReport)))]
pub async fn verify(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Response> {
    Ok(Json(state.svc.verify_audit(&caller).await?).into_response())
}
