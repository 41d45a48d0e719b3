//! Moving a tenant between the shared database and a database of its own (API.md §9) while it
//! keeps serving: copy rounds, a short write fence for the last one, the switch, then the old
//! copy deleted.
//!
//! - **Rounds.** Each round reads the key and the row version (`xmin`, which every insert and
//!   update renews) of each of the tenant's rows in the source, copies the rows that are new or
//!   changed since the last round to the target (as JSON: `to_jsonb` there,
//!   `jsonb_populate_recordset` here, so one statement serves every table), and deletes there
//!   the rows gone since. The first round copies everything; rounds repeat while they find much
//!   to copy; the last of them compares every table whole on both sides (row count and a hash of
//!   every row in key order, file chunks by their bytes), and one more round catches up with
//!   what changed meanwhile, compared by the rows it copied. A small round reads and writes
//!   every table's changes in two round trips.
//! - **The fence.** The source's `tenant_usage` row is locked `FOR UPDATE`: every write of the
//!   tenant, on every node, takes that row first, so none is half way and none starts. The last
//!   round runs under it, then the row count of every table and the rows it copied are compared
//!   on both sides (any other row is the very version compared before: `xmin` names it).
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
/// A round of at most this many new or changed rows is read and written in two round trips.
const PIPELINED_ROWS: usize = 2000;
const INSERT_BYTES: usize = 4 << 20;
/// Rounds before the fence at most; a round that copies fewer rows than this is the last.
const MAX_ROUNDS: u32 = 8;
const SMALL_ROUND: u64 = 200;
/// How long the old copy stays after the switch, for other nodes' routes to change.
const GRACE: Duration = Duration::from_secs(2);

impl Moved {
    /// The scan of a round: each row's key columns as text, then its version (`xmin`). Plain
    /// columns: building the key's JSON here, not in the server, halves the scan.
    fn scan(&self) -> String {
        let keys: Vec<String> = self.key.iter().map(|k| format!("x.{k}::text")).collect();
        let mut columns = keys.join(", ");
        if !columns.is_empty() {
            columns.push_str(", ");
        }
        format!("SELECT {columns}x.xmin::text FROM {} x WHERE x.{} = $1", self.table, self.tenant_column)
    }

    /// A scanned row's key as a JSON object (values as text, which `jsonb_populate_recordset`
    /// reads into each column's type), the tenant column included, always in the same order.
    fn key_of(&self, tenant: &str, row: &tokio_postgres::Row) -> String {
        let mut key = serde_json::Map::new();
        key.insert(self.tenant_column.to_owned(), serde_json::Value::from(tenant));
        for (i, k) in self.key.iter().enumerate() {
            key.insert((*k).to_owned(), serde_json::Value::from(row.get::<_, String>(i)));
        }
        serde_json::Value::Object(key).to_string()
    }

    fn key_columns(&self) -> String {
        std::iter::once(self.tenant_column).chain(self.key.iter().copied()).collect::<Vec<_>>().join(", ")
    }

    /// The rows of `t` whose keys are given as a JSON array, each as its JSON.
    fn fetch(&self) -> String {
        format!(
            "SELECT to_jsonb(x)::text FROM {0} x WHERE ({1}) IN
               (SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, $1::text::jsonb))",
            self.table,
            self.key_columns()
        )
    }

    /// Deletes the rows of `t` whose keys are given as a JSON array.
    fn delete(&self) -> String {
        format!(
            "DELETE FROM {0} WHERE ({1}) IN (SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, $1::text::jsonb))",
            self.table,
            self.key_columns()
        )
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

/// What a round changes in one table: the keys of the rows gone from the source since the last
/// round, and of those new or changed.
struct Plan {
    table: &'static Moved,
    gone: Vec<String>,
    fresh: Vec<String>,
}

/// Keys (JSON objects) as one JSON array.
fn within(keys: &[String]) -> String {
    format!("[{}]", keys.join(","))
}

/// One move's copying state.
struct Copier<'a> {
    tenant: &'a TenantId,
    tables: Vec<&'static Moved>,
    seen: HashMap<&'static str, Versions>,
    /// Per table, the keys of the rows copied since every table was last compared whole.
    since_compared: HashMap<&'static str, std::collections::HashSet<String>>,
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
        let scans: Vec<String> = tables.iter().map(|t| t.scan()).collect();
        let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
        let began = Instant::now();
        let scanned =
            try_join_all(scans.iter().map(|sql| source.query(sql.as_str(), &by_tenant))).await.map_err(pg_error)?;
        let scan_ms = began.elapsed().as_millis();
        // What changed in each table since the last round.
        let mut plans: Vec<Plan> = Vec::new();
        for (t, rows) in tables.into_iter().zip(scanned) {
            let now: Versions = rows.iter().map(|r| (t.key_of(id, r), r.get(t.key.len()))).collect();
            let seen = self.seen.entry(t.table).or_default();
            let gone: Vec<String> = seen.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
            let fresh: Vec<String> =
                now.iter().filter(|(k, v)| seen.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
            *seen = now;
            self.since_compared.entry(t.table).or_default().extend(fresh.iter().cloned());
            if !gone.is_empty() || !fresh.is_empty() {
                plans.push(Plan { table: t, gone, fresh });
            }
        }
        let changed: u64 = plans.iter().map(|p| (p.gone.len() + p.fresh.len()) as u64).sum();
        if plans.iter().map(|p| p.fresh.len()).sum::<usize>() <= PIPELINED_ROWS {
            self.apply_pipelined(&plans, source, target).await?;
        } else {
            for plan in &plans {
                self.apply(plan, source, target).await?;
            }
        }
        self.rows += changed;
        tracing::info!(
            "move round of {}: {changed} rows copied or deleted in {} ms (the scan of every row's version {scan_ms} ms)",
            self.tenant,
            began.elapsed().as_millis()
        );
        Ok(changed)
    }

    /// A small round's changes in two round trips: every table's new and changed rows read in
    /// one, then every delete and insert sent in the other (the last round, under the fence, is
    /// small, and its round trips are the tenant's writes' wait).
    async fn apply_pipelined(
        &mut self,
        plans: &[Plan],
        source: &Transaction<'_>,
        target: &Transaction<'_>,
    ) -> Result<()> {
        let fetches: Vec<(String, String)> =
            plans.iter().filter(|p| !p.fresh.is_empty()).map(|p| (p.table.fetch(), within(&p.fresh))).collect();
        let params: Vec<[&(dyn ToSql + Sync); 1]> = fetches.iter().map(|(_, keys)| [keys as _]).collect();
        let fetched = try_join_all(fetches.iter().zip(&params).map(|((sql, _), p)| source.query(sql.as_str(), p)))
            .await
            .map_err(pg_error)?;
        let mut fetched = fetched.into_iter();
        let mut writes: Vec<(String, String)> = Vec::new();
        for plan in plans {
            if !plan.gone.is_empty() {
                writes.push((plan.table.delete(), within(&plan.gone)));
            }
            if !plan.fresh.is_empty() {
                let rows = fetched.next().unwrap_or_default();
                let json = format!("[{}]", rows.iter().map(|r| r.get::<_, &str>(0)).collect::<Vec<_>>().join(","));
                if plan.table.table == "file_chunks" {
                    self.copied_bytes += json.len() as u64 / 2;
                }
                writes.push((self.insert(plan.table), json));
            }
        }
        let params: Vec<[&(dyn ToSql + Sync); 1]> = writes.iter().map(|(_, json)| [json as _]).collect();
        try_join_all(writes.iter().zip(&params).map(|((sql, _), p)| target.execute(sql.as_str(), p)))
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// The upsert of `t`'s rows given as a JSON array.
    fn insert(&self, t: &Moved) -> String {
        let columns = self.columns.get(t.table).cloned().unwrap_or_default();
        let upsert = match columns.is_empty() {
            true => "DO NOTHING".to_owned(),
            false => format!(
                "DO UPDATE SET {}",
                columns.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ")
            ),
        };
        format!(
            "INSERT INTO {0} SELECT * FROM jsonb_populate_recordset(NULL::{0}, $1::text::jsonb) ON CONFLICT ({1}) {upsert}",
            t.table,
            t.key_columns()
        )
    }

    /// A round's changes to one table, in batches (a large round: the first copies everything).
    async fn apply(&mut self, plan: &Plan, source: &Transaction<'_>, target: &Transaction<'_>) -> Result<()> {
        let t = plan.table;
        for batch in plan.gone.chunks(FETCH_KEYS) {
            target.execute(&t.delete(), &[&within(batch)]).await.map_err(pg_error)?;
        }
        let insert = self.insert(t);
        for batch in plan.fresh.chunks(FETCH_KEYS) {
            let rows = source.query(&t.fetch(), &[&within(batch)]).await.map_err(pg_error)?;
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
        Ok(())
    }

    /// Compares the tables on both sides, the first difference an error. `whole`: every table
    /// but the fenced-only ones whole, its row count and a hash of every row in key order, file
    /// chunks by their bytes too. Else the row count of every table and the hash of the rows
    /// copied since the last comparison (the fenced-only tables whole): any other row holds the
    /// very version compared then (a row's `xmin` names its version), so this costs what changed,
    /// not what the tenant holds.
    /// `fenced`: under the fence, where the fenced-only tables are there to compare.
    async fn compare(
        &mut self,
        source: &Transaction<'_>,
        target: &Transaction<'_>,
        whole: bool,
        fenced: bool,
    ) -> Result<()> {
        let mut sqls: Vec<(&str, String, String)> = Vec::new();
        for t in self.tables.iter().filter(|t| fenced || !t.fenced_only) {
            let hashed = match (t.table, whole) {
                ("file_chunks", true) => "md5(x::text)".to_owned(),
                _ => t.verified(),
            };
            let whole_table = format!(
                "SELECT count(*), md5(string_agg({hashed}, ',' ORDER BY {})) FROM {} x WHERE x.{} = $1 AND $2::text IS NOT NULL",
                t.key_columns(),
                t.table,
                t.tenant_column
            );
            if whole || t.fenced_only {
                sqls.push((t.table, whole_table, String::new()));
                continue;
            }
            let keys: Vec<&str> =
                self.since_compared.get(t.table).map(|k| k.iter().map(String::as_str).collect()).unwrap_or_default();
            let rows = format!(
                "SELECT (SELECT count(*) FROM {0} x WHERE x.{1} = $1),
                        (SELECT md5(string_agg({hashed}, ',' ORDER BY {2})) FROM {0} x WHERE ({2}) IN
                           (SELECT {2} FROM jsonb_populate_recordset(NULL::{0}, $2::text::jsonb)))",
                t.table,
                t.tenant_column,
                t.key_columns()
            );
            sqls.push((t.table, rows, format!("[{}]", keys.join(","))));
        }
        // Both sides at once, every table in one round trip each.
        let id = self.tenant.as_str();
        let params: Vec<[&(dyn ToSql + Sync); 2]> = sqls.iter().map(|(_, _, keys)| [&id as _, keys as _]).collect();
        let (here, there) = tokio::try_join!(
            try_join_all(sqls.iter().zip(&params).map(|((_, sql, _), p)| source.query_one(sql.as_str(), p))),
            try_join_all(sqls.iter().zip(&params).map(|((_, sql, _), p)| target.query_one(sql.as_str(), p)))
        )
        .map_err(pg_error)?;
        for (((table, _, _), here), there) in sqls.iter().zip(here).zip(there) {
            let (a, b): ((i64, Option<String>), (i64, Option<String>)) =
                ((here.get(0), here.get(1)), (there.get(0), there.get(1)));
            if a != b {
                return Err(Error::internal(format!(
                    "moving {}: {table} differs after copying ({} rows here, {} there): nothing was switched",
                    self.tenant, a.0, b.0
                )));
            }
        }
        self.since_compared.clear();
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
        let mut copier = Copier {
            tenant,
            tables,
            seen: HashMap::new(),
            since_compared: HashMap::new(),
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
                // chunks by their bytes too (they never change, so the later comparisons take
                // their keys and lengths only).
                copier.compare(&s, &t, true, false).await?;
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
        // One more round for what changed while the comparison ran, so the fence's is small, and
        // what it copied compared.
        rounds += 1;
        let s = crate::tenant_snapshot(&mut source_conn, tenant).await?;
        let t = begin(&mut target_conn, tenant).await?;
        copier.round(&s, &t, false).await?;
        copier.compare(&s, &t, false, false).await?;
        commit(t).await?;
        commit(s).await?;
        // As the owner, on both sides: to number past the copied rows, and the source's
        // sequences, under the fence.
        let owner = self.places.owner_client((to == Placement::Dedicated).then_some(tenant)).await?;
        let source_owner = self.places.owner_client((to == Placement::Shared).then_some(tenant)).await?;
        // The fence: every writer of the tenant, on every node, waits for this row.
        let fenced = Instant::now();
        let fence = begin(&mut source_conn, tenant).await?;
        fence
            .execute("SELECT 1 FROM tenant_usage WHERE tenant_id = $1 FOR UPDATE", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
        // Its imports (staging takes its import's row) and its outbox (a claim updates a row).
        for table in ["imports", "webhook_outbox"] {
            fence
                .execute(&format!("SELECT 1 FROM {table} WHERE tenant_id = $1 FOR UPDATE"), &[&tenant.as_str()])
                .await
                .map_err(pg_error)?;
        }
        rounds += 1;
        let t = begin(&mut target_conn, tenant).await?;
        let locked_ms = fenced.elapsed().as_millis();
        copier.round(&fence, &t, true).await?;
        let copied_ms = fenced.elapsed().as_millis();
        copier.compare(&fence, &t, false, true).await?;
        let compared_ms = fenced.elapsed().as_millis();
        self.continue_numbering(&owner, &source_owner, tenant, &t).await?;
        // The switch, with the source's usage row, outbox and imports gone (the module's doc).
        match to {
            Placement::Dedicated => {
                // Its own copy of the record says where it now is, as the registry's will.
                switch_tx(&t, tenant, to).await?;
                commit(t).await?;
                switch_tx(&fence, tenant, to).await?;
                retire_tx(&fence, tenant).await?;
                commit(fence).await?;
            }
            Placement::Shared => {
                retire_tx(&fence, tenant).await?;
                switch_tx(&t, tenant, to).await?;
                commit(t).await?;
                commit(fence).await?;
            }
        }
        self.places.set_placement(tenant, Some(to == Placement::Dedicated));
        let fence_ms = fenced.elapsed().as_millis() as u64;
        tracing::info!(
            "move switched {tenant} to {}: fence {fence_ms} ms (locked at {locked_ms}, last round copied at \
             {copied_ms}, compared at {compared_ms})",
            to.as_str()
        );
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
