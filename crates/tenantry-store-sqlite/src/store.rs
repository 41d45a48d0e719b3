//! [`SqliteStore`]: tenantry-core's storage traits on SQLite. Each trait method is one
//! transaction on a blocking thread; a change and its audit entry commit together.

use crate::audit::append_audit_tx;
use crate::blobs::{Blobs, Doomed, Pending, EXTERNAL_OVER};
use crate::cache::FileCache;
use crate::counters;
use crate::journal::{journal_tx, quota_warnings_tx, Published, Sinks};
use crate::placement::{DedicatedPools, Routes};
use crate::pool::{sql_error, OpenOptions, Pool};
use crate::search::reindex_tx;
use crate::tails::Log;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::Arc;
use tenantry_core::events::Journal;
use tenantry_core::ids::{KeyId, TenantId};
use tenantry_core::model::{AuditDraft, FileMeta, KeyRecord, Placement, Tenant, TenantStatus};
use tenantry_core::path::{PathPrefix, TenantPath};
use tenantry_core::quota;
use tenantry_core::role::Role;
use tenantry_core::search::DocKind;
use tenantry_core::secret::SecretHash;
use tenantry_core::slug::Slug;
use tenantry_core::store::{
    etag_of, ByteRange, FileListing, FileStore, FileWrite, Health, HeldFile, Precondition, StoreMetric, StoredUsage,
    TenantRegistry, TenantScope, UsageLog, WriteOutcome,
};
use tenantry_core::tier::QuotaOverrides;
use tenantry_core::time::Timestamp;
use tenantry_core::usage::Counters;
use tenantry_core::{Error, Result};

/// Dedicated databases one cross-tenant upkeep call visits at most.
const UPKEEP_DEDICATED_PER_CALL: usize = 8;

/// The name of the shared database inside the data dir.
pub const SHARED_DB: &str = "tenantry.db";

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) shared: Arc<Pool>,
    pub(crate) dedicated: Arc<DedicatedPools>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) cache: Arc<FileCache>,
    pub(crate) blobs: Arc<Blobs>,
    pub(crate) sinks: Sinks,
}

/// Checkpoints the whole WAL into the database and empties it, retrying while a reader or the
/// background checkpointer holds it back (the pragma reports that rather than failing).
fn truncate_wal(conn: &Connection) -> Result<()> {
    for _ in 0..250 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(sql_error)?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(Error::internal("the WAL could not be checkpointed within 5 s (a long read?)"))
}

/// A tenant's key for the writer's fair grouping.
pub(crate) fn owner_of(tenant: &TenantId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tenant.hash(&mut h);
    h.finish()
}

pub(crate) fn corrupt(what: &str) -> Error {
    Error::internal(format!("stored {what} does not parse"))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl SqliteStore {
    /// Opens the store in `data_dir` (which must exist), migrating an older schema.
    pub fn open(data_dir: &Path, opts: OpenOptions) -> Result<SqliteStore> {
        let shared = Arc::new(Pool::open(&data_dir.join(SHARED_DB), &opts)?);
        let store = SqliteStore {
            dedicated: Arc::new(DedicatedPools::new(data_dir, &opts, opts.max_open_dedicated)),
            routes: Arc::new(Routes::default()),
            shared,
            cache: Arc::new(FileCache::new(opts.cache_bytes)),
            blobs: Arc::new(Blobs::new(data_dir)),
            sinks: Sinks::default(),
        };
        crate::moves::recover(&store)?;
        Ok(store)
    }

    /// The pool holding `tenant`'s rows.
    pub(crate) fn pool_of(&self, tenant: &TenantId) -> Result<Arc<Pool>> {
        if self.routes.is_dedicated(tenant) {
            self.dedicated.get(tenant)
        } else {
            Ok(self.shared.clone())
        }
    }

    /// One write that journals a change of `tenant`: its events reach the sinks after the commit,
    /// after `then` has run.
    pub(crate) async fn write_journaled<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        then: Option<Box<dyn FnOnce() + Send>>,
        f: impl FnOnce(&Connection, &Published) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _pass = self.routes.enter(tenant).await;
        let published = Published::default();
        let hook = published.on_commit(tenant.clone(), self.sinks.clone(), then);
        let pool = self.pool_of(tenant)?;
        pool.write(Some(owner_of(tenant)), move |tx| f(tx, &published), Some(hook)).await
    }

    /// What a change of files does after it commits: the cached copies are dropped (of the file
    /// at `path`, or with `None` of every file of the tenant) and the external bodies the change
    /// stopped naming (pushed onto the returned list) are unlinked.
    pub(crate) fn after_files_commit(
        &self,
        tenant: &TenantId,
        path: Option<&str>,
    ) -> (Box<dyn FnOnce() + Send>, Doomed) {
        let doomed = Doomed::default();
        let (cache, blobs, d) = (self.cache.clone(), self.blobs.clone(), doomed.clone());
        let (tenant, path) = (tenant.clone(), path.map(str::to_owned));
        let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
            match path {
                Some(p) => cache.invalidate(&tenant, &p),
                None => cache.invalidate_tenant(&tenant),
            }
            d.unlink(&blobs, &tenant);
        });
        (hook, doomed)
    }

    /// A write of `tenant`'s rows (through its fence while a move is under way).
    pub(crate) async fn write_of<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _pass = self.routes.enter(tenant).await;
        let pool = self.pool_of(tenant)?;
        pool.write(Some(owner_of(tenant)), f, None).await
    }

    /// A read of `tenant`'s rows, on the blocking pool.
    pub(crate) async fn read_of<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        read_on(self.pool_of(tenant)?, f).await
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Cross-tenant upkeep (pruning, reclaiming) on the shared database and, round-robin, a few
    /// dedicated ones per call, so one round opens a bounded number of databases; returns the sum.
    pub(crate) async fn upkeep_write(
        &self,
        f: impl Fn(&Connection) -> Result<u64> + Send + Sync + 'static,
    ) -> Result<u64> {
        let f = Arc::new(f);
        let g = f.clone();
        let mut total = self.shared.write(None, move |tx| g(tx), None).await?;
        for tenant in self.routes.upkeep_window(UPKEEP_DEDICATED_PER_CALL) {
            let g = f.clone();
            total += self.write_of(&tenant, move |tx| g(tx)).await?;
        }
        Ok(total)
    }

    /// A read of the webhook outbox on the shared database and on each dedicated database whose
    /// tenant has webhooks.
    pub(crate) async fn webhook_read<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<T> + Send + Sync + 'static,
    ) -> Result<Vec<T>> {
        let f = Arc::new(f);
        let g = f.clone();
        let mut all = vec![self.read_shared(move |c| g(c)).await?];
        for tenant in self.routes.hooked() {
            let g = f.clone();
            all.push(self.read_of(&tenant, move |c| g(c)).await?);
        }
        Ok(all)
    }

    /// One write of the shared database (registry, cross-tenant upkeep) in the next group commit.
    pub(crate) async fn write_shared<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.shared.write(None, f, None).await
    }

    /// A read of the shared database (registry, cross-tenant queries).
    pub(crate) async fn read_shared<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        read_on(self.shared.clone(), f).await
    }
}

/// The tenant's record as this database holds it.
pub(crate) fn tenant_record(conn: &Connection, id: &TenantId) -> Result<Option<Tenant>> {
    conn.prepare_cached(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.as_str()], tenant_from_row).optional())
        .map_err(sql_error)?
        .transpose()
}

/// Runs a read on one of `pool`'s readers, on the blocking pool.
pub(crate) async fn read_on<T: Send + 'static>(
    pool: Arc<Pool>,
    f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || f(&pool.reader()))
        .await
        .map_err(|e| Error::internal(format!("store task failed: {e}")))?
}

fn tenant_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Tenant>> {
    let id: String = r.get(0)?;
    let slug: String = r.get(1)?;
    let status: String = r.get(4)?;
    let placement: String = r.get(5)?;
    let domains: String = r.get(6)?;
    let quotas: String = r.get(7)?;
    let metadata: String = r.get(8)?;
    let (name, tier, created, updated): (String, String, i64, i64) = (r.get(2)?, r.get(3)?, r.get(9)?, r.get(10)?);
    Ok((|| {
        Ok(Tenant {
            id: TenantId::parse(&id).ok_or_else(|| corrupt("tenant id"))?,
            slug: Slug::parse(&slug).map_err(|_| corrupt("slug"))?,
            name,
            tier,
            status: TenantStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            placement: Placement::parse(&placement).ok_or_else(|| corrupt("placement"))?,
            domains: serde_json::from_str(&domains).map_err(|_| corrupt("domains"))?,
            quotas: serde_json::from_str::<QuotaOverrides>(&quotas).map_err(|_| corrupt("quotas"))?,
            metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("metadata"))?,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
        })
    })())
}

const TENANT_COLUMNS: &str =
    "id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at";
const KEY_COLUMNS: &str = "id, tenant_id, name, role, prefix, hash, created_at, created_by, expires_at, revoked_at";
const FILE_COLUMNS: &str = "path, size, etag, version, content_type, created_at, updated_at";

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<Result<KeyRecord>> {
    let (id, tenant, name, role): (String, String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let prefix: Option<String> = r.get(4)?;
    let hash: Vec<u8> = r.get(5)?;
    let (created, created_by, expires, revoked): (i64, String, Option<i64>, Option<i64>) =
        (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?);
    Ok((|| {
        Ok(KeyRecord {
            id: KeyId::parse(&id).ok_or_else(|| corrupt("key id"))?,
            tenant_id: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant id"))?,
            name,
            role: Role::parse(&role).map_err(|_| corrupt("role"))?,
            prefix: prefix.map(|p| PathPrefix::parse(&p)).transpose().map_err(|_| corrupt("prefix"))?,
            hash: SecretHash::from_slice(&hash).ok_or_else(|| corrupt("key hash"))?,
            created_at: Timestamp::from_millis(created),
            created_by,
            expires_at: expires.map(Timestamp::from_millis),
            revoked_at: revoked.map(Timestamp::from_millis),
        })
    })())
}

fn file_from_row(r: &Row<'_>) -> rusqlite::Result<Result<FileMeta>> {
    let path: String = r.get(0)?;
    let (size, etag, version, content_type, created, updated): (i64, String, i64, String, i64, i64) =
        (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
    Ok(TenantPath::parse(&path).map_err(|_| corrupt("path")).map(|path| FileMeta {
        path,
        size: size as u64,
        etag,
        version: version as u64,
        content_type,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
    }))
}

pub(crate) fn write_tenant_row(tx: &Connection, t: &Tenant, insert: bool) -> Result<()> {
    let domains = serde_json::to_string(&t.domains).map_err(|e| Error::internal(e.to_string()))?;
    let quotas = t.quotas.to_value().to_string();
    let metadata = t.metadata.to_string();
    let sql = if insert {
        "INSERT INTO tenants (id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    } else {
        // Placement (?6) is not updated here: only a move's switch changes it.
        "UPDATE tenants SET slug = ?2, name = ?3, tier = ?4, status = ?5, domains = ?7, quotas = ?8,
         metadata = ?9, created_at = ?10, updated_at = ?11 WHERE id = ?1"
    };
    let slug_taken = |e: rusqlite::Error| {
        if is_unique_violation(&e) {
            Error::conflict(format!("slug '{}' is taken", t.slug))
        } else {
            sql_error(e)
        }
    };
    tx.execute(
        sql,
        params![
            t.id.as_str(),
            t.slug.as_str(),
            t.name,
            t.tier,
            t.status.as_str(),
            t.placement.as_str(),
            domains,
            quotas,
            metadata,
            t.created_at.millis(),
            t.updated_at.millis()
        ],
    )
    .map_err(slug_taken)?;
    tx.execute("DELETE FROM tenant_domains WHERE tenant_id = ?1", [t.id.as_str()]).map_err(sql_error)?;
    for d in &t.domains {
        tx.execute("INSERT INTO tenant_domains (domain, tenant_id) VALUES (?1, ?2)", params![d, t.id.as_str()])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("domain '{d}' is already registered to another tenant"))
                } else {
                    sql_error(e)
                }
            })?;
    }
    Ok(())
}

fn insert_key_tx(tx: &Connection, k: &KeyRecord) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            k.id.as_str(),
            k.tenant_id.as_str(),
            k.name,
            k.role.as_str(),
            k.prefix.as_ref().map(|p| p.as_str().to_owned()),
            k.hash.0.as_slice(),
            k.created_at.millis(),
            k.created_by,
            k.expires_at.map(Timestamp::millis),
            k.revoked_at.map(Timestamp::millis)
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// Usable keys: not revoked and not expired at `at`.
fn usable_keys_tx(tx: &Connection, tenant: &TenantId, at: Timestamp) -> Result<u64> {
    let n: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM keys WHERE tenant_id = ?1 AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .and_then(|mut s| s.query_row(params![tenant.as_str(), at.millis()], |r| r.get(0)))
        .map_err(sql_error)?;
    Ok(n.max(0) as u64)
}

/// Deletes every row of the tenant in one database: its data, and with `registry` also its
/// registry rows (record, domains, metered usage, a move in progress).
pub(crate) fn delete_tenant_rows_tx(tx: &Connection, id: &TenantId, registry: bool) -> Result<()> {
    // Bytes first (they are found through the rows that point at them), staged imports included.
    tx.execute(
        "DELETE FROM file_content WHERE id IN (SELECT content_id FROM files WHERE tenant_id = ?1)
           OR id IN (SELECT content_id FROM import_files WHERE import_id IN
                     (SELECT id FROM imports WHERE tenant_id = ?1))",
        [id.as_str()],
    )
    .map_err(sql_error)?;
    for table in ["import_files", "import_records"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE import_id IN (SELECT id FROM imports WHERE tenant_id = ?1)"),
            [id.as_str()],
        )
        .map_err(sql_error)?;
    }
    let data = [
        "imports",
        "files",
        "keys",
        "audit",
        "audit_anchor",
        "tenant_usage",
        "events",
        "memory",
        "search_docs",
        "search_postings",
        "webhooks",
        "webhook_outbox",
        "webhook_attempts",
    ];
    crate::tails::forget_audit_head(tx, id)?;
    counters::forget_tx(tx, id)?;
    for log in [Log::Audit, Log::Events] {
        for ids in log.tenant_tail_ids() {
            tx.execute(&format!("DELETE FROM {} WHERE id IN ({ids})", log.tail()), [id.as_str()]).map_err(sql_error)?;
        }
        // The triggers took the index entries of the rows deleted; a fold indexes entries from
        // the registry, so one whose row was pruned before could name no row: it goes too.
        tx.execute(&format!("DELETE FROM {} WHERE tenant_id = ?1", log.tail_index()), [id.as_str()])
            .map_err(sql_error)?;
    }
    let registry_tables: &[&str] = if registry { &["tenant_domains", "usage_daily", "moves"] } else { &[] };
    for table in data.iter().chain(registry_tables) {
        tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1"), [id.as_str()]).map_err(sql_error)?;
    }
    if registry {
        tx.execute("DELETE FROM tenants WHERE id = ?1", [id.as_str()]).map_err(sql_error)?;
    }
    Ok(())
}

/// A tenant's record is changed only under its own scope.
fn same_tenant(scope: &TenantScope, tenant: &Tenant) -> Result<()> {
    if scope.tenant_id() == &tenant.id {
        Ok(())
    } else {
        Err(Error::internal("the tenant record differs from the scope"))
    }
}

#[async_trait]
impl TenantRegistry for SqliteStore {
    async fn insert_tenant(
        &self,
        scope: &TenantScope,
        tenant: &Tenant,
        owner: Option<&KeyRecord>,
        audit: AuditDraft,
    ) -> Result<()> {
        same_tenant(scope, tenant)?;
        let (tenant, owner) = (tenant.clone(), owner.cloned());
        if tenant.placement == Placement::Shared {
            return self
                .write_shared(move |tx| {
                    write_tenant_row(tx, &tenant, true)?;
                    if let Some(k) = &owner {
                        insert_key_tx(tx, k)?;
                    }
                    append_audit_tx(tx, &tenant.id, tenant.slug.as_str(), audit)
                })
                .await;
        }
        // Its own database first (its copy of the record, the owner key, the audit entry), then
        // the registry row: a crash in between leaves a database nothing points at, deleted at
        // the next start; a refused registry row (slug taken) deletes it at once.
        let id = tenant.id.clone();
        self.dedicated.delete_files(&id)?;
        let pool = self.dedicated.get(&id)?;
        let t = tenant.clone();
        pool.write(
            None,
            move |tx| {
                write_tenant_row(tx, &t, true)?;
                if let Some(k) = &owner {
                    insert_key_tx(tx, k)?;
                }
                append_audit_tx(tx, &t.id, t.slug.as_str(), audit)
            },
            None,
        )
        .await?;
        drop(pool);
        let registered = self.write_shared(move |tx| write_tenant_row(tx, &tenant, true)).await;
        match registered {
            Ok(()) => {
                self.routes.set_dedicated(&id, true);
                Ok(())
            }
            Err(e) => {
                self.dedicated.delete_files(&id)?;
                Err(e)
            }
        }
    }

    async fn update_tenant(&self, scope: &TenantScope, tenant: &Tenant, journal: Journal) -> Result<()> {
        same_tenant(scope, tenant)?;
        let tenant = tenant.clone();
        let t = tenant.clone();
        self.write_journaled(&tenant.id.clone(), None, move |tx, published| {
            write_tenant_row(tx, &t, false)?;
            journal_tx(tx, &t.id, t.slug.as_str(), journal, published)
        })
        .await?;
        if self.routes.is_dedicated(&tenant.id) {
            // The registry's copy (slug, domains and status answer routing for every request).
            self.write_shared(move |tx| write_tenant_row(tx, &tenant, false)).await?;
        }
        Ok(())
    }

    async fn purge_tenant(&self, scope: &TenantScope) -> Result<()> {
        let id = scope.tenant_id().clone();
        let cache = self.cache.clone();
        if self.routes.is_dedicated(&id) {
            // Its database goes whole (the files are unlinked; nothing of it stays on disk). Routed
            // away first, so nothing opens it again.
            self.routes.set_dedicated(&id, false);
            self.dedicated.delete_files(&id)?;
        }
        // Alone on the write connection: the checkpoint below cannot run inside a transaction.
        let tenant = id.clone();
        self.shared
            .exclusive(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_error)?;
                delete_tenant_rows_tx(&tx, &tenant, true)?;
                tx.commit().map_err(sql_error)?;
                cache.invalidate_tenant(&tenant);
                // secure_delete zeroed the pages; checkpointing moves them out of the WAL too, so
                // no copy of the purged bytes stays behind in the log.
                truncate_wal(conn)?;
                Ok(())
            })
            .await?;
        // No row names the tenant's external bodies any more: erased (a crash before this is
        // finished by the sweep at open, which erases the bodies of tenants that do not exist).
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.erase_tenant(&id))
            .await
            .map_err(|e| Error::internal(format!("purge failed: {e}")))?
    }

    async fn insert_key(
        &self,
        scope: &TenantScope,
        key: &KeyRecord,
        max_keys: Option<u64>,
        journal: Journal,
    ) -> Result<()> {
        if &key.tenant_id != scope.tenant_id() {
            return Err(Error::internal("key's tenant differs from the scope"));
        }
        let (scope, key) = (scope.clone(), key.clone());
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            if max_keys.is_some() {
                quota::one_more_key(usable_keys_tx(tx, scope.tenant_id(), key.created_at)?, max_keys)?;
            }
            insert_key_tx(tx, &key)?;
            journal_tx(tx, scope.tenant_id(), scope.slug().as_str(), journal, published)?;
            if max_keys.is_some() {
                let usable = usable_keys_tx(tx, scope.tenant_id(), key.created_at)?;
                let warning = quota::key_warning(usable, max_keys).into_iter().collect();
                quota_warnings_tx(tx, scope.tenant_id(), scope.slug().as_str(), warning, published)?;
            }
            Ok(())
        })
        .await
    }

    async fn revoke_key(&self, scope: &TenantScope, id: &KeyId, at: Timestamp, journal: Journal) -> Result<()> {
        let (scope, id) = (scope.clone(), id.clone());
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let n = tx
                .execute(
                    "UPDATE keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                    params![scope.tenant_id().as_str(), id.as_str(), at.millis()],
                )
                .map_err(sql_error)?;
            if n == 0 {
                return Err(Error::not_found(format!("key '{id}' not found")));
            }
            journal_tx(tx, scope.tenant_id(), scope.slug().as_str(), journal, published)
        })
        .await
    }

    async fn list_keys(&self, scope: &TenantScope) -> Result<Vec<KeyRecord>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            let mut s = conn
                .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE tenant_id = ?1 ORDER BY created_at, id"))
                .map_err(sql_error)?;
            let rows = s.query_map([tenant.as_str()], key_from_row).map_err(sql_error)?;
            rows.map(|k| k.map_err(sql_error)?).collect()
        })
        .await
    }
}

/// A stored file's row, without its bytes.
pub(crate) struct CurrentFile {
    pub etag: String,
    pub version: i64,
    pub created_at: i64,
    pub size: i64,
    pub content_id: i64,
}

impl CurrentFile {
    pub fn content(&self) -> ContentRef {
        ContentRef { id: self.content_id, size: self.size }
    }
}

/// The current row of a file, if any.
pub(crate) fn current_file(tx: &Connection, tenant: &TenantId, path: &str) -> Result<Option<CurrentFile>> {
    tx.prepare_cached(
        "SELECT etag, version, created_at, size, content_id FROM files WHERE tenant_id = ?1 AND path = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![tenant.as_str(), path], |r| {
            Ok(CurrentFile {
                etag: r.get(0)?,
                version: r.get(1)?,
                created_at: r.get(2)?,
                size: r.get(3)?,
                content_id: r.get(4)?,
            })
        })
        .optional()
    })
    .map_err(sql_error)
}

/// A file's body as a `file_content` row holds it.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Inline(&'a [u8]),
    /// In a file of its own (`blobs`), by name.
    External(&'a str),
}

/// A `file_content` row, with the size of the body it holds: a body of at most `EXTERNAL_OVER`
/// bytes is always inline, so only a larger one needs its row read to learn whether it is external.
#[derive(Clone, Copy)]
pub(crate) struct ContentRef {
    pub id: i64,
    pub size: i64,
}

impl ContentRef {
    fn blob_tx(self, tx: &Connection) -> Result<Option<String>> {
        if self.size > EXTERNAL_OVER as i64 {
            blob_of_tx(tx, self.id)
        } else {
            Ok(None)
        }
    }
}

/// Stores a file's body: over `replacing`'s row in place, or in a new row. Returns its id and the
/// external body the row named before, which the caller unlinks once the change has committed.
pub(crate) fn store_content_tx(
    tx: &Connection,
    replacing: Option<ContentRef>,
    body: Body<'_>,
) -> Result<(i64, Option<String>)> {
    let (content, blob): (&[u8], Option<&str>) = match body {
        Body::Inline(bytes) => (bytes, None),
        Body::External(name) => (&[], Some(name)),
    };
    match replacing {
        Some(old) => {
            let (id, before) = (old.id, old.blob_tx(tx)?);
            tx.prepare_cached("UPDATE file_content SET content = ?2, blob = ?3 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, content, blob]))
                .map_err(sql_error)?;
            Ok((id, before))
        }
        None => {
            tx.prepare_cached("INSERT INTO file_content (content, blob) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![content, blob]))
                .map_err(sql_error)?;
            Ok((tx.last_insert_rowid(), None))
        }
    }
}

fn blob_of_tx(tx: &Connection, id: i64) -> Result<Option<String>> {
    tx.prepare_cached("SELECT blob FROM file_content WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map(Option::flatten)
        .map_err(sql_error)
}

/// Deletes a body's row. Returns the external body it named, which the caller unlinks after the
/// commit.
pub(crate) fn drop_content_tx(tx: &Connection, content: ContentRef) -> Result<Option<String>> {
    let blob = content.blob_tx(tx)?;
    drop_content_row_tx(tx, content.id)?;
    Ok(blob)
}

/// Deletes a body's row and nothing else: for a move's copies, whose external bodies the other
/// database's rows still name.
pub(crate) fn drop_content_row_tx(tx: &Connection, id: i64) -> Result<()> {
    tx.prepare_cached("DELETE FROM file_content WHERE id = ?1").and_then(|mut s| s.execute([id])).map_err(sql_error)?;
    Ok(())
}

/// Every external body a database names (through the partial index: no content is read).
pub(crate) fn named_blobs(conn: &Connection) -> Result<Vec<String>> {
    conn.prepare("SELECT blob FROM file_content WHERE blob IS NOT NULL")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql_error)
}

fn stored_usage(c: counters::Counters) -> StoredUsage {
    StoredUsage { storage_bytes: c.storage_bytes.max(0) as u64, files: c.files.max(0) as u64 }
}

/// The tenant's storage usage as its write sees it (on the writer, inside the write).
pub(crate) fn usage_tx(tx: &Connection, tenant: &TenantId) -> Result<StoredUsage> {
    counters::now_tx(tx, tenant).map(stored_usage)
}

/// Moves the usage counters by the given deltas (after the caller checked the limits).
pub(crate) fn add_usage_tx(tx: &Connection, tenant: &TenantId, bytes: i64, files: i64) -> Result<()> {
    counters::add_tx(tx, tenant, counters::Counters { storage_bytes: bytes, files, ..Default::default() })
}

/// A file's metadata row as stored.
pub(crate) struct FileRow<'a> {
    pub path: &'a str,
    pub size: i64,
    pub etag: &'a str,
    pub version: i64,
    pub content_type: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
    pub content_id: i64,
}

pub(crate) fn upsert_file_row_tx(tx: &Connection, tenant: &TenantId, row: &FileRow<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, content_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant_id, path) DO UPDATE SET size = excluded.size, etag = excluded.etag,
           version = excluded.version, content_type = excluded.content_type,
           created_at = excluded.created_at, updated_at = excluded.updated_at, content_id = excluded.content_id",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant.as_str(),
            row.path,
            row.size,
            row.etag,
            row.version,
            row.content_type,
            row.created_at,
            row.updated_at,
            row.content_id
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

/// Files at most this large are read inline (see `read_file`).
const INLINE_READ_MAX: i64 = 64 * 1024;

enum FileRead {
    Missing,
    /// The bytes asked for exceed the inline limit: read again on the blocking pool.
    TooLarge,
    Found(FileMeta, Vec<u8>),
    /// The body is in a file of its own, by this name.
    External(FileMeta, String),
}

fn read_file_tx(
    conn: &Connection,
    tenant: &TenantId,
    path: &TenantPath,
    range: Option<ByteRange>,
    max_len: i64,
) -> Result<FileRead> {
    let (start, len) = match range {
        Some(r) => (r.start as i64 + 1, (r.end - r.start) as i64),
        None => (1, i64::MAX),
    };
    let row = conn
        .prepare_cached(&format!(
            "SELECT {FILE_COLUMNS}, CASE WHEN size > {EXTERNAL_OVER} THEN blob END,
                    CASE WHEN min(size - ?3 + 1, ?4) <= ?5 AND (size <= {EXTERNAL_OVER} OR blob IS NULL)
                         THEN coalesce(substr(content, ?3, ?4), x'') END
             FROM files JOIN file_content ON file_content.id = files.content_id WHERE tenant_id = ?1 AND path = ?2"
        ))
        .and_then(|mut s| {
            s.query_row(params![tenant.as_str(), path.as_str(), start, len, max_len], |r| {
                let blob: Option<String> = r.get(7)?;
                let bytes: Option<Vec<u8>> = r.get(8)?;
                Ok((file_from_row(r)?, blob, bytes))
            })
            .optional()
        })
        .map_err(sql_error)?;
    // `blob` follows `content` in the row, so reading it walks the content's overflow pages: it
    // is read only for a body large enough to be external (a smaller one never is).
    Ok(match row {
        None => FileRead::Missing,
        Some((meta, Some(blob), _)) => FileRead::External(meta?, blob),
        Some((meta, None, Some(bytes))) => FileRead::Found(meta?, bytes),
        // NULL means over the limit: substr of an empty blob is NULL too, hence the coalesce.
        Some((_, None, None)) => FileRead::TooLarge,
    })
}

/// Reads a file and its body wherever the body is kept (blocking: call on a blocking thread).
fn read_file_whole(
    conn: &Connection,
    blobs: &Blobs,
    tenant: &TenantId,
    path: &TenantPath,
    range: Option<ByteRange>,
) -> Result<Option<(FileMeta, Vec<u8>)>> {
    // An external body can be unlinked between reading its row and opening it (a replace or
    // delete committed meanwhile); the row is then read again and names the current body.
    for _ in 0..16 {
        match read_file_tx(conn, tenant, path, range, i64::MAX)? {
            FileRead::Missing => return Ok(None),
            FileRead::Found(meta, bytes) => return Ok(Some((meta, bytes))),
            FileRead::External(meta, name) => {
                let part = range.map(|r| (r.start.min(meta.size), r.end.min(meta.size)));
                if let Some(bytes) = blobs.read(tenant, &name, part)? {
                    return Ok(Some((meta, bytes)));
                }
            }
            FileRead::TooLarge => return Err(Error::internal("a file read without a limit was over it")),
        }
    }
    Err(Error::internal(format!("{path} kept changing while it was read")))
}

#[async_trait]
impl FileStore for SqliteStore {
    async fn put_file(
        &self,
        scope: &TenantScope,
        write: FileWrite,
        journal: Journal,
    ) -> Result<(FileMeta, WriteOutcome)> {
        // Hash outside the writer, which only runs the short transaction; a large body is hashed
        // (and, over `EXTERNAL_OVER`, written to a file of its own) on the blocking pool rather
        // than on an async worker.
        let write = Arc::new(write);
        let (etag, blob) = if write.content.len() as i64 <= INLINE_READ_MAX {
            (etag_of(&write.content), None)
        } else {
            let (w, blobs, t) = (write.clone(), self.blobs.clone(), scope.tenant_id().clone());
            tokio::task::spawn_blocking(move || -> Result<(String, Option<String>)> {
                let blob =
                    if w.content.len() > EXTERNAL_OVER { Some(blobs.write(&t, &w.content, true)?) } else { None };
                Ok((etag_of(&w.content), blob))
            })
            .await
            .map_err(|e| Error::internal(format!("hashing failed: {e}")))??
        };
        let pending = Pending::new(scope.tenant_id(), blob.iter().cloned().collect());
        let ran = pending.ran();
        let scope = scope.clone();
        let (on_commit, doomed) = self.after_files_commit(scope.tenant_id(), Some(write.path.as_str()));
        let result = self
            .write_journaled(&scope.tenant_id().clone(), Some(on_commit), move |tx, published| {
                let tenant = scope.tenant_id();
                let current = current_file(tx, tenant, write.path.as_str())?;
                let decision = write.decide(current.as_ref().map(|c| HeldFile {
                    etag: &c.etag,
                    version: c.version as u64,
                    size: c.size as u64,
                    created_at: Timestamp::from_millis(c.created_at),
                }))?;
                let (version, created_at, outcome) =
                    (decision.version as i64, decision.created_at.millis(), decision.outcome);
                // Hard limits, inside the transaction (see `tenantry_core::quota`).
                let used = usage_tx(tx, tenant)?;
                let limits = write.limits();
                let after = quota::storage(used, decision.delta, limits)?;
                add_usage_tx(tx, tenant, decision.delta.bytes, decision.delta.files)?;
                let body = match &blob {
                    Some(name) => Body::External(name),
                    None => Body::Inline(&write.content),
                };
                let (content_id, before) = store_content_tx(tx, current.as_ref().map(CurrentFile::content), body)?;
                doomed.push(before);
                let row = FileRow {
                    path: write.path.as_str(),
                    size: write.content.len() as i64,
                    etag: &etag,
                    version,
                    content_type: &write.content_type,
                    created_at,
                    updated_at: write.at.millis(),
                    content_id,
                };
                upsert_file_row_tx(tx, tenant, &row)?;
                reindex_tx(tx, tenant, DocKind::File, write.path.as_str(), write.index.as_ref())?;
                journal_tx(tx, tenant, scope.slug().as_str(), journal, published)?;
                let warnings = quota::storage_warnings(used, after, limits);
                quota_warnings_tx(tx, tenant, scope.slug().as_str(), warnings, published)?;
                let meta = FileMeta {
                    path: write.path.clone(),
                    size: write.content.len() as u64,
                    etag: etag.clone(),
                    version: version as u64,
                    content_type: write.content_type.clone(),
                    created_at: Timestamp::from_millis(created_at),
                    updated_at: write.at,
                };
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok((meta, outcome))
            })
            .await;
        pending.settle(&self.blobs, &result);
        result
    }

    async fn stat_file(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<FileMeta>> {
        if let Some(hit) = self.cache.get(scope.tenant_id(), path.as_str()) {
            return Ok(Some(hit.0.clone()));
        }
        let (tenant, path) = (scope.tenant_id().clone(), path.clone());
        self.read_of(&tenant.clone(), move |conn| {
            conn.prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = ?1 AND path = ?2"))
                .and_then(|mut s| s.query_row(params![tenant.as_str(), path.as_str()], file_from_row).optional())
                .map_err(sql_error)?
                .transpose()
        })
        .await
    }

    async fn read_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        range: Option<ByteRange>,
    ) -> Result<Option<(FileMeta, Vec<u8>)>> {
        let tenant = scope.tenant_id();
        if let Some(hit) = self.cache.get(tenant, path.as_str()) {
            let bytes = match range {
                Some(r) => hit.1[r.start as usize..(r.end as usize).min(hit.1.len())].to_vec(),
                None => hit.1.clone(),
            };
            return Ok(Some((hit.0.clone(), bytes)));
        }
        let generation = self.cache.generation();
        // Small files are read inline on the calling thread when a reader is free: a
        // prepared-statement read of a few KiB costs microseconds, less than a hop to the
        // blocking pool. Larger ones (or a busy pool) go to the blocking pool.
        let pool = self.pool_of(tenant)?;
        let inline = match pool.try_reader() {
            Some(conn) => read_file_tx(&conn, tenant, path, range, INLINE_READ_MAX)?,
            None => FileRead::TooLarge,
        };
        let found = match inline {
            FileRead::Missing => return Ok(None),
            FileRead::Found(meta, bytes) => Some((meta, bytes)),
            FileRead::TooLarge | FileRead::External(..) => {
                let (t, p, blobs) = (tenant.clone(), path.clone(), self.blobs.clone());
                self.read_of(tenant, move |conn| read_file_whole(conn, &blobs, &t, &p, range)).await?
            }
        };
        if let (Some((meta, bytes)), None) = (&found, range) {
            if bytes.len() as i64 <= INLINE_READ_MAX {
                self.cache.insert(tenant, generation, Arc::new((meta.clone(), bytes.clone())));
            }
        }
        Ok(found)
    }

    async fn read_file_cold(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<(FileMeta, Vec<u8>)>> {
        let (t, p, blobs) = (scope.tenant_id().clone(), path.clone(), self.blobs.clone());
        self.read_of(&t.clone(), move |conn| read_file_whole(conn, &blobs, &t, &p, None)).await
    }

    async fn delete_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        precondition: Precondition,
        _at: Timestamp,
        journal: Journal,
    ) -> Result<()> {
        let (scope, path) = (scope.clone(), path.clone());
        let (on_commit, doomed) = self.after_files_commit(scope.tenant_id(), Some(path.as_str()));
        self.write_journaled(&scope.tenant_id().clone(), Some(on_commit), move |tx, published| {
            let tenant = scope.tenant_id();
            let Some(current) = current_file(tx, tenant, path.as_str())? else {
                return Err(Error::not_found(format!("no file at {path}")));
            };
            precondition.check(Some(&current.etag))?;
            tx.prepare_cached("DELETE FROM files WHERE tenant_id = ?1 AND path = ?2")
                .and_then(|mut s| s.execute(params![tenant.as_str(), path.as_str()]))
                .map_err(sql_error)?;
            doomed.push(drop_content_tx(tx, current.content())?);
            add_usage_tx(tx, tenant, -current.size, -1)?;
            reindex_tx(tx, tenant, DocKind::File, path.as_str(), None)?;
            journal_tx(tx, tenant, scope.slug().as_str(), journal, published)
        })
        .await
    }

    async fn usage(&self, scope: &TenantScope) -> Result<StoredUsage> {
        let tenant = scope.tenant_id();
        counters::read_committed(self.pool_of(tenant)?, tenant).await.map(stored_usage)
    }

    async fn list_files(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<FileMeta>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            let dir = listing.within.as_dir();
            // Every path under `dir` sorts in [dir, dir with its final '/' bumped to '0').
            let upper = format!("{}0", &dir[..dir.len() - 1]);
            let after = listing.after.unwrap_or_default();
            let mut s = conn
                .prepare_cached(&format!(
                    "SELECT {FILE_COLUMNS} FROM files
                     WHERE tenant_id = ?1 AND path > ?4
                       AND ((path >= ?2 AND path < ?3 AND (?5 OR instr(substr(path, length(?2) + 1), '/') = 0))
                            OR (?7 AND path = ?8))
                     ORDER BY path LIMIT ?6"
                ))
                .map_err(sql_error)?;
            let rows = s
                .query_map(
                    params![
                        tenant.as_str(),
                        dir,
                        upper,
                        after,
                        listing.recursive,
                        listing.limit as i64,
                        listing.include_within,
                        listing.within.as_str()
                    ],
                    file_from_row,
                )
                .map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }
}

/// The six usage counters, read from `r` starting at column `first`.
fn counters_from_row(r: &Row<'_>, first: usize) -> rusqlite::Result<Counters> {
    let n = |i: usize| r.get::<_, i64>(first + i).map(|v| v.max(0) as u64);
    Ok(Counters { api_calls: n(0)?, reads: n(1)?, writes: n(2)?, bytes_in: n(3)?, bytes_out: n(4)?, searches: n(5)? })
}

#[async_trait]
impl UsageLog for SqliteStore {
    async fn usage_between(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<Counters> {
        let tenant = scope.tenant_id().clone();
        self.read_shared(move |conn| {
            conn.prepare_cached(
                "SELECT COALESCE(SUM(api_calls), 0), COALESCE(SUM(reads), 0), COALESCE(SUM(writes), 0),
                        COALESCE(SUM(bytes_in), 0), COALESCE(SUM(bytes_out), 0), COALESCE(SUM(searches), 0)
                 FROM usage_daily WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3",
            )
            .and_then(|mut s| s.query_row(params![tenant.as_str(), from_day, to_day], |r| counters_from_row(r, 0)))
            .map_err(sql_error)
        })
        .await
    }

    async fn usage_by_day(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<Vec<(i64, Counters)>> {
        let tenant = scope.tenant_id().clone();
        self.read_shared(move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT day, api_calls, reads, writes, bytes_in, bytes_out, searches FROM usage_daily
                     WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3 ORDER BY day",
                )
                .map_err(sql_error)?;
            let rows = s
                .query_map(params![tenant.as_str(), from_day, to_day], |r| {
                    Ok((r.get::<_, i64>(0)?, counters_from_row(r, 1)?))
                })
                .map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)).collect()
        })
        .await
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn ready(&self) -> Result<()> {
        self.read_shared(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_error)).await
    }

    async fn close(&self) -> Result<()> {
        let tails = self.shared.tails.clone();
        self.shared
            .exclusive(move |conn| {
                // Left folded: the next start has nothing to fold.
                tails.fold_all(conn)?;
                truncate_wal(conn)?;
                Ok(())
            })
            .await
    }

    fn metrics(&self) -> Vec<StoreMetric> {
        let cache = self.cache.stats();
        let (tail_entries, folds, fold_time) = self.shared.tails.stats();
        let m = |name, help, counter, value| StoreMetric { name, help, counter, value };
        vec![
            m("tenantry_file_cache_hits_total", "File reads answered from the in-memory file cache.", true, cache.hits),
            m("tenantry_file_cache_misses_total", "File reads the file cache could not answer.", true, cache.misses),
            m("tenantry_file_cache_entries", "Files held in the file cache.", false, cache.entries),
            m("tenantry_file_cache_bytes", "Bytes the file cache holds, as it counts them.", false, cache.bytes),
            m(
                "tenantry_log_tail_entries",
                "Audit and event entries in the shared database's log tails, not yet folded.",
                false,
                tail_entries,
            ),
            m("tenantry_log_tail_folds_total", "Folds of the shared database's log tails completed.", true, folds),
            m(
                "tenantry_usage_tail_rows",
                "Rows of usage counters appended in the shared database since they were last folded.",
                false,
                self.shared.tails.usage_rows(),
            ),
            m(
                "tenantry_log_tail_fold_milliseconds_total",
                "Time folds of the shared database's log tails have been under way.",
                true,
                fold_time.as_millis() as u64,
            ),
        ]
    }
}

/// Cross-tenant upkeep (see `upkeep`): not reachable through a request's scope.
impl SqliteStore {
    pub(crate) async fn load_directory(&self) -> Result<(Vec<Tenant>, Vec<KeyRecord>)> {
        let (mut tenants, mut keys) = self
            .read_shared(|conn| {
                let mut tenants = Vec::new();
                let mut s = conn.prepare(&format!("SELECT {TENANT_COLUMNS} FROM tenants")).map_err(sql_error)?;
                for t in s.query_map([], tenant_from_row).map_err(sql_error)? {
                    tenants.push(t.map_err(sql_error)??);
                }
                let mut keys = Vec::new();
                let mut s = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM keys")).map_err(sql_error)?;
                for k in s.query_map([], key_from_row).map_err(sql_error)? {
                    keys.push(k.map_err(sql_error)??);
                }
                Ok((tenants, keys))
            })
            .await?;
        // A dedicated tenant's keys and settings live in its own database (its settings there
        // are written with their audit entry, so they win over the registry's copy).
        let dedicated: Vec<(TenantId, std::path::PathBuf)> =
            self.routes.dedicated_tenants().into_iter().map(|t| (t.clone(), self.dedicated.path_of(&t))).collect();
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<(Option<Tenant>, Vec<KeyRecord>)>> {
            let mut out = Vec::new();
            for (tenant, path) in dedicated {
                let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(sql_error)?;
                let row = conn
                    .prepare(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"))
                    .and_then(|mut s| s.query_row([tenant.as_str()], tenant_from_row).optional())
                    .map_err(sql_error)?
                    .transpose()?;
                let mut keys = Vec::new();
                let mut s = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM keys")).map_err(sql_error)?;
                for k in s.query_map([], key_from_row).map_err(sql_error)? {
                    keys.push(k.map_err(sql_error)??);
                }
                out.push((row, keys));
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::internal(format!("store task failed: {e}")))??;
        for (row, dedicated_keys) in found {
            keys.extend(dedicated_keys);
            let Some(mut own) = row else { continue };
            own.placement = Placement::Dedicated;
            if let Some(t) = tenants.iter_mut().find(|t| t.id == own.id) {
                if *t != own {
                    let fixed = own.clone();
                    self.write_shared(move |tx| write_tenant_row(tx, &fixed, false)).await?;
                    *t = own;
                }
            }
        }
        Ok((tenants, keys))
    }

    pub(crate) async fn add_usage(&self, batch: Vec<(TenantId, i64, Counters)>) -> Result<()> {
        self.write_shared(move |tx| {
            let mut s = tx
                .prepare_cached(
                    // Only for a tenant still registered: a purge that committed after the
                    // batch was taken must not be followed by rows of the purged tenant.
                    "INSERT INTO usage_daily (tenant_id, day, api_calls, reads, writes, bytes_in, bytes_out, searches)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1)
                     ON CONFLICT (tenant_id, day) DO UPDATE SET api_calls = api_calls + ?3, reads = reads + ?4,
                       writes = writes + ?5, bytes_in = bytes_in + ?6, bytes_out = bytes_out + ?7,
                       searches = searches + ?8",
                )
                .map_err(sql_error)?;
            for (tenant, day, c) in &batch {
                s.execute(params![
                    tenant.as_str(),
                    day,
                    c.api_calls as i64,
                    c.reads as i64,
                    c.writes as i64,
                    c.bytes_in as i64,
                    c.bytes_out as i64,
                    c.searches as i64
                ])
                .map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn calls_between(&self, from_day: i64, to_day: i64) -> Result<Vec<(TenantId, u64)>> {
        self.read_shared(move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT tenant_id, SUM(api_calls) FROM usage_daily WHERE day >= ?1 AND day < ?2 GROUP BY tenant_id",
                )
                .map_err(sql_error)?;
            let rows = s
                .query_map(params![from_day, to_day], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (t, n) = row.map_err(sql_error)?;
                out.push((TenantId::parse(&t).ok_or_else(|| corrupt("tenant id"))?, n as u64));
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(slug: &str) -> Tenant {
        Tenant::new(Slug::parse(slug).unwrap(), slug, "free", Timestamp::from_millis(0))
    }

    fn audit() -> AuditDraft {
        AuditDraft {
            actor: "operator".into(),
            action: "tenant.create".into(),
            target: "t".into(),
            result: "ok".into(),
            request_id: "req".into(),
            ip: String::new(),
        }
    }

    #[tokio::test]
    async fn usage_of_a_tenant_no_longer_registered_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), OpenOptions::default()).unwrap();
        let kept = tenant("kept");
        store.insert_tenant(&TenantScope::for_store_contract(&kept), &kept, None, audit()).await.unwrap();
        let purged = TenantId::generate(); // as after a purge committed while the batch was in flight
        let c = Counters { api_calls: 3, reads: 2, writes: 1, ..Default::default() };
        store.add_usage(vec![(kept.id.clone(), 10, c), (purged.clone(), 10, c)]).await.unwrap();
        store.add_usage(vec![(kept.id.clone(), 10, c)]).await.unwrap();
        assert_eq!(store.calls_between(0, 100).await.unwrap(), vec![(kept.id.clone(), 6)]);
        let rows: i64 = crate::store::read_on(store.shared.clone(), |c| {
            c.query_row("SELECT COUNT(*) FROM usage_daily", [], |r| r.get(0)).map_err(sql_error)
        })
        .await
        .unwrap();
        assert_eq!(rows, 1);
    }

    #[tokio::test]
    async fn pruning_takes_old_events_from_the_keyed_table_and_the_tail_and_their_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), OpenOptions::default()).unwrap();
        let t = TenantId::generate();
        let tenant = t.clone();
        let rows = [("events", 1, 100), ("events", 2, 300), ("events_tail", 3, 100), ("events_tail", 4, 300)];
        let insert = move |tx: &Connection| {
            for (table, seq, at) in rows {
                tx.execute(
                    &format!(
                        "INSERT INTO {table} (tenant_id, seq, type, actor, at) VALUES (?1, ?2, 'file.write', 'a', ?3)"
                    ),
                    params![tenant.as_str(), seq, at],
                )
                .map_err(sql_error)?;
            }
            Ok(())
        };
        store.shared.write(None, insert, None).await.unwrap();
        let tails = store.shared.tails.clone();
        store.shared.exclusive(move |c| tails.fold_all(c)).await.unwrap();
        let left = || async {
            crate::store::read_on(store.shared.clone(), |c| {
                let seqs = |sql: &str| -> rusqlite::Result<Vec<i64>> {
                    c.prepare(sql)?.query_map([], |r| r.get(0))?.collect()
                };
                Ok([
                    seqs("SELECT seq FROM events ORDER BY seq"),
                    seqs("SELECT seq FROM events_tail ORDER BY seq"),
                    seqs("SELECT seq FROM events_tail_index ORDER BY seq"),
                ]
                .map(|r| r.unwrap()))
            })
            .await
            .unwrap()
        };
        assert_eq!(left().await, [vec![1, 2], vec![3, 4], vec![3, 4]]);
        assert_eq!(store.prune_events(Timestamp::from_millis(200)).await.unwrap(), 2);
        assert_eq!(store.prune_events(Timestamp::from_millis(200)).await.unwrap(), 0);
        assert_eq!(left().await, [vec![2], vec![4], vec![4]]);
    }
}
