//! The copy of one tenant's rows from one database to another in rounds, each bringing the
//! target up to date with a snapshot of the source, and the comparison of both sides.
//!
//! A round costs what changed since the last one, not what the tenant holds: the files and the
//! search index follow the tenant's journal (the paths its events name since the last round,
//! as the SQLite backend's rounds do), the append-only tables their `seq`, file bodies the files
//! that name them; only the small tables are read whole, by each row's version (`xmin`, which
//! every insert and update renews). The first round, and one after an import (whose event names
//! no path), reads the files and the index by version too.
//!
//! Rows travel as JSON: `to_jsonb` in the source, `jsonb_populate_recordset` in the target, so
//! one statement serves every table and the node never decodes a column.

use crate::error::pg_error;
use crate::search::{kind_code, memory_doc};
use deadpool_postgres::Transaction;
use futures_util::future::try_join_all;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tenantry_core::events::types as event_types;
use tenantry_core::ids::TenantId;
use tenantry_core::memory::SEPARATOR;
use tenantry_core::search::DocKind;
use tenantry_core::store::MoveProgress;
use tenantry_core::{Error, Result};
use tokio_postgres::types::ToSql;

/// How a table is brought up to date in each round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SyncBy {
    /// Every row's key and version read; rows new or changed since the last round copied, rows
    /// gone deleted. For small tables, and rows that change in place.
    Versions,
    /// Rows only ever added, numbered by `seq` under the tenant's lock (so a snapshot holds a
    /// prefix of them), and pruned from the oldest: the rows past the last copied, and the
    /// target's rows below the source's lowest deleted.
    Append,
    /// The files: the paths named by the file events since the last round.
    ByPath,
    /// The search index: the documents of the files and memory entries changed since the last
    /// round, replaced whole (a document's postings are found through its list of terms).
    ByDoc,
    /// File bodies, which never change: the chunks of bodies named by the copied files and
    /// staged import files that are not in the target yet; those named no more are deleted.
    ByBody,
}

/// A table moved with its tenant: its name, the column naming the tenant, its key columns after
/// that one, and how each round brings it up to date.
pub(super) struct Moved {
    pub(super) table: &'static str,
    pub(super) tenant_column: &'static str,
    pub(super) key: &'static [&'static str],
    pub(super) by: SyncBy,
    /// Copied only under the fence: the usage row (the target's upkeep would take the tenant
    /// for one of its own there) and the webhook outbox (its deliveries would go out from both).
    pub(super) fenced_only: bool,
}

const fn moved(table: &'static str, key: &'static [&'static str], by: SyncBy, fenced_only: bool) -> Moved {
    Moved { table, tenant_column: "tenant_id", key, by, fenced_only }
}

/// Every table of a tenant's own (not the registry's `tenant_domains`, nor `usage_daily`, which
/// stay in the shared database; the `tenants` row is [`TENANT_COPY`]).
pub(super) const MOVED: &[Moved] = &[
    moved("tenant_usage", &[], SyncBy::Versions, true),
    moved("keys", &["id"], SyncBy::Versions, false),
    moved("memberships", &["user_id"], SyncBy::Versions, false),
    moved("audit_anchor", &[], SyncBy::Versions, false),
    moved("audit", &["seq"], SyncBy::Append, false),
    moved("events", &["seq"], SyncBy::Append, false),
    moved("files", &["path"], SyncBy::ByPath, false),
    moved("file_chunks", &["body_id", "n"], SyncBy::ByBody, false),
    moved("memory", &["namespace", "key"], SyncBy::Versions, false),
    moved("search_docs", &["kind", "doc"], SyncBy::ByDoc, false),
    moved("search_postings", &["term", "kind", "doc"], SyncBy::ByDoc, false),
    moved("webhooks", &["id"], SyncBy::Versions, false),
    moved("webhook_outbox", &["id"], SyncBy::Versions, true),
    moved("webhook_attempts", &["webhook_id", "n"], SyncBy::Versions, false),
    moved("imports", &["id"], SyncBy::Versions, false),
    moved("import_files", &["import_id", "n"], SyncBy::Versions, false),
    moved("import_records", &["import_id", "n"], SyncBy::Versions, false),
    moved("event_relays", &["relay"], SyncBy::Versions, false),
];

/// A dedicated database's copy of the tenant's record (the registry's row stays where it is).
pub(super) const TENANT_COPY: Moved =
    Moved { table: "tenants", tenant_column: "id", key: &[], by: SyncBy::Versions, fenced_only: false };

/// Keys fetched or deleted per statement in a large round.
const FETCH_KEYS: usize = 1000;
/// Rows of an append-only table read per statement.
const APPEND_PAGE: i64 = 2000;
/// A round of at most this many new or changed rows reads and writes them in one flight each.
const PIPELINED_ROWS: usize = 2000;
/// The JSON bytes one insert carries at most, and the body bytes one chunk read asks for.
const INSERT_BYTES: usize = 4 << 20;
const CHUNK_READ_BYTES: i64 = 4 << 20;

impl Moved {
    /// The scan of a round: each row's key columns as text, then its version (`xmin`). Plain
    /// columns: building the key's JSON here, not in the server, halves the scan.
    /// A table of one row (no key columns after the tenant's) is read whole with its version.
    fn scan(&self) -> String {
        let keys: Vec<String> = self.key.iter().map(|k| format!("x.{k}::text")).collect();
        let mut columns = keys.join(", ");
        if !columns.is_empty() {
            columns.push_str(", ");
        }
        let whole = if self.key.is_empty() { ", to_jsonb(x)::text" } else { "" };
        format!("SELECT {columns}x.xmin::text{whole} FROM {} x WHERE x.{} = $1", self.table, self.tenant_column)
    }

    /// A row's key as a JSON object (values as text, which `jsonb_populate_recordset` reads into
    /// each column's type), the tenant column included, always built the same way.
    fn key_from<'v>(&self, tenant: &str, values: impl IntoIterator<Item = &'v str>) -> String {
        let mut key = serde_json::Map::new();
        key.insert(self.tenant_column.to_owned(), serde_json::Value::from(tenant));
        for (k, v) in self.key.iter().zip(values) {
            key.insert((*k).to_owned(), serde_json::Value::from(v));
        }
        serde_json::Value::Object(key).to_string()
    }

    /// A scanned row's key.
    fn key_of(&self, tenant: &str, row: &tokio_postgres::Row) -> String {
        let values: Vec<String> = (0..self.key.len()).map(|i| row.get::<_, String>(i)).collect();
        self.key_from(tenant, values.iter().map(String::as_str))
    }

    /// A copied row's key, read from its JSON.
    fn key_in(&self, tenant: &str, row: &serde_json::Value) -> String {
        let values: Vec<String> = self
            .key
            .iter()
            .map(|k| match &row[*k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        self.key_from(tenant, values.iter().map(String::as_str))
    }

    /// What the comparison hashes of a row: all of it, but the record's placement (which the
    /// switch changes in the target first).
    fn hashed(&self) -> &'static str {
        match self.table {
            "tenants" => "md5((to_jsonb(x) - 'placement')::text)",
            _ => "md5(x::text)",
        }
    }

    fn key_columns(&self) -> String {
        std::iter::once(self.tenant_column).chain(self.key.iter().copied()).collect::<Vec<_>>().join(", ")
    }

    /// The rows whose keys are given as a JSON array, each as its JSON.
    fn fetch(&self) -> String {
        format!(
            "SELECT to_jsonb(x)::text FROM {0} x WHERE x.{2} = $1 AND ({1}) IN
               (SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, $2::text::jsonb))",
            self.table,
            self.key_columns(),
            self.tenant_column
        )
    }

    /// Deletes the rows whose keys are given as a JSON array.
    fn delete(&self) -> String {
        format!(
            "DELETE FROM {0} WHERE {2} = $1 AND ({1}) IN
               (SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, $2::text::jsonb))",
            self.table,
            self.key_columns(),
            self.tenant_column
        )
    }
}

fn table(name: &str) -> &'static Moved {
    MOVED.iter().find(|t| t.table == name).unwrap_or(&TENANT_COPY)
}

/// Keys (JSON objects) as one JSON array.
fn within<S: AsRef<str>>(keys: &[S]) -> String {
    let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
    format!("[{}]", keys.join(","))
}

/// Rows of one table copied so far: key → the source's row version then ("": not known, so
/// copied again by the next round that reads versions).
type Versions = HashMap<String, String>;

/// A read of rows from the source, to be upserted into one table of the target.
struct Copy {
    table: &'static Moved,
    sql: String,
    /// The statement's parameters after the tenant's id.
    param: Param,
}

enum Param {
    /// A JSON array of keys or values, as text.
    Json(String),
    /// Body ids, first and last-but-one chunk numbers.
    Ranges(Vec<i64>, Vec<i32>, Vec<i32>),
}

impl Param {
    fn as_sql(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Param::Json(json) => vec![json as _],
            Param::Ranges(bodies, from, to) => vec![bodies as _, from as _, to as _],
        }
    }
}

/// A statement on the target run before a round's copies (deletes, in order).
struct Delete {
    sql: String,
    json: Option<String>,
    first_kept: Option<i64>,
}

/// One move's copying state.
pub(super) struct Copier<'a> {
    pub(super) tenant: &'a TenantId,
    pub(super) tables: Vec<&'static Moved>,
    /// Per table read by versions: what the target holds, as versions of the source.
    seen: HashMap<&'static str, Versions>,
    /// Per append-only table, the highest `seq` copied.
    appended: HashMap<&'static str, i64>,
    /// Whether a round has run (the next may follow the journal).
    begun: bool,
    /// Whether a round followed the journal since the files and the index were last read by
    /// versions (their `seen` is then out of date: the next such read takes the target's keys).
    journal_since_versions: bool,
    /// The body (id, size) each copied file and staged import file names, by its key.
    bodies: HashMap<&'static str, HashMap<String, (i64, i64)>>,
    /// Bodies whose chunks the target holds.
    copied_bodies: HashSet<i64>,
    /// Non-key columns of each table, for the upsert.
    columns: HashMap<&'static str, Vec<String>>,
    /// Whether both sides were compared whole before the fence.
    pub(super) compared: bool,
    pub(super) rows: u64,
    pub(super) copied_bytes: u64,
    pub(super) total_bytes: u64,
    pub(super) progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
}

/// What a round changes in a table read by versions: the keys of its rows gone from the source
/// since the last round, and of those new or changed.
struct Plan {
    table: &'static Moved,
    gone: Vec<String>,
    fresh: Vec<String>,
}

impl<'a> Copier<'a> {
    pub(super) fn new(
        tenant: &'a TenantId,
        tables: Vec<&'static Moved>,
        columns: HashMap<&'static str, Vec<String>>,
        total_bytes: u64,
        progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
    ) -> Copier<'a> {
        Copier {
            tenant,
            tables,
            seen: HashMap::new(),
            appended: HashMap::new(),
            begun: false,
            journal_since_versions: false,
            bodies: HashMap::new(),
            copied_bodies: HashSet::new(),
            columns,
            compared: false,
            rows: 0,
            copied_bytes: 0,
            total_bytes,
            progress,
        }
    }

    pub(super) fn report(&self) {
        (self.progress)(MoveProgress {
            copied_bytes: self.copied_bytes.min(self.total_bytes),
            total_bytes: self.total_bytes,
        });
    }

    /// One round: brings the target (`target`, the round's transaction there) up to date with
    /// the source as `source` sees it; returns how many changes since the last round it found
    /// (rows of the small and append-only tables, paths, documents). `fenced`: under
    /// the fence, with the fenced-only tables.
    pub(super) async fn round(
        &mut self,
        source: &Transaction<'_>,
        target: &Transaction<'_>,
        fenced: bool,
    ) -> Result<u64> {
        let began = Instant::now();
        let id = self.tenant.as_str();
        let active: Vec<&'static Moved> = self.tables.iter().copied().filter(|t| fenced || !t.fenced_only).collect();
        let of = |by: SyncBy| active.iter().copied().filter(move |t| t.by == by).collect::<Vec<_>>();
        let versioned = of(SyncBy::Versions);
        let appending = of(SyncBy::Append);
        // One flight: the small tables' versions, the append-only tables' new rows, and (after
        // the first round) the files, documents and small bodies the new events name.
        let since = self.begun.then(|| self.appended.get("events").copied().unwrap_or(0));
        let (mut scanned, appended, by_events) = tokio::try_join!(
            scan(source, id, &versioned),
            self.read_appended(source, &appending),
            read_by_events(source, id, since)
        )?;
        let scanned_ms = began.elapsed().as_millis();
        // What the journal says changed since the last round.
        let mut by_versions = since.is_none();
        let mut paths: BTreeSet<String> = BTreeSet::new();
        let mut named_docs: BTreeSet<(i16, String)> = BTreeSet::new();
        for e in appended.iter().flat_map(|a| a.events.iter()) {
            match (e.kind.as_str(), &e.path, &e.namespace, &e.key) {
                (event_types::TENANT_IMPORTED, ..) => by_versions = true,
                (event_types::FILE_WRITTEN | event_types::FILE_DELETED, Some(p), ..) => {
                    paths.insert(p.clone());
                    named_docs.insert((kind_code(DocKind::File), p.clone()));
                }
                (event_types::MEMORY_SET | event_types::MEMORY_DELETED, _, Some(ns), Some(k)) => {
                    named_docs.insert((kind_code(DocKind::Memory), memory_doc(ns, k)));
                }
                _ => {}
            }
        }
        let journaled = [of(SyncBy::ByPath), of(SyncBy::ByDoc)].concat();
        if by_versions {
            paths.clear();
            named_docs.clear();
            let more = scan(source, id, &journaled).await?;
            if self.journal_since_versions {
                // What the target holds, in versions no source row has.
                for (t, rows) in journaled.iter().zip(scan(target, id, &journaled).await?) {
                    self.seen.insert(t.table, rows.iter().map(|r| (t.key_of(id, r), String::new())).collect());
                }
                self.journal_since_versions = false;
            }
            scanned.extend(more);
        } else {
            self.journal_since_versions = true;
        }
        let scanned_tables: Vec<&'static Moved> =
            versioned.iter().copied().chain(if by_versions { journaled.clone() } else { Vec::new() }).collect();
        // Rows in hand already: the append-only tables' and what the events named; the rows of
        // the one-row tables come with their versions.
        let mut in_hand: Vec<(&'static Moved, Vec<String>)> = Vec::new();
        let mut plans: Vec<Plan> = Vec::new();
        for (t, rows) in scanned_tables.into_iter().zip(scanned) {
            let now: Versions = rows.iter().map(|r| (t.key_of(id, r), r.get(t.key.len()))).collect();
            let seen = self.seen.entry(t.table).or_default();
            let gone: Vec<String> = seen.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
            let mut fresh: Vec<String> =
                now.iter().filter(|(k, v)| seen.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
            *seen = now;
            if t.key.is_empty() && !fresh.is_empty() {
                in_hand.push((t, rows.iter().map(|r| r.get::<_, String>(1)).collect()));
                fresh.clear();
            }
            if !gone.is_empty() || !fresh.is_empty() {
                plans.push(Plan { table: t, gone, fresh });
            }
        }
        // The search documents to replace: those the events name, and those of memory entries
        // changed without an event (expired).
        let mut docs = named_docs.clone();
        if !by_versions {
            for plan in plans.iter().filter(|p| p.table.table == "memory") {
                for key in plan.gone.iter().chain(&plan.fresh) {
                    let key: serde_json::Value = serde_json::from_str(key).unwrap_or_default();
                    if let (Some(ns), Some(k)) = (key["namespace"].as_str(), key["key"].as_str()) {
                        docs.insert((kind_code(DocKind::Memory), memory_doc(ns, k)));
                    }
                }
            }
        }
        let highest: Vec<(&'static str, Option<i64>)> =
            appending.iter().zip(&appended).map(|(t, a)| (t.table, a.highest)).collect();
        // What changed in the source since the last round (the rows this round deletes or
        // copies again besides are counted in `rows`).
        let changes = plans.iter().map(|p| p.gone.len() + p.fresh.len()).sum::<usize>()
            + in_hand.iter().map(|(_, rows)| rows.len()).sum::<usize>()
            + appended.iter().map(|a| a.rows.len()).sum::<usize>()
            + paths.len()
            + docs.len();
        // The target's deletes, in order (a document's postings are found through its terms
        // before the document goes), and the source's reads still to make.
        let mut deletes: Vec<Delete> = Vec::new();
        let mut copies: Vec<Copy> = Vec::new();
        for plan in &plans {
            for batch in plan.gone.chunks(FETCH_KEYS) {
                deletes.push(Delete { sql: plan.table.delete(), json: Some(within(batch)), first_kept: None });
            }
            for batch in plan.fresh.chunks(FETCH_KEYS) {
                copies.push(Copy { table: plan.table, sql: plan.table.fetch(), param: Param::Json(within(batch)) });
            }
            // Gone rows name their bodies no more.
            if matches!(plan.table.table, "files" | "import_files") {
                let named = self.bodies.entry(plan.table.table).or_default();
                for key in &plan.gone {
                    named.remove(key);
                }
            }
        }
        for (t, a) in appending.iter().zip(appended) {
            // Pruned in the source: every row below its lowest (all copied, if it has none).
            let first_kept = a.lowest.unwrap_or(self.appended.get(t.table).copied().unwrap_or(0) + 1);
            deletes.push(Delete {
                sql: format!("DELETE FROM {} WHERE tenant_id = $1 AND seq < $2", t.table),
                json: None,
                first_kept: Some(first_kept),
            });
            in_hand.push((t, a.rows));
        }
        let mut covered_bodies: HashSet<i64> = HashSet::new();
        if !by_versions {
            let files = table("files");
            let keys: Vec<String> = paths.iter().map(|p| files.key_from(id, [p.as_str()])).collect();
            // Each path names the body its copy brings, if it still has a file.
            let named = self.bodies.entry("files").or_default();
            for key in &keys {
                named.remove(key);
            }
            for batch in keys.chunks(FETCH_KEYS) {
                // Replaced whole: deleted, then what the source has of them (if anything).
                deletes.push(Delete { sql: files.delete(), json: Some(within(batch)), first_kept: None });
            }
            let doc_keys = |docs: &mut dyn Iterator<Item = &(i16, String)>| -> Vec<String> {
                docs.map(|(kind, doc)| table("search_docs").key_from(id, [kind.to_string().as_str(), doc.as_str()]))
                    .collect()
            };
            for batch in doc_keys(&mut docs.iter()).chunks(FETCH_KEYS) {
                let batch = within(batch);
                deletes.push(Delete { sql: DELETE_POSTINGS.to_owned(), json: Some(batch.clone()), first_kept: None });
                deletes.push(Delete { sql: table("search_docs").delete(), json: Some(batch), first_kept: None });
            }
            let unread: Vec<String> = doc_keys(&mut docs.difference(&named_docs));
            for batch in unread.chunks(FETCH_KEYS) {
                let batch = within(batch);
                copies.push(Copy {
                    table: table("search_docs"),
                    sql: table("search_docs").fetch(),
                    param: Param::Json(batch.clone()),
                });
                copies.push(Copy {
                    table: table("search_postings"),
                    sql: FETCH_POSTINGS.to_owned(),
                    param: Param::Json(batch),
                });
            }
            if let Some(by_events) = by_events {
                in_hand.push((files, by_events.files));
                in_hand.push((table("search_docs"), by_events.docs));
                in_hand.push((table("search_postings"), by_events.postings));
                in_hand.push((table("file_chunks"), by_events.chunks));
                covered_bodies = by_events.bodies;
            }
        }
        let planned_ms = began.elapsed().as_millis();
        let appended_rows: usize =
            in_hand.iter().filter(|(t, _)| t.by == SyncBy::Append).map(|(_, rows)| rows.len()).sum();
        let small = plans.iter().map(|p| p.fresh.len()).sum::<usize>() + paths.len() + docs.len() + appended_rows
            <= PIPELINED_ROWS;
        let mut rows = 0u64;
        let bodies = if small {
            // Reads still to make (none, mostly), those of the bodies they name, then every
            // delete and upsert in one flight.
            let fetched = read(source, id, &copies).await?;
            let (mut writes, n) =
                self.prepare(id, in_hand.into_iter().chain(copies.iter().map(|c| c.table).zip(fetched)).collect());
            rows += n;
            // Bodies in the same flight when they are one read (at most CHUNK_READ_BYTES), else
            // read and written one read at a time after it, so memory stays bounded.
            let bodies = self.plan_bodies(&covered_bodies);
            let in_flight = if bodies.reads.len() == 1 { 1 } else { 0 };
            let (now, later) = bodies.reads.split_at(in_flight);
            let chunks = read(source, id, now).await?;
            let (more, n) = self.prepare(id, now.iter().map(|r| r.table).zip(chunks).collect());
            writes.extend(more);
            rows += n;
            rows += run_in_order(target, id, &deletes, &bodies.stale, &writes).await?;
            rows += self.copy_one_at_a_time(source, target, id, later, false).await?;
            bodies
        } else {
            rows += run_in_order(target, id, &deletes, &[], &[]).await?;
            let (writes, n) = self.prepare(id, in_hand);
            rows += n;
            execute(target, &writes).await?;
            rows += self.copy_one_at_a_time(source, target, id, &copies, !fenced).await?;
            let bodies = self.plan_bodies(&covered_bodies);
            rows += run_in_order(target, id, &[], &bodies.stale, &[]).await?;
            rows += self.copy_one_at_a_time(source, target, id, &bodies.reads, !fenced).await?;
            bodies
        };
        self.copied_bodies.retain(|b| !bodies.stale.contains(b));
        self.copied_bodies.extend(bodies.needed.iter().copied());
        self.copied_bodies.extend(covered_bodies);
        for (t, seq) in highest {
            if let Some(seq) = seq {
                self.appended.insert(t, seq);
            }
        }
        self.begun = true;
        self.rows += rows;
        tracing::info!(
            "move round of {}: {changes} changes, {rows} rows copied or deleted in {} ms (read at {scanned_ms}, \
             planned at {planned_ms}; {} paths, {} documents, {} body reads; {})",
            self.tenant,
            began.elapsed().as_millis(),
            paths.len(),
            docs.len(),
            bodies.reads.len(),
            if by_versions { "files and index read by versions" } else { "files and index by the journal" }
        );
        Ok(changes as u64)
    }

    /// The new rows of each append-only table (the events' types and paths besides), and the
    /// lowest `seq` each still has.
    async fn read_appended(&self, source: &Transaction<'_>, tables: &[&'static Moved]) -> Result<Vec<Appended>> {
        let id = self.tenant.as_str();
        try_join_all(tables.iter().map(|t| async move {
            let mut after = self.appended.get(t.table).copied().unwrap_or(0);
            let read_from = after;
            let mut a = Appended { rows: Vec::new(), events: Vec::new(), lowest: None, highest: None };
            let what = match t.table {
                "events" => "x.type, x.path::text, x.namespace, x.key",
                _ => "NULL::text, NULL::text, NULL::text, NULL::text",
            };
            let lowest = format!("SELECT min(seq) FROM {} WHERE tenant_id = $1", t.table);
            let page = format!(
                "SELECT to_jsonb(x)::text, x.seq, {what} FROM {} x WHERE x.tenant_id = $1 AND x.seq > $2
                 ORDER BY x.seq LIMIT {APPEND_PAGE}",
                t.table
            );
            let (by_tenant, from): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 2]) = ([&id], [&id, &after]);
            let (low, mut rows) = tokio::try_join!(query(source, &lowest, &by_tenant), query(source, &page, &from))?;
            a.lowest = low.first().and_then(|r| r.get(0));
            loop {
                let full = rows.len() as i64 == APPEND_PAGE;
                for r in &rows {
                    a.rows.push(r.get::<_, String>(0));
                    after = r.get(1);
                    if t.table == "events" {
                        a.events.push(Event { kind: r.get(2), path: r.get(3), namespace: r.get(4), key: r.get(5) });
                    }
                }
                if after > read_from {
                    a.highest = Some(after);
                }
                if !full {
                    break;
                }
                rows = query(source, &page, &[&id, &after]).await?;
            }
            Ok::<Appended, Error>(a)
        }))
        .await
    }

    /// Reads and upserts each copy in turn (so only one read's rows are held at a time),
    /// reporting progress after each if `report`; the rows upserted.
    async fn copy_one_at_a_time(
        &mut self,
        source: &Transaction<'_>,
        target: &Transaction<'_>,
        id: &str,
        copies: &[Copy],
        report: bool,
    ) -> Result<u64> {
        let mut rows = 0;
        for copy in copies {
            let fetched = read(source, id, std::slice::from_ref(copy)).await?;
            let (writes, n) = self.prepare(id, vec![(copy.table, fetched.into_iter().next().unwrap_or_default())]);
            rows += n;
            execute(target, &writes).await?;
            if report {
                self.report();
            }
        }
        Ok(rows)
    }

    /// The upserts of fetched rows (JSON objects) into their tables, in statements of at most
    /// [`INSERT_BYTES`]; notes the bodies the files and staged files name.
    /// Also returns how many rows they carry.
    fn prepare(&mut self, id: &str, tables: Vec<(&'static Moved, Vec<String>)>) -> (Vec<(String, String)>, u64) {
        let mut writes: Vec<(String, String)> = Vec::new();
        let mut count = 0;
        for (t, rows) in tables {
            if rows.is_empty() {
                continue;
            }
            count += rows.len() as u64;
            match t.table {
                "files" | "import_files" => self.note_bodies(t, id, &rows),
                "file_chunks" => self.copied_bytes += rows.iter().map(|r| r.len() as u64 / 2).sum::<u64>(),
                _ => {}
            }
            let insert = self.insert(t);
            let mut json = String::from("[");
            for row in rows {
                if json.len() > 1 {
                    json.push(',');
                }
                json.push_str(&row);
                if json.len() >= INSERT_BYTES {
                    json.push(']');
                    writes.push((insert.clone(), std::mem::replace(&mut json, String::from("["))));
                }
            }
            if json.len() > 1 {
                json.push(']');
                writes.push((insert, json));
            }
        }
        (writes, count)
    }

    /// Notes the body each copied row of `files` or `import_files` names.
    fn note_bodies(&mut self, t: &'static Moved, id: &str, rows: &[String]) {
        let named = self.bodies.entry(t.table).or_default();
        for row in rows {
            let Ok(row) = serde_json::from_str::<serde_json::Value>(row) else { continue };
            let key = t.key_in(id, &row);
            match (row["body_id"].as_i64(), row["size"].as_i64()) {
                (Some(body), Some(size)) => named.insert(key, (body, size)),
                _ => named.remove(&key),
            };
        }
    }

    /// The bodies named now whose chunks the target lacks, read in pieces of at most
    /// [`CHUNK_READ_BYTES`] (a large body in several), and those the target holds that nothing
    /// names any more.
    /// `covered`: bodies whose chunks are in hand already.
    fn plan_bodies(&self, covered: &HashSet<i64>) -> Bodies {
        let mut named: HashMap<i64, i64> = HashMap::new();
        for bodies in self.bodies.values() {
            named.extend(bodies.values().copied());
        }
        let stale: Vec<i64> = self.copied_bodies.iter().copied().filter(|b| !named.contains_key(b)).collect();
        let mut needed: Vec<(i64, i64)> = named
            .iter()
            .filter(|(b, _)| !self.copied_bodies.contains(b) && !covered.contains(b))
            .map(|(b, s)| (*b, *s))
            .collect();
        needed.sort();
        let chunk = crate::files::CHUNK as i64;
        let per_read = (CHUNK_READ_BYTES / chunk).max(1) as i32;
        let mut reads: Vec<Copy> = Vec::new();
        let mut batch: (Vec<i64>, Vec<i32>, Vec<i32>) = Default::default();
        let mut batch_bytes = 0i64;
        let flush = |batch: &mut (Vec<i64>, Vec<i32>, Vec<i32>), reads: &mut Vec<Copy>| {
            if !batch.0.is_empty() {
                let (b, f, t) = std::mem::take(batch);
                reads.push(Copy {
                    table: table("file_chunks"),
                    sql: FETCH_CHUNKS.to_owned(),
                    param: Param::Ranges(b, f, t),
                });
            }
        };
        for (body, size) in &needed {
            let count = ((size + chunk - 1) / chunk).max(1) as i32;
            let mut from = 0;
            while from < count {
                let to = (from + per_read).min(count);
                let bytes = (i64::from(to - from) * chunk).min(size - i64::from(from) * chunk).max(1);
                if (batch_bytes + bytes > CHUNK_READ_BYTES || batch.0.len() >= FETCH_KEYS) && !batch.0.is_empty() {
                    flush(&mut batch, &mut reads);
                    batch_bytes = 0;
                }
                batch.0.push(*body);
                batch.1.push(from);
                batch.2.push(to);
                batch_bytes += bytes;
                from = to;
            }
        }
        flush(&mut batch, &mut reads);
        Bodies { stale, needed: needed.into_iter().map(|(b, _)| b).collect(), reads }
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

    /// Compares every table on both sides, each by its row count and a hash of every row in key
    /// order (file chunks with their bytes), the first difference an error. `fenced`: with the
    /// fenced-only tables (both sides as at the switch).
    pub(super) async fn compare(&self, source: &Transaction<'_>, target: &Transaction<'_>, fenced: bool) -> Result<()> {
        let sqls: Vec<(&str, String)> = self
            .tables
            .iter()
            .filter(|t| fenced || !t.fenced_only)
            .map(|t| {
                (
                    t.table,
                    format!(
                        "SELECT count(*), md5(string_agg({}, ',' ORDER BY {})) FROM {} x WHERE x.{} = $1",
                        t.hashed(),
                        t.key_columns(),
                        t.table,
                        t.tenant_column
                    ),
                )
            })
            .collect();
        let id = self.tenant.as_str();
        let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
        let (here, there) = tokio::try_join!(
            try_join_all(sqls.iter().map(|(_, sql)| query_one(source, sql.as_str(), &by_tenant))),
            try_join_all(sqls.iter().map(|(_, sql)| query_one(target, sql.as_str(), &by_tenant)))
        )?;
        for (((table, _), here), there) in sqls.iter().zip(here).zip(there) {
            let (a, b): ((i64, Option<String>), (i64, Option<String>)) =
                ((here.get(0), here.get(1)), (there.get(0), there.get(1)));
            if a != b {
                return Err(Error::internal(format!(
                    "moving {}: {table} differs after copying ({} rows here, {} there)",
                    self.tenant, a.0, b.0
                )));
            }
        }
        Ok(())
    }
}

/// A new event as a round reads it: what the journal says changed.
struct Event {
    kind: String,
    path: Option<String>,
    namespace: Option<String>,
    key: Option<String>,
}

/// What a round read of an append-only table: its new rows (JSON), each event's type and names,
/// the lowest `seq` the source still has, and the highest read.
struct Appended {
    rows: Vec<String>,
    events: Vec<Event>,
    lowest: Option<i64>,
    /// The highest `seq` read (none: nothing new).
    highest: Option<i64>,
}

/// What a round does about file bodies: the reads of those the target lacks, their ids, and
/// the ids of those to delete there.
struct Bodies {
    reads: Vec<Copy>,
    needed: Vec<i64>,
    stale: Vec<i64>,
}

/// Runs upserts in one flight.
async fn execute(target: &Transaction<'_>, writes: &[(String, String)]) -> Result<()> {
    let params: Vec<[&(dyn ToSql + Sync); 1]> = writes.iter().map(|(_, json)| [json as _]).collect();
    let statements = try_join_all(writes.iter().map(|(sql, _)| target.prepare_cached(sql))).await.map_err(pg_error)?;
    try_join_all(statements.iter().zip(&params).map(|(st, p)| target.execute(st, p))).await.map_err(pg_error)?;
    Ok(())
}

/// The rows of the files, search documents and small bodies the events past `since` name (the
/// rounds after the first), read in the same flight as the events themselves.
async fn read_by_events(source: &Transaction<'_>, id: &str, since: Option<i64>) -> Result<Option<ByEvents>> {
    let Some(since) = since else { return Ok(None) };
    let (file, memory, separator) = (kind_code(DocKind::File), kind_code(DocKind::Memory), SEPARATOR.to_string());
    let by_path: [&(dyn ToSql + Sync); 2] = [&id, &since];
    let by_doc: [&(dyn ToSql + Sync); 5] = [&id, &since, &file, &memory, &separator];
    let (small, most): (i64, i64) = (SMALL_BODY, SMALL_BODIES);
    let by_body: [&(dyn ToSql + Sync); 4] = [&id, &since, &small, &most];
    let (files, docs, postings, chunks) = tokio::try_join!(
        query(source, FILES_BY_EVENTS, &by_path),
        query(source, DOCS_BY_EVENTS, &by_doc),
        query(source, POSTINGS_BY_EVENTS, &by_doc),
        query(source, CHUNKS_BY_EVENTS, &by_body)
    )?;
    let text = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>();
    Ok(Some(ByEvents {
        bodies: chunks.iter().map(|r| r.get::<_, i64>(1)).collect(),
        chunks: chunks.iter().filter_map(|r| r.get::<_, Option<String>>(0)).collect(),
        files: text(files),
        docs: text(docs),
        postings: text(postings),
    }))
}

/// What the events past the last round name, read with them: the files at their paths, the
/// search documents of those and of the memory entries, and the bodies of the small files (all
/// of each body: one chunk at most).
struct ByEvents {
    files: Vec<String>,
    docs: Vec<String>,
    postings: Vec<String>,
    chunks: Vec<String>,
    bodies: HashSet<i64>,
}

/// The paths the file events past `$2` name.
macro_rules! named_paths {
    () => {
        "SELECT e.path FROM events e WHERE e.tenant_id = $1 AND e.seq > $2
           AND e.type IN ('file.written', 'file.deleted') AND e.path IS NOT NULL"
    };
}

/// The search documents (kind, id) the file and memory events past `$2` name (`$3`, `$4`: the
/// kinds' codes; `$5`: the separator of a memory entry's namespace and key).
macro_rules! named_docs {
    () => {
        "SELECT CASE WHEN e.type LIKE 'file.%' THEN $3::int2 ELSE $4::int2 END AS kind,
                CASE WHEN e.type LIKE 'file.%' THEN e.path::text COLLATE \"C\"
                     ELSE (e.namespace || $5::text || e.key) COLLATE \"C\" END AS doc
           FROM events e WHERE e.tenant_id = $1 AND e.seq > $2
           AND e.type IN ('file.written', 'file.deleted', 'memory.set', 'memory.deleted')"
    };
}

const FILES_BY_EVENTS: &str =
    concat!("SELECT to_jsonb(f)::text FROM files f WHERE f.tenant_id = $1 AND f.path IN (", named_paths!(), ")");

const DOCS_BY_EVENTS: &str = concat!(
    "SELECT to_jsonb(d)::text FROM search_docs d WHERE d.tenant_id = $1 AND (d.kind, d.doc) IN (",
    named_docs!(),
    ")"
);

const POSTINGS_BY_EVENTS: &str = concat!(
    "SELECT to_jsonb(p)::text FROM search_docs d
       CROSS JOIN LATERAL unnest(string_to_array(d.terms, ' ')) AS w(term)
       JOIN search_postings p ON p.tenant_id = d.tenant_id AND p.term = w.term COLLATE \"C\"
         AND p.kind = d.kind AND p.doc = d.doc
     WHERE d.tenant_id = $1 AND (d.kind, d.doc) IN (",
    named_docs!(),
    ")"
);

/// The bodies of the files the events name of at most `$3` bytes (one chunk each, or none), at
/// most `$4` of them: each row a whole body.
const CHUNKS_BY_EVENTS: &str = concat!(
    "SELECT to_jsonb(c)::text, f.body_id FROM files f
       LEFT JOIN file_chunks c ON c.tenant_id = f.tenant_id AND c.body_id = f.body_id
     WHERE f.tenant_id = $1 AND f.size <= $3 AND f.path IN (",
    named_paths!(),
    ") LIMIT $4"
);

/// A body read with the events that name its file: at most one chunk's bytes, and so many.
const SMALL_BODY: i64 = 64 << 10;
const SMALL_BODIES: i64 = 64;
// Each row of CHUNKS_BY_EVENTS is then a whole body: its LIMIT cannot cut one in two.
const _: () = assert!(SMALL_BODY <= crate::files::CHUNK as i64);

/// The chunks of bodies, each from a first chunk number to one before a last.
const FETCH_CHUNKS: &str = "SELECT to_jsonb(c)::text FROM file_chunks c
    JOIN unnest($2::int8[], $3::int4[], $4::int4[]) AS r(body, first, past)
      ON c.body_id = r.body AND c.n >= r.first AND c.n < r.past
    WHERE c.tenant_id = $1";

/// The postings of the search documents whose keys are given, found through their lists of
/// terms.
const FETCH_POSTINGS: &str = "SELECT to_jsonb(p)::text FROM search_docs d
    CROSS JOIN LATERAL unnest(string_to_array(d.terms, ' ')) AS w(term)
    JOIN search_postings p ON p.tenant_id = d.tenant_id AND p.term = w.term COLLATE \"C\"
      AND p.kind = d.kind AND p.doc = d.doc
    WHERE d.tenant_id = $1 AND (d.tenant_id, d.kind, d.doc) IN
      (SELECT tenant_id, kind, doc FROM jsonb_populate_recordset(NULL::search_docs, $2::text::jsonb))";

/// Deletes the postings of the search documents whose keys are given (the target's, found
/// through its lists of terms).
const DELETE_POSTINGS: &str = "DELETE FROM search_postings p
    USING search_docs d, unnest(string_to_array(d.terms, ' ')) AS w(term)
    WHERE d.tenant_id = $1 AND (d.tenant_id, d.kind, d.doc) IN
      (SELECT tenant_id, kind, doc FROM jsonb_populate_recordset(NULL::search_docs, $2::text::jsonb))
      AND p.tenant_id = d.tenant_id AND p.term = w.term COLLATE \"C\" AND p.kind = d.kind AND p.doc = d.doc";

/// A query by a statement prepared once per connection (a statement given as text takes a
/// round trip of its own to be prepared, every time).
async fn query(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query(&statement, params).await.map_err(pg_error)
}

async fn query_one(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<tokio_postgres::Row> {
    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query_one(&statement, params).await.map_err(pg_error)
}

/// Every table's keys and row versions in `tx`, in one flight.
async fn scan(tx: &Transaction<'_>, id: &str, tables: &[&'static Moved]) -> Result<Vec<Vec<tokio_postgres::Row>>> {
    let scans: Vec<String> = tables.iter().map(|t| t.scan()).collect();
    let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
    try_join_all(scans.iter().map(|sql| query(tx, sql.as_str(), &by_tenant))).await
}

/// The source's rows for each copy, as JSON, in one flight.
async fn read(source: &Transaction<'_>, id: &str, copies: &[Copy]) -> Result<Vec<Vec<String>>> {
    let params: Vec<Vec<&(dyn ToSql + Sync)>> =
        copies.iter().map(|c| std::iter::once(&id as &(dyn ToSql + Sync)).chain(c.param.as_sql()).collect()).collect();
    let fetched =
        try_join_all(copies.iter().zip(&params).map(|(c, p)| query(source, c.sql.as_str(), p.as_slice()))).await?;
    Ok(fetched.into_iter().map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect()).collect())
}

/// Runs the deletes in order, then the delete of stale bodies' chunks, then the upserts, in
/// one flight; the rows deleted. The statements are prepared first (each connection keeps
/// them: after the first round, no round trip), so each goes out when first polled, in order:
/// a statement given as text would go out only once its own preparation is answered, in
/// whatever order the futures are polled then.
async fn run_in_order(
    target: &Transaction<'_>,
    id: &str,
    deletes: &[Delete],
    stale_bodies: &[i64],
    writes: &[(String, String)],
) -> Result<u64> {
    let stale = stale_bodies.to_vec();
    let mut ordered: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = deletes
        .iter()
        .map(|d| {
            let mut p: Vec<&(dyn ToSql + Sync)> = vec![&id];
            if let Some(json) = &d.json {
                p.push(json);
            }
            if let Some(first) = &d.first_kept {
                p.push(first);
            }
            (d.sql.as_str(), p)
        })
        .collect();
    if !stale.is_empty() {
        ordered.push(("DELETE FROM file_chunks WHERE tenant_id = $1 AND body_id = ANY($2)", vec![&id, &stale]));
    }
    let deleting = ordered.len();
    ordered.extend(writes.iter().map(|(sql, json)| (sql.as_str(), vec![json as &(dyn ToSql + Sync)])));
    let statements = try_join_all(ordered.iter().map(|(sql, _)| target.prepare_cached(sql))).await.map_err(pg_error)?;
    let counts = try_join_all(statements.iter().zip(&ordered).map(|(st, (_, p))| target.execute(st, p.as_slice())))
        .await
        .map_err(pg_error)?;
    Ok(counts.into_iter().take(deleting).sum())
}
