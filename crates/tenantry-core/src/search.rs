//! Full-text search (API.md §7): how text becomes terms, how a query ranks documents (BM25 with
//! the statistics of the searched tenant *only*), and how a snippet is cut. The store keeps one
//! posting per (tenant, term, document) and calls [`rank`]; nothing here touches storage.
//!
//! Why not SQLite FTS5's own `bm25()`: it ranks with statistics of the whole table (row count,
//! average length, document frequency across every tenant), so one tenant's scores would move
//! with another tenant's documents and reveal which words they contain. Every number used here is
//! counted inside one tenant (and inside the key's prefix).

use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Text files larger than this are not indexed (they are still stored and served).
pub const MAX_INDEXED_BYTES: usize = 1 << 20;
/// A term longer than this (in bytes) is not indexed: it is noise, not a word.
pub const MAX_TERM_BYTES: usize = 64;
/// At most this many distinct terms of one document are indexed (the first ones met).
pub const MAX_TERMS_PER_DOC: usize = 20_000;
/// At most this many words in a query.
pub const MAX_QUERY_TERMS: usize = 16;
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// The words of `text` with their byte offsets: maximal runs of letters and digits, lowercased.
pub fn tokens(text: &str) -> impl Iterator<Item = (usize, usize, String)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || loop {
        let (start, c) = chars.next()?;
        if !c.is_alphanumeric() {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let word = &text[start..end];
        if word.len() <= MAX_TERM_BYTES {
            return Some((start, end, word.to_lowercase()));
        }
    })
}

/// What the index stores for one document: its distinct terms with their counts, and its length
/// in words.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct IndexDoc {
    pub terms: Vec<(String, u32)>,
    pub len: u32,
}

impl IndexDoc {
    pub fn of_text(text: &str) -> IndexDoc {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut len = 0u32;
        for (_, _, word) in tokens(text) {
            len = len.saturating_add(1);
            let distinct = counts.len();
            match counts.get_mut(&word) {
                Some(n) => *n += 1,
                None if distinct < MAX_TERMS_PER_DOC => {
                    counts.insert(word, 1);
                }
                None => {}
            }
        }
        let mut terms: Vec<(String, u32)> = counts.into_iter().collect();
        terms.sort_unstable();
        IndexDoc { terms, len }
    }

    /// A file's index entry, or `None` for content that is not indexed: binary (not UTF-8, or
    /// holding NUL bytes), larger than [`MAX_INDEXED_BYTES`], or an encoded blob rather than
    /// text (see [`looks_like_text`]).
    pub fn of_file(content: &[u8]) -> Option<IndexDoc> {
        if content.len() > MAX_INDEXED_BYTES || content.contains(&0) || !looks_like_text(content) {
            return None;
        }
        std::str::from_utf8(content).ok().map(IndexDoc::of_text)
    }
}

/// Whether UTF-8 content reads as text worth indexing: anything up to 1 KiB, and beyond that at
/// least one whitespace byte per 200 bytes. Base64 and hex dumps, keys and similar encoded blobs
/// have none: indexing them costs a posting per random token and finds nothing anyone searches.
pub fn looks_like_text(content: &[u8]) -> bool {
    content.len() <= 1024 || content.iter().filter(|b| b.is_ascii_whitespace()).count() * 200 >= content.len()
}

/// The distinct terms of a query, in the order given.
pub fn query_terms(q: &str) -> Result<Vec<String>> {
    let mut terms: Vec<String> = Vec::new();
    for (_, _, t) in tokens(q) {
        if !terms.contains(&t) {
            terms.push(t);
        }
    }
    if terms.is_empty() {
        return Err(Error::invalid_request("`q` has no words to search for (letters or digits)"));
    }
    if terms.len() > MAX_QUERY_TERMS {
        return Err(Error::invalid_request(format!("`q` has more than {MAX_QUERY_TERMS} distinct words")));
    }
    Ok(terms)
}

/// What a search returns per hit (API.md §7).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// `file` or `memory`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub score: f64,
    /// A short excerpt around the first match, matched words wrapped in `<mark>`…`</mark>`.
    pub snippet: String,
}

/// Which documents a document id names: files by path, memory by namespace and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKind {
    File = 0,
    Memory = 1,
}

/// One posting as the store reads it: the document, the term's count in it, its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub kind: DocKind,
    pub doc: String,
    pub tf: u32,
    pub len: u32,
}

/// Statistics of the searched scope (one tenant, narrowed by prefix): documents and total words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeStats {
    pub docs: u64,
    pub words: u64,
}

/// Ranks the documents holding *every* query term. `postings[i]` holds term i's postings in the
/// scope; the result is the best `limit` as (kind, doc, score), best first, ties in document order.
pub fn rank(postings: &[Vec<Posting>], stats: ScopeStats, limit: usize) -> Vec<(DocKind, String, f64)> {
    if postings.is_empty() || postings.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    let n = stats.docs.max(1) as f64;
    let avgdl = (stats.words as f64 / n).max(1.0);
    // Start from the rarest term: the candidates can only shrink.
    let mut order: Vec<usize> = (0..postings.len()).collect();
    order.sort_by_key(|&i| postings[i].len());
    let mut scores: BTreeMap<(DocKind, &str), f64> = BTreeMap::new();
    for (rank_i, &i) in order.iter().enumerate() {
        let df = postings[i].len() as f64;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let mut next: BTreeMap<(DocKind, &str), f64> = BTreeMap::new();
        for p in &postings[i] {
            let id = (p.kind, p.doc.as_str());
            let prior = if rank_i == 0 { Some(0.0) } else { scores.get(&id).copied() };
            if let Some(prior) = prior {
                let tf = f64::from(p.tf);
                let norm = tf + K1 * (1.0 - B + B * f64::from(p.len) / avgdl);
                next.insert(id, prior + idf * tf * (K1 + 1.0) / norm);
            }
        }
        scores = next;
        if scores.is_empty() {
            return Vec::new();
        }
    }
    let mut out: Vec<(DocKind, String, f64)> =
        scores.into_iter().map(|((k, d), s)| (k, d.to_owned(), (s * 1e6).round() / 1e6)).collect();
    // Stable sort on a list in document order: equal scores stay in document order.
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    out.truncate(limit);
    out
}

/// An excerpt of `text` around the first word matching a term, with matches marked.
pub fn snippet(text: &str, terms: &[String]) -> String {
    const BEFORE: usize = 8;
    const WORDS: usize = 32;
    let words: Vec<(usize, usize, String)> = tokens(text).collect();
    let Some(first) = words.iter().position(|(_, _, w)| terms.contains(w)) else {
        return text.chars().take(200).collect();
    };
    let from = first.saturating_sub(BEFORE);
    let to = (from + WORDS).min(words.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut cursor = if from == 0 { 0 } else { words[from].0 };
    for (start, end, w) in &words[from..to] {
        out.push_str(&text[cursor..*start]);
        if terms.contains(w) {
            out.push_str("<mark>");
            out.push_str(&text[*start..*end]);
            out.push_str("</mark>");
        } else {
            out.push_str(&text[*start..*end]);
        }
        cursor = *end;
    }
    if to < words.len() {
        out.push('…');
    } else {
        out.push_str(&text[cursor..]);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_splits_into_lowercased_words_of_letters_and_digits() {
        let words: Vec<String> = tokens("Hello, Wörld! rust-2024 a_b").map(|t| t.2).collect();
        assert_eq!(words, ["hello", "wörld", "rust", "2024", "a", "b"]);
        let doc = IndexDoc::of_text("the cat and the hat");
        assert_eq!(doc.len, 5);
        assert_eq!(doc.terms, vec![("and".into(), 1), ("cat".into(), 1), ("hat".into(), 1), ("the".into(), 2)]);
    }

    #[test]
    fn binary_and_oversized_files_are_not_indexed() {
        assert!(IndexDoc::of_file(b"plain text").is_some());
        assert!(IndexDoc::of_file(&[0xff, 0xfe, 0x00]).is_none());
        assert!(IndexDoc::of_file(b"nul\0inside").is_none());
        assert!(IndexDoc::of_file(&vec![b'a'; MAX_INDEXED_BYTES + 1]).is_none());
        // An encoded blob (no whitespace over 1 KiB) is not text; prose and code are.
        assert!(IndexDoc::of_file("QUJD".repeat(300).as_bytes()).is_none());
        assert!(IndexDoc::of_file("QUJD".repeat(200).as_bytes()).is_some());
        assert!(IndexDoc::of_file("fn main() { println!(\"hi\"); }\n".repeat(100).as_bytes()).is_some());
    }

    #[test]
    fn a_query_needs_words() {
        assert_eq!(query_terms("Rust rust  tokio").unwrap(), ["rust", "tokio"]);
        assert!(query_terms("  --- ").is_err());
        let many: String = (0..17).map(|i| format!("w{i} ")).collect();
        assert!(query_terms(&many).is_err());
    }

    fn p(doc: &str, tf: u32, len: u32) -> Posting {
        Posting { kind: DocKind::File, doc: doc.into(), tf, len }
    }

    #[test]
    fn every_term_must_match_and_rarer_terms_weigh_more() {
        let stats = ScopeStats { docs: 10, words: 100 };
        let rust = vec![p("/a", 1, 10), p("/b", 1, 10), p("/c", 1, 10)];
        let tokio = vec![p("/b", 1, 10)];
        let ranked = rank(&[rust.clone(), tokio], stats, 10);
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].1, "/b");
        // More occurrences in a document of the same length rank higher.
        let ranked = rank(&[vec![p("/a", 1, 10), p("/b", 3, 10)]], stats, 10);
        assert_eq!(ranked.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["/b", "/a"]);
        assert!(rank(&[rust, vec![]], stats, 10).is_empty());
    }

    #[test]
    fn scores_depend_only_on_the_statistics_given() {
        // The same postings and the same scope statistics give the same scores, whatever else
        // exists elsewhere: there is nothing else to look at.
        let stats = ScopeStats { docs: 3, words: 30 };
        let a = rank(&[vec![p("/x", 2, 10)]], stats, 5);
        let b = rank(&[vec![p("/x", 2, 10)]], stats, 5);
        assert_eq!(a, b);
        assert!(a[0].2 > 0.0);
    }

    #[test]
    fn snippets_mark_matches_and_cut_around_the_first() {
        let text = format!("{} the quick brown fox jumps {}", "pad ".repeat(20), "end ".repeat(40));
        let s = snippet(&text, &["fox".to_owned()]);
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("brown <mark>fox</mark> jumps"), "{s}");
        assert_eq!(snippet("Fox!", &["fox".to_owned()]), "<mark>Fox</mark>!");
    }

    proptest! {
        #[test]
        fn tokenizing_never_panics_and_offsets_slice_the_text(s in "\\PC{0,200}") {
            for (start, end, w) in tokens(&s) {
                prop_assert_eq!(s[start..end].to_lowercase(), w);
            }
            let _ = snippet(&s, &["a".to_owned()]);
        }
    }
}
