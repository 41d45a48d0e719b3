//! Memory entries: one row per (tenant, namespace, key), the value as compact JSON text. Values
//! count toward the tenant's `storage_bytes` in the same counters as files, checked inside the
//! write transaction; expired rows are invisible at once and reclaimed in the background.

use crate::error::{corrupt, sql_error};
use crate::journal::{journal_tx, quota_warnings_tx};
use crate::search::{memory_doc, reindex_tx};
use crate::store::SqliteStore;
use crate::usage::{add_usage_tx, usage_tx};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tenantry_core::events::Journal;
use tenantry_core::ids::TenantId;
use tenantry_core::memory::{MemoryEntry, MemoryKey, Namespace};
use tenantry_core::quota;
use tenantry_core::search::{DocKind, IndexDoc};
use tenantry_core::store::{HeldEntry, MemoryListing, MemoryStore, MemoryWrite, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};

const COLUMNS: &str = "namespace, key, value, size, expires_at, created_at, updated_at";

fn entry_from_row(r: &Row<'_>, with_value: bool) -> rusqlite::Result<Result<MemoryEntry>> {
    let value: String = r.get(2)?;
    let (size, expires, created, updated): (i64, Option<i64>, i64, i64) = (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
    let value = if with_value {
        match serde_json::from_str(&value) {
            Ok(v) => Some(v),
            Err(_) => return Ok(Err(corrupt("memory value"))),
        }
    } else {
        None
    };
    Ok(Ok(MemoryEntry {
        namespace: r.get(0)?,
        key: r.get(1)?,
        value,
        size: size.max(0) as u64,
        expires_at: expires.map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
    }))
}

/// The entry at the key, live or expired.
fn current_tx(tx: &Connection, tenant: &TenantId, ns: &str, key: &str) -> Result<Option<HeldEntry>> {
    tx.prepare_cached(
        "SELECT size, created_at, expires_at FROM memory WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![tenant.as_str(), ns, key], |r| {
            Ok(HeldEntry {
                size: r.get::<_, i64>(0)? as u64,
                created_at: Timestamp::from_millis(r.get(1)?),
                expires_at: r.get::<_, Option<i64>>(2)?.map(Timestamp::from_millis),
            })
        })
        .optional()
    })
    .map_err(sql_error)
}

fn remove_tx(tx: &Connection, tenant: &TenantId, ns: &str, key: &str, size: i64) -> Result<()> {
    tx.prepare_cached("DELETE FROM memory WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3")
        .and_then(|mut s| s.execute(params![tenant.as_str(), ns, key]))
        .map_err(sql_error)?;
    add_usage_tx(tx, tenant, -size, 0)?;
    reindex_tx(tx, tenant, DocKind::Memory, &memory_doc(ns, key), None)
}

/// An entry as stored (the value is compact JSON).
pub(crate) struct StoredEntry<'a> {
    pub namespace: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Creates or replaces an entry and its index document (usage is the caller's).
pub(crate) fn upsert_memory_tx(
    tx: &Connection,
    tenant: &TenantId,
    e: &StoredEntry<'_>,
    index: &IndexDoc,
) -> Result<()> {
    upsert_memory_row_tx(tx, tenant, e)?;
    reindex_tx(tx, tenant, DocKind::Memory, &memory_doc(e.namespace, e.key), Some(index))
}

/// Creates or replaces an entry's row, leaving its index document to the caller.
pub(crate) fn upsert_memory_row_tx(tx: &Connection, tenant: &TenantId, e: &StoredEntry<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO memory (tenant_id, namespace, key, value, size, expires_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET value = excluded.value, size = excluded.size,
           expires_at = excluded.expires_at, created_at = excluded.created_at, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant.as_str(),
            e.namespace,
            e.key,
            e.value,
            e.value.len() as i64,
            e.expires_at.map(Timestamp::millis),
            e.created_at.millis(),
            e.updated_at.millis()
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

/// Values at most this large are read inline (see `get_memory`).
const INLINE_MAX: i64 = 64 * 1024;

/// The live entry (`Some(None)`: absent or expired), or `None` when its value is over `max_len`.
fn get_tx(
    conn: &Connection,
    tenant: &TenantId,
    ns: &Namespace,
    key: &MemoryKey,
    now: Timestamp,
    max_len: i64,
) -> Result<Option<Option<MemoryEntry>>> {
    let row = conn
        .prepare_cached(
            "SELECT namespace, key, CASE WHEN size <= ?5 THEN value END, size, expires_at, created_at, updated_at
             FROM memory WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3
               AND (expires_at IS NULL OR expires_at > ?4)",
        )
        .and_then(|mut s| {
            s.query_row(params![tenant.as_str(), ns.as_str(), key.as_str(), now.millis(), max_len], |r| match r
                .get::<_, Option<String>>(2)?
            {
                None => Ok(None),
                Some(_) => entry_from_row(r, true).map(Some),
            })
            .optional()
        })
        .map_err(sql_error)?;
    match row {
        None => Ok(Some(None)),
        Some(None) => Ok(None),
        Some(Some(entry)) => Ok(Some(Some(entry?))),
    }
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn put_memory(&self, scope: &TenantScope, write: MemoryWrite, journal: Journal) -> Result<MemoryEntry> {
        let scope = scope.clone();
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let tenant = scope.tenant_id();
            let (ns, key) = (write.namespace.as_str(), write.key.as_str());
            let decision = write.decide(current_tx(tx, tenant, ns, key)?);
            let used = usage_tx(tx, tenant)?;
            let limits = write.limits();
            let after = quota::storage(used, decision.delta, limits)?;
            add_usage_tx(tx, tenant, decision.delta.bytes, 0)?;
            let stored = StoredEntry {
                namespace: ns,
                key,
                value: &write.value,
                expires_at: write.expires_at,
                created_at: decision.created_at,
                updated_at: write.at,
            };
            upsert_memory_tx(tx, tenant, &stored, &write.index)?;
            journal_tx(tx, tenant, scope.slug().as_str(), journal, published)?;
            let warnings = quota::storage_warnings(used, after, limits);
            quota_warnings_tx(tx, tenant, scope.slug().as_str(), warnings, published)?;
            Ok(MemoryEntry {
                namespace: ns.to_owned(),
                key: key.to_owned(),
                value: None,
                size: decision.size,
                expires_at: write.expires_at,
                created_at: decision.created_at,
                updated_at: write.at,
            })
        })
        .await
    }

    async fn get_memory(
        &self,
        scope: &TenantScope,
        namespace: &Namespace,
        key: &MemoryKey,
        now: Timestamp,
    ) -> Result<Option<MemoryEntry>> {
        // Small values are read inline when a reader is free (as small files are): cheaper than
        // a hop to the blocking pool. A value over the inline limit comes back as NULL and is
        // read again on the pool.
        let pool = self.pool_of(scope.tenant_id())?;
        if let Some(conn) = pool.try_reader() {
            if let Some(found) = get_tx(&conn, scope.tenant_id(), namespace, key, now, INLINE_MAX)? {
                return Ok(found);
            }
        }
        let (tenant, ns, key) = (scope.tenant_id().clone(), namespace.clone(), key.clone());
        self.read_of(&tenant.clone(), move |conn| Ok(get_tx(conn, &tenant, &ns, &key, now, i64::MAX)?.flatten())).await
    }

    async fn delete_memory(
        &self,
        scope: &TenantScope,
        namespace: &Namespace,
        key: &MemoryKey,
        now: Timestamp,
        journal: Journal,
    ) -> Result<()> {
        let (scope, ns, key) = (scope.clone(), namespace.clone(), key.clone());
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let tenant = scope.tenant_id();
            match current_tx(tx, tenant, ns.as_str(), key.as_str())? {
                Some(held) if tenantry_core::memory::is_live(held.expires_at, now) => {
                    remove_tx(tx, tenant, ns.as_str(), key.as_str(), held.size as i64)?;
                    journal_tx(tx, tenant, scope.slug().as_str(), journal, published)
                }
                _ => Err(Error::not_found(format!("no memory entry {}/{}", ns.as_str(), key.as_str()))),
            }
        })
        .await
    }

    async fn list_memory(&self, scope: &TenantScope, listing: MemoryListing) -> Result<Vec<MemoryEntry>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            // Keys starting with the prefix sort in [prefix, prefix + U+10FFFF); `substr` keeps it
            // exact for any prefix without building an upper bound.
            let after = listing.after.clone().unwrap_or_default();
            let mut s = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM memory WHERE tenant_id = ?1 AND namespace = ?2 AND key >= ?3
                       AND substr(key, 1, length(?3)) = ?3 AND key > ?4
                       AND (expires_at IS NULL OR expires_at > ?5)
                     ORDER BY key LIMIT ?6"
                ))
                .map_err(sql_error)?;
            let rows = s
                .query_map(
                    params![
                        tenant.as_str(),
                        listing.namespace.as_str(),
                        listing.prefix,
                        after,
                        listing.now.millis(),
                        listing.limit as i64
                    ],
                    |r| entry_from_row(r, listing.with_values),
                )
                .map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }

    async fn list_all_memory(
        &self,
        scope: &TenantScope,
        after: Option<(String, String)>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<MemoryEntry>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            let (ans, ak) = after.unwrap_or_default();
            let mut s = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM memory WHERE tenant_id = ?1 AND (namespace, key) > (?2, ?3)
                       AND (expires_at IS NULL OR expires_at > ?4)
                     ORDER BY namespace, key LIMIT ?5"
                ))
                .map_err(sql_error)?;
            let rows = s
                .query_map(params![tenant.as_str(), ans, ak, now.millis(), limit as i64], |r| entry_from_row(r, true))
                .map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }
}

/// Cross-tenant upkeep (see `upkeep`): not reachable through a request's scope.
impl SqliteStore {
    pub(crate) async fn reclaim_expired_memory(&self, now: Timestamp, limit: usize) -> Result<u64> {
        self.upkeep_write(move |tx| {
            let expired: Vec<(String, String, String, i64)> = {
                let mut s = tx
                    .prepare_cached(
                        "SELECT tenant_id, namespace, key, size FROM memory
                         WHERE expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
                    )
                    .map_err(sql_error)?;
                let rows = s
                    .query_map(params![now.millis(), limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(sql_error)?;
                rows.collect::<rusqlite::Result<_>>().map_err(sql_error)?
            };
            for (tenant, ns, key, size) in &expired {
                let tenant = TenantId::parse(tenant).ok_or_else(|| corrupt("tenant id"))?;
                remove_tx(tx, &tenant, ns, key, *size)?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }
}
