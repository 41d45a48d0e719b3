//! Bundles (API.md §9): `GET /v1/tenants/{slug}/export` streams a `.tenantry` bundle
//! (docs/BUNDLE.md); `POST /v1/tenants/{slug}/import` reads one as the request streams in,
//! staging as it goes, and commits only after the whole bundle verified. The bundle is written on a blocking thread into a bounded channel that feeds
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
use tenantry_core::import::ImportReport;
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

/// Bytes of file content read ahead of the bundle writer at most (one larger file is let through
/// alone).
const READ_AHEAD_BYTES: usize = 8 << 20;

type ReadAhead = tenantry_core::Result<(tenantry_core::model::FileMeta, Vec<u8>, tokio::sync::OwnedSemaphorePermit)>;

/// Reads every file of the export in path order into `tx`, each holding its share of the byte
/// budget until the writer is done with it.
async fn read_files_ahead(svc: Arc<Tenantry>, e: Export, tx: mpsc::Sender<ReadAhead>) {
    let budget = Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_BYTES));
    let mut after: Option<String> = None;
    loop {
        let page = match svc.export_files(&e, after.clone()).await {
            Ok(page) => page,
            Err(x) => {
                let _ = tx.send(Err(x)).await;
                return;
            }
        };
        for f in &page {
            let share = (f.size as usize).clamp(1, READ_AHEAD_BYTES) as u32;
            let Ok(permit) = budget.clone().acquire_many_owned(share).await else { return };
            let item = match svc.export_file(&e, &f.path).await {
                Ok(Some((meta, content))) => Ok((meta, content, permit)),
                Ok(None) => continue, // deleted since it was listed: not in the bundle
                Err(x) => Err(x),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return; // the writer stopped (client gone), or the error is on its way
            }
        }
        match page.last() {
            Some(last) => after = Some(last.path.as_str().to_owned()),
            None => return,
        }
    }
}

fn write_bundle(svc: &Arc<Tenantry>, e: &Export, out: ChannelWriter) -> Result<(), String> {
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
    // Files are read ahead on the runtime while this thread compresses and hashes the ones
    // before: reading and writing overlap, within a budget of bytes read ahead.
    let (tx, mut rx) = mpsc::channel(64);
    let reader = rt.spawn(read_files_ahead(svc.clone(), e.clone(), tx));
    while let Some(next) = rx.blocking_recv() {
        let (meta, content, _budget) = next.map_err(|x| fail("files", x.message))?;
        let bmeta = tenantry_bundle::FileMeta {
            path: meta.path.as_str().to_owned(),
            size: content.len() as u64,
            sha256: meta.etag.trim_matches('"').to_owned(),
            content_type: meta.content_type.clone(),
            created_at: meta.created_at.to_string(),
            updated_at: meta.updated_at.to_string(),
        };
        // The ETag is the content's SHA-256, read in the same row: no second hash.
        w.file_with_known_hash(&bmeta, &content).map_err(|x| x.to_string())?;
    }
    rt.block_on(reader).map_err(|x| x.to_string())?;
    let (_, mut out) = w.finish().map_err(|x| x.to_string())?;
    std::io::Write::flush(&mut out).map_err(|x| x.to_string())
}

/// The whole tenant as one `.tenantry` bundle: settings, files, memory, webhooks (secrets with
/// `include_secrets=true`), key metadata (never secrets). Operator only.
#[utoipa::path(get, operation_id = "export_tenant", path = "/v1/tenants/{slug}/export", tag = "tenants",
    params(("slug" = String, Path, description = "the tenant's slug", example = "acme"), ("include_secrets" = Option<bool>, Query, description = "include webhook signing secrets")),
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

#[derive(Deserialize)]
pub struct ImportQuery {
    on_conflict: Option<String>,
    settings: Option<String>,
}

/// How long an import upload may send nothing before it is given up (the whole-request timeout
/// does not apply to imports, which may be large; this one keeps a stalled client from holding
/// an import open).
const IMPORT_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// A blocking `Read` over the chunks of a request body pumped in by an async task.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

/// Staged items are handed to the store in batches of about this many bytes.
const STAGE_BATCH_BYTES: usize = 8 << 20;
const STAGE_BATCH_RECORDS: usize = 500;

/// Hands staged batches to the store while the bundle reader goes on with the next one: reading
/// (decompressing, hashing) and writing overlap, with one batch in flight at most.
struct Stager {
    svc: Arc<Tenantry>,
    target: tenantry_core::service::Import,
    in_flight: Option<tokio::task::JoinHandle<tenantry_core::Result<()>>>,
}

enum Batch {
    Files(Vec<tenantry_core::import::StagedFile>),
    Records(Vec<(u64, tenantry_core::import::StagedRecord)>),
}

impl Stager {
    /// Waits for the batch in flight, if any.
    fn settle(&mut self, rt: &tokio::runtime::Handle) -> tenantry_core::Result<()> {
        match self.in_flight.take() {
            Some(h) => rt.block_on(h).map_err(|e| tenantry_core::Error::internal(format!("staging failed: {e}")))?,
            None => Ok(()),
        }
    }

    fn send(&mut self, rt: &tokio::runtime::Handle, batch: Batch) -> tenantry_core::Result<()> {
        self.settle(rt)?;
        let (svc, target) = (self.svc.clone(), self.target.clone());
        self.in_flight = Some(rt.spawn(async move {
            match batch {
                Batch::Files(f) if !f.is_empty() => svc.stage_import_files(&target, f).await,
                Batch::Records(r) if !r.is_empty() => svc.stage_import_records(&target, r).await,
                _ => Ok(()),
            }
        }));
        Ok(())
    }
}

/// Reads, validates and stages the whole bundle, then commits; on any failure drops what was
/// staged. Runs on a blocking thread.
fn read_and_import(
    svc: Arc<Tenantry>,
    mut imp: tenantry_core::service::Import,
    input: ChannelReader,
) -> Result<ImportReport, tenantry_core::Error> {
    use tenantry_bundle::{BundleError, Item};
    use tenantry_core::Error;
    let rt = tokio::runtime::Handle::current();
    let mut stager = Stager { svc: svc.clone(), target: imp.clone(), in_flight: None };
    let mut files = Vec::new();
    let mut file_bytes = 0usize;
    let mut records = Vec::new();
    // The first error of ours stops the reader; it is reported instead of the reader's own.
    let mut failure: Option<Error> = None;
    let max_file = svc.config().max_file_bytes;
    let stop = |failure: &mut Option<Error>, e: Error| {
        *failure = Some(e);
        BundleError::Io(std::io::Error::other("import stopped"))
    };
    let read = tenantry_bundle::read(input, |item| {
        match item {
            Item::Record { kind, record } => match svc.import_record(&mut imp, kind, record) {
                Ok(Some(r)) => records.push(r),
                Ok(None) => {}
                Err(e) => return Err(stop(&mut failure, e)),
            },
            Item::File { meta, content } => {
                if meta.size > max_file {
                    let e = Error::new(
                        tenantry_core::ErrorCode::TooLarge,
                        format!("{} is {} bytes; this server's maximum file size is {max_file}", meta.path, meta.size),
                    );
                    return Err(stop(&mut failure, e));
                }
                if let Err(e) = imp.take_room_for_file(meta.size) {
                    return Err(stop(&mut failure, e));
                }
                let mut bytes = Vec::with_capacity(meta.size as usize);
                std::io::Read::read_to_end(content, &mut bytes)?;
                file_bytes += bytes.len();
                let staged = svc.import_file(
                    &mut imp,
                    &meta.path,
                    &meta.sha256,
                    &meta.content_type,
                    &meta.created_at,
                    &meta.updated_at,
                    bytes,
                );
                match staged {
                    Ok(f) => files.push(f),
                    Err(e) => return Err(stop(&mut failure, e)),
                }
            }
        }
        if file_bytes >= STAGE_BATCH_BYTES || files.len() >= STAGE_BATCH_RECORDS {
            file_bytes = 0;
            if let Err(e) = stager.send(&rt, Batch::Files(std::mem::take(&mut files))) {
                return Err(stop(&mut failure, e));
            }
        }
        if records.len() >= STAGE_BATCH_RECORDS {
            if let Err(e) = stager.send(&rt, Batch::Records(std::mem::take(&mut records))) {
                return Err(stop(&mut failure, e));
            }
        }
        Ok(())
    });
    let staged = match read {
        Ok((header, _)) => stager
            .send(&rt, Batch::Records(records))
            .and_then(|_| stager.send(&rt, Batch::Files(files)))
            .and_then(|_| stager.settle(&rt))
            .map(|_| header),
        Err(e) => {
            // A batch still in flight must land before its rows are dropped.
            let settled = stager.settle(&rt);
            Err(failure.or(settled.err()).unwrap_or_else(|| Error::invalid_request(e.to_string())))
        }
    };
    match staged {
        Ok(header) => {
            let started = std::time::Instant::now();
            let report = rt.block_on(svc.commit_import(imp, &header.tenant))?;
            // How long the publishing transaction held the writer (BENCHMARKS.md reports it).
            tracing::info!(
                tenant = %report.tenant,
                files = report.files.created + report.files.replaced + report.files.renamed,
                commit_ms = started.elapsed().as_millis() as u64,
                "import committed"
            );
            Ok(report)
        }
        Err(e) => {
            if let Err(cleanup) = rt.block_on(svc.abort_import(imp)) {
                tracing::error!("dropping a failed import's staged rows failed: {}", cleanup.message);
            }
            Err(e)
        }
    }
}

/// Loads a `.tenantry` bundle (the raw request body) into the tenant. The whole bundle is read
/// and verified before anything changes; then everything is applied in one transaction.
/// `on_conflict` decides for paths and memory keys that hold different content (the same
/// content is never a conflict): `skip` (default) keeps the tenant's, `overwrite` takes the
/// bundle's, `rename` keeps both (docs/BUNDLE.md has the suffix rule). `settings` decides whose
/// name, tier, quotas, metadata and domains the tenant has after: `auto` (default) takes the
/// bundle's when the tenant held no files and no memory or with `on_conflict=overwrite`, `keep`
/// never, `replace` always; the answer lists each setting changed. Operator only.
#[utoipa::path(post, operation_id = "import_tenant", path = "/v1/tenants/{slug}/import", tag = "tenants",
    params(("slug" = String, Path, description = "the tenant's slug", example = "acme"), ("on_conflict" = Option<String>, Query, description = "skip (default), overwrite or rename"),
        ("settings" = Option<String>, Query, description = "auto (default: the bundle's settings when the tenant held no data, or with on_conflict=overwrite), keep or replace")),
    request_body(content = inline(crate::schemas::Binary), content_type = "application/octet-stream", description = "the bundle (docs/BUNDLE.md), any content type"),
    responses((status = 200, description = "what the import did", body = ImportReport)))]
pub async fn import(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: axum::body::Body,
) -> ApiResult<axum::Json<ImportReport>> {
    use http_body_util::BodyExt;
    let imp = state.svc.begin_import(&caller, &slug, q.on_conflict.as_deref(), q.settings.as_deref()).await?;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::spawn(async move {
        let mut body = body;
        loop {
            let frame = match tokio::time::timeout(IMPORT_IDLE, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    let _ = tx.send(Err(std::io::Error::other(format!("the upload failed: {e}")))).await;
                    break;
                }
                Err(_) => {
                    let msg = format!("the upload sent nothing for {} s", IMPORT_IDLE.as_secs());
                    let _ = tx.send(Err(std::io::Error::other(msg))).await;
                    break;
                }
            };
            if let Ok(data) = frame.into_data() {
                if tx.send(Ok(data)).await.is_err() {
                    break; // the reader stopped (damaged bundle): the rest is not needed
                }
            }
        }
    });
    let svc = state.svc.clone();
    let input = ChannelReader { rx, chunk: Bytes::new() };
    let report = tokio::task::spawn_blocking(move || read_and_import(svc, imp, input))
        .await
        .map_err(|e| tenantry_core::Error::internal(format!("import task failed: {e}")))??;
    Ok(axum::Json(report))
}
