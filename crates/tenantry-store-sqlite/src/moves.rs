//! Recovery at open: what a crash may have left half done (imports, moves, dedicated databases
//! whose creation never finished) is settled before the store serves.

use crate::pool::sql_error;
use crate::store::SqliteStore;
use rusqlite::Connection;
use tenantry_core::ids::TenantId;
use tenantry_core::Result;

/// A plain connection to a database file for the one-off work of opening.
fn plain(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql_error)?;
    Ok(conn)
}

fn sweep_imports(conn: &mut Connection) -> Result<u64> {
    let tx = conn.transaction().map_err(sql_error)?;
    let swept = crate::import::sweep_imports_tx(&tx)?;
    tx.commit().map_err(sql_error)?;
    Ok(swept)
}

/// Settles the shared database and every dedicated one, and loads the routes.
pub(crate) fn recover(store: &SqliteStore) -> Result<()> {
    let mut shared = plain(&store.shared.path)?;
    settle_moves(store, &mut shared)?;
    let mut swept = sweep_imports(&mut shared)?;
    let dedicated: Vec<String> = shared
        .prepare("SELECT id FROM tenants WHERE placement = 'dedicated'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql_error)?;
    for id in &dedicated {
        let tenant = TenantId::parse(id).ok_or_else(|| crate::store::corrupt("tenant id"))?;
        store.routes.set_dedicated(&tenant, true);
        let path = store.dedicated.path_of(&tenant);
        if !path.exists() {
            return Err(tenantry_core::Error::internal(format!(
                "tenant {id} is dedicated but its database {} is missing",
                path.display()
            )));
        }
        let mut conn = plain(&path)?;
        crate::schema::migrate(&mut conn).map_err(|e| match e {
            crate::schema::MigrateError::Newer { found } => tenantry_core::Error::internal(format!(
                "{} has schema version {found}, newer than this tenantry binary knows",
                path.display()
            )),
            crate::schema::MigrateError::Sql(e) => sql_error(e),
        })?;
        swept += sweep_imports(&mut conn)?;
        let hooked: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM webhooks)", [], |r| r.get(0)).map_err(sql_error)?;
        if hooked {
            store.routes.set_hooked(&tenant);
        }
    }
    if swept > 0 {
        tracing::warn!(swept, "dropped imports that were interrupted before they committed");
    }
    // A dedicated database no registry row points at was being created when the server stopped
    // (its creation was never answered): nothing refers to it.
    if let Ok(entries) = std::fs::read_dir(store.dedicated.dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".db") else { continue };
            if !dedicated.iter().any(|d| d == id) {
                if let Some(tenant) = TenantId::parse(id) {
                    tracing::warn!(tenant = id, "deleting a dedicated database no tenant points at");
                    store.dedicated.delete_files(&tenant)?;
                }
            }
        }
    }
    Ok(())
}

// ---- moving a tenant between placements ----

use crate::pool::Pool;
use crate::store::delete_tenant_rows_tx;
use async_trait::async_trait;
use rusqlite::types::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tenantry_core::model::Placement;
use tenantry_core::store::{MoveProgress, MoveReport, PlacementStore, TenantScope};
use tenantry_core::Error;

/// A tenant's tables copied row for row, with the columns that identify a row and the column
/// that names the tenant. (`files` and `file_content` are copied by `files_round`; the webhook
/// outbox and delivery log, whose ids are the database's own, in `sync_round`; the tenant's
/// record by `copy_record`, which never copies the placement column; registry-only tables —
/// domains, metered usage, moves — stay where they are.)
const TABLES: &[(&str, &str, &[&str])] = &[
    ("keys", "tenant_id", &["id"]),
    ("audit", "tenant_id", &["tenant_id", "seq"]),
    ("tenant_usage", "tenant_id", &["tenant_id"]),
    ("events", "tenant_id", &["tenant_id", "seq"]),
    ("memory", "tenant_id", &["tenant_id", "namespace", "key"]),
    ("search_docs", "tenant_id", &["tenant_id", "kind", "doc"]),
    ("search_postings", "tenant_id", &["tenant_id", "term", "kind", "doc"]),
    ("webhooks", "tenant_id", &["id"]),
];

/// A value made comparable and hashable (reals by their bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Cell {
    Null,
    Int(i64),
    Real(u64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn of(v: Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::Integer(i) => Cell::Int(i),
            Value::Real(f) => Cell::Real(f.to_bits()),
            Value::Text(t) => Cell::Text(t),
            Value::Blob(b) => Cell::Blob(b),
        }
    }
    fn value(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::Integer(*i),
            Cell::Real(b) => Value::Real(f64::from_bits(*b)),
            Cell::Text(t) => Value::Text(t.clone()),
            Cell::Blob(b) => Value::Blob(b.clone()),
        }
    }
}

type Row = Vec<Cell>;

/// A table's rows of the tenant: column names and rows by key.
struct TableRows {
    columns: Vec<String>,
    rows: HashMap<Row, Row>,
}

fn table_rows(conn: &Connection, table: &str, tenant_col: &str, key: &[&str], tenant: &TenantId) -> Result<TableRows> {
    let mut s = conn.prepare(&format!("SELECT * FROM {table} WHERE {tenant_col} = ?1")).map_err(sql_error)?;
    let columns: Vec<String> = s.column_names().iter().map(|c| c.to_string()).collect();
    let key_at: Vec<usize> = key
        .iter()
        .map(|k| {
            columns.iter().position(|c| c == k).ok_or_else(|| Error::internal(format!("no column {k} in {table}")))
        })
        .collect::<Result<_>>()?;
    let n = columns.len();
    let mut rows = HashMap::new();
    let mut q = s.query([tenant.as_str()]).map_err(sql_error)?;
    while let Some(r) = q.next().map_err(sql_error)? {
        let row: Row =
            (0..n).map(|i| r.get::<_, Value>(i).map(Cell::of)).collect::<rusqlite::Result<_>>().map_err(sql_error)?;
        rows.insert(key_at.iter().map(|i| row[*i].clone()).collect(), row);
    }
    Ok(TableRows { columns, rows })
}

/// What makes `dst`'s rows of one table equal to `src`'s: rows to write and keys to delete.
struct TableDiff {
    table: &'static str,
    key: &'static [&'static str],
    columns: Vec<String>,
    upserts: Vec<Row>,
    deletes: Vec<Row>,
}

fn diff(table: &'static str, key: &'static [&'static str], src: TableRows, dst: &TableRows) -> TableDiff {
    let deletes = dst.rows.keys().filter(|k| !src.rows.contains_key(*k)).cloned().collect();
    let upserts = src.rows.into_iter().filter(|(k, row)| dst.rows.get(k) != Some(row)).map(|(_, row)| row).collect();
    TableDiff { table, key, columns: src.columns, upserts, deletes }
}

fn apply(tx: &Connection, d: &TableDiff) -> Result<u64> {
    let where_key =
        d.key.iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect::<Vec<_>>().join(" AND ");
    for k in &d.deletes {
        let vals: Vec<Value> = k.iter().map(Cell::value).collect();
        tx.prepare_cached(&format!("DELETE FROM {} WHERE {where_key}", d.table))
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(vals)))
            .map_err(sql_error)?;
    }
    let cols = d.columns.join(", ");
    let marks = (1..=d.columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    for row in &d.upserts {
        let vals: Vec<Value> = row.iter().map(Cell::value).collect();
        tx.prepare_cached(&format!("INSERT OR REPLACE INTO {} ({cols}) VALUES ({marks})", d.table))
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(vals)))
            .map_err(sql_error)?;
    }
    Ok((d.upserts.len() + d.deletes.len()) as u64)
}

/// A file row of the source: its metadata (without the content id) and where its bytes are.
#[derive(Clone, PartialEq)]
struct SrcFile {
    meta: Vec<Cell>,
    etag: String,
    size: i64,
    content_id: i64,
}

const FILE_META: &str = "path, size, etag, version, content_type, created_at, updated_at";

fn src_files(conn: &Connection, tenant: &TenantId) -> Result<HashMap<String, SrcFile>> {
    let mut s =
        conn.prepare(&format!("SELECT {FILE_META}, content_id FROM files WHERE tenant_id = ?1")).map_err(sql_error)?;
    let mut out = HashMap::new();
    let mut q = s.query([tenant.as_str()]).map_err(sql_error)?;
    while let Some(r) = q.next().map_err(sql_error)? {
        let meta: Vec<Cell> =
            (0..7).map(|i| r.get::<_, Value>(i).map(Cell::of)).collect::<rusqlite::Result<_>>().map_err(sql_error)?;
        let (path, size, etag, content_id): (String, i64, String, i64) = (
            r.get(0).map_err(sql_error)?,
            r.get(1).map_err(sql_error)?,
            r.get(2).map_err(sql_error)?,
            r.get(7).map_err(sql_error)?,
        );
        out.insert(path, SrcFile { meta, etag, size, content_id });
    }
    Ok(out)
}

/// What the copy has done so far: file bytes already in the destination, by the source row
/// they came from and its ETag then, and the delivery log copied up to which source id.
#[derive(Default)]
struct Copied {
    content: HashMap<(i64, String), i64>,
    attempts_after: i64,
    rows: u64,
    rounds: u32,
}

impl SqliteStore {
    async fn on_reader<T: Send + 'static>(
        pool: &Arc<Pool>,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = pool.clone();
        tokio::task::spawn_blocking(move || f(&pool.reader()))
            .await
            .map_err(|e| Error::internal(format!("move task failed: {e}")))?
    }

    /// Copies the bytes of files new or changed since the last round, in batches that take their
    /// turn on the destination's writer. Returns the source's files as of this round.
    async fn files_round(
        &self,
        src: &Arc<Pool>,
        dst: &Arc<Pool>,
        tenant: &TenantId,
        copied: &mut Copied,
        progress: &(dyn Fn(MoveProgress) + Send + Sync),
    ) -> Result<HashMap<String, SrcFile>> {
        let t = tenant.clone();
        let files = Self::on_reader(src, move |c| src_files(c, &t)).await?;
        let total: u64 = files.values().map(|f| f.size as u64).sum();
        let missing: Vec<SrcFile> =
            files.values().filter(|f| !copied.content.contains_key(&(f.content_id, f.etag.clone()))).cloned().collect();
        let mut done: u64 = files
            .values()
            .filter(|f| copied.content.contains_key(&(f.content_id, f.etag.clone())))
            .map(|f| f.size as u64)
            .sum();
        let mut batch: Vec<SrcFile> = Vec::new();
        let mut batch_bytes = 0i64;
        let flush = |batch: Vec<SrcFile>| async move {
            let ids: Vec<(i64, String)> = batch.iter().map(|f| (f.content_id, f.etag.clone())).collect();
            // Bytes and ETag read in one statement: the row and its bytes agree. A file changed
            // since the listing is left for the next round.
            let got = Self::on_reader(src, move |c| {
                let mut out = Vec::new();
                let mut s = c
                    .prepare_cached(
                        "SELECT f.etag, c.content FROM files f JOIN file_content c ON c.id = f.content_id
                         WHERE f.content_id = ?1",
                    )
                    .map_err(sql_error)?;
                for (id, etag) in ids {
                    let row: Option<(String, Vec<u8>)> =
                        s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(sql_error)?;
                    if let Some((now, bytes)) = row.filter(|(now, _)| *now == etag) {
                        out.push((id, now, bytes));
                    }
                }
                Ok(out)
            })
            .await?;
            let owner = Some(crate::store::owner_of(tenant));
            dst.write(
                owner,
                move |tx| {
                    let mut out = Vec::new();
                    for (id, etag, bytes) in got {
                        out.push(((id, etag), crate::store::store_content_tx(tx, None, &bytes)?, bytes.len() as u64));
                    }
                    Ok(out)
                },
                None,
            )
            .await
        };
        for f in missing {
            batch_bytes += f.size;
            batch.push(f);
            if batch_bytes >= 8 << 20 || batch.len() >= 500 {
                for (k, id, n) in flush(std::mem::take(&mut batch)).await? {
                    copied.content.insert(k, id);
                    done += n;
                }
                batch_bytes = 0;
                progress(MoveProgress { copied_bytes: done, total_bytes: total });
            }
        }
        for (k, id, n) in flush(batch).await? {
            copied.content.insert(k, id);
            done += n;
        }
        progress(MoveProgress { copied_bytes: done, total_bytes: total });
        Ok(files)
    }

    /// One catch-up round: bytes of new and changed files, then every row of the tenant made
    /// equal in the destination in one transaction. Returns how many rows it changed.
    async fn sync_round(
        &self,
        src: &Arc<Pool>,
        dst: &Arc<Pool>,
        tenant: &TenantId,
        copied: &mut Copied,
        progress: &(dyn Fn(MoveProgress) + Send + Sync),
    ) -> Result<u64> {
        let files = self.files_round(src, dst, tenant, copied, progress).await?;
        let t = tenant.clone();
        let after = copied.attempts_after;
        let dst_is_dedicated = !Arc::ptr_eq(dst, &self.shared);
        let (record, src_tables, attempts) = Self::on_reader(src, move |c| {
            let record = crate::store::tenant_record(c, &t)?;
            let tables =
                TABLES.iter().map(|(name, col, key)| table_rows(c, name, col, key, &t)).collect::<Result<Vec<_>>>()?;
            let attempts = table_rows(c, "webhook_attempts", "tenant_id", &["id"], &t)?;
            let outbox = table_rows(c, "webhook_outbox", "tenant_id", &["id"], &t)?;
            Ok((record, tables, (attempts, outbox)))
        })
        .await?;
        let content = std::mem::take(&mut copied.content);
        let t = tenant.clone();
        let owner = Some(crate::store::owner_of(tenant));
        let (changed, content, attempts_after) = dst
            .write(
                owner,
                move |tx| {
                    let mut changed = copy_record(tx, record, dst_is_dedicated)?;
                    for ((name, col, key), src_rows) in TABLES.iter().zip(src_tables) {
                        let dst_rows = table_rows(tx, name, col, key, &t)?;
                        changed += apply(tx, &diff(name, key, src_rows, &dst_rows))?;
                    }
                    // Files: metadata compared without the content id; bytes from this round.
                    let dst_files = src_files(tx, &t)?;
                    for (path, d) in &dst_files {
                        if !files.contains_key(path) {
                            tx.execute(
                                "DELETE FROM files WHERE tenant_id = ?1 AND path = ?2",
                                params![t.as_str(), path],
                            )
                            .map_err(sql_error)?;
                            changed += 1;
                        }
                        let _ = d;
                    }
                    let mut used: HashSet<i64> = HashSet::new();
                    for (path, f) in &files {
                        let Some(&dst_id) = content.get(&(f.content_id, f.etag.clone())) else {
                            continue; // changed while copying: the next round takes it
                        };
                        used.insert(dst_id);
                        let same = dst_files.get(path).is_some_and(|d| d.meta == f.meta && d.content_id == dst_id);
                        if !same {
                            let mut vals: Vec<Value> = vec![Value::Text(t.as_str().to_owned())];
                            vals.extend(f.meta.iter().map(Cell::value));
                            vals.push(Value::Integer(dst_id));
                            tx.prepare_cached(&format!(
                                "INSERT OR REPLACE INTO files (tenant_id, {FILE_META}, content_id)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                            ))
                            .and_then(|mut s| s.execute(rusqlite::params_from_iter(vals)))
                            .map_err(sql_error)?;
                            changed += 1;
                        }
                    }
                    // Bytes copied for versions no file has any more.
                    let mut kept = HashMap::new();
                    for (k, id) in content {
                        if used.contains(&id) {
                            kept.insert(k, id);
                        } else {
                            crate::store::drop_content_tx(tx, id)?;
                        }
                    }
                    // The outbox is small and its ids are this database's own: replaced whole.
                    // The delivery log is append-only: rows past the last copied one are added.
                    let (attempts, outbox) = attempts;
                    tx.execute("DELETE FROM webhook_outbox WHERE tenant_id = ?1", [t.as_str()]).map_err(sql_error)?;
                    for row in outbox.rows.values() {
                        insert_without_id(tx, "webhook_outbox", &outbox.columns, row)?;
                    }
                    let mut last = after;
                    let id_at = attempts.columns.iter().position(|c| c == "id").unwrap_or(0);
                    let mut fresh: Vec<&Row> =
                        attempts.rows.values().filter(|r| matches!(r[id_at], Cell::Int(i) if i > after)).collect();
                    fresh.sort_by_key(|r| match r[id_at] {
                        Cell::Int(i) => i,
                        _ => 0,
                    });
                    for row in fresh {
                        if let Cell::Int(i) = row[id_at] {
                            last = last.max(i);
                        }
                        insert_without_id(tx, "webhook_attempts", &attempts.columns, row)?;
                        changed += 1;
                    }
                    Ok((changed, kept, last))
                },
                None,
            )
            .await?;
        copied.content = content;
        copied.attempts_after = attempts_after;
        copied.rows += changed;
        copied.rounds += 1;
        Ok(changed)
    }

    /// Whether every row of the tenant is the same in both places (files by metadata and ETag).
    async fn same_everywhere(&self, src: &Arc<Pool>, dst: &Arc<Pool>, tenant: &TenantId) -> Result<bool> {
        let a = Self::on_reader(src, digest_of(tenant.clone())).await?;
        let b = Self::on_reader(dst, digest_of(tenant.clone())).await?;
        Ok(a == b)
    }

    /// Every file's bytes in `pool` hash to its ETag.
    async fn bytes_match_etags(pool: &Arc<Pool>, tenant: &TenantId) -> Result<bool> {
        let t = tenant.clone();
        Self::on_reader(pool, move |c| {
            let mut s = c
                .prepare("SELECT f.etag, c.content FROM files f JOIN file_content c ON c.id = f.content_id WHERE f.tenant_id = ?1")
                .map_err(sql_error)?;
            let mut q = s.query([t.as_str()]).map_err(sql_error)?;
            while let Some(r) = q.next().map_err(sql_error)? {
                let etag: String = r.get(0).map_err(sql_error)?;
                let bytes: Vec<u8> = r.get(1).map_err(sql_error)?;
                if tenantry_core::store::etag_of(&bytes) != etag {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }

    /// Deletes the tenant's copy in the place it left.
    async fn drop_old_copy(&self, tenant: &TenantId, from: Placement) -> Result<()> {
        match from {
            Placement::Dedicated => self.dedicated.delete_files(tenant),
            Placement::Shared => {
                let t = tenant.clone();
                self.shared.write(None, move |tx| delete_tenant_rows_tx(tx, &t, false), None).await
            }
        }
    }

    async fn run_move(
        &self,
        tenant: &TenantId,
        from: Placement,
        to: Placement,
        progress: &(dyn Fn(MoveProgress) + Send + Sync),
        report: &mut MoveReport,
    ) -> Result<()> {
        let started = Instant::now();
        let src = self.pool_of(tenant)?;
        let dst = match to {
            Placement::Dedicated => {
                self.dedicated.delete_files(tenant)?;
                self.dedicated.get(tenant)?
            }
            Placement::Shared => self.shared.clone(),
        };
        let gate = self.routes.install_fence(tenant);
        let mut copied = Copied::default();
        // Rounds while the tenant serves, until one finds little to do.
        for _ in 0..MAX_OPEN_ROUNDS {
            if self.sync_round(&src, &dst, tenant, &mut copied, progress).await? <= SMALL_ROUND {
                break;
            }
        }
        let closed = crate::placement::Routes::close(&gate).await;
        let fence = Instant::now();
        self.sync_round(&src, &dst, tenant, &mut copied, progress).await?;
        if !self.same_everywhere(&src, &dst, tenant).await? {
            return Err(Error::internal("the copy differs from the original after the final round"));
        }
        let t = tenant.clone();
        self.shared
            .write(
                None,
                move |tx| {
                    tx.execute("UPDATE tenants SET placement = ?2 WHERE id = ?1", params![t.as_str(), to.as_str()])
                        .map_err(sql_error)?;
                    tx.execute("UPDATE moves SET phase = 'switched' WHERE tenant_id = ?1", [t.as_str()])
                        .map_err(sql_error)?;
                    Ok(())
                },
                None,
            )
            .await?;
        self.routes.set_dedicated(tenant, to == Placement::Dedicated);
        self.routes.set_hooked(tenant);
        report.fence_ms = fence.elapsed().as_millis() as u64;
        drop(closed);
        self.routes.remove_fence(tenant);
        report.copy_ms = started.elapsed().as_millis() as u64;
        report.rows = copied.rows;
        report.rounds = copied.rounds;
        let t = tenant.clone();
        let (files, bytes) = Self::on_reader(&dst, move |c| {
            c.query_row("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE tenant_id = ?1", [t.as_str()], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
            .map_err(sql_error)
        })
        .await?;
        report.files = files;
        report.file_bytes = bytes;
        report.verified = Self::bytes_match_etags(&dst, tenant).await?;
        if report.verified {
            drop(src);
            self.drop_old_copy(tenant, from).await?;
        } else {
            tracing::error!(tenant = %tenant, "moved, but a file's bytes do not match its ETag: the old copy is kept");
        }
        let t = tenant.clone();
        self.write_shared(move |tx| {
            tx.execute("DELETE FROM moves WHERE tenant_id = ?1", [t.as_str()]).map_err(sql_error)?;
            Ok(())
        })
        .await
    }
}

/// Catch-up rounds made at most before the fence, and the size of a round (rows changed) small
/// enough to close the fence after it.
const MAX_OPEN_ROUNDS: usize = 4;
const SMALL_ROUND: u64 = 200;

fn insert_without_id(tx: &Connection, table: &str, columns: &[String], row: &Row) -> Result<()> {
    let keep: Vec<usize> = (0..columns.len()).filter(|i| columns[*i] != "id").collect();
    let cols = keep.iter().map(|i| columns[*i].as_str()).collect::<Vec<_>>().join(", ");
    let marks = (1..=keep.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let vals: Vec<Value> = keep.iter().map(|i| row[*i].value()).collect();
    tx.prepare_cached(&format!("INSERT INTO {table} ({cols}) VALUES ({marks})"))
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(vals)))
        .map_err(sql_error)?;
    Ok(())
}

use rusqlite::{params, OptionalExtension};

#[async_trait]
impl PlacementStore for SqliteStore {
    async fn move_tenant(
        &self,
        scope: &TenantScope,
        to: Placement,
        progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
    ) -> Result<MoveReport> {
        let tenant = scope.tenant_id().clone();
        let from = if self.routes.is_dedicated(&tenant) { Placement::Dedicated } else { Placement::Shared };
        if from == to {
            return Err(Error::conflict(format!("tenant '{}' is already {}", scope.slug(), to.as_str())));
        }
        let t = tenant.clone();
        let at = tenantry_core::time::Clock::now(&tenantry_core::time::SystemClock).millis();
        self.write_shared(move |tx| {
            tx.execute(
                "INSERT INTO moves (tenant_id, to_placement, phase, started_at) VALUES (?1, ?2, 'copying', ?3)",
                params![t.as_str(), to.as_str(), at],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Error::conflict("a move of this tenant is already under way")
                }
                e => sql_error(e),
            })?;
            Ok(())
        })
        .await?;
        let mut report = MoveReport {
            tenant: scope.slug().as_str().to_owned(),
            from,
            to,
            files: 0,
            file_bytes: 0,
            rows: 0,
            rounds: 0,
            copy_ms: 0,
            fence_ms: 0,
            verified: false,
        };
        let moved = self.run_move(&tenant, from, to, &*progress, &mut report).await;
        if let Err(e) = moved {
            // Not switched (the switch is the last step that can fail before the old copy is
            // dropped, and it is one transaction): roll back to where the tenant was.
            self.routes.remove_fence(&tenant);
            let not_switched = self.routes.is_dedicated(&tenant) == (from == Placement::Dedicated);
            if not_switched {
                rollback(self, &tenant, to).await?;
            }
            return Err(e);
        }
        Ok(report)
    }
}

/// Deletes what a move that did not switch copied to `to`, and its moves row.
async fn rollback(store: &SqliteStore, tenant: &TenantId, to: Placement) -> Result<()> {
    match to {
        Placement::Dedicated => store.dedicated.delete_files(tenant)?,
        Placement::Shared => {
            let t = tenant.clone();
            store.shared.write(None, move |tx| delete_tenant_rows_tx(tx, &t, false), None).await?;
        }
    }
    let t = tenant.clone();
    store
        .write_shared(move |tx| {
            tx.execute("DELETE FROM moves WHERE tenant_id = ?1", [t.as_str()]).map_err(sql_error)?;
            Ok(())
        })
        .await
}

/// Makes the destination's copy of the tenant's record equal the source's, except its placement
/// (which only the switch changes, in the registry). Returns rows changed.
fn copy_record(tx: &Connection, record: Option<tenantry_core::model::Tenant>, dst_is_dedicated: bool) -> Result<u64> {
    let Some(mut t) = record else { return Ok(0) };
    let current = crate::store::tenant_record(tx, &t.id)?;
    match current {
        Some(c) if c == Tenant { placement: c.placement, ..t.clone() } => Ok(0),
        Some(_) => crate::store::write_tenant_row(tx, &t, false).map(|_| 1),
        None => {
            t.placement = if dst_is_dedicated { Placement::Dedicated } else { Placement::Shared };
            crate::store::write_tenant_row(tx, &t, true).map(|_| 1)
        }
    }
}

use tenantry_core::model::Tenant;

/// Settles a move a crash interrupted: one not yet switched is rolled back (its copy deleted);
/// one switched is finished (the old copy deleted).
fn settle_moves(store: &SqliteStore, shared: &mut Connection) -> Result<()> {
    let moves: Vec<(String, String, String)> = shared
        .prepare("SELECT tenant_id, to_placement, phase FROM moves")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(sql_error)?;
    for (id, to, phase) in moves {
        let tenant = TenantId::parse(&id).ok_or_else(|| crate::store::corrupt("tenant id"))?;
        let to = Placement::parse(&to).ok_or_else(|| crate::store::corrupt("placement"))?;
        // Where the copy to delete is: the new place if not switched, else the old one.
        let doomed = if phase == "switched" {
            if to == Placement::Dedicated {
                Placement::Shared
            } else {
                Placement::Dedicated
            }
        } else {
            to
        };
        tracing::warn!(tenant = id, phase, "settling a move interrupted by a stop");
        let tx = shared.transaction().map_err(sql_error)?;
        if doomed == Placement::Shared {
            delete_tenant_rows_tx(&tx, &tenant, false)?;
        }
        tx.execute("DELETE FROM moves WHERE tenant_id = ?1", [id.as_str()]).map_err(sql_error)?;
        tx.commit().map_err(sql_error)?;
        if doomed == Placement::Dedicated {
            store.dedicated.delete_files(&tenant)?;
        }
    }
    Ok(())
}

type Digest = (Vec<Vec<Row>>, Vec<(String, Vec<Cell>)>);

/// Everything of the tenant in one database, in a comparable order.
fn digest_of(t: TenantId) -> impl FnOnce(&Connection) -> Result<Digest> + Send + 'static {
    move |c| {
        let mut all = Vec::new();
        for (name, col, key) in TABLES {
            let rows = table_rows(c, name, col, key, &t)?;
            let mut r: Vec<Row> = rows.rows.into_values().collect();
            r.sort_by_cached_key(|row| format!("{row:?}"));
            all.push(r);
        }
        let mut files: Vec<(String, Vec<Cell>)> = src_files(c, &t)?.into_iter().map(|(p, f)| (p, f.meta)).collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((all, files))
    }
}
