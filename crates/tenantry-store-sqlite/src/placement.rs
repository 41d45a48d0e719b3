//! Where each tenant's rows live (API.md §9): `shared` tenants in the shared database, each
//! `dedicated` tenant in a database file of its own (`DATA/tenants/<id>.db`, the same schema).
//! [`Routes`] is the store's own map of dedicated tenants (the registry's placement column,
//! loaded at open and changed only by a move's switch) and the per-tenant write fences a move
//! raises; [`DedicatedPools`] opens dedicated databases through a bounded cache, so any number of
//! dedicated tenants run with a fixed number of open files.

use crate::database::Database;
use crate::pool::OpenOptions;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tenantry_core::ids::TenantId;
use tenantry_core::Result;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock as AsyncRwLock};

/// The folder of dedicated databases inside the data dir.
pub const DEDICATED_DIR: &str = "tenants";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub(crate) struct Routes {
    dedicated: RwLock<HashSet<TenantId>>,
    /// Dedicated tenants that have (or had, since the start) webhooks: the delivery worker reads
    /// their outboxes too.
    hooked: RwLock<HashSet<TenantId>>,
    /// Where the next round of cross-tenant upkeep starts among the dedicated tenants.
    upkeep_next: Mutex<usize>,
    /// A gate per tenant that writes pass; a move closes its tenant's for the fence.
    fences: RwLock<HashMap<TenantId, Arc<AsyncRwLock<()>>>>,
}

/// A write's pass through its tenant's gate: while held, the gate cannot close.
pub(crate) type FencePass = OwnedRwLockReadGuard<()>;

impl Routes {
    pub fn is_dedicated(&self, tenant: &TenantId) -> bool {
        self.dedicated.read().unwrap_or_else(|e| e.into_inner()).contains(tenant)
    }

    pub fn set_dedicated(&self, tenant: &TenantId, dedicated: bool) {
        let mut set = self.dedicated.write().unwrap_or_else(|e| e.into_inner());
        if dedicated {
            set.insert(tenant.clone());
        } else {
            set.remove(tenant);
        }
    }

    pub fn dedicated_tenants(&self) -> Vec<TenantId> {
        let mut all: Vec<TenantId> = self.dedicated.read().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        all.sort();
        all
    }

    pub fn set_hooked(&self, tenant: &TenantId) {
        self.hooked.write().unwrap_or_else(|e| e.into_inner()).insert(tenant.clone());
    }

    /// Dedicated tenants with webhooks (a tenant moved back to shared drops out).
    pub fn hooked(&self) -> Vec<TenantId> {
        let hooked = self.hooked.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<TenantId> = hooked.iter().filter(|t| self.is_dedicated(t)).cloned().collect();
        all.sort();
        all
    }

    /// The next `n` dedicated tenants for upkeep, turning round-robin.
    pub fn upkeep_window(&self, n: usize) -> Vec<TenantId> {
        let all = self.dedicated_tenants();
        if all.is_empty() {
            return Vec::new();
        }
        let mut next = lock(&self.upkeep_next);
        let start = *next % all.len();
        *next = start + n.min(all.len());
        (0..n.min(all.len())).map(|i| all[(start + i) % all.len()].clone()).collect()
    }

    /// Waits while the tenant's fence is closed; the pass keeps it from closing until dropped.
    /// Every write takes one (a gate per tenant, made on its first write), so a fence closed
    /// later still waits for a write that started before the move did.
    pub async fn enter(&self, tenant: &TenantId) -> FencePass {
        self.install_fence(tenant).read_owned().await
    }

    /// The gate in front of the tenant's writes (open until [`close`](Self::close)).
    pub fn install_fence(&self, tenant: &TenantId) -> Arc<AsyncRwLock<()>> {
        // Read-locked on every write; written once per tenant.
        if let Some(gate) = self.fences.read().unwrap_or_else(|e| e.into_inner()).get(tenant) {
            return gate.clone();
        }
        let mut fences = self.fences.write().unwrap_or_else(|e| e.into_inner());
        fences.entry(tenant.clone()).or_insert_with(|| Arc::new(AsyncRwLock::new(()))).clone()
    }

    /// Closes the gate: waits for the writes inside to finish; new ones wait at the gate.
    pub async fn close(gate: &Arc<AsyncRwLock<()>>) -> OwnedRwLockWriteGuard<()> {
        gate.clone().write_owned().await
    }
}

type OpenPools = HashMap<TenantId, (Arc<Database>, u64)>;

/// Dedicated databases by tenant, at most `capacity` open at once (least recently used closed
/// first; a pool still in use by a request closes when that request is done).
pub(crate) struct DedicatedPools {
    dir: PathBuf,
    opts: OpenOptions,
    capacity: usize,
    /// Open pools with the tick they were last used at, and the current tick.
    open: Mutex<(OpenPools, u64)>,
}

impl DedicatedPools {
    pub fn new(data_dir: &Path, opts: &OpenOptions, capacity: usize) -> DedicatedPools {
        // One reader and no file cache of their own: a dedicated tenant is one tenant.
        let opts = OpenOptions { readers: 1, cache_bytes: 0, ..opts.clone() };
        DedicatedPools {
            dir: data_dir.join(DEDICATED_DIR),
            opts,
            capacity: capacity.max(1),
            open: Mutex::new((HashMap::new(), 0)),
        }
    }

    pub fn path_of(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join(format!("{tenant}.db"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tenant's pool, opening (creating and migrating if needed) its database on a miss.
    pub fn get(&self, tenant: &TenantId) -> Result<Arc<Database>> {
        let mut guard = lock(&self.open);
        let (open, tick) = &mut *guard;
        *tick += 1;
        if let Some((pool, used)) = open.get_mut(tenant) {
            *used = *tick;
            return Ok(pool.clone());
        }
        if open.len() >= self.capacity {
            if let Some(oldest) = open.iter().min_by_key(|(_, (_, used))| *used).map(|(t, _)| t.clone()) {
                open.remove(&oldest);
            }
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| tenantry_core::Error::internal(format!("cannot create {}: {e}", self.dir.display())))?;
        // Opened under the lock: two pools (two writer threads) on one file would contend.
        let pool = Arc::new(Database::open_with_tails(&self.path_of(tenant), &self.opts)?);
        open.insert(tenant.clone(), (pool.clone(), *tick));
        Ok(pool)
    }

    /// Closes the tenant's pool if open (before its file is deleted, or to release it).
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.open).0.remove(tenant);
    }

    /// Deletes the tenant's database files (after [`forget`](Self::forget)).
    pub fn delete_files(&self, tenant: &TenantId) -> Result<()> {
        self.forget(tenant);
        let base = self.path_of(tenant);
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", base.display()));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(tenantry_core::Error::internal(format!("cannot delete {}: {e}", p.display()))),
            }
        }
        Ok(())
    }
}
