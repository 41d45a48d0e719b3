//! The browsable API reference at `/docs`: Swagger UI over this server's `/openapi.json`, its
//! files compiled into the binary (`assets/docs`, see the README there), so it needs no network.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes) of every file the page loads.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/docs/swagger-ui-bundle.js"),
    ),
    ("swagger-ui.css", "text/css; charset=utf-8", include_bytes!("../../assets/docs/swagger-ui.css")),
    ("init.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/docs/init.js")),
    ("favicon-32x32.png", "image/png", include_bytes!("../../assets/docs/favicon-32x32.png")),
];

const PAGE: &[u8] = include_bytes!("../../assets/docs/index.html");

/// The files change only with the binary: an hour in a browser's cache is safe.
const CACHE: &str = "public, max-age=3600";

/// The API reference page.
#[utoipa::path(get, operation_id = "api_docs", path = "/docs", tag = "operations", security(()),
    responses((status = 200, description = "an HTML page rendering /openapi.json (Swagger UI)", content_type = "text/html")))]
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE).into_response()
}

/// A script, style sheet or icon of the reference page.
#[utoipa::path(get, operation_id = "api_docs_asset", path = "/docs/{asset}", tag = "operations", security(()),
    params(("asset" = String, Path, description = "swagger-ui-bundle.js, swagger-ui.css, init.js or favicon-32x32.png")),
    responses((status = 200, description = "the file", content_type = "*/*"),
        (status = 404, description = "not_found: no such file")))]
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, CACHE)], *bytes).into_response()
        }
        None => crate::error::error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no file {name:?} in /docs; the page is GET /docs"),
        ),
    }
}
