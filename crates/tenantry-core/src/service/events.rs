//! The change feed (API.md §7): pages of events, and what the live stream needs to stay honest
//! (a stream ends when its key or tenant stops being allowed).

use super::{page_limit, Tenantry};
use crate::caller::{Caller, Principal};
use crate::error::Result;
use crate::events::Event;
use crate::model::{Page, TenantStatus};
use crate::role::Role;

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
            let n = self.store.prune_events(before).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }
}
