//! tenantry-core's `Upkeep` and `UsageLog` on PostgreSQL: the background work that spans tenants
//! (loading the directory, metering, pruning, expiry, webhook deliveries) and the metered usage
//! by day.
//!
//! The server's role sees one tenant's rows per transaction (row-level security), so what must be
//! read across tenants is read through the `SECURITY DEFINER` functions of [`UPKEEP_SQL`], owned
//! by the tables' owner and executable by the server's role ([`UPKEEP_FUNCTIONS`]). Each returns
//! only what its job needs. Every write is made in the tenant's own transaction (`begin`) after
//! the tenant's usage row lock, apart from `tenantry_prune_events`, a pure deletion of old log
//! rows that no write of a tenant reads (the event counter lives in `tenant_usage`, so a seq is
//! never given out again).

use crate::error::{corrupt, pg_error};
use crate::journal::append_audit_tx;
use crate::rows::{key_from_row, tenant_from_row, KEY_COLUMNS, TENANT_COLUMNS};
use crate::store::{begin, commit, PgStore};
use crate::webhooks::event_type_of;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use std::sync::Arc;
use tenantry_core::activity::{ActivityFollower, ActivityShare};
use tenantry_core::audit::{prune_record, worth_pruning, AuditAnchor};
use tenantry_core::directory::DirectoryFollower;
use tenantry_core::ids::{TenantId, WebhookId};
use tenantry_core::model::{KeyRecord, Placement, Tenant};
use tenantry_core::store::{AttemptReport, AuditPruned, DueDelivery, RelayPosition, TenantScope, Upkeep, UsageLog};
use tenantry_core::time::Timestamp;
use tenantry_core::usage::Counters;
use tenantry_core::{Error, Result};
use tokio_postgres::{IsolationLevel, Row};

/// The cross-tenant upkeep functions (run as the owner, whom `owner_rows` lets see every row),
/// for the migration that follows the tables; [`UPKEEP_FUNCTIONS`] lists their signatures for
/// the grant. Every name is qualified and every parameter is `p_`-prefixed, so no parameter or
/// output column can be taken for a table column.
pub(crate) const UPKEEP_SQL: &str = r#"
-- Pruning the delivery log by age (the events table has events_by_time).
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (at);

-- The delivery worker's queue: deliveries due at p_now of enabled webhooks, oldest first, at
-- most p_per_tenant of any one tenant (so one tenant's backlog never hides another's), with
-- the webhook's url and secret.
CREATE FUNCTION tenantry_due_deliveries(p_now bigint, p_limit integer, p_per_tenant integer)
    RETURNS TABLE (id bigint, tenant_id text, webhook_id text, url text, secret text, event text, attempts integer)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    SELECT d.id, d.tenant_id, d.webhook_id, d.url, d.secret, d.event, d.attempts FROM (
        SELECT o.id, o.tenant_id, o.webhook_id, w.url, w.secret, o.event, o.attempts, o.next_attempt_at,
               row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.next_attempt_at, o.id) AS nth
        FROM webhook_outbox o
        JOIN webhooks w ON w.tenant_id = o.tenant_id AND w.id = o.webhook_id
        WHERE o.next_attempt_at IS NOT NULL AND o.next_attempt_at <= p_now AND w.enabled
    ) d
    WHERE d.nth <= p_per_tenant
    ORDER BY d.next_attempt_at, d.id
    LIMIT p_limit
    $$;

-- The earliest time a pending delivery of an enabled webhook is due (NULL: none).
CREATE FUNCTION tenantry_next_delivery_at() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    SELECT min(o.next_attempt_at) FROM webhook_outbox o
    JOIN webhooks w ON w.tenant_id = o.tenant_id AND w.id = o.webhook_id
    WHERE o.next_attempt_at IS NOT NULL AND w.enabled
    $$;

-- Every tenant's API calls over days [p_from, p_to) (to seed the monthly allowance).
CREATE FUNCTION tenantry_calls_between(p_from bigint, p_to bigint)
    RETURNS TABLE (tenant_id text, calls bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    SELECT u.tenant_id, sum(u.api_calls)::bigint FROM usage_daily u
    WHERE u.day >= p_from AND u.day < p_to
    GROUP BY u.tenant_id
    ORDER BY u.tenant_id
    $$;

-- Memory entries expired at p_now, soonest expired first, at most p_limit: each tenant's are
-- then deleted in its own transaction.
CREATE FUNCTION tenantry_expired_memory(p_now bigint, p_limit integer)
    RETURNS TABLE (tenant_id text, namespace text, key text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    SELECT m.tenant_id, m.namespace, m.key FROM memory m
    WHERE m.expires_at IS NOT NULL AND m.expires_at <= p_now
    ORDER BY m.expires_at
    LIMIT p_limit
    $$;

-- Deletes a batch (5000) of events written before p_before, and a batch of delivery log lines,
-- returning how many events. Seqs are never given out again: the counter is
-- tenant_usage.last_event_seq, which this leaves alone.
CREATE FUNCTION tenantry_prune_events(p_before bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        pruned bigint;
    BEGIN
        DELETE FROM events e
        USING (SELECT o.tenant_id, o.seq FROM events o WHERE o.at < p_before LIMIT 5000) batch
        WHERE e.tenant_id = batch.tenant_id AND e.seq = batch.seq;
        GET DIAGNOSTICS pruned = ROW_COUNT;
        DELETE FROM webhook_attempts a
        USING (SELECT o.tenant_id, o.webhook_id, o.n FROM webhook_attempts o WHERE o.at < p_before LIMIT 5000) batch
        WHERE a.tenant_id = batch.tenant_id AND a.webhook_id = batch.webhook_id AND a.n = batch.n;
        RETURN pruned;
    END
    $$;

REVOKE EXECUTE ON FUNCTION tenantry_due_deliveries(bigint, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenantry_next_delivery_at() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenantry_calls_between(bigint, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenantry_expired_memory(bigint, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenantry_prune_events(bigint) FROM PUBLIC;
"#;

/// The functions of [`UPKEEP_SQL`], to grant EXECUTE on to the server's role.
pub(crate) const UPKEEP_FUNCTIONS: &[&str] = &[
    "tenantry_due_deliveries(bigint, integer, integer)",
    "tenantry_next_delivery_at()",
    "tenantry_calls_between(bigint, bigint)",
    "tenantry_expired_memory(bigint, integer)",
    "tenantry_prune_events(bigint)",
];

/// Migration 4: how far each relay of a tenant's events elsewhere (NATS publishing) has got, and
/// which node holds it until when (a tenant's rows, locked like the others); pruning keeps the
/// events a relay has not passed, which `tenantry_prune_kept_events` does (`tenantry_prune_events`
/// stays, unused, for a node of the build before, which prunes everything old).
pub(crate) const RELAYS_4: &str = r#"
CREATE TABLE event_relays (
    tenant_id TEXT NOT NULL,
    relay TEXT NOT NULL,
    seq BIGINT NOT NULL,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, relay)
);
-- tenantry_prune_events, but with p_relay a tenant's events past that relay's position stay (all
-- of them while it has none). The batch is of the 5000 oldest rows, kept or not, so rows kept
-- through a long outage are not read again and again: pruning waits behind them.
CREATE FUNCTION tenantry_prune_kept_events(p_before bigint, p_relay text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        pruned bigint;
    BEGIN
        DELETE FROM events e
        USING (SELECT o.tenant_id, o.seq
               FROM (SELECT x.tenant_id, x.seq FROM events x WHERE x.at < p_before ORDER BY x.at LIMIT 5000) o
               WHERE p_relay IS NULL OR o.seq <= COALESCE((SELECT r.seq FROM event_relays r
                     WHERE r.tenant_id = o.tenant_id AND r.relay = p_relay), 0)) batch
        WHERE e.tenant_id = batch.tenant_id AND e.seq = batch.seq;
        GET DIAGNOSTICS pruned = ROW_COUNT;
        DELETE FROM webhook_attempts a
        USING (SELECT o.tenant_id, o.webhook_id, o.n FROM webhook_attempts o WHERE o.at < p_before LIMIT 5000) batch
        WHERE a.tenant_id = batch.tenant_id AND a.webhook_id = batch.webhook_id AND a.n = batch.n;
        RETURN pruned;
    END
    $$;
REVOKE EXECUTE ON FUNCTION tenantry_prune_kept_events(bigint, text) FROM PUBLIC;
"#;

/// The functions of [`RELAYS_4`], to grant EXECUTE on to the server's role.
pub(crate) const RELAY_FUNCTIONS: &[&str] = &["tenantry_prune_kept_events(bigint, text)"];

impl PgStore {
    /// The tenant's transaction for its relay positions, after its usage row `FOR KEY SHARE`
    /// (which waits for a purge or a move's fence, never for the tenant's writes); `None`, with
    /// the route marked to be read again, when the tenant is not here: purged, or moved away
    /// since this node routed it.
    async fn relay_tx<'a>(
        &self,
        conn: &'a mut deadpool_postgres::Object,
        tenant: &TenantId,
    ) -> Result<Option<Transaction<'a>>> {
        let tx = begin(conn, tenant).await?;
        if registered_under(&tx, tenant, "FOR KEY SHARE").await? {
            return Ok(Some(tx));
        }
        commit(tx).await?;
        self.places.mark_stale(tenant);
        Ok(None)
    }
}

/// Locks the tenant's usage row as every write does first (`FOR NO KEY UPDATE`), and tells
/// whether the tenant is still registered. A purge locks the row more strongly before it
/// deletes, so a tenant found here stays until the commit, and a tenant purged meanwhile is found
/// gone (its usage row and record are not there, or not visible): the caller writes nothing for it.
pub(crate) async fn lock_registered(tx: &Transaction<'_>, tenant: &TenantId) -> Result<bool> {
    registered_under(tx, tenant, "FOR NO KEY UPDATE").await
}

async fn registered_under(tx: &Transaction<'_>, tenant: &TenantId, lock: &str) -> Result<bool> {
    let sql = format!("SELECT 1 FROM tenant_usage WHERE tenant_id = $1 {lock}");
    if tx.query_opt(&sql, &[&tenant.as_str()]).await.map_err(pg_error)?.is_none() {
        return Ok(false);
    }
    let registered =
        tx.query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant.as_str()]).await.map_err(pg_error)?.is_some();
    Ok(registered)
}

/// Items grouped by tenant, tenants in the order they first appear, each tenant's items in order.
fn by_tenant<T>(items: impl IntoIterator<Item = (TenantId, T)>) -> Vec<(TenantId, Vec<T>)> {
    let mut index: HashMap<TenantId, usize> = HashMap::new();
    let mut out: Vec<(TenantId, Vec<T>)> = Vec::new();
    for (tenant, item) in items {
        match index.get(&tenant) {
            Some(&i) => out[i].1.push(item),
            None => {
                index.insert(tenant.clone(), out.len());
                out.push((tenant, vec![item]));
            }
        }
    }
    out
}

fn tenant_id(raw: &str) -> Result<TenantId> {
    TenantId::parse(raw).ok_or_else(|| corrupt("tenant id"))
}

/// A count as PostgreSQL stores it (there is no u64).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The six usage counters, read from `r` starting at column `first`.
fn counters_from_row(r: &Row, first: usize) -> Counters {
    let n = |i: usize| r.get::<_, i64>(first + i).max(0) as u64;
    Counters { api_calls: n(0), reads: n(1), writes: n(2), bytes_in: n(3), bytes_out: n(4), searches: n(5) }
}

/// An entry a prune may take: its place in the chain (what the anchor becomes) and its action.
type Prunable = (AuditAnchor, String);

/// The entries a prune may take: in seq order from just after the anchor, at most `max`, while
/// written before `before`; with the time of the entry that stopped the walk, if one did. Read
/// under the tenant's usage lock, so nothing is appended meanwhile.
async fn prunable(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    before: Timestamp,
    max: usize,
) -> Result<(Vec<Prunable>, Option<Timestamp>)> {
    let after: i64 = tx
        .query_opt("SELECT seq FROM audit_anchor WHERE tenant_id = $1", &[&tenant.as_str()])
        .await
        .map_err(pg_error)?
        .map_or(0, |r| r.get::<_, i64>(0));
    // The walk stops at the entry after `max` found at the latest.
    let take: i64 = i64::try_from(max).map_or(i64::MAX, |m| m.saturating_add(1));
    let rows = tx
        .query(
            "SELECT seq, at, hash, action FROM audit WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&tenant.as_str(), &after, &take],
        )
        .await
        .map_err(pg_error)?;
    let mut found: Vec<Prunable> = Vec::new();
    for (expected, r) in (after + 1..).zip(rows.iter()) {
        let seq: i64 = r.get::<_, i64>(0);
        let at = Timestamp::from_millis(r.get::<_, i64>(1));
        if seq != expected || at >= before || found.len() == max {
            return Ok((found, Some(at)));
        }
        found.push((AuditAnchor { seq: seq as u64, hash: r.get::<_, String>(2), at }, r.get::<_, String>(3)));
    }
    Ok((found, None))
}

impl PgStore {
    /// A dedicated tenant's keys, read in its own database.
    async fn dedicated_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>> {
        let rows = self
            .read_rows(tenant, &format!("SELECT {KEY_COLUMNS} FROM keys WHERE tenant_id = $1"), &[&tenant.as_str()])
            .await?;
        rows.iter().map(key_from_row).collect()
    }
}

#[async_trait]
impl Upkeep for PgStore {
    async fn load_directory(&self) -> Result<(Vec<Tenant>, Vec<KeyRecord>)> {
        let mut conn = self.shared_conn().await?;
        // One snapshot for both, as one read.
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error)?;
        let tenants = tx
            .query(&format!("SELECT {TENANT_COLUMNS} FROM tenantry_directory_tenants()"), &[])
            .await
            .map_err(pg_error)?;
        let keys =
            tx.query(&format!("SELECT {KEY_COLUMNS} FROM tenantry_directory_keys()"), &[]).await.map_err(pg_error)?;
        commit(tx).await?;
        let tenants = tenants.iter().map(tenant_from_row).collect::<Result<Vec<Tenant>>>()?;
        let mut keys = keys.iter().map(key_from_row).collect::<Result<Vec<KeyRecord>>>()?;
        // Dedicated tenants' keys are in their own databases.
        self.places
            .set_all_dedicated(tenants.iter().filter(|t| t.placement == Placement::Dedicated).map(|t| t.id.clone()));
        for tenant in self.places.dedicated_tenants() {
            match self.dedicated_keys(&tenant).await {
                Ok(found) => keys.extend(found),
                // One database away does not keep the node from loading the others: its keys
                // come with the periodic re-read of dedicated tenants (`feed`).
                Err(e) => tracing::warn!("could not read {tenant}'s keys in its own database: {}", e.message),
            }
        }
        Ok((tenants, keys))
    }

    async fn load_tenant_directory(&self, tenant: &TenantId) -> Result<Option<(Tenant, Vec<KeyRecord>)>> {
        // On a connection of its own: a revocation reaches this node without waiting for the
        // pool that requests keep busy; one round trip, one snapshot.
        let conn = self.directory_db.client().await?;
        let id = tenant.as_str();
        let (tenants, keys) = crate::read_two(
            &conn,
            tenant,
            (&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"), &[&id]),
            (&format!("SELECT {KEY_COLUMNS} FROM keys WHERE tenant_id = $1"), &[&id]),
        )
        .await?;
        let Some(row) = tenants.first() else {
            self.places.set_placement(tenant, None);
            return Ok(None);
        };
        let found = tenant_from_row(row)?;
        let dedicated = found.placement == Placement::Dedicated;
        self.places.set_placement(tenant, Some(dedicated));
        let keys = match dedicated {
            true => self.dedicated_keys(tenant).await?,
            false => keys.iter().map(key_from_row).collect::<Result<Vec<KeyRecord>>>()?,
        };
        Ok(Some((found, keys)))
    }

    fn add_directory_follower(&self, follower: Arc<dyn DirectoryFollower>) {
        self.listeners.add_follower(follower);
    }

    async fn announce_activity(&self, shares: &[ActivityShare]) -> Result<()> {
        let conn = self.shared_conn().await?;
        for payload in crate::feed::announcements(&self.node, shares) {
            conn.execute("SELECT pg_notify($1, $2)", &[&crate::feed::ACTIVITY_CHANNEL, &payload])
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }

    fn add_activity_follower(&self, follower: Arc<dyn ActivityFollower>) {
        self.listeners.add_activity_follower(follower);
    }

    async fn add_usage(&self, batch: Vec<(TenantId, i64, Counters)>) -> Result<()> {
        let groups = by_tenant(batch.into_iter().map(|(tenant, day, c)| (tenant, (day, c))));
        if groups.is_empty() {
            return Ok(());
        }
        // One transaction for the batch (a failed flush is retried whole, so a partial commit
        // would count twice), switching the tenant it acts for before each one's rows; tenants
        // in id order, so two nodes' flushes cannot deadlock.
        let mut groups = groups;
        groups.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut conn = self.shared_conn().await?;
        let tx = begin(&mut conn, &groups[0].0).await?;
        for (tenant, days) in groups {
            tx.execute("SELECT set_config('tenantry.tenant_id', $1, true)", &[&tenant.as_str()])
                .await
                .map_err(pg_error)?;
            // Only for a tenant still registered: a purge that committed after the batch was
            // taken must not be followed by rows of the purged tenant. Its registry row (here
            // for every tenant, wherever its rows are) is held only against deletion (FOR KEY
            // SHARE): its writes, and a move's switch of its placement, go on meanwhile.
            let registered = tx
                .query_opt("SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE", &[&tenant.as_str()])
                .await
                .map_err(pg_error)?
                .is_some();
            if registered {
                for (day, c) in &days {
                    let v: [i64; 6] = [c.api_calls, c.reads, c.writes, c.bytes_in, c.bytes_out, c.searches].map(count);
                    tx.execute(
                        "INSERT INTO usage_daily (tenant_id, day, api_calls, reads, writes, bytes_in, bytes_out, searches)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (tenant_id, day) DO UPDATE SET
                           api_calls = usage_daily.api_calls + EXCLUDED.api_calls,
                           reads = usage_daily.reads + EXCLUDED.reads,
                           writes = usage_daily.writes + EXCLUDED.writes,
                           bytes_in = usage_daily.bytes_in + EXCLUDED.bytes_in,
                           bytes_out = usage_daily.bytes_out + EXCLUDED.bytes_out,
                           searches = usage_daily.searches + EXCLUDED.searches",
                        &[&tenant.as_str(), day, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]],
                    )
                    .await
                    .map_err(pg_error)?;
                }
            }
        }
        commit(tx).await
    }

    async fn calls_between(&self, from_day: i64, to_day: i64) -> Result<Vec<(TenantId, u64)>> {
        let conn = self.shared_conn().await?;
        let rows = conn
            .query("SELECT tenant_id, calls FROM tenantry_calls_between($1, $2)", &[&from_day, &to_day])
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| -> Result<(TenantId, u64)> {
                Ok((tenant_id(&r.get::<_, String>(0))?, r.get::<_, i64>(1).max(0) as u64))
            })
            .collect()
    }

    async fn prune_events(&self, before: Timestamp, relay: Option<&str>) -> Result<u64> {
        // Upkeep's turn to drop imports a crashed node left open, too (see `import`).
        crate::import::sweep_abandoned_imports(self).await?;
        let before: i64 = before.millis();
        let mut pruned: u64 = 0;
        for (place, db) in self.places.for_upkeep("prune events").await {
            let done = async {
                let conn = db?.client().await?;
                let n = conn
                    .query_one("SELECT tenantry_prune_kept_events($1, $2)", &[&before, &relay])
                    .await
                    .map_err(pg_error)?;
                Ok::<u64, Error>(n.get::<_, i64>(0).max(0) as u64)
            };
            match (done.await, place) {
                (Ok(n), _) => pruned += n,
                (Err(e), None) => return Err(e),
                (Err(e), Some(t)) => tracing::warn!("could not prune {t}'s old events (next round): {}", e.message),
            }
        }
        Ok(pruned)
    }

    async fn claim_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<RelayPosition>> {
        let tenant = scope.tenant_id();
        let mut conn = self.conn_of(tenant).await?;
        let Some(tx) = self.relay_tx(&mut conn, tenant).await? else { return Ok(None) };
        let (now, lease_until) = (now.millis(), lease_until.millis());
        let st = tx
            .prepare_cached(
                "INSERT INTO event_relays (tenant_id, relay, seq, holder, lease_until) VALUES ($1, $2, 0, $3, $5)
                 ON CONFLICT (tenant_id, relay) DO UPDATE SET holder = $3, lease_until = $5
                 WHERE event_relays.holder = $3 OR event_relays.lease_until < $4",
            )
            .await
            .map_err(pg_error)?;
        tx.execute(&st, &[&tenant.as_str(), &relay, &holder, &now, &lease_until]).await.map_err(pg_error)?;
        let row = tx
            .query_one(
                "SELECT seq, holder, lease_until FROM event_relays WHERE tenant_id = $1 AND relay = $2",
                &[&tenant.as_str(), &relay],
            )
            .await
            .map_err(pg_error)?;
        commit(tx).await?;
        Ok(Some(RelayPosition {
            seq: row.get::<_, i64>(0).max(0) as u64,
            taken: row.get::<_, String>(1) == holder,
            lease_until: Timestamp::from_millis(row.get(2)),
        }))
    }

    async fn advance_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        seq: u64,
        lease_until: Timestamp,
    ) -> Result<bool> {
        let tenant = scope.tenant_id();
        let mut conn = self.conn_of(tenant).await?;
        let Some(tx) = self.relay_tx(&mut conn, tenant).await? else { return Ok(false) };
        let (seq, lease_until) = (seq.min(i64::MAX as u64) as i64, lease_until.millis());
        let st = tx
            .prepare_cached(
                "UPDATE event_relays SET seq = GREATEST(seq, $4), lease_until = $5
                 WHERE tenant_id = $1 AND relay = $2 AND holder = $3",
            )
            .await
            .map_err(pg_error)?;
        let changed =
            tx.execute(&st, &[&tenant.as_str(), &relay, &holder, &seq, &lease_until]).await.map_err(pg_error)?;
        commit(tx).await?;
        Ok(changed == 1)
    }

    async fn prune_audit(&self, scope: &TenantScope, before: Timestamp, max: usize) -> Result<AuditPruned> {
        let tenant = scope.tenant_id();
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        // Purged meanwhile (a purge does not wait for upkeep): nothing to prune.
        if !lock_registered(&tx, tenant).await? {
            commit(tx).await?;
            return Ok(AuditPruned::default());
        }
        let (mut found, following) = prunable(&tx, tenant, before, max).await?;
        // The oldest entry kept: the first one past those found, or the last found when nothing
        // follows it (it is the newest entry, which is never pruned).
        let oldest_kept = match following {
            Some(at) => Some(at),
            None => found.pop().map(|(e, _)| e.at),
        };
        if !worth_pruning(found.iter().map(|(_, action)| action.as_str())) {
            let oldest = found.first().map(|(e, _)| e.at).or(oldest_kept);
            commit(tx).await?;
            return Ok(AuditPruned { deleted: 0, oldest_kept: oldest });
        }
        let Some((anchor, _)) = found.pop() else {
            commit(tx).await?;
            return Ok(AuditPruned { deleted: 0, oldest_kept });
        };
        let through: i64 = anchor.seq as i64;
        let deleted = tx
            .execute("DELETE FROM audit WHERE tenant_id = $1 AND seq <= $2", &[&tenant.as_str(), &through])
            .await
            .map_err(pg_error)?;
        let anchor_at: i64 = anchor.at.millis();
        tx.execute(
            "INSERT INTO audit_anchor (tenant_id, seq, hash, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, at = EXCLUDED.at",
            &[&tenant.as_str(), &through, &anchor.hash, &anchor_at],
        )
        .await
        .map_err(pg_error)?;
        append_audit_tx(&tx, tenant, scope.slug().as_str(), prune_record(&anchor)).await?;
        commit(tx).await?;
        Ok(AuditPruned { deleted, oldest_kept })
    }

    async fn reclaim_expired_memory(&self, now: Timestamp, limit: usize) -> Result<u64> {
        let now: i64 = now.millis();
        let max: i32 = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut reclaimed: u64 = 0;
        for (place, db) in self.places.for_upkeep("reclaim memory").await {
            match (reclaim_expired_in(db, now, max).await, place) {
                (Ok(n), _) => reclaimed += n,
                (Err(e), None) => return Err(e),
                (Err(e), Some(t)) => {
                    tracing::warn!("could not reclaim {t}'s expired memory (next round): {}", e.message)
                }
            }
        }
        Ok(reclaimed)
    }

    async fn due_deliveries(&self, now: Timestamp, limit: usize, per_tenant: usize) -> Result<Vec<DueDelivery>> {
        // Each database's due deliveries, taken in turn so that the shared one cannot crowd out
        // the dedicated tenants'.
        let mut found: Vec<std::vec::IntoIter<DueDelivery>> = Vec::new();
        for (place, db) in self.places.for_upkeep("due deliveries").await {
            match (due_deliveries_in(db, now, limit, per_tenant).await, place) {
                (Ok(due), _) => found.push(due.into_iter()),
                (Err(e), None) => return Err(e),
                (Err(e), Some(t)) => tracing::warn!("could not read {t}'s due deliveries (next round): {}", e.message),
            }
        }
        let mut due = Vec::new();
        while due.len() < limit && !found.is_empty() {
            found.retain_mut(|place| match place.next() {
                Some(d) if due.len() < limit => {
                    due.push(d);
                    true
                }
                _ => false,
            });
        }
        Ok(due)
    }

    async fn record_attempt(&self, report: AttemptReport) -> Result<()> {
        let tenant = &report.tenant_id;
        // An id past i64 names no delivery.
        let Ok(delivery) = i64::try_from(report.delivery_id) else { return Ok(()) };
        let routed = self.places.is_dedicated(tenant);
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        if !lock_registered(&tx, tenant).await? {
            commit(tx).await?;
            drop(conn);
            // Moved meanwhile (`moves`): recorded where it is now; purged: nothing to record.
            if self.rerouted(tenant, routed).await.unwrap_or(false) {
                return self.record_attempt(report).await;
            }
            return Ok(());
        }
        let row = tx
            .query_opt(
                "SELECT webhook_id, event_seq, event, attempts FROM webhook_outbox WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &delivery],
            )
            .await
            .map_err(pg_error)?;
        // Gone meanwhile (the webhook was deleted): nothing to record.
        let Some(row) = row else {
            commit(tx).await?;
            return Ok(());
        };
        let webhook: String = row.get::<_, String>(0);
        let seq: i64 = row.get::<_, i64>(1);
        let body: String = row.get::<_, String>(2);
        let attempts: i32 = row.get::<_, i32>(3);
        let event_type: String = event_type_of(&body);
        let outcome: &str = match (report.delivered, report.retry_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "retrying",
            (false, None) => "failed",
        };
        let attempt: i32 = attempts.saturating_add(1);
        let status: Option<i32> = report.status.map(i32::from);
        let latency: i64 = count(report.latency_ms);
        let at: i64 = report.at.millis();
        tx.execute(
            "INSERT INTO webhook_attempts (tenant_id, webhook_id, delivery_id, event_seq, event_type, attempt, status,
               latency_ms, error, outcome, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &tenant.as_str(),
                &webhook,
                &delivery,
                &seq,
                &event_type,
                &attempt,
                &status,
                &latency,
                &report.error,
                &outcome,
                &at,
            ],
        )
        .await
        .map_err(pg_error)?;
        match (report.delivered, report.retry_at) {
            (false, Some(retry_at)) => {
                let retry_at: i64 = retry_at.millis();
                tx.execute(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $3
                     WHERE tenant_id = $1 AND id = $2",
                    &[&tenant.as_str(), &delivery, &retry_at],
                )
                .await
                .map_err(pg_error)?
            }
            _ => tx
                .execute("DELETE FROM webhook_outbox WHERE tenant_id = $1 AND id = $2", &[&tenant.as_str(), &delivery])
                .await
                .map_err(pg_error)?,
        };
        if report.delivered {
            tx.execute(
                "UPDATE webhooks SET consecutive_failures = 0 WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &webhook],
            )
            .await
            .map_err(pg_error)?;
        } else {
            let disable_after: i32 = i32::try_from(report.disable_after.max(1)).unwrap_or(i32::MAX);
            tx.execute(
                "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1,
                   enabled = CASE WHEN consecutive_failures + 1 >= $3::integer THEN false ELSE enabled END,
                   disabled_reason = CASE WHEN consecutive_failures + 1 >= $3::integer
                     THEN 'disabled after ' || (consecutive_failures + 1) || ' consecutive failed attempts'
                     ELSE disabled_reason END
                 WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &webhook, &disable_after],
            )
            .await
            .map_err(pg_error)?;
        }
        commit(tx).await
    }

    async fn claim_delivery(&self, tenant: &TenantId, id: u64, now: Timestamp, lease_until: Timestamp) -> Result<bool> {
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        // The row's lock decides between two workers: the second waits, then finds it not due.
        let claimed = tx
            .execute(
                "UPDATE webhook_outbox SET next_attempt_at = $4
                 WHERE tenant_id = $1 AND id = $2 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $3",
                &[&tenant.as_str(), &(id as i64), &now.millis(), &lease_until.millis()],
            )
            .await
            .map_err(pg_error)?;
        commit(tx).await?;
        Ok(claimed == 1)
    }

    async fn next_delivery_at(&self) -> Result<Option<Timestamp>> {
        let mut next: Option<i64> = None;
        for (place, db) in self.places.for_upkeep("next delivery").await {
            let read = async {
                let conn = db?.client().await?;
                let row = conn.query_one("SELECT tenantry_next_delivery_at()", &[]).await.map_err(pg_error)?;
                Ok::<Option<i64>, Error>(row.get::<_, Option<i64>>(0))
            };
            match (read.await, place) {
                (Ok(at), _) => next = next.into_iter().chain(at).min(),
                (Err(e), None) => return Err(e),
                (Err(e), Some(t)) => tracing::warn!("could not read {t}'s next delivery: {}", e.message),
            }
        }
        Ok(next.map(Timestamp::from_millis))
    }
}

/// Deletes up to `max` memory entries expired at `now` in one database, each tenant's in its own
/// transaction.
async fn reclaim_expired_in(db: Result<crate::PgDatabase>, now: i64, max: i32) -> Result<u64> {
    let mut conn = db?.client().await?;
    let rows = conn
        .query("SELECT tenant_id, namespace, key FROM tenantry_expired_memory($1, $2)", &[&now, &max])
        .await
        .map_err(pg_error)?;
    let mut expired: Vec<(TenantId, (String, String))> = Vec::with_capacity(rows.len());
    for r in &rows {
        expired.push((tenant_id(&r.get::<_, String>(0))?, (r.get::<_, String>(1), r.get::<_, String>(2))));
    }
    let mut reclaimed: u64 = 0;
    for (tenant, keys) in by_tenant(expired) {
        let tx = begin(&mut conn, &tenant).await?;
        if lock_registered(&tx, &tenant).await? {
            reclaimed +=
                crate::memory::delete_expired_for_tenant_tx(&tx, &tenant, &keys, Timestamp::from_millis(now)).await?;
        }
        commit(tx).await?;
    }
    Ok(reclaimed)
}

/// The deliveries due at `now` in one database.
async fn due_deliveries_in(
    db: Result<crate::PgDatabase>,
    now: Timestamp,
    limit: usize,
    per_tenant: usize,
) -> Result<Vec<DueDelivery>> {
    let now: i64 = now.millis();
    let limit: i32 = i32::try_from(limit).unwrap_or(i32::MAX);
    let per_tenant: i32 = i32::try_from(per_tenant).unwrap_or(i32::MAX);
    let conn = db?.client().await?;
    let rows = conn
        .query(
            "SELECT id, tenant_id, webhook_id, url, secret, event, attempts
             FROM tenantry_due_deliveries($1, $2, $3)",
            &[&now, &limit, &per_tenant],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|r| -> Result<DueDelivery> {
            let webhook: String = r.get::<_, String>(2);
            let body: String = r.get::<_, String>(5);
            Ok(DueDelivery {
                id: r.get::<_, i64>(0).max(0) as u64,
                tenant_id: tenant_id(&r.get::<_, String>(1))?,
                webhook_id: WebhookId::parse(&webhook).ok_or_else(|| corrupt("webhook id"))?,
                url: r.get::<_, String>(3),
                secret: r.get::<_, String>(4),
                event_type: event_type_of(&body),
                body,
                attempts: r.get::<_, i32>(6).max(0) as u32,
            })
        })
        .collect()
}

#[async_trait]
impl UsageLog for PgStore {
    async fn usage_between(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<Counters> {
        let tenant = scope.tenant_id();
        // Metered usage is the registry's, in the shared database for every tenant.
        let mut conn = self.shared_conn().await?;
        let tx = begin(&mut conn, tenant).await?;
        // sum() of bigint is numeric: cast back.
        let row = tx
            .query_one(
                "SELECT COALESCE(sum(api_calls), 0)::bigint, COALESCE(sum(reads), 0)::bigint,
                        COALESCE(sum(writes), 0)::bigint, COALESCE(sum(bytes_in), 0)::bigint,
                        COALESCE(sum(bytes_out), 0)::bigint, COALESCE(sum(searches), 0)::bigint
                 FROM usage_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3",
                &[&tenant.as_str(), &from_day, &to_day],
            )
            .await
            .map_err(pg_error)?;
        commit(tx).await?;
        Ok(counters_from_row(&row, 0))
    }

    async fn usage_by_day(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<Vec<(i64, Counters)>> {
        let tenant = scope.tenant_id();
        let conn = self.shared_conn().await?;
        let rows = crate::read_once(
            &conn,
            tenant,
            "SELECT day, api_calls, reads, writes, bytes_in, bytes_out, searches FROM usage_daily
             WHERE tenant_id = $1 AND day >= $2 AND day < $3 ORDER BY day",
            &[&tenant.as_str(), &from_day, &to_day],
        )
        .await?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0), counters_from_row(r, 1))).collect())
    }
}
