//! Search (API.md §7) over the caller's tenant's text files and memory values.

use crate::edge::{num_param, ApiQuery, Authed};
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tenantry_core::search::SearchHit;
use tenantry_core::service::SearchRequest;

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    prefix: Option<String>,
    namespace: Option<String>,
    kind: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    items: Vec<SearchHit>,
}

/// Ranked hits holding every word of `q`; `prefix` narrows to files under it, `namespace` to one
/// memory namespace, `kind` to `file` or `memory`.
#[utoipa::path(get, operation_id = "search", path = "/v1/search", tag = "search", params(
    ("q" = String, Query, description = "words; every word must match", example = "quarterly budget"), ("prefix" = Option<String>, Query, description = "only files under this folder"), ("namespace" = Option<String>, Query, description = "only memory values of this namespace"),
    ("kind" = Option<String>, Query, description = "`file` or `memory`; both when absent"), ("limit" = Option<u32>, Query, description = "hits, 1 to 100 (default 20)")),
    responses((status = 200, description = "hits, best first", body = SearchResults)))]
pub async fn search(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Response> {
    let req = SearchRequest {
        q: q.q.unwrap_or_default(),
        prefix: q.prefix,
        namespace: q.namespace,
        kind: q.kind,
        limit: num_param(&q.limit, "limit")?,
    };
    let items = state.svc.search(&caller, req).await?;
    Ok(Json(SearchResults { items }).into_response())
}
