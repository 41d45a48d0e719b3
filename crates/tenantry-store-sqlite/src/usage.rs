//! Usage: a tenant's storage counters as its writes see them, and the metered calls by day.

use crate::counters;
use crate::error::{corrupt, sql_error};
use crate::store::SqliteStore;
use async_trait::async_trait;
use rusqlite::{params, Connection, Row};
use tenantry_core::ids::TenantId;
use tenantry_core::store::{StoredUsage, TenantScope, UsageLog};
use tenantry_core::usage::Counters;
use tenantry_core::Result;

pub(crate) fn stored_usage(c: counters::Counters) -> StoredUsage {
    StoredUsage { storage_bytes: c.storage_bytes.max(0) as u64, files: c.files.max(0) as u64 }
}

/// The tenant's storage usage as its write sees it (on the writer, inside the write).
pub(crate) fn usage_tx(tx: &Connection, tenant: &TenantId) -> Result<StoredUsage> {
    counters::now_tx(tx, tenant).map(stored_usage)
}

/// Moves the usage counters by the given deltas (after the caller checked the limits).
pub(crate) fn add_usage_tx(tx: &Connection, tenant: &TenantId, bytes: i64, files: i64) -> Result<()> {
    counters::add_tx(tx, tenant, counters::Counters { storage_bytes: bytes, files, ..Default::default() })
}

/// The six usage counters, read from `r` starting at column `first`.
pub(crate) fn counters_from_row(r: &Row<'_>, first: usize) -> rusqlite::Result<Counters> {
    let n = |i: usize| r.get::<_, i64>(first + i).map(|v| v.max(0) as u64);
    Ok(Counters { api_calls: n(0)?, reads: n(1)?, writes: n(2)?, bytes_in: n(3)?, bytes_out: n(4)?, searches: n(5)? })
}

#[async_trait]
impl UsageLog for SqliteStore {
    async fn usage_between(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<Counters> {
        let tenant = scope.tenant_id().clone();
        self.read_shared(move |conn| {
            conn.prepare_cached(
                "SELECT COALESCE(SUM(api_calls), 0), COALESCE(SUM(reads), 0), COALESCE(SUM(writes), 0),
                        COALESCE(SUM(bytes_in), 0), COALESCE(SUM(bytes_out), 0), COALESCE(SUM(searches), 0)
                 FROM usage_daily WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3",
            )
            .and_then(|mut s| s.query_row(params![tenant.as_str(), from_day, to_day], |r| counters_from_row(r, 0)))
            .map_err(sql_error)
        })
        .await
    }

    async fn usage_by_day(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<Vec<(i64, Counters)>> {
        let tenant = scope.tenant_id().clone();
        self.read_shared(move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT day, api_calls, reads, writes, bytes_in, bytes_out, searches FROM usage_daily
                     WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3 ORDER BY day",
                )
                .map_err(sql_error)?;
            let rows = s
                .query_map(params![tenant.as_str(), from_day, to_day], |r| {
                    Ok((r.get::<_, i64>(0)?, counters_from_row(r, 1)?))
                })
                .map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)).collect()
        })
        .await
    }
}

/// Metering, across tenants (see `upkeep`).
impl SqliteStore {
    pub(crate) async fn add_usage(&self, batch: Vec<(TenantId, i64, Counters)>) -> Result<()> {
        self.write_shared(move |tx| {
            let mut s = tx
                .prepare_cached(
                    // Only for a tenant still registered: a purge that committed after the
                    // batch was taken must not be followed by rows of the purged tenant.
                    "INSERT INTO usage_daily (tenant_id, day, api_calls, reads, writes, bytes_in, bytes_out, searches)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1)
                     ON CONFLICT (tenant_id, day) DO UPDATE SET api_calls = api_calls + ?3, reads = reads + ?4,
                       writes = writes + ?5, bytes_in = bytes_in + ?6, bytes_out = bytes_out + ?7,
                       searches = searches + ?8",
                )
                .map_err(sql_error)?;
            for (tenant, day, c) in &batch {
                s.execute(params![
                    tenant.as_str(),
                    day,
                    c.api_calls as i64,
                    c.reads as i64,
                    c.writes as i64,
                    c.bytes_in as i64,
                    c.bytes_out as i64,
                    c.searches as i64
                ])
                .map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn calls_between(&self, from_day: i64, to_day: i64) -> Result<Vec<(TenantId, u64)>> {
        self.read_shared(move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT tenant_id, SUM(api_calls) FROM usage_daily WHERE day >= ?1 AND day < ?2 GROUP BY tenant_id",
                )
                .map_err(sql_error)?;
            let rows = s
                .query_map(params![from_day, to_day], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (t, n) = row.map_err(sql_error)?;
                out.push((TenantId::parse(&t).ok_or_else(|| corrupt("tenant id"))?, n as u64));
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::OpenOptions;
    use tenantry_core::model::{AuditDraft, Tenant};
    use tenantry_core::slug::Slug;
    use tenantry_core::store::TenantRegistry;
    use tenantry_core::time::Timestamp;

    fn tenant(slug: &str) -> Tenant {
        Tenant::new(Slug::parse(slug).unwrap(), slug, "free", Timestamp::from_millis(0))
    }

    fn audit() -> AuditDraft {
        AuditDraft {
            actor: "operator".into(),
            action: "tenant.create".into(),
            target: "t".into(),
            result: "ok".into(),
            request_id: "req".into(),
            ip: String::new(),
        }
    }

    #[tokio::test]
    async fn usage_of_a_tenant_no_longer_registered_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), OpenOptions::default()).unwrap();
        let kept = tenant("kept");
        store.insert_tenant(&TenantScope::for_store_contract(&kept), &kept, None, audit()).await.unwrap();
        let purged = TenantId::generate(); // as after a purge committed while the batch was in flight
        let c = Counters { api_calls: 3, reads: 2, writes: 1, ..Default::default() };
        store.add_usage(vec![(kept.id.clone(), 10, c), (purged.clone(), 10, c)]).await.unwrap();
        store.add_usage(vec![(kept.id.clone(), 10, c)]).await.unwrap();
        assert_eq!(store.calls_between(0, 100).await.unwrap(), vec![(kept.id.clone(), 6)]);
        let rows: i64 = crate::pool::read_on(store.shared.clone(), |c| {
            c.query_row("SELECT COUNT(*) FROM usage_daily", [], |r| r.get(0)).map_err(sql_error)
        })
        .await
        .unwrap();
        assert_eq!(rows, 1);
    }
}
