//! [`ApiError`]: a domain error on its way out, and [`status_of`], the one mapping from error
//! codes to HTTP statuses (API.md §2). The JSON body, with its request id, is written by
//! `edge::finish` from the [`ErrorInfo`] this leaves in the response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tenantry_core::{Error, ErrorCode};

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidPath | ErrorCode::InvalidSlug | ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden
        | ErrorCode::TenantMismatch
        | ErrorCode::TenantSuspended
        | ErrorCode::QuotaExceeded
        | ErrorCode::FeatureNotInTier => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::TenantNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited | ErrorCode::AllowanceExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorCode::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Left in a response's extensions for `edge::finish` to render.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError(Error::invalid_request(message))
    }
}

pub fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut res = status.into_response();
    res.extensions_mut().insert(ErrorInfo { code, message, details: None });
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Error { code, message, details } = self.0;
        if code == ErrorCode::Internal {
            // The cause is logged with the request id by edge::finish; the client learns nothing.
            let mut res = error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into());
            res.extensions_mut().insert(InternalCause(message));
            return res;
        }
        let mut res = error_response(status_of(code), code.as_str(), message);
        if let (Some(d), Some(info)) = (details, res.extensions_mut().get_mut::<ErrorInfo>()) {
            info.details = Some(d);
        }
        res
    }
}

/// The hidden cause of a 500, for the log.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_507_and_only_internal_is_500() {
        assert_eq!(status_of(ErrorCode::StorageFull), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(status_of(ErrorCode::Internal), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_of(ErrorCode::TooLarge), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
