//! The query language of `q` (docs/DATAPLANE.md, "Search"): words that must all match, `"quoted
//! phrases"`, `prefix*` terms, `OR` between two of those, and `-` before one to exclude it.
//!
//! A word written with punctuation inside (`rust-2024`, `bob@example.com`) is a phrase of its
//! words, as the tokenizer splits the indexed text the same way. Lowercase `or` is a word; only
//! `OR` joins.

use super::{tokens, MAX_QUERY_TERMS};
use crate::error::{Error, Result};

/// The shortest prefix accepted before `*`, in characters: a one-letter prefix reads a large
/// part of the index for nothing anyone means.
pub const MIN_PREFIX_CHARS: usize = 2;
/// The longest `q`, in bytes: far above any query a person writes, and a bound on the parse.
pub const MAX_QUERY_BYTES: usize = 4096;
/// At most this many words in all (a word repeated in a phrase counts each time): a bound on
/// phrase checks.
pub const MAX_QUERY_WORDS: usize = 64;

/// One thing a document can match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A word.
    Term(String),
    /// Any word starting with this (`deploy*`).
    Prefix(String),
    /// Two or more words, adjacent and in this order.
    Phrase(Vec<String>),
}

impl Unit {
    fn words(&self) -> &[String] {
        match self {
            Unit::Term(w) | Unit::Prefix(w) => std::slice::from_ref(w),
            Unit::Phrase(ws) => ws,
        }
    }
}

/// A parsed `q`: a document is a hit when every group has a unit it matches and it matches no
/// excluded unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Every group must match; a group matches when one of its units (joined by `OR`) does.
    pub groups: Vec<Vec<Unit>>,
    /// A document matching one of these is never a hit.
    pub excluded: Vec<Unit>,
}

/// A lexical item of `q`, with the character (1-based) it starts at.
enum Item {
    Unit { unit: Unit, negated: bool, at: usize },
    Or { at: usize },
}

fn bad(message: String) -> Error {
    Error::invalid_request(format!("`q`: {message}"))
}

/// The items of `q`: quoted phrases, bare words (several words joined by punctuation make a
/// phrase), `OR`, each possibly negated by a leading `-`. Items without letters or digits are
/// skipped, unless negated.
fn items(q: &str) -> Result<Vec<Item>> {
    let chars: Vec<(usize, char)> = q.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1.is_whitespace() {
            i += 1;
            continue;
        }
        let at = i + 1;
        let negated = chars[i].1 == '-';
        if negated {
            i += 1;
            if i == chars.len() || chars[i].1.is_whitespace() {
                return Err(bad(format!("the `-` at character {at} must be followed by a word or a quoted phrase")));
            }
        }
        let byte = |k: usize| chars.get(k).map_or(q.len(), |c| c.0);
        if chars[i].1 == '"' {
            let open = i;
            let Some(close) = (open + 1..chars.len()).find(|&k| chars[k].1 == '"') else {
                return Err(bad(format!("the quote at character {} is not closed", open + 1)));
            };
            let words: Vec<String> = tokens(&q[byte(open + 1)..byte(close)]).map(|t| t.2).collect();
            i = close + 1;
            let unit = match words.len() {
                0 => return Err(bad(format!("the phrase at character {} has no words", open + 1))),
                1 => Unit::Term(words.into_iter().next().unwrap_or_default()),
                _ => Unit::Phrase(words),
            };
            out.push(Item::Unit { unit, negated, at });
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].1.is_whitespace() && chars[i].1 != '"' {
            i += 1;
        }
        let raw = &q[byte(start)..byte(i)];
        if raw == "OR" && !negated {
            out.push(Item::Or { at });
            continue;
        }
        let words: Vec<(usize, usize, String)> = tokens(raw).collect();
        let starred = raw.ends_with('*') && words.last().is_some_and(|w| w.1 + 1 == raw.len());
        let unit = match words.len() {
            0 if negated => {
                return Err(bad(format!("the `-` at character {at} must be followed by a word or a quoted phrase")))
            }
            0 => continue,
            1 if starred => {
                let prefix = words.into_iter().next().map(|w| w.2).unwrap_or_default();
                if prefix.chars().count() < MIN_PREFIX_CHARS {
                    return Err(bad(format!(
                        "the prefix `{raw}` at character {at} needs at least {MIN_PREFIX_CHARS} letters or digits before `*`"
                    )));
                }
                Unit::Prefix(prefix)
            }
            _ if starred => {
                return Err(bad(format!(
                    "`{raw}` at character {at}: a prefix is one word followed by `*` (no punctuation inside)"
                )))
            }
            1 => Unit::Term(words.into_iter().next().map(|w| w.2).unwrap_or_default()),
            _ => Unit::Phrase(words.into_iter().map(|w| w.2).collect()),
        };
        out.push(Item::Unit { unit, negated, at });
    }
    Ok(out)
}

impl Query {
    /// Parses `q`; a malformed query is `invalid_request` naming the character where it fails.
    pub fn parse(q: &str) -> Result<Query> {
        if q.len() > MAX_QUERY_BYTES {
            return Err(Error::invalid_request(format!("`q` is longer than {MAX_QUERY_BYTES} bytes")));
        }
        let mut groups: Vec<Vec<Unit>> = Vec::new();
        let mut excluded: Vec<Unit> = Vec::new();
        // The `OR` waiting for its right-hand side, and whether the item before it may take one.
        let mut open_or: Option<usize> = None;
        let mut after_positive = false;
        let items = items(q)?;
        let words: usize = items
            .iter()
            .map(|i| match i {
                Item::Unit { unit, .. } => unit.words().len(),
                Item::Or { .. } => 0,
            })
            .sum();
        if words > MAX_QUERY_WORDS {
            return Err(Error::invalid_request(format!("`q` has more than {MAX_QUERY_WORDS} words")));
        }
        for item in items {
            match item {
                Item::Or { at } => {
                    if let Some(first) = open_or {
                        return Err(bad(format!("the `OR` at character {at} follows the `OR` at character {first}")));
                    }
                    if !after_positive {
                        return Err(bad(format!(
                            "the `OR` at character {at} must come after a word or phrase to find (not first, not after an exclusion)"
                        )));
                    }
                    open_or = Some(at);
                }
                Item::Unit { unit, negated: true, at } => {
                    if let Some(or) = open_or {
                        return Err(bad(format!(
                            "the `OR` at character {or} must be followed by a word or phrase to find, not the exclusion at character {at}"
                        )));
                    }
                    if !excluded.contains(&unit) {
                        excluded.push(unit);
                    }
                    after_positive = false;
                }
                Item::Unit { unit, negated: false, .. } => {
                    match (open_or.take(), groups.last_mut()) {
                        (Some(_), Some(group)) => {
                            if !group.contains(&unit) {
                                group.push(unit);
                            }
                        }
                        _ => groups.push(vec![unit]),
                    }
                    after_positive = true;
                }
            }
        }
        if let Some(at) = open_or {
            return Err(bad(format!("the `OR` at character {at} must be followed by a word or phrase to find")));
        }
        // A group said twice is one condition (`rust rust` is `rust`).
        let mut distinct: Vec<Vec<Unit>> = Vec::with_capacity(groups.len());
        for group in groups {
            if !distinct.contains(&group) {
                distinct.push(group);
            }
        }
        let query = Query { groups: distinct, excluded };
        if query.groups.is_empty() {
            return Err(Error::invalid_request(if query.excluded.is_empty() {
                "`q` has no words to search for (letters or digits)"
            } else {
                "`q` only excludes: give at least one word or phrase to find"
            }));
        }
        let mut words: Vec<&str> = Vec::new();
        for unit in query.units() {
            for w in unit.words() {
                if !words.contains(&w.as_str()) {
                    words.push(w);
                }
            }
        }
        if words.len() > MAX_QUERY_TERMS {
            return Err(Error::invalid_request(format!("`q` has more than {MAX_QUERY_TERMS} distinct words")));
        }
        Ok(query)
    }

    /// A query of plain words, every one required.
    pub fn all_of<S: AsRef<str>>(words: &[S]) -> Query {
        Query {
            groups: words.iter().map(|w| vec![Unit::Term(w.as_ref().to_lowercase())]).collect(),
            excluded: Vec::new(),
        }
    }

    /// Every unit, required ones first.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.groups.iter().flatten().chain(&self.excluded)
    }

    /// The distinct words whose postings a search needs (words and the words of phrases, found
    /// or excluded), in the order first met: what [`super::Found::words`] is aligned with.
    pub fn words(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for unit in self.units() {
            if let Unit::Term(_) | Unit::Phrase(_) = unit {
                for w in unit.words() {
                    if !out.contains(w) {
                        out.push(w.clone());
                    }
                }
            }
        }
        out
    }

    /// The distinct prefixes, in the order first met: what [`super::Found::prefixes`] is aligned
    /// with.
    pub fn prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for unit in self.units() {
            if let Unit::Prefix(p) = unit {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        out
    }
}

/// The smallest string above every word starting with `prefix`, for a key range
/// `[prefix, upper)`: no word holds U+10FFFF (it is not a letter or digit), and strings compare
/// by code point (SQLite's and PostgreSQL's "C" order of UTF-8 bytes).
pub fn prefix_upper(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(w: &str) -> Unit {
        Unit::Term(w.into())
    }

    fn err(q: &str) -> String {
        Query::parse(q).unwrap_err().to_string()
    }

    #[test]
    fn words_phrases_prefixes_or_and_exclusions_parse() {
        let q = Query::parse(r#"Rust "release  Notes" deploy* tokio OR async -draft -"old plan""#).unwrap();
        assert_eq!(
            q.groups,
            vec![
                vec![t("rust")],
                vec![Unit::Phrase(vec!["release".into(), "notes".into()])],
                vec![Unit::Prefix("deploy".into())],
                vec![t("tokio"), t("async")],
            ]
        );
        assert_eq!(q.excluded, vec![t("draft"), Unit::Phrase(vec!["old".into(), "plan".into()])]);
        assert_eq!(q.words(), ["rust", "release", "notes", "tokio", "async", "draft", "old", "plan"]);
        assert_eq!(q.prefixes(), ["deploy"]);
    }

    #[test]
    fn punctuation_inside_a_word_makes_a_phrase_and_repeats_count_once() {
        let q = Query::parse("rust-2024 rust rust or \"x\"").unwrap();
        assert_eq!(
            q.groups,
            vec![vec![Unit::Phrase(vec!["rust".into(), "2024".into()])], vec![t("rust")], vec![t("or")], vec![t("x")]]
        );
        assert_eq!(Query::parse("a OR b OR a").unwrap().groups, vec![vec![t("a"), t("b")]]);
        // Punctuation alone is no word; a star that follows no word is punctuation.
        assert_eq!(Query::parse("& alpha — ** beta**").unwrap().groups, vec![vec![t("alpha")], vec![t("beta")]]);
    }

    #[test]
    fn bad_syntax_says_where() {
        assert!(
            err(r#"alpha "beta gamma"#).contains("quote at character 7 is not closed"),
            "{}",
            err(r#"alpha "beta"#)
        );
        assert!(err("OR alpha").contains("`OR` at character 1 must come after"));
        assert!(err("alpha OR").contains("`OR` at character 7 must be followed"));
        assert!(err("alpha OR OR beta").contains("`OR` at character 10 follows the `OR` at character 7"));
        assert!(err("alpha OR -beta").contains("not the exclusion at character 10"));
        assert!(err("-alpha OR beta").contains("`OR` at character 8 must come after"));
        assert!(err("alpha - beta").contains("`-` at character 7 must be followed"));
        assert!(err("alpha -").contains("`-` at character 7"));
        assert!(err(" -- ").contains("`-` at character 2"));
        assert!(err("d*").contains("prefix `d*` at character 1 needs at least 2"));
        assert!(err("x rust-dep*").contains("`rust-dep*` at character 3: a prefix is one word"));
        assert!(err("alpha \"--\"").contains("phrase at character 7 has no words"));
        assert!(err("-alpha").contains("only excludes"));
        assert!(err("  ").contains("no words"));
        let many: String = (0..17).map(|i| format!("w{i} ")).collect();
        assert!(err(&many).contains("more than 16 distinct words"));
        assert!(err(&format!("\"{}\"", "a ".repeat(65))).contains("more than 64 words"));
        assert!(err(&"a ".repeat(2049)).contains("longer than 4096 bytes"));
        let sixteen: String = (0..16).map(|i| format!("w{i} w{i} ")).collect();
        assert!(Query::parse(&sixteen).is_ok());
        // Positions count characters, not bytes.
        assert!(err("éé OR").contains("character 4"));
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_words_starting_with_it() {
        let upper = prefix_upper("dep");
        for word in ["dep", "deploy", "depą", "dep9", "dep\u{10FFFD}"] {
            assert!(word >= "dep" && word < upper.as_str(), "{word}");
        }
        for word in ["deo", "deq", "de", "e"] {
            assert!(!(word >= "dep" && word < upper.as_str()), "{word}");
        }
    }
}
