//! Memory entries on PostgreSQL: one `memory` row per (tenant, namespace, key), the value as the
//! compact JSON text the core wrote (its size is its bytes). Values count toward the tenant's
//! `storage_bytes` beside files, checked inside the write transaction under the tenant's usage
//! row lock; an expired row is invisible at once (every read filters by
//! `expires_at IS NULL OR expires_at > now`) and reclaimed by upkeep, which frees its bytes and
//! its search document then.

use crate::error::{corrupt, pg_error};
use crate::flight::first_flight;
use crate::journal::{hooks_from_rows, last_flight, plan, CounterDelta, Pending};
use crate::search::{self, memory_doc, plan_reindex, reindex_statements, reindex_tx};
use crate::store::{add_usage, begin, commit, locked_row, Flights, PgStore};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use tenantry_core::events::Journal;
use tenantry_core::ids::TenantId;
use tenantry_core::memory::{searchable_text, MemoryEntry, MemoryKey, Namespace};
use tenantry_core::quota;
use tenantry_core::search::{DocKind, IndexDoc};
use tenantry_core::store::{HeldEntry, MemoryListing, MemoryStore, MemoryWrite, TenantScope};
use tenantry_core::time::{Clock, SystemClock, Timestamp};
use tenantry_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The columns [`entry_from_row`] reads, in its order, with the value.
const WITH_VALUE: &str = "namespace, key, value, size, expires_at, created_at, updated_at";
/// The same columns without the value (a listing with `values=false` does not fetch it).
const WITHOUT_VALUE: &str = "namespace, key, NULL::text, size, expires_at, created_at, updated_at";

/// An entry from a row of [`WITH_VALUE`] or [`WITHOUT_VALUE`] (the value `None` in the latter).
fn entry_from_row(r: &Row) -> Result<MemoryEntry> {
    let value: Option<String> = r.get::<_, Option<String>>(2);
    let value: Option<serde_json::Value> = match value {
        Some(text) => Some(serde_json::from_str(&text).map_err(|_| corrupt("memory value"))?),
        None => None,
    };
    Ok(MemoryEntry {
        namespace: r.get::<_, String>(0),
        key: r.get::<_, String>(1),
        value,
        size: r.get::<_, i64>(3).max(0) as u64,
        expires_at: r.get::<_, Option<i64>>(4).map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(r.get::<_, i64>(5)),
        updated_at: Timestamp::from_millis(r.get::<_, i64>(6)),
    })
}

/// The entry at a key as stored, live or expired (the caller decides with `expires_at`).
pub(crate) struct CurrentMemory {
    pub value: String,
    pub size: i64,
    pub expires_at: Option<i64>,
}

/// The entry at (`namespace`, `key`), live or expired, with its value.
pub(crate) async fn current_memory_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    namespace: &str,
    key: &str,
) -> Result<Option<CurrentMemory>> {
    let st = tx
        .prepare_cached(
            "SELECT value, size, expires_at FROM memory WHERE tenant_id = $1 AND namespace = $2 AND key = $3",
        )
        .await
        .map_err(pg_error)?;
    let row = tx.query_opt(&st, &[&tenant.as_str(), &namespace, &key]).await.map_err(pg_error)?;
    Ok(row.map(|r| CurrentMemory {
        value: r.get::<_, String>(0),
        size: r.get::<_, i64>(1),
        expires_at: r.get::<_, Option<i64>>(2),
    }))
}

/// What a write decides on of the entry at its key (live or expired), without reading the value.
const HELD_ENTRY: &str =
    "SELECT size, created_at, expires_at FROM memory WHERE tenant_id = $1 AND namespace = $2 AND key = $3";

fn held_from_row(r: &Row) -> HeldEntry {
    HeldEntry {
        size: r.get::<_, i64>(0).max(0) as u64,
        created_at: Timestamp::from_millis(r.get::<_, i64>(1)),
        expires_at: r.get::<_, Option<i64>>(2).map(Timestamp::from_millis),
    }
}

pub(crate) struct MemoryRow<'a> {
    pub namespace: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub size: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Creates or replaces an entry and its search document, indexed as the service indexes a value
/// (`searchable_text` of the JSON: its strings, object keys and numbers). Usage is the caller's.
pub(crate) async fn upsert_memory_row_tx(tx: &Transaction<'_>, tenant: &TenantId, row: &MemoryRow<'_>) -> Result<()> {
    let index = index_of_value(row.value);
    upsert_indexed_tx(tx, tenant, row, &index).await
}

/// The index document of a stored value (text that is not JSON, which the core never writes, is
/// indexed as it is, as a search hit's snippet reads it).
fn index_of_value(value: &str) -> IndexDoc {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(v) => IndexDoc::of_text(&searchable_text(&v)),
        Err(_) => IndexDoc::of_text(value),
    }
}

/// The statement that writes an entry's row, for a write's flight.
async fn upsert_memory_row<'a, C: GenericClient>(
    tx: &'a C,
    tenant: &'a TenantId,
    row: &'a MemoryRow<'_>,
) -> Result<Pending<'a>> {
    let st = tx
        .prepare_cached(
            "INSERT INTO memory (tenant_id, namespace, key, value, size, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET value = excluded.value, size = excluded.size,
               expires_at = excluded.expires_at, created_at = excluded.created_at, updated_at = excluded.updated_at",
        )
        .await
        .map_err(pg_error)?;
    Ok(Box::pin(async move {
        let params: [&(dyn ToSql + Sync); 8] = [
            &tenant.as_str(),
            &row.namespace,
            &row.key,
            &row.value,
            &row.size,
            &row.expires_at,
            &row.created_at,
            &row.updated_at,
        ];
        tx.execute(&st, &params).await.map_err(pg_error)
    }))
}

/// Creates or replaces an entry, its search document holding `index` (usage is the caller's).
async fn upsert_indexed_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    row: &MemoryRow<'_>,
    index: &IndexDoc,
) -> Result<()> {
    upsert_memory_row(tx, tenant, row).await?.await?;
    reindex_tx(tx, tenant, DocKind::Memory, &memory_doc(row.namespace, row.key), Some(index)).await
}

const REMOVE_ENTRY: &str = "DELETE FROM memory WHERE tenant_id = $1 AND namespace = $2 AND key = $3";

/// Upkeep of one tenant, in its own transaction (`begin`): deletes those of `keys`
/// (namespace, key) that are still expired at `now` (one rewritten since it was found expired is
/// kept), frees their bytes and drops their search documents. Takes the tenant's usage row first,
/// as every write does; a tenant purged meanwhile has nothing left to delete. Returns how many
/// entries were deleted. Writes no audit entry and no event, as the SQLite store's reclaim does.
pub(crate) async fn delete_expired_for_tenant_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    keys: &[(String, String)],
    now: Timestamp,
) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let locked = tx
        .query_opt("SELECT 1 FROM tenant_usage WHERE tenant_id = $1 FOR UPDATE", &[&tenant.as_str()])
        .await
        .map_err(pg_error)?;
    if locked.is_none() {
        return Ok(0);
    }
    let namespaces: Vec<&str> = keys.iter().map(|(ns, _)| ns.as_str()).collect();
    let names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let now_ms: i64 = now.millis();
    let st = tx
        .prepare_cached(
            "DELETE FROM memory AS m USING unnest($2::text[], $3::text[]) AS gone(namespace, key)
             WHERE m.tenant_id = $1 AND m.namespace = gone.namespace AND m.key = gone.key
               AND m.expires_at IS NOT NULL AND m.expires_at <= $4
             RETURNING m.namespace, m.key, m.size",
        )
        .await
        .map_err(pg_error)?;
    let rows = tx.query(&st, &[&tenant.as_str(), &namespaces, &names, &now_ms]).await.map_err(pg_error)?;
    let mut freed: i64 = 0;
    for r in &rows {
        let (namespace, key, size): (String, String, i64) =
            (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, i64>(2));
        freed += size;
        reindex_tx(tx, tenant, DocKind::Memory, &memory_doc(&namespace, &key), None).await?;
    }
    add_usage(tx, tenant, -freed, 0).await?;
    Ok(rows.len() as u64)
}

#[async_trait]
impl MemoryStore for PgStore {
    async fn put_memory(&self, scope: &TenantScope, write: MemoryWrite, journal: Journal) -> Result<MemoryEntry> {
        let tenant = scope.tenant_id();
        let slug = scope.slug().as_str();
        let turn = self.turn(tenant).await;
        let routed = self.places.is_dedicated(tenant);
        let flights = Flights::new(self.conn_of(tenant).await?);
        let tx = flights.client();
        let (ns, key) = (write.namespace.as_str(), write.key.as_str());
        let doc = memory_doc(ns, key);
        let id = tenant.as_str();
        let by_key: [&(dyn ToSql + Sync); 3] = [&id, &ns, &key];
        let read = first_flight(tx, tenant, (HELD_ENTRY, &by_key), (DocKind::Memory, &doc)).await?;
        let (locked, held, hooks, old_doc) = (read.locked, read.held, read.hooks, read.old_doc);
        if locked.is_none() && self.rerouted(tenant, routed).await? {
            // Moved since this node routed it (`moves`): nothing was written; again, there.
            drop((flights, turn));
            return self.put_memory(scope, write, journal).await;
        }
        let (used, heads) = locked_row(&self.places, tenant, locked.as_ref())?;
        let decision = write.decide(held.as_ref().map(held_from_row));
        let limits = write.limits();
        let after = quota::storage(used, decision.delta, limits)?;
        let reindex = plan_reindex(DocKind::Memory, search::old_doc(old_doc.as_ref()), Some(&write.index));
        let planned = plan(
            &heads,
            &hooks_from_rows(&hooks)?,
            slug,
            Some(journal.audit),
            journal.event.into_iter().chain(quota::storage_warnings(used, after, limits)).collect(),
            SystemClock.now(),
        )?;
        let delta = CounterDelta {
            storage_bytes: decision.delta.bytes,
            files: 0,
            search_docs: reindex.docs,
            search_words: reindex.words,
        };
        let row = MemoryRow {
            namespace: ns,
            key,
            value: &write.value,
            size: write.value.len() as i64,
            expires_at: write.expires_at.map(Timestamp::millis),
            created_at: decision.created_at.millis(),
            updated_at: write.at.millis(),
        };
        // One flight: every row the write changes, and the commit.
        let mut writes = vec![upsert_memory_row(tx, tenant, &row).await?];
        writes.extend(reindex_statements(tx, tenant, &doc, &reindex).await?);
        last_flight(tx, tenant, writes, &planned, delta).await?;
        flights.committed();
        self.publish(tenant, &planned.into_events());
        Ok(MemoryEntry {
            namespace: ns.to_owned(),
            key: key.to_owned(),
            value: None,
            size: decision.size,
            expires_at: write.expires_at,
            created_at: decision.created_at,
            updated_at: write.at,
        })
    }

    async fn get_memory(
        &self,
        scope: &TenantScope,
        namespace: &Namespace,
        key: &MemoryKey,
        now: Timestamp,
    ) -> Result<Option<MemoryEntry>> {
        let tenant = scope.tenant_id();
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        let sql = format!(
            "SELECT {WITH_VALUE} FROM memory WHERE tenant_id = $1 AND namespace = $2 AND key = $3
               AND (expires_at IS NULL OR expires_at > $4)"
        );
        let st = tx.prepare_cached(&sql).await.map_err(pg_error)?;
        let now_ms: i64 = now.millis();
        let row = tx
            .query_opt(&st, &[&tenant.as_str(), &namespace.as_str(), &key.as_str(), &now_ms])
            .await
            .map_err(pg_error)?;
        commit(tx).await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn delete_memory(
        &self,
        scope: &TenantScope,
        namespace: &Namespace,
        key: &MemoryKey,
        now: Timestamp,
        journal: Journal,
    ) -> Result<()> {
        let tenant = scope.tenant_id();
        let turn = self.turn(tenant).await;
        // Two flights, as a PUT. Refused (no live entry), they roll back when dropped.
        let routed = self.places.is_dedicated(tenant);
        let flights = Flights::new(self.conn_of(tenant).await?);
        let tx = flights.client();
        let (ns, k) = (namespace.as_str(), key.as_str());
        let doc = memory_doc(ns, k);
        let id = tenant.as_str();
        let by_key: [&(dyn ToSql + Sync); 3] = [&id, &ns, &k];
        let read = first_flight(tx, tenant, (HELD_ENTRY, &by_key), (DocKind::Memory, &doc)).await?;
        if read.locked.is_none() && self.rerouted(tenant, routed).await? {
            drop((flights, turn));
            return self.delete_memory(scope, namespace, key, now, journal).await;
        }
        let (_, heads) = locked_row(&self.places, tenant, read.locked.as_ref())?;
        let held = match read.held.as_ref().map(held_from_row) {
            Some(held) if tenantry_core::memory::is_live(held.expires_at, now) => held,
            _ => return Err(Error::not_found(format!("no memory entry {ns}/{k}"))),
        };
        let reindex = plan_reindex(DocKind::Memory, search::old_doc(read.old_doc.as_ref()), None);
        let planned = plan(
            &heads,
            &hooks_from_rows(&read.hooks)?,
            scope.slug().as_str(),
            Some(journal.audit),
            journal.event.into_iter().collect(),
            SystemClock.now(),
        )?;
        let delta = CounterDelta {
            storage_bytes: -(held.size as i64),
            files: 0,
            search_docs: reindex.docs,
            search_words: reindex.words,
        };
        let removed = tx.prepare_cached(REMOVE_ENTRY).await.map_err(pg_error)?;
        let mut writes: Vec<Pending<'_>> =
            vec![Box::pin(async move { tx.execute(&removed, &by_key).await.map_err(pg_error) })];
        writes.extend(reindex_statements(tx, tenant, &doc, &reindex).await?);
        last_flight(tx, tenant, writes, &planned, delta).await?;
        flights.committed();
        self.publish(tenant, &planned.into_events());
        Ok(())
    }

    async fn list_memory(&self, scope: &TenantScope, listing: MemoryListing) -> Result<Vec<MemoryEntry>> {
        let tenant = scope.tenant_id();
        let columns = if listing.with_values { WITH_VALUE } else { WITHOUT_VALUE };
        // Keys starting with the prefix sort from the prefix on (byte order, COLLATE "C"); the
        // `substr` test keeps it exact for any prefix without building an upper bound.
        let sql = format!(
            "SELECT {columns} FROM memory WHERE tenant_id = $1 AND namespace = $2 AND key >= $3::text
               AND substr(key, 1, length($3::text)) = $3::text AND key > $4
               AND (expires_at IS NULL OR expires_at > $5)
             ORDER BY key LIMIT $6"
        );
        let after: String = listing.after.clone().unwrap_or_default();
        let now_ms: i64 = listing.now.millis();
        let limit: i64 = i64::try_from(listing.limit).unwrap_or(i64::MAX);
        let prefix: &str = listing.prefix.as_str();
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        let st = tx.prepare_cached(&sql).await.map_err(pg_error)?;
        let rows = tx
            .query(&st, &[&tenant.as_str(), &listing.namespace.as_str(), &prefix, &after, &now_ms, &limit])
            .await
            .map_err(pg_error)?;
        commit(tx).await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn list_all_memory(
        &self,
        scope: &TenantScope,
        after: Option<(String, String)>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<MemoryEntry>> {
        let tenant = scope.tenant_id();
        let (after_ns, after_key): (String, String) = after.unwrap_or_default();
        let now_ms: i64 = now.millis();
        let limit: i64 = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {WITH_VALUE} FROM memory WHERE tenant_id = $1 AND (namespace, key) > ($2::text, $3::text)
               AND (expires_at IS NULL OR expires_at > $4)
             ORDER BY namespace, key LIMIT $5"
        );
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        let st = tx.prepare_cached(&sql).await.map_err(pg_error)?;
        let rows =
            tx.query(&st, &[&tenant.as_str(), &after_ns, &after_key, &now_ms, &limit]).await.map_err(pg_error)?;
        commit(tx).await?;
        rows.iter().map(entry_from_row).collect()
    }
}
