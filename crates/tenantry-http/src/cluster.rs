//! Several nodes on one database: this node's directory follows the changes other nodes commit.
//! The store tells a [`DirectoryChanges`] which tenants (or people) changed (or that it may have missed some);
//! [`follow_directory`] re-reads them in a task, coalescing what piled up meanwhile. The follower
//! is registered with the store before the service loads the directory, and buffers until the task
//! starts, so no change committed after that load is lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::directory::DirectoryFollower;
use tenantry_core::ids::{KeyId, TenantId, UserId};
use tenantry_core::service::Tenantry;
use tenantry_core::time::Timestamp;
use tokio::sync::mpsc;

enum Change {
    Tenant(TenantId),
    Person(UserId),
    Everything,
}

/// What piled up to re-read.
#[derive(Default)]
struct Pending {
    everything: bool,
    tenants: BTreeSet<TenantId>,
    people: BTreeSet<UserId>,
}

/// A key revoked on some node, applied without a read.
type Revocation = (TenantId, KeyId, Timestamp);

/// The store's side: queues what changed, without blocking. Revocations go apart, so that
/// re-reads under way never hold them up.
pub struct DirectoryChanges {
    changes: mpsc::UnboundedSender<Change>,
    revocations: mpsc::UnboundedSender<Revocation>,
}

/// What [`follow_directory`] consumes.
pub struct PendingChanges {
    changes: mpsc::UnboundedReceiver<Change>,
    revocations: mpsc::UnboundedReceiver<Revocation>,
}

impl DirectoryChanges {
    pub fn new() -> (Arc<DirectoryChanges>, PendingChanges) {
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (revocations, revocations_rx) = mpsc::unbounded_channel();
        (
            Arc::new(DirectoryChanges { changes, revocations }),
            PendingChanges { changes: changes_rx, revocations: revocations_rx },
        )
    }
}

impl DirectoryFollower for DirectoryChanges {
    fn tenant_changed(&self, tenant: &TenantId) {
        let _ = self.changes.send(Change::Tenant(tenant.clone()));
    }

    fn key_revoked(&self, tenant: &TenantId, key: &KeyId, at: Timestamp) {
        let _ = self.revocations.send((tenant.clone(), key.clone(), at));
    }

    fn person_changed(&self, user: &UserId) {
        let _ = self.changes.send(Change::Person(user.clone()));
    }

    fn resync(&self) {
        let _ = self.changes.send(Change::Everything);
    }
}

/// How long to wait before trying a failed re-read again (the database may be away; the store
/// asks for a full re-read when its feed comes back anyway).
const RETRY: Duration = Duration::from_millis(500);

/// After a resynchronization, when the monthly calls catch up with the store a second time:
/// longer than two of every node's metering flushes (every 2 s), so calls other nodes counted
/// while this node's feed was down, and flushed only after the first catch-up, are in it.
const CATCH_UP_AGAIN: Duration = Duration::from_secs(5);

/// Re-reads each changed tenant (or, after a possible miss, the whole directory) until `changes`
/// ends. A re-read that fails turns into a full re-read, tried again until it succeeds. After a
/// full re-read, each tenant's monthly calls catch up with the store, twice (see
/// [`CATCH_UP_AGAIN`]). Revocations are applied as they come, in a task of their own.
pub fn follow_directory(svc: Arc<Tenantry>, changes: PendingChanges) -> tokio::task::JoinHandle<()> {
    let PendingChanges { changes: mut pending, mut revocations } = changes;
    let revoker = svc.clone();
    let revoking = tokio::spawn(async move {
        while let Some((tenant, key, at)) = revocations.recv().await {
            revoker.key_revoked_elsewhere(&tenant, &key, at);
        }
    });
    tokio::spawn(async move {
        // Stopping this task (the handle aborted) stops the revocations' and the catch-ups too.
        let _revoking = AbortOnDrop(revoking);
        let mut catch_ups = tokio::task::JoinSet::new();
        let mut to_read = Pending::default();
        loop {
            if !to_read.everything && to_read.tenants.is_empty() && to_read.people.is_empty() {
                match pending.recv().await {
                    Some(change) => to_read.take(change),
                    None => return,
                }
            }
            while let Ok(change) = pending.try_recv() {
                to_read.take(change);
            }
            if to_read.everything {
                to_read.tenants.clear();
                to_read.people.clear();
                match svc.resync_directory().await {
                    Ok(()) => {
                        to_read.everything = false;
                        while catch_ups.try_join_next().is_some() {}
                        catch_ups.spawn(catch_up_months(svc.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("could not re-read the directory (trying again): {}", e.message);
                        tokio::time::sleep(RETRY).await;
                    }
                }
                continue;
            }
            for tenant in std::mem::take(&mut to_read.tenants) {
                if let Err(e) = svc.reload_tenant(&tenant).await {
                    tracing::warn!("could not re-read tenant {tenant} (re-reading everything): {}", e.message);
                    to_read.everything = true;
                    break;
                }
            }
            for user in std::mem::take(&mut to_read.people) {
                if let Err(e) = svc.reload_person(&user).await {
                    tracing::warn!("could not re-read user {user} (re-reading everything): {}", e.message);
                    to_read.everything = true;
                    break;
                }
            }
        }
    })
}

/// Brings each tenant's monthly calls up to the store's count now and again after
/// [`CATCH_UP_AGAIN`] (a failure is logged: the next resynchronization tries again).
async fn catch_up_months(svc: Arc<Tenantry>) {
    for wait in [Duration::ZERO, CATCH_UP_AGAIN] {
        tokio::time::sleep(wait).await;
        if let Err(e) = svc.catch_up_months().await {
            tracing::warn!("could not bring the monthly calls up to the store's count: {}", e.message);
        }
    }
}

/// A task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Pending {
    fn take(&mut self, change: Change) {
        match change {
            Change::Tenant(t) => {
                self.tenants.insert(t);
            }
            Change::Person(u) => {
                self.people.insert(u);
            }
            Change::Everything => self.everything = true,
        }
    }
}
