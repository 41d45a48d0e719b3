//! Moving a tenant between placements (shared and dedicated), online: copy rounds while it
//! keeps writing, a short fence for the last round, then the switch; and the settling at open
//! of a move a crash interrupted.

use crate::blobs::Blobs;
use crate::database::Database;
use crate::error::sql_error;
use crate::files::Body;
use crate::store::SqliteStore;
use crate::tenants::delete_tenant_rows_tx;
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tenantry_core::ids::TenantId;
use tenantry_core::model::Placement;
use tenantry_core::store::{MoveProgress, MoveReport, PlacementStore, TenantScope};
use tenantry_core::Error;
use tenantry_core::Result;

/// A tenant's tables copied row for row, with the columns that identify a row and the column
/// that names the tenant. (`files` and `file_content` are copied by `files_round`; the webhook
/// outbox and delivery log, whose ids are the database's own, in `sync_round`; the tenant's
/// record by `copy_record`, which never copies the placement column; registry-only tables —
/// domains, metered usage, moves — stay where they are.)
/// How a table is brought up to date in the destination each round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SyncBy {
    /// Every row compared (small tables, or rows that change in place).
    Whole,
    /// Rows only ever added, numbered by `seq` (or pruned when old): the rows past the last
    /// copied one.
    Append,
    /// The search index's rows of a document: those of documents whose file or memory entry
    /// changed since the last round (all of them in the first).
    ByDoc,
    /// Rows never changed while the tenant moves (its search segments: the tenant's search
    /// upkeep is paused at both ends for the move): copied in the first round only.
    Once,
}

const TABLES: &[(&str, &str, &[&str], SyncBy)] = &[
    ("keys", "tenant_id", &["tenant_id", "id"], SyncBy::Whole),
    ("memberships", "tenant_id", &["tenant_id", "user_id"], SyncBy::Whole),
    ("audit", "tenant_id", &["tenant_id", "seq"], SyncBy::Append),
    ("audit_anchor", "tenant_id", &["tenant_id"], SyncBy::Whole),
    ("tenant_usage", "tenant_id", &["tenant_id"], SyncBy::Whole),
    ("events", "tenant_id", &["tenant_id", "seq"], SyncBy::Append),
    ("memory", "tenant_id", &["tenant_id", "namespace", "key"], SyncBy::Whole),
    ("search_docs", "tenant_id", &["tenant_id", "kind", "doc"], SyncBy::ByDoc),
    ("search_tail", "tenant_id", &["tenant_id", "kind", "doc"], SyncBy::ByDoc),
    // Dead-document bitmaps change with writes; the segments' contents do not.
    ("search_segments", "tenant_id", &["tenant_id", "seg"], SyncBy::Whole),
    ("search_segment_docs", "tenant_id", &["tenant_id", "seg", "chunk"], SyncBy::Once),
    ("search_segment_terms", "tenant_id", &["tenant_id", "seg", "term"], SyncBy::Once),
    // Segments being written or deleted: the target deletes those no step under way there writes
    // (its steps know their own by uid).
    ("search_pending", "tenant_id", &["tenant_id", "seg"], SyncBy::Whole),
    ("webhooks", "tenant_id", &["tenant_id", "id"], SyncBy::Whole),
    ("event_relays", "tenant_id", &["tenant_id", "relay"], SyncBy::Whole),
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
#[derive(Clone)]
struct TableRows {
    columns: Vec<String>,
    rows: HashMap<Row, Row>,
}

fn table_rows(conn: &Connection, table: &str, tenant_col: &str, key: &[&str], tenant: &TenantId) -> Result<TableRows> {
    table_rows_where(conn, table, tenant_col, key, tenant, "", &[])
}

/// The tenant's rows of a table that also meet `filter` (SQL over the table's columns, its
/// parameters numbered from ?2).
fn table_rows_where(
    conn: &Connection,
    table: &str,
    tenant_col: &str,
    key: &[&str],
    tenant: &TenantId,
    filter: &str,
    params: &[Value],
) -> Result<TableRows> {
    // A log is read whole, tail included; of the audit log, the entries after the anchor (a
    // prune during a move may leave older ones in the destination, where no reader sees them).
    let source = crate::tails::whole(table);
    let kept = match table {
        "audit" => "AND seq > IFNULL((SELECT seq FROM audit_anchor WHERE tenant_id = ?1), 0)",
        _ => "",
    };
    let sql = format!("SELECT * FROM {source} WHERE {tenant_col} = ?1 {kept} {filter}");
    let mut s = conn.prepare_cached(&sql).map_err(sql_error)?;
    let columns: Vec<String> = s.column_names().iter().map(|c| c.to_string()).collect();
    let key_at: Vec<usize> = key
        .iter()
        .map(|k| {
            columns.iter().position(|c| c == k).ok_or_else(|| Error::internal(format!("no column {k} in {table}")))
        })
        .collect::<Result<_>>()?;
    let n = columns.len();
    let mut rows = HashMap::new();
    let mut all = vec![Value::Text(tenant.as_str().to_owned())];
    all.extend(params.iter().cloned());
    let mut q = s.query(rusqlite::params_from_iter(all)).map_err(sql_error)?;
    while let Some(r) = q.next().map_err(sql_error)? {
        let row: Row =
            (0..n).map(|i| r.get::<_, Value>(i).map(Cell::of)).collect::<rusqlite::Result<_>>().map_err(sql_error)?;
        rows.insert(key_at.iter().map(|i| row[*i].clone()).collect(), row);
    }
    Ok(TableRows { columns, rows })
}

/// The rows of one search document in `search_docs` or `search_tail`.
fn doc_rows(
    conn: &Connection,
    table: &str,
    tenant_col: &str,
    key: &[&str],
    tenant: &TenantId,
    kind: i64,
    doc: &str,
) -> Result<TableRows> {
    let by_doc = [Value::Integer(kind), Value::Text(doc.to_owned())];
    table_rows_where(conn, table, tenant_col, key, tenant, "AND kind = ?2 AND doc = ?3", &by_doc)
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
    path: String,
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
        out.insert(path.clone(), SrcFile { path, meta, etag, size, content_id });
    }
    Ok(out)
}

/// The source's files, the event `seq` they are as of, and the paths that changed.
type ListedFiles = (HashMap<String, SrcFile>, i64, Option<HashSet<String>>);

/// The source's files now: listed whole the first time (or after an import, which writes files
/// without an event each), else `known` updated from the file events after `after`. Returns them
/// the event `seq` they are as of, and the paths that changed (`None`: listed whole). Runs in one
/// snapshot.
fn changed_files(
    c: &Connection,
    tenant: &TenantId,
    known: Option<HashMap<String, SrcFile>>,
    after: i64,
) -> Result<ListedFiles> {
    let now = crate::counters::in_snapshot(c, tenant)?.last_event_seq;
    let Some(mut files) = known else {
        return Ok((src_files(c, tenant)?, now, None));
    };
    let mut s = c
        .prepare_cached("SELECT type, path FROM events_all WHERE tenant_id = ?1 AND seq > ?2 AND seq <= ?3")
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.as_str(), after, now], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .map_err(sql_error)?;
    let mut paths = HashSet::new();
    for row in rows {
        let (kind, path) = row.map_err(sql_error)?;
        match (kind.as_str(), path) {
            (tenantry_core::events::types::TENANT_IMPORTED, _) => return Ok((src_files(c, tenant)?, now, None)),
            (tenantry_core::events::types::FILE_WRITTEN | tenantry_core::events::types::FILE_DELETED, Some(p)) => {
                paths.insert(p);
            }
            _ => {}
        }
    }
    let mut one = c
        .prepare_cached(&format!("SELECT {FILE_META}, content_id FROM files WHERE tenant_id = ?1 AND path = ?2"))
        .map_err(sql_error)?;
    for path in paths.iter().cloned() {
        let found = one
            .query_row(params![tenant.as_str(), path], |r| {
                let meta: Vec<Cell> =
                    (0..7).map(|i| r.get::<_, Value>(i).map(Cell::of)).collect::<rusqlite::Result<_>>()?;
                Ok(SrcFile { path: r.get(0)?, meta, size: r.get(1)?, etag: r.get(2)?, content_id: r.get(7)? })
            })
            .optional()
            .map_err(sql_error)?;
        match found {
            Some(f) => files.insert(path, f),
            None => files.remove(&path),
        };
    }
    Ok((files, now, Some(paths)))
}

/// What the copy has done so far: file bytes already in the destination, by the source row
/// they came from and its ETag then; the last `seq` copied of each append-only table; the files
/// and memory entries as the last round saw them (to tell which search documents changed); the
/// delivery log copied up to which source id.
#[derive(Default)]
struct Copied {
    content: HashMap<(i64, String), i64>,
    /// What the destination holds now of the tables copied whole, and of the files (with the
    /// destination's content ids): nothing else writes the tenant's rows there before the switch,
    /// so each round diffs against this instead of reading the destination again.
    dst_whole: HashMap<&'static str, TableRows>,
    /// The destination's files: the source version each is a copy of, and its content id there.
    dst_files: HashMap<String, (SrcFile, i64)>,
    total_bytes: u64,
    copied_bytes: u64,
    /// The source's files as the last round saw them, and the event `seq` that state is as of:
    /// later rounds read only the files named by newer events (every file write and delete has
    /// one) instead of listing them all.
    src_files: Option<HashMap<String, SrcFile>>,
    files_events_after: i64,
    seq_after: HashMap<&'static str, i64>,
    memory_seen: HashMap<Row, Row>,
    attempts_after: i64,
    rows: u64,
    rounds: u32,
}

/// The files a round brings up to date (`None`: deleted), and whether they were listed whole.
struct FileUpdates {
    updates: Vec<(String, Option<SrcFile>)>,
    full: bool,
}

/// What one round read from the source.
struct SourceRound {
    record: Option<Tenant>,
    tables: Vec<TableRows>,
    attempts: TableRows,
    outbox: TableRows,
    /// Search documents to replace in the destination (`None`: all of them, first round).
    dirty_docs: Option<Vec<(i64, String)>>,
    memory: HashMap<Row, Row>,
}

impl SqliteStore {
    /// Copies the bytes of files new or changed since the last round, in batches that take their
    /// turn on the destination's writer. Returns the source's files as of this round.
    async fn files_round(
        &self,
        src: &Arc<Database>,
        dst: &Arc<Database>,
        tenant: &TenantId,
        copied: &mut Copied,
        progress: &(dyn Fn(MoveProgress) + Send + Sync),
    ) -> Result<FileUpdates> {
        let t = tenant.clone();
        let (known, after) = (copied.src_files.take(), copied.files_events_after);
        let (files, seen_up_to, changed) =
            crate::pool::read_on(src.clone(), move |c| in_snapshot(c, |c| changed_files(c, &t, known, after))).await?;
        copied.files_events_after = seen_up_to;
        // The paths to bring up to date: those that changed, or (listed whole) every path of
        // either side.
        let full = changed.is_none();
        let paths: Vec<String> = match changed {
            Some(p) => p.into_iter().collect(),
            None => {
                copied.total_bytes = files.values().map(|f| f.size as u64).sum();
                let mut all: HashSet<String> = files.keys().cloned().collect();
                all.extend(copied.dst_files.keys().cloned());
                all.into_iter().collect()
            }
        };
        let updates: Vec<(String, Option<SrcFile>)> =
            paths.into_iter().map(|p| (p.clone(), files.get(&p).cloned())).collect();
        copied.src_files = Some(files);
        let missing: Vec<SrcFile> = updates
            .iter()
            .filter_map(|(_, f)| f.clone())
            .filter(|f| !copied.content.contains_key(&(f.content_id, f.etag.clone())))
            .collect();
        let total = copied.total_bytes;
        let mut done = copied.copied_bytes;
        let mut batch: Vec<SrcFile> = Vec::new();
        let mut batch_bytes = 0i64;
        let flush = |batch: Vec<SrcFile>| async move {
            let ids: Vec<(String, i64, String)> =
                batch.iter().map(|f| (f.path.clone(), f.content_id, f.etag.clone())).collect();
            let t = tenant.clone();
            // Bytes and ETag read in one statement: the row and its bytes agree. A file changed
            // since the listing is left for the next round.
            let got = crate::pool::read_on(src.clone(), move |c| {
                let mut out = Vec::new();
                let mut s = c
                    .prepare_cached(
                        "SELECT f.etag, c.content, c.blob, f.size FROM files f JOIN file_content c ON c.id = f.content_id AND c.tenant_id = f.tenant_id
                         WHERE f.tenant_id = ?1 AND f.path = ?2 AND f.content_id = ?3",
                    )
                    .map_err(sql_error)?;
                for (path, id, etag) in ids {
                    type Found = (String, Vec<u8>, Option<String>, i64);
                    let row: Option<Found> = s
                        .query_row(params![t.as_str(), path, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()
                        .map_err(sql_error)?;
                    if let Some((now, bytes, blob, size)) = row.filter(|(now, ..)| *now == etag) {
                        out.push((id, now, bytes, blob, size));
                    }
                }
                Ok(out)
            })
            .await?;
            let owner = Some(crate::pool::owner_of(tenant));
            let t = tenant.clone();
            dst.write(
                owner,
                move |tx| {
                    let mut out = Vec::new();
                    for (id, etag, bytes, blob, size) in got {
                        // An external body stays where it is (its directory is the tenant's,
                        // whatever the placement): the copy names it.
                        let body = match &blob {
                            Some(name) => Body::External(name),
                            None => Body::Inline(&bytes),
                        };
                        let (dst_id, _) = crate::files::store_content_tx(tx, &t, None, body)?;
                        out.push(((id, etag), dst_id, size as u64));
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
                progress(MoveProgress { copied_bytes: done.min(total), total_bytes: total });
            }
        }
        for (k, id, n) in flush(batch).await? {
            copied.content.insert(k, id);
            done += n;
        }
        copied.copied_bytes = done;
        progress(MoveProgress { copied_bytes: done.min(total), total_bytes: total });
        Ok(FileUpdates { updates, full })
    }

    /// One catch-up round: bytes of new and changed files, then every row of the tenant made
    /// equal in the destination in one transaction. Returns how many rows it changed.
    async fn sync_round(
        &self,
        src: &Arc<Database>,
        dst: &Arc<Database>,
        tenant: &TenantId,
        copied: &mut Copied,
        progress: &(dyn Fn(MoveProgress) + Send + Sync),
    ) -> Result<u64> {
        let round_started = Instant::now();
        let first = copied.rounds == 0;
        let FileUpdates { updates, full } = self.files_round(src, dst, tenant, copied, progress).await?;
        let files_ms = round_started.elapsed().as_millis();
        // Files whose search document may have changed since the last round (in the first round
        // the whole index is copied).
        let dirty_files: Option<Vec<String>> =
            (!(first && full)).then(|| updates.iter().map(|(p, _)| p.clone()).collect());
        let t = tenant.clone();
        let seq_after = copied.seq_after.clone();
        let memory_seen = std::mem::take(&mut copied.memory_seen);
        let after = copied.attempts_after;
        let read = crate::pool::read_on(src.clone(), move |c| {
            in_snapshot(c, |c| {
                let record = crate::tenants::tenant_record(c, &t)?;
                let mut tables = Vec::new();
                let mut memory = HashMap::new();
                let mut dirty_docs = dirty_files.map(|paths| {
                    paths.into_iter().map(|p| (tenantry_core::search::DocKind::File as i64, p)).collect::<Vec<_>>()
                });
                for (name, col, key, how) in TABLES {
                    let rows = match how {
                        SyncBy::Whole => table_rows(c, name, col, key, &t)?,
                        SyncBy::Append => {
                            let from = seq_after.get(name).copied().unwrap_or(0);
                            table_rows_where(c, name, col, key, &t, "AND seq > ?2", &[Value::Integer(from)])?
                        }
                        SyncBy::Once if first => table_rows(c, name, col, key, &t)?,
                        SyncBy::Once => TableRows { columns: Vec::new(), rows: HashMap::new() },
                        SyncBy::ByDoc => match &dirty_docs {
                            None => table_rows(c, name, col, key, &t)?,
                            Some(docs) => {
                                let mut all = TableRows { columns: Vec::new(), rows: HashMap::new() };
                                for (kind, doc) in docs {
                                    let part = doc_rows(c, name, col, key, &t, *kind, doc)?;
                                    all.columns = part.columns;
                                    all.rows.extend(part.rows);
                                }
                                all
                            }
                        },
                    };
                    if *name == "memory" {
                        // Entries changed since the last round: their search documents too.
                        if let Some(docs) = dirty_docs.as_mut() {
                            let at = |n: &str| rows.columns.iter().position(|c| c == n).unwrap_or(0);
                            let (ns, k) = (at("namespace"), at("key"));
                            let doc = |r: &Row| match (&r[ns], &r[k]) {
                                (Cell::Text(a), Cell::Text(b)) => Some(crate::search::memory_doc(a, b)),
                                _ => None,
                            };
                            let kind = tenantry_core::search::DocKind::Memory as i64;
                            for (key, row) in &rows.rows {
                                if memory_seen.get(key) != Some(row) {
                                    docs.extend(doc(row).map(|d| (kind, d)));
                                }
                            }
                            for (key, row) in &memory_seen {
                                if !rows.rows.contains_key(key) {
                                    docs.extend(doc(row).map(|d| (kind, d)));
                                }
                            }
                        }
                        memory = rows.rows.clone();
                    }
                    tables.push(rows);
                }
                let attempts = table_rows_where(
                    c,
                    "webhook_attempts",
                    "tenant_id",
                    &["id"],
                    &t,
                    "AND id > ?2",
                    &[Value::Integer(after)],
                )?;
                let outbox = table_rows(c, "webhook_outbox", "tenant_id", &["id"], &t)?;
                Ok(SourceRound { record, tables, attempts, outbox, dirty_docs, memory })
            })
        })
        .await?;
        let read_ms = round_started.elapsed().as_millis();
        let SourceRound { record, tables: src_tables, attempts, outbox, dirty_docs, memory } = read;
        for ((name, _, key, how), rows) in TABLES.iter().zip(&src_tables) {
            if *how == SyncBy::Append {
                let seq_at = key.len() - 1;
                let col = rows.columns.iter().position(|c| c == key[seq_at]).unwrap_or(0);
                let max =
                    rows.rows.values().filter_map(|r| if let Cell::Int(i) = r[col] { Some(i) } else { None }).max();
                if let Some(m) = max {
                    copied.seq_after.insert(name, m);
                }
            }
        }
        copied.memory_seen = memory;
        // Rows that are only added (append-only tables, and the whole index in the first round)
        // go in jobs of their own, a few thousand rows each: the first round of a large tenant
        // must not hold the destination's writer (the shared one, for a move back) for long.
        let mut src_tables = src_tables;
        let mut pre_inserted = 0u64;
        for ((name, _, key, how), rows) in TABLES.iter().zip(src_tables.iter_mut()) {
            let inserts_only =
                matches!(how, SyncBy::Append | SyncBy::Once) || (*how == SyncBy::ByDoc && dirty_docs.is_none());
            if !inserts_only || rows.rows.len() <= INSERT_CHUNK {
                continue;
            }
            let all: Vec<Row> = std::mem::take(&mut rows.rows).into_values().collect();
            for chunk in all.chunks(INSERT_CHUNK) {
                let d = TableDiff {
                    table: name,
                    key,
                    columns: rows.columns.clone(),
                    upserts: chunk.to_vec(),
                    deletes: Vec::new(),
                };
                pre_inserted += dst.write(Some(crate::pool::owner_of(tenant)), move |tx| apply(tx, &d), None).await?;
            }
        }
        let dst_is_dedicated = !Arc::ptr_eq(dst, &self.shared);
        let content = std::mem::take(&mut copied.content);
        let mut dst_whole = std::mem::take(&mut copied.dst_whole);
        let mut dst_files = std::mem::take(&mut copied.dst_files);
        let t = tenant.clone();
        let owner = Some(crate::pool::owner_of(tenant));
        let (changed, content, attempts_after, dst_whole, dst_files) = dst
            .write(
                owner,
                move |tx| {
                    let mut changed = copy_record(tx, record, dst_is_dedicated)?;
                    for ((name, col, key, how), src_rows) in TABLES.iter().zip(src_tables) {
                        changed += match how {
                            SyncBy::Whole => {
                                let none = TableRows { columns: Vec::new(), rows: HashMap::new() };
                                let held = dst_whole.remove(name).unwrap_or(none);
                                let d = diff(name, key, src_rows.clone(), &held);
                                dst_whole.insert(name, src_rows);
                                apply(tx, &d)?
                            }
                            SyncBy::Append | SyncBy::Once => {
                                let none = TableRows { columns: Vec::new(), rows: HashMap::new() };
                                apply(tx, &diff(name, key, src_rows, &none))?
                            }
                            SyncBy::ByDoc => {
                                // The documents' old rows go, the source's come.
                                if let Some(docs) = &dirty_docs {
                                    for (kind, doc) in docs {
                                        let old = doc_rows(tx, name, col, key, &t, *kind, doc)?;
                                        let gone = TableRows { columns: old.columns.clone(), rows: HashMap::new() };
                                        changed += apply(tx, &diff(name, key, gone, &old))?;
                                    }
                                }
                                let none = TableRows { columns: Vec::new(), rows: HashMap::new() };
                                apply(tx, &diff(name, key, src_rows, &none))?
                            }
                        };
                    }
                    // Files: metadata compared without the content id; bytes from this round. A
                    // destination content row no file points at any more goes (and leaves the map
                    // of copied bytes, so that version is copied again should it come back).
                    let mut content = content;
                    let mut unnamed: Vec<(SrcFile, i64)> = Vec::new();
                    for (path, now) in &updates {
                        let old = dst_files.get(path).cloned();
                        let new_id = match now {
                            None => None,
                            Some(f) => match content.get(&(f.content_id, f.etag.clone())) {
                                Some(&id) => Some((f, id)),
                                None => continue, // changed while copying: the next round takes it
                            },
                        };
                        match (&old, new_id) {
                            (Some((o, old_id)), Some((f, id))) if o.meta == f.meta && *old_id == id => {}
                            (_, Some((f, id))) => {
                                let mut vals: Vec<Value> = vec![Value::Text(t.as_str().to_owned())];
                                vals.extend(f.meta.iter().map(Cell::value));
                                vals.push(Value::Integer(id));
                                tx.prepare_cached(&format!(
                                    "INSERT OR REPLACE INTO files (tenant_id, {FILE_META}, content_id)
                                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                                ))
                                .and_then(|mut s| s.execute(rusqlite::params_from_iter(vals)))
                                .map_err(sql_error)?;
                                dst_files.insert(path.clone(), (f.clone(), id));
                                changed += 1;
                            }
                            (Some(_), None) => {
                                tx.execute(
                                    "DELETE FROM files WHERE tenant_id = ?1 AND path = ?2",
                                    params![t.as_str(), path],
                                )
                                .map_err(sql_error)?;
                                dst_files.remove(path);
                                changed += 1;
                            }
                            (None, None) => {}
                        }
                        if let Some((o, old_id)) = old {
                            if dst_files.get(path).is_none_or(|(_, id)| *id != old_id) {
                                unnamed.push((o, old_id));
                            }
                        }
                    }
                    // A body the round took from its path goes only if no path names it now:
                    // the source may have given a deleted file's body number to a new file with
                    // the same bytes, which then took the same copy.
                    if !unnamed.is_empty() {
                        let named: HashSet<i64> = dst_files.values().map(|(_, id)| *id).collect();
                        let mut dropped = HashSet::new();
                        for (o, old_id) in unnamed {
                            if !named.contains(&old_id) && dropped.insert(old_id) {
                                // Rows only: a body it named is the source's to unlink.
                                crate::files::drop_content_row_tx(tx, &t, old_id)?;
                                content.remove(&(o.content_id, o.etag.clone()));
                            }
                        }
                    }
                    let kept = content;
                    // The outbox is small and its ids are this database's own: replaced whole.
                    // The delivery log is append-only: rows past the last copied one are added.
                    tx.execute("DELETE FROM webhook_outbox WHERE tenant_id = ?1", [t.as_str()]).map_err(sql_error)?;
                    for row in outbox.rows.values() {
                        insert_without_id(tx, "webhook_outbox", &outbox.columns, row)?;
                    }
                    let mut last = after;
                    let id_at = attempts.columns.iter().position(|c| c == "id").unwrap_or(0);
                    let mut fresh: Vec<&Row> = attempts.rows.values().collect();
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
                    Ok((changed, kept, last, dst_whole, dst_files))
                },
                None,
            )
            .await?;
        copied.content = content;
        copied.dst_whole = dst_whole;
        copied.dst_files = dst_files;
        copied.attempts_after = attempts_after;
        let changed = changed + pre_inserted;
        copied.rows += changed;
        copied.rounds += 1;
        tracing::info!(
            tenant = %tenant,
            round = copied.rounds,
            changed,
            files_ms,
            read_ms,
            total_ms = round_started.elapsed().as_millis() as u64,
            "move round"
        );
        Ok(changed)
    }

    /// Begins a read transaction on `conn` held open: it sees the database as it is now for as
    /// long as it lives (WAL), so a comparison can run after the fence is lifted.
    fn snapshot(conn: &Connection) -> Result<()> {
        conn.execute_batch("BEGIN").map_err(sql_error)?;
        conn.query_row("SELECT COUNT(*) FROM tenants", [], |_| Ok(())).map_err(sql_error)
    }

    /// Whether every row of the tenant is the same in two snapshots (files by metadata and ETag).
    async fn same_in(a: Connection, b: Connection, tenant: &TenantId) -> Result<bool> {
        let t = tenant.clone();
        tokio::task::spawn_blocking(move || {
            let (x, y) = (digest_of(t.clone())(&a)?, digest_of(t)(&b)?);
            for (i, (name, ..)) in TABLES.iter().enumerate() {
                if x.0[i] != y.0[i] {
                    tracing::error!(table = name, before = x.0[i].len(), after = y.0[i].len(), "moved rows differ");
                }
            }
            if x.1 != y.1 {
                tracing::error!(before = x.1.len(), after = y.1.len(), "moved files differ");
            }
            Ok(x == y)
        })
        .await
        .map_err(|e| Error::internal(format!("move task failed: {e}")))?
    }

    /// Every file's bytes in `pool` hash to its ETag. An external body was not copied (the copy
    /// names the same file), so for it what is checked is that the file is there with the size the
    /// row says: a name the catch-up left stale would point at a body already unlinked.
    async fn bytes_match_etags(pool: &Arc<Database>, blobs: Arc<Blobs>, tenant: &TenantId) -> Result<bool> {
        let t = tenant.clone();
        crate::pool::read_on(pool.clone(), move |c| {
            let mut s = c
                .prepare(
                    "SELECT f.path, f.etag, f.size, c.content, c.blob, c.id IS NULL
                     FROM files f LEFT JOIN file_content c ON c.id = f.content_id AND c.tenant_id = f.tenant_id
                     WHERE f.tenant_id = ?1",
                )
                .map_err(sql_error)?;
            let mut q = s.query([t.as_str()]).map_err(sql_error)?;
            let mut external = Vec::new();
            while let Some(r) = q.next().map_err(sql_error)? {
                let path: String = r.get(0).map_err(sql_error)?;
                let size: i64 = r.get(2).map_err(sql_error)?;
                if r.get::<_, bool>(5).map_err(sql_error)? {
                    // A file row and its body are written in one transaction: this snapshot
                    // holds both or neither.
                    tracing::error!(tenant = %t, path, "a moved file names no body of its tenant");
                    return Ok(false);
                }
                if let Some(name) = r.get::<_, Option<String>>(4).map_err(sql_error)? {
                    external.push((path, name, size));
                    continue;
                }
                let etag: String = r.get(1).map_err(sql_error)?;
                let bytes: Vec<u8> = r.get(3).map_err(sql_error)?;
                if tenantry_core::store::etag_of(&bytes) != etag {
                    return Ok(false);
                }
            }
            for (path, name, size) in external {
                if blobs.size(&t, &name) == Some(size as u64) {
                    continue;
                }
                // The tenant serves again: a write since the scan may have replaced the file
                // and unlinked the body; only a row that still names a missing body is a fault.
                let now: Option<Option<String>> = c
                    .query_row(
                        "SELECT c.blob FROM files f JOIN file_content c ON c.id = f.content_id AND c.tenant_id = f.tenant_id
                         WHERE f.tenant_id = ?1 AND f.path = ?2",
                        params![t.as_str(), path],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql_error)?;
                if now.flatten().as_deref() == Some(name.as_str()) {
                    tracing::error!(tenant = %t, path, "a moved file's body is missing or has the wrong size");
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
            Placement::Shared => delete_from_shared(self, tenant).await,
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
            Placement::Shared => {
                // Nothing of the tenant may be there already (a failed move's rows were rolled
                // back; this makes sure): each round diffs against what it wrote itself.
                let t = tenant.clone();
                self.shared.write(None, move |tx| delete_tenant_rows_tx(tx, &t, false), None).await?;
                self.shared.clone()
            }
        };
        // The tenant's search segments stay as they are at both ends until the move ends, so
        // they are copied once (`SyncBy::Once`).
        // `move_tenant` lets them go once the move (or its rollback) is over.
        pause_search(&src, tenant).await?;
        pause_search(&dst, tenant).await?;
        self.copy_and_switch(tenant, from, to, &src, &dst, progress, report, started).await
    }

    /// The copy rounds, the fenced one and the switch of [`Self::run_move`].
    #[allow(clippy::too_many_arguments)]
    async fn copy_and_switch(
        &self,
        tenant: &TenantId,
        from: Placement,
        to: Placement,
        src: &Arc<Database>,
        dst: &Arc<Database>,
        progress: &(dyn Fn(MoveProgress) + Send + Sync),
        report: &mut MoveReport,
        started: Instant,
    ) -> Result<()> {
        let (src, dst) = (src.clone(), dst.clone());
        let gate = self.routes.install_fence(tenant);
        let mut copied = Copied::default();
        // Rounds while the tenant serves, until one is short (the fenced round will be about as
        // long as the last open one, having about as much to catch up on).
        for _ in 0..MAX_OPEN_ROUNDS {
            let round = Instant::now();
            let changed = self.sync_round(&src, &dst, tenant, &mut copied, progress).await?;
            if changed <= SMALL_ROUND || round.elapsed() <= SHORT_ROUND {
                break;
            }
        }
        // Opened now, begun at the switch: the fence holds only what must be inside it.
        let (before, after) = (crate::pool::plain(&src.path)?, crate::pool::plain(&dst.path)?);
        // Writes wait from the moment the gate starts closing (new ones queue behind it).
        let fence = Instant::now();
        let closed = crate::placement::Routes::close(&gate).await;
        let drained_ms = fence.elapsed().as_millis() as u64;
        // No progress is reported under the fence: a slow listener would hold the tenant's
        // writes longer.
        self.sync_round(&src, &dst, tenant, &mut copied, &|_| {}).await?;
        let synced_ms = fence.elapsed().as_millis() as u64;
        // Both as they are at the switch, compared once the fence is lifted.
        Self::snapshot(&before)?;
        Self::snapshot(&after)?;
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
        tracing::info!(tenant = %tenant, drained_ms, synced_ms, fence_ms = report.fence_ms, "move switched");
        report.copy_ms = started.elapsed().as_millis() as u64;
        report.rows = copied.rows;
        report.rounds = copied.rounds;
        let t = tenant.clone();
        let (files, bytes) = crate::pool::read_on(dst.clone(), move |c| {
            c.query_row("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE tenant_id = ?1", [t.as_str()], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
            .map_err(sql_error)
        })
        .await?;
        report.files = files;
        report.file_bytes = bytes;
        report.verified = Self::same_in(before, after, tenant).await?
            && Self::bytes_match_etags(&dst, self.blobs.clone(), tenant).await?;
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

/// Stops the tenant's search upkeep in `db`, on its writer, so that no step of it is under way
/// once this returns.
async fn pause_search(db: &Arc<Database>, tenant: &TenantId) -> Result<()> {
    let t = tenant.clone();
    db.write(
        None,
        move |_| {
            crate::search_upkeep::pause(&t);
            Ok(())
        },
        None,
    )
    .await
}

/// Catch-up rounds made at most before the fence, and the size of a round (rows changed) small
/// enough to close the fence after it.
const MAX_OPEN_ROUNDS: usize = 8;
/// Rows per job when a round's inserts are split off its transaction.
const INSERT_CHUNK: usize = 2000;
const SMALL_ROUND: u64 = 500;
const SHORT_ROUND: std::time::Duration = std::time::Duration::from_millis(60);

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
        let settled = match moved {
            // Not switched (the switch is the last step that can fail before the old copy is
            // dropped, and it is one transaction): roll back to where the tenant was.
            Err(e) if self.routes.is_dedicated(&tenant) == (from == Placement::Dedicated) => {
                rollback(self, &tenant, to).await.and(Err(e))
            }
            other => other,
        };
        // The tenant's search upkeep goes on where it is now.
        crate::search_upkeep::unpause(&tenant);
        if let Ok(db) = self.pool_of(&tenant) {
            db.tails().search().resume(&tenant);
        }
        settled.map(|()| report)
    }
}

/// Deletes what a move that did not switch copied to `to`, and its moves row.
async fn rollback(store: &SqliteStore, tenant: &TenantId, to: Placement) -> Result<()> {
    match to {
        Placement::Dedicated => store.dedicated.delete_files(tenant)?,
        Placement::Shared => delete_from_shared(store, tenant).await?,
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
    let current = crate::tenants::tenant_record(tx, &t.id)?;
    match current {
        Some(c) if c == Tenant { placement: c.placement, ..t.clone() } => Ok(0),
        Some(_) => crate::tenants::write_tenant_row(tx, &t, false).map(|_| 1),
        None => {
            t.placement = if dst_is_dedicated { Placement::Dedicated } else { Placement::Shared };
            crate::tenants::write_tenant_row(tx, &t, true).map(|_| 1)
        }
    }
}

use tenantry_core::model::Tenant;

/// Settles a move a crash interrupted: one not yet switched is rolled back (its copy deleted);
/// one switched is finished (the old copy deleted).
pub(crate) fn settle_moves(store: &SqliteStore, shared: &mut Connection) -> Result<()> {
    let moves: Vec<(String, String, String)> = shared
        .prepare("SELECT tenant_id, to_placement, phase FROM moves")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(sql_error)?;
    for (id, to, phase) in moves {
        let tenant = TenantId::parse(&id).ok_or_else(|| crate::error::corrupt("tenant id"))?;
        let to = Placement::parse(&to).ok_or_else(|| crate::error::corrupt("placement"))?;
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
        for (name, col, key, _) in TABLES {
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

/// Runs `f` in one read transaction: every query in it sees the same state of the database
/// (outside one, each statement would see the latest commit).
fn in_snapshot<T>(c: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    c.execute_batch("BEGIN").map_err(sql_error)?;
    let out = f(c);
    let _ = c.execute_batch("COMMIT");
    out
}

/// Rows deleted per write job when a copy leaves the shared database.
const DELETE_BATCH: i64 = 2000;

/// Deletes the tenant's data rows from the shared database in small write jobs that take their
/// turn with every other tenant's writes (one transaction for a large tenant would hold the
/// shared writer for seconds, and `secure_delete` zeroes every page it frees). Registry rows stay.
async fn delete_from_shared(store: &SqliteStore, tenant: &TenantId) -> Result<()> {
    let owner = Some(crate::pool::owner_of(tenant));
    // Files with their bytes, a few hundred at a time.
    loop {
        let t = tenant.clone();
        let n = store
            .shared
            .write(
                owner,
                move |tx| {
                    let batch: Vec<(i64, i64)> = tx
                        .prepare_cached("SELECT rowid, content_id FROM files WHERE tenant_id = ?1 LIMIT 200")
                        .and_then(|mut s| s.query_map([t.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                        .map_err(sql_error)?;
                    for (row, content) in &batch {
                        // Rows only: the bodies they name are the new place's now.
                        crate::files::drop_content_row_tx(tx, &t, *content)?;
                        tx.execute("DELETE FROM files WHERE rowid = ?1", [row]).map_err(sql_error)?;
                    }
                    Ok(batch.len())
                },
                None,
            )
            .await?;
        if n == 0 {
            break;
        }
    }
    let mut batches = Vec::new();
    for (table, key) in [
        ("audit", "seq"),
        ("events", "seq"),
        ("search_docs", "(kind, doc)"),
        ("search_tail", "(kind, doc)"),
        ("search_segment_terms", "(seg, term)"),
        ("search_segment_docs", "(seg, chunk)"),
        ("search_segments", "seg"),
        ("search_pending", "seg"),
        ("memory", "rowid"),
        ("keys", "rowid"),
        ("webhook_attempts", "rowid"),
        ("webhook_outbox", "rowid"),
    ] {
        let cols = key.trim_matches(|c| c == '(' || c == ')');
        batches.push(format!(
            "DELETE FROM {table} WHERE tenant_id = ?1 AND {key} IN
               (SELECT {cols} FROM {table} WHERE tenant_id = ?1 LIMIT ?2)"
        ));
    }
    // The tails through their index, and their short unindexed end (never a scan of a whole tail).
    for log in [crate::tails::Log::Audit, crate::tails::Log::Events] {
        for ids in log.tenant_tail_ids() {
            batches.push(format!("DELETE FROM {} WHERE id IN ({ids} LIMIT ?2)", log.tail()));
        }
    }
    for sql in batches {
        loop {
            let (t, sql) = (tenant.clone(), sql.clone());
            let n = store
                .shared
                .write(owner, move |tx| tx.execute(&sql, params![t.as_str(), DELETE_BATCH]).map_err(sql_error), None)
                .await?;
            if n == 0 {
                break;
            }
        }
    }
    // What is left is small (usage counters, webhooks, staged imports).
    let t = tenant.clone();
    store.shared.write(owner, move |tx| delete_tenant_rows_tx(tx, &t, false), None).await
}
