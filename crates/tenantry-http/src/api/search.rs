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
    glob: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    items: Vec<SearchHit>,
    /// Present (true) when the search stopped at its budget of texts read (4,096 documents or
    /// 16 MiB, reached only by phrases that the index allows in many documents but few hold):
    /// `items` are the best among the documents read, not necessarily of all.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

/// Ranked hits for `q`; `prefix` narrows to files under it, `glob` to files whose path matches,
/// `namespace` to one memory namespace, `kind` to `file` or `memory`.
///
/// `q` holds words, every one required (`quarterly budget`); `"quoted phrases"` (adjacent words in
/// order; a word with punctuation inside, such as `rust-2024`, is a phrase too); `prefix*` (any
/// word starting with it, at least 2 letters before the `*`); `OR` between two of those (either
/// may match); and `-` before one to exclude documents matching it. At most 16 distinct words
/// and 64 in all, 4096 bytes; a prefix may match at most 256 different words in the searched
/// scope. A malformed `q` is `400 invalid_request` naming the character where it fails.
#[utoipa::path(get, operation_id = "search", path = "/v1/search", tag = "search", params(
    ("q" = String, Query, description = "words (all required), \"phrases\", prefix*, `OR` between two, `-` to exclude", example = "\"release notes\" deploy* -draft"), ("prefix" = Option<String>, Query, description = "only files under this folder"), ("glob" = Option<String>, Query, description = "only files whose path matches this glob (`*` within a segment, `**` any segments, `?` one character); no memory", example = "/docs/**/*.md"), ("namespace" = Option<String>, Query, description = "only memory values of this namespace"),
    ("kind" = Option<String>, Query, description = "`file` or `memory`; both when absent"), ("limit" = Option<u32>, Query, description = "hits, 1 to 100 (default 20)")),
    responses((status = 200, description = "hits, best first, each with the words that matched", body = SearchResults), (status = 400, description = "`invalid_request`: a malformed `q` (the message names the character), `glob`, `kind` or `limit`")))]
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
        glob: q.glob,
        limit: num_param(&q.limit, "limit")?,
    };
    let answer = state.svc.search(&caller, req).await?;
    Ok(Json(SearchResults { items: answer.hits, partial: answer.partial }).into_response())
}
