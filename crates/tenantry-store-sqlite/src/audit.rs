//! The audit log: each tenant's hash chain (`tenantry_core::audit`), appended inside the
//! transaction of the change it records, read by page, and pruned by age from its oldest end
//! with the last pruned entry kept as the tenant's anchor (`audit_anchor`). Where an entry is
//! stored (keyed table, tail, tail index) is `tails`'s business.

use crate::error::sql_error;
use crate::pool::read_on;
use crate::store::SqliteStore;
use crate::tails::Log;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tenantry_core::audit::{next_entry, prune_record, worth_pruning, AuditAnchor};
use tenantry_core::ids::TenantId;
use tenantry_core::model::{AuditDraft, AuditEntry};
use tenantry_core::store::{AuditLog, AuditPruned, TenantScope};
use tenantry_core::time::{Clock, SystemClock, Timestamp};
use tenantry_core::Result;

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get::<_, i64>(0)? as u64,
        at: Timestamp::from_millis(r.get(1)?),
        tenant: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        result: r.get(6)?,
        request_id: r.get(7)?,
        ip: r.get(8)?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

/// Appends to the tenant's hash chain inside the caller's transaction: to the audit tail, or
/// straight to the keyed table for a dense tenant of the write's group whose chain head is there
/// (see `tails`).
pub(crate) fn append_audit_tx(tx: &Connection, tenant: &TenantId, slug: &str, draft: AuditDraft) -> Result<()> {
    let head = crate::tails::audit_head(tx, tenant)?;
    let direct = !head.as_ref().is_some_and(|h| h.in_tail) && crate::tails::dense_tenant(tenant);
    let prev = head.as_ref().map(|h| (h.seq as u64, h.hash.as_str()));
    let entry = next_entry(prev, slug, draft, SystemClock.now());
    let table = if direct { Log::Audit.keyed() } else { Log::Audit.tail() };
    tx.prepare_cached(&format!(
        "INSERT INTO {table} (tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            tenant.as_str(),
            entry.seq as i64,
            entry.at.millis(),
            entry.tenant,
            entry.actor,
            entry.action,
            entry.target,
            entry.result,
            entry.request_id,
            entry.ip,
            entry.prev_hash,
            entry.hash
        ])
    })
    .map_err(sql_error)?;
    if direct {
        return Ok(());
    }
    crate::tails::set_audit_head(tx, tenant, entry.seq as i64, &entry.hash)
}

/// An entry a prune may take: its place in the chain (what the anchor becomes) and its action.
type Prunable = (AuditAnchor, String);

/// The entries a prune may take: in seq order from just after the anchor, at most `max`, while
/// written before `before`; with the time of the entry that stopped the walk, if one did.
///
/// Read on a reader, before the write: an entry never changes once written, so what is found
/// still holds there. Only keyed entries and tail entries whose fold has settled
/// (`id <= tails_indexed.upto`) are taken: the others are still named by the writer's in-memory
/// registry, which must never name a pruned entry (listings take ids from it). They are the
/// newest end of a tenant's chain, so the walk stops at the first seq it cannot see.
fn prunable(
    c: &Connection,
    tenant: &TenantId,
    before: Timestamp,
    max: usize,
) -> Result<(Vec<Prunable>, Option<Timestamp>)> {
    let after = anchor_of(c, tenant)?.map_or(0, |a| a.seq as i64);
    let upto: i64 =
        c.query_row("SELECT upto FROM tails_indexed WHERE log = 'audit'", [], |r| r.get(0)).map_err(sql_error)?;
    let row = |r: &Row<'_>| {
        let entry =
            AuditAnchor { seq: r.get::<_, i64>(0)? as u64, at: Timestamp::from_millis(r.get(1)?), hash: r.get(2)? };
        Ok((entry, r.get::<_, String>(3)?))
    };
    let mut keyed = c
        .prepare_cached("SELECT seq, at, hash, action FROM audit WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq")
        .map_err(sql_error)?;
    let mut indexed = c
        .prepare_cached(
            "SELECT i.seq, t.at, t.hash, t.action FROM audit_tail_index i JOIN audit_tail t ON t.id = i.id
             WHERE i.tenant_id = ?1 AND i.seq > ?2 AND i.id <= ?3 ORDER BY i.seq",
        )
        .map_err(sql_error)?;
    // Both are read lazily, merged by seq: the walk usually stops after a row or two.
    let mut keyed = keyed.query_map(params![tenant.as_str(), after], row).map_err(sql_error)?;
    let mut indexed = indexed.query_map(params![tenant.as_str(), after, upto], row).map_err(sql_error)?;
    let (mut k, mut x) = (keyed.next().transpose().map_err(sql_error)?, indexed.next().transpose().map_err(sql_error)?);
    let mut found = Vec::new();
    let mut expected = after as u64 + 1;
    loop {
        let from_keyed = match (&k, &x) {
            (None, None) => return Ok((found, None)),
            (Some(a), Some(b)) => a.0.seq <= b.0.seq,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        let next = if from_keyed {
            std::mem::replace(&mut k, keyed.next().transpose().map_err(sql_error)?)
        } else {
            std::mem::replace(&mut x, indexed.next().transpose().map_err(sql_error)?)
        };
        let Some((entry, action)) = next else { return Ok((found, None)) };
        if entry.seq != expected || entry.at >= before || found.len() == max {
            return Ok((found, Some(entry.at)));
        }
        expected += 1;
        found.push((entry, action));
    }
}

/// The tenant's anchor: the last entry pruned from its chain, if any was.
fn anchor_of(c: &Connection, tenant: &TenantId) -> Result<Option<AuditAnchor>> {
    c.prepare_cached("SELECT seq, hash, at FROM audit_anchor WHERE tenant_id = ?1")
        .and_then(|mut s| {
            s.query_row([tenant.as_str()], |r| {
                Ok(AuditAnchor {
                    seq: r.get::<_, i64>(0)? as u64,
                    hash: r.get(1)?,
                    at: Timestamp::from_millis(r.get(2)?),
                })
            })
            .optional()
        })
        .map_err(sql_error)
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, scope: &TenantScope, draft: AuditDraft) -> Result<()> {
        let scope = scope.clone();
        self.write_of(&scope.tenant_id().clone(), move |tx| {
            append_audit_tx(tx, scope.tenant_id(), scope.slug().as_str(), draft)
        })
        .await
    }

    async fn list_audit(
        &self,
        scope: &TenantScope,
        after: u64,
        action: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let tenant = scope.tenant_id().clone();
        let action = action.map(str::to_owned);
        let pool = self.pool_of(&tenant)?;
        // Filtered by action, a page may need every later tail entry; unfiltered, `limit` of them.
        let tail = pool.tails().ids(Log::Audit, &tenant, after, action.is_none().then_some(limit));
        read_on(pool, move |conn| {
            let sql = Log::Audit.select(
                Log::Audit.entry_columns(),
                "seq > MAX(?2, IFNULL((SELECT seq FROM audit_anchor WHERE tenant_id = ?1), 0))
                 AND (?3 IS NULL OR action = ?3)",
                5,
                "ORDER BY seq LIMIT ?4",
            );
            let mut s = conn.prepare_cached(&sql).map_err(sql_error)?;
            let rows = s
                .query_map(
                    params![tenant.as_str(), after.min(i64::MAX as u64) as i64, action, limit as i64, tail],
                    audit_from_row,
                )
                .map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)).collect()
        })
        .await
    }

    async fn audit_anchor(&self, scope: &TenantScope) -> Result<Option<AuditAnchor>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |c| anchor_of(c, &tenant)).await
    }
}

/// Cross-tenant upkeep (see `upkeep`): not reachable through a request's scope.
impl SqliteStore {
    pub(crate) async fn prune_audit(&self, scope: &TenantScope, before: Timestamp, max: usize) -> Result<AuditPruned> {
        let scope = scope.clone();
        let tenant = scope.tenant_id().clone();
        let (found, following) = self.read_of(&tenant.clone(), move |c| prunable(c, &tenant, before, max)).await?;
        // The oldest entry kept: the first one past those found, or the last found when nothing
        // follows it (it may be the newest entry, which is never pruned).
        let mut found = found;
        let oldest_kept = match following {
            Some(at) => Some(at),
            None => found.pop().map(|(e, _)| e.at),
        };
        if !worth_pruning(found.iter().map(|(_, action)| action.as_str())) {
            let oldest = found.first().map(|(e, _)| e.at).or(oldest_kept);
            return Ok(AuditPruned { deleted: 0, oldest_kept: oldest });
        }
        let Some((anchor, _)) = found.pop() else { return Ok(AuditPruned { deleted: 0, oldest_kept }) };
        let deleted = self
            .write_of(&scope.tenant_id().clone(), move |tx| {
                let tenant = scope.tenant_id();
                // Pruned meanwhile, or purged (a purge does not wait at the tenant's gate).
                if !crate::tenants::registered_tx(tx, tenant)?
                    || anchor_of(tx, tenant)?.is_some_and(|a| a.seq >= anchor.seq)
                {
                    return Ok(0);
                }
                let through = anchor.seq as i64;
                let run = |sql: &str| {
                    tx.prepare_cached(sql)
                        .and_then(|mut s| s.execute(params![tenant.as_str(), through]))
                        .map_err(sql_error)
                };
                let deleted = run("DELETE FROM audit WHERE tenant_id = ?1 AND seq <= ?2")?
                    + run("DELETE FROM audit_tail WHERE id IN
                             (SELECT id FROM audit_tail_index WHERE tenant_id = ?1 AND seq <= ?2)")?;
                // What the trigger left: index entries a fold made for rows already gone.
                run("DELETE FROM audit_tail_index WHERE tenant_id = ?1 AND seq <= ?2")?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO audit_anchor (tenant_id, seq, hash, at) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![tenant.as_str(), through, anchor.hash, anchor.at.millis()]))
                .map_err(sql_error)?;
                append_audit_tx(tx, tenant, scope.slug().as_str(), prune_record(&anchor))?;
                Ok(deleted as u64)
            })
            .await?;
        Ok(AuditPruned { deleted, oldest_kept })
    }
}
