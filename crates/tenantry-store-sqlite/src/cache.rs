//! A bounded in-memory cache of small files' metadata and bytes, so a hot read costs a hash-map
//! lookup instead of a SQLite read transaction (whose WAL read lock alone is two `fcntl` calls).
//!
//! Consistency: every write bumps a generation *after* its commit and drops the entry; a reader
//! that missed notes the generation before reading the database and inserts only if it is
//! unchanged, so a value read before a commit can never be inserted after it.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tenantry_core::ids::TenantId;
use tenantry_core::model::FileMeta;

pub(crate) type Entry = Arc<(FileMeta, Vec<u8>)>;

/// Entries are keyed by a hash of (tenant, path) so a lookup allocates nothing; the entry keeps
/// its tenant and path and is checked against them, so a hash collision is only a miss.
fn key(tenant: &TenantId, path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    tenant.as_str().hash(&mut h);
    path.hash(&mut h);
    h.finish()
}

/// Shards, each with its own lock and budget share, so readers on different cores rarely meet.
const SHARDS: usize = 16;

pub(crate) struct FileCache {
    budget: usize,
    generation: AtomicU64,
    shards: Vec<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, (TenantId, Entry)>,
    bytes: usize,
}

fn cost(e: &Entry) -> usize {
    e.1.len() + e.0.path.as_str().len() + e.0.etag.len() + e.0.content_type.len() + 160
}

impl FileCache {
    pub fn new(budget: usize) -> FileCache {
        let shards = (0..SHARDS).map(|_| Mutex::new(Inner::default())).collect();
        FileCache { budget: budget / SHARDS, generation: AtomicU64::new(0), shards }
    }

    fn lock(&self, key: u64) -> MutexGuard<'_, Inner> {
        self.shards[(key % SHARDS as u64) as usize].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub fn get(&self, tenant: &TenantId, path: &str) -> Option<Entry> {
        if !self.enabled() {
            return None;
        }
        let k = key(tenant, path);
        let inner = self.lock(k);
        let (t, e) = inner.map.get(&k)?;
        (t == tenant && e.0.path.as_str() == path).then(|| e.clone())
    }

    /// The generation to pass to [`insert`](Self::insert) after a database read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn insert(&self, tenant: &TenantId, generation: u64, entry: Entry) {
        let c = cost(&entry);
        if !self.enabled() || c > self.budget / 4 {
            return;
        }
        let k = key(tenant, entry.0.path.as_str());
        let mut inner = self.lock(k);
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        // Evict arbitrary entries (hash order) until the new one fits: no LRU bookkeeping on
        // the read path.
        while inner.bytes + c > self.budget {
            let Some(victim) = inner.map.keys().next().cloned() else { break };
            if let Some((_, old)) = inner.map.remove(&victim) {
                inner.bytes -= cost(&old);
            }
        }
        if let Some((_, old)) = inner.map.insert(k, (tenant.clone(), entry)) {
            inner.bytes -= cost(&old);
        }
        inner.bytes += c;
    }

    /// Called after a committed write or delete of `path`.
    pub fn invalidate(&self, tenant: &TenantId, path: &str) {
        if !self.enabled() {
            return;
        }
        let k = key(tenant, path);
        let mut inner = self.lock(k);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some((_, old)) = inner.map.remove(&k) {
            inner.bytes -= cost(&old);
        }
    }

    /// Called after a tenant is purged.
    pub fn invalidate_tenant(&self, tenant: &TenantId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut inner = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut freed = 0;
            inner.map.retain(|_, (t, e)| {
                let keep = t != tenant;
                if !keep {
                    freed += cost(e);
                }
                keep
            });
            inner.bytes -= freed;
        }
    }
}
