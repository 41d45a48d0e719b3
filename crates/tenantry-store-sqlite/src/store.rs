//! [`SqliteStore`], the handle: which database holds a tenant's rows, and how a read or a
//! write reaches it (through the tenant's fence while it moves). The storage traits are
//! implemented in the modules named for each capability.

use crate::blobs::{Blobs, Doomed};
use crate::cache::FileCache;
use crate::database::Database;
use crate::error::sql_error;
use crate::placement::{DedicatedPools, Routes};
use crate::pool::{owner_of, read_on};
use crate::sinks::{Published, Sinks};
use async_trait::async_trait;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use tenantry_core::ids::TenantId;
use tenantry_core::store::{Health, StoreMetric};
use tenantry_core::{Error, Result};

/// Dedicated databases one cross-tenant upkeep call visits at most.
const UPKEEP_DEDICATED_PER_CALL: usize = 8;

/// The name of the shared database inside the data dir.
pub(crate) const SHARED_DB: &str = "tenantry.db";

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) shared: Arc<Database>,
    pub(crate) dedicated: Arc<DedicatedPools>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) cache: Arc<FileCache>,
    pub(crate) blobs: Arc<Blobs>,
    pub(crate) sinks: Sinks,
    /// The lock on the data dir, held until [`Store::close`](tenantry_core::store::Store::close).
    pub(crate) data_lock: Arc<std::sync::Mutex<Option<std::fs::File>>>,
}

/// The name of the lock file inside the data dir.
const LOCK_FILE: &str = "tenantry.lock";

/// Locks the data dir for this process (an advisory lock on `DATA/tenantry.lock`, released when
/// the file is closed, by the store's close or the process's end). Two processes on one data dir
/// would each trust their own memory of it (the log tails' registry, the bodies a sweep may
/// remove), so the second is refused.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<Arc<std::sync::Mutex<Option<std::fs::File>>>> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Arc::new(std::sync::Mutex::new(Some(file)))),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::conflict(format!(
            "the data directory {} is in use by another tenantry process (a running `tenantry serve`?): stop it first",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::internal(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// Checkpoints the whole WAL into the database and empties it, retrying while a reader or the
/// background checkpointer holds it back (the pragma reports that rather than failing).
pub(crate) fn truncate_wal(conn: &Connection) -> Result<()> {
    for _ in 0..250 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(sql_error)?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(Error::internal("the WAL could not be checkpointed within 5 s (a long read?)"))
}

impl SqliteStore {
    /// The pool holding `tenant`'s rows.
    pub(crate) fn pool_of(&self, tenant: &TenantId) -> Result<Arc<Database>> {
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

#[async_trait]
impl Health for SqliteStore {
    async fn ready(&self) -> Result<()> {
        self.read_shared(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_error)).await
    }

    async fn close(&self) -> Result<()> {
        let tails = self.shared.tails().clone();
        self.shared
            .exclusive(move |conn| {
                // Left folded: the next start has nothing to fold.
                tails.fold_all(conn)?;
                truncate_wal(conn)?;
                Ok(())
            })
            .await?;
        // Closed: another process may open the directory now.
        self.data_lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }

    fn metrics(&self) -> Vec<StoreMetric> {
        let cache = self.cache.stats();
        let (tail_entries, folds, fold_time) = self.shared.tails().stats();
        let (search_tail, search_steps, search_time) = self.shared.tails().search().stats();
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
                self.shared.tails().usage_rows(),
            ),
            m(
                "tenantry_log_tail_fold_milliseconds_total",
                "Time folds of the shared database's log tails have been under way.",
                true,
                fold_time.as_millis() as u64,
            ),
            m(
                "tenantry_search_tail_documents",
                "Search documents written to the shared database's tenant tails and not yet flushed into a segment.",
                false,
                search_tail,
            ),
            m(
                "tenantry_search_steps_total",
                "Flushes and merges of the shared database's search segments committed.",
                true,
                search_steps,
            ),
            m(
                "tenantry_search_step_milliseconds_total",
                "Writer time in flushes and merges of the shared database's search segments.",
                true,
                search_time.as_millis() as u64,
            ),
        ]
    }
}
