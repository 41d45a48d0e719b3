//! Webhooks (API.md §7), for `admin`+ keys of tiers with the feature.

use crate::edge::{num_param, ApiJson, ApiQuery, Authed};
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tenantry_core::model::Page;
use tenantry_core::service::{NewWebhook, WebhookPatch};
use tenantry_core::webhook::{DeliveryAttempt, Webhook};

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    webhook: Webhook,
    /// The signing secret, shown this once.
    secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    items: Vec<Webhook>,
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    before: Option<String>,
    limit: Option<String>,
}

/// Creates a webhook. The target must resolve to public addresses only (unless the operator
/// allows private networks).
#[utoipa::path(post, operation_id = "create_webhook", path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhook,
    responses((status = 201, description = "created; the secret is shown once", body = CreatedWebhook),
        (status = 403, description = "needs admin, or `feature_not_in_tier`")))]
pub async fn create(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(req): ApiJson<NewWebhook>,
) -> ApiResult<Response> {
    let (webhook, secret) = state.svc.create_webhook(&caller, req, &*state.resolver).await?;
    Ok((StatusCode::CREATED, Json(CreatedWebhook { webhook, secret })).into_response())
}

#[utoipa::path(get, operation_id = "list_webhooks", path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "the tenant's webhooks", body = WebhookList)))]
pub async fn list(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Response> {
    Ok(Json(WebhookList { items: state.svc.list_webhooks(&caller).await? }).into_response())
}

#[utoipa::path(get, operation_id = "get_webhook", path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "the webhook's id")),
    responses((status = 200, description = "the webhook", body = Webhook)))]
pub async fn show(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.get_webhook(&caller, &id).await?).into_response())
}

/// Enables or disables a webhook (enabling after automatic disabling resets its failure count).
#[utoipa::path(patch, operation_id = "update_webhook", path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "the webhook's id")), request_body = WebhookPatch,
    responses((status = 200, description = "the webhook", body = Webhook)))]
pub async fn update(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<WebhookPatch>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.update_webhook(&caller, &id, patch).await?).into_response())
}

#[utoipa::path(delete, operation_id = "delete_webhook", path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "the webhook's id")),
    responses((status = 204, description = "deleted, with its pending deliveries and log")))]
pub async fn remove(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.svc.delete_webhook(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The webhook's delivery attempts, newest first; `before` (an attempt id) pages back.
#[utoipa::path(get, operation_id = "list_deliveries", path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "the webhook's id"), ("before" = Option<u64>, Query, description = "attempts older than this attempt number (the previous page's last)"), ("limit" = Option<u32>, Query, description = "page size, 1 to 1000 (default 100)")),
    responses((status = 200, description = "a page of attempts", body = Page<DeliveryAttempt>)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Response> {
    let before = num_param(&q.before, "before")?;
    let limit = num_param(&q.limit, "limit")?;
    Ok(Json(state.svc.list_deliveries(&caller, &id, before, limit).await?).into_response())
}
