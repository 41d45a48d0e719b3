//! The search index in segments (see `tenantry_core::search::segment` for what a segment holds,
//! and this crate's README for the layout and its costs).
//!
//! A write appends: the document's new version goes to the tenant's tail (`search_tail`, one row
//! keyed by document), the version it replaces is marked dead in its segment's bitmap, and
//! `search_docs` says where each live version is (`seg` 0: the tail) with its length. The writer
//! flushes tails into segments and merges segments in the background (`search_upkeep`). A search
//! reads one snapshot: every segment's postings of its words, less the dead, and the tail's; so
//! it finds a write at once and never a replaced or deleted version. The statistics BM25 needs
//! are counted inside the tenant (and the searched prefix) only: the counters for the whole
//! index, `search_docs` for a narrower scope.

use crate::counters::{self, Counters};
use crate::error::sql_error;
use crate::search_layout::{
    documents_tx, kind_of, parse_tail_terms, segment_documents, segments_tx, tail_prefixed, tail_terms, tail_tf,
    SegmentDocuments,
};
use crate::search_upkeep::DocRows;
use crate::store::SqliteStore;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use tenantry_core::ids::TenantId;
use tenantry_core::memory::{searchable_text, SEPARATOR};
use tenantry_core::search::segment::{self, SegDoc};
use tenantry_core::search::{
    prefix_upper, too_broad, DocKind, Found, IndexDoc, Posting, ScopeStats, SearchAnswer, MAX_PREFIX_WORDS,
};
use tenantry_core::store::{ScopePart, SearchIndex, SearchQuery, TenantScope};
use tenantry_core::{Error, Result};

/// A memory entry's document id.
pub(crate) fn memory_doc(namespace: &str, key: &str) -> String {
    format!("{namespace}{SEPARATOR}{key}")
}

/// Where a document's live version is, and its length.
struct Located {
    len: i64,
    seg: i64,
    number: i64,
}

fn located_tx(tx: &Connection, tenant: &TenantId, kind: DocKind, doc: &str) -> Result<Option<Located>> {
    tx.prepare_cached("SELECT len, seg, number FROM search_docs WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
        .and_then(|mut s| {
            s.query_row(params![tenant.as_str(), kind as i64, doc], |r| {
                Ok(Located { len: r.get(0)?, seg: r.get(1)?, number: r.get(2)? })
            })
            .optional()
        })
        .map_err(sql_error)
}

/// Marks document `number` of a segment dead; notes the tenant for compaction once most of the
/// segment is.
fn kill_tx(tx: &Connection, tenant: &TenantId, seg: i64, number: i64) -> Result<()> {
    let found: Option<(Vec<u8>, i64, i64)> = tx
        .prepare_cached("SELECT dead, docs, level FROM search_segments WHERE tenant_id = ?1 AND seg = ?2")
        .and_then(|mut s| {
            s.query_row(params![tenant.as_str(), seg], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
        })
        .map_err(sql_error)?;
    let Some((mut dead, docs, level)) = found else {
        return Err(Error::internal(format!("a search document names segment {seg}, which is gone")));
    };
    segment::set_dead(&mut dead, u32::try_from(number).unwrap_or(u32::MAX));
    tx.prepare_cached("UPDATE search_segments SET dead = ?3 WHERE tenant_id = ?1 AND seg = ?2")
        .and_then(|mut s| s.execute(params![tenant.as_str(), seg, dead]))
        .map_err(sql_error)?;
    let dead_now = i64::from(segment::dead_count(&dead));
    if dead_now >= docs
        || (crate::search_upkeep::wants_compaction(segment::dead_count(&dead), docs)
            && crate::search_upkeep::is_top(level))
    {
        crate::search_upkeep::note(tenant);
    }
    Ok(())
}

/// Makes the index hold `new` for a document (`None`: not indexed any more): the new version goes
/// to the tenant's tail, the replaced one is marked dead where it is, and the tenant's totals
/// move by the change.
pub(crate) fn reindex_tx(
    tx: &Connection,
    tenant: &TenantId,
    kind: DocKind,
    doc: &str,
    new: Option<&IndexDoc>,
) -> Result<()> {
    let new = new.filter(|n| n.is_indexed());
    let old = located_tx(tx, tenant, kind, doc)?;
    if old.is_none() && new.is_none() {
        return Ok(());
    }
    let k = kind as i64;
    if let Some(o) = &old {
        if o.seg != 0 {
            kill_tx(tx, tenant, o.seg, o.number)?;
        }
    }
    match new {
        Some(entry) => {
            let terms = tail_terms(&entry.terms);
            let bytes = terms.len();
            tx.prepare_cached(
                "INSERT INTO search_tail (tenant_id, kind, doc, len, terms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id, kind, doc) DO UPDATE SET len = excluded.len, terms = excluded.terms",
            )
            .and_then(|mut s| s.execute(params![tenant.as_str(), k, doc, entry.len, terms]))
            .map_err(sql_error)?;
            tx.prepare_cached(
                "INSERT INTO search_docs (tenant_id, kind, doc, len, seg, number) VALUES (?1, ?2, ?3, ?4, 0, 0)
                 ON CONFLICT (tenant_id, kind, doc) DO UPDATE SET len = excluded.len, seg = 0, number = 0",
            )
            .and_then(|mut s| s.execute(params![tenant.as_str(), k, doc, entry.len]))
            .map_err(sql_error)?;
            crate::search_upkeep::note_tail(tenant, bytes);
        }
        None => {
            if old.as_ref().is_some_and(|o| o.seg == 0) {
                tx.prepare_cached("DELETE FROM search_tail WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
                    .and_then(|mut s| s.execute(params![tenant.as_str(), k, doc]))
                    .map_err(sql_error)?;
            }
            tx.prepare_cached("DELETE FROM search_docs WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
                .and_then(|mut s| s.execute(params![tenant.as_str(), k, doc]))
                .map_err(sql_error)?;
        }
    }
    let old_len = old.as_ref().map_or(0, |o| o.len);
    let docs = i64::from(new.is_some()) - i64::from(old.is_some());
    move_search_counters(tx, tenant, docs, new.map_or(0, |n| i64::from(n.len)) - old_len)
}

/// Documents indexed together, as an import publishes a bundle's: written straight into segments
/// of their own instead of one by one into the tail, which skips the tail's write, the rewrite of
/// every posting by the flush and the first merge, and a counter row per document. Used inside
/// one transaction, which must call [`SegmentBatch::finish`] before it commits. A segment holds
/// what a merge of the first level makes (`FLUSH_MAX × MERGE_FACTOR` documents, or as many bytes
/// of terms). A document indexed again while the batch holds it is replaced in the batch (a
/// bundle may name a path many times: no segment per repeat). A tenant being moved (whose
/// segments the move copies once) gets its documents through the tail instead.
pub(crate) struct SegmentBatch {
    tenant: TenantId,
    /// The documents gathered, in landing order; `None` where one was unindexed again.
    docs: Vec<Option<segment::NewDoc>>,
    /// Where each document of `docs` is.
    held: HashMap<(DocKind, String), usize>,
    /// Bytes of terms in `docs`.
    bytes: usize,
    /// How the tenant's document and word totals move once the batch is written.
    counts: Counters,
    direct: bool,
    wrote: bool,
}

/// The bytes a document's terms weigh in a batch (as a tail would hold them).
fn term_bytes(terms: &[(String, u32)]) -> usize {
    terms.iter().map(|(t, _)| t.len() + 6).sum()
}

impl SegmentBatch {
    const MAX_DOCS: usize = crate::search_upkeep::FLUSH_MAX * crate::search_upkeep::MERGE_FACTOR;
    const MAX_BYTES: usize = crate::search_upkeep::FLUSH_BYTES * crate::search_upkeep::MERGE_FACTOR;

    pub(crate) fn new(tenant: &TenantId) -> SegmentBatch {
        SegmentBatch {
            tenant: tenant.clone(),
            docs: Vec::new(),
            held: HashMap::new(),
            bytes: 0,
            counts: Counters::default(),
            direct: !crate::search_upkeep::is_paused(tenant),
            wrote: false,
        }
    }

    /// What [`reindex_tx`] does, with the new version going into the batch.
    pub(crate) fn reindex(&mut self, tx: &Connection, kind: DocKind, doc: &str, new: Option<IndexDoc>) -> Result<()> {
        if !self.direct {
            return reindex_tx(tx, &self.tenant, kind, doc, new.as_ref());
        }
        let new = new.filter(IndexDoc::is_indexed);
        let (tenant, k) = (self.tenant.as_str(), kind as i64);
        if let Some(&at) = self.held.get(&(kind, doc.to_owned())) {
            // Held: the version it had before the batch is dead (or gone) already, and this one
            // replaces the batch's, which no one has seen.
            let held = self.docs[at].take().ok_or_else(|| Error::internal("a held search document is not held"))?;
            self.bytes -= term_bytes(&held.terms);
            self.counts.search_words -= i64::from(held.len);
            match new {
                Some(entry) => {
                    self.counts.search_words += i64::from(entry.len);
                    self.bytes += term_bytes(&entry.terms);
                    self.docs[at] =
                        Some(segment::NewDoc { kind, doc: doc.to_owned(), len: entry.len, terms: entry.terms });
                }
                None => {
                    self.held.remove(&(kind, doc.to_owned()));
                    self.counts.search_docs -= 1;
                    // The row may still name the version before the batch.
                    tx.prepare_cached("DELETE FROM search_docs WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
                        .and_then(|mut s| s.execute(params![tenant, k, doc]))
                        .map_err(sql_error)?;
                }
            }
            return Ok(());
        }
        let old = located_tx(tx, &self.tenant, kind, doc)?;
        if old.is_none() && new.is_none() {
            return Ok(());
        }
        match &old {
            Some(o) if o.seg != 0 => kill_tx(tx, &self.tenant, o.seg, o.number)?,
            Some(_) => {
                tx.prepare_cached("DELETE FROM search_tail WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
                    .and_then(|mut s| s.execute(params![tenant, k, doc]))
                    .map_err(sql_error)?;
            }
            None => {}
        }
        self.counts.search_docs += i64::from(new.is_some()) - i64::from(old.is_some());
        self.counts.search_words += new.as_ref().map_or(0, |n| i64::from(n.len)) - old.as_ref().map_or(0, |o| o.len);
        match new {
            // Its `search_docs` row is written with the segment.
            Some(entry) => {
                self.bytes += term_bytes(&entry.terms);
                self.held.insert((kind, doc.to_owned()), self.docs.len());
                self.docs.push(Some(segment::NewDoc { kind, doc: doc.to_owned(), len: entry.len, terms: entry.terms }));
                if self.docs.len() >= Self::MAX_DOCS || self.bytes >= Self::MAX_BYTES {
                    self.write(tx)?;
                }
            }
            None => {
                tx.prepare_cached("DELETE FROM search_docs WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
                    .and_then(|mut s| s.execute(params![tenant, k, doc]))
                    .map_err(sql_error)?;
            }
        }
        Ok(())
    }

    /// Writes the documents gathered so far as a segment, of the top level when it holds at least
    /// a flush's worth (by documents or bytes), else of the first (merged with the flushes that
    /// follow); and the totals.
    fn write(&mut self, tx: &Connection) -> Result<()> {
        counters::add_tx(tx, &self.tenant, std::mem::take(&mut self.counts))?;
        let docs: Vec<segment::NewDoc> = std::mem::take(&mut self.docs).into_iter().flatten().collect();
        self.held.clear();
        let bytes = std::mem::take(&mut self.bytes);
        if docs.is_empty() {
            return Ok(());
        }
        let flush_sized = docs.len() >= crate::search_upkeep::FLUSH_MAX || bytes >= crate::search_upkeep::FLUSH_BYTES;
        let level = if flush_sized { crate::search_upkeep::TOP_LEVEL } else { 0 };
        let built = segment::build(docs);
        let seg = crate::search_upkeep::next_seg(tx, &self.tenant)?;
        crate::search_upkeep::write_segment(tx, &self.tenant, seg, level, &built, DocRows::Insert)?;
        self.wrote = true;
        Ok(())
    }

    /// Writes what is left; the tenant is then noted for the merges its new segments may make due.
    pub(crate) fn finish(&mut self, tx: &Connection) -> Result<()> {
        self.write(tx)?;
        if self.wrote {
            crate::search_upkeep::note(&self.tenant);
        }
        Ok(())
    }
}

fn move_search_counters(tx: &Connection, tenant: &TenantId, docs: i64, words: i64) -> Result<()> {
    counters::add_tx(tx, tenant, Counters { search_docs: docs, search_words: words, ..Default::default() })
}

/// The numbers of `docs` each part of the scope covers (an exact id as a range of its own).
fn ranges(docs: &[SegDoc], parts: &[ScopePart]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for part in parts {
        let mut wanted: Vec<(Option<String>, Option<String>)> = Vec::new();
        match &part.range {
            None => wanted.push((None, None)),
            Some((lo, hi)) => wanted.push((Some(lo.clone()), Some(hi.clone()))),
        }
        if let Some(exact) = &part.exact {
            wanted.push((Some(exact.clone()), Some(format!("{exact}\0"))));
        }
        for (from, to) in wanted {
            let range = segment::range_in(docs, part.kind, from.as_deref(), to.as_deref());
            if range.0 < range.1 {
                out.push(range);
            }
        }
    }
    out
}

/// Whether `number` is in one of the ranges.
fn within(ranges: &[(u32, u32)], number: u32) -> bool {
    ranges.iter().any(|&(lo, hi)| number >= lo && number < hi)
}

/// A tail document in the scope.
struct TailDoc {
    kind: DocKind,
    doc: String,
    len: u32,
    terms: String,
}

fn in_part(part: &ScopePart, kind: DocKind, doc: &str) -> bool {
    part.kind == kind
        && match &part.range {
            None => true,
            Some((lo, hi)) => (doc >= lo.as_str() && doc < hi.as_str()) || part.exact.as_deref() == Some(doc),
        }
}

fn tail_tx(conn: &Connection, tenant: &TenantId, parts: &[ScopePart]) -> Result<Vec<TailDoc>> {
    let mut s =
        conn.prepare_cached("SELECT kind, doc, len, terms FROM search_tail WHERE tenant_id = ?1").map_err(sql_error)?;
    let mut rows = s.query(params![tenant.as_str()]).map_err(sql_error)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_error)? {
        let kind = kind_of(r.get(0).map_err(sql_error)?)?;
        let doc: String = r.get(1).map_err(sql_error)?;
        if parts.iter().any(|p| in_part(p, kind, &doc)) {
            out.push(TailDoc { kind, doc, len: r.get(2).map_err(sql_error)?, terms: r.get(3).map_err(sql_error)? });
        }
    }
    Ok(out)
}

/// Every posting of the query's words and prefixes in the scope: from each segment (less its
/// dead documents) and from the tail.
fn found_tx(
    conn: &Connection,
    tenant: &TenantId,
    query: &SearchQuery,
    parts: &[ScopePart],
    cache: &SegmentDocuments,
) -> Result<Found> {
    let words = query.query.words();
    let prefixes = query.query.prefixes();
    let mut found = Found::for_query(&query.query);
    let mut met: Vec<HashSet<String>> = vec![HashSet::new(); prefixes.len()];
    // Whether the scope is every document of each kind it names: then numbers need no ranges.
    let whole_kinds = parts.iter().all(|p| p.range.is_none());
    for view in segments_tx(conn, tenant)? {
        // The segment's live postings of the query's words and prefixes, as (index, word, posting).
        let mut numbered: Vec<(usize, Option<String>, segment::SegPosting)> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let blob: Option<Vec<u8>> = conn
                .prepare_cached(
                    "SELECT postings FROM search_segment_terms WHERE tenant_id = ?1 AND seg = ?2 AND term = ?3",
                )
                .and_then(|mut s| s.query_row(params![tenant.as_str(), view.seg, word], |r| r.get(0)).optional())
                .map_err(sql_error)?;
            if let Some(blob) = blob {
                for p in segment::decode_postings(&blob)? {
                    if !segment::is_dead(&view.dead, p.number) {
                        numbered.push((i, None, p));
                    }
                }
            }
        }
        for (i, prefix) in prefixes.iter().enumerate() {
            let mut s = conn
                .prepare_cached(
                    "SELECT term, postings FROM search_segment_terms
                     WHERE tenant_id = ?1 AND seg = ?2 AND term >= ?3 AND term < ?4 ORDER BY term",
                )
                .map_err(sql_error)?;
            let mut rows =
                s.query(params![tenant.as_str(), view.seg, prefix, prefix_upper(prefix)]).map_err(sql_error)?;
            while let Some(r) = rows.next().map_err(sql_error)? {
                let term: String = r.get(0).map_err(sql_error)?;
                if !term.starts_with(prefix.as_str()) {
                    continue;
                }
                let blob: Vec<u8> = r.get(1).map_err(sql_error)?;
                for p in segment::decode_postings(&blob)? {
                    if !segment::is_dead(&view.dead, p.number) {
                        numbered.push((words.len() + i, Some(term.clone()), p));
                    }
                }
            }
        }
        // Only a segment with something to give is read for its documents (cached by uid).
        if numbered.is_empty() {
            continue;
        }
        let documents = view.documents(conn, tenant, cache)?;
        let ranges = ranges(&documents, parts);
        for (i, word, p) in numbered {
            let in_scope = if whole_kinds {
                documents.get(p.number as usize).is_some_and(|d| parts.iter().any(|part| part.kind == d.kind))
            } else {
                within(&ranges, p.number)
            };
            if !in_scope {
                continue;
            }
            let d = documents.get(p.number as usize).ok_or_else(|| Error::internal("a posting names no document"))?;
            let posting = Posting { kind: d.kind, doc: d.doc.clone(), tf: p.tf, len: p.len };
            match word {
                None => found.words[i].push(posting),
                Some(w) => {
                    meet(&mut met, i - words.len(), &prefixes[i - words.len()], &w)?;
                    found.prefixes[i - words.len()].push((w, posting));
                }
            }
        }
    }
    for t in tail_tx(conn, tenant, parts)? {
        for (i, word) in words.iter().enumerate() {
            if let Some(tf) = tail_tf(&t.terms, word) {
                found.words[i].push(Posting { kind: t.kind, doc: t.doc.clone(), tf, len: t.len });
            }
        }
        for (i, prefix) in prefixes.iter().enumerate() {
            for (term, tf) in tail_prefixed(&t.terms, prefix) {
                meet(&mut met, i, prefix, &term)?;
                found.prefixes[i].push((term, Posting { kind: t.kind, doc: t.doc.clone(), tf, len: t.len }));
            }
        }
    }
    Ok(found)
}

/// Notes that prefix `i` matched `term`; refuses the prefix once it has matched more than
/// [`MAX_PREFIX_WORDS`] distinct words, checked as postings arrive.
fn meet(met: &mut [HashSet<String>], i: usize, prefix: &str, term: &str) -> Result<()> {
    if met[i].contains(term) {
        return Ok(());
    }
    if met[i].len() >= MAX_PREFIX_WORDS {
        return Err(too_broad(prefix));
    }
    met[i].insert(term.to_owned());
    Ok(())
}

fn stats_tx(conn: &Connection, tenant: &TenantId, parts: &[ScopePart]) -> Result<ScopeStats> {
    let mut stats = ScopeStats::default();
    for part in parts {
        let (docs, words): (i64, i64) = match &part.range {
            None => conn
                .prepare_cached(
                    "SELECT count(*), COALESCE(sum(len), 0) FROM search_docs WHERE tenant_id = ?1 AND kind = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![tenant.as_str(), part.kind as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .map_err(sql_error)?,
            Some((lo, hi)) => conn
                .prepare_cached(
                    "SELECT count(*), COALESCE(sum(len), 0) FROM search_docs WHERE tenant_id = ?1 AND kind = ?2
                       AND ((doc >= ?3 AND doc < ?4) OR doc = ?5)",
                )
                .and_then(|mut s| {
                    s.query_row(params![tenant.as_str(), part.kind as i64, lo, hi, part.exact], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                })
                .map_err(sql_error)?,
        };
        stats.docs += docs.max(0) as u64;
        stats.words += words.max(0) as u64;
    }
    Ok(stats)
}

/// The tenant's whole index: kept as counters, so the common unnarrowed search counts nothing.
fn tenant_stats(c: Counters) -> ScopeStats {
    ScopeStats { docs: c.search_docs.max(0) as u64, words: c.search_words.max(0) as u64 }
}

/// The searchable text of a document, or `None` if it is gone or expired.
fn text_tx(conn: &Connection, tenant: &TenantId, kind: DocKind, doc: &str, now: i64) -> Result<Option<String>> {
    match kind {
        DocKind::File => {
            let content: Option<Vec<u8>> = conn
                .prepare_cached(
                    "SELECT content FROM files
                     JOIN file_content ON file_content.id = files.content_id AND file_content.tenant_id = files.tenant_id
                     WHERE files.tenant_id = ?1 AND path = ?2",
                )
                .and_then(|mut s| s.query_row(params![tenant.as_str(), doc], |r| r.get(0)).optional())
                .map_err(sql_error)?;
            Ok(content.map(|c| String::from_utf8_lossy(&c).into_owned()))
        }
        DocKind::Memory => {
            let Some((namespace, key)) = doc.split_once(SEPARATOR) else { return Ok(None) };
            let value: Option<String> = conn
                .prepare_cached(
                    "SELECT value FROM memory WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3
                       AND (expires_at IS NULL OR expires_at > ?4)",
                )
                .and_then(|mut s| s.query_row(params![tenant.as_str(), namespace, key, now], |r| r.get(0)).optional())
                .map_err(sql_error)?;
            Ok(value.map(|v| serde_json::from_str(&v).map(|v| searchable_text(&v)).unwrap_or(v)))
        }
    }
}

/// One term's postings as an image carries them: (kind, doc, tf, len).
type ImagePostings = Vec<(DocKind, String, u32, u32)>;

/// Every live posting of the tenant as `(term, kind, doc, tf, len)`, in that order, passed to
/// `each` until it answers false: the index as a tenant image carries it (`search_postings`),
/// whatever segments and tail hold it. The database sorts the segments' term rows (spilling to
/// disk for a large tenant); the document lists of the segments are held while it runs.
pub(crate) fn image_postings(
    conn: &Connection,
    tenant: &TenantId,
    each: &mut dyn FnMut((String, DocKind, String, u32, u32)) -> Result<bool>,
) -> Result<()> {
    // The tail's postings by term.
    let mut tail: std::collections::BTreeMap<String, ImagePostings> = Default::default();
    for t in tail_tx(
        conn,
        tenant,
        &[
            ScopePart { kind: DocKind::File, range: None, exact: None },
            ScopePart { kind: DocKind::Memory, range: None, exact: None },
        ],
    )? {
        for (term, tf) in parse_tail_terms(&t.terms)? {
            tail.entry(term).or_default().push((t.kind, t.doc.clone(), tf, t.len));
        }
    }
    let mut docs: HashMap<i64, (Vec<SegDoc>, Vec<u8>)> = HashMap::new();
    for view in segments_tx(conn, tenant)? {
        docs.insert(view.seg, (documents_tx(conn, tenant, view.seg)?, view.dead));
    }
    let mut s = conn
        .prepare("SELECT term, seg, postings FROM search_segment_terms WHERE tenant_id = ?1 ORDER BY term, seg")
        .map_err(sql_error)?;
    let mut rows = s.query(params![tenant.as_str()]).map_err(sql_error)?;
    let mut tail = tail.into_iter().peekable();
    let mut current: Option<(String, ImagePostings)> = None;
    // Emits one term's postings in document order; false once `each` wants no more.
    let mut emit = |term: String, mut list: ImagePostings| -> Result<bool> {
        list.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (kind, doc, tf, len) in list {
            if !each((term.clone(), kind, doc, tf, len))? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    loop {
        let row = rows.next().map_err(sql_error)?;
        let next_term: Option<String> = match row {
            Some(r) => Some(r.get(0).map_err(sql_error)?),
            None => None,
        };
        // A term is complete once the rows have moved past it: the tail's terms before the next
        // row's term go first.
        if current.as_ref().map(|c| Some(&c.0) != next_term.as_ref()).unwrap_or(false) {
            let (term, list) = current.take().unwrap_or_default();
            if !emit(term, list)? {
                return Ok(());
            }
        }
        while let Some((t, _)) = tail.peek() {
            if next_term.as_ref().is_some_and(|n| t >= n) {
                break;
            }
            let (term, list) = tail.next().unwrap_or_default();
            if !emit(term, list)? {
                return Ok(());
            }
        }
        let (Some(term), Some(r)) = (next_term, row) else { break };
        let seg: i64 = r.get(1).map_err(sql_error)?;
        // A segment being merged into, or retired and being deleted: not in the catalog.
        let Some((listed, dead)) = docs.get(&seg) else { continue };
        let blob: Vec<u8> = r.get(2).map_err(sql_error)?;
        let entry = current.get_or_insert_with(|| (term.clone(), Vec::new()));
        if tail.peek().is_some_and(|(t, _)| *t == term) {
            entry.1.extend(tail.next().map(|(_, l)| l).unwrap_or_default());
        }
        for p in segment::decode_postings(&blob)? {
            if !segment::is_dead(dead, p.number) {
                let d = listed.get(p.number as usize).ok_or_else(|| Error::internal("a posting names no document"))?;
                entry.1.push((d.kind, d.doc.clone(), p.tf, p.len));
            }
        }
    }
    if let Some((term, list)) = current.take() {
        emit(term, list)?;
    }
    Ok(())
}

#[async_trait]
impl SearchIndex for SqliteStore {
    async fn search(&self, scope: &TenantScope, query: SearchQuery) -> Result<SearchAnswer> {
        let tenant = scope.tenant_id().clone();
        let pool = self.pool_of(&tenant)?;
        // Taken before the read starts (see `counters`).
        let known = pool.tails().usage(&tenant);
        crate::pool::read_on(pool, move |conn| {
            // One snapshot for segments, tail, statistics and texts.
            let snapshot = conn.unchecked_transaction().map_err(sql_error)?;
            let conn: &Connection = &snapshot;
            let parts = query.parts();
            let found = found_tx(conn, &tenant, &query, &parts, segment_documents())?;
            if found.is_empty() {
                return Ok(SearchAnswer::default());
            }
            let stats = if query.is_whole_index() {
                tenant_stats(known.map_or_else(|| counters::stored(conn, &tenant), Ok)?)
            } else {
                stats_tx(conn, &tenant, &parts)?
            };
            let mut selection = query.select(found, stats);
            while let Some((kind, doc)) = selection.to_read() {
                selection.offer(text_tx(conn, &tenant, kind, &doc, query.now.millis())?);
            }
            let answer = selection.finish();
            drop(snapshot);
            Ok(answer)
        })
        .await
    }
}

/// The layout against a model: writes, deletes, flushes and merges in any order.
#[cfg(test)]
mod layout_tests {
    use crate::search_upkeep::{catalog_tx, choose, maintain_tx, settle_tx, Asked, Underway};
    use crate::tails::tests_open_at as open_at;
    use proptest::prelude::*;
    use rusqlite::Connection;
    use std::collections::BTreeMap;
    use tenantry_core::ids::TenantId;
    use tenantry_core::search::segment;
    use tenantry_core::search::DocKind;
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
        for view in crate::search_layout::segments_tx(conn, tenant).unwrap() {
            let docs = crate::search_layout::documents_tx(conn, tenant, view.seg).unwrap();
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
        // Every term row is of a segment in the catalog or pending (being written or deleted).
        let orphans: i64 = conn
            .query_row(
                "SELECT count(*) FROM search_segment_terms t WHERE t.tenant_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM search_segments s WHERE s.tenant_id = t.tenant_id AND s.seg = t.seg)
                   AND NOT EXISTS (SELECT 1 FROM search_pending p WHERE p.tenant_id = t.tenant_id AND p.seg = t.seg)",
                [tenant.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0, "term rows of no segment");
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
        /// exactly the postings of the live documents. Flushes and merges take steps of two or
        /// three term rows, so writes replace and delete documents of a segment being written.
        #[test]
        fn flushes_and_merges_keep_every_live_document_once(
            ops in proptest::collection::vec((0u8..11, 0u8..24, proptest::collection::vec(0u8..8, 0..6)), 1..160),
        ) {
            let db = open_at(tempfile::tempdir().unwrap());
            let (t, other) = (TenantId::generate(), TenantId::generate());
            let mut model: BTreeMap<String, IndexDoc> = BTreeMap::new();
            let mut underway = Default::default();
            for (op, id, words) in ops {
                let doc = format!("/d{id}");
                let text: Vec<String> = words.iter().map(|w| format!("w{w}")).collect();
                let index = IndexDoc::of_text(&text.join(" "));
                let reversed = IndexDoc::of_text(&format!("{} r", text.iter().rev().cloned().collect::<Vec<_>>().join(" ")));
                db.commit(&[], false, |tx| match op {
                    0..=5 => {
                        crate::search::reindex_tx(tx, &t, DocKind::File, &doc, Some(&index)).unwrap();
                        crate::search::reindex_tx(tx, &other, DocKind::File, &doc, Some(&index)).unwrap();
                    }
                    6 => crate::search::reindex_tx(tx, &t, DocKind::File, &doc, None).unwrap(),
                    // An import's batch: the document, its neighbour, the document again with its
                    // words reversed, the next neighbour deleted, and with an odd count of words
                    // the neighbour unindexed again.
                    10 => {
                        let mut batch = crate::search::SegmentBatch::new(&t);
                        batch.reindex(tx, DocKind::File, &doc, Some(index.clone())).unwrap();
                        batch.reindex(tx, DocKind::File, &format!("/d{}", id + 1), Some(index.clone())).unwrap();
                        batch.reindex(tx, DocKind::File, &doc, Some(reversed.clone())).unwrap();
                        batch.reindex(tx, DocKind::File, &format!("/d{}", id + 2), None).unwrap();
                        if words.len() % 2 == 1 {
                            batch.reindex(tx, DocKind::File, &format!("/d{}", id + 1), None).unwrap();
                        }
                        batch.finish(tx).unwrap();
                    }
                    7 | 8 => {
                        let asked = Asked { flush: op == 7, flush_turn: op == 7, rows: 2, flush_terms: 3 };
                        underway = maintain_tx(tx, &t, asked, std::mem::take(&mut underway)).unwrap().1;
                    }
                    _ => settle_tx(tx, &t, std::mem::take(&mut underway)).unwrap(),
                });
                match op {
                    0..=5 => { model.insert(doc, index); }
                    6 => { model.remove(&doc); }
                    10 => {
                        model.insert(format!("/d{}", id + 1), index);
                        model.insert(doc, reversed);
                        model.remove(&format!("/d{}", id + 2));
                        if words.len() % 2 == 1 {
                            model.remove(&format!("/d{}", id + 1));
                        }
                    }
                    _ => {}
                }
                check(&db.writer, &t);
                // The tenant's totals count the indexed documents and their words.
                let mut counted = None;
                db.commit(&[], false, |tx| counted = Some(crate::counters::now_tx(tx, &t).unwrap()));
                let counted = counted.unwrap();
                let indexed: Vec<&IndexDoc> = model.values().filter(|ix| ix.is_indexed()).collect();
                let words: i64 = indexed.iter().map(|ix| i64::from(ix.len)).sum();
                prop_assert_eq!((counted.search_docs, counted.search_words), (indexed.len() as i64, words));
            }
            let mut want: Vec<(String, String, u32, u32)> = model
                .iter()
                .flat_map(|(doc, ix)| ix.terms.iter().map(move |(term, tf)| (term.clone(), doc.clone(), *tf, ix.len)))
                .collect();
            want.sort();
            prop_assert_eq!(postings(&db.writer, &t), want.clone());
            db.commit(&[], false, |tx| settle_tx(tx, &t, std::mem::take(&mut underway)).unwrap());
            check(&db.writer, &t);
            prop_assert_eq!(postings(&db.writer, &t), want);
            prop_assert_eq!(count_of(&db.writer, "search_pending", &t), 0);
            // Settled: no tail, and no merge left to make.
            prop_assert_eq!(db.count("search_tail") - count_of(&db.writer, "search_tail", &other), 0);
            prop_assert!(choose(&catalog_tx(&db.writer, &t).unwrap()).is_none());
        }
    }

    /// A document replaced (by one of as many words) or deleted while the segment it is flushed
    /// into is being written keeps its new version only: the flush finds its tail row changed.
    #[test]
    fn a_document_replaced_or_deleted_while_its_flush_is_written_keeps_its_new_version_only() {
        let db = open_at(tempfile::tempdir().unwrap());
        let t = TenantId::generate();
        let old = IndexDoc::of_text("a b c d e f g h");
        let new = IndexDoc::of_text("i j k l m n o p");
        assert_eq!(old.len, new.len);
        for (doc, then) in [("/replaced", Some(&new)), ("/deleted", None), ("/kept", Some(&old))] {
            db.commit(&[], false, |tx| crate::search::reindex_tx(tx, &t, DocKind::File, doc, Some(&old)).unwrap());
            let mut underway = Underway::default();
            let asked = Asked { flush: true, flush_turn: true, rows: 3, flush_terms: 3 };
            db.commit(&[], false, |tx| underway = maintain_tx(tx, &t, asked, Underway::default()).unwrap().1);
            assert_eq!(count_of(&db.writer, "search_pending", &t), 1, "{doc}: its segment is being written");
            assert_eq!(count_of(&db.writer, "search_tail", &t), 1, "{doc}: it is still in the tail");
            db.commit(&[], false, |tx| crate::search::reindex_tx(tx, &t, DocKind::File, doc, then).unwrap());
            db.commit(&[], false, |tx| settle_tx(tx, &t, std::mem::take(&mut underway)).unwrap());
            check(&db.writer, &t);
            assert_eq!(count_of(&db.writer, "search_pending", &t), 0);
        }
        let mut want: Vec<(String, String, u32, u32)> = Vec::new();
        for (doc, ix) in [("/kept", &old), ("/replaced", &new)] {
            want.extend(ix.terms.iter().map(|(term, tf)| (term.clone(), doc.to_owned(), *tf, ix.len)));
        }
        want.sort();
        assert_eq!(postings(&db.writer, &t), want);
    }

    /// A flush reads on from where the last one stopped: documents rewritten while their flush
    /// was being written stay in the tail, and must not hold back those after them.
    #[test]
    fn documents_rewritten_during_a_flush_do_not_hold_back_the_documents_after_them() {
        let db = open_at(tempfile::tempdir().unwrap());
        let t = TenantId::generate();
        let (one, two) = (IndexDoc::of_text("a b c d"), IndexDoc::of_text("e f g h"));
        let hot: Vec<String> = (0..crate::search_upkeep::FLUSH_MAX).map(|i| format!("/a{i:05}")).collect();
        let write_all = |ix: &IndexDoc| {
            db.commit(&[], false, |tx| {
                for doc in &hot {
                    crate::search::reindex_tx(tx, &t, DocKind::File, doc, Some(ix)).unwrap();
                }
            })
        };
        write_all(&one);
        db.commit(&[], false, |tx| crate::search::reindex_tx(tx, &t, DocKind::File, "/b", Some(&one)).unwrap());
        let asked = Asked { flush: true, flush_turn: true, rows: 1, flush_terms: 1 };
        let mut underway = Underway::default();
        let mut step = || {
            db.commit(&[], false, |tx| underway = maintain_tx(tx, &t, asked, std::mem::take(&mut underway)).unwrap().1)
        };
        // The first flush takes the hot documents (as many as a flush reads), which are all
        // rewritten before it ends; the next one takes /b.
        step();
        write_all(&two);
        for _ in 0..8 {
            step();
        }
        let in_tail = |doc: &str| -> i64 {
            db.writer
                .query_row(
                    "SELECT count(*) FROM search_tail WHERE tenant_id = ?1 AND doc = ?2",
                    [t.as_str(), doc],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(in_tail("/b"), 0, "/b was flushed");
        assert_eq!(in_tail(&hot[0]), 1, "the rewritten documents wait in the tail");
        check(&db.writer, &t);
    }

    fn count_of(conn: &Connection, table: &str, tenant: &TenantId) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = ?1"), [tenant.as_str()], |r| r.get(0))
            .unwrap()
    }
}
