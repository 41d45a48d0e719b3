//! Keeping the search index in shape, on the writer (see `search` for the layout): a tenant's
//! tail is flushed into a new segment once it holds `OpenOptions::search_flush_at` (1,024) documents (or the writer is
//! idle), [`MERGE_FACTOR`] segments of one level are merged into one of the next, up to
//! [`TOP_LEVEL`], and a segment mostly dead is rewritten alone. Each step is one job at the end of
//! a group commit (its pages share the group's fsync) and touches one tenant: at most
//! [`FLUSH_MAX`] documents, or one merge of at most `MERGE_FACTOR` segments, so it never holds
//! the other tenants' writes up for long.
//!
//! What is due is kept in memory: the write path notes each tenant whose tail it wrote or whose
//! segment it killed most of ([`note`]; a thread-local of the writer, taken after the group
//! commits); at open, the tails, merges and compactions the database holds are found again. A
//! step only moves documents from one place to another inside one transaction, so a crash at any
//! point leaves the index whole: a step not committed is a step not done.
//!
//! A tenant being moved is paused ([`SearchUpkeep::pause`]): its segments stay as they are until
//! the move ends, so the move copies them once.

use crate::error::sql_error;
use crate::pool::WriteJob;
use crate::search_layout::parse_tail_terms;
use rusqlite::{params, Connection};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tenantry_core::ids::TenantId;
use tenantry_core::search::segment::{self, Built, Input, NewDoc};
use tenantry_core::search::DocKind;
use tenantry_core::{Error, Result};

/// At most this many tail documents go into one segment (one step).
pub(crate) const FLUSH_MAX: usize = 2048;
/// A tail holding this many bytes of term lists is flushed at the next group commit.
pub(crate) const FLUSH_BYTES: usize = 4 << 20;
/// A tail is flushed once its first write is this old, however short.
pub(crate) const FLUSH_AGE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long writes into the tails pause before the short tails are flushed too.
pub(crate) const QUIET: std::time::Duration = std::time::Duration::from_millis(200);
/// Segments of one level merged into one of the next.
pub(crate) const MERGE_FACTOR: usize = 4;
/// Segments of this level are not merged further, but for compaction and the merge of small ones:
/// a merge stays a step of at most `FLUSH_MAX × MERGE_FACTOR` documents.
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
}

impl SearchUpkeep {
    /// The schedule for what the database holds: every tenant with a tail, a merge or a
    /// compaction due.
    pub fn open(conn: &Connection, flush_at: usize) -> Result<SearchUpkeep> {
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
        Ok(SearchUpkeep { state: Mutex::new(state), flush_at: flush_at.max(1) })
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
        Some(Box::new(Step { upkeep: self.clone(), tenant, flush, outcome: None, failed: None }))
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
struct Outcome {
    tail_left: usize,
    more: bool,
    took: std::time::Duration,
}

/// A search step as a job of the writer's group.
struct Step {
    upkeep: Arc<SearchUpkeep>,
    tenant: TenantId,
    /// Whether the tail is flushed (when no merge is due).
    flush: bool,
    outcome: Option<Outcome>,
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
        match maintain_tx(conn, &self.tenant, self.flush) {
            Ok(mut o) => {
                o.took = began.elapsed();
                self.outcome = Some(o);
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
        let (Ok(()), Some(outcome)) = (committed, self.outcome) else { return };
        let mut state = self.upkeep.lock();
        state.steps += 1;
        state.step_time += outcome.took;
        // After a flush (asked for, whether or not the tail still held anything: its documents
        // may have been deleted, or the writes rolled back), what is left counts from its length;
        // otherwise every write noted since still counts. An empty tail is forgotten.
        if self.flush || outcome.tail_left == 0 {
            state.tail_bytes.remove(&self.tenant);
            state.first_write.remove(&self.tenant);
            if outcome.tail_left == 0 {
                state.tails.remove(&self.tenant);
            } else {
                state.tails.insert(self.tenant.clone(), outcome.tail_left);
            }
        }
        // A flush still due (a merge went first, or the tail held more than one step takes)
        // comes back as one.
        let written = state.tails.get(&self.tenant).copied().unwrap_or(0);
        let bytes = state.tail_bytes.get(&self.tenant).copied().unwrap_or(0);
        let flush = written >= self.upkeep.flush_at || bytes >= FLUSH_BYTES;
        if flush {
            state.whole.insert(self.tenant.clone());
        }
        if outcome.more || flush {
            state.enqueue(&self.tenant);
        }
    }
}

/// One step for the tenant: a merge or compaction if one is due, else its tail flushed (the
/// first [`FLUSH_MAX`] documents) if `flush`. Merging first keeps the segments few; a tail not
/// due waits for more writes, or for them to pause.
fn maintain_tx(conn: &Connection, tenant: &TenantId, flush: bool) -> Result<Outcome> {
    let merged = merge_tx(conn, tenant)?;
    let flushed = !merged && flush && flush_tx(conn, tenant)? > 0;
    let tail_left: i64 = conn
        .prepare_cached("SELECT count(*) FROM search_tail WHERE tenant_id = ?1")
        .and_then(|mut s| s.query_row(params![tenant.as_str()], |r| r.get(0)))
        .map_err(sql_error)?;
    // A flush that left documents (more than FLUSH_MAX) goes on; so do merges.
    let more = (flushed && tail_left > 0) || choose(&catalog_tx(conn, tenant)?).is_some();
    Ok(Outcome { tail_left: tail_left.max(0) as usize, more, took: std::time::Duration::ZERO })
}

/// Moves the first [`FLUSH_MAX`] documents of the tenant's tail into a new segment; returns how
/// many.
pub(crate) fn flush_tx(conn: &Connection, tenant: &TenantId) -> Result<usize> {
    let mut docs: Vec<NewDoc> = Vec::new();
    {
        let mut s = conn
            .prepare_cached(
                "SELECT kind, doc, len, terms FROM search_tail WHERE tenant_id = ?1 ORDER BY kind, doc LIMIT ?2",
            )
            .map_err(sql_error)?;
        let mut rows = s.query(params![tenant.as_str(), FLUSH_MAX as i64]).map_err(sql_error)?;
        let mut bytes = 0usize;
        // At most FLUSH_BYTES of term lists (and at least one document) in one step.
        while bytes < FLUSH_BYTES {
            let Some(r) = rows.next().map_err(sql_error)? else { break };
            let kind = match r.get::<_, i64>(0).map_err(sql_error)? {
                0 => DocKind::File,
                _ => DocKind::Memory,
            };
            let terms: String = r.get(3).map_err(sql_error)?;
            bytes += terms.len();
            docs.push(NewDoc {
                kind,
                doc: r.get(1).map_err(sql_error)?,
                len: r.get(2).map_err(sql_error)?,
                terms: parse_tail_terms(&terms)?,
            });
        }
    }
    if docs.is_empty() {
        return Ok(0);
    }
    let mut gone = conn
        .prepare_cached("DELETE FROM search_tail WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
        .map_err(sql_error)?;
    for d in &docs {
        gone.execute(params![tenant.as_str(), d.kind as i64, d.doc]).map_err(sql_error)?;
    }
    let n = docs.len();
    let built = segment::build(docs);
    let seg = next_seg(conn, tenant)?;
    write_segment(conn, tenant, seg, 0, &built, DocRows::Update)?;
    Ok(n)
}

/// A segment's catalog entry as a merge chooses by it.
pub(crate) struct Cataloged {
    seg: i64,
    level: i64,
    docs: i64,
    dead: u32,
}

pub(crate) fn catalog_tx(conn: &Connection, tenant: &TenantId) -> Result<Vec<Cataloged>> {
    let mut s = conn
        .prepare_cached("SELECT seg, level, docs, dead FROM search_segments WHERE tenant_id = ?1 ORDER BY seg")
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.as_str()], |r| {
            let dead: Vec<u8> = r.get(3)?;
            Ok(Cataloged { seg: r.get(0)?, level: r.get(1)?, docs: r.get(2)?, dead: segment::dead_count(&dead) })
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
            .filter(|c| is_top(c.level) && c.docs - i64::from(c.dead) < FLUSH_MAX as i64)
            .map(|c| c.seg)
            .collect();
        (small.len() >= MERGE_FACTOR).then(|| (small[..MERGE_FACTOR].to_vec(), TOP_LEVEL))
    })
}

/// One merge or compaction of the tenant's segments, if one is due; returns whether one ran.
pub(crate) fn merge_tx(conn: &Connection, tenant: &TenantId) -> Result<bool> {
    let catalog = catalog_tx(conn, tenant)?;
    let Some((segs, level)) = choose(&catalog) else { return Ok(false) };
    let all_dead = segs.iter().all(|s| catalog.iter().any(|c| c.seg == *s && i64::from(c.dead) >= c.docs));
    if all_dead {
        for seg in &segs {
            delete_segment(conn, tenant, *seg)?;
        }
        return Ok(true);
    }
    let mut inputs = Vec::with_capacity(segs.len());
    for seg in &segs {
        inputs.push(read_segment(conn, tenant, *seg)?);
    }
    let built = segment::merge(inputs)?;
    for seg in &segs {
        delete_segment(conn, tenant, *seg)?;
    }
    if !built.docs.is_empty() {
        let seg = next_seg(conn, tenant)?;
        write_segment(conn, tenant, seg, level, &built, DocRows::Update)?;
    }
    Ok(true)
}

pub(crate) fn next_seg(conn: &Connection, tenant: &TenantId) -> Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seg), 0) + 1 FROM search_segments WHERE tenant_id = ?1")
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

/// Stores a built segment, and points its documents' `search_docs` rows at it.
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
        "INSERT INTO search_segments (tenant_id, seg, level, docs, dead, uid) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        // A number no other segment has (ids are reused once a segment is merged away): what
        // readers cache the segment's document list by.
        let uid: i64 = rand::random();
        s.execute(params![id, seg, level, built.docs.len() as i64, segment::no_dead(built.docs.len()), uid])
    })
    .map_err(sql_error)?;
    let mut chunk = conn
        .prepare_cached("INSERT INTO search_segment_docs (tenant_id, seg, chunk, docs) VALUES (?1, ?2, ?3, ?4)")
        .map_err(sql_error)?;
    for (i, bytes) in built.doc_chunks().into_iter().enumerate() {
        chunk.execute(params![id, seg, i as i64, bytes]).map_err(sql_error)?;
    }
    let mut term = conn
        .prepare_cached("INSERT INTO search_segment_terms (tenant_id, seg, term, postings) VALUES (?1, ?2, ?3, ?4)")
        .map_err(sql_error)?;
    for (t, postings) in &built.terms {
        term.execute(params![id, seg, t, postings]).map_err(sql_error)?;
    }
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

/// A stored segment, whole, as a merge reads it.
fn read_segment(conn: &Connection, tenant: &TenantId, seg: i64) -> Result<Input> {
    let id = tenant.as_str();
    let dead: Vec<u8> = conn
        .prepare_cached("SELECT dead FROM search_segments WHERE tenant_id = ?1 AND seg = ?2")
        .and_then(|mut s| s.query_row(params![id, seg], |r| r.get(0)))
        .map_err(sql_error)?;
    let docs = crate::search_layout::documents_tx(conn, tenant, seg)?;
    let mut s = conn
        .prepare_cached(
            "SELECT term, postings FROM search_segment_terms WHERE tenant_id = ?1 AND seg = ?2 ORDER BY term",
        )
        .map_err(sql_error)?;
    let terms = s
        .query_map(params![id, seg], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql_error)?
        .collect::<rusqlite::Result<Vec<(String, Vec<u8>)>>>()
        .map_err(sql_error)?;
    Ok(Input { docs, dead, terms })
}

fn delete_segment(conn: &Connection, tenant: &TenantId, seg: i64) -> Result<()> {
    for table in ["search_segments", "search_segment_docs", "search_segment_terms"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE tenant_id = ?1 AND seg = ?2"))
            .and_then(|mut s| s.execute(params![tenant.as_str(), seg]))
            .map_err(sql_error)?;
    }
    Ok(())
}

/// Flushes the tenant's whole tail and merges until nothing is due (the writer goes step by step).
#[cfg(test)]
pub(crate) fn settle_tx(conn: &Connection, tenant: &TenantId) -> Result<()> {
    while flush_tx(conn, tenant)? > 0 {}
    while merge_tx(conn, tenant)? {}
    Ok(())
}
