//! A bounded in-memory cache of small files' metadata and bytes, so a hot read costs a hash-map
//! lookup instead of a SQLite read transaction (whose WAL read lock alone is two `fcntl` calls).
//!
//! Consistency: every write bumps a generation *after* its commit and drops the entry; a reader
//! that missed notes the generation before reading the database and inserts only if it is
//! unchanged, so a value read before a commit can never be inserted after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tenantry_core::ids::TenantId;
use tenantry_core::model::FileMeta;

pub(crate) type Entry = Arc<(FileMeta, Vec<u8>)>;

pub(crate) struct FileCache {
    budget: usize,
    generation: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(TenantId, String), Entry>,
    bytes: usize,
}

fn cost(e: &Entry) -> usize {
    e.1.len() + e.0.path.as_str().len() + e.0.etag.len() + e.0.content_type.len() + 160
}

impl FileCache {
    pub fn new(budget: usize) -> FileCache {
        FileCache { budget, generation: AtomicU64::new(0), inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub fn get(&self, tenant: &TenantId, path: &str) -> Option<Entry> {
        if !self.enabled() {
            return None;
        }
        // Keyed by owned strings; the lookup allocates once, still far cheaper than SQLite.
        self.lock().map.get(&(tenant.clone(), path.to_owned())).cloned()
    }

    /// The generation to pass to [`insert`](Self::insert) after a database read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn insert(&self, tenant: &TenantId, generation: u64, entry: Entry) {
        let c = cost(&entry);
        if !self.enabled() || c > self.budget / 16 {
            return;
        }
        let mut inner = self.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        // Evict arbitrary entries (hash order) until the new one fits: no LRU bookkeeping on
        // the read path.
        while inner.bytes + c > self.budget {
            let Some(k) = inner.map.keys().next().cloned() else { break };
            if let Some(old) = inner.map.remove(&k) {
                inner.bytes -= cost(&old);
            }
        }
        let key = (tenant.clone(), entry.0.path.as_str().to_owned());
        if let Some(old) = inner.map.insert(key, entry) {
            inner.bytes -= cost(&old);
        }
        inner.bytes += c;
    }

    /// Called after a committed write or delete of `path`.
    pub fn invalidate(&self, tenant: &TenantId, path: &str) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = inner.map.remove(&(tenant.clone(), path.to_owned())) {
            inner.bytes -= cost(&old);
        }
    }

    /// Called after a tenant is purged.
    pub fn invalidate_tenant(&self, tenant: &TenantId) {
        let mut inner = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut freed = 0;
        inner.map.retain(|(t, _), e| {
            let keep = t != tenant;
            if !keep {
                freed += cost(e);
            }
            keep
        });
        inner.bytes -= freed;
    }
}
