//! Memory (API.md §7): JSON values by namespace and key.

use crate::edge::{body_tenant, bool_param, num_param, read_body, ApiQuery, Authed};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tenantry_core::memory::MemoryEntry;
use tenantry_core::model::Page;

#[derive(Deserialize)]
pub struct SetQuery {
    ttl_seconds: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    prefix: Option<String>,
    values: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The largest body a memory write reads: room for whitespace around the largest value (the
/// value itself is measured compactly).
pub(crate) fn body_limit(svc: &tenantry_core::service::Tenantry, http: &crate::HttpConfig) -> usize {
    (svc.config().max_memory_value_bytes as usize).saturating_mul(2).max(http.max_json_bytes)
}

/// Sets a value (any JSON), optionally expiring after `ttl_seconds`.
#[utoipa::path(put, operation_id = "set_memory", path = "/v1/memory/{namespace}/{key}", tag = "memory",
    params(("namespace" = String, Path, description = "free text such as `agent:researcher`", example = "agent:researcher"), ("key" = String, Path, description = "may contain `/`", example = "topic"), ("ttl_seconds" = Option<u64>, Query, description = "expire after this many seconds (1 to ten years); no expiry when absent")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "stored", body = MemoryEntry), (status = 413, description = "too_large")))]
pub async fn set(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((namespace, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<SetQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let ttl = num_param(&q.ttl_seconds, "ttl_seconds")?;
    let bytes =
        read_body(body, &headers, body_limit(&state.svc, &state.config), &state.bodies, body_tenant(&caller)).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("the body must be JSON: {e}")))?;
    let entry = state.svc.set_memory(&caller, &namespace, &key, value, ttl).await?;
    Ok((StatusCode::OK, Json(entry)).into_response())
}

#[utoipa::path(get, operation_id = "get_memory", path = "/v1/memory/{namespace}/{key}", tag = "memory",
    params(("namespace" = String, Path, description = "free text such as `agent:researcher`"), ("key" = String, Path, description = "may contain `/`")),
    responses((status = 200, description = "the entry", body = MemoryEntry), (status = 404, description = "absent or expired")))]
pub async fn get(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((namespace, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.get_memory(&caller, &namespace, &key).await?).into_response())
}

#[utoipa::path(delete, operation_id = "delete_memory", path = "/v1/memory/{namespace}/{key}", tag = "memory",
    params(("namespace" = String, Path, description = "free text such as `agent:researcher`"), ("key" = String, Path, description = "may contain `/`")),
    responses((status = 204, description = "deleted"), (status = 404, description = "absent or expired")))]
pub async fn remove(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((namespace, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    state.svc.delete_memory(&caller, &namespace, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A namespace's entries in key order (values included unless `values=false`).
#[utoipa::path(get, operation_id = "list_memory", path = "/v1/memory/{namespace}", tag = "memory",
    params(("namespace" = String, Path, description = "free text such as `agent:researcher`"), ("prefix" = Option<String>, Query, description = "only keys starting with this"), ("values" = Option<bool>, Query, description = "false: leave the values out (default true)"),
        ("limit" = Option<u32>, Query, description = "page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "a page of entries", body = Page<MemoryEntry>)))]
pub async fn list(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(namespace): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let with_values = q.values.is_none() || bool_param(&q.values, "values")?;
    let limit = num_param(&q.limit, "limit")?;
    let page = state
        .svc
        .list_memory(&caller, &namespace, q.prefix.as_deref(), with_values, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(page).into_response())
}
