//! Which documents a parsed [`Query`] finds, scored and in order. The store reads the postings of
//! the query's words and prefixes in the searched scope, hands them over as [`Found`], then reads
//! the text of each document [`Selection::to_read`] names until it names none; the hits come out of
//! [`Selection::finish`]. The same steps serve every backend.
//!
//! **Scores.** A document's score is the sum, over the required groups, of the BM25 scores of the
//! units it matches in each (an `OR` group scores every alternative it matches). A word scores as
//! BM25 with its own document frequency; a prefix as one word whose count in a document is the
//! sum of its expansions' counts and whose document frequency is the number of documents holding
//! any expansion; a phrase as the sum of its distinct words. Every statistic counts inside the
//! searched scope only.
//!
//! **Phrases are checked on the text.** The postings say a document holds a phrase's words, not
//! that they are adjacent. So a document's score from the postings is an upper bound: documents
//! are visited best bound first, and a document whose phrases decide its fate is read and its
//! score recomputed from its words. Visiting stops once the next bound cannot beat the `limit`-th
//! hit kept, so the common query reads about `limit` documents, as the snippets need anyway.

use super::query::{Query, Unit};
use super::{snippet, tokens, DocKind, Posting, ScopeStats, SearchAnswer, SearchHit, B, K1};
use crate::memory::SEPARATOR;
use std::collections::{BTreeMap, HashSet};

/// At most this many documents' texts are read by one search, and at most
/// [`MAX_TEXT_BYTES`] of text: a phrase that the postings allow in many documents but that few
/// hold cannot make one search read a tenant's whole corpus. A search stopped by either answers
/// with the hits found so far, marked partial.
pub const MAX_TEXT_READS: usize = 4096;
pub const MAX_TEXT_BYTES: usize = 16 << 20;

/// The postings a search read, aligned with [`Query::words`] and [`Query::prefixes`].
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// `words[i]`: the postings of the `i`-th word in the scope.
    pub words: Vec<Vec<Posting>>,
    /// `prefixes[i]`: every posting in the scope of a word starting with the `i`-th prefix,
    /// with that word.
    pub prefixes: Vec<Vec<(String, Posting)>>,
}

impl Found {
    /// Room for the postings of `query`.
    pub fn for_query(query: &Query) -> Found {
        Found { words: vec![Vec::new(); query.words().len()], prefixes: vec![Vec::new(); query.prefixes().len()] }
    }

    /// Whether no posting was found at all: nothing can be a hit, and the statistics need not
    /// be counted.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(Vec::is_empty) && self.prefixes.iter().all(Vec::is_empty)
    }
}

/// A unit with its words as indexes into [`Found`].
enum Compiled {
    Term(usize),
    Prefix(usize),
    /// The phrase's words in order, and the distinct ones that score.
    Phrase(Vec<String>, Vec<usize>),
}

/// What one document holds of the query's words and prefixes.
#[derive(Debug, Clone)]
struct Holding {
    len: u32,
    word_tf: Vec<u32>,
    prefix_words: Vec<Vec<(String, u32)>>,
}

struct Candidate {
    kind: DocKind,
    doc: String,
    bound: f64,
    holding: Holding,
    /// Whether a phrase decides whether it is a hit, or its score.
    read_words: bool,
}

struct Kept {
    kind: DocKind,
    doc: String,
    score: f64,
    matched: Vec<String>,
    text: String,
}

/// A search in progress; see the module docs.
pub struct Selection {
    /// The query's words, as [`Found::words`] is aligned.
    words: Vec<String>,
    groups: Vec<Vec<Compiled>>,
    excluded: Vec<Compiled>,
    word_idf: Vec<f64>,
    prefix_idf: Vec<f64>,
    avgdl: f64,
    candidates: Vec<Candidate>,
    at: usize,
    pending: Option<usize>,
    kept: Vec<Kept>,
    limit: usize,
    reads: usize,
    read_bytes: usize,
    partial: bool,
}

/// Scores as reported: rounded to a millionth, so equal scores tie exactly and order by document.
fn rounded(score: f64) -> f64 {
    (score * 1e6).round() / 1e6
}

fn idf(docs: f64, df: usize) -> f64 {
    let df = df as f64;
    (1.0 + (docs - df + 0.5) / (df + 0.5)).ln()
}

/// Whether `words` holds `phrase` as adjacent words.
fn holds_phrase(words: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && words.windows(phrase.len()).any(|w| w == phrase)
}

/// Whether `(score, kind, doc)` ranks strictly after `than`: lower score, or the same score and
/// later in document order.
fn ranks_after(score: f64, kind: DocKind, doc: &str, than: &Kept) -> bool {
    score < than.score || (score == than.score && (kind, doc) > (than.kind, than.doc.as_str()))
}

impl Selection {
    /// Starts a search of `query` over what the store found in a scope with `stats`; `admits`
    /// says whether a document may be a hit at all (the `glob` filter); at most `limit` hits.
    pub fn new(
        query: &Query,
        found: Found,
        stats: ScopeStats,
        admits: impl Fn(DocKind, &str) -> bool,
        limit: usize,
    ) -> Selection {
        let words = query.words();
        let prefixes = query.prefixes();
        let word_at = |w: &String| words.iter().position(|x| x == w).unwrap_or(0);
        let compile = |unit: &Unit| match unit {
            Unit::Term(w) => Compiled::Term(word_at(w)),
            Unit::Prefix(p) => Compiled::Prefix(prefixes.iter().position(|x| x == p).unwrap_or(0)),
            Unit::Phrase(ws) => {
                let mut scoring: Vec<usize> = Vec::new();
                for w in ws {
                    let i = word_at(w);
                    if !scoring.contains(&i) {
                        scoring.push(i);
                    }
                }
                Compiled::Phrase(ws.clone(), scoring)
            }
        };
        let groups: Vec<Vec<Compiled>> = query.groups.iter().map(|g| g.iter().map(compile).collect()).collect();
        let excluded: Vec<Compiled> = query.excluded.iter().map(compile).collect();

        let docs = stats.docs.max(1) as f64;
        let avgdl = (stats.words as f64 / docs).max(1.0);
        let mut holdings: BTreeMap<(DocKind, String), Holding> = BTreeMap::new();
        let (word_count, prefix_count) = (found.words.len(), found.prefixes.len());
        fn entry<'h>(
            holdings: &'h mut BTreeMap<(DocKind, String), Holding>,
            p: &Posting,
            (word_count, prefix_count): (usize, usize),
        ) -> &'h mut Holding {
            holdings.entry((p.kind, p.doc.clone())).or_insert_with(|| Holding {
                len: p.len,
                word_tf: vec![0; word_count],
                prefix_words: vec![Vec::new(); prefix_count],
            })
        }
        let counts = (word_count, prefix_count);
        let word_idf: Vec<f64> = found.words.iter().map(|list| idf(docs, list.len())).collect();
        for (i, list) in found.words.iter().enumerate() {
            for p in list.iter().filter(|p| admits(p.kind, &p.doc)) {
                entry(&mut holdings, p, counts).word_tf[i] = p.tf;
            }
        }
        let mut prefix_idf: Vec<f64> = Vec::with_capacity(prefix_count);
        for (i, list) in found.prefixes.iter().enumerate() {
            let mut holders: Vec<(DocKind, &str)> = list.iter().map(|(_, p)| (p.kind, p.doc.as_str())).collect();
            holders.sort_unstable();
            holders.dedup();
            prefix_idf.push(idf(docs, holders.len()));
            for (word, p) in list.iter().filter(|(_, p)| admits(p.kind, &p.doc)) {
                entry(&mut holdings, p, counts).prefix_words[i].push((word.clone(), p.tf));
            }
        }
        let mut selection = Selection {
            words,
            groups,
            excluded,
            word_idf,
            prefix_idf,
            avgdl,
            candidates: Vec::new(),
            at: 0,
            pending: None,
            kept: Vec::new(),
            limit,
            reads: 0,
            read_bytes: 0,
            partial: false,
        };
        let mut candidates: Vec<Candidate> = Vec::new();
        for ((kind, doc), mut holding) in holdings {
            for words in &mut holding.prefix_words {
                words.sort_unstable();
            }
            if let Some((bound, _)) = selection.evaluate(&holding, None, false) {
                let read_words = selection.phrase_decides(&holding);
                candidates.push(Candidate { kind, doc, bound: rounded(bound), holding, read_words });
            }
        }
        // Documents come in document order; a stable sort keeps it among equal bounds.
        candidates.sort_by(|a, b| b.bound.total_cmp(&a.bound));
        selection.candidates = candidates;
        selection
    }

    fn bm25(&self, idf: f64, tf: u32, len: u32) -> f64 {
        let tf = f64::from(tf);
        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * f64::from(len) / self.avgdl))
    }

    /// The unit's score in a document holding `h`, if the postings say it may match.
    fn unit_score(&self, unit: &Compiled, h: &Holding) -> Option<f64> {
        match unit {
            Compiled::Term(i) => (h.word_tf[*i] > 0).then(|| self.bm25(self.word_idf[*i], h.word_tf[*i], h.len)),
            Compiled::Prefix(i) => {
                let tf: u32 = h.prefix_words[*i].iter().map(|(_, tf)| *tf).fold(0, u32::saturating_add);
                (tf > 0).then(|| self.bm25(self.prefix_idf[*i], tf, h.len))
            }
            Compiled::Phrase(_, scoring) => scoring.iter().try_fold(0.0, |sum, &i| {
                (h.word_tf[i] > 0).then(|| sum + self.bm25(self.word_idf[i], h.word_tf[i], h.len))
            }),
        }
    }

    /// Whether the postings leave a phrase that may match in `h` (found or excluded).
    fn phrase_decides(&self, h: &Holding) -> bool {
        self.groups
            .iter()
            .flatten()
            .chain(&self.excluded)
            .any(|u| matches!(u, Compiled::Phrase(..)) && self.unit_score(u, h).is_some())
    }

    /// The score of a document holding `h`, and with `name` the words that matched, or `None`
    /// when it is no hit. Without its `words`, every phrase its postings allow is taken to match
    /// when found and not to when excluded: the best the document can do.
    fn evaluate<'h>(&'h self, h: &'h Holding, words: Option<&[String]>, name: bool) -> Option<(f64, Vec<String>)> {
        let phrase_holds = |unit: &Compiled| match (unit, words) {
            (Compiled::Phrase(phrase, _), Some(words)) => holds_phrase(words, phrase),
            _ => true,
        };
        for unit in &self.excluded {
            let excluded = match (unit, words) {
                (Compiled::Phrase(..), None) => false,
                _ => self.unit_score(unit, h).is_some() && phrase_holds(unit),
            };
            if excluded {
                return None;
            }
        }
        let mut total = 0.0;
        let mut matched: Vec<String> = Vec::new();
        let mut seen: HashSet<&'h str> = HashSet::new();
        let mut add = |w: &'h String| {
            if name && seen.insert(w.as_str()) {
                matched.push(w.clone());
            }
        };
        for group in &self.groups {
            let mut any = false;
            for unit in group {
                let Some(score) = self.unit_score(unit, h) else { continue };
                if !phrase_holds(unit) {
                    continue;
                }
                any = true;
                total += score;
                match unit {
                    Compiled::Term(i) => add(&self.words[*i]),
                    Compiled::Prefix(i) => h.prefix_words[*i].iter().for_each(|(w, _)| add(w)),
                    Compiled::Phrase(phrase, _) => phrase.iter().for_each(&mut add),
                }
            }
            if !any {
                return None;
            }
        }
        Some((total, matched))
    }

    /// The next document whose text the search needs, or `None` when the hits are settled.
    /// Answer with [`Selection::offer`].
    pub fn to_read(&mut self) -> Option<(DocKind, String)> {
        let c = self.candidates.get(self.at)?;
        if self.limit == 0 {
            return None;
        }
        if self.kept.len() == self.limit {
            let worst = self.kept.last()?;
            if ranks_after(c.bound, c.kind, &c.doc, worst) {
                return None;
            }
        }
        if self.reads >= MAX_TEXT_READS || self.read_bytes >= MAX_TEXT_BYTES {
            self.partial = true;
            return None;
        }
        self.reads += 1;
        self.pending = Some(self.at);
        self.at += 1;
        Some((c.kind, c.doc.clone()))
    }

    /// The searchable text of the document [`Selection::to_read`] named: a file's content, a
    /// memory value's text; `None` when it is gone (an expired memory entry not yet reclaimed).
    pub fn offer(&mut self, text: Option<String>) {
        let (Some(at), Some(text)) = (self.pending.take(), text) else { return };
        self.read_bytes = self.read_bytes.saturating_add(text.len());
        let c = &self.candidates[at];
        let evaluated = if c.read_words {
            let words: Vec<String> = tokens(&text).map(|t| t.2).collect();
            self.evaluate(&c.holding, Some(&words), true)
        } else {
            self.evaluate(&c.holding, None, true)
        };
        let Some((score, matched)) = evaluated else { return };
        let score = rounded(score);
        let (kind, doc) = (c.kind, c.doc.clone());
        let at = self.kept.partition_point(|k| ranks_after(score, kind, &doc, k));
        if at < self.limit {
            self.kept.insert(at, Kept { kind, doc, score, matched, text });
            self.kept.truncate(self.limit);
        }
    }

    /// The hits, best first; ties in document order.
    pub fn finish(self) -> SearchAnswer {
        let hits = self
            .kept
            .into_iter()
            .filter_map(|k| {
                let snippet = snippet(&k.text, &k.matched);
                let (path, namespace, key) = match k.kind {
                    DocKind::File => (Some(k.doc), None, None),
                    DocKind::Memory => {
                        let (ns, key) = k.doc.split_once(SEPARATOR)?;
                        (None, Some(ns.to_owned()), Some(key.to_owned()))
                    }
                };
                let kind = match k.kind {
                    DocKind::File => "file",
                    DocKind::Memory => "memory",
                };
                Some(SearchHit { kind, path, namespace, key, score: k.score, matched: k.matched, snippet })
            })
            .collect();
        SearchAnswer { hits, partial: self.partial }
    }
}
