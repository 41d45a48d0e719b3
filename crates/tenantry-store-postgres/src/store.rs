//! The handle: a node's pool, whom it tells of commits (`feed::Listeners`, with the feed of other
//! nodes' commits), and the per-tenant turn every write takes on this node so that its events
//! reach the sinks in commit order.

use crate::error::pg_error;
use crate::feed::{Feed, Listeners};
use crate::journal::Heads;
use crate::places::{PlacementOptions, Places};
use crate::{tenant_transaction, PgDatabase};
use deadpool_postgres::{Object, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tenantry_core::events::Event;
use tenantry_core::ids::TenantId;
use tenantry_core::quota::StoredUsage;
use tenantry_core::{Error, Result};
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The PostgreSQL backend of tenantry-core's `Store`.
pub struct PgStore {
    /// Each tenant's database: the shared one, or its own (`places`).
    pub(crate) places: Arc<Places>,
    /// One connection for re-reading the directory when other nodes change it.
    pub(crate) directory_db: PgDatabase,
    /// This node's application name on its connections (see `feed`).
    pub(crate) node: String,
    pub(crate) listeners: Arc<Listeners>,
    turns: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// Taken (and so stopped) by `close`.
    pub(crate) feed: Mutex<Option<Feed>>,
}

/// A tenant's turn to write on this node: held from before its transaction begins until the
/// sinks have heard its events, so two writes of one tenant publish in the order they committed.
/// (PostgreSQL orders them by the tenant's `tenant_usage` row lock; other nodes' events come
/// through the feed, and sinks order them by `seq`.)
pub(crate) struct Turn {
    _guard: OwnedMutexGuard<()>,
}

impl PgStore {
    /// Connects (see [`PgDatabase::connect`]) with an application name of this node's own, starts
    /// the feed of other nodes' changes (`feed`), and drops the staged rows of imports abandoned
    /// long ago (a node that crashed mid-import; see `import::sweep_abandoned_imports`).
    pub async fn open(url: &str, max_connections: usize) -> Result<PgStore> {
        PgStore::open_with(url, max_connections, &PlacementOptions { owner_url: None, max_open_dedicated: 64 }).await
    }

    /// [`PgStore::open`], with what dedicated placement needs (`places`).
    pub async fn open_with(url: &str, max_connections: usize, placement: &PlacementOptions) -> Result<PgStore> {
        let mut target = crate::Target::parse(url)?;
        let node = format!("tenantry-{:016x}", rand::random::<u64>());
        target.config.application_name(&node);
        let db = PgDatabase::connect_with(target.clone(), max_connections).await?;
        crate::schema::check_feed(&*db.client().await?).await?;
        let directory_db = PgDatabase::connect_with(target.clone(), 1).await?;
        let places = Arc::new(Places::new(db, target.clone(), placement).await?);
        let listeners = Arc::new(Listeners::default());
        let feed = Feed::start(target, node.clone(), places.clone(), listeners.clone()).await?;
        let store = PgStore {
            places,
            directory_db,
            node,
            listeners,
            turns: Mutex::new(HashMap::new()),
            feed: Mutex::new(Some(feed)),
        };
        crate::import::sweep_abandoned_imports(&store).await?;
        store.settle_moves().await?;
        Ok(store)
    }

    pub(crate) async fn turn(&self, tenant: &TenantId) -> Turn {
        let lock = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            // Forget the locks nobody holds or waits for, so the map stays as small as the
            // number of tenants writing right now.
            if turns.len() > 1024 {
                turns.retain(|_, l| Arc::strong_count(l) > 1);
            }
            turns.entry(tenant.clone()).or_default().clone()
        };
        Turn { _guard: lock.lock_owned().await }
    }

    /// Hands committed events to the sinks (call while holding the tenant's turn).
    pub(crate) fn publish(&self, tenant: &TenantId, events: &[Event]) {
        self.listeners.publish(tenant, events);
    }

    /// A connection to the database holding `tenant`'s rows.
    pub(crate) async fn conn_of(&self, tenant: &TenantId) -> Result<Object> {
        self.places.db_of(tenant).await?.client().await
    }

    /// After a write found `tenant`'s rows gone from the database it was routed to (`moves`,
    /// `dedicated`: where it was routed): whether the registry now places it elsewhere (the
    /// route is updated), so that the write may go there.
    pub(crate) async fn rerouted(&self, tenant: &TenantId, dedicated: bool) -> Result<bool> {
        let now = self.places.registered_placement(tenant).await?;
        Ok((now == tenantry_core::model::Placement::Dedicated) != dedicated)
    }

    /// A connection to the shared database (the registry, and the shared tenants' rows).
    pub(crate) async fn shared_conn(&self) -> Result<Object> {
        self.places.shared().client().await
    }

    /// One read statement, in a transaction of `tenant`, in one round trip ([`crate::read_once`]).
    pub(crate) async fn read_rows(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let conn = self.conn_of(tenant).await?;
        crate::read_once(&conn, tenant, sql, params).await
    }

    /// One read statement of at most one row, in a transaction of `tenant` ([`crate::read_once`]).
    pub(crate) async fn read_row(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let conn = self.conn_of(tenant).await?;
        let mut rows = crate::read_once(&conn, tenant, sql, params).await?;
        if rows.len() > 1 {
            return Err(Error::internal("a read of at most one row found several"));
        }
        Ok(rows.pop())
    }
}

/// A write of one tenant sent in flights on a pooled connection, its transaction begun by the first
/// ([`crate::begin_writing`]) and committed by the last: a `COMMIT` sent after a failed statement
/// rolls back. Dropped before [`Flights::committed`] (an error between flights, a caller that
/// gave up), it rolls back before the connection goes back to the pool, so no pooled connection
/// is ever left inside a transaction.
pub(crate) struct Flights {
    conn: Option<Object>,
}

impl Flights {
    pub fn new(conn: Object) -> Flights {
        Flights { conn: Some(conn) }
    }

    pub fn client(&self) -> &deadpool_postgres::Client {
        self.conn.as_ref().expect("held until committed or dropped")
    }

    /// The last flight's `COMMIT` went through: nothing to roll back.
    pub fn committed(mut self) {
        self.conn.take();
    }
}

impl Drop for Flights {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let mut rolling_back = RollingBack(Some(conn));
                runtime.spawn(async move {
                    let conn = rolling_back.0.as_ref().expect("held until rolled back");
                    if conn.batch_execute("ROLLBACK").await.is_ok() {
                        rolling_back.0.take(); // back to the pool, outside any transaction
                    }
                });
            }
            // No runtime left to roll back on (the process is ending): the connection leaves
            // the pool, never handed out again, and the server rolls back when it closes.
            Err(_) => drop(deadpool_postgres::Object::take(conn)),
        }
    }
}

/// A connection whose rollback is under way: if it does not finish (it failed, or the task was
/// dropped as the runtime shut down), the connection leaves the pool instead of going back to it.
struct RollingBack(Option<Object>);

impl Drop for RollingBack {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

/// Begins `tenant`'s transaction on `conn` (see [`tenant_transaction`]).
pub(crate) async fn begin<'a>(conn: &'a mut Object, tenant: &TenantId) -> Result<Transaction<'a>> {
    tenant_transaction(conn, tenant).await
}

/// The tenant's counters, row-locked until the transaction ends: every write takes this first,
/// so one tenant's writes are serialized (exact quotas, gapless seqs, one audit chain) while
/// other tenants' go on. `FOR NO KEY UPDATE` (a write changes no key); a purge, which deletes
/// it, and a move's fence lock it `FOR UPDATE` and so wait for every write under way. (The
/// metering flush holds the registry row instead, `FOR KEY SHARE`, which no write waits for.)
pub(crate) async fn lock_usage(places: &Places, tx: &Transaction<'_>, tenant: &TenantId) -> Result<StoredUsage> {
    let st = tx.prepare_cached(LOCK_TENANT).await.map_err(pg_error)?;
    let row = tx.query_opt(&st, &[&tenant.as_str()]).await.map_err(pg_error)?;
    Ok(locked_row(places, tenant, row.as_ref())?.0)
}

/// The tenant's row as [`LOCK_TENANT`] reads it: its counters and its journal's heads. A tenant
/// without one here was moved to another database after this node routed the write (`moves`):
/// nothing was written; the answer says to try again, and the route is re-read meanwhile.
pub(crate) fn locked_row(places: &Places, tenant: &TenantId, row: Option<&Row>) -> Result<(StoredUsage, Heads)> {
    let row = row.ok_or_else(|| {
        places.mark_stale(tenant);
        moved_away(tenant)
    })?;
    let used = StoredUsage { storage_bytes: row.get::<_, i64>(0) as u64, files: row.get::<_, i64>(1) as u64 };
    Ok((used, Heads::from_row(row, 2)))
}

/// The answer to a request that reached a database its tenant was moved out of.
pub(crate) fn moved_away(tenant: &TenantId) -> Error {
    let mut e = Error::storage_unavailable();
    e.message = format!("tenant {tenant} has just moved to another database: try again");
    e
}

/// The tenant's row, locked as [`lock_usage`] locks it: its counters, then its journal's heads
/// (`journal::Heads`).
pub(crate) const LOCK_TENANT: &str = "SELECT storage_bytes, files, audit_seq, audit_head, last_event_seq
     FROM tenant_usage WHERE tenant_id = $1 FOR NO KEY UPDATE";

/// Adds to the tenant's stored usage (its row is locked by [`lock_usage`]).
pub(crate) async fn add_usage(tx: &Transaction<'_>, tenant: &TenantId, bytes: i64, files: i64) -> Result<()> {
    if bytes == 0 && files == 0 {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "UPDATE tenant_usage SET storage_bytes = storage_bytes + $2, files = files + $3 WHERE tenant_id = $1",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&st, &[&tenant.as_str(), &bytes, &files]).await.map_err(pg_error)?;
    Ok(())
}

/// Commits, mapping a failure.
pub(crate) async fn commit(tx: Transaction<'_>) -> Result<()> {
    tx.commit().await.map_err(pg_error)
}
