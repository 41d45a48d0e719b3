//! Files (API.md §6). Paths are taken raw from the URI and validated by the core after
//! percent-decoding, so no layer decodes twice.

use crate::edge::{body_tenant, read_body};
use crate::edge::{bool_param, num_param, refuse, ApiQuery, Authed};
use crate::error::{ApiError, ApiResult};
use crate::schemas::ListedItem;
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tenantry_core::model::{FileMeta, Page};
use tenantry_core::path::TenantPath;
use tenantry_core::store::{ByteRange, ListedEntry, Precondition, WriteOutcome};

fn path_of(uri: &Uri) -> Result<TenantPath, ApiError> {
    let raw = uri.path().strip_prefix("/v1/files").unwrap_or("");
    Ok(TenantPath::parse_encoded(raw)?)
}

fn etags(headers: &HeaderMap, name: axum::http::HeaderName) -> Result<Option<Vec<String>>, ApiError> {
    let mut out = Vec::new();
    for v in headers.get_all(&name) {
        let v = v.to_str().map_err(|_| ApiError::invalid(format!("{name} is not ASCII")))?;
        out.extend(v.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()));
    }
    Ok((!out.is_empty()).then_some(out))
}

fn write_precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let if_match = etags(headers, IF_MATCH)?;
    let if_none = etags(headers, IF_NONE_MATCH)?;
    match (if_match, if_none) {
        (Some(_), Some(_)) => Err(ApiError::invalid("send either If-Match or If-None-Match, not both")),
        (Some(tags), None) => Ok(Precondition::IfMatch(tags)),
        (None, Some(tags)) if tags == ["*"] => Ok(Precondition::IfNoneMatchAny),
        (None, Some(_)) => Err(ApiError::invalid("on writes, If-None-Match takes only `*`")),
        (None, None) => Ok(Precondition::None),
    }
}

fn meta_headers(res: &mut Response, meta: &FileMeta) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&meta.etag) {
        h.insert(ETAG, v);
    }
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&meta.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("x-file-version", HeaderValue::from(meta.version));
    // A tenant's file is data, never a page of this origin's: no type sniffing, and an HTML or
    // SVG file opened in a browser runs sandboxed (no scripts, no same-origin access to /docs).
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("content-security-policy", HeaderValue::from_static("sandbox"));
}

/// The largest body a file PUT reads: one byte over the limit, so an over-long body of unknown
/// length is told from one exactly at it.
pub(crate) fn body_limit(svc: &tenantry_core::service::Tenantry) -> usize {
    svc.config().max_file_bytes as usize + 1
}

/// Write a file (raw body). Durable when answered.
#[utoipa::path(put, operation_id = "put_file", path = "/v1/files/{path}", tag = "files", params(
        ("path" = String, Path, description = "the file path after /v1/files/", example = "docs/hello.txt"),
        ("If-Match" = Option<String>, Header, description = "write only if the file's ETag is one of these"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: write only if no file is there")),
    request_body(content = inline(crate::schemas::Binary), content_type = "application/octet-stream",
        description = "the file's bytes. `Content-Type` is stored as the file's content type; without one (or with `application/x-www-form-urlencoded`, curl's default) the type is guessed from the file name's extension, else `application/octet-stream`"),
    responses((status = 201, description = "created", body = FileMeta, headers(("ETag" = String, description = "the new content's ETag"))),
        (status = 200, description = "replaced", body = FileMeta, headers(("ETag" = String, description = "the new content's ETag"))),
        (status = 412, description = "precondition_failed"), (status = 413, description = "too_large")))]
pub async fn put(
    State(state): State<AppState>,
    Authed(caller): Authed,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let path = path_of(&uri)?;
    let precondition = write_precondition(&headers)?;
    let (body, _share) =
        read_body(body, &headers, body_limit(&state.svc), &state.bodies, body_tenant(&caller)).await?.into_parts();
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // `_share` keeps the body's budget until the write is done with it.
    let (meta, outcome) = state.svc.put_file(&caller, path, Vec::from(body), content_type, precondition).await?;
    let status = if outcome == WriteOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    let mut res = (status, Json(&meta)).into_response();
    if let Ok(v) = HeaderValue::from_str(&meta.etag) {
        res.headers_mut().insert(ETAG, v);
    }
    Ok(res)
}

enum RangeAsk {
    Whole,
    Part(ByteRange),
    Unsatisfiable,
}

/// One `bytes=` range; anything else (several ranges, other units, garbage) is ignored and the
/// whole file is sent, as RFC 9110 allows.
fn parse_range(header: &str, size: u64) -> RangeAsk {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return RangeAsk::Whole };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAsk::Whole };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else { return RangeAsk::Whole };
        if n == 0 {
            return RangeAsk::Unsatisfiable;
        }
        ByteRange { start: size.saturating_sub(n), end: size }
    } else {
        let Ok(start) = a.parse::<u64>() else { return RangeAsk::Whole };
        let end = if b.is_empty() {
            size
        } else {
            let Ok(last) = b.parse::<u64>() else { return RangeAsk::Whole };
            if last < start {
                return RangeAsk::Whole;
            }
            last.saturating_add(1).min(size)
        };
        ByteRange { start, end }
    };
    if range.start >= size {
        RangeAsk::Unsatisfiable
    } else {
        RangeAsk::Part(range)
    }
}

fn not_modified(headers: &HeaderMap, meta: &FileMeta) -> Result<bool, ApiError> {
    Ok(etags(headers, IF_NONE_MATCH)?
        .is_some_and(|tags| tags.iter().any(|t| t == "*" || t.trim_start_matches("W/") == meta.etag)))
}

/// Read a file: the bytes as stored. `Range` (one range) and `If-None-Match` are honoured.
#[utoipa::path(get, operation_id = "get_file", path = "/v1/files/{path}", tag = "files", params(
        ("path" = String, Path, description = "the file path after /v1/files/", example = "docs/hello.txt"),
        ("Range" = Option<String>, Header, description = "one range, `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`", example = "bytes=0-99"),
        ("If-None-Match" = Option<String>, Header, description = "answer 304 if the file's ETag is one of these")),
    responses(
        (status = 200, description = "the bytes, with the Content-Type they were stored with",
            content((inline(crate::schemas::Binary) = "application/octet-stream"), (inline(crate::schemas::Binary) = "*/*")),
            headers(("ETag" = String), ("Content-Length" = u64), ("Accept-Ranges" = String, description = "bytes"))),
        (status = 206, description = "a range of the bytes",
            content((inline(crate::schemas::Binary) = "application/octet-stream"), (inline(crate::schemas::Binary) = "*/*")),
            headers(("ETag" = String), ("Content-Range" = String, description = "bytes START-END/SIZE"))),
        (status = 304, description = "not modified"), (status = 404, description = "not_found"),
        (status = 416, description = "range not satisfiable")))]
pub async fn get(
    State(state): State<AppState>,
    Authed(caller): Authed,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = path_of(&uri)?;
    let range_header = headers.get(RANGE).and_then(|v| v.to_str().ok());
    let (meta, bytes, range) = match range_header {
        None => {
            let (meta, bytes) = state.svc.read_file(&caller, &path, None).await?;
            (meta, bytes, None)
        }
        Some(h) => {
            let meta = state.svc.stat_file(&caller, &path).await?;
            match parse_range(h, meta.size) {
                RangeAsk::Whole => {
                    let (meta, bytes) = state.svc.read_file(&caller, &path, None).await?;
                    (meta, bytes, None)
                }
                RangeAsk::Unsatisfiable => {
                    let mut res = refuse(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "invalid_request",
                        format!("the file has {} bytes", meta.size),
                    );
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                        res.headers_mut().insert(CONTENT_RANGE, v);
                    }
                    return Ok(res);
                }
                RangeAsk::Part(r) => {
                    let (meta, bytes) = state.svc.read_file(&caller, &path, Some(r)).await?;
                    (meta, bytes, Some(r))
                }
            }
        }
    };
    if not_modified(&headers, &meta)? {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        meta_headers(&mut res, &meta);
        return Ok(res);
    }
    let len = bytes.len();
    let mut res = Response::new(Body::from(bytes));
    meta_headers(&mut res, &meta);
    res.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(r) = range {
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.start + len as u64 - 1, meta.size)) {
            res.headers_mut().insert(CONTENT_RANGE, v);
        }
    }
    Ok(res)
}

/// Headers only: what GET would send, without reading the content.
#[utoipa::path(head, operation_id = "head_file", path = "/v1/files/{path}", tag = "files", params(("path" = String, Path, description = "the file path after /v1/files/")), responses((status = 200, description = "headers of the file", headers(("ETag" = String), ("Content-Length" = u64), ("Content-Type" = String))), (status = 404, description = "not_found")))]
pub async fn head(State(state): State<AppState>, Authed(caller): Authed, uri: Uri) -> ApiResult<Response> {
    let path = path_of(&uri)?;
    let meta = state.svc.stat_file(&caller, &path).await?;
    let mut res = StatusCode::OK.into_response();
    meta_headers(&mut res, &meta);
    res.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(meta.size));
    Ok(res)
}

/// Delete a file; `If-Match` honoured.
#[utoipa::path(delete, operation_id = "delete_file", path = "/v1/files/{path}", tag = "files", params(("path" = String, Path, description = "the file path after /v1/files/"),
    ("If-Match" = Option<String>, Header, description = "delete only if the file's ETag is one of these")), responses((status = 204, description = "deleted"), (status = 404, description = "not_found")))]
pub async fn remove(
    State(state): State<AppState>,
    Authed(caller): Authed,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = path_of(&uri)?;
    let precondition = match etags(&headers, IF_MATCH)? {
        Some(tags) => Precondition::IfMatch(tags),
        None => Precondition::None,
    };
    state.svc.delete_file(&caller, &path, precondition).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    prefix: Option<String>,
    recursive: Option<String>,
    delimiter: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Files under `prefix` in path order: only direct children unless `recursive=true`; with
/// `delimiter=/`, the folders directly under `prefix` as well, each once (as an S3 listing with a
/// delimiter).
#[utoipa::path(get, operation_id = "list_files", path = "/v1/files", tag = "files", params(
    ("prefix" = Option<String>, Query, description = "a directory such as /docs/", example = "/docs/"),
    ("recursive" = Option<bool>, Query, description = "every file under the prefix, at any depth"),
    ("delimiter" = Option<String>, Query, description = "`/`: list the folders under the prefix too (not with recursive=true)", example = "/"),
    ("limit" = Option<u32>, Query, description = "items per page, 1 to 1000 (default 100)"),
    ("cursor" = Option<String>, Query, description = "the previous page's next_cursor")),
    responses((status = 200, description = "a page of files (and, with delimiter=/, folders) in path order", body = Page<ListedItem>)))]
pub async fn list(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let recursive = bool_param(&q.recursive, "recursive")?;
    let limit = num_param(&q.limit, "limit")?;
    let (prefix, cursor) = (q.prefix.as_deref(), q.cursor.as_deref());
    let page = match q.delimiter.as_deref() {
        None => {
            let files = state.svc.list_files(&caller, prefix, recursive, limit, cursor).await?;
            Page { items: files.items.into_iter().map(ListedEntry::File).collect(), next_cursor: files.next_cursor }
        }
        Some("/") if recursive => {
            return Err(ApiError::invalid("`delimiter=/` lists one folder: leave out `recursive=true`"))
        }
        Some("/") => state.svc.list_folder(&caller, prefix, limit, cursor).await?,
        Some(_) => return Err(ApiError::invalid("`delimiter` may only be `/`")),
    };
    Ok(Json(page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(h: &str, size: u64) -> Option<(u64, u64)> {
        match parse_range(h, size) {
            RangeAsk::Part(r) => Some((r.start, r.end)),
            _ => None,
        }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(part("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(part("bytes=900-", 1000), Some((900, 1000)));
        assert_eq!(part("bytes=-100", 1000), Some((900, 1000)));
        assert_eq!(part("bytes=990-2000", 1000), Some((990, 1000)));
        assert_eq!(part("bytes=-5000", 1000), Some((0, 1000)));
        assert!(matches!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable));
        assert!(matches!(parse_range("bytes=0-1,5-6", 1000), RangeAsk::Whole));
        assert!(matches!(parse_range("items=0-1", 1000), RangeAsk::Whole));
        assert!(matches!(parse_range("bytes=5-1", 1000), RangeAsk::Whole));
    }
}
