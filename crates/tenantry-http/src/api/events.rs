//! Events (API.md §7): a page as JSON, or with `Accept: text/event-stream` a live SSE stream that
//! resumes after `Last-Event-ID`.

use crate::edge::{num_param, ApiQuery, Authed};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tenantry_core::events::Event;
use tenantry_core::model::Page;

#[derive(Deserialize)]
pub struct EventsQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// Events after `after` (a page), or a stream with `Accept: text/event-stream`. A tenant with
/// `max_streams_per_tenant` streams open gets 429 `rate_limited` for one more.
#[utoipa::path(get, operation_id = "list_events", path = "/v1/events", tag = "events", params(
    ("after" = Option<u64>, Query, description = "events after this seq (0: from the oldest kept)"), ("limit" = Option<u32>, Query, description = "page size, 1 to 1000 (default 100)"),
    ("Last-Event-ID" = Option<u64>, Header, description = "SSE: resume after this seq")),
    responses((status = 200, description = "a page of events (JSON), or an SSE stream",
        content((Page<Event> = "application/json"), (String = "text/event-stream")))))]
pub async fn list(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let after: Option<u64> = num_param(&q.after, "after")?;
    let limit = num_param(&q.limit, "limit")?;
    let wants_stream = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/event-stream")));
    if !wants_stream {
        return Ok(Json(state.svc.list_events(&caller, after, limit).await?).into_response());
    }
    let last_event_id = match headers.get("last-event-id").map(|v| v.to_str().map(str::trim)) {
        None | Some(Ok("")) => None,
        Some(Ok(v)) => Some(v.parse::<u64>().map_err(|_| ApiError::invalid("Last-Event-ID must be an event seq"))?),
        Some(Err(_)) => return Err(ApiError::invalid("Last-Event-ID must be an event seq")),
    };
    // Checked now, so a refused stream gets a proper error instead of an empty 200.
    state.svc.events_after(&caller, u64::MAX, 1).await?;
    let start = match last_event_id.or(after) {
        Some(seq) => seq,
        None => state.svc.last_event_seq(&caller).await?,
    };
    let max = state.config.max_streams_per_tenant;
    let slot = state
        .hub
        .open_slot(&caller.tenant().id, max)
        .ok_or_else(|| ApiError(tenantry_core::Error::too_many_held("event streams open", max, 5)))?;
    let stalled = state.config.stream_stall_timeout;
    let body = crate::live::stream(state.svc.clone(), state.hub.clone(), caller, start, slot, stalled);
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}
