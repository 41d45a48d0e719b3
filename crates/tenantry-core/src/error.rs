//! The one error type of the domain and the stable codes of API.md §2. The HTTP layer maps
//! [`ErrorCode`] to a status in exactly one place; everything else only picks a code.

use std::fmt;

/// Stable machine-readable error codes (API.md §2). Never rename one: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidPath,
    InvalidSlug,
    InvalidRequest,
    Unauthenticated,
    Forbidden,
    TenantMismatch,
    TenantSuspended,
    QuotaExceeded,
    /// The monthly call allowance is spent: `quota_exceeded`, but answered with 429 (API.md §2).
    AllowanceExceeded,
    FeatureNotInTier,
    NotFound,
    TenantNotFound,
    Conflict,
    PreconditionFailed,
    TooLarge,
    RateLimited,
    /// The server's disk (or its filesystem quota) is full: the change was not made. Not the
    /// client's fault, but not a fault of the server's code either, so it gets its own code and
    /// a message that says what to do, instead of `internal`.
    StorageFull,
    /// The database cannot be reached right now (a PostgreSQL server restarting, a network cut):
    /// 503 with `Retry-After`; service resumes by itself once it answers again.
    StorageUnavailable,
    /// Anything the client could not have caused; its details are logged, never answered.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidSlug => "invalid_slug",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TenantMismatch => "tenant_mismatch",
            ErrorCode::TenantSuspended => "tenant_suspended",
            ErrorCode::QuotaExceeded | ErrorCode::AllowanceExceeded => "quota_exceeded",
            ErrorCode::FeatureNotInTier => "feature_not_in_tier",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TenantNotFound => "tenant_not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain error: a stable code and words for a human. For `Internal` the message is for the
/// log only; the HTTP layer never sends it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields for the error body, e.g. a quota's `limit` and `current` use.
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), details: None }
    }

    /// The disk is full: 507 `storage_full`; the change was rolled back.
    pub fn storage_full() -> Self {
        Error::new(
            ErrorCode::StorageFull,
            "the server's storage is full, so nothing was changed; retry once the operator has freed disk space",
        )
    }

    /// A hard limit that a change would cross (API.md §8): 403 `quota_exceeded` with the limit
    /// and the current use in the body.
    pub fn quota_exceeded(quota: &str, limit: u64, current: u64) -> Self {
        let mut details = serde_json::Map::new();
        details.insert("quota".into(), quota.into());
        details.insert("limit".into(), limit.into());
        details.insert("current".into(), current.into());
        Error {
            code: ErrorCode::QuotaExceeded,
            message: if quota.starts_with("max_") {
                format!(
                    "{quota} is {limit}; {current} in use, and this change would go over it \
                     (an operator raises it: `tenantry tenant update SLUG --quota {quota}=N`, or a larger `--tier`)"
                )
            } else {
                format!("{quota} is {limit}; {current} in use, and this change would go over it")
            },
            details: Some(details),
        }
    }
    /// `feature_not_in_tier`: the tenant's limits (`tier`, with `overridden` when its own
    /// quotas took the feature away) do not include `what`; `lift` is the command that would.
    pub fn feature_not_in_tier(what: &str, tier: &str, overridden: bool, lift: Option<&str>) -> Self {
        let why = if overridden {
            format!("{what}: turned off for this tenant by its quotas (its tier '{tier}' has the feature)")
        } else {
            format!("the '{tier}' tier does not include {what}")
        };
        let how = lift.map(|cmd| format!("; an operator can change that: `{cmd}`")).unwrap_or_default();
        Self::new(ErrorCode::FeatureNotInTier, format!("{why}{how}"))
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    /// The database cannot be reached: the client is told to come back in a second (the cause
    /// is the backend's to log).
    pub fn storage_unavailable() -> Self {
        let mut e =
            Self::new(ErrorCode::StorageUnavailable, "the database cannot be reached right now; try again shortly");
        e.details = Some(serde_json::Map::from_iter([("retry_after".to_owned(), serde_json::Value::from(1))]));
        e
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::Unauthenticated,
            "missing, unknown, revoked or expired key; send `Authorization: Bearer <key>`",
        )
    }
    pub fn rate_limited(per_minute: u64, retry_after_secs: u64) -> Self {
        let per_minute = per_minute.max(1);
        let burst = crate::ratelimit::burst_for(per_minute);
        let mut details = serde_json::Map::new();
        details.insert("limit".into(), per_minute.into());
        details.insert("burst".into(), burst.into());
        details.insert("retry_after".into(), retry_after_secs.into());
        Error {
            code: ErrorCode::RateLimited,
            message: format!(
                "the tenant's rate limit is {per_minute} requests a minute, in bursts of up to {burst}; \
                 retry in {retry_after_secs} s (max_requests_per_minute, of the tier or the tenant's quotas)"
            ),
            details: Some(details),
        }
    }
    /// Too many of something held at once (`what`, e.g. "event streams open"), `max` allowed.
    pub fn too_many_held(what: &str, max: usize, retry_after_secs: u64) -> Self {
        let mut details = serde_json::Map::new();
        details.insert("limit".into(), max.into());
        details.insert("retry_after".into(), retry_after_secs.into());
        Error {
            code: ErrorCode::RateLimited,
            message: format!(
                "the tenant has {max} {what} open, the most allowed; close one, or retry in {retry_after_secs} s"
            ),
            details: Some(details),
        }
    }

    pub fn tenant_not_found(slug: &str) -> Self {
        Self::new(ErrorCode::TenantNotFound, format!("tenant '{slug}' not found"))
    }
}
