//! How a client command fails: one line on standard error (one JSON document under `--json`) and
//! an exit status that tells the kind of failure apart, as `tenantry --help` lists them.

use serde_json::json;

/// The exit statuses of client commands (0 is success).
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_REFUSED: u8 = 4;
pub const EXIT_UNREACHABLE: u8 = 5;

/// Printed by `tenantry --help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  failed (a server error, a broken audit chain, a local file that cannot be read or written)
  2  usage: a wrong argument or option, no key to send, or a request the server calls invalid (400)
  3  not found: the tenant, file, key or value does not exist (404)
  4  refused: the key, role, tenant state, a quota or the rate limit does not allow it (401, 403, 409, 412, 413, 429)
  5  the server cannot be reached
With --json, a failure is one JSON document, on standard output and (one line) on standard error:
  {\"error\": {\"code\": \"...\", \"message\": \"...\", \"exit_status\": N}}";

/// A failure whose kind is known: its message is the one line printed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    /// The server's error code, or `usage`, `unreachable`.
    pub code: String,
    pub exit_status: u8,
}

impl Failure {
    pub fn error(exit_status: u8, code: impl Into<String>, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure { message: message.into(), code: code.into(), exit_status })
    }
}

/// The code of a failure whose command printed its own JSON document saying what failed (so
/// `--json` still prints exactly one).
pub const REPORTED: &str = "reported";

/// A usage error: the command line asks for something that cannot be done as given.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure::error(EXIT_USAGE, "usage", message)
}

/// The exit status for an HTTP error status.
pub fn exit_status_of(http_status: u16) -> u8 {
    match http_status {
        400 => EXIT_USAGE,
        404 => EXIT_NOT_FOUND,
        401 | 403 | 409 | 412 | 413 | 429 => EXIT_REFUSED,
        _ => EXIT_FAILED,
    }
}

/// Prints `error` as the command's one line (or JSON document) and returns its exit status.
pub fn report(error: &anyhow::Error, as_json: bool) -> u8 {
    let known = error.chain().find_map(|e| e.downcast_ref::<Failure>());
    let (code, exit_status) = known.map(|f| (f.code.as_str(), f.exit_status)).unwrap_or(("failed", EXIT_FAILED));
    let message = format!("{error:#}");
    if as_json && known.is_some_and(|f| f.code == REPORTED) {
        // The command's document, which says what failed, is on standard output already.
        eprintln!("tenantry: {message}");
        return exit_status;
    }
    if as_json {
        let doc = json!({"error": {"code": code, "message": message, "exit_status": exit_status}});
        println!("{doc}");
        eprintln!("{doc}");
    } else {
        eprintln!("tenantry: {message}");
    }
    exit_status
}
