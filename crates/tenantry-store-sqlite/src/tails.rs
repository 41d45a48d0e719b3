//! Log tails: how the audit and event logs stay cheap to write when many tenants write at once.
//!
//! Both logs are read by tenant and seq. Kept in tables keyed `(tenant_id, seq)` and written entry
//! by entry, each write's entry lands on a page of its own as soon as a group commit holds writes
//! of many tenants: every commit wrote (and checksummed into the WAL) one page per write per log,
//! and with 1,000 tenants that was the whole gap to one tenant's write rate (BENCHMARKS.md). So an
//! entry is appended to a tail table without a tenant index (`audit_tail`, `events_tail`: a
//! group's entries share the tail's last page), and stays there. A fold, once the tails hold
//! several unindexed entries per tenant (or the writer is idle), fills a small keyed index of
//! them, `(tenant_id, seq) → id`, sorted by tenant, so a tenant's index entries of a fold share a
//! page. It indexes a chunk of tenants per step, one step inside each group commit (its pages
//! share the group's fsync): it never holds the writes up for long. The index entries come from
//! the registry below (tenant, seq and id of every registered entry), not from reading the tail
//! rows back: those lie on pages far apart. (Until schema 10 a fold copied
//! the entries whole into the keyed tables and emptied the tails: each entry was written three
//! times, and sustained writes over 10,000 tenants lost some 13% to it; BENCHMARKS.md.)
//!
//! Where an entry is: in the keyed table (`audit`, `events`: written there directly by a dense
//! tenant, a move, or folded before schema 10), or in the tail, indexed or not yet.
//!
//! Invariants:
//! - Every tail row with an id up to `tails_indexed.upto` is in its index; later ones may be. The
//!   triggers delete a row's index entry with the row.
//! - The tail is never scanned on a request's path. The writer registers each commit's tail ids
//!   here, by tenant, before any write of that commit is answered, and forgets them once a fold
//!   has indexed them; a reader copies the tenant's registered ids *before* its statement starts
//!   and reads keyed rows, indexed rows and those tail rows in one statement (one snapshot), as a
//!   UNION: an entry both indexed and registered (mid-fold) is the same row, read once; an id
//!   forgotten meanwhile was indexed before; an id is never reused (AUTOINCREMENT), so it can
//!   only name that tenant's entry.
//! - The chain head of a tenant with unindexed tail rows is, inside a group on the writer, in the
//!   writer connection's `temp.audit_heads` if the group moved it (it rolls back with the write
//!   that set it), else in memory ([`Registry`]'s heads, where each commit's move to once it is
//!   registered); a tenant without one finds its head among its keyed and indexed rows. A fold
//!   forgets the heads it indexed; deleting a tenant's rows forgets its head. (The working table
//!   holds one group's heads, not all: with 10,000 tenants a table of every head was a B-tree that
//!   each write searched and journalled a page of; see `counters`, which keeps its values so too.)
//! - A crash leaves unindexed rows: they are indexed when the database opens.
//! - A tenant with [`DENSE_WRITES`] or more writes in a group writes its entries straight to the
//!   keyed tables, unless it has entries in the tail (its audit chain head there; any event
//!   registered): readers take all three, but one whose tail ids predate an entry's registration
//!   must not find later keyed entries without it.
//!
//! Readers that take a tenant's whole log (moves) read the views `audit_all` and `events_all`
//! (keyed, indexed, and the tail past `tails_indexed.upto`: that end is scanned, rare and off the
//! request path), which may show an entry twice mid-fold: they key what they read by (tenant,
//! seq). Deleting a tenant's tail rows goes through [`Log::tenant_tail_ids`].

use crate::counters::{Committed, CommittedUsage, Counters};
use crate::error::sql_error;
use crate::pool::{owner_of, WriteJob, WriterCompanion};
use crate::working::{drain_working, DELETED};
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tenantry_core::ids::TenantId;
use tenantry_core::Result;

/// One of the two logs kept with a tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Log {
    Audit,
    Events,
}

impl Log {
    const ALL: [Log; 2] = [Log::Audit, Log::Events];

    fn index(self) -> usize {
        self as usize
    }

    pub fn tail(self) -> &'static str {
        match self {
            Log::Audit => "audit_tail",
            Log::Events => "events_tail",
        }
    }

    pub fn keyed(self) -> &'static str {
        match self {
            Log::Audit => "audit",
            Log::Events => "events",
        }
    }

    /// An entry's columns besides `tenant_id`, in the order the row readers take them.
    pub fn entry_columns(self) -> &'static str {
        match self {
            Log::Audit => "seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash",
            Log::Events => "seq, type, path, namespace, key, detail, actor, at",
        }
    }

    /// The tail's index, `(tenant_id, seq) → id`, that folds fill.
    pub fn tail_index(self) -> &'static str {
        match self {
            Log::Audit => "audit_tail_index",
            Log::Events => "events_tail_index",
        }
    }

    /// The view of the indexed tail entries, with the log's columns.
    fn indexed(self) -> &'static str {
        match self {
            Log::Audit => "audit_indexed",
            Log::Events => "events_indexed",
        }
    }

    /// The statement that indexes the tail entries `which` selects, sorted by tenant; an entry
    /// already indexed (a fold interrupted mid-way) is left as it is, a row deleted meanwhile is
    /// not indexed.
    fn index_rows(self, which: &str) -> String {
        let (index, tail) = (self.tail_index(), self.tail());
        format!(
            "INSERT OR IGNORE INTO {index} (tenant_id, seq, id) SELECT tenant_id, seq, id FROM {tail} {which}
             ORDER BY tenant_id, seq"
        )
    }

    /// The statement that reads one tenant's entries meeting `filter` (SQL over the log's columns,
    /// `?1` being the tenant), keyed, indexed and registered tail rows together, followed by
    /// `rest` (ordering, limit). `?{ids}` takes [`Tails::ids`].
    pub fn select(self, columns: &str, filter: &str, ids: usize, rest: &str) -> String {
        let (keyed, indexed, tail) = (self.keyed(), self.indexed(), self.tail());
        format!(
            "SELECT {columns} FROM {keyed} WHERE tenant_id = ?1 AND {filter}
             UNION
             SELECT {columns} FROM {indexed} WHERE tenant_id = ?1 AND {filter}
             UNION
             SELECT {columns} FROM {tail} WHERE id IN (SELECT value FROM json_each(?{ids})) AND tenant_id = ?1 AND {filter}
             {rest}"
        )
    }

    /// The statement that indexes one entry, `(?1 tenant, ?2 seq, ?3 id)`, unless the running
    /// group deleted the tenant's entries (see [`Step::Index`]).
    fn index_entry(self) -> &'static str {
        match self {
            Log::Audit => {
                "INSERT OR IGNORE INTO audit_tail_index (tenant_id, seq, id) SELECT ?1, ?2, ?3
                 WHERE NOT EXISTS (SELECT 1 FROM temp.tails_deleted WHERE tenant_id = ?1)"
            }
            Log::Events => {
                "INSERT OR IGNORE INTO events_tail_index (tenant_id, seq, id) SELECT ?1, ?2, ?3
                 WHERE NOT EXISTS (SELECT 1 FROM temp.tails_deleted WHERE tenant_id = ?1)"
            }
        }
    }

    /// Records that every tail row up to `upto` is indexed.
    fn mark_indexed(self, conn: &Connection, upto: i64) -> rusqlite::Result<()> {
        conn.prepare_cached("UPDATE tails_indexed SET upto = MAX(upto, ?2) WHERE log = ?1")?
            .execute(params![self.keyed(), upto])?;
        Ok(())
    }

    /// Two queries of the ids of the tenant's (`?1`) tail rows, indexed and not (the short end
    /// past `tails_indexed.upto`), for deleting them: `DELETE FROM {tail} WHERE id IN (...)`.
    pub fn tenant_tail_ids(self) -> [String; 2] {
        let (keyed, index, tail) = (self.keyed(), self.tail_index(), self.tail());
        [
            format!("SELECT id FROM {index} WHERE tenant_id = ?1"),
            format!(
                "SELECT id FROM {tail} WHERE id > (SELECT upto FROM tails_indexed WHERE log = '{keyed}') AND tenant_id = ?1"
            ),
        ]
    }
}

/// The table or view a reader of a tenant's whole log reads, by the keyed table's name; any
/// other table is read as itself.
pub(crate) fn whole(table: &str) -> &str {
    match table {
        "audit" => "audit_all",
        "events" => "events_all",
        "tenant_usage" => "usage_all",
        other => other,
    }
}

/// A fold starts once a log's tail holds this many unindexed entries per tenant in it, and at least
/// `FOLD_MIN_ROWS`, at most `FOLD_MAX_ROWS` (which bounds this registry's memory: 16 bytes an
/// entry)... A fold writes about one index page per tenant in it, so the more entries per tenant,
/// the less it writes per entry: at 8 a fold over 10,000 tenants cost sustained spread writes
/// several percent more than at 32 (BENCHMARKS.md, session 9), and at 32 the writer's CPU per
/// spread write was 2-6 µs above one tenant's where at 64 it is 1.6-3.2 (session 11). The
/// registry's bound is then 12.8 MB while writes come; it is empty when folded.
pub(crate) const ROWS_PER_TENANT: usize = 64;
const FOLD_MIN_ROWS: usize = 1024;
const FOLD_MAX_ROWS: usize = 800_000;
/// ...or once the writer has been idle this long with a tail...
pub(crate) const FOLD_WHEN_IDLE: Duration = Duration::from_secs(1);
/// ...or once the oldest entry of the tails is this old.
const FOLD_MAX_AGE: Duration = Duration::from_secs(60);
/// Entries a fold indexes per step: the writer takes one step per group, so a fold of 10,000
/// tenants' tails never holds the writes up for long.
const CHUNK_ROWS: usize = 2000;

/// The chain heads the group moved, with their entry's tail id (0: the group deleted the
/// tenant's entries).
/// With the tenants whose entries the group deleted (kept apart from their heads: a tenant may
/// write again later in the same group, and its entries registered before are gone either way).
const HEADS: &str = "CREATE TEMP TABLE IF NOT EXISTS audit_heads (
    tenant_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL, tail_id INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TEMP TABLE IF NOT EXISTS tails_deleted (tenant_id TEXT PRIMARY KEY) WITHOUT ROWID";

/// One log's unindexed tail entries by tenant as (id, seq), in seq order, and the last id
/// registered.
#[derive(Default)]
struct TailIds {
    by_tenant: HashMap<String, Vec<(i64, i64)>>,
    rows: usize,
    seen: i64,
}

/// A fold under way: the entries up to `upto` (each log's last id when it started), indexed
/// chunk by chunk (tenant by tenant), then settled in one step (`tails_indexed` moves to `upto`,
/// the registry forgets them). Until then an entry indexed is also registered: readers take the
/// union, which is the same row once.
struct Fold {
    upto: [i64; 2],
    /// The usage tail's last id when the fold began (see `counters`).
    usage_upto: i64,
    chunks: VecDeque<Chunk>,
    started: Instant,
}

#[derive(Default)]
struct Registry {
    logs: [TailIds; 2],
    /// The committed chain heads of tenants whose last entry is in the tail, unindexed.
    heads: HashMap<String, TailHead>,
    /// The tenants' counters, kept the same way (see `counters`): folded at each settling.
    usage: Committed,
    /// When the oldest entry now in the tails (or usage row) was registered.
    since: Option<Instant>,
    fold: Option<Fold>,
    /// After a failed step, no new fold before this (a full disk must not make every group plan
    /// and fail one).
    retry_at: Option<Instant>,
    /// Folds completed since start, and the time folds were under way, ended or abandoned (for
    /// `/metrics`: what a load leaves the writer to fold shows there after the load ends).
    folds: u64,
    fold_time: Duration,
}

impl Registry {
    /// A tenant's entries were deleted (a commit deleted its rows): nothing of it is registered
    /// or left to index.
    fn forget_entries(&mut self, tenant: &str) {
        for ids in &mut self.logs {
            if let Some(gone) = ids.by_tenant.remove(tenant) {
                ids.rows -= gone.len();
            }
        }
        if let Some(fold) = &mut self.fold {
            for chunk in &mut fold.chunks {
                for entries in chunk.iter_mut() {
                    entries.retain(|(t, _, _)| &**t != tenant);
                }
            }
        }
    }

    fn end_fold(&mut self) {
        if let Some(fold) = self.fold.take() {
            self.fold_time += fold.started.elapsed();
        }
    }
}

/// A chain head whose entry is in the tail: seq, hash, and the entry's id there.
struct TailHead {
    seq: i64,
    hash: String,
    tail_id: i64,
}

/// The tails of one database: which tail rows are whose, and the fold under way.
pub(crate) struct Tails {
    registry: Mutex<Registry>,
    /// The search index's flushes and merges, scheduled beside the folds.
    search: Arc<crate::search_upkeep::SearchUpkeep>,
}

fn json_ids(ids: &[i64]) -> String {
    let mut out = String::with_capacity(2 + ids.len() * 8);
    out.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}

/// A fold step's tail entries, both logs, as (tenant, seq, id), sorted by tenant and seq.
type Chunk = [Vec<(Arc<str>, i64, i64)>; 2];

/// One step of a fold (see [`Tails::next_step`]).
pub(crate) enum Step {
    /// Index these tail entries (audit, events).
    Index(Chunk),
    /// Every tail row up to `upto` is indexed now (once it commits, the chain heads of those
    /// entries are forgotten). The counters of the tenants whose last usage row is at most
    /// `usage_upto` (`usage`, with their values) are written back.
    Settle { upto: [i64; 2], usage_upto: i64, usage: Vec<(String, Counters)> },
}

impl Step {
    /// The step's statements, inside the caller's transaction.
    pub fn run(&self, conn: &Connection) -> rusqlite::Result<()> {
        match self {
            Step::Index(chunk) => {
                // From the registry, not read back from the tail: its rows of 10,000 tenants'
                // entries lie on pages far apart, and reading them was most of a fold's time
                // (BENCHMARKS.md, session 11). A tenant whose entries the group deleted before
                // this step (`temp.tails_deleted`) gets none; the registration after an earlier
                // commit has taken its entries out of the fold.
                for log in Log::ALL {
                    if chunk[log.index()].is_empty() {
                        continue;
                    }
                    let mut insert = conn.prepare_cached(log.index_entry())?;
                    for (tenant, seq, id) in &chunk[log.index()] {
                        insert.execute(params![&**tenant, seq, id])?;
                    }
                }
            }
            Step::Settle { upto, usage_upto, usage } => {
                crate::counters::settle(conn, *usage_upto, usage)?;
                for log in Log::ALL {
                    log.mark_indexed(conn, upto[log.index()])?;
                }
            }
        }
        Ok(())
    }
}

/// Runs `work` in one write transaction, rolled back if it fails.
fn in_transaction<T>(conn: &Connection, work: impl FnOnce() -> rusqlite::Result<T>) -> Result<T> {
    let run = || -> rusqlite::Result<T> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let out = work()?;
        conn.execute_batch("COMMIT")?;
        Ok(out)
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        sql_error(e)
    })
}

impl Tails {
    /// Prepares the writer connection and indexes what a previous run left unindexed.
    /// `search_flush_at`, `search_step_rows`: see `OpenOptions`.
    pub fn open(writer: &Connection, search_flush_at: usize, search_step_rows: usize) -> Result<Tails> {
        writer.execute_batch(&format!("PRAGMA temp_store = MEMORY; {HEADS};")).map_err(sql_error)?;
        crate::counters::prepare(writer).map_err(sql_error)?;
        let search = Arc::new(crate::search_upkeep::SearchUpkeep::open(writer, search_flush_at, search_step_rows)?);
        let tails = Tails { registry: Mutex::new(Registry::default()), search };
        tails.fold_all(writer)?;
        Ok(tails)
    }

    /// The search index's schedule.
    pub fn search(&self) -> &Arc<crate::search_upkeep::SearchUpkeep> {
        &self.search
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Every update leaves the registry whole, so a panic elsewhere cannot have broken it.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids of the tenant's tail entries in `log` after seq `after`, the first `limit` of them
    /// if given (a page is the first `limit` entries after `after`, so whichever of them are in
    /// the tail are among its first `limit` there), as the JSON array [`Log::select`] takes. Taken before the statement that uses them starts
    /// (see the module's invariants).
    pub fn ids(&self, log: Log, tenant: &TenantId, after: u64, limit: Option<usize>) -> String {
        let r = self.lock();
        let entries = r.logs[log.index()].by_tenant.get(tenant.as_str()).map(Vec::as_slice).unwrap_or_default();
        let after = after.min(i64::MAX as u64) as i64;
        let ids: Vec<i64> = entries
            .iter()
            .filter(|(_, seq)| *seq > after)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(id, _)| *id)
            .collect();
        json_ids(&ids)
    }

    /// Registers the tail entries committed since the last call: on the writer, after each
    /// commit, before any of its writes is answered.
    pub fn register(&self, conn: &Connection) -> Result<()> {
        let mut r = self.lock();
        // Before the commit's new entries: a tenant the commit deleted and that wrote again
        // keeps those.
        for tenant in take_deleted(conn).map_err(sql_error)? {
            r.forget_entries(&tenant);
        }
        let mut added = false;
        for log in Log::ALL {
            let ids = &mut r.logs[log.index()];
            let mut s = conn
                .prepare_cached(&format!("SELECT id, tenant_id, seq FROM {} WHERE id > ?1 ORDER BY id", log.tail()))
                .map_err(sql_error)?;
            let mut rows = s.query([ids.seen]).map_err(sql_error)?;
            while let Some(row) = rows.next().map_err(sql_error)? {
                let (id, seq): (i64, i64) = (row.get(0).map_err(sql_error)?, row.get(2).map_err(sql_error)?);
                // Borrowed: most entries are of a tenant already registered, whose key exists.
                let tenant = row.get_ref(1).and_then(|v| v.as_str().map_err(Into::into)).map_err(sql_error)?;
                match ids.by_tenant.get_mut(tenant) {
                    Some(entries) => entries.push((id, seq)),
                    None => {
                        ids.by_tenant.insert(tenant.to_owned(), vec![(id, seq)]);
                    }
                }
                ids.rows += 1;
                ids.seen = id;
                added = true;
            }
        }
        register_heads(&mut r.heads, conn).map_err(sql_error)?;
        r.usage.register(conn).map_err(sql_error)?;
        if (added || r.usage.pending().0 > 0) && r.since.is_none() {
            r.since = Some(Instant::now());
        }
        Ok(())
    }

    /// The tenant's counters as committed last, if it has unfolded usage rows (else they are in
    /// `tenant_usage`: see `counters`). Taken before the read that would fall back on them.
    pub fn usage(&self, tenant: &TenantId) -> Option<Counters> {
        self.lock().usage.get(tenant)
    }

    /// Usage rows appended since the last fold.
    pub fn usage_rows(&self) -> u64 {
        self.lock().usage.pending().0 as u64
    }

    /// Entries now in the tails (both logs), folds completed since start, and the time folds
    /// have been under way since start (the one under way included).
    pub fn stats(&self) -> (u64, u64, Duration) {
        let r = self.lock();
        let running = r.fold.as_ref().map_or(Duration::ZERO, |f| f.started.elapsed());
        (r.logs.iter().map(|l| l.rows as u64).sum(), r.folds, r.fold_time + running)
    }

    /// Whether the tails hold anything.
    pub fn is_empty(&self) -> bool {
        self.lock().since.is_none()
    }

    /// Whether a fold is under way.
    pub fn folding(&self) -> bool {
        self.lock().fold.is_some()
    }

    /// Starts a fold if one is due (see the `FOLD_` constants), or with `idle` if there is
    /// anything to fold; returns whether a fold is under way.
    pub fn begin_fold(&self, idle: bool) -> bool {
        let mut r = self.lock();
        if r.fold.is_some() {
            return true;
        }
        if r.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let Some(since) = r.since else { return false };
        let many =
            |rows: usize, tenants: usize| rows >= (tenants * ROWS_PER_TENANT).clamp(FOLD_MIN_ROWS, FOLD_MAX_ROWS);
        let due =
            idle || since.elapsed() >= FOLD_MAX_AGE || r.logs.iter().any(|l| many(l.rows, l.by_tenant.len())) || {
                let (rows, tenants) = r.usage.pending();
                many(rows, tenants)
            };
        if !due {
            return false;
        }
        // Chunks of whole tenants where they fit, in tenant order, both logs side by side.
        let mut tenants: Vec<&String> = r.logs.iter().flat_map(|l| l.by_tenant.keys()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let mut chunks = VecDeque::new();
        let mut chunk: Chunk = Default::default();
        for tenant in tenants {
            let name: Arc<str> = Arc::from(tenant.as_str());
            for log in Log::ALL {
                for &(id, seq) in r.logs[log.index()].by_tenant.get(tenant).map(Vec::as_slice).unwrap_or_default() {
                    chunk[log.index()].push((name.clone(), seq, id));
                    if chunk[0].len() + chunk[1].len() >= CHUNK_ROWS {
                        chunks.push_back(std::mem::take(&mut chunk));
                    }
                }
            }
        }
        if chunk.iter().any(|c| !c.is_empty()) {
            chunks.push_back(chunk);
        }
        let upto = [r.logs[0].seen, r.logs[1].seen];
        let usage_upto = r.usage.last_id;
        r.fold = Some(Fold { upto, usage_upto, chunks, started: Instant::now() });
        true
    }

    /// The next step of the fold under way, if any: a chunk to index, or, once all are, the
    /// settling. It runs inside a group's transaction (its pages share the group's commit), and
    /// [`Tails::finish`] must follow.
    pub fn next_step(&self) -> Option<Step> {
        let mut r = self.lock();
        let fold = r.fold.as_mut()?;
        if let Some(chunk) = fold.chunks.pop_front() {
            return Some(Step::Index(chunk));
        }
        let (upto, usage_upto) = (fold.upto, fold.usage_upto);
        Some(Step::Settle { upto, usage_upto, usage: r.usage.due(usage_upto) })
    }

    /// After the group that ran `step` committed (`ok`) or failed: the settling committed
    /// forgets what the fold indexed and ends it; a failed step abandons the fold (the entries
    /// stay readable through the registry, and a later fold takes them).
    pub fn finish(&self, step: Step, ok: bool) {
        let mut r = self.lock();
        match (step, ok) {
            (Step::Index(_), true) => {}
            (Step::Settle { upto, usage_upto, .. }, true) => {
                for log in Log::ALL {
                    let ids = &mut r.logs[log.index()];
                    let last = upto[log.index()];
                    ids.by_tenant.retain(|_, v| {
                        v.retain(|&(id, _)| id > last);
                        !v.is_empty()
                    });
                    ids.rows = ids.by_tenant.values().map(Vec::len).sum();
                }
                // Tenants with nothing unindexed left find their head among their keyed and indexed
                // rows from now on (a head the settling's group moved has a later entry, and stays).
                r.heads.retain(|_, h| h.tail_id > upto[Log::Audit.index()]);
                r.usage.settled(usage_upto);
                r.since = (r.logs.iter().any(|l| l.rows > 0) || r.usage.pending().0 > 0).then(Instant::now);
                r.end_fold();
                r.folds += 1;
            }
            (_, false) => {
                r.end_fold();
                r.retry_at = Some(Instant::now() + FOLD_WHEN_IDLE);
            }
        }
    }

    /// One step in a transaction of its own (the writer runs steps inside its groups), then
    /// registered as the writer registers a commit.
    #[cfg(test)]
    pub fn step(&self, conn: &Connection) -> Result<()> {
        let Some(step) = self.next_step() else { return Ok(()) };
        let mut done = in_transaction(conn, || step.run(conn));
        if done.is_ok() {
            // As the writer does after each commit, before the step is finished.
            done = self.register(conn);
        }
        self.finish(step, done.is_ok());
        done
    }

    /// Indexes every unindexed tail entry in one transaction: when the database opens or closes
    /// (a fold under way is finished by it).
    pub fn fold_all(&self, conn: &Connection) -> Result<()> {
        let started = Instant::now();
        let last = in_transaction(conn, || {
            let mut last = [0; 2];
            for log in Log::ALL {
                let (tail, keyed) = (log.tail(), log.keyed());
                last[log.index()] =
                    conn.query_row(&format!("SELECT COALESCE(MAX(id), 0) FROM {tail}"), [], |r| r.get(0))?;
                conn.execute(&log.index_rows("WHERE id > (SELECT upto FROM tails_indexed WHERE log = ?1)"), [keyed])?;
                log.mark_indexed(conn, last[log.index()])?;
            }
            conn.execute_batch("DELETE FROM temp.audit_heads; DELETE FROM temp.tails_deleted;")?;
            let usage_last = crate::counters::last_id(conn)?;
            crate::counters::fold_all(conn)?;
            Ok((last, usage_last))
        })?;
        let (last, usage_last) = last;
        let mut r = self.lock();
        if r.since.is_some() {
            r.folds += 1;
        }
        for log in Log::ALL {
            let ids = &mut r.logs[log.index()];
            ids.by_tenant.clear();
            ids.rows = 0;
            ids.seen = ids.seen.max(last[log.index()]);
        }
        r.heads.clear();
        r.usage.clear(usage_last);
        r.since = None;
        let started = r.fold.take().map_or(started, |f| f.started.min(started));
        r.fold_time += started.elapsed();
        Ok(())
    }
}

impl CommittedUsage for Tails {
    fn committed(&self, tenant: &TenantId) -> Option<Counters> {
        self.usage(tenant)
    }
}

/// The writer keeps the tails: it registers each commit's entries, and folds them one step per
/// group (or while it is idle).
impl WriterCompanion for Tails {
    const IDLE_AFTER: Duration = FOLD_WHEN_IDLE;

    fn busy(&self) -> bool {
        self.folding() || self.search.busy()
    }

    fn at_rest(&self) -> bool {
        self.is_empty() && self.search.at_rest()
    }

    fn begin(&self, idle: bool) -> bool {
        let fold = self.begin_fold(idle);
        let search = self.search.begin(idle);
        fold || search
    }

    /// The fold's next step, else the search index's.
    fn next_job(self: &Arc<Self>) -> Option<Box<dyn WriteJob>> {
        match self.next_step() {
            Some(step) => Some(Box::new(FoldStep { tails: self.clone(), step, failed: None })),
            None => self.search.next_job(),
        }
    }

    /// Runs the group knowing its dense tenants: those with at least [`DENSE_WRITES`] writes in it.
    fn around<T>(self: &Arc<Self>, owners: &[u64], group: impl FnOnce() -> T) -> T {
        self.search.group_starts();
        in_group(self, dense_owners(owners), group)
    }

    /// Registers a commit's log entries before its writes are answered. Should reading them back
    /// fail, folding makes them readable instead (a fold needs no registration).
    fn after_commit(&self, conn: &Connection) {
        self.search.committed();
        if let Err(e) = self.register(conn) {
            tracing::error!("cannot register the log tail ({e}): folding it instead");
            if let Err(e) = self.fold_all(conn) {
                tracing::error!("cannot fold the log tails: {e}");
            }
        }
    }

    /// Leaves the database folded.
    fn close(&self, conn: &Connection) {
        if let Err(e) = self.fold_all(conn) {
            tracing::error!("cannot fold the log tails on close (folded at the next open): {e}");
        }
    }
}

/// The owners with at least [`DENSE_WRITES`] writes among a group's.
fn dense_owners(owners: &[u64]) -> Vec<u64> {
    let mut writes: HashMap<u64, usize> = HashMap::new();
    for o in owners {
        *writes.entry(*o).or_default() += 1;
    }
    writes.into_iter().filter(|(_, n)| *n >= DENSE_WRITES).map(|(o, _)| o).collect()
}

/// A fold step as a job of the writer's group.
struct FoldStep {
    tails: Arc<Tails>,
    step: Step,
    failed: Option<tenantry_core::Error>,
}

impl WriteJob for FoldStep {
    fn owner(&self) -> Option<u64> {
        None
    }

    fn run(&mut self, conn: &Connection) -> bool {
        match self.step.run(conn) {
            Ok(()) => true,
            Err(e) => {
                // Nothing is lost: the entries stay readable in the tails; a later fold takes them.
                tracing::error!("cannot fold the log tails: {e}");
                self.failed = Some(sql_error(e));
                false
            }
        }
    }

    fn failure(&self) -> Option<&tenantry_core::Error> {
        self.failed.as_ref()
    }

    fn finish(self: Box<Self>, committed: Result<(), tenantry_core::Error>) {
        let ok = committed.is_ok() && self.failed.is_none();
        self.tails.finish(self.step, ok);
    }
}

/// A tenant with at least this many writes in one group has its entries written straight to the
/// keyed tables: they share a page there, as a tail's do, and need no index entry of a fold.
pub(crate) const DENSE_WRITES: usize = 4;

/// What the thread knows while the writer runs a group (or an exclusive job) on it.
struct Group {
    tails: Arc<Tails>,
    /// The grouping keys of the group's dense tenants.
    dense: Vec<u64>,
}

thread_local! {
    static GROUP: RefCell<Option<Group>> = const { RefCell::new(None) };
}

/// Runs `group` on the writer of `tails`, knowing which of its tenants are dense (`dense`, see
/// [`DENSE_WRITES`]): its writes find the chain heads and counters committed before it in
/// `tails`. The tails are for groups that hold a write or two of many tenants; when a fold copied
/// each entry and deleted it from the tail, the tail cost a lone tenant writing at full speed up
/// to a third of its PUT rate (BENCHMARKS.md); now it costs it an index entry per write, which
/// the direct write still saves. A tenant with a single write in a group goes to the tail even
/// when it is the only one: with 10,000 tenants most groups are small, and each such write would
/// dirty a page of the keyed tables of its own.
///
/// A thread-local rather than a parameter because the writes' statements take the connection
/// alone, everywhere in the store; outside a group (the one-off connections of opening) no head
/// or counter is in memory, and the working tables and the database are the whole truth.
pub(crate) fn in_group<T>(tails: &Arc<Tails>, dense: Vec<u64>, group: impl FnOnce() -> T) -> T {
    let before = GROUP.with(|g| g.borrow_mut().replace(Group { tails: tails.clone(), dense }));
    let out = crate::counters::in_group(tails.clone(), group);
    GROUP.with(|g| *g.borrow_mut() = before);
    out
}

/// Whether `tenant` is a dense tenant of the group being written (see [`DENSE_WRITES`]).
pub(crate) fn dense_tenant(tenant: &TenantId) -> bool {
    GROUP.with(|g| g.borrow().as_ref().is_some_and(|g| !g.dense.is_empty() && g.dense.contains(&owner_of(tenant))))
}

/// Whether `tenant`'s events written now skip the tail: it is dense in the group and has no event
/// in the tail's registry. Not with one there: a reader that took its tail ids before that entry
/// was registered would find the keyed rows after it and not the entry, and a client paging the
/// feed from the last seq it got would never see it. The registry changes only between groups,
/// so a group puts all of a tenant's events in one place, and keyed rows are written only once
/// every earlier event of the tenant is keyed or indexed.
pub(crate) fn events_direct(tenant: &TenantId) -> bool {
    GROUP.with(|g| {
        g.borrow().as_ref().is_some_and(|g| {
            g.dense.contains(&owner_of(tenant))
                && !g.tails.lock().logs[Log::Events.index()].by_tenant.contains_key(tenant.as_str())
        })
    })
}

/// A tenant's audit chain head: seq and hash of its last entry.
pub(crate) struct Head {
    pub seq: i64,
    pub hash: String,
    /// Its entry is in the tail, unindexed: the next entry must go there too, and set the head.
    pub in_tail: bool,
}

/// The tenant's audit chain head, if it has entries. On the writer connection, inside the write
/// that appends the next entry: the group's own, else the one committed before it, else its
/// last keyed or indexed entry.
pub(crate) fn audit_head(tx: &Connection, tenant: &TenantId) -> Result<Option<Head>> {
    let working = tx
        .prepare_cached("SELECT seq, hash, tail_id FROM temp.audit_heads WHERE tenant_id = ?1")
        .and_then(|mut s| {
            s.query_row([tenant.as_str()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
                .optional()
        })
        .map_err(sql_error)?;
    let in_memory = || {
        GROUP.with(|g| {
            let g = g.borrow();
            let r = g.as_ref()?.tails.lock();
            r.heads.get(tenant.as_str()).map(|h| Head { seq: h.seq, hash: h.hash.clone(), in_tail: true })
        })
    };
    match working {
        Some((seq, hash, tail_id)) if tail_id != DELETED => return Ok(Some(Head { seq, hash, in_tail: true })),
        Some(_) => {}
        None => {
            if let Some(head) = in_memory() {
                return Ok(Some(head));
            }
        }
    }
    tx.prepare_cached(
        "SELECT seq, hash FROM (SELECT seq, hash FROM audit WHERE tenant_id = ?1 ORDER BY seq DESC LIMIT 1)
         UNION ALL
         SELECT seq, hash FROM (SELECT seq, hash FROM audit_indexed WHERE tenant_id = ?1 ORDER BY seq DESC LIMIT 1)
         ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row([tenant.as_str()], |r| Ok(Head { seq: r.get(0)?, hash: r.get(1)?, in_tail: false })).optional()
    })
    .map_err(sql_error)
}

/// Records the tenant's new chain head, right after appending its entry to the tail.
pub(crate) fn set_audit_head(tx: &Connection, tenant: &TenantId, seq: i64, hash: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO temp.audit_heads (tenant_id, seq, hash, tail_id) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![tenant.as_str(), seq, hash, tx.last_insert_rowid()]))
    .map_err(sql_error)?;
    Ok(())
}

/// Forgets the tenant's chain head: its entries are being deleted from this database (a chain
/// continued from a forgotten head would not verify).
pub(crate) fn forget_audit_head(tx: &Connection, tenant: &TenantId) -> Result<()> {
    // Any connection may delete a tenant's rows (the settling of a move at open uses its own).
    tx.execute_batch(HEADS).map_err(sql_error)?;
    tx.prepare_cached("INSERT OR REPLACE INTO temp.audit_heads (tenant_id, seq, hash, tail_id) VALUES (?1, 0, '', ?2)")
        .and_then(|mut s| s.execute(params![tenant.as_str(), DELETED]))
        .map_err(sql_error)?;
    tx.prepare_cached("INSERT OR IGNORE INTO temp.tails_deleted (tenant_id) VALUES (?1)")
        .and_then(|mut s| s.execute([tenant.as_str()]))
        .map_err(sql_error)?;
    Ok(())
}

/// The tenants whose entries the commit just made deleted, taken out of the working table.
fn take_deleted(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut deleted = Vec::new();
    drain_working(conn, "SELECT tenant_id FROM temp.tails_deleted", "DELETE FROM temp.tails_deleted", |r| {
        deleted.push(r.get(0)?);
        Ok(())
    })?;
    Ok(deleted)
}

/// Takes in the chain heads of the group just committed (see [`Tails::register`]).
fn register_heads(heads: &mut HashMap<String, TailHead>, conn: &Connection) -> rusqlite::Result<()> {
    let select = "SELECT tenant_id, seq, hash, tail_id FROM temp.audit_heads";
    drain_working(conn, select, "DELETE FROM temp.audit_heads", |r| {
        let tenant: String = r.get(0)?;
        match r.get(3)? {
            DELETED => {
                heads.remove(&tenant);
            }
            tail_id => {
                heads.insert(tenant, TailHead { seq: r.get(1)?, hash: r.get(2)?, tail_id });
            }
        }
        Ok(())
    })
}

#[cfg(test)]
pub(crate) use tests::{draft as tests_draft, open_at as tests_open_at, Db as TestDb};

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::audit::GENESIS;
    use tenantry_core::model::AuditDraft;

    /// A database as the writer keeps it: writer connection and tails, and a reader.
    pub(crate) struct Db {
        pub _dir: tempfile::TempDir,
        pub path: std::path::PathBuf,
        pub writer: Connection,
        pub reader: Connection,
        pub tails: Arc<Tails>,
    }

    fn open() -> Db {
        open_at(tempfile::tempdir().unwrap())
    }

    /// Opens (creating, or reopening as after a stop) the database in `dir`.
    pub(crate) fn open_at(dir: tempfile::TempDir) -> Db {
        let path = dir.path().join("db.sqlite");
        let mut writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        crate::schema::migrate(&mut writer).unwrap();
        let tails = Arc::new(
            Tails::open(&writer, crate::pool::DEFAULT_SEARCH_FLUSH_AT, crate::search_upkeep::STEP_ROWS).unwrap(),
        );
        let reader = Connection::open(&path).unwrap();
        Db { _dir: dir, path, writer, reader, tails }
    }

    pub(crate) fn draft(target: &str) -> AuditDraft {
        AuditDraft {
            actor: "key_test".into(),
            action: "file.write".into(),
            target: target.into(),
            result: "ok".into(),
            request_id: "req".into(),
            ip: "127.0.0.1".into(),
        }
    }

    impl Db {
        /// Runs `work` as the writer runs a group, with the group's `dense` tenants.
        pub fn group<T>(&self, dense: &[&TenantId], work: impl FnOnce() -> T) -> T {
            in_group(&self.tails, dense.iter().map(|t| owner_of(t)).collect(), work)
        }

        /// One committed group as the writer runs it: `work` with these `dense` tenants, then
        /// the fold's next step if `step` and a fold is under way; registered, then the step
        /// finished.
        pub fn commit(&self, dense: &[&TenantId], step: bool, work: impl FnOnce(&Connection)) {
            let step = if step { self.tails.next_step() } else { None };
            self.group(dense, || {
                self.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
                work(&self.writer);
                if let Some(step) = &step {
                    step.run(&self.writer).unwrap();
                }
                self.writer.execute_batch("COMMIT").unwrap();
            });
            self.tails.register(&self.writer).unwrap();
            if let Some(step) = step {
                self.tails.finish(step, true);
            }
        }

        /// One committed write appending an audit entry, in a group with these `dense` tenants.
        fn append_with(&self, dense: &[&TenantId], t: &TenantId, target: &str) {
            self.commit(dense, false, |tx| crate::audit::append_audit_tx(tx, t, "slug", draft(target)).unwrap());
        }

        fn append(&self, t: &TenantId, target: &str) {
            self.append_with(&[], t, target);
        }

        /// The tenant's log as a reader sees it: (seq, target), checked to be one unbroken chain.
        fn log(&self, t: &TenantId) -> Vec<(i64, String)> {
            let ids = self.tails.ids(Log::Audit, t, 0, None);
            let sql = Log::Audit.select("seq, target, prev_hash, hash", "seq > 0", 2, "ORDER BY seq");
            let rows: Vec<(i64, String, String, String)> = self
                .reader
                .prepare(&sql)
                .unwrap()
                .query_map(params![t.as_str(), ids], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let mut prev = GENESIS.to_owned();
            for (i, (seq, _, prev_hash, hash)) in rows.iter().enumerate() {
                assert_eq!(*seq, i as i64 + 1, "seqs run 1, 2, ... without a gap or a repeat");
                assert_eq!(prev_hash, &prev, "entry {seq} links to the one before it");
                prev = hash.clone();
            }
            rows.into_iter().map(|(seq, target, ..)| (seq, target)).collect()
        }

        pub fn count(&self, table: &str) -> i64 {
            self.reader.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
        }

        /// Up to which audit tail id every row is indexed.
        fn indexed_upto(&self) -> i64 {
            self.reader.query_row("SELECT upto FROM tails_indexed WHERE log = 'audit'", [], |r| r.get(0)).unwrap()
        }

        /// The tenant's chain head as the writer's next group finds it, if its entry is in the tail.
        fn head(&self, t: &TenantId) -> Option<i64> {
            let head = self.group(&[], || audit_head(&self.writer, t).unwrap());
            head.filter(|h| h.in_tail).map(|h| h.seq)
        }
    }

    /// A database with one entry of one tenant in the tail, and a fold of it begun.
    fn one_entry_folding() -> (Db, TenantId) {
        let db = open();
        let a = TenantId::generate();
        db.append(&a, "/a0");
        assert!(db.tails.begin_fold(true));
        (db, a)
    }

    fn seqs(log: &[(i64, String)]) -> Vec<i64> {
        log.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn a_tenant_is_dense_in_a_group_with_four_writes_of_its_own() {
        // A group's owners, one per tenant write (upkeep jobs have none).
        let dense = |owners: &[u64]| {
            let mut d = dense_owners(owners);
            d.sort_unstable();
            d
        };
        assert_eq!(dense(&[1, 1, 1, 2, 1]), [1]);
        assert_eq!(dense(&[1, 1, 1, 2, 2, 2, 2]), [2]);
        assert_eq!(dense(&[[1; 4], [2; 4]].concat()), [1, 2]);
        assert!(dense(&[1]).is_empty());
    }

    #[test]
    fn a_dense_tenants_entries_skip_the_tail_unless_its_chain_head_is_in_it() {
        let db = open();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let dense = |t: &TenantId, target: &str| db.append_with(&[t], t, target);
        dense(&a, "/a1");
        dense(&a, "/a2");
        assert_eq!((db.count("audit"), db.count("audit_tail"), db.head(&a)), (2, 0, None));
        assert!(db.tails.is_empty(), "nothing registered: nothing to fold");
        // Another tenant's write in the group: a's entry goes to the tail and its head with it...
        db.append(&a, "/a3");
        assert_eq!((db.count("audit"), db.count("audit_tail"), db.head(&a)), (2, 1, Some(3)));
        // ...and stays there while the head is there, lone or not, until a fold settles it.
        dense(&a, "/a4");
        assert_eq!((db.count("audit_tail"), db.head(&a)), (2, Some(4)));
        // Density is a tenant's: b's entry written in a group where a is dense goes to the tail.
        db.append_with(&[&a], &b, "/b1");
        assert_eq!((db.count("audit_tail"), db.head(&b)), (3, Some(1)));
        assert!(db.tails.begin_fold(true));
        while db.tails.folding() {
            db.tails.step(&db.writer).unwrap();
        }
        let counts = (db.count("audit"), db.count("audit_tail"), db.count("audit_tail_index"));
        assert_eq!((counts, db.head(&a)), ((2, 3, 3), None), "the tail's rows stay, indexed");
        dense(&a, "/a5");
        assert_eq!((db.count("audit"), db.count("audit_tail")), (3, 3));
        let targets: Vec<String> = db.log(&a).into_iter().map(|(_, t)| t).collect();
        assert_eq!(targets, ["/a1", "/a2", "/a3", "/a4", "/a5"]);
        assert_eq!(db.log(&b), [(1, "/b1".to_owned())]);
        // Outside a group nothing is dense.
        assert!(!dense_tenant(&a));
    }

    #[test]
    fn a_reader_whose_tail_ids_predate_an_event_never_finds_later_events_without_it() {
        let db = open();
        let a = TenantId::generate();
        let event = |tx: &Connection| {
            let draft = tenantry_core::events::EventDraft::new("file.written", "key:k".into());
            crate::journal::event_tx(tx, &a, "slug", draft, &crate::sinks::Published::default()).unwrap();
        };
        // A reader takes its tail ids (none yet) and is slow to start its statement...
        let ids = db.tails.ids(Log::Events, &a, 0, Some(256));
        // ...while seq 1 is written alone (to the tail), then seqs 2 and 3 in a group where the
        // tenant is dense.
        db.commit(&[], false, event);
        db.commit(&[&a], false, |tx| {
            event(tx);
            event(tx);
        });
        let sql = Log::Events.select("seq", "seq > ?2", 4, "ORDER BY seq LIMIT ?3");
        let seqs = |ids: &str| -> Vec<i64> {
            let mut s = db.reader.prepare(&sql).unwrap();
            s.query_map(params![a.as_str(), 0i64, 256i64, ids], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(seqs(&ids), Vec::<i64>::new(), "all of them still unknown to that reader, not 2 and 3");
        assert_eq!(seqs(&db.tails.ids(Log::Events, &a, 0, Some(256))), [1, 2, 3]);
        // Once a fold settled the tail, a dense group writes straight to the keyed table again.
        assert!(db.tails.begin_fold(true));
        while db.tails.folding() {
            db.tails.step(&db.writer).unwrap();
        }
        db.commit(&[&a], false, event);
        assert_eq!(db.count("events"), 1);
        assert_eq!(seqs(&db.tails.ids(Log::Events, &a, 0, Some(256))), [1, 2, 3, 4]);
    }

    #[test]
    fn a_log_reads_the_same_from_its_tail_mid_fold_and_after_it_and_its_chain_goes_on() {
        let db = open();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        for i in 0..3 {
            db.append(&a, &format!("/a{i}"));
        }
        db.append(&b, "/b0");
        db.append(&b, "/b1");
        assert_eq!((db.count("audit_tail"), db.count("audit_tail_index")), (5, 0));
        let before = db.log(&a);
        assert_eq!(before, [(1, "/a0".into()), (2, "/a1".into()), (3, "/a2".into())]);
        assert_eq!(seqs(&db.log(&b)), [1, 2]);

        // Mid-fold: indexed and still registered; read once.
        assert!(db.tails.begin_fold(true));
        db.tails.step(&db.writer).unwrap();
        assert_eq!((db.count("audit_tail"), db.count("audit_tail_index")), (5, 5));
        assert_eq!(db.log(&a), before);
        // A write while the fold is under way stays unindexed for the next one.
        db.append(&a, "/a3");
        db.tails.step(&db.writer).unwrap();
        assert!(!db.tails.folding());
        assert_eq!((db.count("audit_tail"), db.count("audit_tail_index")), (6, 5));
        assert_eq!(seqs(&db.log(&a)), [1, 2, 3, 4]);
        assert_eq!(db.head(&a), Some(4), "a tenant with unindexed entries keeps its head");
        assert_eq!(db.head(&b), None, "a tenant indexed whole finds its head among its indexed rows");
        // B's chain goes on from its indexed rows, A's from its head.
        db.append(&b, "/b2");
        db.append(&a, "/a4");
        assert_eq!(seqs(&db.log(&b)), [1, 2, 3]);
        assert_eq!(seqs(&db.log(&a)), [1, 2, 3, 4, 5]);
        db.tails.fold_all(&db.writer).unwrap();
        assert_eq!((db.count("audit_tail"), db.count("audit_tail_index"), db.count("audit")), (8, 8, 0));
        assert_eq!(db.indexed_upto(), db.count("audit_tail"), "every row is indexed (ids start at 1)");
        assert_eq!(db.log(&a).last(), Some(&(5, "/a4".into())));
        assert_eq!(db.tails.ids(Log::Audit, &a, 0, None), "[]");
        assert!(db.tails.is_empty());
    }

    #[test]
    fn a_write_in_the_group_that_ends_a_fold_keeps_its_chain_head() {
        let (db, a) = one_entry_folding();
        db.tails.step(&db.writer).unwrap(); // indexed
                                            // The settling, made while A has nothing newer; then the group as the writer runs it:
                                            // A's write, then the step, one commit.
        let step = db.tails.next_step().unwrap();
        db.group(&[], || {
            db.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            crate::audit::append_audit_tx(&db.writer, &a, "slug", draft("/a1")).unwrap();
            step.run(&db.writer).unwrap();
            db.writer.execute_batch("COMMIT").unwrap();
        });
        db.tails.register(&db.writer).unwrap();
        db.tails.finish(step, true);
        assert!(!db.tails.folding());
        assert_eq!(db.head(&a), Some(2), "the head of the entry still in the tail stays");
        db.append(&a, "/a2");
        assert_eq!(seqs(&db.log(&a)), [1, 2, 3]);
    }

    #[test]
    fn a_failed_step_abandons_the_fold_leaves_the_entries_readable_and_the_next_fold_waits() {
        let (db, a) = one_entry_folding();
        let step = db.tails.next_step().unwrap();
        db.tails.finish(step, false); // as when its group failed
        assert!(!db.tails.folding());
        assert!(!db.tails.begin_fold(true), "no new fold right after a failed step");
        assert_eq!(db.log(&a), [(1, "/a0".into())]);
        assert_eq!(db.head(&a), Some(1));
    }

    #[test]
    fn a_tail_left_by_a_crash_mid_fold_is_indexed_once_at_open() {
        let db = open();
        let a = TenantId::generate();
        for i in 0..4 {
            db.append(&a, &format!("/a{i}"));
        }
        assert!(db.tails.begin_fold(true));
        db.tails.step(&db.writer).unwrap(); // indexed, not settled: then one more entry, and a crash
        db.append(&a, "/a4");
        assert_eq!((db.count("audit_tail"), db.count("audit_tail_index"), db.indexed_upto()), (5, 4, 0));
        let Db { _dir, path, writer, reader, tails } = db;
        drop((writer, reader, tails));
        let writer = Connection::open(&path).unwrap();
        let tails = Arc::new(
            Tails::open(&writer, crate::pool::DEFAULT_SEARCH_FLUSH_AT, crate::search_upkeep::STEP_ROWS).unwrap(),
        );
        let db = Db { reader: Connection::open(&path).unwrap(), _dir, path, writer, tails };
        assert_eq!((db.count("audit_tail"), db.count("audit_tail_index"), db.indexed_upto()), (5, 5, 5));
        assert_eq!(db.head(&a), None);
        db.append(&a, "/a5");
        assert_eq!(seqs(&db.log(&a)), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_rolled_back_entry_leaves_no_row_no_id_and_no_head() {
        let db = open();
        let a = TenantId::generate();
        db.append(&a, "/kept");
        db.group(&[], || {
            db.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            crate::audit::append_audit_tx(&db.writer, &a, "slug", draft("/gone")).unwrap();
            db.writer.execute_batch("ROLLBACK").unwrap();
        });
        db.tails.register(&db.writer).unwrap();
        assert_eq!(db.head(&a), Some(1));
        db.append(&a, "/next");
        assert_eq!(db.log(&a), [(1, "/kept".into()), (2, "/next".into())]);
        let ids: Vec<i64> = serde_json::from_str(&db.tails.ids(Log::Audit, &a, 0, None)).unwrap();
        assert_eq!(ids.len(), 2);
        // A page after seq 1 needs only the later entry; a page of one, only the first.
        let after_one: Vec<i64> = serde_json::from_str(&db.tails.ids(Log::Audit, &a, 1, None)).unwrap();
        let first: Vec<i64> = serde_json::from_str(&db.tails.ids(Log::Audit, &a, 0, Some(1))).unwrap();
        assert_eq!((after_one, first), (vec![ids[1]], vec![ids[0]]));
    }

    #[test]
    fn deleting_a_tenants_rows_takes_its_tail_and_head_and_a_new_chain_starts_at_genesis() {
        let db = open();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        db.append(&a, "/a0");
        db.append(&b, "/b0");
        db.tails.fold_all(&db.writer).unwrap();
        db.append(&a, "/a1"); // one indexed, one not
        db.group(&[], || {
            db.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            crate::tenants::delete_tenant_rows_tx(&db.writer, &a, false).unwrap();
            db.writer.execute_batch("COMMIT").unwrap();
        });
        db.tails.register(&db.writer).unwrap();
        assert_eq!(db.head(&a), None);
        assert_eq!((db.count("audit_tail"), db.count("audit_tail_index")), (1, 1), "b's entry, indexed");
        let left: i64 = db
            .reader
            .query_row(
                "SELECT (SELECT COUNT(*) FROM audit_tail WHERE tenant_id = ?1)
                      + (SELECT COUNT(*) FROM audit_tail_index WHERE tenant_id = ?1)",
                [a.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        assert!(db.log(&a).is_empty(), "its remembered ids name nothing any more");
        assert_eq!(seqs(&db.log(&b)), [1], "nothing of another tenant goes");
        db.append(&a, "/again");
        assert_eq!(db.log(&a), [(1, "/again".into())]);
    }

    #[test]
    fn a_fold_is_due_at_several_entries_per_tenant_and_goes_in_bounded_chunks() {
        let db = open();
        let tenants: Vec<TenantId> = (0..100).map(|_| TenantId::generate()).collect();
        // Rounds of one entry per tenant, committed together (one group).
        let rounds = |range: std::ops::Range<usize>| {
            db.group(&[], || {
                db.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
                for round in range {
                    for t in &tenants {
                        crate::audit::append_audit_tx(&db.writer, t, "slug", draft(&format!("/{round}"))).unwrap();
                    }
                }
                db.writer.execute_batch("COMMIT").unwrap();
            });
            db.tails.register(&db.writer).unwrap();
        };
        // 40 entries for each of 100 tenants: under 64 per tenant (ROWS_PER_TENANT), not due while busy.
        assert_eq!(ROWS_PER_TENANT, 64);
        rounds(0..40);
        assert!(!db.tails.begin_fold(false));
        // 64 per tenant: due.
        rounds(40..64);
        assert!(db.tails.begin_fold(false));
        // 6,400 entries: indexed in chunks of 2,000 (CHUNK_ROWS) and 400, then settled; every
        // tenant's log reads whole throughout.
        let mut counts = Vec::new();
        while db.tails.folding() {
            db.tails.step(&db.writer).unwrap();
            counts.push((db.count("audit_tail_index"), db.count("audit_tail"), db.indexed_upto()));
            for t in [&tenants[0], &tenants[49], &tenants[99]] {
                assert_eq!(seqs(&db.log(t)), (1..=64).collect::<Vec<_>>());
            }
        }
        assert_eq!(counts, [(2000, 6400, 0), (4000, 6400, 0), (6000, 6400, 0), (6400, 6400, 0), (6400, 6400, 6400)]);
        assert!(db.tails.is_empty());
    }

    /// The writes take whether the tenant is dense in the group, and whether the fold's next step
    /// (if one is under way) runs last in the group, as the writer runs it.
    #[derive(Debug, Clone)]
    enum Op {
        Append(usize, bool, bool),
        Refused(usize),
        BeginFold,
        Step,
        /// With whether the tenant writes again in the same group, after the deletion.
        Delete(usize, bool, bool),
        Crash,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            5 => (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(t, d, s)| Op::Append(t, d, s)),
            1 => (0..3usize).prop_map(Op::Refused),
            1 => Just(Op::BeginFold),
            2 => Just(Op::Step),
            1 => (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(t, a, s)| Op::Delete(t, a, s)),
            1 => Just(Op::Crash),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever the interleaving of appends (dense or not), refused appends, fold steps,
        /// deletions and crashes, every tenant's log reads as one unbroken chain holding exactly
        /// the entries of a plain model.
        #[test]
        fn chains_match_a_model_through_folds_deletions_and_crashes(ops in proptest::collection::vec(op(), 1..40)) {
            let tenants = [TenantId::generate(), TenantId::generate(), TenantId::generate()];
            let mut model: [Vec<String>; 3] = Default::default();
            let mut db = open();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Append(i, dense, step) => {
                        let target = format!("/{n}");
                        let t = &tenants[i];
                        let dense: &[&TenantId] = if dense { &[t] } else { &[] };
                        db.commit(dense, step, |tx| crate::audit::append_audit_tx(tx, t, "slug", draft(&target)).unwrap());
                        model[i].push(target);
                    }
                    Op::Refused(i) => db.commit(&[], false, |tx| {
                        tx.execute_batch("SAVEPOINT job").unwrap();
                        crate::audit::append_audit_tx(tx, &tenants[i], "slug", draft("/refused")).unwrap();
                        tx.execute_batch("ROLLBACK TO job; RELEASE job").unwrap();
                    }),
                    Op::BeginFold => {
                        db.tails.begin_fold(true);
                    }
                    Op::Step => {
                        if db.tails.folding() {
                            db.tails.step(&db.writer).unwrap();
                        }
                    }
                    Op::Delete(i, again, step) => {
                        let target = format!("/again{n}");
                        db.commit(&[], step, |tx| {
                            crate::tenants::delete_tenant_rows_tx(tx, &tenants[i], false).unwrap();
                            if again {
                                crate::audit::append_audit_tx(tx, &tenants[i], "slug", draft(&target)).unwrap();
                            }
                        });
                        model[i].clear();
                        if again {
                            model[i].push(target);
                        }
                    }
                    Op::Crash => {
                        let Db { _dir, writer, reader, tails, path } = db;
                        drop((writer, reader, tails, path));
                        db = open_at(_dir);
                    }
                }
                for (t, expected) in tenants.iter().zip(&model) {
                    let targets: Vec<String> = db.log(t).into_iter().map(|(_, target)| target).collect();
                    proptest::prop_assert_eq!(&targets, expected);
                }
                // Folds index from memory: never an index entry without its row.
                let dangling: i64 = db
                    .reader
                    .query_row(
                        "SELECT COUNT(*) FROM audit_tail_index i WHERE NOT EXISTS (SELECT 1 FROM audit_tail t WHERE t.id = i.id)",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                proptest::prop_assert_eq!(dangling, 0);
            }
        }
    }
}
