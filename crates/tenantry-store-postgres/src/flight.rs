//! The first flight of a write of one item (a file's DELETE, a memory entry's PUT or DELETE) on a
//! `store::Flights`, as a file's PUT sends its own (crate README, "How a write runs"): the
//! transaction begun with the tenant set, then, under the tenant's lock, everything the write
//! decides on, in one round trip.

use crate::error::pg_error;
use crate::journal::HOOKS;
use crate::search::OLD_DOC;
use crate::store::LOCK_TENANT;
use tenantry_core::ids::TenantId;
use tenantry_core::search::DocKind;
use tenantry_core::Result;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// What the first flight read.
pub(crate) struct FirstFlight {
    /// The tenant's row, locked (`store::locked_row` reads it).
    pub locked: Option<Row>,
    /// The item as the write finds it.
    pub held: Option<Row>,
    /// The tenant's enabled webhooks (`journal::hooks_from_rows`).
    pub hooks: Vec<Row>,
    /// The item's search document (`search::old_doc`).
    pub old_doc: Option<Row>,
}

/// Sends the first flight: `held` is the statement reading the item and its parameters, `doc`
/// the item's search document.
pub(crate) async fn first_flight(
    tx: &deadpool_postgres::Client,
    tenant: &TenantId,
    held: (&str, &[&(dyn ToSql + Sync)]),
    (kind, doc): (DocKind, &str),
) -> Result<FirstFlight> {
    let (id, k) = (tenant.as_str(), kind as i16);
    let begin = crate::begin_writing(tenant)?;
    let statements = (
        tx.prepare_cached(LOCK_TENANT).await.map_err(pg_error)?,
        tx.prepare_cached(held.0).await.map_err(pg_error)?,
        tx.prepare_cached(HOOKS).await.map_err(pg_error)?,
        tx.prepare_cached(OLD_DOC).await.map_err(pg_error)?,
    );
    let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
    let by_doc: [&(dyn ToSql + Sync); 3] = [&id, &k, &doc];
    let (_, locked, held, hooks, old_doc) = tokio::try_join!(
        biased;
        tx.batch_execute(&begin),
        tx.query_opt(&statements.0, &by_tenant),
        tx.query_opt(&statements.1, held.1),
        tx.query(&statements.2, &by_tenant),
        tx.query_opt(&statements.3, &by_doc),
    )
    .map_err(pg_error)?;
    Ok(FirstFlight { locked, held, hooks, old_doc })
}
