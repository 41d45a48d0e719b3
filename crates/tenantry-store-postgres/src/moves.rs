//! Moving a tenant between the shared database and a database of its own (API.md §9) while it
//! keeps serving: copy rounds, a short write fence for the last one, the switch, then the old
//! copy deleted.
//!
//! - **Rounds.** Each round reads the key and the row version (`xmin`, which every insert and
//!   update renews) of each of the tenant's rows in the source, copies the rows that are new or
//!   changed since the last round to the target (as JSON: `to_jsonb` there,
//!   `jsonb_populate_recordset` here, so one statement serves every table), and deletes there
//!   the rows gone since. The first round copies everything; rounds repeat while they find much
//!   to copy.
//! - **The fence.** The source's `tenant_usage` row is locked `FOR UPDATE`: every write of the
//!   tenant, on every node, takes that row first, so none is half way and none starts. The last
//!   round runs under it, then every table is compared on both sides (row count and a hash of
//!   every row in key order; file chunks, which never change once written, by key and length,
//!   their bytes having been compared by hash in the round before the fence).
//! - **The switch.** The registry's placement changes, and the source's `tenant_usage` row and
//!   webhook outbox are deleted, in the shared database's transaction: moving out of it, the
//!   fence's own; moving back into it, the target's, after which the source's fence commits.
//!   Writers that waited on the fence, or that reach the source later through a route not yet
//!   updated, find no usage row: a file or memory write reads the registry and goes again to
//!   the new place (`PgStore::rerouted`); other writes are answered `storage_unavailable`
//!   (nothing of them was written; retried, they land) and the route is re-read
//!   (`Places::mark_stale`). Reads keep being answered by the source until each node's route
//!   changes (a few milliseconds: the registry's notice), with what it held at the switch.
//! - **Afterwards** the source's copy is deleted (a dedicated database dropped, or the shared
//!   database's rows of the tenant), after a grace period for other nodes to hear of the switch.
//!
//! A move that stops before the switch leaves the source as it was; what it copied is cleared by
//! the next move, or by a purge. One stopped after the switch leaves the old copy, unreachable,
//! for the same to clear.

use crate::error::pg_error;
use crate::store::{begin, commit, PgStore};
use crate::PgDatabase;
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

/// A table moved with its tenant: its name, the column naming the tenant, and its key columns
/// after that one.
struct Moved {
    table: &'static str,
    tenant_column: &'static str,
    key: &'static [&'static str],
    /// Copied only under the fence: the usage row (the target's upkeep would take the tenant
    /// for one of its own there) and the webhook outbox (its deliveries would go out from both).
    fenced_only: bool,
}

const fn moved(table: &'static str, key: &'static [&'static str], fenced_only: bool) -> Moved {
    Moved { table, tenant_column: "tenant_id", key, fenced_only }
}

/// Every table of a tenant's own (not the registry's `tenant_domains`, nor `usage_daily`, which
/// stay in the shared database; the `tenants` row is [`TENANT_COPY`]).
const MOVED: &[Moved] = &[
    moved("tenant_usage", &[], true),
    moved("keys", &["id"], false),
    moved("audit_anchor", &[], false),
    moved("audit", &["seq"], false),
    moved("events", &["seq"], false),
    moved("files", &["path"], false),
    moved("file_chunks", &["body_id", "n"], false),
    moved("memory", &["namespace", "key"], false),
    moved("search_docs", &["kind", "doc"], false),
    moved("search_postings", &["term", "kind", "doc"], false),
    moved("webhooks", &["id"], false),
    moved("webhook_outbox", &["id"], true),
    moved("webhook_attempts", &["webhook_id", "n"], false),
    moved("imports", &["id"], false),
    moved("import_files", &["import_id", "n"], false),
    moved("import_records", &["import_id", "n"], false),
];

/// A dedicated database's copy of the tenant's record (the registry's row stays where it is).
const TENANT_COPY: Moved = Moved { table: "tenants", tenant_column: "id", key: &[], fenced_only: false };

/// The sequences a tenant's rows take numbers from, and where its rows hold them: the target's
/// must be past the tenant's, or its next rows would collide with the copied ones.
const SEQUENCES: &[(&str, &[(&str, &str)])] = &[
    ("file_bodies", &[("file_chunks", "body_id"), ("files", "body_id"), ("import_files", "body_id")]),
    ("webhook_deliveries", &[("webhook_outbox", "id"), ("webhook_attempts", "delivery_id")]),
    ("webhook_attempts_n_seq", &[("webhook_attempts", "n")]),
];

/// Rows fetched per statement, and the JSON bytes one insert carries at most.
const FETCH_KEYS: usize = 1000;
const INSERT_BYTES: usize = 4 << 20;
/// Rounds before the fence at most; a round that copies fewer rows than this is the last.
const MAX_ROUNDS: u32 = 8;
const SMALL_ROUND: u64 = 200;
/// How long the old copy stays after the switch, for other nodes' routes to change.
const GRACE: Duration = Duration::from_secs(2);

impl Moved {
    /// The row's key as canonical JSON text (jsonb sorts its keys), the tenant column included.
    fn key_json(&self) -> String {
        let mut parts = vec![format!("'{0}', x.{0}", self.tenant_column)];
        parts.extend(self.key.iter().map(|k| format!("'{k}', x.{k}")));
        format!("jsonb_build_object({})::text", parts.join(", "))
    }

    fn key_columns(&self) -> String {
        std::iter::once(self.tenant_column).chain(self.key.iter().copied()).collect::<Vec<_>>().join(", ")
    }

    /// What the comparison under the fence hashes of a row.
    fn verified(&self) -> String {
        match self.table {
            "file_chunks" => "md5(ROW(x.body_id, x.n, length(x.bytes))::text)".to_owned(),
            _ => "md5(x::text)".to_owned(),
        }
    }
}

/// The rows of one table copied so far: key → the source's row version then.
type Versions = HashMap<String, String>;

/// One move's copying state.
struct Copier<'a> {
    tenant: &'a TenantId,
    tables: Vec<&'static Moved>,
    seen: HashMap<&'static str, Versions>,
    /// The tables the latest round changed something in.
    changed_tables: Vec<&'static str>,
    /// Non-key columns of each table, for the upsert.
    columns: HashMap<&'static str, Vec<String>>,
    rows: u64,
    copied_bytes: u64,
    total_bytes: u64,
    progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
}

impl<'a> Copier<'a> {
    /// One round: copies what changed in the source since the last round; returns the rows it
    /// copied or deleted.
    async fn round(&mut self, source: &Transaction<'_>, target: &Transaction<'_>, fenced: bool) -> Result<u64> {
        let tables: Vec<&'static Moved> = self.tables.iter().copied().filter(|t| fenced || !t.fenced_only).collect();
        // Every table's keys and row versions, in one round trip.
        let id = self.tenant.as_str();
        let scans: Vec<String> = tables
            .iter()
            .map(|t| {
                format!("SELECT {}, x.xmin::text FROM {} x WHERE x.{} = $1", t.key_json(), t.table, t.tenant_column)
            })
            .collect();
        let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
        let scanned =
            try_join_all(scans.iter().map(|sql| source.query(sql.as_str(), &by_tenant))).await.map_err(pg_error)?;
        let mut changed = 0;
        self.changed_tables.clear();
        for (t, rows) in tables.into_iter().zip(scanned) {
            let now: Versions = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let in_table = self.sync_table(t, now, source, target).await?;
            if in_table > 0 {
                self.changed_tables.push(t.table);
            }
            changed += in_table;
        }
        self.rows += changed;
        Ok(changed)
    }

    /// Brings the target's rows of `t` to `now` (the source's keys and row versions).
    async fn sync_table(
        &mut self,
        t: &'static Moved,
        now: Versions,
        source: &Transaction<'_>,
        target: &Transaction<'_>,
    ) -> Result<u64> {
        let seen = self.seen.entry(t.table).or_default();
        let gone: Vec<&String> = seen.keys().filter(|k| !now.contains_key(*k)).collect();
        let fresh: Vec<&String> = now.iter().filter(|(k, v)| seen.get(*k) != Some(v)).map(|(k, _)| k).collect();
        let changed = (gone.len() + fresh.len()) as u64;
        let within = |keys: &[&String]| format!("[{}]", keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","));
        for batch in gone.chunks(FETCH_KEYS) {
            let sql = format!(
                "DELETE FROM {0} WHERE ({1}) IN (SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, $1::text::jsonb))",
                t.table,
                t.key_columns()
            );
            target.execute(&sql, &[&within(batch)]).await.map_err(pg_error)?;
        }
        let columns = self.columns.get(t.table).cloned().unwrap_or_default();
        let upsert = match columns.is_empty() {
            true => "DO NOTHING".to_owned(),
            false => format!(
                "DO UPDATE SET {}",
                columns.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ")
            ),
        };
        let insert = format!(
            "INSERT INTO {0} SELECT * FROM jsonb_populate_recordset(NULL::{0}, $1::text::jsonb) ON CONFLICT ({1}) {upsert}",
            t.table,
            t.key_columns()
        );
        let fetch = format!(
            "SELECT to_jsonb(x)::text FROM {0} x WHERE ({1}) IN
               (SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, $1::text::jsonb))",
            t.table,
            t.key_columns()
        );
        for batch in fresh.chunks(FETCH_KEYS) {
            let rows = source.query(&fetch, &[&within(batch)]).await.map_err(pg_error)?;
            let mut json = String::from("[");
            for r in &rows {
                let row: &str = r.get(0);
                if json.len() > 1 {
                    json.push(',');
                }
                json.push_str(row);
                if t.table == "file_chunks" {
                    self.copied_bytes += row.len() as u64 / 2;
                }
                if json.len() >= INSERT_BYTES {
                    json.push(']');
                    target.execute(&insert, &[&json]).await.map_err(pg_error)?;
                    json = String::from("[");
                    (self.progress)(MoveProgress {
                        copied_bytes: self.copied_bytes.min(self.total_bytes),
                        total_bytes: self.total_bytes,
                    });
                }
            }
            if json.len() > 1 {
                json.push(']');
                target.execute(&insert, &[&json]).await.map_err(pg_error)?;
            }
        }
        let seen = self.seen.entry(t.table).or_default();
        *seen = now;
        Ok(changed)
    }

    /// Compares the tables on both sides: the row count and a hash of every row in key order.
    /// Before the fence every table (file chunks by their bytes too); under it, the tables its
    /// round changed (`fenced_only` ones too): the others hold the very row versions compared
    /// before (a row's `xmin` names its version). The first difference is an error.
    async fn compare(&self, source: &Transaction<'_>, target: &Transaction<'_>, fenced: bool) -> Result<()> {
        let full_chunks = !fenced;
        let mut sqls: Vec<(&str, String)> = Vec::new();
        let compared = |t: &&&Moved| match fenced {
            true => t.fenced_only || self.changed_tables.contains(&t.table),
            false => !t.fenced_only,
        };
        for t in self.tables.iter().filter(compared) {
            let hashed = match (t.table, full_chunks) {
                ("file_chunks", true) => "md5(x::text)".to_owned(),
                _ => t.verified(),
            };
            sqls.push((
                t.table,
                format!(
                    "SELECT count(*), md5(string_agg({hashed}, ',' ORDER BY {})) FROM {} x WHERE x.{} = $1",
                    t.key_columns(),
                    t.table,
                    t.tenant_column
                ),
            ));
        }
        // Both sides at once, every table in one round trip each.
        let id = self.tenant.as_str();
        let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
        let (here, there) = tokio::try_join!(
            try_join_all(sqls.iter().map(|(_, sql)| source.query_one(sql.as_str(), &by_tenant))),
            try_join_all(sqls.iter().map(|(_, sql)| target.query_one(sql.as_str(), &by_tenant)))
        )
        .map_err(pg_error)?;
        for (((table, _), here), there) in sqls.iter().zip(here).zip(there) {
            let (a, b): ((i64, Option<String>), (i64, Option<String>)) =
                ((here.get(0), here.get(1)), (there.get(0), there.get(1)));
            if a != b {
                return Err(Error::internal(format!(
                    "moving {}: {table} differs after copying ({} rows here, {} there): nothing was switched",
                    self.tenant, a.0, b.0
                )));
            }
        }
        Ok(())
    }
}

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
        let report = moved?;
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

    /// Moves the target's sequences past every number the tenant's copied rows hold (as the
    /// owner, `owner`: the server's role may not set a sequence), so its next rows there collide
    /// with none. Every read in one round trip on each side.
    async fn continue_numbering(
        &self,
        owner: &tokio_postgres::Client,
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
        let (highest_rows, at_rows) = tokio::try_join!(
            try_join_all(highest.iter().map(|(_, sql)| target.query_one(sql.as_str(), &by_tenant))),
            try_join_all(at.iter().map(|sql| owner.query_one(sql.as_str(), &[])))
        )
        .map_err(pg_error)?;
        for ((sequence, _), at) in SEQUENCES.iter().zip(at_rows) {
            let at: i64 = at.get(0);
            let needed: i64 = highest
                .iter()
                .zip(&highest_rows)
                .filter(|((seq, _), _)| seq == sequence)
                .map(|(_, row)| row.get::<_, i64>(0))
                .max()
                .unwrap_or(0);
            if needed > at {
                owner.execute("SELECT setval($1::text::regclass, $2)", &[sequence, &needed]).await.map_err(pg_error)?;
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
        let placed: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut settled = 0;
        for name in self.places.dedicated_database_names(&registry).await? {
            let Some(tenant) = self.places.tenant_of_database(&name) else { continue };
            if placed.get(tenant.as_str()).map(String::as_str) == Some("dedicated") {
                continue;
            }
            let Some(lock) = self.places.placement_lock(&tenant).await? else { continue };
            self.places.drop_database(&tenant).await?;
            drop(lock);
            settled += 1;
        }
        for (id, placement) in &placed {
            let Some(tenant) = TenantId::parse(id) else { continue };
            if placement != "dedicated" {
                continue;
            }
            let Some(lock) = self.places.placement_lock(&tenant).await? else { continue };
            self.delete_shared_copy(&tenant).await?;
            drop(lock);
        }
        if settled > 0 {
            tracing::warn!(settled, "dropped databases that moves cut short had left behind");
        }
        Ok(())
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
        let mut copier = Copier {
            tenant,
            tables,
            seen: HashMap::new(),
            changed_tables: Vec::new(),
            columns,
            rows: 0,
            copied_bytes: 0,
            total_bytes: file_bytes.max(0) as u64,
            progress,
        };
        // Rounds while the tenant serves.
        let mut rounds = 0;
        loop {
            rounds += 1;
            let s = crate::tenant_snapshot(&mut source_conn, tenant).await?;
            let t = begin(&mut target_conn, tenant).await?;
            let changed = copier.round(&s, &t, false).await?;
            let last = changed < SMALL_ROUND || rounds >= MAX_ROUNDS;
            if last {
                // The target now holds what this round's snapshot does: compared whole, file
                // chunks by their bytes too (they never change, so the fence's comparison takes
                // their keys and lengths only).
                copier.compare(&s, &t, false).await?;
            }
            commit(t).await?;
            commit(s).await?;
            (copier.progress)(MoveProgress {
                copied_bytes: copier.copied_bytes.min(copier.total_bytes),
                total_bytes: copier.total_bytes,
            });
            if last {
                break;
            }
        }
        // As the owner, on the target: to number past the copied rows under the fence.
        let owner = self.places.owner_client((to == Placement::Dedicated).then_some(tenant)).await?;
        // The fence: every writer of the tenant, on every node, waits for this row.
        let fenced = Instant::now();
        let fence = begin(&mut source_conn, tenant).await?;
        fence
            .execute("SELECT 1 FROM tenant_usage WHERE tenant_id = $1 FOR UPDATE", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
        fence
            .execute("SELECT 1 FROM imports WHERE tenant_id = $1 FOR UPDATE", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
        rounds += 1;
        let t = begin(&mut target_conn, tenant).await?;
        copier.round(&fence, &t, true).await?;
        copier.compare(&fence, &t, true).await?;
        self.continue_numbering(&owner, tenant, &t).await?;
        // The switch, with the source's usage row and outbox gone (see the module's doc).
        let switch = "UPDATE tenants SET placement = $2 WHERE id = $1";
        let placement = to.as_str();
        match to {
            Placement::Dedicated => {
                // Its own copy of the record says where it now is, as the registry's will.
                t.execute(switch, &[&tenant.as_str(), &placement]).await.map_err(pg_error)?;
                commit(t).await?;
                fence.execute(switch, &[&tenant.as_str(), &placement]).await.map_err(pg_error)?;
                delete_usage_and_outbox(&fence, tenant).await?;
                commit(fence).await?;
            }
            Placement::Shared => {
                t.execute(switch, &[&tenant.as_str(), &placement]).await.map_err(pg_error)?;
                commit(t).await?;
                delete_usage_and_outbox(&fence, tenant).await?;
                commit(fence).await?;
            }
        }
        self.places.set_placement(tenant, Some(to == Placement::Dedicated));
        let fence_ms = fenced.elapsed().as_millis() as u64;
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
            verified: true,
        })
    }
}

async fn delete_usage_and_outbox(tx: &Transaction<'_>, tenant: &TenantId) -> Result<()> {
    for table in ["tenant_usage", "webhook_outbox"] {
        tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}
