//! Keeping the search index in shape, on the writer (see `search` for the layout): a tenant's
//! tail is flushed into a new segment once it holds `OpenOptions::search_flush_at` (1,024) documents (or the writer is
//! idle), [`MERGE_FACTOR`] segments of one level are merged into one of the next, up to
//! [`TOP_LEVEL`], and a segment mostly dead is rewritten alone. Each step is one job at the end of
//! a group commit (its pages share the group's fsync) and touches one tenant, about
//! [`STEP_ROWS`] term rows at most, so it never holds the other tenants' writes up for long:
//! - a flush takes the tail's first documents, up to [`FLUSH_MAX`] of them or
//!   [`FLUSH_READ_BYTES`] of term lists; a segment of them with at most [`FLUSH_STEPS`] ×
//!   [`STEP_ROWS`] terms is written at once;
//! - a larger flush, and a merge (or compaction) of any size, is a series of steps. The first
//!   reserves the segment written, listed in `search_pending` and not in the catalog, so no search
//!   reads it, and writes its document list; each step then writes the next range of its terms
//!   (for a merge, their merged postings); the last publishes it in one transaction (catalog row;
//!   dead bits of the documents replaced or deleted meanwhile; `search_docs` pointed at it) and
//!   retires a merge's inputs to `search_pending`, or takes a flush's documents out of the tail;
//! - a retired segment's rows are deleted [`STEP_ROWS`] at a time.
//!
//! What is due is kept in memory: the write path notes each tenant whose tail it wrote or whose
//! segment it killed most of ([`note`]; a thread-local of the writer, taken after the group
//! commits), and the merge under way of each tenant (at most one) is remembered between its
//! steps; at open, the tails, merges, compactions and pending segments the database holds are
//! found again. A step only moves documents from one place to another inside one transaction, so
//! a crash at any point leaves the index whole: a step not committed is a step not done, and a
//! merge cut short by a restart leaves a pending segment that is deleted like a retired one.
//!
//! A tenant being moved is paused ([`SearchUpkeep::pause`]): its segments stay as they are until
//! the move ends, so the move copies them once. A merge's steps check that its inputs and its
//! pending segment are still those it began with (by their random `uid`s), so a merge whose
//! tenant was moved or purged meanwhile is dropped, never continued on other rows.

use crate::error::sql_error;
use crate::pool::WriteJob;
use crate::search_layout::parse_tail_terms;
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tenantry_core::ids::TenantId;
use tenantry_core::search::segment::{self, Built, MergePlan, NewDoc};
use tenantry_core::search::DocKind;
use tenantry_core::{Error, Result};

/// At most this many tail documents go into one segment (one step).
pub(crate) const FLUSH_MAX: usize = 2048;
/// About the most term rows one step reads or writes (a few milliseconds' work): a merge step
/// reads at most this many of its inputs' term rows, a deletion step deletes this many, a step of
/// a large flush writes this many.
pub(crate) const STEP_ROWS: usize = 1024;
/// A flush whose segment has at most this many times [`STEP_ROWS`] terms is written in one step;
/// a larger one is written [`STEP_ROWS`] terms a step.
pub(crate) const FLUSH_STEPS: usize = 4;
/// A top-level segment holding this many term rows is never merged with other small ones (only
/// compacted when half dead): segments of documents with very many distinct words stay apart
/// rather than be rewritten again and again.
pub(crate) const SMALL_TERMS: i64 = 65_536;
/// A tail holding this many bytes of term lists is flushed at the next group commit.
pub(crate) const FLUSH_BYTES: usize = 4 << 20;
/// A flush reads at most this many bytes of term lists (parsing them takes a few milliseconds).
pub(crate) const FLUSH_READ_BYTES: usize = 1 << 20;
/// A tail is flushed once its first write is this old, however short.
pub(crate) const FLUSH_AGE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long writes into the tails pause before the short tails are flushed too.
pub(crate) const QUIET: std::time::Duration = std::time::Duration::from_millis(200);
/// Segments of one level merged into one of the next.
pub(crate) const MERGE_FACTOR: usize = 4;
/// Segments of this level are not merged further, but for compaction and the merge of small ones
/// (a merge takes at most `FLUSH_MAX × MERGE_FACTOR` documents).
pub(crate) const TOP_LEVEL: i64 = 1;

/// Whether a segment of this level is one merges leave alone (only compaction rewrites it).
pub(crate) fn is_top(level: i64) -> bool {
    level >= TOP_LEVEL
}

/// Whether a segment with `dead` of its `docs` documents dead is rewritten alone: once half is.
pub(crate) fn wants_compaction(dead: u32, docs: i64) -> bool {
    docs > 0 && i64::from(dead) * 2 >= docs
}

/// What the write path noted in the group being written.
enum Noted {
    /// A document went into the tenant's tail, with this many bytes of term list.
    Tail(TenantId, usize),
    /// A step is due for the tenant (a segment mostly dead).
    Due(TenantId),
}

thread_local! {
    static NOTED: RefCell<Vec<Noted>> = const { RefCell::new(Vec::new()) };
}

/// Notes, inside a write on the writer, a document written to the tenant's tail (`bytes`: its
/// term list's).
pub(crate) fn note_tail(tenant: &TenantId, bytes: usize) {
    NOTED.with(|n| n.borrow_mut().push(Noted::Tail(tenant.clone(), bytes)));
}

/// Notes, inside a write on the writer, that the tenant has a step due.
pub(crate) fn note(tenant: &TenantId) {
    NOTED.with(|n| n.borrow_mut().push(Noted::Due(tenant.clone())));
}

/// Tenants being moved: no step touches their search rows, in any database of the process (a
/// dedicated database closed and opened again mid-move is paused too).
static PAUSED: Mutex<Option<HashSet<TenantId>>> = Mutex::new(None);

/// Stops the tenant's steps everywhere; a step already chosen does nothing when it runs. Call on
/// the writers of the databases concerned (inside a write), so that no step of the tenant is
/// under way there once it returns.
pub(crate) fn pause(tenant: &TenantId) {
    PAUSED.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashSet::new).insert(tenant.clone());
}

/// Lets the tenant's steps go on (then [`SearchUpkeep::resume`] each database that holds it).
pub(crate) fn unpause(tenant: &TenantId) {
    if let Some(set) = PAUSED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        set.remove(tenant);
    }
}

pub(crate) fn is_paused(tenant: &TenantId) -> bool {
    PAUSED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|set| set.contains(tenant))
}

#[derive(Default)]
struct State {
    /// Documents written to each tenant's tail since its last flush, as far as known (a write
    /// rolled back still counts: the flush finds fewer).
    tails: HashMap<TenantId, usize>,
    /// Tenants with a step due, in order, each once.
    due: VecDeque<TenantId>,
    queued: HashSet<TenantId>,
    /// Tenants whose tail is flushed however short (the writes paused).
    whole: HashSet<TenantId>,
    /// Steps committed, and their time on the writer.
    steps: u64,
    step_time: std::time::Duration,
    /// When a write last went into a tail: short tails wait until the writes pause.
    last_write: Option<std::time::Instant>,
    /// Bytes of term lists written to each tenant's tail since its last flush, and when the
    /// first of them was: a tail is flushed once it holds [`FLUSH_BYTES`], or is [`FLUSH_AGE`]
    /// old, however few its writes (a search reads the whole tail).
    tail_bytes: HashMap<TenantId, usize>,
    first_write: HashMap<TenantId, std::time::Instant>,
    /// Each tenant's segments being written, between their steps.
    underway: HashMap<TenantId, Underway>,
    /// Tenants whose last step was a merge's: a flush due goes next, so neither a long merge nor
    /// a stream of flushes holds the other back.
    merged_last: HashSet<TenantId>,
}

impl State {
    fn enqueue(&mut self, tenant: &TenantId) {
        if self.queued.insert(tenant.clone()) {
            self.due.push_back(tenant.clone());
        }
    }

    fn has_work(&self) -> bool {
        self.due.iter().any(|t| !is_paused(t))
    }
}

/// The writer's schedule of search steps.
pub(crate) struct SearchUpkeep {
    state: Mutex<State>,
    flush_at: usize,
    /// About the most term rows a step reads or writes ([`STEP_ROWS`]).
    step_rows: usize,
}

impl SearchUpkeep {
    /// The schedule for what the database holds: every tenant with a tail, a merge or a
    /// compaction due.
    pub fn open(conn: &Connection, flush_at: usize, step_rows: usize) -> Result<SearchUpkeep> {
        let mut state = State::default();
        let mut s =
            conn.prepare("SELECT tenant_id, count(*) FROM search_tail GROUP BY tenant_id").map_err(sql_error)?;
        let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(sql_error)?;
        for row in rows {
            let (tenant, n) = row.map_err(sql_error)?;
            let tenant = TenantId::parse(&tenant).ok_or_else(|| crate::error::corrupt("tenant id"))?;
            state.tails.insert(tenant.clone(), n.max(0) as usize);
            state.enqueue(&tenant);
        }
        let mut s = conn.prepare("SELECT DISTINCT tenant_id FROM search_segments").map_err(sql_error)?;
        let tenants: Vec<String> =
            s.query_map([], |r| r.get(0)).map_err(sql_error)?.collect::<rusqlite::Result<_>>().map_err(sql_error)?;
        for tenant in tenants {
            let tenant = TenantId::parse(&tenant).ok_or_else(|| crate::error::corrupt("tenant id"))?;
            if choose(&catalog_tx(conn, &tenant)?).is_some() {
                state.enqueue(&tenant);
            }
        }
        // Segments retired, or merged into by a merge the last run did not finish: deleted.
        let mut s = conn.prepare("SELECT DISTINCT tenant_id FROM search_pending").map_err(sql_error)?;
        let pending: Vec<String> =
            s.query_map([], |r| r.get(0)).map_err(sql_error)?.collect::<rusqlite::Result<_>>().map_err(sql_error)?;
        for tenant in pending {
            let tenant = TenantId::parse(&tenant).ok_or_else(|| crate::error::corrupt("tenant id"))?;
            state.enqueue(&tenant);
        }
        Ok(SearchUpkeep { state: Mutex::new(state), flush_at: flush_at.max(1), step_rows: step_rows.max(1) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole, so a panic elsewhere cannot have broken it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A group begins: what an earlier group noted and did not commit is forgotten.
    pub fn group_starts(&self) {
        NOTED.with(|n| n.borrow_mut().clear());
    }

    /// A group committed: what it noted counts.
    pub fn committed(&self) {
        let noted = NOTED.with(|n| std::mem::take(&mut *n.borrow_mut()));
        if noted.is_empty() {
            return;
        }
        let mut state = self.lock();
        state.last_write = Some(std::time::Instant::now());
        for n in noted {
            match n {
                Noted::Tail(t, bytes) => {
                    let count = state.tails.entry(t.clone()).or_default();
                    *count += 1;
                    let due = *count >= self.flush_at;
                    let held = state.tail_bytes.entry(t.clone()).or_default();
                    *held += bytes;
                    let full = *held >= FLUSH_BYTES;
                    state.first_write.entry(t.clone()).or_insert_with(std::time::Instant::now);
                    if due || full {
                        state.whole.insert(t.clone());
                        state.enqueue(&t);
                    }
                }
                Noted::Due(t) => state.enqueue(&t),
            }
        }
    }

    /// Steps are due.
    pub fn busy(&self) -> bool {
        self.lock().has_work()
    }

    /// Nothing is due, nor will be when the writer is idle.
    pub fn at_rest(&self) -> bool {
        let state = self.lock();
        !state.has_work() && state.tails.keys().all(is_paused)
    }

    /// Whether a step is due now; `idle`, nothing else due and no write into a tail for
    /// [`QUIET`]: every tail waiting is flushed.
    pub fn begin(&self, idle: bool) -> bool {
        let mut state = self.lock();
        let quiet = state.last_write.is_none_or(|at| at.elapsed() >= QUIET);
        let flush_all = idle && quiet && !state.has_work();
        let waiting: Vec<TenantId> = state
            .tails
            .keys()
            .filter(|t| flush_all || state.first_write.get(*t).is_some_and(|at| at.elapsed() >= FLUSH_AGE))
            .cloned()
            .collect();
        for t in waiting {
            state.whole.insert(t.clone());
            state.enqueue(&t);
        }
        state.has_work()
    }

    /// The next step, for the first tenant due that is not paused.
    pub fn next_job(self: &Arc<Self>) -> Option<Box<dyn WriteJob>> {
        let mut state = self.lock();
        let at = state.due.iter().position(|t| !is_paused(t))?;
        let tenant = state.due.remove(at)?;
        state.queued.remove(&tenant);
        // A tail is flushed once that many writes went into it (rewrites of one document too:
        // a tail rewritten in place stays short but is read by every search all the same), or
        // whole once the writes paused.
        let flush = state.whole.remove(&tenant);
        let underway = state.underway.remove(&tenant).unwrap_or_default();
        let flush_turn = state.merged_last.contains(&tenant);
        Some(Box::new(Step { upkeep: self.clone(), tenant, flush, flush_turn, underway, outcome: None, failed: None }))
    }

    /// Looks at the tenant again (its move ended).
    pub fn resume(&self, tenant: &TenantId) {
        self.lock().enqueue(tenant);
    }

    /// Documents in the tails as counted (not yet in a segment), steps committed, and the
    /// writer's time in them.
    pub fn stats(&self) -> (u64, u64, std::time::Duration) {
        let state = self.lock();
        (state.tails.values().sum::<usize>() as u64, state.steps, state.step_time)
    }
}

/// What a step did and left.
pub(crate) struct Outcome {
    /// Whether the tenant's tail is empty after the step.
    tail_empty: bool,
    /// Whether the step began a flush (of the tail's first documents), how many documents it
    /// took and the bytes of their term lists.
    flushed: bool,
    flushed_docs: usize,
    flushed_bytes: usize,
    /// Whether the step was a merge's, a deletion's or a merge's first (not a flush's).
    merged: bool,
    more: bool,
    took: std::time::Duration,
}

/// A tenant's segments being written a slice per step: a merge's, and a flush's too large for
/// one step. Each is pending (in `search_pending`, not in the catalog) until its last step.
#[derive(Clone, Default)]
pub(crate) struct Underway {
    merge: Option<Merging>,
    flush: Option<Merging>,
    /// The last document the last flush read: the next one reads on from there (round the tail),
    /// so documents rewritten while their flush was written, which stay in the tail, do not
    /// hold back those after them.
    flush_after: Option<(DocKind, String)>,
}

impl Underway {
    fn is_empty(&self) -> bool {
        self.merge.is_none() && self.flush.is_none() && self.flush_after.is_none()
    }

    /// The pending segments it writes.
    fn outs(&self) -> [Option<i64>; 2] {
        [self.merge.as_ref().map(|m| m.job.out), self.flush.as_ref().map(|m| m.job.out)]
    }
}

/// A search step as a job of the writer's group.
struct Step {
    upkeep: Arc<SearchUpkeep>,
    tenant: TenantId,
    /// Whether the tail is to be flushed.
    flush: bool,
    /// Whether the last step was a merge's: flushing goes first.
    flush_turn: bool,
    /// The tenant's segments being written when the step began.
    underway: Underway,
    outcome: Option<(Outcome, Underway)>,
    failed: Option<Error>,
}

impl WriteJob for Step {
    fn owner(&self) -> Option<u64> {
        None
    }

    fn run(&mut self, conn: &Connection) -> bool {
        if is_paused(&self.tenant) {
            return true;
        }
        let began = std::time::Instant::now();
        let rows = self.upkeep.step_rows;
        let asked = Asked { flush: self.flush, flush_turn: self.flush_turn, rows, flush_terms: rows * FLUSH_STEPS };
        match maintain_tx(conn, &self.tenant, asked, self.underway.clone()) {
            Ok((mut o, underway)) => {
                o.took = began.elapsed();
                tracing::debug!(
                    tenant = %self.tenant,
                    flushed = o.flushed_bytes,
                    merged = o.merged,
                    took_us = o.took.as_micros() as u64,
                    "search step"
                );
                self.outcome = Some((o, underway));
                true
            }
            Err(e) => {
                // Nothing is lost: the documents stay where they were, readable.
                tracing::error!("cannot keep the search index of tenant {} in shape: {e}", self.tenant);
                self.failed = Some(e);
                false
            }
        }
    }

    fn failure(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    fn finish(self: Box<Self>, committed: std::result::Result<(), Error>) {
        let mut state = self.upkeep.lock();
        let (Ok(()), Some((outcome, underway))) = (committed, self.outcome) else {
            // Not done: what was under way goes on from where it was (at the tenant's next
            // write, or its resume after a move), and a flush asked for is still due.
            if !self.underway.is_empty() {
                state.underway.insert(self.tenant.clone(), self.underway);
            }
            if self.flush {
                state.whole.insert(self.tenant);
            }
            return;
        };
        if underway.is_empty() {
            state.merged_last.remove(&self.tenant);
        } else {
            state.underway.insert(self.tenant.clone(), underway);
        }
        if outcome.merged {
            state.merged_last.insert(self.tenant.clone());
        } else {
            state.merged_last.remove(&self.tenant);
        }
        state.steps += 1;
        state.step_time += outcome.took;
        // After a flush, what it took no longer counts (a tail still holding documents holds
        // one at least); an empty tail is forgotten. (The tail is not counted: a count reads
        // every row of it, large ones too.)
        if outcome.tail_empty {
            state.first_write.remove(&self.tenant);
            state.tail_bytes.remove(&self.tenant);
            state.tails.remove(&self.tenant);
        } else if outcome.flushed {
            state.first_write.remove(&self.tenant);
            if let Some(held) = state.tail_bytes.get_mut(&self.tenant) {
                *held = held.saturating_sub(outcome.flushed_bytes);
            }
            let count = state.tails.entry(self.tenant.clone()).or_default();
            *count = count.saturating_sub(outcome.flushed_docs).max(1);
        }
        // A flush asked for and not begun (a merge's turn, or one still being written) is still
        // due; so is one the tail still holds enough for.
        let written = state.tails.get(&self.tenant).copied().unwrap_or(0);
        let bytes = state.tail_bytes.get(&self.tenant).copied().unwrap_or(0);
        let flush = (self.flush && !outcome.flushed) || written >= self.upkeep.flush_at || bytes >= FLUSH_BYTES;
        if flush {
            state.whole.insert(self.tenant.clone());
        }
        if outcome.more || flush {
            state.enqueue(&self.tenant);
        }
    }
}

/// What a step is asked to do.
#[derive(Clone, Copy)]
pub(crate) struct Asked {
    /// Flush the tail.
    pub flush: bool,
    /// The last step was a merge's: a flush goes first.
    pub flush_turn: bool,
    /// About the most term rows to read or write ([`STEP_ROWS`]).
    pub rows: usize,
    /// The most distinct terms a flush writes in one step.
    pub flush_terms: usize,
}

/// One step for the tenant, on the flushing side or the merging side, taking turns while both
/// have work:
/// - flushing: the next slice of a flush being written, else (if asked) a flush of the tail's
///   first documents ([`flush_tx`]);
/// - merging: the next slice of the merge under way; else a slice of a pending segment deleted;
///   else the first step of the merge or compaction due, if one is.
///
/// A tail not due waits for more writes, or for them to pause.
pub(crate) fn maintain_tx(
    conn: &Connection,
    tenant: &TenantId,
    asked: Asked,
    underway: Underway,
) -> Result<(Outcome, Underway)> {
    // Segments being written that are not those their steps began with (the tenant was moved or
    // purged meanwhile) are dropped: what is left of them is deleted as any pending segment.
    let current = |m: Option<Merging>| -> Result<Option<Merging>> {
        Ok(match m {
            Some(m) if m.job.is_current(conn, tenant)? => Some(m),
            _ => None,
        })
    };
    let mut left = Underway {
        merge: current(underway.merge)?,
        flush: current(underway.flush)?,
        flush_after: underway.flush_after,
    };
    let flushing_work = left.flush.is_some() || asked.flush;
    // While both sides have work they take turns (a merge begun, a pending segment to delete or
    // a merge due count), so neither a stream of flushes nor a long merge holds the other back.
    let merging_work = || -> Result<bool> {
        Ok(left.merge.is_some()
            || has_pending_tx(conn, tenant, left.outs())?
            || choose(&catalog_tx(conn, tenant)?).is_some())
    };
    let (mut flushed, mut flushed_docs, mut flushed_bytes, mut merged) = (false, 0, 0, false);
    let mut done = false;
    if flushing_work && (asked.flush_turn || !merging_work()?) {
        if let Some(f) = left.flush.take() {
            left.flush = f.step_tx(conn, tenant, asked.rows)?;
            done = true;
        } else {
            let f = flush_tx(conn, tenant, asked.flush_terms, asked.rows, left.flush_after.as_ref())?;
            flushed = true;
            flushed_docs = f.docs;
            flushed_bytes = f.bytes;
            done = f.docs > 0;
            left.flush = f.underway;
            left.flush_after = f.last;
        }
    }
    if !done {
        merged = true;
        if let Some(m) = left.merge.take() {
            left.merge = m.step_tx(conn, tenant, asked.rows)?;
        } else if !delete_pending_tx(conn, tenant, left.outs(), asked.rows)? {
            left.merge = begin_merge_tx(conn, tenant, asked.rows)?;
        }
    }
    let tail_empty: bool = conn
        .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM search_tail WHERE tenant_id = ?1)")
        .and_then(|mut s| s.query_row(params![tenant.as_str()], |r| r.get(0)))
        .map_err(sql_error)?;
    if tail_empty && left.flush.is_none() {
        left.flush_after = None;
    }
    // A flush that left documents goes on; so do merges and deletions.
    let more = (flushed && !tail_empty)
        || left.merge.is_some()
        || left.flush.is_some()
        || has_pending_tx(conn, tenant, left.outs())?
        || choose(&catalog_tx(conn, tenant)?).is_some();
    let outcome =
        Outcome { tail_empty, flushed, flushed_docs, flushed_bytes, merged, more, took: std::time::Duration::ZERO };
    Ok((outcome, left))
}

/// What [`flush_tx`] did.
pub(crate) struct Flush {
    /// Documents taken from the tail, and their term lists' bytes.
    pub docs: usize,
    pub bytes: usize,
    /// Their segment, if it is too large for one step: being written.
    pub underway: Option<Merging>,
    /// The last document read.
    pub last: Option<(DocKind, String)>,
}

/// Flushes the tenant tail's next documents after `after` (from its start if none follow) into
/// a new segment: at most [`FLUSH_MAX`] of them and [`FLUSH_READ_BYTES`] of term lists, and at
/// least one. A segment of at most `max_terms` terms is written at once; a larger one is written
/// `rows` terms a step, its documents staying in the tail until its last step.
pub(crate) fn flush_tx(
    conn: &Connection,
    tenant: &TenantId,
    max_terms: usize,
    rows: usize,
    after: Option<&(DocKind, String)>,
) -> Result<Flush> {
    let mut docs: Vec<NewDoc> = Vec::new();
    let mut texts: HashMap<(DocKind, String), String> = HashMap::new();
    let mut bytes = 0usize;
    let mut last = None;
    for from in [after, None] {
        let (kind, doc) = from.map_or((-1, ""), |(k, d)| (*k as i64, d.as_str()));
        let mut s = conn
            .prepare_cached(
                "SELECT kind, doc, len, terms FROM search_tail WHERE tenant_id = ?1 AND (kind, doc) > (?2, ?3)
                 ORDER BY kind, doc LIMIT ?4",
            )
            .map_err(sql_error)?;
        let mut rows = s.query(params![tenant.as_str(), kind, doc, FLUSH_MAX as i64]).map_err(sql_error)?;
        while bytes < FLUSH_READ_BYTES {
            let Some(r) = rows.next().map_err(sql_error)? else { break };
            let kind = match r.get::<_, i64>(0).map_err(sql_error)? {
                0 => DocKind::File,
                _ => DocKind::Memory,
            };
            let doc: String = r.get(1).map_err(sql_error)?;
            let text: String = r.get(3).map_err(sql_error)?;
            bytes += text.len();
            let terms = parse_tail_terms(&text)?;
            last = Some((kind, doc.clone()));
            texts.insert((kind, doc.clone()), text);
            docs.push(NewDoc { kind, doc, len: r.get(2).map_err(sql_error)?, terms });
        }
        if !docs.is_empty() || from.is_none() {
            break;
        }
    }
    let n = docs.len();
    if n == 0 {
        return Ok(Flush { docs: 0, bytes: 0, underway: None, last: None });
    }
    let built = segment::build(docs);
    if built.terms.len() > max_terms {
        let texts = built.docs.iter().map(|d| texts.remove(&(d.kind, d.doc.clone())).unwrap_or_default()).collect();
        let (out, uid) = reserve_tx(conn, tenant)?;
        write_doc_chunks(conn, tenant, out, &built.docs)?;
        let job = MergeJob { out, uid, level: 0, source: Source::Tail { built, texts } };
        let underway = Merging { job: Arc::new(job), through: None, written: 0 }.step_tx(conn, tenant, rows)?;
        return Ok(Flush { docs: n, bytes, underway, last });
    }
    let mut gone = conn
        .prepare_cached("DELETE FROM search_tail WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
        .map_err(sql_error)?;
    for d in &built.docs {
        gone.execute(params![tenant.as_str(), d.kind as i64, d.doc]).map_err(sql_error)?;
    }
    let seg = next_seg(conn, tenant)?;
    write_segment(conn, tenant, seg, 0, &built, DocRows::Update)?;
    Ok(Flush { docs: n, bytes, underway: None, last })
}

/// A segment's catalog entry as a merge chooses by it.
pub(crate) struct Cataloged {
    seg: i64,
    level: i64,
    docs: i64,
    dead: u32,
    /// Its term rows.
    terms: i64,
}

pub(crate) fn catalog_tx(conn: &Connection, tenant: &TenantId) -> Result<Vec<Cataloged>> {
    let mut s = conn
        .prepare_cached("SELECT seg, level, docs, dead, terms FROM search_segments WHERE tenant_id = ?1 ORDER BY seg")
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.as_str()], |r| {
            let dead: Vec<u8> = r.get(3)?;
            Ok(Cataloged {
                seg: r.get(0)?,
                level: r.get(1)?,
                docs: r.get(2)?,
                dead: segment::dead_count(&dead),
                terms: r.get(4)?,
            })
        })
        .map_err(sql_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_error)
}

/// The segments to merge next and the level of the result: a segment all dead (dropped), a
/// top-level segment half dead alone (lower ones are merged soon anyway, leaving their dead
/// out), else the oldest [`MERGE_FACTOR`] of the lowest level that has as many.
pub(crate) fn choose(catalog: &[Cataloged]) -> Option<(Vec<i64>, i64)> {
    // A segment whose every document is dead is dropped, whatever its level, unread.
    if let Some(c) = catalog.iter().find(|c| i64::from(c.dead) >= c.docs) {
        return Some((vec![c.seg], c.level));
    }
    if let Some(c) = catalog.iter().find(|c| is_top(c.level) && wants_compaction(c.dead, c.docs)) {
        return Some((vec![c.seg], c.level));
    }
    let merge = (0..TOP_LEVEL).find_map(|level| {
        let at: Vec<i64> = catalog.iter().filter(|c| c.level == level).map(|c| c.seg).collect();
        (at.len() >= MERGE_FACTOR).then(|| (at[..MERGE_FACTOR].to_vec(), level + 1))
    });
    // Top segments left small by deaths and compactions are merged together, so a tenant's
    // segments stay about as many as its live documents need.
    merge.or_else(|| {
        let small: Vec<i64> = catalog
            .iter()
            .filter(|c| is_top(c.level) && c.docs - i64::from(c.dead) < FLUSH_MAX as i64 && c.terms < SMALL_TERMS)
            .map(|c| c.seg)
            .collect();
        (small.len() >= MERGE_FACTOR).then(|| (small[..MERGE_FACTOR].to_vec(), TOP_LEVEL))
    })
}

/// A segment being written a slice per step, as its steps pass it on.
#[derive(Clone)]
pub(crate) struct Merging {
    job: Arc<MergeJob>,
    /// The terms up to this one are written (`None`: none yet).
    through: Option<String>,
    /// Term rows written so far.
    written: i64,
}

/// What a segment being written began with.
struct MergeJob {
    /// The segment written, pending until the last step, and its `uid` (its pending row's, then
    /// its catalog row's).
    out: i64,
    uid: i64,
    level: i64,
    source: Source,
}

/// Where a segment being written takes its documents from.
enum Source {
    /// Segments merged: each with its `uid`, and how the merge renumbers their documents.
    Segments { inputs: Vec<(i64, i64)>, plan: MergePlan },
    /// The tail's documents, flushed: the segment built of them, and each one's term list as
    /// its tail row held it.
    Tail { built: Built, texts: Vec<String> },
}

impl MergeJob {
    fn inputs(&self) -> &[(i64, i64)] {
        match &self.source {
            Source::Segments { inputs, .. } => inputs,
            Source::Tail { .. } => &[],
        }
    }

    fn docs(&self) -> &[segment::SegDoc] {
        match &self.source {
            Source::Segments { plan, .. } => &plan.docs,
            Source::Tail { built, .. } => &built.docs,
        }
    }

    /// Whether the database still holds what the segment began with: its pending row and its
    /// inputs in the catalog, by the same `uid`s.
    fn is_current(&self, conn: &Connection, tenant: &TenantId) -> Result<bool> {
        let uid_of = |table: &str, seg: i64| -> Result<Option<i64>> {
            conn.prepare_cached(&format!("SELECT uid FROM {table} WHERE tenant_id = ?1 AND seg = ?2"))
                .and_then(|mut s| s.query_row(params![tenant.as_str(), seg], |r| r.get(0)).optional())
                .map_err(sql_error)
        };
        if uid_of("search_pending", self.out)? != Some(self.uid) {
            return Ok(false);
        }
        for (seg, uid) in self.inputs() {
            if uid_of("search_segments", *seg)? != Some(*uid) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The first step of the merge or compaction due, if one is: reserves the segment merged into,
/// writes its document list and the first range of its terms. A segment all dead is retired
/// whole. Returns the merge under way (none if it needed no more steps, or nothing was due).
fn begin_merge_tx(conn: &Connection, tenant: &TenantId, rows: usize) -> Result<Option<Merging>> {
    let catalog = catalog_tx(conn, tenant)?;
    let Some((segs, level)) = choose(&catalog) else { return Ok(None) };
    let all_dead = segs.iter().all(|s| catalog.iter().any(|c| c.seg == *s && i64::from(c.dead) >= c.docs));
    if all_dead {
        for seg in &segs {
            retire_tx(conn, tenant, *seg)?;
        }
        return Ok(None);
    }
    let mut inputs = Vec::with_capacity(segs.len());
    let mut lists = Vec::with_capacity(segs.len());
    for seg in &segs {
        let (dead, uid): (Vec<u8>, i64) = conn
            .prepare_cached("SELECT dead, uid FROM search_segments WHERE tenant_id = ?1 AND seg = ?2")
            .and_then(|mut s| s.query_row(params![tenant.as_str(), seg], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(sql_error)?;
        lists.push((crate::search_layout::documents_tx(conn, tenant, *seg)?, dead));
        inputs.push((*seg, uid));
    }
    let plan = segment::plan_merge(&lists.iter().map(|(d, dead)| (d.as_slice(), dead.as_slice())).collect::<Vec<_>>());
    let (out, uid) = reserve_tx(conn, tenant)?;
    write_doc_chunks(conn, tenant, out, &plan.docs)?;
    let job = MergeJob { out, uid, level, source: Source::Segments { inputs, plan } };
    Merging { job: Arc::new(job), through: None, written: 0 }.step_tx(conn, tenant, rows)
}

/// A new segment's number and `uid`, listed as pending: a number no other segment has (ids are
/// reused once a segment is deleted), and a `uid` readers cache the segment's document list by
/// and its steps know its rows by (never 0, which marks a pending segment being deleted).
fn reserve_tx(conn: &Connection, tenant: &TenantId) -> Result<(i64, i64)> {
    let out = next_seg(conn, tenant)?;
    let uid: i64 = rand::random::<i64>() | 1;
    conn.prepare_cached("INSERT INTO search_pending (tenant_id, seg, uid) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![tenant.as_str(), out, uid]))
        .map_err(sql_error)?;
    Ok((out, uid))
}

impl Merging {
    /// Writes the next range of the segment's terms: for a merge, at most `rows` input rows
    /// read, split evenly among the inputs, up to the least of the last terms read from the
    /// inputs that had that many left; for a flush, the next `rows` terms. Once every term is
    /// written, publishes the segment ([`publish_tx`]) and returns `None`.
    fn step_tx(self, conn: &Connection, tenant: &TenantId, rows: usize) -> Result<Option<Merging>> {
        let job = &self.job;
        let (terms, through) = match &job.source {
            Source::Segments { inputs, plan } => {
                merge_range_tx(conn, tenant, inputs, plan, self.through.as_deref(), rows)?
            }
            Source::Tail { built, .. } => {
                let from = match &self.through {
                    Some(t) => built.terms.partition_point(|(term, _)| term <= t),
                    None => 0,
                };
                let to = (from + rows.max(1)).min(built.terms.len());
                let through = (to < built.terms.len()).then(|| built.terms[to - 1].0.clone());
                (built.terms[from..to].to_vec(), through)
            }
        };
        write_terms(conn, tenant, job.out, &terms)?;
        let written = self.written + terms.len() as i64;
        match through {
            Some(t) => Ok(Some(Merging { job: self.job.clone(), through: Some(t), written })),
            None => {
                publish_tx(conn, tenant, job, written)?;
                Ok(None)
            }
        }
    }
}

/// Terms with their encoded postings, in term order.
type Terms = Vec<(String, Vec<u8>)>;

/// The merged postings of the inputs' next terms after `after` (see [`Merging::step_tx`]), and
/// the last term they reach (`None`: the inputs' ends).
fn merge_range_tx(
    conn: &Connection,
    tenant: &TenantId,
    inputs: &[(i64, i64)],
    plan: &MergePlan,
    after: Option<&str>,
    rows: usize,
) -> Result<(Terms, Option<String>)> {
    let per_input = (rows / inputs.len().max(1)).max(1);
    // Every term is a word: "" is before all of them.
    let after = after.unwrap_or_default();
    let mut s = conn
        .prepare_cached(
            "SELECT term, postings FROM search_segment_terms WHERE tenant_id = ?1 AND seg = ?2 AND term > ?3
             ORDER BY term LIMIT ?4",
        )
        .map_err(sql_error)?;
    let mut read: Vec<Vec<(String, Vec<u8>)>> = Vec::with_capacity(inputs.len());
    let mut through: Option<String> = None;
    for (seg, _) in inputs {
        let rows = s
            .query_map(params![tenant.as_str(), seg, after, per_input as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_error)?
            .collect::<rusqlite::Result<Vec<(String, Vec<u8>)>>>()
            .map_err(sql_error)?;
        if rows.len() == per_input {
            let last = &rows[rows.len() - 1].0;
            if through.as_ref().is_none_or(|t| last < t) {
                through = Some(last.clone());
            }
        }
        read.push(rows);
    }
    if let Some(t) = &through {
        for rows in &mut read {
            rows.truncate(rows.partition_point(|(term, _)| term <= t));
        }
    }
    let terms = segment::merge_terms(&plan.renumber, &read.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
    Ok((terms, through))
}

/// The last step of a segment being written: it enters the catalog, and its live documents'
/// `search_docs` rows point at it. Of a merge: the documents that died in its inputs since it
/// began (replaced or deleted) are marked dead in it, and its inputs are retired. Of a flush:
/// each document whose tail row is still the one flushed leaves the tail; the others (replaced
/// or deleted meanwhile) are marked dead in it.
fn publish_tx(conn: &Connection, tenant: &TenantId, job: &MergeJob, terms: i64) -> Result<()> {
    let id = tenant.as_str();
    let docs = job.docs();
    let mut dead = segment::no_dead(docs.len());
    let mut moved = conn
        .prepare_cached(
            "UPDATE search_docs SET seg = ?4, number = ?5
             WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3 AND seg = ?6 AND number = ?7",
        )
        .map_err(sql_error)?;
    let mut point = |d: &segment::SegDoc, new: u32, seg: i64, old: u32| -> Result<()> {
        let changed = moved.execute(params![id, d.kind as i64, d.doc, job.out, new, seg, old]).map_err(sql_error)?;
        if changed != 1 {
            return Err(Error::internal(format!("the live search document {:?} of a new segment has no entry", d.doc)));
        }
        Ok(())
    };
    match &job.source {
        Source::Segments { inputs, plan } => {
            let mut now_dead = Vec::with_capacity(inputs.len());
            for (seg, _) in inputs {
                let dead: Vec<u8> = conn
                    .prepare_cached("SELECT dead FROM search_segments WHERE tenant_id = ?1 AND seg = ?2")
                    .and_then(|mut s| s.query_row(params![id, seg], |r| r.get(0)))
                    .map_err(sql_error)?;
                now_dead.push(dead);
            }
            for (i, old, new) in plan.kept() {
                if segment::is_dead(&now_dead[i], old) {
                    segment::set_dead(&mut dead, new);
                } else {
                    point(&plan.docs[new as usize], new, inputs[i].0, old)?;
                }
            }
        }
        Source::Tail { built, texts } => {
            let mut row = conn
                .prepare_cached(
                    "SELECT terms FROM search_tail WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3 AND len = ?4",
                )
                .map_err(sql_error)?;
            let mut gone = conn
                .prepare_cached("DELETE FROM search_tail WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
                .map_err(sql_error)?;
            for (number, (d, text)) in built.docs.iter().zip(texts).enumerate() {
                let now: Option<String> = row
                    .query_row(params![id, d.kind as i64, d.doc, d.len], |r| r.get(0))
                    .optional()
                    .map_err(sql_error)?;
                if now.as_ref() == Some(text) {
                    gone.execute(params![id, d.kind as i64, d.doc]).map_err(sql_error)?;
                    // A document in the tail is numbered 0 there.
                    point(d, number as u32, 0, 0)?;
                } else {
                    segment::set_dead(&mut dead, number as u32);
                }
            }
        }
    }
    conn.prepare_cached(
        "INSERT INTO search_segments (tenant_id, seg, level, docs, dead, uid, terms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| s.execute(params![id, job.out, job.level, docs.len() as i64, dead, job.uid, terms]))
    .map_err(sql_error)?;
    conn.prepare_cached("DELETE FROM search_pending WHERE tenant_id = ?1 AND seg = ?2")
        .and_then(|mut s| s.execute(params![id, job.out]))
        .map_err(sql_error)?;
    for (seg, _) in job.inputs() {
        retire_tx(conn, tenant, *seg)?;
    }
    Ok(())
}

/// Takes a segment out of the catalog (no search reads it from this commit on) into
/// `search_pending`, whence its rows are deleted a slice per step.
fn retire_tx(conn: &Connection, tenant: &TenantId, seg: i64) -> Result<()> {
    for sql in [
        "INSERT INTO search_pending (tenant_id, seg, uid)
           SELECT tenant_id, seg, uid FROM search_segments WHERE tenant_id = ?1 AND seg = ?2",
        "DELETE FROM search_segments WHERE tenant_id = ?1 AND seg = ?2",
    ] {
        conn.prepare_cached(sql).and_then(|mut s| s.execute(params![tenant.as_str(), seg])).map_err(sql_error)?;
    }
    Ok(())
}

/// Deletes up to `rows` term rows of one of the tenant's pending segments other than those in
/// `keep` (being written), and the segment's document list and pending row once its terms are
/// gone. Returns whether there was one.
pub(crate) fn delete_pending_tx(
    conn: &Connection,
    tenant: &TenantId,
    keep: [Option<i64>; 2],
    rows: usize,
) -> Result<bool> {
    let id = tenant.as_str();
    let seg: Option<i64> = conn
        .prepare_cached(
            "SELECT seg FROM search_pending WHERE tenant_id = ?1 AND seg IS NOT ?2 AND seg IS NOT ?3 ORDER BY seg LIMIT 1",
        )
        .and_then(|mut s| s.query_row(params![id, keep[0], keep[1]], |r| r.get(0)).optional())
        .map_err(sql_error)?;
    let Some(seg) = seg else { return Ok(false) };
    // Known by no merge from now on (uid 0): a merge of a tenant moved away and back must not go
    // on writing into rows partly deleted.
    conn.prepare_cached("UPDATE search_pending SET uid = 0 WHERE tenant_id = ?1 AND seg = ?2")
        .and_then(|mut s| s.execute(params![id, seg]))
        .map_err(sql_error)?;
    let deleted = conn
        .prepare_cached(
            "DELETE FROM search_segment_terms WHERE tenant_id = ?1 AND seg = ?2 AND term IN
               (SELECT term FROM search_segment_terms WHERE tenant_id = ?1 AND seg = ?2 ORDER BY term LIMIT ?3)",
        )
        .and_then(|mut s| s.execute(params![id, seg, rows as i64]))
        .map_err(sql_error)?;
    if deleted < rows {
        for table in ["search_segment_docs", "search_pending"] {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE tenant_id = ?1 AND seg = ?2"))
                .and_then(|mut s| s.execute(params![id, seg]))
                .map_err(sql_error)?;
        }
    }
    Ok(true)
}

fn has_pending_tx(conn: &Connection, tenant: &TenantId, keep: [Option<i64>; 2]) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM search_pending WHERE tenant_id = ?1 AND seg IS NOT ?2 AND seg IS NOT ?3)",
    )
    .and_then(|mut s| s.query_row(params![tenant.as_str(), keep[0], keep[1]], |r| r.get(0)))
    .map_err(sql_error)
}

/// A number for a new segment: past every segment of the tenant's, in the catalog or pending.
pub(crate) fn next_seg(conn: &Connection, tenant: &TenantId) -> Result<i64> {
    conn.prepare_cached(
        "SELECT COALESCE(MAX(seg), 0) + 1 FROM
           (SELECT seg FROM search_segments WHERE tenant_id = ?1 UNION ALL SELECT seg FROM search_pending WHERE tenant_id = ?1)",
    )
    .and_then(|mut s| s.query_row(params![tenant.as_str()], |r| r.get(0)))
    .map_err(sql_error)
}

/// How [`write_segment`] points the documents' `search_docs` rows at the segment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocRows {
    /// Each document has its row (in the tail or another segment): it is moved.
    Update,
    /// The rows are written here (a [`crate::search::SegmentBatch`]'s documents).
    Insert,
}

fn write_doc_chunks(conn: &Connection, tenant: &TenantId, seg: i64, docs: &[segment::SegDoc]) -> Result<()> {
    let mut chunk = conn
        .prepare_cached("INSERT INTO search_segment_docs (tenant_id, seg, chunk, docs) VALUES (?1, ?2, ?3, ?4)")
        .map_err(sql_error)?;
    for (i, bytes) in segment::doc_chunks(docs).into_iter().enumerate() {
        chunk.execute(params![tenant.as_str(), seg, i as i64, bytes]).map_err(sql_error)?;
    }
    Ok(())
}

fn write_terms(conn: &Connection, tenant: &TenantId, seg: i64, terms: &[(String, Vec<u8>)]) -> Result<()> {
    let mut term = conn
        .prepare_cached("INSERT INTO search_segment_terms (tenant_id, seg, term, postings) VALUES (?1, ?2, ?3, ?4)")
        .map_err(sql_error)?;
    for (t, postings) in terms {
        term.execute(params![tenant.as_str(), seg, t, postings]).map_err(sql_error)?;
    }
    Ok(())
}

/// Stores a built segment whole (a flush's, or an import's), and points its documents'
/// `search_docs` rows at it.
pub(crate) fn write_segment(
    conn: &Connection,
    tenant: &TenantId,
    seg: i64,
    level: i64,
    built: &Built,
    rows: DocRows,
) -> Result<()> {
    let id = tenant.as_str();
    conn.prepare_cached(
        "INSERT INTO search_segments (tenant_id, seg, level, docs, dead, uid, terms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        // A number no other segment has (ids are reused once a segment is deleted): what
        // readers cache the segment's document list by.
        let uid: i64 = rand::random();
        let docs = built.docs.len();
        s.execute(params![id, seg, level, docs as i64, segment::no_dead(docs), uid, built.terms.len() as i64])
    })
    .map_err(sql_error)?;
    write_doc_chunks(conn, tenant, seg, &built.docs)?;
    write_terms(conn, tenant, seg, &built.terms)?;
    if rows == DocRows::Insert {
        let mut located = conn
            .prepare_cached(
                "INSERT INTO search_docs (tenant_id, kind, doc, len, seg, number) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_id, kind, doc) DO UPDATE SET len = excluded.len, seg = excluded.seg,
                   number = excluded.number",
            )
            .map_err(sql_error)?;
        for (number, d) in built.docs.iter().enumerate() {
            located.execute(params![id, d.kind as i64, d.doc, d.len, seg, number as i64]).map_err(sql_error)?;
        }
        return Ok(());
    }
    let mut located = conn
        .prepare_cached("UPDATE search_docs SET seg = ?4, number = ?5 WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
        .map_err(sql_error)?;
    for (number, d) in built.docs.iter().enumerate() {
        let changed = located.execute(params![id, d.kind as i64, d.doc, seg, number as i64]).map_err(sql_error)?;
        if changed != 1 {
            return Err(Error::internal(format!("the search document {:?} moved into a segment has no entry", d.doc)));
        }
    }
    Ok(())
}

/// Flushes the tenant's whole tail, finishes what is `underway`, merges until nothing is due
/// and deletes every pending segment (the writer goes step by step).
#[cfg(test)]
pub(crate) fn settle_tx(conn: &Connection, tenant: &TenantId, mut underway: Underway) -> Result<()> {
    let asked = Asked { flush: true, flush_turn: true, rows: STEP_ROWS, flush_terms: STEP_ROWS * FLUSH_STEPS };
    loop {
        let (outcome, left) = maintain_tx(conn, tenant, asked, underway)?;
        underway = left;
        if !outcome.more && outcome.tail_empty {
            return Ok(());
        }
    }
}
