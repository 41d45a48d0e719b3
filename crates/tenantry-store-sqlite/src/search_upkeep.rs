//! Keeping the search index in shape, on the writer (see `search` for the layout): a tenant's
//! tail is flushed into a new segment once it holds [`FLUSH_AT`] documents (or the writer is
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
use crate::search::parse_tail_terms;
use rusqlite::{params, Connection};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tenantry_core::ids::TenantId;
use tenantry_core::search::segment::{self, Built, Input, NewDoc, SegDoc};
use tenantry_core::search::DocKind;
use tenantry_core::{Error, Result};

/// A tail this long is flushed at the next group commit.
pub(crate) const FLUSH_AT: usize = 128;
/// At most this many tail documents go into one segment (one step).
pub(crate) const FLUSH_MAX: usize = 512;
/// Segments of one level merged into one of the next.
pub(crate) const MERGE_FACTOR: usize = 4;
/// Segments of this level are not merged further (only compacted): a merge stays a step of at
/// most `FLUSH_MAX × MERGE_FACTOR²` documents.
pub(crate) const TOP_LEVEL: i64 = 2;

/// Whether a segment with `dead` of its `docs` documents dead is rewritten alone: once half is.
pub(crate) fn wants_compaction(dead: u32, docs: i64) -> bool {
    docs > 0 && i64::from(dead) * 2 >= docs
}

/// What the write path noted in the group being written.
enum Noted {
    /// A document went into the tenant's tail.
    Tail(TenantId),
    /// A step is due for the tenant (a segment mostly dead).
    Due(TenantId),
}

thread_local! {
    static NOTED: RefCell<Vec<Noted>> = const { RefCell::new(Vec::new()) };
}

/// Notes, inside a write on the writer, a document written to the tenant's tail.
pub(crate) fn note_tail(tenant: &TenantId) {
    NOTED.with(|n| n.borrow_mut().push(Noted::Tail(tenant.clone())));
}

/// Notes, inside a write on the writer, that the tenant has a step due.
pub(crate) fn note(tenant: &TenantId) {
    NOTED.with(|n| n.borrow_mut().push(Noted::Due(tenant.clone())));
}

#[derive(Default)]
struct State {
    /// Documents written to each tenant's tail since its last flush, as far as known (a write
    /// rolled back still counts: the flush finds fewer).
    tails: HashMap<TenantId, usize>,
    /// Tenants with a step due, in order, each once.
    due: VecDeque<TenantId>,
    queued: HashSet<TenantId>,
    paused: HashSet<TenantId>,
}

impl State {
    fn enqueue(&mut self, tenant: &TenantId) {
        if self.queued.insert(tenant.clone()) {
            self.due.push_back(tenant.clone());
        }
    }

    fn has_work(&self) -> bool {
        self.due.iter().any(|t| !self.paused.contains(t))
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
        for n in noted {
            match n {
                Noted::Tail(t) => {
                    let count = state.tails.entry(t.clone()).or_default();
                    *count += 1;
                    if *count >= self.flush_at {
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
        !state.has_work() && state.tails.iter().all(|(t, n)| *n == 0 || state.paused.contains(t))
    }

    /// Whether a step is due now; `idle`: every tail waiting is flushed.
    pub fn begin(&self, idle: bool) -> bool {
        let mut state = self.lock();
        if idle {
            let waiting: Vec<TenantId> = state.tails.iter().filter(|(_, n)| **n > 0).map(|(t, _)| t.clone()).collect();
            for t in waiting {
                state.enqueue(&t);
            }
        }
        state.has_work()
    }

    /// The next step, for the first tenant due that is not paused.
    pub fn next_job(self: &Arc<Self>) -> Option<Box<dyn WriteJob>> {
        let mut state = self.lock();
        let at = state.due.iter().position(|t| !state.paused.contains(t))?;
        let tenant = state.due.remove(at)?;
        state.queued.remove(&tenant);
        Some(Box::new(Step { upkeep: self.clone(), tenant, outcome: None, failed: None }))
    }

    /// Stops the tenant's steps; a step already chosen does nothing when it runs. Call on the
    /// writer (inside a write) so no step of the tenant is under way.
    pub fn pause(&self, tenant: &TenantId) {
        self.lock().paused.insert(tenant.clone());
    }

    /// Lets the tenant's steps go on, and looks at it at once.
    pub fn resume(&self, tenant: &TenantId) {
        let mut state = self.lock();
        state.paused.remove(tenant);
        state.enqueue(tenant);
    }

    fn is_paused(&self, tenant: &TenantId) -> bool {
        self.lock().paused.contains(tenant)
    }
}

/// What a step left.
struct Outcome {
    tail_left: usize,
    more: bool,
}

/// A search step as a job of the writer's group.
struct Step {
    upkeep: Arc<SearchUpkeep>,
    tenant: TenantId,
    outcome: Option<Outcome>,
    failed: Option<Error>,
}

impl WriteJob for Step {
    fn owner(&self) -> Option<u64> {
        None
    }

    fn run(&mut self, conn: &Connection) -> bool {
        if self.upkeep.is_paused(&self.tenant) {
            return true;
        }
        match maintain_tx(conn, &self.tenant) {
            Ok(o) => {
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
        state.tails.insert(self.tenant.clone(), outcome.tail_left);
        if outcome.more {
            state.enqueue(&self.tenant);
        }
    }
}

/// One step for the tenant: its tail flushed (the first [`FLUSH_MAX`] documents), or else one
/// merge or compaction.
fn maintain_tx(conn: &Connection, tenant: &TenantId) -> Result<Outcome> {
    let flushed = flush_tx(conn, tenant)?;
    if flushed == 0 {
        merge_tx(conn, tenant)?;
    }
    let tail_left: i64 = conn
        .prepare_cached("SELECT count(*) FROM search_tail WHERE tenant_id = ?1")
        .and_then(|mut s| s.query_row(params![tenant.as_str()], |r| r.get(0)))
        .map_err(sql_error)?;
    let more = tail_left > 0 || choose(&catalog_tx(conn, tenant)?).is_some();
    Ok(Outcome { tail_left: tail_left.max(0) as usize, more })
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
        while let Some(r) = rows.next().map_err(sql_error)? {
            let kind = match r.get::<_, i64>(0).map_err(sql_error)? {
                0 => DocKind::File,
                _ => DocKind::Memory,
            };
            let terms: String = r.get(3).map_err(sql_error)?;
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
    write_segment(conn, tenant, seg, 0, &built)?;
    Ok(n)
}

/// A segment's catalog entry as a merge chooses by it.
struct Cataloged {
    seg: i64,
    level: i64,
    docs: i64,
    dead: u32,
}

fn catalog_tx(conn: &Connection, tenant: &TenantId) -> Result<Vec<Cataloged>> {
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

/// The segments to merge next and the level of the result: a segment half dead alone (its
/// level kept), else the oldest [`MERGE_FACTOR`] of the lowest level that has as many.
fn choose(catalog: &[Cataloged]) -> Option<(Vec<i64>, i64)> {
    if let Some(c) = catalog.iter().find(|c| wants_compaction(c.dead, c.docs)) {
        return Some((vec![c.seg], c.level));
    }
    (0..TOP_LEVEL).find_map(|level| {
        let at: Vec<i64> = catalog.iter().filter(|c| c.level == level).map(|c| c.seg).collect();
        (at.len() >= MERGE_FACTOR).then(|| (at[..MERGE_FACTOR].to_vec(), level + 1))
    })
}

/// One merge or compaction of the tenant's segments, if one is due; returns whether one ran.
pub(crate) fn merge_tx(conn: &Connection, tenant: &TenantId) -> Result<bool> {
    let Some((segs, level)) = choose(&catalog_tx(conn, tenant)?) else { return Ok(false) };
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
        write_segment(conn, tenant, seg, level, &built)?;
    }
    Ok(true)
}

fn next_seg(conn: &Connection, tenant: &TenantId) -> Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seg), 0) + 1 FROM search_segments WHERE tenant_id = ?1")
        .and_then(|mut s| s.query_row(params![tenant.as_str()], |r| r.get(0)))
        .map_err(sql_error)
}

/// Stores a built segment, and points its documents' `search_docs` rows at it.
fn write_segment(conn: &Connection, tenant: &TenantId, seg: i64, level: i64, built: &Built) -> Result<()> {
    let id = tenant.as_str();
    conn.prepare_cached(
        "INSERT INTO search_segments (tenant_id, seg, level, docs, dead, fences) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![id, seg, level, built.docs.len() as i64, segment::no_dead(built.docs.len()), built.fences()])
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
    let mut docs: Vec<SegDoc> = Vec::new();
    let mut s = conn
        .prepare_cached("SELECT docs FROM search_segment_docs WHERE tenant_id = ?1 AND seg = ?2 ORDER BY chunk")
        .map_err(sql_error)?;
    let mut rows = s.query(params![id, seg]).map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let bytes: Vec<u8> = r.get(0).map_err(sql_error)?;
        docs.extend(segment::decode_docs(&bytes)?);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tails::tests_open_at as open_at;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use tenantry_core::search::IndexDoc;

    /// Checks the layout's invariants for the tenant: each live document is in exactly one place
    /// (the tail, or a segment where its number names it and is not dead), and nothing else is
    /// live anywhere.
    fn check(conn: &Connection, tenant: &TenantId) {
        let mut live: BTreeMap<(i64, String), (i64, i64, i64)> = BTreeMap::new();
        let mut s = conn.prepare("SELECT kind, doc, len, seg, number FROM search_docs WHERE tenant_id = ?1").unwrap();
        for r in
            s.query_map([tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).unwrap()
        {
            let (k, d, len, seg, n): (i64, String, i64, i64, i64) = r.unwrap();
            live.insert((k, d), (len, seg, n));
        }
        let tail: Vec<(i64, String)> = conn
            .prepare("SELECT kind, doc FROM search_tail WHERE tenant_id = ?1")
            .unwrap()
            .query_map([tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for key in &tail {
            assert_eq!(live.get(key).map(|l| l.1), Some(0), "a tail row is the document's live version: {key:?}");
        }
        let in_tail = live.values().filter(|l| l.1 == 0).count();
        assert_eq!(in_tail, tail.len(), "every live version in the tail has its row");
        let mut alive = 0;
        for view in crate::search::segments_tx(conn, tenant).unwrap() {
            let mut docs = Vec::new();
            for c in 0..view.docs.div_ceil(segment::CHUNK_DOCS) {
                docs.extend(crate::search::chunk_tx(conn, tenant, view.seg, c).unwrap());
            }
            assert_eq!(docs.len(), view.docs);
            for (n, d) in docs.iter().enumerate() {
                let pointed =
                    live.get(&(d.kind as i64, d.doc.clone())).is_some_and(|l| l.1 == view.seg && l.2 == n as i64);
                assert_eq!(
                    !segment::is_dead(&view.dead, n as u32),
                    pointed,
                    "segment {} number {n} ({})",
                    view.seg,
                    d.doc
                );
                alive += usize::from(pointed);
            }
        }
        assert_eq!(alive + in_tail, live.len(), "every live version is somewhere");
    }

    /// The postings the image gives, as (term, doc, tf, len).
    fn postings(conn: &Connection, tenant: &TenantId) -> Vec<(String, String, u32, u32)> {
        let mut out = Vec::new();
        crate::search::image_postings(conn, tenant, &mut |(term, _, doc, tf, len)| {
            out.push((term, doc, tf, len));
            Ok(true)
        })
        .unwrap();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
        /// Writes, deletes, flushes and merges in any order keep the layout whole, and it holds
        /// exactly the postings of the live documents.
        #[test]
        fn flushes_and_merges_keep_every_live_document_once(
            ops in proptest::collection::vec((0u8..10, 0u8..24, proptest::collection::vec(0u8..8, 0..6)), 1..160),
        ) {
            let db = open_at(tempfile::tempdir().unwrap());
            let (t, other) = (TenantId::generate(), TenantId::generate());
            let mut model: BTreeMap<String, IndexDoc> = BTreeMap::new();
            for (op, id, words) in ops {
                let doc = format!("/d{id}");
                let text: Vec<String> = words.iter().map(|w| format!("w{w}")).collect();
                let index = IndexDoc::of_text(&text.join(" "));
                db.commit(&[], false, |tx| match op {
                    0..=5 => {
                        crate::search::reindex_tx(tx, &t, DocKind::File, &doc, Some(&index)).unwrap();
                        crate::search::reindex_tx(tx, &other, DocKind::File, &doc, Some(&index)).unwrap();
                    }
                    6 => crate::search::reindex_tx(tx, &t, DocKind::File, &doc, None).unwrap(),
                    7 => { flush_tx(tx, &t).unwrap(); }
                    8 => { merge_tx(tx, &t).unwrap(); }
                    _ => settle_tx(tx, &t).unwrap(),
                });
                match op {
                    0..=5 => { model.insert(doc, index); }
                    6 => { model.remove(&doc); }
                    _ => {}
                }
                check(&db.writer, &t);
            }
            let mut want: Vec<(String, String, u32, u32)> = model
                .iter()
                .flat_map(|(doc, ix)| ix.terms.iter().map(move |(term, tf)| (term.clone(), doc.clone(), *tf, ix.len)))
                .collect();
            want.sort();
            prop_assert_eq!(postings(&db.writer, &t), want.clone());
            db.commit(&[], false, |tx| settle_tx(tx, &t).unwrap());
            check(&db.writer, &t);
            prop_assert_eq!(postings(&db.writer, &t), want);
            // Settled: no tail, and no merge left to make.
            prop_assert_eq!(db.count("search_tail") - count_of(&db.writer, "search_tail", &other), 0);
            prop_assert!(choose(&catalog_tx(&db.writer, &t).unwrap()).is_none());
        }
    }

    fn count_of(conn: &Connection, table: &str, tenant: &TenantId) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = ?1"), [tenant.as_str()], |r| r.get(0))
            .unwrap()
    }
}
