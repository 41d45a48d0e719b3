//! A bounded in-memory cache of small files' metadata and bytes, so a hot read costs a hash-map
//! lookup instead of a SQLite read transaction (whose WAL read lock alone is two `fcntl` calls).
//!
//! Consistency: every write bumps a generation *after* its commit and drops the entry; a reader
//! that missed notes the generation before reading the database and inserts only if it is
//! unchanged, so a value read before a commit can never be inserted after it.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
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
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the cache holds and how often it answered, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub bytes: u64,
}

struct Slot {
    tenant: TenantId,
    entry: Entry,
    /// Which insertion this is, so the ring's older mentions of the key are recognised as stale.
    serial: u64,
    /// Read since the eviction hand last passed it: it gets a second chance.
    referenced: bool,
}

/// One shard: the entries, and the CLOCK ring of (key, serial) in insertion order that eviction
/// walks. (Evicting whatever came first in hash order, as before, threw out hot entries as often
/// as cold ones: after a shift of working set the new one took many seconds of misses to settle.)
#[derive(Default)]
struct Inner {
    map: HashMap<u64, Slot>,
    ring: VecDeque<(u64, u64)>,
    bytes: usize,
    serial: u64,
}

impl Inner {
    /// Evicts the first entry in ring order not read since the hand last passed it.
    fn evict_one(&mut self) -> bool {
        while let Some((k, serial)) = self.ring.pop_front() {
            match self.map.get_mut(&k) {
                Some(slot) if slot.serial == serial => {
                    if slot.referenced {
                        slot.referenced = false;
                        self.ring.push_back((k, serial));
                        continue;
                    }
                    if let Some(old) = self.map.remove(&k) {
                        self.bytes -= cost(&old.entry);
                    }
                    return true;
                }
                _ => continue, // invalidated or replaced since
            }
        }
        false
    }

    /// Drops the ring's stale mentions once they outnumber the entries (rewrites of a hot file
    /// add one each).
    fn compact(&mut self) {
        if self.ring.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.ring.retain(|(k, serial)| map.get(k).is_some_and(|slot| slot.serial == *serial));
        }
    }
}

fn cost(e: &Entry) -> usize {
    e.1.len() + e.0.path.as_str().len() + e.0.etag.len() + e.0.content_type.len() + 160
}

impl FileCache {
    pub fn new(budget: usize) -> FileCache {
        let shards = (0..SHARDS).map(|_| Mutex::new(Inner::default())).collect();
        FileCache {
            budget: budget / SHARDS,
            generation: AtomicU64::new(0),
            shards,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
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
        let mut inner = self.lock(k);
        match inner.map.get_mut(&k) {
            Some(slot) if slot.tenant == *tenant && slot.entry.0.path.as_str() == path => {
                slot.referenced = true;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(slot.entry.clone())
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for shard in &self.shards {
            let inner = shard.lock().unwrap_or_else(|e| e.into_inner());
            entries += inner.map.len() as u64;
            bytes += inner.bytes as u64;
        }
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            bytes,
        }
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
        // CLOCK: the read path only sets a flag; eviction gives a read entry a second chance.
        while inner.bytes + c > self.budget {
            if !inner.evict_one() {
                break;
            }
        }
        inner.serial += 1;
        let serial = inner.serial;
        let slot = Slot { tenant: tenant.clone(), entry, serial, referenced: false };
        if let Some(old) = inner.map.insert(k, slot) {
            inner.bytes -= cost(&old.entry);
        }
        inner.ring.push_back((k, serial));
        inner.bytes += c;
        inner.compact();
    }

    /// Called after a committed write or delete of `path`.
    pub fn invalidate(&self, tenant: &TenantId, path: &str) {
        if !self.enabled() {
            return;
        }
        let k = key(tenant, path);
        let mut inner = self.lock(k);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = inner.map.remove(&k) {
            inner.bytes -= cost(&old.entry);
        }
        inner.compact();
    }

    /// Called after a tenant is purged.
    pub fn invalidate_tenant(&self, tenant: &TenantId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut inner = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut freed = 0;
            inner.map.retain(|_, slot| {
                let keep = slot.tenant != *tenant;
                if !keep {
                    freed += cost(&slot.entry);
                }
                keep
            });
            inner.bytes -= freed;
            inner.compact();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::path::TenantPath;
    use tenantry_core::time::Timestamp;

    fn entry(path: &str) -> Entry {
        let meta = FileMeta {
            path: TenantPath::parse(path).unwrap(),
            size: 1000,
            etag: "e".into(),
            version: 1,
            content_type: "t".into(),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        };
        Arc::new((meta, vec![0; 1000]))
    }

    #[test]
    fn eviction_keeps_the_entries_read_since_and_takes_the_oldest_unread() {
        let tenant = TenantId::generate();
        // Paths that all land in one shard, so its order is the whole story.
        let paths: Vec<String> = (0..10_000)
            .map(|i| format!("/f{i:05}")) // one length: every entry costs the same
            .filter(|p| key(&tenant, p).is_multiple_of(SHARDS as u64))
            .take(15)
            .collect();
        let one = cost(&entry(&paths[0]));
        let cache = FileCache::new(one * 10 * SHARDS); // room for 10 entries per shard
        for p in &paths[..10] {
            cache.insert(&tenant, cache.generation(), entry(p));
        }
        for p in [&paths[1], &paths[4], &paths[8]] {
            assert!(cache.get(&tenant, p).is_some());
        }
        for p in &paths[10..15] {
            cache.insert(&tenant, cache.generation(), entry(p));
        }
        let kept: Vec<usize> = (0..15).filter(|&i| cache.get(&tenant, &paths[i]).is_some()).collect();
        // The five oldest unread (0, 2, 3, 5, 6) made room; the read ones and the new ones stay.
        assert_eq!(kept, [1, 4, 7, 8, 9, 10, 11, 12, 13, 14]);
        // A rewritten (invalidated) entry leaves only a stale mention behind.
        cache.invalidate(&tenant, &paths[7]);
        assert!(cache.get(&tenant, &paths[7]).is_none());
        {
            let shard = cache.lock(key(&tenant, &paths[0]));
            assert_eq!(shard.map.len(), 9);
            assert_eq!(shard.bytes, 9 * one);
        }
        // Reads: 3 hits, then 15 lookups of which 10 hit, then one miss.
        let stats = cache.stats();
        assert_eq!(stats, CacheStats { hits: 13, misses: 6, entries: 9, bytes: (9 * one) as u64 });
    }
}
