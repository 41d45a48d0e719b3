//! Bundles (API.md §9): `GET /v1/tenants/{slug}/export` streams a `.tenantry` bundle
//! (docs/BUNDLE.md). The bundle is written on a blocking thread into a bounded channel that feeds
//! the response body, so memory stays flat however large the tenant; if anything fails midway
//! the stream stops short and the bundle fails verification instead of looking complete.

use crate::edge::{bool_param, ApiQuery, Authed};
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use tenantry_core::service::{Export, Tenantry};
use tokio::sync::mpsc;

#[derive(Deserialize)]
pub struct ExportQuery {
    include_secrets: Option<String>,
}

/// A `Write` that hands 256 KiB chunks to the response body.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(256 << 10)));
        self.tx.blocking_send(chunk).map_err(|_| std::io::Error::other("the client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 << 10 {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn write_bundle(svc: &Tenantry, e: &Export, out: ChannelWriter) -> Result<(), String> {
    let rt = tokio::runtime::Handle::current();
    let fail = |what: &str, m: String| format!("{what}: {m}");
    let header = tenantry_bundle::Header::new(e.settings.clone(), svc.now().to_string());
    let mut w = tenantry_bundle::Writer::new(out, &header).map_err(|x| x.to_string())?;
    for key in rt.block_on(svc.export_keys(e)).map_err(|x| fail("keys", x.message))? {
        w.record("keys", &serde_json::to_value(&key).unwrap_or_default()).map_err(|x| x.to_string())?;
    }
    for hook in rt.block_on(svc.export_webhooks(e)).map_err(|x| fail("webhooks", x.message))? {
        w.record("webhooks", &hook).map_err(|x| x.to_string())?;
    }
    let mut after = None;
    loop {
        let page = rt.block_on(svc.export_memory(e, after.clone())).map_err(|x| fail("memory", x.message))?;
        for m in &page {
            w.record("memory", &serde_json::to_value(m).unwrap_or_default()).map_err(|x| x.to_string())?;
        }
        match page.last() {
            Some(last) => after = Some((last.namespace.clone(), last.key.clone())),
            None => break,
        }
    }
    let mut after: Option<String> = None;
    loop {
        let page = rt.block_on(svc.export_files(e, after.clone())).map_err(|x| fail("files", x.message))?;
        for f in &page {
            // Deleted since it was listed: not in the bundle.
            let Some((meta, content)) =
                rt.block_on(svc.export_file(e, &f.path)).map_err(|x| fail("file", x.message))?
            else {
                continue;
            };
            let bmeta = tenantry_bundle::FileMeta {
                path: meta.path.as_str().to_owned(),
                size: content.len() as u64,
                sha256: meta.etag.trim_matches('"').to_owned(),
                content_type: meta.content_type.clone(),
                created_at: meta.created_at.to_string(),
                updated_at: meta.updated_at.to_string(),
            };
            w.file(&bmeta, content.as_slice()).map_err(|x| x.to_string())?;
        }
        match page.last() {
            Some(last) => after = Some(last.path.as_str().to_owned()),
            None => break,
        }
    }
    let (_, mut out) = w.finish().map_err(|x| x.to_string())?;
    std::io::Write::flush(&mut out).map_err(|x| x.to_string())
}

/// The whole tenant as one `.tenantry` bundle: settings, files, memory, webhooks (secrets with
/// `include_secrets=true`), key metadata (never secrets). Operator only.
#[utoipa::path(get, path = "/v1/tenants/{slug}/export", tag = "tenants",
    params(("slug" = String, Path), ("include_secrets" = Option<bool>, Query, description = "include webhook signing secrets")),
    responses((status = 200, description = "the bundle (docs/BUNDLE.md)", content_type = "application/vnd.tenantry.bundle")))]
pub async fn export(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let include_secrets = bool_param(&q.include_secrets, "include_secrets")?;
    let export = state.svc.begin_export(&caller, &slug, include_secrets).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let svc: Arc<Tenantry> = state.svc.clone();
    let name = slug.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter { tx, buf: Vec::with_capacity(256 << 10) };
        if let Err(e) = write_bundle(&svc, &export, out) {
            tracing::error!(tenant = %name, "export stopped: {e}");
        }
    });
    let mut res = Response::new(crate::live::channel_body(rx));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.tenantry.bundle"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{slug}.tenantry\"")) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
