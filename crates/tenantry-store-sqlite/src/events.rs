//! The event log: read by page (filtered by a key's prefix inside the query, so a prefixed key
//! still gets full pages) and pruned by age.

use crate::error::sql_error;
use crate::journal::event_tx;
use crate::pool::read_on;
use crate::store::SqliteStore;
use crate::tails::Log;
use async_trait::async_trait;
use rusqlite::{params, Row};
use std::sync::Arc;
use tenantry_core::events::{Event, EventDraft, EventSink};
use tenantry_core::path::PathPrefix;
use tenantry_core::store::{EventLog, RelayPosition, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::Result;

/// Most events deleted by one `prune_events` call.
pub const PRUNE_BATCH: usize = 5000;

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    let detail: Option<String> = r.get(5)?;
    Ok(Event {
        seq: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        path: r.get(2)?,
        namespace: r.get(3)?,
        key: r.get(4)?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        actor: r.get(6)?,
        at: Timestamp::from_millis(r.get(7)?),
    })
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn list_events(
        &self,
        scope: &TenantScope,
        after: u64,
        visible: Option<PathPrefix>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let tenant = scope.tenant_id().clone();
        let pool = self.pool_of(&tenant)?;
        // A prefix filter may skip entries: then every later tail entry may be needed.
        let tail = pool.tails().ids(Log::Events, &tenant, after, visible.is_none().then_some(limit));
        read_on(pool, move |conn| {
            let after = after.min(i64::MAX as u64) as i64;
            let rows: Vec<Event> = match visible {
                None => conn
                    .prepare_cached(&Log::Events.select(
                        Log::Events.entry_columns(),
                        "seq > ?2",
                        4,
                        "ORDER BY seq LIMIT ?3",
                    ))
                    .and_then(|mut s| {
                        s.query_map(params![tenant.as_str(), after, limit as i64, tail], event_from_row)?.collect()
                    })
                    .map_err(sql_error)?,
                Some(prefix) => {
                    let dir = prefix.as_dir();
                    let upper = format!("{}0", &dir[..dir.len() - 1]);
                    conn.prepare_cached(&Log::Events.select(
                        Log::Events.entry_columns(),
                        "seq > ?2 AND ((path >= ?3 AND path < ?4) OR path = ?5)",
                        7,
                        "ORDER BY seq LIMIT ?6",
                    ))
                    .and_then(|mut s| {
                        s.query_map(
                            params![tenant.as_str(), after, dir, upper, prefix.as_str(), limit as i64, tail],
                            event_from_row,
                        )?
                        .collect()
                    })
                    .map_err(sql_error)?
                }
            };
            Ok(rows)
        })
        .await
    }

    async fn last_event_seq(&self, scope: &TenantScope) -> Result<u64> {
        let tenant = scope.tenant_id().clone();
        let seq = crate::database::read_committed(self.pool_of(&tenant)?, &tenant).await?.last_event_seq;
        Ok(seq.max(0) as u64)
    }

    async fn publish_event(&self, scope: &TenantScope, draft: EventDraft) -> Result<()> {
        let scope = scope.clone();
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            event_tx(tx, scope.tenant_id(), scope.slug().as_str(), draft, published)
        })
        .await
    }

    fn add_event_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks.write().unwrap_or_else(|e| e.into_inner()).push(sink);
    }
}

/// Cross-tenant upkeep (see `upkeep`): not reachable through a request's scope.
impl SqliteStore {
    pub(crate) async fn prune_events(&self, before: Timestamp, relay: Option<&str>) -> Result<u64> {
        let relay = relay.map(str::to_owned);
        self.upkeep_write(move |tx| {
            // In batches, so the writer is never held for long; the caller repeats while full.
            // With a relay, a tenant's events past its position there stay (all of them while it
            // has none); the batch is of the oldest rows, kept or not, so rows kept through a
            // long outage are never read over and over: pruning waits behind them until they
            // are relayed.
            let kept = "(?3 IS NULL OR e.seq <= COALESCE((SELECT r.seq FROM event_relays r
                 WHERE r.tenant_id = e.tenant_id AND r.relay = ?3), 0))";
            let mut n = 0;
            for sql in [
                format!(
                    "DELETE FROM events WHERE (tenant_id, seq) IN (SELECT e.tenant_id, e.seq FROM
                       (SELECT tenant_id, seq FROM events WHERE at < ?1 ORDER BY at LIMIT ?2) e WHERE {kept})"
                ),
                // Its index entries go with them (trigger); an id still registered names nothing.
                format!(
                    "DELETE FROM events_tail WHERE id IN (SELECT e.id FROM
                       (SELECT id, tenant_id, seq FROM events_tail WHERE at < ?1 LIMIT ?2) e WHERE {kept})"
                ),
            ] {
                n += tx
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.execute(params![before.millis(), PRUNE_BATCH as i64, relay]))
                    .map_err(sql_error)?;
            }
            tx.execute(
                "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts WHERE at < ?1 LIMIT ?2)",
                params![before.millis(), PRUNE_BATCH as i64],
            )
            .map_err(sql_error)?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn claim_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<RelayPosition>> {
        let (tenant, relay, holder) = (scope.tenant_id().clone(), relay.to_owned(), holder.to_owned());
        self.write_of(&tenant.clone(), move |tx| {
            // Purged meanwhile (a purge does not wait at the tenant's gate): nothing to claim.
            if !crate::tenants::registered_tx(tx, &tenant)? {
                return Ok(None);
            }
            tx.prepare_cached(
                "INSERT INTO event_relays (tenant_id, relay, seq, holder, lease_until) VALUES (?1, ?2, 0, ?3, ?5)
                 ON CONFLICT (tenant_id, relay) DO UPDATE SET holder = ?3, lease_until = ?5
                 WHERE event_relays.holder = ?3 OR event_relays.lease_until < ?4",
            )
            .and_then(|mut s| s.execute(params![tenant.as_str(), relay, holder, now.millis(), lease_until.millis()]))
            .map_err(sql_error)?;
            let (seq, held_by, until): (i64, String, i64) = tx
                .prepare_cached("SELECT seq, holder, lease_until FROM event_relays WHERE tenant_id = ?1 AND relay = ?2")
                .and_then(|mut s| {
                    s.query_row(params![tenant.as_str(), relay], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .map_err(sql_error)?;
            Ok(Some(RelayPosition {
                seq: seq.max(0) as u64,
                taken: held_by == holder,
                lease_until: Timestamp::from_millis(until),
            }))
        })
        .await
    }

    pub(crate) async fn advance_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        seq: u64,
        lease_until: Timestamp,
    ) -> Result<bool> {
        let (tenant, relay, holder) = (scope.tenant_id().clone(), relay.to_owned(), holder.to_owned());
        let seq = seq.min(i64::MAX as u64) as i64;
        self.write_of(&tenant.clone(), move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE event_relays SET seq = max(seq, ?4), lease_until = ?5
                     WHERE tenant_id = ?1 AND relay = ?2 AND holder = ?3",
                )
                .and_then(|mut s| s.execute(params![tenant.as_str(), relay, holder, seq, lease_until.millis()]))
                .map_err(sql_error)?;
            Ok(changed == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::OpenOptions;
    use rusqlite::{params, Connection};
    use tenantry_core::ids::TenantId;
    use tenantry_core::time::Timestamp;

    #[tokio::test]
    async fn pruning_takes_old_events_from_the_keyed_table_and_the_tail_and_their_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), OpenOptions::default()).unwrap();
        let t = TenantId::generate();
        let tenant = t.clone();
        let rows = [("events", 1, 100), ("events", 2, 300), ("events_tail", 3, 100), ("events_tail", 4, 300)];
        let insert = move |tx: &Connection| {
            for (table, seq, at) in rows {
                tx.execute(
                    &format!(
                        "INSERT INTO {table} (tenant_id, seq, type, actor, at) VALUES (?1, ?2, 'file.write', 'a', ?3)"
                    ),
                    params![tenant.as_str(), seq, at],
                )
                .map_err(sql_error)?;
            }
            Ok(())
        };
        store.shared.write(None, insert, None).await.unwrap();
        let tails = store.shared.tails().clone();
        store.shared.exclusive(move |c| tails.fold_all(c)).await.unwrap();
        let left = || async {
            crate::pool::read_on(store.shared.clone(), |c| {
                let seqs = |sql: &str| -> rusqlite::Result<Vec<i64>> {
                    c.prepare(sql)?.query_map([], |r| r.get(0))?.collect()
                };
                Ok([
                    seqs("SELECT seq FROM events ORDER BY seq"),
                    seqs("SELECT seq FROM events_tail ORDER BY seq"),
                    seqs("SELECT seq FROM events_tail_index ORDER BY seq"),
                ]
                .map(|r| r.unwrap()))
            })
            .await
            .unwrap()
        };
        assert_eq!(left().await, [vec![1, 2], vec![3, 4], vec![3, 4]]);
        assert_eq!(store.prune_events(Timestamp::from_millis(200), None).await.unwrap(), 2);
        assert_eq!(store.prune_events(Timestamp::from_millis(200), None).await.unwrap(), 0);
        assert_eq!(left().await, [vec![2], vec![4], vec![4]]);
    }
}
