//! The PostgreSQL backend of tenantry-core (issue #22), implementing its `Store`:
//!
//! - `schema`: the schema as numbered migrations (`tenantry db migrate`), row-level security on
//!   every tenant table, the version check a node makes at start;
//! - [`PgDatabase`]: a node's connection pool, which refuses a role that row-level security
//!   would not bind, and [`tenant_transaction`], the one way to reach a tenant's rows: the tenant
//!   is set for the transaction only, so a pooled connection never carries it into the next one;
//! - [`PgStore`] (`store`): the `Store`. Each method is one transaction of the tenant; a write
//!   locks the tenant's `tenant_usage` row first (exact quotas, gapless event seqs, one audit
//!   chain), and publishes its events to the sinks in commit order under the tenant's turn on
//!   this node. The capabilities sit in `tenants`, `people`, `audit`, `journal` (with `flight`, a write's
//!   first round trip), `files`, `memory`, `search`, `events`, `webhooks`, `import`, `upkeep`
//!   (cross-tenant work through the owner's `SECURITY DEFINER` functions) and `health`
//!   (readiness); `places` routes each tenant to its database (the shared one, or a dedicated
//!   tenant's own) and `moves` moves it between them online; `tls` reads the URL.
//!
//! `tenantry serve` opens it when `TENANTRY_DATABASE_URL` (or `[storage] url`) is set.

mod audit;
pub mod error;
mod events;
mod feed;
mod files;
mod flight;
mod health;
mod image;
mod import;
mod journal;
mod memory;
mod moves;
mod people;
mod places;
mod rows;
pub mod schema;
mod search;
mod store;
mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod upkeep;
mod webhooks;

pub use image::PgImages;
pub use places::{migrate_dedicated, PlacementOptions};
pub use store::PgStore;
pub use tls::Target;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction};
use error::{describe, pg_error};
use tenantry_core::ids::TenantId;
use tenantry_core::{Error, Result};

/// A node's pool of connections to the database, as the server's role.
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
}

impl PgDatabase {
    /// Connects with `url` (at most `max_connections` at once) and checks, before anything is
    /// served, that the schema is the one this binary knows and that the role is one row-level
    /// security binds: no superuser, no `BYPASSRLS`, owner of no table.
    pub async fn connect(url: &str, max_connections: usize) -> Result<PgDatabase> {
        PgDatabase::connect_with(Target::parse(url)?, max_connections).await
    }

    /// A pool of at most `max_connections` to `target`, none opened yet.
    fn pool(target: Target, max_connections: usize) -> Result<PgDatabase> {
        let manager =
            Manager::from_config(target.config, target.tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .build()
            .map_err(|e| Error::internal(format!("the connection pool: {e}")))?;
        Ok(PgDatabase { pool })
    }

    pub(crate) async fn connect_with(target: Target, max_connections: usize) -> Result<PgDatabase> {
        let db = PgDatabase::pool(target, max_connections)?;
        // The first connection's failure says why (a wrong password, a certificate refused):
        // the node is starting, and whoever starts it is there to read it.
        let client = db
            .pool
            .get()
            .await
            .map_err(|e| Error::internal(format!("cannot connect to the database: {}", pool_failure(&e))))?;
        schema::check_version(&client).await?;
        check_role(&client).await?;
        Ok(db)
    }

    /// Connects to a dedicated tenant's database as [`PgDatabase::connect_with`] does, while
    /// serving: a failure is `storage_unavailable` (the cause logged), not a start-up error.
    pub(crate) async fn connect_quietly(target: Target, max_connections: usize) -> Result<PgDatabase> {
        let db = PgDatabase::pool(target, max_connections)?;
        let client = db.client().await?;
        schema::check_version(&client).await?;
        check_role(&client).await?;
        drop(client);
        Ok(db)
    }

    /// The most connections this pool opens.
    pub(crate) fn max_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// Closes the pool: connections in use end when given back.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| {
            tracing::warn!("the database cannot be reached: {}", pool_failure(&e));
            Error::storage_unavailable()
        })
    }
}

/// Why the pool could not hand out a connection.
fn pool_failure(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// `tenantry db migrate`: connects with `url` (the role that is to own the tables) and applies
/// the pending migrations, granting `app_role` row access; then does the same in every dedicated
/// tenant's database (`places`), returning how many there were.
pub async fn migrate_url(url: &str, app_role: &str) -> Result<(schema::Migrated, usize)> {
    let target = Target::parse(url)?;
    let mut client = target
        .connect()
        .await
        .map_err(|e| Error::internal(format!("cannot connect to the database: {}", describe(&e))))?;
    let migrated = schema::migrate(&mut client, app_role).await?;
    let dedicated = places::migrate_dedicated(&target, app_role).await?;
    Ok((migrated, dedicated))
}

/// Begins a transaction that sees and writes only `tenant`'s rows. The tenant is set with
/// `set_config(..., true)`: local to this transaction, gone at its commit or rollback.
pub async fn tenant_transaction<'a>(client: &'a mut Object, tenant: &TenantId) -> Result<Transaction<'a>> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT set_config('tenantry.tenant_id', $1, true)", &[&tenant.as_str()]).await.map_err(pg_error)?;
    Ok(tx)
}

/// Begins a read-only transaction of `tenant` that reads one snapshot throughout (`REPEATABLE
/// READ`): a read of several statements (a file's row, then its chunks) cannot see a write that
/// commits between them, such as a replacement deleting the old body. Read-only, it never fails
/// to serialize.
pub async fn tenant_snapshot<'a>(client: &'a mut Object, tenant: &TenantId) -> Result<Transaction<'a>> {
    snapshot_transaction(client, tenant, None).await
}

/// As [`tenant_snapshot`], seeing what the transaction that exported `exported`
/// (`pg_export_snapshot()`) sees, while that one is open.
pub(crate) async fn tenant_snapshot_as_of<'a>(
    client: &'a mut Object,
    tenant: &TenantId,
    exported: &str,
) -> Result<Transaction<'a>> {
    snapshot_transaction(client, tenant, Some(exported)).await
}

async fn snapshot_transaction<'a>(
    client: &'a mut Object,
    tenant: &TenantId,
    exported: Option<&str>,
) -> Result<Transaction<'a>> {
    if let Some(id) = exported.filter(|id| !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')) {
        return Err(tenantry_core::Error::internal(format!("an exported snapshot named {id:?}")));
    }
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    if let Some(id) = exported {
        // Before any query: it sets what the transaction sees.
        tx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'")).await.map_err(pg_error)?;
    }
    tx.execute("SELECT set_config('tenantry.tenant_id', $1, true)", &[&tenant.as_str()]).await.map_err(pg_error)?;
    Ok(tx)
}

/// Runs one read statement of `tenant` in one round trip: the transaction begun read-only with the
/// tenant set (as [`tenant_transaction`] does, for this transaction only), the statement, and the
/// commit go out together (tokio-postgres pipelines the requests of futures polled at once, in
/// the order polled), and the server runs them in that order. If the statement fails, the commit
/// ends the transaction as a rollback; all three are sent at the first poll, so a caller dropped
/// midway leaves no transaction open on the pooled connection.
pub async fn read_once(
    conn: &Object,
    tenant: &TenantId,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>> {
    let (begin, statement) = (begin_reading(tenant)?, conn.prepare_cached(sql).await.map_err(pg_error)?);
    let (began, rows, ended) =
        tokio::join!(conn.batch_execute(&begin), conn.query(&statement, params), conn.batch_execute("COMMIT"));
    began.map_err(pg_error)?;
    let rows = rows.map_err(pg_error)?;
    ended.map_err(pg_error)?;
    Ok(rows)
}

/// Two read statements of `tenant` in one round trip and one snapshot, as [`read_once`] runs one.
pub async fn read_two(
    conn: &Object,
    tenant: &TenantId,
    (first, first_params): (&str, &[&(dyn tokio_postgres::types::ToSql + Sync)]),
    (second, second_params): (&str, &[&(dyn tokio_postgres::types::ToSql + Sync)]),
) -> Result<(Vec<tokio_postgres::Row>, Vec<tokio_postgres::Row>)> {
    let begin = begin_reading(tenant)?;
    let first = conn.prepare_cached(first).await.map_err(pg_error)?;
    let second = conn.prepare_cached(second).await.map_err(pg_error)?;
    let (began, a, b, ended) = tokio::join!(
        conn.batch_execute(&begin),
        conn.query(&first, first_params),
        conn.query(&second, second_params),
        conn.batch_execute("COMMIT")
    );
    began.map_err(pg_error)?;
    let (a, b) = (a.map_err(pg_error)?, b.map_err(pg_error)?);
    ended.map_err(pg_error)?;
    Ok((a, b))
}

/// The tenant's id as it may go into the text of a statement: ids are lowercase letters, digits
/// and `_`, checked here all the same.
pub(crate) fn tenant_literal(tenant: &TenantId) -> Result<&str> {
    let id = tenant.as_str();
    if !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(Error::internal(format!("tenant id {id:?} has an unexpected shape")));
    }
    Ok(id)
}

/// What begins a one-flight read of `tenant`: a read-only transaction that reads one snapshot,
/// with the tenant set for it only.
fn begin_reading(tenant: &TenantId) -> Result<String> {
    Ok(format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT set_config('tenantry.tenant_id', '{}', true)",
        tenant_literal(tenant)?
    ))
}

/// What begins a write of `tenant` sent in flights (`store::Flights`): a transaction with the
/// tenant set for it only, as [`tenant_transaction`] begins one.
pub(crate) fn begin_writing(tenant: &TenantId) -> Result<String> {
    Ok(format!("BEGIN; SELECT set_config('tenantry.tenant_id', '{}', true)", tenant_literal(tenant)?))
}

/// Refuses a role row-level security would not bind.
async fn check_role(client: &tokio_postgres::Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolbypassrls,
                    (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user)
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let (role, superuser, bypass, owned): (String, bool, bool, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    let why = match (superuser, bypass, owned) {
        (true, _, _) => "is a superuser",
        (_, true, _) => "has BYPASSRLS",
        (_, _, n) if n > 0 => "owns tables",
        _ => return Ok(()),
    };
    Err(Error::internal(format!(
        "the database role {role} {why}, so row-level security would not bind it: connect as a role that owns \
         nothing, the one `tenantry db migrate --app-role` granted rows to"
    )))
}
