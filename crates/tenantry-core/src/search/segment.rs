//! Index segments: a tenant's documents indexed together, immutable once written. A store keeps a
//! tenant's index as a few segments plus a small tail of documents written since the last flush
//! (`tenantry-store-sqlite`'s README says how it stores them); this module is what a segment
//! holds and how it is built, read and merged, with no storage in it.
//!
//! A segment numbers its documents 0, 1, 2, ... in (kind, id) order, so a path prefix or a
//! namespace is a range of numbers. It holds:
//! - the documents, in chunks of at most [`CHUNK_BYTES`] (front-coded ids, each with its length);
//! - per term, the postings: (number, count in the document, document length), numbers in
//!   ascending order, delta- and varint-coded: about 3–4 bytes a posting;
//! - beside it, kept by the store, a bitmap of the numbers whose document was replaced or deleted
//!   since (dead): readers skip them, and a merge leaves them out.

use super::DocKind;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// At most this many bytes per chunk of a segment's document list (but for a chunk of one
/// document with a longer id): a store keeping a chunk as a row of a B-tree keeps it on the
/// row's page (SQLite's index B-tree leaves a row's first ~1,000 bytes of a 4 KiB page local and
/// spills the rest to an overflow page of its own, mostly empty for a row just over).
pub const CHUNK_BYTES: usize = 900;

/// A document as a segment lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegDoc {
    pub kind: DocKind,
    pub doc: String,
    pub len: u32,
}

/// A document to index: what [`super::IndexDoc`] says of it, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDoc {
    pub kind: DocKind,
    pub doc: String,
    pub len: u32,
    pub terms: Vec<(String, u32)>,
}

/// A segment made in memory, ready to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Built {
    /// The documents in number order.
    pub docs: Vec<SegDoc>,
    /// Every term with its encoded postings, in term order.
    pub terms: Vec<(String, Vec<u8>)>,
}

impl Built {
    /// The document list in chunks of at most [`CHUNK_BYTES`], encoded (each front-coded on its
    /// own: a reader decodes each and appends).
    pub fn doc_chunks(&self) -> Vec<Vec<u8>> {
        doc_chunks(&self.docs)
    }

    /// Bytes the segment takes encoded (terms, postings and document chunks).
    pub fn encoded_bytes(&self) -> usize {
        self.terms.iter().map(|(t, p)| t.len() + p.len()).sum::<usize>()
            + self.doc_chunks().iter().map(Vec::len).sum::<usize>()
    }
}

fn corrupt(what: &str) -> Error {
    Error::internal(format!("a search segment's {what} does not decode"))
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn get_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    get_varint(bytes, at).and_then(|n| u32::try_from(n).ok())
}

fn kind_code(kind: DocKind) -> u8 {
    kind as u8
}

fn kind_of(code: u8) -> Option<DocKind> {
    match code {
        0 => Some(DocKind::File),
        1 => Some(DocKind::Memory),
        _ => None,
    }
}

/// A list of documents, front-coded: each id as the bytes it shares with the previous one and
/// the rest.
pub fn encode_docs(docs: &[SegDoc]) -> Vec<u8> {
    let mut out = Vec::with_capacity(docs.len() * 8);
    let mut prev: &[u8] = &[];
    for d in docs {
        encode_doc(&mut out, prev, d);
        prev = d.doc.as_bytes();
    }
    out
}

/// One document of a list, its id front-coded against the previous one's (`prev`).
fn encode_doc(out: &mut Vec<u8>, prev: &[u8], d: &SegDoc) {
    let id = d.doc.as_bytes();
    let shared = prev.iter().zip(id).take_while(|(a, b)| a == b).count();
    out.push(kind_code(d.kind));
    put_varint(out, shared as u64);
    put_varint(out, (id.len() - shared) as u64);
    out.extend_from_slice(&id[shared..]);
    put_varint(out, u64::from(d.len));
}

pub fn decode_docs(bytes: &[u8]) -> Result<Vec<SegDoc>> {
    let mut out: Vec<SegDoc> = Vec::new();
    let mut prev: Vec<u8> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let kind = kind_of(bytes[at]).ok_or_else(|| corrupt("document list"))?;
        at += 1;
        let shared = get_varint(bytes, &mut at).ok_or_else(|| corrupt("document list"))? as usize;
        let rest = get_varint(bytes, &mut at).ok_or_else(|| corrupt("document list"))? as usize;
        let end = at.checked_add(rest).filter(|&e| e <= bytes.len() && shared <= prev.len());
        let end = end.ok_or_else(|| corrupt("document list"))?;
        let mut id = prev[..shared].to_vec();
        id.extend_from_slice(&bytes[at..end]);
        at = end;
        let len = get_u32(bytes, &mut at).ok_or_else(|| corrupt("document list"))?;
        let doc = String::from_utf8(id.clone()).map_err(|_| corrupt("document list"))?;
        prev = id;
        out.push(SegDoc { kind, doc, len });
    }
    Ok(out)
}

/// One posting as a segment holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegPosting {
    pub number: u32,
    pub tf: u32,
    pub len: u32,
}

/// Postings in ascending number order, encoded.
pub fn encode_postings(postings: &[SegPosting]) -> Vec<u8> {
    let mut out = Vec::with_capacity(postings.len() * 4);
    let mut prev: u64 = 0;
    for (i, p) in postings.iter().enumerate() {
        let n = u64::from(p.number);
        put_varint(&mut out, if i == 0 { n } else { n - prev });
        put_varint(&mut out, u64::from(p.tf));
        put_varint(&mut out, u64::from(p.len));
        prev = n;
    }
    out
}

pub fn decode_postings(bytes: &[u8]) -> Result<Vec<SegPosting>> {
    let mut out = Vec::with_capacity(bytes.len() / 3);
    let mut at = 0;
    let mut number: u64 = 0;
    while at < bytes.len() {
        let delta = get_varint(bytes, &mut at).ok_or_else(|| corrupt("postings"))?;
        number = if out.is_empty() { delta } else { number.checked_add(delta).ok_or_else(|| corrupt("postings"))? };
        let tf = get_u32(bytes, &mut at).ok_or_else(|| corrupt("postings"))?;
        let len = get_u32(bytes, &mut at).ok_or_else(|| corrupt("postings"))?;
        let number = u32::try_from(number).map_err(|_| corrupt("postings"))?;
        out.push(SegPosting { number, tf, len });
    }
    Ok(out)
}

/// A document list (in number order) in chunks of at most [`CHUNK_BYTES`], encoded (each
/// front-coded on its own: a reader decodes each and appends).
pub fn doc_chunks(docs: &[SegDoc]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let (mut chunk, mut prev): (Vec<u8>, &[u8]) = (Vec::new(), &[]);
    let mut one = Vec::new();
    for d in docs {
        one.clear();
        encode_doc(&mut one, prev, d);
        if !chunk.is_empty() && chunk.len() + one.len() > CHUNK_BYTES {
            chunks.push(std::mem::take(&mut chunk));
            one.clear();
            encode_doc(&mut one, &[], d);
        }
        chunk.extend_from_slice(&one);
        prev = d.doc.as_bytes();
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Builds a segment of `docs` (ids distinct).
pub fn build(mut docs: Vec<NewDoc>) -> Built {
    docs.sort_by(|a, b| (a.kind, &a.doc).cmp(&(b.kind, &b.doc)));
    // Terms gathered by hash (Fx: short keys, no untrusted collisions worth defending against
    // here: a document holds at most MAX_TERMS_PER_DOC), then sorted once: a tree would compare
    // strings a dozen times per posting.
    let mut terms: rustc_hash::FxHashMap<String, Vec<SegPosting>> = rustc_hash::FxHashMap::default();
    let mut listed = Vec::with_capacity(docs.len());
    for (number, d) in docs.into_iter().enumerate() {
        let number = number as u32;
        for (term, tf) in d.terms {
            let posting = SegPosting { number, tf, len: d.len };
            match terms.get_mut(term.as_str()) {
                Some(list) => list.push(posting),
                None => {
                    terms.insert(term, vec![posting]);
                }
            }
        }
        listed.push(SegDoc { kind: d.kind, doc: d.doc, len: d.len });
    }
    let mut terms: Vec<(String, Vec<SegPosting>)> = terms.into_iter().collect();
    terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Built { docs: listed, terms: terms.into_iter().map(|(t, p)| (t, encode_postings(&p))).collect() }
}

/// A dead-document bitmap of a segment of `docs` documents, none dead.
pub fn no_dead(docs: usize) -> Vec<u8> {
    vec![0; docs.div_ceil(8)]
}

pub fn is_dead(dead: &[u8], number: u32) -> bool {
    dead.get(number as usize / 8).is_some_and(|b| b & (1 << (number % 8)) != 0)
}

pub fn set_dead(dead: &mut [u8], number: u32) {
    if let Some(b) = dead.get_mut(number as usize / 8) {
        *b |= 1 << (number % 8);
    }
}

/// How many documents the bitmap marks dead.
pub fn dead_count(dead: &[u8]) -> u32 {
    dead.iter().map(|b| b.count_ones()).sum()
}

/// A stored segment as a merge reads it: its documents, its dead bitmap, and its terms with
/// their encoded postings in term order.
pub struct Input {
    pub docs: Vec<SegDoc>,
    pub dead: Vec<u8>,
    pub terms: Vec<(String, Vec<u8>)>,
}

/// How a merge renumbers: the merged segment's documents (the inputs' live ones, in (kind, id)
/// order), and per input, each old number's new one (`u32::MAX`: left out, dead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergePlan {
    pub docs: Vec<SegDoc>,
    pub renumber: Vec<Vec<u32>>,
}

impl MergePlan {
    /// Every document the merge keeps: (input, old number, new number).
    pub fn kept(&self) -> impl Iterator<Item = (usize, u32, u32)> + '_ {
        self.renumber.iter().enumerate().flat_map(|(i, numbers)| {
            numbers.iter().enumerate().filter(|(_, new)| **new != u32::MAX).map(move |(old, new)| (i, old as u32, *new))
        })
    }
}

/// The renumbering of a merge of segments given by their documents and dead bitmaps. A document
/// live in two inputs (which a store never leaves) is taken from the later input.
pub fn plan_merge(inputs: &[(&[SegDoc], &[u8])]) -> MergePlan {
    // Every live document, with where it came from.
    let mut live: BTreeMap<(DocKind, &str), (usize, u32, u32)> = BTreeMap::new();
    for (i, (docs, dead)) in inputs.iter().enumerate() {
        for (n, d) in docs.iter().enumerate() {
            if !is_dead(dead, n as u32) {
                live.insert((d.kind, d.doc.as_str()), (i, n as u32, d.len));
            }
        }
    }
    let mut renumber: Vec<Vec<u32>> = inputs.iter().map(|(docs, _)| vec![u32::MAX; docs.len()]).collect();
    let mut docs = Vec::with_capacity(live.len());
    for (new, ((kind, doc), (i, old, len))) in live.into_iter().enumerate() {
        renumber[i][old as usize] = new as u32;
        docs.push(SegDoc { kind, doc: doc.to_owned(), len });
    }
    MergePlan { docs, renumber }
}

/// The merged postings of some of the inputs' terms (`terms[i]`: input i's, in term order), by
/// `renumber` (see [`MergePlan`]): every term with a kept posting, in term order. A merge may
/// take the terms a range at a time: the ranges' results, concatenated, are the whole.
pub fn merge_terms(renumber: &[Vec<u32>], terms: &[&[(String, Vec<u8>)]]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut merged: BTreeMap<&str, Vec<SegPosting>> = BTreeMap::new();
    for (i, input) in terms.iter().enumerate() {
        let numbers = renumber.get(i).map(Vec::as_slice).unwrap_or_default();
        for (term, blob) in input.iter() {
            for p in decode_postings(blob)? {
                let new = numbers.get(p.number as usize).copied().unwrap_or(u32::MAX);
                if new != u32::MAX {
                    merged.entry(term.as_str()).or_default().push(SegPosting { number: new, ..p });
                }
            }
        }
    }
    Ok(merged
        .into_iter()
        .map(|(t, mut p)| {
            p.sort_unstable_by_key(|p| p.number);
            (t.to_owned(), encode_postings(&p))
        })
        .collect())
}

/// Merges segments into one of their live documents, renumbered ([`plan_merge`], then
/// [`merge_terms`] of all their terms).
pub fn merge(inputs: Vec<Input>) -> Result<Built> {
    let plan = plan_merge(&inputs.iter().map(|i| (i.docs.as_slice(), i.dead.as_slice())).collect::<Vec<_>>());
    let terms = merge_terms(&plan.renumber, &inputs.iter().map(|i| i.terms.as_slice()).collect::<Vec<_>>())?;
    Ok(Built { docs: plan.docs, terms })
}

/// The numbers `[lo, hi)` of a segment's documents (`docs`, in number order) of `kind` whose id
/// is in `[from, to)` (unbounded where `None`).
pub fn range_in(docs: &[SegDoc], kind: DocKind, from: Option<&str>, to: Option<&str>) -> (u32, u32) {
    let at = |key: (DocKind, &str)| docs.partition_point(|d| (d.kind, d.doc.as_str()) < key) as u32;
    let lo = at((kind, from.unwrap_or("")));
    let hi = match (to, kind) {
        (Some(to), _) => at((kind, to)),
        (None, DocKind::File) => at((DocKind::Memory, "")),
        (None, DocKind::Memory) => docs.len() as u32,
    };
    (lo, hi.max(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doc(kind: DocKind, id: &str, terms: &[(&str, u32)]) -> NewDoc {
        NewDoc {
            kind,
            doc: id.into(),
            len: terms.iter().map(|t| t.1).sum(),
            terms: terms.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        }
    }

    fn postings_of(built: &Built, term: &str) -> Vec<(String, u32)> {
        let Some((_, blob)) = built.terms.iter().find(|(t, _)| t == term) else { return Vec::new() };
        decode_postings(blob).unwrap().into_iter().map(|p| (built.docs[p.number as usize].doc.clone(), p.tf)).collect()
    }

    #[test]
    fn a_segment_numbers_documents_in_id_order_and_lists_each_terms_postings() {
        let built = build(vec![
            doc(DocKind::Memory, "ns\u{1f}k", &[("alpha", 1)]),
            doc(DocKind::File, "/b.txt", &[("alpha", 2), ("beta", 1)]),
            doc(DocKind::File, "/a.txt", &[("beta", 3)]),
        ]);
        let ids: Vec<&str> = built.docs.iter().map(|d| d.doc.as_str()).collect();
        assert_eq!(ids, ["/a.txt", "/b.txt", "ns\u{1f}k"]);
        assert_eq!(postings_of(&built, "alpha"), [("/b.txt".to_owned(), 2), ("ns\u{1f}k".to_owned(), 1)]);
        assert_eq!(postings_of(&built, "beta"), [("/a.txt".to_owned(), 3), ("/b.txt".to_owned(), 1)]);
        assert_eq!(decode_docs(&encode_docs(&built.docs)).unwrap(), built.docs);
    }

    #[test]
    fn the_document_list_comes_in_chunks_that_fit_a_page_and_decode_to_the_whole_list() {
        let mut docs: Vec<NewDoc> =
            (0..2000).map(|i| doc(DocKind::File, &format!("/corpus/{i:06}.txt"), &[("w", 1)])).collect();
        // An id longer than a chunk is a chunk of its own.
        docs.push(doc(DocKind::File, &format!("/long/{}", "x".repeat(2 * CHUNK_BYTES)), &[("w", 1)]));
        docs.push(doc(DocKind::Memory, "ns\u{1f}k", &[("w", 1)]));
        let built = build(docs);
        let chunks = built.doc_chunks();
        assert!(chunks.len() > 10, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(c.len() <= CHUNK_BYTES || decode_docs(c).unwrap().len() == 1, "a chunk of {} bytes", c.len());
        }
        let whole: Vec<SegDoc> = chunks.iter().flat_map(|c| decode_docs(c).unwrap()).collect();
        assert_eq!(whole, built.docs);
    }

    #[test]
    fn a_merge_keeps_live_documents_only_and_renumbers_them() {
        let old = build(vec![doc(DocKind::File, "/a", &[("x", 1)]), doc(DocKind::File, "/b", &[("x", 2), ("y", 1)])]);
        let new = build(vec![doc(DocKind::File, "/a", &[("y", 5)]), doc(DocKind::File, "/c", &[("x", 1)])]);
        // /a was rewritten: its first version is dead.
        let mut dead = no_dead(2);
        set_dead(&mut dead, 0);
        let merged = merge(vec![
            Input { docs: old.docs.clone(), dead, terms: old.terms.clone() },
            Input { docs: new.docs.clone(), dead: no_dead(2), terms: new.terms.clone() },
        ])
        .unwrap();
        let ids: Vec<&str> = merged.docs.iter().map(|d| d.doc.as_str()).collect();
        assert_eq!(ids, ["/a", "/b", "/c"]);
        assert_eq!(postings_of(&merged, "x"), [("/b".to_owned(), 2), ("/c".to_owned(), 1)]);
        assert_eq!(postings_of(&merged, "y"), [("/a".to_owned(), 5), ("/b".to_owned(), 1)]);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        assert!(decode_postings(&[0x80]).is_err());
        assert!(decode_docs(&[7]).is_err());
        assert!(decode_docs(&[0, 5, 1, b'a', 0]).is_err());
    }

    proptest! {
        /// A range found by bisection equals a scan of every document.
        #[test]
        fn a_range_found_by_bisection_equals_a_scan(
            ids in proptest::collection::btree_set("/[a-c]{1,3}(/[a-c]{1,2})?", 0..400),
            memory in 0usize..5,
            from in "/[a-c]{0,3}",
            to in "/[a-c]{0,3}",
        ) {
            let mut docs: Vec<NewDoc> = ids.iter().map(|id| doc(DocKind::File, id, &[("w", 1)])).collect();
            docs.extend((0..memory).map(|i| doc(DocKind::Memory, &format!("n\u{1f}{i}"), &[("w", 1)])));
            let built = build(docs);
            let (lo, hi) = range_in(&built.docs, DocKind::File, Some(&from), Some(&to));
            let want: Vec<u32> = (0..built.docs.len() as u32)
                .filter(|&n| {
                    let d = &built.docs[n as usize];
                    d.kind == DocKind::File && d.doc.as_str() >= from.as_str() && d.doc.as_str() < to.as_str()
                })
                .collect();
            let got: Vec<u32> = (lo..hi).collect();
            prop_assert_eq!(got, want);
            let (lo, hi) = range_in(&built.docs, DocKind::Memory, None, None);
            prop_assert_eq!((hi - lo) as usize, memory);
            let (lo, hi) = range_in(&built.docs, DocKind::File, None, None);
            prop_assert_eq!((lo, hi as usize), (0, ids.len()));
        }

        /// Merging segments in any order of deletions gives the segment built from the live
        /// documents alone.
        #[test]
        fn a_merge_equals_building_the_live_documents_afresh(
            versions in proptest::collection::vec((0u8..30, proptest::collection::vec((0u8..6, 1u32..4), 1..5)), 1..60),
            cuts in proptest::collection::vec(1usize..60, 0..4),
            split in 0u8..7,
        ) {
            // Versions written in order, cut into segments; a later version kills the earlier.
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c < versions.len()).collect();
            bounds.extend([0, versions.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            let mut latest: BTreeMap<String, NewDoc> = BTreeMap::new();
            let mut inputs: Vec<Input> = Vec::new();
            let mut located: BTreeMap<String, (usize, u32)> = BTreeMap::new();
            for w in bounds.windows(2) {
                let mut seg_docs: BTreeMap<String, NewDoc> = BTreeMap::new();
                for (id, terms) in &versions[w[0]..w[1]] {
                    let mut t: BTreeMap<String, u32> = BTreeMap::new();
                    for (term, n) in terms {
                        *t.entry(format!("t{term}")).or_default() += n;
                    }
                    let d = NewDoc { kind: DocKind::File, doc: format!("/{id}"), len: t.values().sum(), terms: t.into_iter().collect() };
                    seg_docs.insert(d.doc.clone(), d.clone());
                    latest.insert(d.doc.clone(), d);
                }
                let built = build(seg_docs.into_values().collect());
                let seg = inputs.len();
                for (n, d) in built.docs.iter().enumerate() {
                    if let Some((s, old)) = located.insert(d.doc.clone(), (seg, n as u32)) {
                        set_dead(&mut inputs[s].dead, old);
                    }
                }
                inputs.push(Input { dead: no_dead(built.docs.len()), docs: built.docs, terms: built.terms });
            }
            // The terms merged a range at a time (below a cut, then the rest) are the whole merge's.
            let plan = plan_merge(&inputs.iter().map(|i| (i.docs.as_slice(), i.dead.as_slice())).collect::<Vec<_>>());
            let cut = format!("t{split}");
            let below: Vec<Vec<(String, Vec<u8>)>> =
                inputs.iter().map(|i| i.terms.iter().filter(|t| t.0 < cut).cloned().collect()).collect();
            let rest: Vec<Vec<(String, Vec<u8>)>> =
                inputs.iter().map(|i| i.terms.iter().filter(|t| t.0 >= cut).cloned().collect()).collect();
            let mut by_range = merge_terms(&plan.renumber, &below.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
            by_range.extend(merge_terms(&plan.renumber, &rest.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap());
            let merged = merge(inputs).unwrap();
            prop_assert_eq!(&plan.docs, &merged.docs);
            prop_assert_eq!(&by_range, &merged.terms);
            prop_assert_eq!(merged, build(latest.into_values().collect()));
        }
    }
}
