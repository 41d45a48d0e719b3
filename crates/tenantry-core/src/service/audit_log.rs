//! The audit log as callers read it (listing, verifying the chain) and its retention: each
//! tenant's entries older than its `audit_retention_days` are pruned by background upkeep, the
//! chain kept verifiable from its anchor (see [`crate::audit`]).

use super::{page_limit, Tenantry, MAX_PAGE};
use crate::audit::{self, ChainReport};
use crate::caller::Caller;
use crate::error::Result;
use crate::ids::TenantId;
use crate::model::{AuditEntry, Page};
use crate::role::Role;
use crate::store::TenantScope;
use crate::time::Timestamp;
use std::collections::HashMap;

/// Pages of the audit log one listing by a prefixed key reads at most.
const AUDIT_SCAN_PAGES: usize = 10;
/// Entries one prune transaction deletes at most (the upkeep repeats while a batch is full).
pub const AUDIT_PRUNE_BATCH: usize = 5000;
const DAY_MS: i64 = 86_400_000;
/// A tenant's log is looked at again at most this often (sooner only with a shorter retention).
const PRUNE_RECHECK_MS: i64 = 3_600_000;

/// When each tenant's log is next worth pruning, in memory: a tenant not in it is due.
#[derive(Default)]
pub(crate) struct PruneSchedule(std::sync::Mutex<HashMap<TenantId, Timestamp>>);

impl PruneSchedule {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Timestamp>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tenantry {
    pub async fn list_audit(
        &self,
        caller: &Caller,
        after: Option<u64>,
        action: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<AuditEntry>> {
        caller.require_role(Role::Admin)?;
        let limit = page_limit(limit)?;
        let action = action.filter(|a| !a.is_empty());
        let scope = caller.scope();
        if caller.prefix().is_none() {
            let items = self.store.list_audit(&scope, after.unwrap_or(0), action, limit + 1).await?;
            return Ok(Page::cut(items, limit, |e| e.seq.to_string()));
        }
        // A prefixed key reads the log in pages and keeps what it may see. Each request reads
        // at most AUDIT_SCAN_PAGES pages: past that it answers what it found, with a cursor
        // after the last entry read, so a sparse log costs bounded work per request.
        let mut kept = Vec::new();
        let mut cursor = after.unwrap_or(0);
        for _ in 0..AUDIT_SCAN_PAGES {
            let page = self.store.list_audit(&scope, cursor, action, MAX_PAGE).await?;
            let Some(last) = page.last().map(|e| e.seq) else { return Ok(Page { items: kept, next_cursor: None }) };
            let done = page.len() < MAX_PAGE;
            for e in page {
                if kept.len() == limit {
                    return Ok(Page { next_cursor: kept.last().map(|e: &AuditEntry| e.seq.to_string()), items: kept });
                }
                if caller.sees_audit(&e) {
                    kept.push(e);
                }
            }
            if done {
                return Ok(Page { items: kept, next_cursor: None });
            }
            cursor = last;
        }
        Ok(Page { items: kept, next_cursor: Some(cursor.to_string()) })
    }

    /// Walks the caller's tenant's audit chain, from its anchor if older entries were pruned.
    pub async fn verify_audit(&self, caller: &Caller) -> Result<ChainReport> {
        caller.require_role(Role::Admin)?;
        // The chain runs through every entry, including those a prefixed key may not see.
        caller.require_whole_tenant("verifying the audit chain")?;
        let scope = caller.scope();
        // The anchor and the pages are separate reads: a prune committed between them moves
        // the anchor, and the walk is taken again (a prune runs at most once per tenant per
        // round of upkeep, so a second walk meets a settled chain).
        let mut attempts = 0;
        loop {
            let anchor = self.store.audit_anchor(&scope).await?;
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let page = self.store.list_audit(&scope, after, None, MAX_PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                let done = page.len() < MAX_PAGE;
                all.extend(page);
                if done {
                    break;
                }
            }
            attempts += 1;
            if attempts < 3 && self.store.audit_anchor(&scope).await? != anchor {
                continue;
            }
            return Ok(audit::verify(anchor.as_ref(), &all));
        }
    }

    /// Background upkeep: prunes each due tenant's audit entries older than its retention
    /// (`audit_retention_days` of its tier or quotas); returns how many were deleted. A tenant
    /// being moved waits for the next round. One tenant's failure does not stop the others: the
    /// first is returned once all were tried, and that tenant is tried again next round.
    pub async fn prune_audit(&self) -> Result<u64> {
        let now = self.clock.now();
        let tenants = self.directory.list_tenants(None, None, None, usize::MAX);
        {
            let known: std::collections::HashSet<&TenantId> = tenants.iter().map(|t| &t.id).collect();
            self.audit_prune.lock().retain(|id, _| known.contains(id));
        }
        let mut total = 0;
        let mut failed = None;
        'tenants: for tenant in tenants {
            let Some(days) = self.config.tiers.limits_of(&tenant).audit_retention_days else { continue };
            let keep_ms = i64::try_from(days).unwrap_or(i64::MAX).saturating_mul(DAY_MS);
            let recheck_ms = keep_ms.min(PRUNE_RECHECK_MS);
            let due = *self.audit_prune.lock().entry(tenant.id.clone()).or_insert_with(|| {
                // First seen (after a start, or a new tenant): at a random point of the recheck
                // interval, so a start does not look at every tenant's log in one round.
                let spread = rand::Rng::gen_range(&mut rand::thread_rng(), 0..recheck_ms.max(1));
                Timestamp::from_millis(now.millis().saturating_add(spread))
            });
            let moving = self.moving.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&tenant.id);
            if moving || due > now {
                continue;
            }
            let before = Timestamp::from_millis(now.millis().saturating_sub(keep_ms));
            let scope = TenantScope::new(&tenant);
            let oldest_kept = loop {
                match self.store.prune_audit(&scope, before, AUDIT_PRUNE_BATCH).await {
                    Ok(pruned) => {
                        total += pruned.deleted;
                        if pruned.deleted < AUDIT_PRUNE_BATCH as u64 {
                            break pruned.oldest_kept;
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                        continue 'tenants;
                    }
                }
            };
            // Next when the oldest kept entry comes of age, but not sooner than the recheck
            // interval (or the retention itself, if shorter).
            let floor = now.millis().saturating_add(recheck_ms);
            let next = oldest_kept.map_or(floor, |at| at.millis().saturating_add(keep_ms).max(floor));
            self.audit_prune.lock().insert(tenant.id.clone(), Timestamp::from_millis(next));
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}
