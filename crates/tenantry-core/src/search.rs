//! Full-text search (API.md §7): how text becomes terms, what `q` means ([`query`]), which
//! documents a query finds and how they rank (BM25 with the statistics of the searched tenant
//! *only*, [`select`]), and how a snippet is cut. The store keeps the postings of (tenant, term,
//! document) and reads them for a [`Selection`]; nothing here touches storage.
//!
//! Why not SQLite FTS5's own `bm25()`: it ranks with statistics of the whole table (row count,
//! average length, document frequency across every tenant), so one tenant's scores would move
//! with another tenant's documents and reveal which words they contain. Every number used here is
//! counted inside one tenant (and inside the key's prefix).

use crate::error::Error;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

mod query;
pub mod segment;
mod select;

pub use query::{prefix_upper, Query, Unit, MIN_PREFIX_CHARS};
pub use select::{Found, Selection, MAX_TEXT_BYTES, MAX_TEXT_READS};

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

/// The byte spans of the words of `text`: maximal runs of letters and digits, at most
/// [`MAX_TERM_BYTES`] long (longer runs are skipped).
fn word_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
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
        if end - start <= MAX_TERM_BYTES {
            return Some((start, end));
        }
    })
}

/// A word as the index keeps it: lowercased, borrowed when it is lowercase ASCII already (other
/// scripts go through `to_lowercase`, which knows titlecase letters and final sigma).
fn lowered(word: &str) -> std::borrow::Cow<'_, str> {
    if word.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        std::borrow::Cow::Borrowed(word)
    } else {
        std::borrow::Cow::Owned(word.to_lowercase())
    }
}

/// The words of `text` with their byte offsets: maximal runs of letters and digits, lowercased.
pub fn tokens(text: &str) -> impl Iterator<Item = (usize, usize, String)> + '_ {
    word_spans(text).map(|(start, end)| (start, end, lowered(&text[start..end]).into_owned()))
}

/// What the index stores for one document: its distinct terms with their counts, and its length
/// in words.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct IndexDoc {
    pub terms: Vec<(String, u32)>,
    pub len: u32,
}

impl IndexDoc {
    /// Whether the document goes into the index at all: one without a word could match nothing,
    /// and is not counted in the statistics either (as Lucene's `docCount` leaves out documents
    /// without the field).
    pub fn is_indexed(&self) -> bool {
        !self.terms.is_empty()
    }

    pub fn of_text(text: &str) -> IndexDoc {
        // Words are borrowed from the text where they are lowercase already: a document's words
        // cost one allocation per distinct word, not one per word.
        let mut counts: HashMap<std::borrow::Cow<'_, str>, u32> = HashMap::new();
        let mut len = 0u32;
        for (start, end) in word_spans(text) {
            len = len.saturating_add(1);
            let word = lowered(&text[start..end]);
            let distinct = counts.len();
            match counts.get_mut(word.as_ref()) {
                Some(n) => *n += 1,
                None if distinct < MAX_TERMS_PER_DOC => {
                    counts.insert(word, 1);
                }
                None => {}
            }
        }
        let mut terms: Vec<(String, u32)> = counts.into_iter().map(|(w, n)| (w.into_owned(), n)).collect();
        terms.sort_unstable();
        IndexDoc { terms, len }
    }

    /// A file's index entry, or `None` for content that is not indexed: binary (not UTF-8, or
    /// holding NUL bytes), larger than [`MAX_INDEXED_BYTES`], or an encoded blob rather than
    /// text (see [`looks_like_text`]).
    pub fn of_file(content: &[u8]) -> Option<IndexDoc> {
        indexed_text(content).map(IndexDoc::of_text)
    }
}

/// Documents of at least this many bytes are tokenized by [`IndexWork`]; smaller ones where they
/// are (handing one over costs more than reading it).
pub const OFFLOAD_BYTES: usize = 32 << 10;

/// Where a large document's words are read ([`IndexDoc::of_text`], [`IndexDoc::of_file`]): a
/// megabyte of text takes tens of milliseconds, which an async runtime's worker must not spend,
/// or the requests of every tenant sharing that worker wait behind it. The core has no runtime,
/// so it is handed one (the server's runs them on blocking threads; see `tenantry-http`).
#[async_trait::async_trait]
pub trait IndexWork: Send + Sync + std::fmt::Debug {
    async fn of_text(&self, text: String) -> IndexDoc;
    /// The file's index entry, and its content back.
    async fn of_file(&self, content: Vec<u8>) -> (Vec<u8>, Option<IndexDoc>);
}

/// Reads the words on the calling thread: for tests and tools that run no server.
#[derive(Debug, Default)]
pub struct InlineIndexWork;

#[async_trait::async_trait]
impl IndexWork for InlineIndexWork {
    async fn of_text(&self, text: String) -> IndexDoc {
        IndexDoc::of_text(&text)
    }
    async fn of_file(&self, content: Vec<u8>) -> (Vec<u8>, Option<IndexDoc>) {
        let index = IndexDoc::of_file(&content);
        (content, index)
    }
}

/// Whether [`IndexDoc::of_file`] indexes this content, without reading its words.
pub fn is_indexed_content(content: &[u8]) -> bool {
    indexed_text(content).is_some()
}

/// The content as the text the index reads, if it is indexed (see [`IndexDoc::of_file`]).
fn indexed_text(content: &[u8]) -> Option<&str> {
    if content.len() > MAX_INDEXED_BYTES || content.contains(&0) || !looks_like_text(content) {
        return None;
    }
    std::str::from_utf8(content).ok()
}

/// Whether UTF-8 content reads as text worth indexing: anything up to 1 KiB, and beyond that at
/// least one whitespace byte per 200 bytes. Base64 and hex dumps, keys and similar encoded blobs
/// have none: indexing them costs a posting per random token and finds nothing anyone searches.
pub fn looks_like_text(content: &[u8]) -> bool {
    content.len() <= 1024 || content.iter().filter(|b| b.is_ascii_whitespace()).count() * 200 >= content.len()
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
    /// The indexed words that made it a hit: the query's words and phrases found in it, and
    /// the words its prefixes matched.
    pub matched: Vec<String>,
    /// A short excerpt around the first match, matched words wrapped in `<mark>`…`</mark>`.
    pub snippet: String,
}

/// What a search answers: the hits, best first, and whether it stopped reading texts at its
/// budget ([`select::MAX_TEXT_READS`], [`select::MAX_TEXT_BYTES`]) before the hits were settled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchAnswer {
    pub hits: Vec<SearchHit>,
    pub partial: bool,
}

/// A prefix matches at most this many distinct words in a search's scope; a broader one is
/// refused ([`too_broad`]) rather than read: every expansion's postings would be.
pub const MAX_PREFIX_WORDS: usize = 256;

/// The refusal of a prefix matching more than [`MAX_PREFIX_WORDS`] words.
pub fn too_broad(prefix: &str) -> Error {
    Error::invalid_request(format!(
        "`q`: the prefix `{prefix}*` matches more than {MAX_PREFIX_WORDS} different words here; make it longer"
    ))
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

/// An excerpt of `text` around the first word matching a term, with matches marked.
pub fn snippet(text: &str, terms: &[String]) -> String {
    const BEFORE: usize = 8;
    const WORDS: usize = 32;
    let terms: HashSet<&str> = terms.iter().map(String::as_str).collect();
    let words: Vec<(usize, usize, String)> = tokens(text).collect();
    let Some(first) = words.iter().position(|(_, _, w)| terms.contains(w.as_str())) else {
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
        if terms.contains(w.as_str()) {
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
        for content in [&b"plain text"[..], &[0xff, 0xfe], b"nul\0inside", &vec![b'a'; MAX_INDEXED_BYTES + 1]] {
            assert_eq!(is_indexed_content(content), IndexDoc::of_file(content).is_some());
        }
    }

    fn p(doc: &str, tf: u32, len: u32) -> Posting {
        Posting { kind: DocKind::File, doc: doc.into(), tf, len }
    }

    /// The hits of `q` over the given postings, every document's text being `text(doc)`.
    fn select(q: &str, found: Found, stats: ScopeStats, text: impl Fn(&str) -> String) -> Vec<(String, f64)> {
        let mut s = Selection::new(&Query::parse(q).unwrap(), found, stats, |_, _| true, 10);
        while let Some((_, doc)) = s.to_read() {
            s.offer(Some(text(&doc)));
        }
        s.finish().hits.into_iter().map(|h| (h.path.unwrap(), h.score)).collect()
    }

    #[test]
    fn every_term_must_match_and_rarer_terms_weigh_more() {
        let stats = ScopeStats { docs: 10, words: 100 };
        let rust = vec![p("/a", 1, 10), p("/b", 1, 10), p("/c", 1, 10)];
        let tokio = vec![p("/b", 1, 10)];
        let found = Found { words: vec![rust.clone(), tokio.clone()], prefixes: vec![] };
        let ranked = select("rust tokio", found, stats, |_| String::new());
        assert_eq!(ranked.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["/b"]);
        // More occurrences in a document of the same length rank higher.
        let found = Found { words: vec![vec![p("/a", 1, 10), p("/b", 3, 10)]], prefixes: vec![] };
        let ranked = select("rust", found, stats, |_| String::new());
        assert_eq!(ranked.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["/b", "/a"]);
        let found = Found { words: vec![rust.clone(), vec![]], prefixes: vec![] };
        assert!(select("rust tokio", found, stats, |_| String::new()).is_empty());
        // An alternative adds its score where it matches; an excluded word removes the document.
        let found = Found { words: vec![rust.clone(), tokio.clone()], prefixes: vec![] };
        let either = select("rust OR tokio", found, stats, |_| String::new());
        assert_eq!(either.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["/b", "/a", "/c"]);
        assert!(either[0].1 > either[1].1 && either[1].1 == either[2].1);
        let found = Found { words: vec![rust, tokio], prefixes: vec![] };
        let without = select("rust -tokio", found, stats, |_| String::new());
        assert_eq!(without.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["/a", "/c"]);
    }

    #[test]
    fn phrases_are_checked_on_the_text_and_prefixes_count_as_one_word() {
        let stats = ScopeStats { docs: 3, words: 12 };
        let text = |doc: &str| match doc {
            "/a" => "release notes for today".to_owned(),
            "/b" => "notes about the release".to_owned(),
            _ => "deploy deployed deployment".to_owned(),
        };
        let found = Found {
            words: vec![vec![p("/a", 1, 4), p("/b", 1, 4)], vec![p("/a", 1, 4), p("/b", 1, 4)]],
            prefixes: vec![],
        };
        let hits = select("\"release notes\"", found.clone(), stats, text);
        assert_eq!(hits.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["/a"]);
        let hits = select("release notes -\"release notes\"", found, stats, text);
        assert_eq!(hits.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["/b"]);
        let expansions = vec![("deploy".to_owned(), p("/c", 1, 3)), ("deployed".to_owned(), p("/c", 1, 3))];
        let found = Found { words: vec![], prefixes: vec![expansions] };
        let mut s = Selection::new(&Query::parse("dep*").unwrap(), found, stats, |_, _| true, 10);
        let (_, doc) = s.to_read().unwrap();
        s.offer(Some(text(&doc)));
        assert_eq!(s.to_read(), None);
        let hit = &s.finish().hits[0];
        assert_eq!(hit.matched, ["deploy", "deployed"]);
        assert_eq!(hit.snippet, "<mark>deploy</mark> <mark>deployed</mark> deployment");
    }

    #[test]
    fn only_about_limit_documents_are_read_when_no_phrase_decides() {
        let stats = ScopeStats { docs: 100, words: 1000 };
        let list: Vec<Posting> = (0..100).map(|i| p(&format!("/{i:03}"), 1 + i % 7, 10)).collect();
        let mut s = Selection::new(
            &Query::parse("word").unwrap(),
            Found { words: vec![list], prefixes: vec![] },
            stats,
            |_, _| true,
            5,
        );
        let mut read = 0;
        while s.to_read().is_some() {
            read += 1;
            s.offer(Some("word".into()));
        }
        let hits = s.finish().hits;
        assert_eq!(hits.len(), 5);
        // Ties (the same count, so the same score) come in document order.
        let paths: Vec<String> = hits.into_iter().map(|h| h.path.unwrap()).collect();
        assert_eq!(paths, ["/006", "/013", "/020", "/027", "/034"]);
        assert_eq!(read, 5);
    }

    #[test]
    fn a_search_stops_reading_texts_at_its_budget_and_says_so() {
        let stats = ScopeStats { docs: 5000, words: 10000 };
        let list = |w: &str| -> Vec<Posting> { (0..5000).map(|i| p(&format!("/{w}{i:04}"), 1, 2)).collect() };
        let a: Vec<Posting> = list("d");
        let found = Found { words: vec![a.clone(), a], prefixes: vec![] };
        let mut s = Selection::new(&Query::parse("\"a b\"").unwrap(), found, stats, |_, _| true, 10);
        let mut read = 0;
        while s.to_read().is_some() {
            read += 1;
            // Both words, never adjacent: every candidate has to be read, and none is a hit.
            s.offer(Some("b a".into()));
        }
        assert_eq!(read, MAX_TEXT_READS);
        let answer = s.finish();
        assert!(answer.partial && answer.hits.is_empty());
        // Within the budget, nothing is partial.
        let found = Found { words: vec![vec![p("/x", 1, 2)], vec![p("/x", 1, 2)]], prefixes: vec![] };
        let mut s = Selection::new(&Query::parse("\"a b\"").unwrap(), found, stats, |_, _| true, 10);
        while s.to_read().is_some() {
            s.offer(Some("a b".into()));
        }
        let answer = s.finish();
        assert!(!answer.partial && answer.hits.len() == 1);
    }

    #[test]
    fn scores_depend_only_on_the_statistics_given() {
        // The same postings and the same scope statistics give the same scores, whatever else
        // exists elsewhere: there is nothing else to look at.
        let stats = ScopeStats { docs: 3, words: 30 };
        let found = || Found { words: vec![vec![p("/x", 2, 10)]], prefixes: vec![] };
        let a = select("x", found(), stats, |_| "x x".into());
        let b = select("x", found(), stats, |_| "x x".into());
        assert_eq!(a, b);
        assert!(a[0].1 > 0.0);
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
