//! Tenant administration (API.md §4), for the operator key.

use crate::edge::{bool_param, num_param, ApiJson, ApiQuery, Authed};
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tenantry_core::model::{Page, TenantView};
use tenantry_core::service::{NewTenant, TenantPatch, Transition};

/// A new tenant and its owner key, shown only in this answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CreatedTenant {
    #[serde(flatten)]
    tenant: TenantView,
    /// The owner key's secret: shown only here.
    owner_key: String,
    owner_key_id: String,
}

/// Create a tenant; the answer holds its owner key, shown only here.
#[utoipa::path(post, operation_id = "create_tenant", path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, description = "the tenant, with `owner_key`", body = CreatedTenant), (status = 400, description = "invalid_slug or invalid_request"), (status = 409, description = "slug or domain taken")))]
pub async fn create(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(req): ApiJson<NewTenant>,
) -> ApiResult<Response> {
    let (tenant, owner) = state.svc.create_tenant(&caller, req).await?;
    let body = CreatedTenant { tenant, owner_key: owner.key, owner_key_id: owner.info.id.to_string() };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A page of tenants in slug order.
#[utoipa::path(get, operation_id = "list_tenants", path = "/v1/tenants", tag = "tenants", params(
    ("status" = Option<String>, Query, description = "active, suspended or archived"),
    ("q" = Option<String>, Query, description = "only tenants whose slug or name contains this text, in any case (at most 200 characters)"),
    ("limit" = Option<u32>, Query, description = "page size, at most 1000"),
    ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "a page of tenants", body = Page<TenantView>)))]
pub async fn list(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let limit = num_param(&q.limit, "limit")?;
    let page = state.svc.list_tenants(&caller, q.status.as_deref(), q.q.as_deref(), limit, q.cursor.as_deref())?;
    Ok(Json(page).into_response())
}

#[utoipa::path(get, operation_id = "get_tenant", path = "/v1/tenants/{slug}", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme")),
    responses((status = 200, description = "the tenant", body = TenantView), (status = 404, description = "tenant_not_found")))]
pub async fn show(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.get_tenant(&caller, &slug)?).into_response())
}

/// Change name, tier, quotas, metadata or domains; effective on the next request.
#[utoipa::path(patch, operation_id = "update_tenant", path = "/v1/tenants/{slug}", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme")),
    request_body = TenantPatch,
    responses((status = 200, description = "the changed tenant", body = TenantView)))]
pub async fn update(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
    ApiJson(patch): ApiJson<TenantPatch>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.update_tenant(&caller, &slug, patch).await?).into_response())
}

async fn transition(
    state: &AppState,
    caller: &tenantry_core::caller::Caller,
    slug: &str,
    to: Transition,
) -> ApiResult<Response> {
    Ok(Json(state.svc.transition(caller, slug, to).await?).into_response())
}

/// Suspend: every tenant-key request gets 403 `tenant_suspended`; data kept.
#[utoipa::path(post, operation_id = "suspend_tenant", path = "/v1/tenants/{slug}/suspend", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme")), responses((status = 200, description = "the suspended tenant", body = TenantView)))]
pub async fn suspend(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    transition(&state, &caller, &slug, Transition::Suspend).await
}

#[utoipa::path(post, operation_id = "resume_tenant", path = "/v1/tenants/{slug}/resume", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme")), responses((status = 200, description = "the active tenant", body = TenantView)))]
pub async fn resume(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    transition(&state, &caller, &slug, Transition::Resume).await
}

/// Archived → active; its keys work again.
#[utoipa::path(post, operation_id = "restore_tenant", path = "/v1/tenants/{slug}/restore", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme")), responses((status = 200, description = "the restored tenant", body = TenantView), (status = 409, description = "not archived")))]
pub async fn restore(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    transition(&state, &caller, &slug, Transition::Restore).await
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    purge: Option<String>,
}

/// Archive (keys stop working, data kept), or with `?purge=true` erase an archived tenant for good.
#[utoipa::path(delete, operation_id = "archive_tenant", path = "/v1/tenants/{slug}", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme"), ("purge" = Option<bool>, Query, description = "true: erase an archived tenant's data for good (204)")),
    responses((status = 200, description = "archived: the tenant", body = TenantView), (status = 204, description = "purged"), (status = 409, description = "purge of a tenant that is not archived")))]
pub async fn archive(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<Response> {
    if bool_param(&q.purge, "purge")? {
        state.svc.purge_tenant(&caller, &slug).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    transition(&state, &caller, &slug, Transition::Archive).await
}

/// `POST /v1/tenants/{slug}/move`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// `shared` or `dedicated`.
    placement: String,
}

/// Moves the tenant's data to the other placement while it keeps serving (copy, catch up, a
/// short write fence, switch, verify, delete the old copy); answers when done. Operator only.
#[utoipa::path(post, operation_id = "move_tenant", path = "/v1/tenants/{slug}/move", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme")),
    request_body = MoveRequest,
    responses((status = 200, description = "what the move did", body = tenantry_core::store::MoveReport)))]
pub async fn move_tenant(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<Response> {
    // On a task of its own: a client that goes away does not cancel a move halfway.
    let svc = state.svc.clone();
    let moved = tokio::spawn(async move { svc.move_tenant(&caller, &slug, &req.placement).await })
        .await
        .map_err(|e| tenantry_core::Error::internal(format!("move task failed: {e}")))??;
    Ok(Json(moved).into_response())
}

/// Whether a move of the tenant is under way, and how many bytes it has copied.
#[utoipa::path(get, operation_id = "get_move", path = "/v1/tenants/{slug}/move", tag = "tenants", params(("slug" = String, Path, description = "the tenant's slug", example = "acme")),
    responses((status = 200, description = "the tenant's placement and move progress", body = tenantry_core::service::MoveStatus)))]
pub async fn move_status(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.move_status(&caller, &slug)?).into_response())
}
