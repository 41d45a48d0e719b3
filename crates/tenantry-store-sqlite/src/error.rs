//! How storage failures become core errors.

use tenantry_core::Error;

/// A SQLite failure as the core's error: a full disk is `storage_full` (a client may retry once
/// space is freed), anything else is internal.
pub(crate) fn sql_error(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => {
            tracing::error!("sqlite: {e}: the data directory's disk is full; writes are refused until space is freed");
            Error::storage_full()
        }
        _ => Error::internal(format!("sqlite: {e}")),
    }
}

/// A stored value that does not parse: the database was changed outside tenantry.
pub(crate) fn corrupt(what: &str) -> Error {
    Error::internal(format!("stored {what} does not parse"))
}

/// Whether a statement broke a constraint (where it is asked, a uniqueness one).
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}
