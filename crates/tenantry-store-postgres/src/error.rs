//! PostgreSQL errors in the core's terms.

use tenantry_core::{Error, ErrorCode};

/// A unique violation is a `conflict`; a row refused by row-level security is `forbidden` (a bug
/// if it ever happens: the core scopes every write to the caller's tenant first); anything else
/// is `internal`, with PostgreSQL's words for the log.
pub fn pg_error(e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    if unreachable(&e) {
        tracing::warn!("the database cannot be reached: {}", describe(&e));
        return Error::storage_unavailable();
    }
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => Error::conflict(e.to_string()),
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => Error::new(ErrorCode::Forbidden, e.to_string()),
        _ => Error::internal(format!("postgres: {}", describe(&e))),
    }
}

/// Whether `e` says the server is gone or going rather than the statement was wrong: a closed
/// connection, a connection exception (class 08), or the server shutting down or starting up.
pub fn unreachable(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03")
        })
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The server's message when there is one (tokio-postgres's Display says only "db error"), else
/// the error with its causes (for a TLS failure it says only "error performing TLS handshake";
/// the certificate's fault is in its source).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut said = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        said = format!("{said}: {cause}");
        source = cause.source();
    }
    said
}

/// A stored value that does not parse: the database holds something this binary never wrote.
pub(crate) fn corrupt(what: &str) -> Error {
    Error::internal(format!("a stored {what} does not parse"))
}
