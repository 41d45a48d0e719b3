//! Moving a tenant between the shared database and a database of its own (API.md §9) while it
//! keeps serving: copy rounds (`copier`), a short write fence for the last one, the switch, a
//! comparison of both sides as at the switch, then the old copy deleted.
//!
//! - **Rounds** bring the target up to date with a snapshot of the source, each costing what
//!   changed since the last (`copier`'s doc). Rounds repeat until one is short; then every table
//!   is compared whole on both sides (a wrong copy stops the move here, with nothing switched);
//!   then rounds again until one is short, so the fenced round has little to catch up on.
//! - **The fence.** The source's `tenant_usage` row is locked `FOR UPDATE` (and the tenant's
//!   imports and outbox): every write of the tenant, on every node, takes that row first, so
//!   none is half way and none starts. The last round reads the source in a snapshot exported
//!   from the fence, kept for the comparison after; the target's is taken once its copy has
//!   committed, before anything can write there.
//! - **The switch.** The registry's placement changes, and the source's `tenant_usage` row and
//!   webhook outbox are deleted: moving out of the shared database, in the fence's own
//!   transaction; moving back into it, in a transaction of its own once the copy has committed
//!   there (writers still wait on the source's fence), after which the fence commits.
//!   Writers that waited on the fence, or that reach the source later through a route not yet
//!   updated, find no usage row: a file or memory write reads the registry and goes again to
//!   the new place (`PgStore::rerouted`); other writes are answered `storage_unavailable`
//!   (nothing of them was written; retried, they land) and the route is re-read
//!   (`Places::mark_stale`). Reads keep being answered by the source until each node's route
//!   changes (a few milliseconds: the registry's notice), with what it held at the switch.
//! - **Verified after:** both snapshots are compared whole while the tenant serves again; a
//!   difference is an error in the log and `verified: false` in the report, and the old copy is
//!   kept (the next start clears it).
//! - **Afterwards** the source's copy is deleted (a dedicated database dropped, or the shared
//!   database's rows of the tenant), after a grace period for other nodes to hear of the switch.
//!
//! A move that stops before the switch leaves the source as it was; what it copied is cleared by
//! the next move, or by a purge. One stopped after the switch leaves the old copy, unreachable,
//! for the same to clear.

mod copier;

use crate::error::pg_error;
use crate::store::{begin, commit, PgStore};
use crate::PgDatabase;
use copier::{Copier, Moved, MOVED, TENANT_COPY};
use futures_util::future::try_join_all;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_core::ids::TenantId;
use tenantry_core::model::Placement;
use tenantry_core::store::{MoveProgress, MoveReport, TenantScope};
use tenantry_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

/// The sequences a tenant's rows take numbers from, and where its rows hold them: the target's
/// must be past the tenant's, or its next rows would collide with the copied ones.
const SEQUENCES: &[(&str, &[(&str, &str)])] = &[
    ("file_bodies", &[("file_chunks", "body_id"), ("files", "body_id"), ("import_files", "body_id")]),
    ("webhook_deliveries", &[("webhook_outbox", "id"), ("webhook_attempts", "delivery_id")]),
    ("webhook_attempts_n_seq", &[("webhook_attempts", "n")]),
];

/// Rounds before the whole comparison at most (it comes sooner after a short round), and rounds in
/// all before the fence at most; a round that finds fewer changes than this, or takes no longer
/// than that, is short (the fenced round will be about as long as the last one before it, having
/// as much to catch up on).
const MAX_ROUNDS: u32 = 8;
const MAX_CATCH_UP_ROUNDS: u32 = 6;
const SMALL_ROUND: u64 = 40;
const SHORT_ROUND: Duration = Duration::from_millis(50);
/// How long the old copy stays after the switch, for other nodes' routes to change.
const GRACE: Duration = Duration::from_secs(2);

/// The non-key columns of each moved table, read from the catalogue.
async fn non_key_columns(
    client: &tokio_postgres::Client,
    tables: &[&'static Moved],
) -> Result<HashMap<&'static str, Vec<String>>> {
    let mut out = HashMap::new();
    for t in tables {
        let rows = client
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0
                   AND NOT attisdropped ORDER BY attnum",
                &[&t.table],
            )
            .await
            .map_err(pg_error)?;
        let key: Vec<&str> = std::iter::once(t.tenant_column).chain(t.key.iter().copied()).collect();
        let columns: Vec<String> =
            rows.iter().map(|r| r.get::<_, String>(0)).filter(|c| !key.contains(&c.as_str())).collect();
        out.insert(t.table, columns);
    }
    Ok(out)
}

/// Deletes the tenant's rows of the moved tables in `tx` (a copy left by a move that stopped, or
/// the old copy after the switch).
async fn delete_copy(tx: &Transaction<'_>, tenant: &TenantId, with_record: bool) -> Result<()> {
    for t in MOVED.iter().chain(with_record.then_some(&TENANT_COPY)) {
        tx.execute(&format!("DELETE FROM {} WHERE {} = $1", t.table, t.tenant_column), &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn move_between_places(
        &self,
        scope: &TenantScope,
        to: Placement,
        progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
    ) -> Result<MoveReport> {
        let tenant = scope.tenant_id();
        let started = Instant::now();
        let Some(guard) = self.places.placement_lock(tenant).await? else {
            return Err(Error::conflict(format!("tenant '{}' is being moved already", scope.slug())));
        };
        // Where the registry places it now (not this node's route, which may be behind another
        // node's move).
        let from = self.places.registered_placement(tenant).await?;
        if from == to {
            return Err(Error::conflict(format!("tenant '{}' is placed {} already", scope.slug(), to.as_str())));
        }
        let (source, target) = match to {
            Placement::Dedicated => {
                // A database left by an earlier move that stopped goes first.
                self.places.drop_database(tenant).await?;
                self.places.create(tenant).await?;
                (self.places.shared().clone(), self.places.open_unrouted(tenant).await?)
            }
            Placement::Shared => {
                // So do rows left in the shared database by one.
                self.delete_shared_copy(tenant).await?;
                (self.places.db_of(tenant).await?, self.places.shared().clone())
            }
        };
        let moved = self.copy_and_switch(scope, to, &source, &target, progress, started).await;
        if let Err(e) = &moved {
            // The registry decides whether the switch took place (a commit may fail after it
            // took effect): the target is cleared only if it did not, else it is the tenant's.
            match self.places.registered_placement(tenant).await {
                Ok(now) if now == from => {
                    tracing::warn!("moving {tenant} to {} failed, nothing was switched: {}", to.as_str(), e.message);
                    let cleared = match to {
                        Placement::Dedicated => {
                            target.close();
                            self.places.drop_database(tenant).await
                        }
                        Placement::Shared => self.delete_shared_copy(tenant).await,
                    };
                    if let Err(e) = cleared {
                        tracing::warn!("could not clear the copy of a move that failed: {}", e.message);
                    }
                }
                Ok(_) => {
                    tracing::error!(
                        "moving {tenant} to {} switched, then failed: {}; its old copy is cleared at the next start",
                        to.as_str(),
                        e.message
                    );
                    if to == Placement::Shared {
                        // Its usage row there must go, or writers routed there would land.
                        if let Err(e) = self.retire_source(&source, tenant).await {
                            tracing::error!("could not retire {tenant}'s old copy: {}", e.message);
                        }
                    }
                }
                Err(read) => tracing::error!(
                    "moving {tenant} to {} failed ({}), and where it is could not be read ({}): left as it is",
                    to.as_str(),
                    e.message,
                    read.message
                ),
            }
        }
        let report = moved?;
        if !report.verified {
            // Left for whoever looks into it; the next start clears it.
            return Ok(report);
        }
        // The old copy, once other nodes have heard of the switch.
        tokio::time::sleep(GRACE).await;
        drop(source);
        match from {
            Placement::Dedicated => self.places.drop_database(tenant).await?,
            Placement::Shared => self.delete_shared_copy(tenant).await?,
        }
        drop(guard);
        Ok(report)
    }

    /// Deletes the tenant's usage row, outbox and imports in `source` (its old place), in a
    /// transaction of their own: what the switch's fence does when its commit failed after the
    /// registry's.
    async fn retire_source(&self, source: &PgDatabase, tenant: &TenantId) -> Result<()> {
        let mut conn = source.client().await?;
        let tx = begin(&mut conn, tenant).await?;
        retire_tx(&tx, tenant).await?;
        commit(tx).await
    }

    /// Moves the target's sequences past every number the tenant's copied rows hold and past
    /// the source's own (ids of rows since deleted must not be given again: webhook receivers
    /// tell deliveries apart by id), as the owner (the server's role may not set a sequence),
    /// only ever forward. Every read in one round trip on each side.
    async fn continue_numbering(
        &self,
        owner: &tokio_postgres::Client,
        source_owner: &tokio_postgres::Client,
        tenant: &TenantId,
        target: &Transaction<'_>,
    ) -> Result<()> {
        let id = tenant.as_str();
        let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
        let highest: Vec<(&str, String)> = SEQUENCES
            .iter()
            .flat_map(|(seq, held)| {
                held.iter().map(move |(table, column)| {
                    (*seq, format!("SELECT COALESCE(max({column}), 0)::bigint FROM {table} WHERE tenant_id = $1"))
                })
            })
            .collect();
        let at: Vec<String> = SEQUENCES
            .iter()
            .map(|(seq, _)| format!("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {seq}"))
            .collect();
        let (highest_rows, source_at) = tokio::try_join!(
            try_join_all(highest.iter().map(|(_, sql)| target.query_one(sql.as_str(), &by_tenant))),
            try_join_all(at.iter().map(|sql| source_owner.query_one(sql.as_str(), &[])))
        )
        .map_err(pg_error)?;
        for ((sequence, _), source_at) in SEQUENCES.iter().zip(source_at) {
            let needed: i64 = highest
                .iter()
                .zip(&highest_rows)
                .filter(|((seq, _), _)| seq == sequence)
                .map(|(_, row)| row.get::<_, i64>(0))
                .chain([source_at.get::<_, i64>(0)])
                .max()
                .unwrap_or(0);
            if needed > 0 {
                // Forward only, even with other tenants taking numbers meanwhile: a number taken
                // first, and the sequence set only if that one is below.
                owner
                    .execute(
                        "SELECT CASE WHEN nextval($1::text::regclass) < $2 THEN setval($1::text::regclass, $2) END",
                        &[sequence, &needed],
                    )
                    .await
                    .map_err(pg_error)?;
            }
        }
        Ok(())
    }

    /// Clears what moves that stopped midway left behind (run at open, with the owner's URL): a
    /// database named for a tenant the registry places shared (or does not know), and a
    /// dedicated tenant's rows in the shared database. Each tenant under its placement lock, so
    /// a move or creation under way on another node is left alone.
    pub(crate) async fn settle_moves(&self) -> Result<()> {
        if !self.places.may_create() {
            return Ok(());
        }
        let registry = self.places.owner_client(None).await?;
        let rows =
            registry.query("SELECT id, placement FROM tenantry_directory_tenants()", &[]).await.map_err(pg_error)?;
        let mut candidates: Vec<TenantId> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(1) == "dedicated")
            .filter_map(|r| TenantId::parse(r.get::<_, &str>(0)))
            .collect();
        for name in self.places.dedicated_database_names(&registry).await? {
            candidates.extend(self.places.tenant_of_database(&name));
        }
        candidates.sort();
        candidates.dedup();
        let mut settled = 0;
        for tenant in candidates {
            match self.settle(&tenant).await {
                Ok(true) => settled += 1,
                Ok(false) => {}
                // One tenant that cannot be settled now does not keep the node from starting.
                Err(e) => tracing::warn!("could not clear what a move of {tenant} left behind: {}", e.message),
            }
        }
        if settled > 0 {
            tracing::warn!(settled, "cleared what moves cut short had left behind");
        }
        Ok(())
    }

    /// Clears `tenant`'s copy in the place the registry, read under its placement lock, does not
    /// put it (`false`: a move or creation of it is under way elsewhere, or nothing to clear).
    async fn settle(&self, tenant: &TenantId) -> Result<bool> {
        let Some(lock) = self.places.placement_lock(tenant).await? else { return Ok(false) };
        let placed = match self.places.registered_placement(tenant).await {
            Ok(placed) => Some(placed),
            Err(e) if e.code == tenantry_core::ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        match placed {
            Some(Placement::Dedicated) => self.delete_shared_copy(tenant).await?,
            _ => self.places.drop_database(tenant).await?,
        }
        drop(lock);
        Ok(placed != Some(Placement::Dedicated))
    }

    /// Deletes the rows of a tenant placed elsewhere from the shared database (the moved tables;
    /// the registry's rows stay).
    pub(crate) async fn delete_shared_copy(&self, tenant: &TenantId) -> Result<()> {
        let mut conn = self.shared_conn().await?;
        let tx = begin(&mut conn, tenant).await?;
        delete_copy(&tx, tenant, false).await?;
        commit(tx).await
    }

    async fn copy_and_switch(
        &self,
        scope: &TenantScope,
        to: Placement,
        source: &PgDatabase,
        target: &PgDatabase,
        progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
        started: Instant,
    ) -> Result<MoveReport> {
        let tenant = scope.tenant_id();
        let mut tables: Vec<&'static Moved> = MOVED.iter().collect();
        if to == Placement::Dedicated {
            tables.push(&TENANT_COPY);
        }
        let mut source_conn = source.client().await?;
        let mut target_conn = target.client().await?;
        let columns = non_key_columns(&source_conn, &tables).await?;
        let (files, file_bytes): (i64, i64) = {
            let tx = begin(&mut source_conn, tenant).await?;
            let row = tx
                .query_one(
                    "SELECT count(*), COALESCE(sum(size), 0)::bigint FROM files WHERE tenant_id = $1",
                    &[&tenant.as_str()],
                )
                .await
                .map_err(pg_error)?;
            commit(tx).await?;
            (row.get(0), row.get(1))
        };
        let mut copier = Copier::new(tenant, tables, columns, file_bytes.max(0) as u64, progress);
        // Connections as the owner on both sides, for the fence (to number past the copied rows
        // and the source's sequences): made now, since writes would pile up for the fenced round
        // while they are made between the last round and the fence.
        let owner = self.places.owner_client((to == Placement::Dedicated).then_some(tenant)).await?;
        let source_owner = self.places.owner_client((to == Placement::Shared).then_some(tenant)).await?;
        // Rounds while the tenant serves, then a comparison of both sides, then rounds again
        // until one is short.
        let mut rounds = 0;
        for pass in 0..MAX_ROUNDS + MAX_CATCH_UP_ROUNDS {
            rounds += 1;
            let round = Instant::now();
            let s = crate::tenant_snapshot(&mut source_conn, tenant).await?;
            let t = begin(&mut target_conn, tenant).await?;
            let changes = copier.round(&s, &t, false).await?;
            let short = changes < SMALL_ROUND || round.elapsed() <= SHORT_ROUND;
            let compare = !copier.compared && (short || pass + 1 >= MAX_ROUNDS);
            if compare {
                // Compared whole before the fence: a wrong copy stops the move here, with
                // nothing switched.
                copier.compare(&s, &t, false).await?;
            }
            commit(t).await?;
            commit(s).await?;
            copier.report();
            if short && copier.compared && !compare {
                break;
            }
            copier.compared |= compare;
        }
        // From the pools: one for the source as at the switch, one for the registry's switch
        // when it is the target's (taken only now: the tenant's writes need the pools meanwhile).
        let mut source_view_conn = source.client().await?;
        let mut registry_conn = target.client().await?;
        // The fence: every writer of the tenant, on every node, waits for its usage row; so do
        // imports (staging takes its import's row) and deliveries (a claim updates its row).
        let fenced = Instant::now();
        let fence = begin(&mut source_conn, tenant).await?;
        let id = tenant.as_str();
        let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
        let locks = ["tenant_usage", "imports", "webhook_outbox"]
            .map(|table| format!("SELECT 1 FROM {table} WHERE tenant_id = $1 FOR UPDATE"));
        try_join_all(locks.iter().map(|sql| fence.execute(sql.as_str(), &by_tenant))).await.map_err(pg_error)?;
        rounds += 1;
        let locked_ms = fenced.elapsed().as_millis();
        // The last round reads the source as the fence holds it, in a snapshot exported from
        // the fence: what is copied is what the comparison after the switch compares, whatever
        // writes outside the tenant's lock (pruning old events) do meanwhile.
        let source_view = async {
            let snapshot: String = fence.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(pg_error)?.get(0);
            crate::tenant_snapshot_as_of(&mut source_view_conn, tenant, &snapshot).await
        };
        let (t, source_view) = tokio::try_join!(begin(&mut target_conn, tenant), source_view)?;
        // The target's sequences meanwhile: a number the round copies was taken from the source's
        // sequence, which is read under the fence, so the round need not be done first.
        tokio::try_join!(
            copier.round(&source_view, &t, true),
            self.continue_numbering(&owner, &source_owner, tenant, &t)
        )?;
        let copied_ms = fenced.elapsed().as_millis();
        // The switch, with the source's usage row, outbox and imports gone (the module's doc);
        // the target as at the switch is read before anything else can write there.
        let target_view = match to {
            Placement::Dedicated => {
                // Its own copy of the record says where it now is, as the registry's will.
                switch_tx(&t, tenant, to).await?;
                commit(t).await?;
                // Nothing reaches the new database before the registry's switch below.
                let view = crate::tenant_snapshot(&mut target_conn, tenant).await?;
                switch_tx(&fence, tenant, to).await?;
                retire_tx(&fence, tenant).await?;
                commit(fence).await?;
                view
            }
            Placement::Shared => {
                // The copy first, while the registry still sends every write to the source's
                // fence; then the registry's switch; then the fence is lifted.
                commit(t).await?;
                let view = crate::tenant_snapshot(&mut target_conn, tenant).await?;
                let registry = begin(&mut registry_conn, tenant).await?;
                switch_tx(&registry, tenant, to).await?;
                commit(registry).await?;
                retire_tx(&fence, tenant).await?;
                commit(fence).await?;
                view
            }
        };
        self.places.set_placement(tenant, Some(to == Placement::Dedicated));
        let fence_ms = fenced.elapsed().as_millis() as u64;
        tracing::info!(
            "move switched {tenant} to {}: fence {fence_ms} ms (locked at {locked_ms}, last round copied at {copied_ms})",
            to.as_str()
        );
        // Both sides as at the switch, compared whole while the tenant serves again.
        let verified = match copier.compare(&source_view, &target_view, true).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    "moved {tenant} to {}, but the copy could not be shown to match the source as at the switch \
                     ({}): its old copy is kept until the next start",
                    to.as_str(),
                    e.message
                );
                false
            }
        };
        let _ = source_view.rollback().await;
        let _ = target_view.rollback().await;
        Ok(MoveReport {
            tenant: scope.slug().to_string(),
            from: match to {
                Placement::Dedicated => Placement::Shared,
                Placement::Shared => Placement::Dedicated,
            },
            to,
            files: files.max(0) as u64,
            file_bytes: file_bytes.max(0) as u64,
            rows: copier.rows,
            rounds,
            copy_ms: started.elapsed().as_millis() as u64,
            fence_ms,
            verified,
        })
    }
}

/// Records the tenant's new placement in `tx`'s database (the registry, or a dedicated
/// database's copy of the record); a tenant purged while it moved is a conflict.
async fn switch_tx(tx: &Transaction<'_>, tenant: &TenantId, to: Placement) -> Result<()> {
    let n = tx
        .execute("UPDATE tenants SET placement = $2 WHERE id = $1", &[&tenant.as_str(), &to.as_str()])
        .await
        .map_err(pg_error)?;
    match n {
        1 => Ok(()),
        _ => Err(Error::conflict(format!("tenant {tenant} was purged while it moved"))),
    }
}

/// The source's part of the switch: the usage row every write takes first (so none lands there
/// after), the outbox (so no delivery goes out from there) and the imports (so no staged batch
/// lands there).
async fn retire_tx(tx: &Transaction<'_>, tenant: &TenantId) -> Result<()> {
    for table in ["tenant_usage", "webhook_outbox", "imports", "import_files", "import_records"] {
        tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}
