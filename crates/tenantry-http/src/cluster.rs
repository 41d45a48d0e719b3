//! Several nodes on one database: this node's directory follows the changes other nodes commit.
//! The store tells a [`DirectoryChanges`] which tenants changed (or that it may have missed some);
//! [`follow_directory`] re-reads them in a task, coalescing what piled up meanwhile. The follower
//! is registered with the store before the service loads the directory, and buffers until the task
//! starts, so no change committed after that load is lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::directory::DirectoryFollower;
use tenantry_core::ids::{KeyId, TenantId};
use tenantry_core::service::Tenantry;
use tenantry_core::time::Timestamp;
use tokio::sync::mpsc;

enum Change {
    Tenant(TenantId),
    KeyRevoked(TenantId, KeyId, Timestamp),
    Everything,
}

/// The store's side: queues what changed, without blocking.
pub struct DirectoryChanges(mpsc::UnboundedSender<Change>);

/// What [`follow_directory`] consumes.
pub struct PendingChanges(mpsc::UnboundedReceiver<Change>);

impl DirectoryChanges {
    pub fn new() -> (Arc<DirectoryChanges>, PendingChanges) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(DirectoryChanges(tx)), PendingChanges(rx))
    }
}

impl DirectoryFollower for DirectoryChanges {
    fn tenant_changed(&self, tenant: &TenantId) {
        let _ = self.0.send(Change::Tenant(tenant.clone()));
    }

    fn key_revoked(&self, tenant: &TenantId, key: &KeyId, at: Timestamp) {
        let _ = self.0.send(Change::KeyRevoked(tenant.clone(), key.clone(), at));
    }

    fn resync(&self) {
        let _ = self.0.send(Change::Everything);
    }
}

/// How long to wait before trying a failed re-read again (the database may be away; the store
/// asks for a full re-read when its feed comes back anyway).
const RETRY: Duration = Duration::from_millis(500);

/// Re-reads each changed tenant (or, after a possible miss, the whole directory) until `changes`
/// ends. A re-read that fails turns into a full re-read, tried again until it succeeds.
pub fn follow_directory(svc: Arc<Tenantry>, mut changes: PendingChanges) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut everything = false;
        let mut tenants = BTreeSet::new();
        loop {
            if !everything && tenants.is_empty() {
                match changes.0.recv().await {
                    Some(change) => take(&svc, change, &mut everything, &mut tenants),
                    None => return,
                }
            }
            while let Ok(change) = changes.0.try_recv() {
                take(&svc, change, &mut everything, &mut tenants);
            }
            if everything {
                tenants.clear();
                match svc.resync_directory().await {
                    Ok(()) => everything = false,
                    Err(e) => {
                        tracing::warn!("could not re-read the directory (trying again): {}", e.message);
                        tokio::time::sleep(RETRY).await;
                    }
                }
                continue;
            }
            for tenant in std::mem::take(&mut tenants) {
                if let Err(e) = svc.reload_tenant(&tenant).await {
                    tracing::warn!("could not re-read tenant {tenant} (re-reading everything): {}", e.message);
                    everything = true;
                    break;
                }
            }
        }
    })
}

/// Notes a change to re-read; a revocation is applied at once (it needs no read).
fn take(svc: &Tenantry, change: Change, everything: &mut bool, tenants: &mut BTreeSet<TenantId>) {
    match change {
        Change::Tenant(t) => {
            tenants.insert(t);
        }
        Change::KeyRevoked(tenant, key, at) => svc.key_revoked_elsewhere(&tenant, &key, at),
        Change::Everything => *everything = true,
    }
}
