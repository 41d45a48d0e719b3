//! Bundle imports on SQLite. Staging writes file bytes into `file_content` rows that no `files`
//! row points at yet (listed in `import_files`), and records into `import_records`, in ordinary
//! small write jobs that take their turn with every other tenant's writes. `commit_import` then
//! publishes the tenant's whole import in one transaction that writes metadata rows and the
//! search index (the indexed files' terms, read from their inline content, into segments of
//! their own: `search::SegmentBatch`), so it is atomic without holding the shared writer for the
//! time it takes to write the bytes. An
//! import that is aborted, or interrupted by a crash, is swept: its staged bytes deleted.

use crate::blobs::{Doomed, Pending, EXTERNAL_OVER};
use crate::error::corrupt;
use crate::error::sql_error;
use crate::files::{current_file, drop_content_tx, store_content_tx, upsert_file_row_tx, Body, ContentRef, FileRow};
use crate::journal::{journal_tx, quota_warnings_tx};
use crate::memory::{upsert_memory_row_tx, StoredEntry};
use crate::search::{memory_doc, SegmentBatch};
use crate::store::SqliteStore;
use crate::usage::{add_usage_tx, usage_tx};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::Arc;
use tenantry_core::events::Journal;
use tenantry_core::ids::TenantId;
use tenantry_core::import::{
    ConflictPolicy, Held, ImportPlan, ImportReport, ImportSettings, Landing, Resolution, StagedFile, StagedRecord,
    Step, Tally,
};
use tenantry_core::quota::{self, StorageLimits, UsageDelta};
use tenantry_core::search::{DocKind, IndexDoc};
use tenantry_core::store::{ImportStore, StoredUsage, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};

/// Deletes a staged import's rows and the bytes only it points at. Returns the external bodies
/// they named, to unlink once this has committed.
fn drop_import_tx(tx: &Connection, tenant: &str, import: &str) -> Result<Vec<String>> {
    let named: Vec<String> = tx
        .prepare_cached(
            "SELECT c.blob FROM import_files i JOIN file_content c ON c.id = i.content_id AND c.tenant_id = i.tenant_id
             WHERE i.tenant_id = ?1 AND i.import_id = ?2 AND c.blob IS NOT NULL",
        )
        .and_then(|mut s| s.query_map([tenant, import], |r| r.get(0))?.collect())
        .map_err(sql_error)?;
    tx.execute(
        "DELETE FROM file_content WHERE tenant_id = ?1 AND id IN
           (SELECT content_id FROM import_files WHERE tenant_id = ?1 AND import_id = ?2 AND content_id IS NOT NULL)",
        [tenant, import],
    )
    .map_err(sql_error)?;
    forget_import_tx(tx, tenant, import)?;
    Ok(named)
}

/// Deletes a published import's staging rows (its bytes now belong to files).
fn forget_import_tx(tx: &Connection, tenant: &str, import: &str) -> Result<()> {
    for table in ["import_files", "import_records"] {
        tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1 AND import_id = ?2"), [tenant, import])
            .map_err(sql_error)?;
    }
    tx.execute("DELETE FROM imports WHERE tenant_id = ?1 AND id = ?2", [tenant, import]).map_err(sql_error)?;
    Ok(())
}

/// Drops every staged import: run when the store opens, when no import can be in progress.
pub(crate) fn sweep_imports_tx(tx: &Connection) -> Result<u64> {
    let imports: Vec<(String, String)> = tx
        .prepare("SELECT tenant_id, id FROM imports")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(sql_error)?;
    for (tenant, id) in &imports {
        // The bodies they named are left to the sweep of unnamed bodies that follows.
        drop_import_tx(tx, tenant, id)?;
    }
    Ok(imports.len() as u64)
}

fn check_import(tx: &Connection, tenant: &TenantId, import: &str) -> Result<()> {
    let open: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM imports WHERE tenant_id = ?1 AND id = ?2)")
        .and_then(|mut s| s.query_row([tenant.as_str(), import], |r| r.get(0)))
        .map_err(sql_error)?;
    if open {
        Ok(())
    } else {
        Err(Error::internal("the tenant has no such import open (swept or already finished)"))
    }
}

// A file the index reads is always stored inline, where publishing reads its terms from.
const _: () = assert!(tenantry_core::search::MAX_INDEXED_BYTES <= EXTERNAL_OVER);

/// A staged file as read back for publishing.
struct Staged {
    path: String,
    size: i64,
    etag: String,
    content_type: String,
    created_at: i64,
    updated_at: i64,
    content_id: Option<i64>,
    /// The content of a file staged as indexed, whose terms are read from it if it lands.
    text: Option<Vec<u8>>,
    indexed: bool,
}

/// Publishing state: the running report and usage deltas (the core's `Tally`, which its
/// `Landing` fills as it decides where each item lands).
struct Publish<'a> {
    tx: &'a Connection,
    /// External bodies no longer named, unlinked after the commit.
    doomed: Doomed,
    tenant: &'a TenantId,
    policy: ConflictPolicy,
    tally: Tally,
    /// The index documents of what lands, written as segments of their own.
    index: SegmentBatch,
}

impl Publish<'_> {
    fn drop_content(&mut self, content: ContentRef) -> Result<()> {
        self.doomed.push(drop_content_tx(self.tx, self.tenant, content)?);
        Ok(())
    }

    fn write_file(&mut self, path: &str, f: Staged, content_id: i64, version: i64) -> Result<()> {
        let row = FileRow {
            path,
            size: f.size,
            etag: &f.etag,
            version,
            content_type: &f.content_type,
            created_at: f.created_at,
            updated_at: f.updated_at,
            content_id,
        };
        upsert_file_row_tx(self.tx, self.tenant, &row)?;
        if f.indexed && f.text.is_none() {
            return Err(corrupt("a file staged as indexed has no inline content"));
        }
        let index = f.text.as_deref().and_then(IndexDoc::of_file);
        self.index.reindex(self.tx, DocKind::File, path, index)
    }

    fn file(&mut self, f: Staged) -> Result<()> {
        let mut landing = Landing::file(self.policy, &f.path, f.size, f.content_id.is_some());
        loop {
            let current = current_file(self.tx, self.tenant, landing.name())?;
            let held = current.as_ref().map(|c| Held { same: Some(c.etag == f.etag), size: c.size });
            match landing.held(held, &mut self.tally)? {
                Step::LookAgain => continue,
                Step::Stay => {
                    return match f.content_id {
                        Some(id) => self.drop_content(ContentRef { id, size: f.size }),
                        None => Ok(()),
                    }
                }
                Step::Land => {
                    let content_id = f.content_id.ok_or_else(|| corrupt("staged file without its bytes"))?;
                    let version = match &current {
                        Some(c) => {
                            self.drop_content(c.content())?;
                            c.version + 1
                        }
                        None => 1,
                    };
                    return self.write_file(landing.name(), f, content_id, version);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_memory(
        &mut self,
        namespace: &str,
        key: &str,
        value: &str,
        expires_at: Option<Timestamp>,
        created_at: Timestamp,
        updated_at: Timestamp,
        index: IndexDoc,
    ) -> Result<()> {
        let entry = StoredEntry { namespace, key, value, expires_at, created_at, updated_at };
        upsert_memory_row_tx(self.tx, self.tenant, &entry)?;
        self.index.reindex(self.tx, DocKind::Memory, &memory_doc(namespace, key), Some(index))
    }

    /// The value and size of a live entry; an expired one counts as absent but its size is freed.
    fn current_memory(&self, ns: &str, key: &str, now: Timestamp) -> Result<Option<(String, i64, bool)>> {
        self.tx
            .prepare_cached(
                "SELECT value, size, expires_at IS NULL OR expires_at > ?4 FROM memory
                 WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![self.tenant.as_str(), ns, key, now.millis()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(sql_error)
    }

    fn record(&mut self, record: StagedRecord, plan: &ImportPlan) -> Result<()> {
        match record {
            StagedRecord::Memory { namespace, key, value, expires_at, created_at, updated_at, index } => {
                let mut landing = Landing::memory(self.policy, &namespace, &key, value.len() as i64);
                loop {
                    let current = self.current_memory(&namespace, landing.name(), plan.at)?;
                    // An expired entry holds nothing live; its size is freed by the write over it.
                    let held = current.map(|(v, size, live)| Held { same: live.then_some(v == value), size });
                    match landing.held(held, &mut self.tally)? {
                        Step::LookAgain => continue,
                        Step::Stay => return Ok(()),
                        Step::Land => {
                            let (ns, at) = (&namespace, landing.name());
                            return self.write_memory(ns, at, &value, expires_at, created_at, updated_at, index);
                        }
                    }
                }
            }
            StagedRecord::Webhook {
                id,
                url,
                events,
                path_glob,
                enabled,
                disabled_reason,
                secret,
                created_at,
                created_by,
            } => {
                let events = serde_json::to_string(&events).map_err(|e| Error::internal(e.to_string()))?;
                let same: bool = self
                    .tx
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM webhooks WHERE tenant_id = ?1 AND url = ?2 AND events = ?3
                           AND path_glob IS ?4)",
                    )
                    .and_then(|mut s| s.query_row(params![self.tenant.as_str(), url, events, path_glob], |r| r.get(0)))
                    .map_err(sql_error)?;
                if same {
                    self.tally.report.webhooks.unchanged += 1;
                    return Ok(());
                }
                let count: i64 = self
                    .tx
                    .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE tenant_id = ?1")
                    .and_then(|mut s| s.query_row([self.tenant.as_str()], |r| r.get(0)))
                    .map_err(sql_error)?;
                quota::one_more_webhook(count.max(0) as u64, plan.max_webhooks)?;
                self.tx
                    .prepare_cached(
                        "INSERT INTO webhooks (id, url, events, path_glob, enabled, disabled_reason,
                           consecutive_failures, created_at, created_by, tenant_id, secret)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            id.as_str(),
                            url,
                            events,
                            path_glob,
                            enabled,
                            disabled_reason,
                            created_at.millis(),
                            created_by,
                            self.tenant.as_str(),
                            secret
                        ])
                    })
                    .map_err(sql_error)?;
                self.tally.report.webhooks.created += 1;
                Ok(())
            }
        }
    }
}

/// Applies the bundle's settings to the tenant row; domains another tenant holds are left out.
/// Returns those left out.
fn apply_settings_tx(tx: &Connection, tenant: &TenantId, s: &ImportSettings, at: Timestamp) -> Result<Vec<String>> {
    let mut domains = Vec::new();
    let mut taken = Vec::new();
    for d in &s.domains {
        let owner: Option<String> = tx
            .prepare_cached("SELECT tenant_id FROM tenant_domains WHERE domain = ?1")
            .and_then(|mut st| st.query_row([d], |r| r.get(0)).optional())
            .map_err(sql_error)?;
        match owner {
            Some(o) if o != tenant.as_str() => taken.push(d.clone()),
            _ => domains.push(d.clone()),
        }
    }
    let json = serde_json::to_string(&domains).map_err(|e| Error::internal(e.to_string()))?;
    tx.execute(
        "UPDATE tenants SET name = ?2, tier = ?3, quotas = ?4, metadata = ?5, domains = ?6, updated_at = ?7
         WHERE id = ?1",
        params![
            tenant.as_str(),
            s.name,
            s.tier,
            s.quotas.to_value().to_string(),
            s.metadata.to_string(),
            json,
            at.millis()
        ],
    )
    .map_err(sql_error)?;
    tx.execute("DELETE FROM tenant_domains WHERE tenant_id = ?1", [tenant.as_str()]).map_err(sql_error)?;
    for d in &domains {
        tx.execute("INSERT INTO tenant_domains (domain, tenant_id) VALUES (?1, ?2)", params![d, tenant.as_str()])
            .map_err(sql_error)?;
    }
    Ok(taken)
}

impl SqliteStore {
    /// A staging write: in the tenant's turn with the other writers, into an import still open.
    async fn staging_write<T: Send + 'static>(
        &self,
        scope: &TenantScope,
        import: &str,
        f: impl FnOnce(&Connection, &TenantId, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tenant, import) = (scope.tenant_id().clone(), import.to_owned());
        self.write_of(&tenant.clone(), move |tx| {
            check_import(tx, &tenant, &import)?;
            f(tx, &tenant, &import)
        })
        .await
    }
}

#[async_trait]
impl ImportStore for SqliteStore {
    async fn begin_import(&self, scope: &TenantScope, import: &str, at: Timestamp) -> Result<()> {
        let (tenant, import) = (scope.tenant_id().clone(), import.to_owned());
        self.write_of(&tenant.clone(), move |tx| {
            tx.execute(
                "INSERT INTO imports (id, tenant_id, started_at) VALUES (?1, ?2, ?3)",
                params![import, tenant.as_str(), at.millis()],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn stage_files(
        &self,
        scope: &TenantScope,
        import: &str,
        policy: ConflictPolicy,
        files: Vec<StagedFile>,
    ) -> Result<()> {
        let tenant = scope.tenant_id().clone();
        let needs_bytes = move |tx: &Connection, tenant: &TenantId, f: &StagedFile| -> Result<bool> {
            let held_same = current_file(tx, tenant, f.path.as_str())?.map(|c| c.etag == f.etag);
            Ok(!matches!(policy.resolve(held_same), Resolution::Unchanged | Resolution::Skip))
        };
        // Bodies over the limit go to files of their own, written (and fsynced) here, off the
        // writer, for the files that will need them as things stand now. Should that change by
        // the staging transaction, a file without one is staged inline, and an unneeded one is
        // unlinked.
        let large: Vec<usize> = (0..files.len()).filter(|&i| files[i].content.len() > EXTERNAL_OVER).collect();
        let files = Arc::new(files);
        let names: HashMap<usize, String> = if large.is_empty() {
            HashMap::new()
        } else {
            let (fs, t) = (files.clone(), tenant.clone());
            let needed: Vec<usize> = self
                .read_of(&tenant, move |conn| {
                    let mut needed = Vec::new();
                    for i in large {
                        if needs_bytes(conn, &t, &fs[i])? {
                            needed.push(i);
                        }
                    }
                    Ok(needed)
                })
                .await?;
            let (fs, t, blobs) = (files.clone(), tenant.clone(), self.blobs.clone());
            tokio::task::spawn_blocking(move || -> Result<HashMap<usize, String>> {
                let names = blobs.write_all(&t, needed.iter().map(|&i| fs[i].content.as_slice()))?;
                Ok(needed.into_iter().zip(names).collect())
            })
            .await
            .map_err(|e| Error::internal(format!("staging failed: {e}")))??
        };
        let pending = Pending::new(&tenant, names.values().cloned().collect());
        let ran = pending.ran();
        let result = self
            .staging_write(scope, import, move |tx, tenant, import| {
                let mut unused = Vec::new();
                for (i, f) in files.iter().enumerate() {
                    let external = names.get(&i);
                    let content_id = if needs_bytes(tx, tenant, f)? {
                        let body = match external {
                            Some(name) => Body::External(name),
                            None => Body::Inline(&f.content),
                        };
                        Some(store_content_tx(tx, tenant, None, body)?.0)
                    } else {
                        unused.extend(external.cloned());
                        None
                    };
                    // The terms are not staged: publishing reads them from the content again
                    // (always inline: an indexed file is at most MAX_INDEXED_BYTES), which costs
                    // less than writing, reading and erasing them here.
                    let indexed = f.indexed.then_some(1i64);
                    tx.prepare_cached(
                        "INSERT INTO import_files (tenant_id, import_id, n, path, size, etag, content_type, created_at,
                                   updated_at, content_id, indexed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            tenant.as_str(),
                            import,
                            f.n as i64,
                            f.path.as_str(),
                            f.content.len() as i64,
                            f.etag,
                            f.content_type,
                            f.created_at.millis(),
                            f.updated_at.millis(),
                            content_id,
                            indexed
                        ])
                    })
                    .map_err(sql_error)?;
                }
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(unused)
            })
            .await;
        pending.settle(&self.blobs, &result);
        // Named by no row, whether or not the transaction committed.
        self.blobs.remove(&tenant, &result?);
        Ok(())
    }

    async fn stage_records(&self, scope: &TenantScope, import: &str, records: Vec<(u64, StagedRecord)>) -> Result<()> {
        self.staging_write(scope, import, move |tx, tenant, import| {
            for (n, r) in &records {
                let kind = match r {
                    StagedRecord::Memory { .. } => "memory",
                    StagedRecord::Webhook { .. } => "webhook",
                };
                let json = serde_json::to_string(r).map_err(|e| Error::internal(e.to_string()))?;
                tx.prepare_cached(
                    "INSERT INTO import_records (tenant_id, import_id, n, kind, record) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![tenant.as_str(), import, *n as i64, kind, json]))
                .map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn commit_import(
        &self,
        scope: &TenantScope,
        import: &str,
        plan: ImportPlan,
        mut journal: Journal,
    ) -> Result<ImportReport> {
        let (scope, import, import_id) = (scope.clone(), import.to_owned(), import.to_owned());
        let scope_for_abort = scope.clone();
        let (on_commit, doomed) = self.after_files_commit(scope.tenant_id(), None);
        let result = self
            .write_journaled(&scope.tenant_id().clone(), Some(on_commit), move |tx, published| {
                let tenant = scope.tenant_id();
                check_import(tx, tenant, &import)?;
                let used = usage_tx(tx, tenant)?;
                let was_empty = used == StoredUsage::default();
                let mut p = Publish {
                    tx,
                    doomed,
                    tenant,
                    policy: plan.on_conflict,
                    tally: Tally::new(scope.slug().as_str(), plan.on_conflict),
                    index: SegmentBatch::new(tenant),
                };
                // Records first (they come first in a bundle), then files in bundle order.
                let records: Vec<String> = tx
                    .prepare_cached(
                        "SELECT record FROM import_records WHERE tenant_id = ?1 AND import_id = ?2 ORDER BY n",
                    )
                    .and_then(|mut s| s.query_map([tenant.as_str(), &import], |r| r.get(0))?.collect())
                    .map_err(sql_error)?;
                for json in records {
                    let record: StagedRecord = serde_json::from_str(&json).map_err(|_| corrupt("staged record"))?;
                    p.record(record, &plan)?;
                }
                // An indexed file's content comes with it (inline: at most MAX_INDEXED_BYTES); no
                // other file's content is read.
                let mut s = tx
                    .prepare_cached(
                        "SELECT f.path, f.size, f.etag, f.content_type, f.created_at, f.updated_at, f.content_id,
                                CASE WHEN f.indexed IS NOT NULL THEN
                                  (SELECT c.content FROM file_content c
                                   WHERE c.id = f.content_id AND c.tenant_id = f.tenant_id AND c.blob IS NULL)
                                END, f.indexed IS NOT NULL
                         FROM import_files f WHERE f.tenant_id = ?1 AND f.import_id = ?2 ORDER BY f.n",
                    )
                    .map_err(sql_error)?;
                let rows = s
                    .query_map([tenant.as_str(), &import], |r| {
                        Ok(Staged {
                            path: r.get(0)?,
                            size: r.get(1)?,
                            etag: r.get(2)?,
                            content_type: r.get(3)?,
                            created_at: r.get(4)?,
                            updated_at: r.get(5)?,
                            content_id: r.get(6)?,
                            text: r.get(7)?,
                            indexed: r.get(8)?,
                        })
                    })
                    .map_err(sql_error)?;
                for f in rows {
                    p.file(f.map_err(sql_error)?)?;
                }
                drop(s);
                p.index.finish(tx)?;
                // The limits, against the whole import at once.
                let limits = StorageLimits { max_storage_bytes: plan.max_storage_bytes, max_files: plan.max_files };
                let after = quota::storage(
                    used,
                    UsageDelta { bytes: p.tally.bytes_delta, files: p.tally.files_delta },
                    limits,
                )?;
                add_usage_tx(tx, tenant, p.tally.bytes_delta, p.tally.files_delta)?;
                match &plan.settings {
                    Some(settings) if plan.applies_settings(was_empty) => {
                        let before = crate::tenants::tenant_record(tx, tenant)?
                            .ok_or_else(|| Error::internal("the tenant importing has no record"))?;
                        let mut taken = apply_settings_tx(tx, tenant, settings, plan.at)?;
                        let mut after = settings.clone();
                        after.domains.retain(|d| !taken.contains(d));
                        taken.extend(plan.domains_taken.iter().cloned());
                        p.tally.report.settings_applied(ImportSettings::of_tenant(&before).changes_to(&after), &taken);
                    }
                    Some(_) => p.tally.report.settings_kept(plan.settings_choice),
                    None => {}
                }
                // Every staged byte row is now either a file's or deleted: forget the staging rows.
                forget_import_tx(tx, tenant.as_str(), &import)?;
                let report = p.tally.report;
                if let Some(event) = journal.event.as_mut() {
                    event.detail = Some(serde_json::to_value(&report).map_err(|e| Error::internal(e.to_string()))?);
                }
                journal_tx(tx, tenant, scope.slug().as_str(), journal, published)?;
                let warnings = quota::storage_warnings(used, after, limits);
                quota_warnings_tx(tx, tenant, scope.slug().as_str(), warnings, published)?;
                Ok(report)
            })
            .await;
        if result.is_err() {
            // The transaction rolled back, staged rows included: drop them now.
            self.abort_import(&scope_for_abort, &import_id).await?;
        }
        result
    }

    async fn abort_import(&self, scope: &TenantScope, import: &str) -> Result<()> {
        let (tenant, import) = (scope.tenant_id().clone(), import.to_owned());
        let named = self.write_of(scope.tenant_id(), move |tx| drop_import_tx(tx, tenant.as_str(), &import)).await?;
        self.blobs.remove(scope.tenant_id(), &named);
        Ok(())
    }
}
