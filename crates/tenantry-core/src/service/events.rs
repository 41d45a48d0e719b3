//! The change feed (API.md §7): pages of events, and what the live stream needs to stay honest
//! (a stream ends when its key or tenant stops being allowed).

use super::{page_limit, Tenantry};
use crate::caller::{Caller, Principal};
use crate::error::Result;
use crate::events::Event;
use crate::model::{Page, Tenant, TenantStatus};
use crate::role::Role;
use crate::store::TenantScope;
use crate::time::Timestamp;
use std::time::Duration;

/// Largest page of events.
pub const EVENT_PAGE_MAX: usize = 1000;

impl Tenantry {
    /// Events with `seq > after`, oldest first, as far as the key may see them.
    pub async fn list_events(&self, caller: &Caller, after: Option<u64>, limit: Option<usize>) -> Result<Page<Event>> {
        let limit = page_limit(limit)?.min(EVENT_PAGE_MAX);
        let items = self.events_after(caller, after.unwrap_or(0), limit + 1).await?;
        Ok(Page::cut(items, limit, |e| e.seq.to_string()))
    }

    /// What the live stream reads: up to `limit` visible events after `after`.
    pub async fn events_after(&self, caller: &Caller, after: u64, limit: usize) -> Result<Vec<Event>> {
        caller.require_role(Role::Reader)?;
        self.require_live(caller)?;
        self.store.list_events(&caller.scope(), after, caller.prefix().cloned(), limit).await
    }

    /// The tenant's latest event number (a stream started without `Last-Event-ID` begins there).
    pub async fn last_event_seq(&self, caller: &Caller) -> Result<u64> {
        self.store.last_event_seq(&caller.scope()).await
    }

    /// Whether the caller would still be let in now: its key neither revoked nor expired, its
    /// tenant still active. A long-lived stream checks this as it goes.
    pub fn still_allowed(&self, caller: &Caller) -> bool {
        let Some(tenant) = self.directory.tenant(&caller.tenant().id) else { return false };
        if tenant.status != TenantStatus::Active {
            return false;
        }
        match caller.principal() {
            Principal::Operator => true,
            Principal::Key(k) => self.directory.key(&k.id).is_some_and(|k| k.is_usable(self.clock.now())),
            Principal::Person(p) => {
                let user = self.people.user(&p.user.id).filter(|u| u.disabled_at.is_none());
                self.people.session_exists(&p.session)
                    && user.is_some_and(|u| {
                        // The rights it was opened with, if it still has them.
                        if p.operator {
                            u.super_admin
                        } else {
                            self.people.role_in(&u.id, &caller.tenant().id).is_some()
                        }
                    })
            }
        }
    }

    /// Background upkeep: drops events older than the retention period.
    pub async fn prune_events(&self) -> Result<u64> {
        let keep_ms = self.config.event_retention_days.saturating_mul(86_400_000).min(i64::MAX as u64) as i64;
        let before = crate::time::Timestamp::from_millis(self.clock.now().millis().saturating_sub(keep_ms));
        let mut total = 0;
        loop {
            let n = self.store.prune_events(before, self.config.event_relay.as_deref()).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Every tenant in the directory, for a relay's rounds (events of suspended and archived
    /// tenants are relayed too: they were committed).
    pub fn relay_tenants(&self) -> Vec<std::sync::Arc<Tenant>> {
        self.directory.list_tenants(None, None, None, usize::MAX)
    }

    /// A relay's claim on one tenant's events for `holder`, for `lease` from now (see
    /// [`crate::store::Upkeep::claim_relay`]): where it stands, taken or not (`None`: the tenant
    /// is gone).
    pub async fn claim_relay(
        &self,
        tenant: &Tenant,
        relay: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<crate::store::RelayPosition>> {
        let now = self.clock.now();
        self.store.claim_relay(&TenantScope::new(tenant), relay, holder, now, lease_end(now, lease)).await
    }

    /// Up to `limit` of the tenant's events after `after`, oldest first, all paths: what a relay
    /// sends next.
    pub async fn relay_events(&self, tenant: &Tenant, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.store.list_events(&TenantScope::new(tenant), after, None, limit).await
    }

    /// Records a relay's progress through `seq` and holds its claim for `lease` more: `false`
    /// when another holder took the relay over.
    pub async fn advance_relay(
        &self,
        tenant: &Tenant,
        relay: &str,
        holder: &str,
        seq: u64,
        lease: Duration,
    ) -> Result<bool> {
        let end = lease_end(self.clock.now(), lease);
        self.store.advance_relay(&TenantScope::new(tenant), relay, holder, seq, end).await
    }
}

fn lease_end(now: Timestamp, lease: Duration) -> Timestamp {
    Timestamp::from_millis(now.millis().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)))
}
