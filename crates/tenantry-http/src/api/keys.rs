//! API keys of the caller's tenant (API.md §5).

use crate::edge::{ApiJson, Authed};
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tenantry_core::model::{KeyInfo, MintedKey};
use tenantry_core::service::{NewKey, WhoAmI};

/// The tenant's keys, without secrets.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct KeyList {
    items: Vec<KeyInfo>,
}

/// Create a key no stronger than the caller's own; the secret is shown only here.
#[utoipa::path(post, operation_id = "create_key", path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, description = "the key, with its secret `key`", body = MintedKey), (status = 403, description = "forbidden")))]
pub async fn create(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(req): ApiJson<NewKey>,
) -> ApiResult<Response> {
    let minted = state.svc.create_key(&caller, req).await?;
    Ok((StatusCode::CREATED, Json(minted)).into_response())
}

/// The tenant's keys, without secrets.
#[utoipa::path(get, operation_id = "list_keys", path = "/v1/keys", tag = "keys", responses((status = 200, description = "the keys", body = KeyList)))]
pub async fn list(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Response> {
    let items = state.svc.list_keys(&caller).await?;
    Ok(Json(KeyList { items }).into_response())
}

/// Revoke at once.
#[utoipa::path(delete, operation_id = "revoke_key", path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "the key's id (`key_...`)")),
    responses((status = 204, description = "revoked"), (status = 404, description = "no such key in this tenant")))]
pub async fn revoke(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.svc.revoke_key(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's tenant and key.
#[utoipa::path(get, operation_id = "whoami", path = "/v1/whoami", tag = "keys", responses((status = 200, description = "the tenant and the key", body = WhoAmI)))]
pub async fn whoami(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Response> {
    Ok(Json(state.svc.whoami(&caller)).into_response())
}
