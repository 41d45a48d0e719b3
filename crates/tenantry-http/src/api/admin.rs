//! The admin web page at `/admin` (API.md §10; docs/ADMIN.md): one HTML shell for every
//! `/admin/...` address (the page draws itself from the URL, so links can be shared), and its
//! script and style sheet, compiled into the binary (`assets/admin`). The page is a client of
//! the `/v1` API with the session cookie, so it holds no rule of its own.
//!
//! Every answer carries a Content-Security-Policy that allows only this server's own script,
//! style and connections (no inline script, no other origin) and forbids framing.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const SHELL: &str = include_str!("../../assets/admin/index.html");
const SCRIPT: &[u8] = include_bytes!("../../assets/admin/app.js");
const STYLE: &[u8] = include_bytes!("../../assets/admin/app.css");

/// (name, content type, bytes) of every file the page loads.
const ASSETS: &[(&str, &str, &[u8])] =
    &[("app.js", "text/javascript; charset=utf-8", SCRIPT), ("app.css", "text/css; charset=utf-8", STYLE)];

/// Only this origin's files and API; no inline script or style; images only inline (`data:`);
/// never inside a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The shell, with `{{VERSION}}` replaced by a digest of the assets: their addresses change
/// with their content, so they can be cached for good and an upgrade is seen at once.
fn shell() -> &'static str {
    static SHELL_HTML: OnceLock<String> = OnceLock::new();
    SHELL_HTML.get_or_init(|| {
        let mut digest = Sha256::new();
        for (_, _, bytes) in ASSETS {
            digest.update(bytes);
        }
        SHELL.replace("{{VERSION}}", &hex::encode(&digest.finalize()[..8]))
    })
}

fn protected(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    resp
}

/// The admin page.
#[utoipa::path(get, operation_id = "admin_page", path = "/admin", tag = "operations", security(()),
    responses((status = 200, description = "the admin web page (HTML; it signs in with POST /v1/auth/login)", content_type = "text/html")))]
pub async fn page() -> Response {
    protected(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], shell())
            .into_response(),
    )
}

/// The admin page, addressed as a folder.
#[utoipa::path(get, operation_id = "admin_page_folder", path = "/admin/", tag = "operations", security(()),
    responses((status = 200, description = "the admin web page", content_type = "text/html")))]
pub async fn page_folder() -> Response {
    page().await
}

/// Any address under the admin page: `assets/app.js` and `assets/app.css` are its files; every
/// other one is the page itself, which shows what the address names (`t/{slug}/files`, ...).
#[utoipa::path(get, operation_id = "admin_page_at", path = "/admin/{page}", tag = "operations", security(()),
    params(("page" = String, Path, description = "a page of the admin (`tenants`, `t/acme/files`, ...), or `assets/app.js` / `assets/app.css`")),
    responses((status = 200, description = "the admin web page, or one of its files", content_type = "*/*"),
        (status = 404, description = "not_found: no such file under assets/")))]
pub async fn page_at(Path(address): Path<String>) -> Response {
    let Some(name) = address.strip_prefix("assets/") else { return page().await };
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        // The shell asks for each file by its content's digest: safe to keep for a year.
        Some((_, content_type, bytes)) => protected(
            (
                [(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")],
                *bytes,
            )
                .into_response(),
        ),
        None => protected(crate::error::error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no file {name:?} in /admin/assets: there are app.js and app.css"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_names_each_asset_by_its_digest_and_has_no_inline_script() {
        let html = shell();
        assert!(!html.contains("{{VERSION}}"));
        let v = html.split("app.js?v=").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(v.len(), 16);
        assert!(html.contains(&format!("app.css?v={v}")));
        // Every <script> loads a file: the policy (script-src 'self') would block inline code.
        for script in html.split("<script").skip(1) {
            assert!(script.trim_start().starts_with("src=\"/admin/assets/"), "inline script: {script}");
        }
        assert!(!html.contains("style=\""), "inline style attribute");
    }
}
