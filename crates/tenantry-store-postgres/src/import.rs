//! Bundle imports on PostgreSQL. Staging writes file bytes as bodies (`file_chunks`) that no
//! `files` row points at yet, listed in `import_files` by `body_id`, and records into
//! `import_records`, each batch in a transaction of its own that holds only the import's row
//! (not the tenant's usage lock: the tenant's other writes go on while bytes are written).
//! `commit_import` then publishes the whole import in one transaction of the tenant that writes
//! metadata rows only, deciding each conflict against what the tenant holds at that moment. An
//! import that fails, is aborted, or was abandoned by a node that stopped is dropped: its staged
//! rows deleted with the bodies only they named.

use crate::error::{corrupt, pg_error};
use crate::files::{current_file_tx, drop_body_tx, peek_etag_tx, upsert_file_row_tx, write_body_tx, FileRow};
use crate::journal::{journal_tx, warnings_tx};
use crate::memory::{current_memory_tx, upsert_memory_row_tx, MemoryRow};
use crate::rows::{tenant_from_row, TENANT_COLUMNS};
use crate::search::reindex_tx;
use crate::store::{add_usage, begin, commit, lock_usage, PgStore};
use crate::webhooks::{insert_webhook_row_tx, webhook_rows_tx};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tenantry_core::events::Journal;
use tenantry_core::ids::TenantId;
use tenantry_core::import::{
    ConflictPolicy, Held, ImportPlan, ImportReport, ImportSettings, Landing, Resolution, StagedFile, StagedRecord,
    Step, Tally,
};
use tenantry_core::quota::{self, StorageLimits, UsageDelta};
use tenantry_core::search::{DocKind, IndexDoc};
use tenantry_core::store::{ImportStore, StoredUsage, TenantScope};
use tenantry_core::time::{Clock, SystemClock, Timestamp};
use tenantry_core::webhook::Webhook;
use tenantry_core::{Error, Result};

/// The upkeep function the sweep needs: every import opened before a time, across tenants (the
/// server's role sees only the tenant its transaction set). It lists ids only; dropping one is
/// done in that tenant's own transaction.
pub(crate) const IMPORT_SQL: &str = r#"
CREATE FUNCTION tenantry_open_imports(p_started_before bigint)
    RETURNS TABLE (tenant_id text, import_id text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT i.tenant_id, i.id FROM imports i WHERE i.started_at < p_started_before ORDER BY i.tenant_id, i.id $$;
REVOKE EXECUTE ON FUNCTION tenantry_open_imports(bigint) FROM PUBLIC;
"#;

/// The signatures of the functions in [`IMPORT_SQL`], for the grants.
pub(crate) const IMPORT_FUNCTIONS: &[&str] = &["tenantry_open_imports(bigint)"];

/// An import opened this long ago and still open is abandoned: the node running it stopped.
/// (Several nodes share the database, so an import merely open may be in progress on another
/// node; none takes a day: its upload gives up after a minute without a byte.)
pub(crate) const ABANDONED_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// Staged rows read back per query while publishing (bounds the memory a large import takes).
const PAGE: i64 = 64;

fn json_error(e: serde_json::Error) -> Error {
    Error::internal(e.to_string())
}

/// Whether the tenant has the import open, and, until the transaction ends, the import's row
/// locked: shared by staging transactions, exclusive for the commit and the drop. A drop (or
/// commit) therefore waits for staging batches in flight, and reads what they wrote; a batch
/// that comes after finds the import gone.
async fn lock_import(tx: &Transaction<'_>, tenant: &TenantId, import: &str, exclusive: bool) -> Result<bool> {
    let sql = if exclusive {
        "SELECT 1 FROM imports WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    } else {
        "SELECT 1 FROM imports WHERE tenant_id = $1 AND id = $2 FOR SHARE"
    };
    Ok(tx.query_opt(sql, &[&tenant.as_str(), &import]).await.map_err(pg_error)?.is_some())
}

fn no_such_import() -> Error {
    Error::internal("the tenant has no such import open (swept or already finished)")
}

/// Deletes a published import's staging rows (its bytes now belong to files, or were dropped).
async fn forget_import_tx(tx: &Transaction<'_>, tenant: &TenantId, import: &str) -> Result<()> {
    for sql in [
        "DELETE FROM import_files WHERE tenant_id = $1 AND import_id = $2",
        "DELETE FROM import_records WHERE tenant_id = $1 AND import_id = $2",
        "DELETE FROM imports WHERE tenant_id = $1 AND id = $2",
    ] {
        tx.execute(sql, &[&tenant.as_str(), &import]).await.map_err(pg_error)?;
    }
    Ok(())
}

/// Deletes a staged import's rows and the bodies only it names (staged bodies belong to no file).
/// Nothing to do when the import is not open.
async fn drop_import_tx(tx: &Transaction<'_>, tenant: &TenantId, import: &str) -> Result<()> {
    // First the import's row: waits for staging batches in flight, whose rows the statements
    // below then see (each statement reads what committed before it began).
    lock_import(tx, tenant, import, true).await?;
    // A body lives in `file_chunks` only: one statement for all of them (an import may have
    // staged hundreds of thousands of files).
    tx.execute(
        "DELETE FROM file_chunks WHERE tenant_id = $1 AND body_id IN
           (SELECT body_id FROM import_files WHERE tenant_id = $1 AND import_id = $2 AND body_id IS NOT NULL)",
        &[&tenant.as_str(), &import],
    )
    .await
    .map_err(pg_error)?;
    forget_import_tx(tx, tenant, import).await
}

/// Drops a staged import in the tenant's own transaction (after the tenant's other writes: the
/// usage lock, which a commit of the import holds too).
async fn drop_import(store: &PgStore, tenant: &TenantId, import: &str) -> Result<()> {
    let mut conn = store.conn_of(tenant).await?;
    let tx = begin(&mut conn, tenant).await?;
    lock_usage(&store.places, &tx, tenant).await?;
    drop_import_tx(&tx, tenant, import).await?;
    commit(tx).await
}

/// Drops the imports that were opened more than [`ABANDONED_AFTER_MS`] ago and never finished:
/// run when the store opens and with each round of event pruning (`Upkeep::prune_events`), each
/// import in its tenant's own transaction.
pub(crate) async fn sweep_abandoned_imports(store: &PgStore) -> Result<()> {
    let before: i64 = SystemClock.now().millis() - ABANDONED_AFTER_MS;
    let mut open = Vec::new();
    for (place, db) in store.places.for_upkeep("abandoned imports").await {
        let found = async {
            let conn = db?.client().await?;
            conn.query("SELECT tenant_id, import_id FROM tenantry_open_imports($1)", &[&before]).await.map_err(pg_error)
        };
        match (found.await, place) {
            (Ok(rows), _) => open.extend(rows),
            (Err(e), None) => return Err(e),
            (Err(e), Some(t)) => tracing::warn!("could not look for {t}'s abandoned imports: {}", e.message),
        }
    }
    let mut swept: u64 = 0;
    for row in open {
        let (tenant, import): (String, String) = (row.get::<_, String>(0), row.get::<_, String>(1));
        let Some(tenant) = TenantId::parse(&tenant) else {
            tracing::warn!(
                tenant = tenant.as_str(),
                import = import.as_str(),
                "an open import names no valid tenant id; left alone"
            );
            continue;
        };
        match drop_import(store, &tenant, &import).await {
            Ok(()) => swept += 1,
            // One import that cannot be dropped now (its tenant being purged, say) does not keep
            // the store from opening: the next sweep tries again.
            Err(e) => tracing::warn!(
                tenant = tenant.as_str(),
                import = import.as_str(),
                error = %e,
                "could not drop an abandoned import"
            ),
        }
    }
    if swept > 0 {
        tracing::warn!(swept, "dropped imports that were interrupted before they committed");
    }
    Ok(())
}

/// A staged file as read back for publishing.
struct Staged {
    path: String,
    size: i64,
    etag: String,
    content_type: String,
    created_at: i64,
    updated_at: i64,
    body_id: Option<i64>,
    index: Option<IndexDoc>,
}

/// Publishing state: the running report and usage deltas (the core's `Tally`, which its
/// `Landing` fills as it decides where each item lands).
struct Publish<'a, 't> {
    tx: &'a Transaction<'t>,
    tenant: &'a TenantId,
    policy: ConflictPolicy,
    tally: Tally,
}

impl Publish<'_, '_> {
    async fn write_file(&mut self, path: &str, f: &Staged, body_id: i64, version: i64) -> Result<()> {
        let row = FileRow {
            path,
            size: f.size,
            etag: &f.etag,
            version,
            content_type: &f.content_type,
            created_at: f.created_at,
            updated_at: f.updated_at,
            body_id,
        };
        upsert_file_row_tx(self.tx, self.tenant, &row).await?;
        reindex_tx(self.tx, self.tenant, DocKind::File, path, f.index.as_ref()).await
    }

    async fn file(&mut self, f: Staged) -> Result<()> {
        let mut landing = Landing::file(self.policy, &f.path, f.size, f.body_id.is_some());
        loop {
            let current = current_file_tx(self.tx, self.tenant, landing.name()).await?;
            let held = current.as_ref().map(|c| Held { same: Some(c.etag == f.etag), size: c.size });
            match landing.held(held, &mut self.tally)? {
                Step::LookAgain => continue,
                Step::Stay => {
                    return match f.body_id {
                        Some(body_id) => drop_body_tx(self.tx, self.tenant, body_id).await,
                        None => Ok(()),
                    }
                }
                Step::Land => {
                    let body_id = f.body_id.ok_or_else(|| corrupt("staged file without its bytes"))?;
                    let version = match &current {
                        Some(c) => {
                            drop_body_tx(self.tx, self.tenant, c.body_id).await?;
                            c.version + 1
                        }
                        None => 1,
                    };
                    return self.write_file(landing.name(), &f, body_id, version).await;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_memory(
        &mut self,
        namespace: &str,
        key: &str,
        value: &str,
        expires_at: Option<Timestamp>,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Result<()> {
        let row = MemoryRow {
            namespace,
            key,
            value,
            size: value.len() as i64,
            expires_at: expires_at.map(Timestamp::millis),
            created_at: created_at.millis(),
            updated_at: updated_at.millis(),
        };
        // Writes the row and reindexes the entry from its value (the index the service staged
        // is the same one: the value's searchable text).
        upsert_memory_row_tx(self.tx, self.tenant, &row).await
    }

    /// The value and size of an entry, and whether it is live at `now`; an expired one counts
    /// as absent but its size is freed by the write over it.
    async fn current_memory(&self, ns: &str, key: &str, now: i64) -> Result<Option<(String, i64, bool)>> {
        Ok(current_memory_tx(self.tx, self.tenant, ns, key).await?.map(|c| {
            let live = c.expires_at.is_none_or(|e| e > now);
            (c.value, c.size, live)
        }))
    }

    async fn record(&mut self, record: StagedRecord, plan: &ImportPlan) -> Result<()> {
        let now = plan.at.millis();
        match record {
            StagedRecord::Memory { namespace, key, value, expires_at, created_at, updated_at, index: _ } => {
                let mut landing = Landing::memory(self.policy, &namespace, &key, value.len() as i64);
                loop {
                    let current = self.current_memory(&namespace, landing.name(), now).await?;
                    // An expired entry holds nothing live; its size is freed by the write over it.
                    let held = current.map(|(v, size, live)| Held { same: live.then_some(v == value), size });
                    match landing.held(held, &mut self.tally)? {
                        Step::LookAgain => continue,
                        Step::Stay => return Ok(()),
                        Step::Land => {
                            let (ns, at) = (&namespace, landing.name());
                            return self.write_memory(ns, at, &value, expires_at, created_at, updated_at).await;
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
                let hooks: Vec<(Webhook, String)> = webhook_rows_tx(self.tx, self.tenant).await?;
                // The same subscription (url, events, glob) is there already.
                let same = hooks.iter().any(|(h, _)| h.url == url && h.events == events && h.path_glob == path_glob);
                if same {
                    self.tally.report.webhooks.unchanged += 1;
                    return Ok(());
                }
                quota::one_more_webhook(hooks.len() as u64, plan.max_webhooks)?;
                let hook = Webhook {
                    id,
                    url,
                    events,
                    path_glob,
                    enabled,
                    disabled_reason,
                    consecutive_failures: 0,
                    created_at,
                    created_by,
                };
                insert_webhook_row_tx(self.tx, self.tenant, &hook, &secret).await?;
                self.tally.report.webhooks.created += 1;
                Ok(())
            }
        }
    }
}

/// Applies the bundle's settings to the tenant's row and its domains. A domain is the primary
/// key of `tenant_domains` across tenants, and row-level security hides other tenants' rows: a
/// domain whose insert does nothing is held by another tenant, and left out. Returns the domains
/// applied and those left out.
async fn apply_settings_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    s: &ImportSettings,
    at: Timestamp,
) -> Result<(Vec<String>, Vec<String>)> {
    tx.execute("DELETE FROM tenant_domains WHERE tenant_id = $1", &[&tenant.as_str()]).await.map_err(pg_error)?;
    let mut domains: Vec<String> = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for d in &s.domains {
        if domains.contains(d) || taken.contains(d) {
            continue;
        }
        let inserted: u64 = tx
            .execute(
                "INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2) ON CONFLICT (domain) DO NOTHING",
                &[&d.as_str(), &tenant.as_str()],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 1 {
            domains.push(d.clone());
        } else {
            taken.push(d.clone());
        }
    }
    let json: String = serde_json::to_string(&domains).map_err(json_error)?;
    let quotas: String = s.quotas.to_value().to_string();
    let metadata: String = s.metadata.to_string();
    let at: i64 = at.millis();
    tx.execute(
        "UPDATE tenants SET name = $2, tier = $3, quotas = $4, metadata = $5, domains = $6, updated_at = $7
         WHERE id = $1",
        &[&tenant.as_str(), &s.name, &s.tier, &quotas, &metadata, &json, &at],
    )
    .await
    .map_err(pg_error)?;
    Ok((domains, taken))
}

impl PgStore {
    /// The publishing transaction of `commit_import`, in the tenant's turn; on an error nothing
    /// of it is left (the staged rows included: the caller drops them).
    async fn publish_import(
        &self,
        scope: &TenantScope,
        import: &str,
        plan: &ImportPlan,
        mut journal: Journal,
    ) -> Result<ImportReport> {
        let tenant = scope.tenant_id();
        let slug = scope.slug().as_str();
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        let used: StoredUsage = lock_usage(&self.places, &tx, tenant).await?;
        if !lock_import(&tx, tenant, import, true).await? {
            return Err(no_such_import());
        }
        let was_empty = used == StoredUsage::default();
        let mut p = Publish { tx: &tx, tenant, policy: plan.on_conflict, tally: Tally::new(slug, plan.on_conflict) };
        // Records first (they come first in a bundle), then files in bundle order.
        let mut after: i64 = i64::MIN;
        loop {
            let rows = tx
                .query(
                    "SELECT n, record FROM import_records WHERE tenant_id = $1 AND import_id = $2 AND n > $3
                     ORDER BY n LIMIT $4",
                    &[&tenant.as_str(), &import, &after, &PAGE],
                )
                .await
                .map_err(pg_error)?;
            let last_page = (rows.len() as i64) < PAGE;
            for row in rows {
                after = row.get::<_, i64>(0);
                let json: String = row.get::<_, String>(1);
                let record: StagedRecord = serde_json::from_str(&json).map_err(|_| corrupt("staged record"))?;
                p.record(record, plan).await?;
            }
            if last_page {
                break;
            }
        }
        let mut after: i64 = i64::MIN;
        loop {
            let rows = tx
                .query(
                    "SELECT n, path, size, etag, content_type, created_at, updated_at, body_id, index_doc
                     FROM import_files WHERE tenant_id = $1 AND import_id = $2 AND n > $3 ORDER BY n LIMIT $4",
                    &[&tenant.as_str(), &import, &after, &PAGE],
                )
                .await
                .map_err(pg_error)?;
            let last_page = (rows.len() as i64) < PAGE;
            for row in rows {
                after = row.get::<_, i64>(0);
                let index: Option<String> = row.get::<_, Option<String>>(8);
                let index: Option<IndexDoc> = match index {
                    Some(j) => Some(serde_json::from_str(&j).map_err(|_| corrupt("staged index"))?),
                    None => None,
                };
                let f = Staged {
                    path: row.get::<_, String>(1),
                    size: row.get::<_, i64>(2),
                    etag: row.get::<_, String>(3),
                    content_type: row.get::<_, String>(4),
                    created_at: row.get::<_, i64>(5),
                    updated_at: row.get::<_, i64>(6),
                    body_id: row.get::<_, Option<i64>>(7),
                    index,
                };
                p.file(f).await?;
            }
            if last_page {
                break;
            }
        }
        // The limits, against the whole import at once.
        let limits = StorageLimits { max_storage_bytes: plan.max_storage_bytes, max_files: plan.max_files };
        let (bytes_delta, files_delta) = (p.tally.bytes_delta, p.tally.files_delta);
        let after_usage = quota::storage(used, UsageDelta { bytes: bytes_delta, files: files_delta }, limits)?;
        add_usage(&tx, tenant, bytes_delta, files_delta).await?;
        match &plan.settings {
            Some(settings) if plan.applies_settings(was_empty) => {
                let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
                let before = tx
                    .query_opt(sql.as_str(), &[&tenant.as_str()])
                    .await
                    .map_err(pg_error)?
                    .ok_or_else(|| Error::internal("the tenant importing has no record"))?;
                let before = tenant_from_row(&before)?;
                let (applied, mut taken) = apply_settings_tx(&tx, tenant, settings, plan.at).await?;
                let mut after_settings = settings.clone();
                after_settings.domains = applied;
                taken.extend(plan.domains_taken.iter().cloned());
                p.tally.report.settings_applied(ImportSettings::of_tenant(&before).changes_to(&after_settings), &taken);
            }
            Some(_) => p.tally.report.settings_kept(plan.settings_choice),
            None => {}
        }
        let report = p.tally.report;
        // Every staged body is now a file's or dropped: forget the staging rows.
        forget_import_tx(&tx, tenant, import).await?;
        if let Some(event) = journal.event.as_mut() {
            event.detail = Some(serde_json::to_value(&report).map_err(json_error)?);
        }
        let mut published = Vec::new();
        journal_tx(&tx, tenant, slug, journal, &mut published).await?;
        warnings_tx(&tx, tenant, slug, quota::storage_warnings(used, after_usage, limits), &mut published).await?;
        commit(tx).await?;
        self.publish(tenant, &published);
        Ok(report)
    }
}

#[async_trait]
impl ImportStore for PgStore {
    async fn begin_import(&self, scope: &TenantScope, import: &str, at: Timestamp) -> Result<()> {
        let tenant = scope.tenant_id();
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        let at: i64 = at.millis();
        tx.execute(
            "INSERT INTO imports (tenant_id, id, started_at) VALUES ($1, $2, $3)",
            &[&tenant.as_str(), &import, &at],
        )
        .await
        .map_err(pg_error)?;
        commit(tx).await
    }

    async fn stage_files(
        &self,
        scope: &TenantScope,
        import: &str,
        policy: ConflictPolicy,
        files: Vec<StagedFile>,
    ) -> Result<()> {
        let tenant = scope.tenant_id();
        // The index entries (as JSON, which `commit_import` reads back), read from the contents
        // before the transaction, off the runtime's workers: none of it waits on a lock.
        let (files, indexes) = tokio::task::spawn_blocking(move || {
            let indexes = files
                .iter()
                .map(|f| match f.indexed.then(|| IndexDoc::of_file(&f.content)).flatten() {
                    Some(doc) => serde_json::to_string(&doc).map(Some).map_err(json_error),
                    None => Ok(None),
                })
                .collect::<Result<Vec<Option<String>>>>();
            (files, indexes)
        })
        .await
        .map_err(|e| Error::internal(format!("staging failed: {e}")))?;
        let indexes = indexes?;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        // Not the usage lock: staging changes nothing the tenant's other writes read, and a
        // batch of bytes would hold them up. The import's row, shared, keeps a drop or commit
        // of this import waiting until the batch is in.
        if !lock_import(&tx, tenant, import, false).await? {
            return Err(no_such_import());
        }
        for (f, index) in files.iter().zip(indexes) {
            // As things stand now; `commit_import` decides again.
            let held_same = peek_etag_tx(&tx, tenant, f.path.as_str()).await?.map(|etag| etag == f.etag);
            let body_id: Option<i64> = match policy.resolve(held_same) {
                Resolution::Unchanged | Resolution::Skip => None,
                _ => Some(write_body_tx(&tx, tenant, &f.content).await?),
            };
            let (n, size): (i64, i64) = (f.n as i64, f.content.len() as i64);
            let (created_at, updated_at): (i64, i64) = (f.created_at.millis(), f.updated_at.millis());
            tx.execute(
                "INSERT INTO import_files (tenant_id, import_id, n, path, size, etag, content_type, created_at,
                   updated_at, body_id, index_doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &tenant.as_str(),
                    &import,
                    &n,
                    &f.path.as_str(),
                    &size,
                    &f.etag,
                    &f.content_type,
                    &created_at,
                    &updated_at,
                    &body_id,
                    &index,
                ],
            )
            .await
            .map_err(pg_error)?;
        }
        commit(tx).await
    }

    async fn stage_records(&self, scope: &TenantScope, import: &str, records: Vec<(u64, StagedRecord)>) -> Result<()> {
        let tenant = scope.tenant_id();
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        if !lock_import(&tx, tenant, import, false).await? {
            return Err(no_such_import());
        }
        for (n, r) in &records {
            let kind: &str = match r {
                StagedRecord::Memory { .. } => "memory",
                StagedRecord::Webhook { .. } => "webhook",
            };
            let json: String = serde_json::to_string(r).map_err(json_error)?;
            let n: i64 = *n as i64;
            tx.execute(
                "INSERT INTO import_records (tenant_id, import_id, n, kind, record) VALUES ($1, $2, $3, $4, $5)",
                &[&tenant.as_str(), &import, &n, &kind, &json],
            )
            .await
            .map_err(pg_error)?;
        }
        commit(tx).await
    }

    async fn commit_import(
        &self,
        scope: &TenantScope,
        import: &str,
        plan: ImportPlan,
        journal: Journal,
    ) -> Result<ImportReport> {
        let result = self.publish_import(scope, import, &plan, journal).await;
        if let Err(e) = &result {
            // The transaction rolled back, staged rows included: drop them now. The error the
            // caller hears is the commit's; staged rows a failed drop leaves are swept later.
            if let Err(abort) = self.abort_import(scope, import).await {
                tracing::warn!(
                    tenant = scope.slug().as_str(),
                    import,
                    error = %abort,
                    commit_error = %e,
                    "could not drop a failed import's staged rows"
                );
            }
        }
        result
    }

    async fn abort_import(&self, scope: &TenantScope, import: &str) -> Result<()> {
        drop_import(self, scope.tenant_id(), import).await
    }
}
