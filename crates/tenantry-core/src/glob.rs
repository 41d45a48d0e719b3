//! Path globs of webhook subscriptions (`path_glob`, API.md §7): `*` matches within one segment,
//! `**` any number of segments (and `/**/` also none), `?` one character other than `/`.
//!
//! A glob is matched by simulating its automaton with one bit per position, 64 positions to a
//! machine word: the cost is `O(path length × glob length / 64)` whatever the pattern, so no
//! glob can make a match backtrack (a recursive matcher took exponential time on
//! `/**a**a**a**a**ab`, inside the write transaction every tenant shares). [`parse`] also bounds
//! a glob's wildcards, so a subscription stays cheap to check on every write.

use crate::error::{Error, Result};

/// Longest accepted glob, in bytes (as long as a path).
pub const MAX_GLOB_BYTES: usize = crate::path::MAX_PATH_BYTES;
/// Most `*` or `**` wildcards one glob may hold.
pub const MAX_GLOB_STARS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` not followed by `/`.
    Stars,
    /// `**/`, which also matches nothing: entered, it may be skipped whole...
    DirsEntry,
    /// ...or matches any characters ending with a `/`.
    Dirs,
}

fn tokens(glob: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(glob.len());
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                    out.extend([Token::DirsEntry, Token::Dirs]);
                } else {
                    out.push(Token::Stars);
                }
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            c => out.push(Token::Literal(c)),
        }
    }
    out
}

/// Validates a `path_glob`: absolute, at most [`MAX_GLOB_BYTES`], no control characters, at most
/// [`MAX_GLOB_STARS`] wildcards and no run of three stars.
pub fn parse(raw: &str) -> Result<String> {
    parse_named(raw, "path_glob")
}

/// [`parse`], naming the parameter `name` in its errors.
pub fn parse_named(raw: &str, name: &str) -> Result<String> {
    if !raw.starts_with('/') || raw.len() > MAX_GLOB_BYTES || raw.chars().any(char::is_control) {
        return Err(Error::invalid_request(format!(
            "`{name}` must be an absolute pattern such as /uploads/*.csv (at most 1024 bytes)"
        )));
    }
    if raw.contains("***") {
        return Err(Error::invalid_request(format!(
            "`{name}` may not hold `***`: use `**` for any number of segments"
        )));
    }
    let stars = tokens(raw).iter().filter(|t| matches!(t, Token::Star | Token::Stars | Token::DirsEntry)).count();
    if stars > MAX_GLOB_STARS {
        return Err(Error::invalid_request(format!(
            "`{name}` may hold at most {MAX_GLOB_STARS} `*` or `**` wildcards; it has {stars}"
        )));
    }
    Ok(raw.to_owned())
}

/// A set of automaton positions, one bit each.
#[derive(Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    /// `(self & mask) << by` (bits shifted past the end are dropped), or-ed into `into`.
    fn shift_masked_into(&self, mask: &Bits, by: u32, into: &mut Bits) {
        let mut carry = 0u64;
        for (w, (s, m)) in self.0.iter().zip(&mask.0).enumerate() {
            let v = s & m;
            into.0[w] |= (v << by) | carry;
            carry = if by == 0 { 0 } else { v >> (64 - by) };
        }
    }
}

/// A glob compiled to its automaton: position `i` is "tokens before `i` matched"; the last
/// position accepts.
struct Automaton {
    positions: usize,
    /// Positions whose token is a literal, by character.
    literal: Vec<(char, Bits)>,
    /// Positions whose token is `?`.
    one: Bits,
    /// Positions whose token is `*` (loops on characters other than `/`).
    star: Bits,
    /// Positions whose token is `**` (loops on every character).
    stars: Bits,
    /// Positions left without a character for the next: `*`, `**`, and a `**/` entered.
    skip_one: Bits,
    /// Positions left without a character for the one after next: a `**/` entered, skipped.
    skip_two: Bits,
}

impl Automaton {
    fn new(glob: &str) -> Automaton {
        let tokens = tokens(glob);
        let positions = tokens.len() + 1;
        let empty = Bits::new(positions);
        let mut a = Automaton {
            positions,
            literal: Vec::new(),
            one: empty.clone(),
            star: empty.clone(),
            stars: empty.clone(),
            skip_one: empty.clone(),
            skip_two: empty.clone(),
        };
        for (i, t) in tokens.iter().enumerate() {
            match *t {
                Token::Literal(c) => a.add_literal(c, i, &empty),
                Token::One => a.one.set(i),
                Token::Star => {
                    a.star.set(i);
                    a.skip_one.set(i);
                }
                Token::Stars => {
                    a.stars.set(i);
                    a.skip_one.set(i);
                }
                Token::DirsEntry => {
                    a.skip_one.set(i);
                    a.skip_two.set(i);
                }
                // Loops on every character, and leaves on a `/`.
                Token::Dirs => {
                    a.stars.set(i);
                    a.add_literal('/', i, &empty);
                }
            }
        }
        a
    }

    /// Position `i` advances on character `c`.
    fn add_literal(&mut self, c: char, i: usize, empty: &Bits) {
        match self.literal.iter_mut().find(|(l, _)| *l == c) {
            Some((_, bits)) => bits.set(i),
            None => {
                let mut bits = empty.clone();
                bits.set(i);
                self.literal.push((c, bits));
            }
        }
    }

    /// Adds every position reachable without a character. Skips only go forward, so this ends
    /// after at most one round per wildcard in a row.
    fn close(&self, s: &mut Bits) {
        loop {
            let mut next = s.clone();
            s.shift_masked_into(&self.skip_one, 1, &mut next);
            s.shift_masked_into(&self.skip_two, 2, &mut next);
            if next == *s {
                return;
            }
            *s = next;
        }
    }

    fn matches(&self, path: &str) -> bool {
        let mut s = Bits::new(self.positions);
        s.set(0);
        self.close(&mut s);
        let none = Bits::new(self.positions);
        for c in path.chars() {
            let mut next = Bits::new(self.positions);
            if let Some((_, bits)) = self.literal.iter().find(|(l, _)| *l == c) {
                s.shift_masked_into(bits, 1, &mut next);
            }
            s.shift_masked_into(&self.stars, 0, &mut next);
            if c != '/' {
                s.shift_masked_into(&self.one, 1, &mut next);
                s.shift_masked_into(&self.star, 0, &mut next);
            }
            if next == none {
                return false;
            }
            self.close(&mut next);
            s = next;
        }
        s.get(self.positions - 1)
    }
}

/// Whether `path` matches `glob` (see the module docs for the syntax).
pub fn matches(glob: &str, path: &str) -> bool {
    Automaton::new(glob).matches(path)
}

/// A glob compiled once, to test many paths (a search's `glob` filter).
pub struct Glob(Automaton);

impl Glob {
    /// Compiles a glob [`parse`] accepted.
    pub fn new(glob: &str) -> Glob {
        Glob(Automaton::new(glob))
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.matches(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, as a backtracking matcher: exponential on some globs, fine on small ones.
    fn reference(glob: &str, path: &str) -> bool {
        fn go(g: &[char], p: &[char]) -> bool {
            match g {
                [] => p.is_empty(),
                ['*', '*', rest @ ..] => {
                    (0..=p.len()).any(|i| go(rest, &p[i..])) || (rest.first() == Some(&'/') && go(&rest[1..], p))
                }
                ['*', rest @ ..] => (0..=p.len()).take_while(|&i| i == 0 || p[i - 1] != '/').any(|i| go(rest, &p[i..])),
                ['?', rest @ ..] => p.first().is_some_and(|&c| c != '/') && go(rest, &p[1..]),
                [c, rest @ ..] => p.first() == Some(c) && go(rest, &p[1..]),
            }
        }
        go(&glob.chars().collect::<Vec<_>>(), &path.chars().collect::<Vec<_>>())
    }

    #[test]
    fn globs_match_within_and_across_segments() {
        let cases = [
            ("/uploads/*.csv", "/uploads/a.csv", true),
            ("/uploads/*.csv", "/uploads/sub/a.csv", false),
            ("/uploads/*.csv", "/uploads/a.txt", false),
            ("/uploads/**", "/uploads/sub/a.csv", true),
            ("/uploads/**/*.csv", "/uploads/a.csv", true),
            ("/uploads/**/*.csv", "/uploads/x/y/a.csv", true),
            ("/a?c", "/abc", true),
            ("/a?c", "/a/c", false),
            ("/exact", "/exact", true),
            ("/exact", "/exact2", false),
            ("/**", "/", true),
            ("/*", "/", true),
            ("/é*", "/éa", true),
        ];
        for (g, p, want) in cases {
            assert_eq!(matches(g, p), want, "{g} vs {p}");
        }
    }

    #[test]
    fn a_glob_made_to_backtrack_is_matched_at_once() {
        // Took the recursive matcher longer than the age of the universe on a 1024-byte path.
        let glob = "/**a**a**a**a**a**a**a**a**a**a**a**a**a**a**a**ab";
        assert!(parse(glob).is_ok());
        let path = format!("/{}", "a".repeat(1023));
        let started = std::time::Instant::now();
        assert!(!matches(glob, &path));
        assert!(matches(glob, &format!("{}b", &path[..1023])));
        // Not a timing assertion on the outcome: a guard so a regression ends instead of hanging.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn parse_bounds_what_a_glob_may_hold() {
        assert!(parse("relative/*").is_err());
        assert!(parse("/a/***").is_err());
        assert!(parse(&format!("/{}", "*a".repeat(MAX_GLOB_STARS))).is_ok());
        let e = parse(&format!("/{}", "*a".repeat(MAX_GLOB_STARS + 1))).unwrap_err();
        assert_eq!(e.message, "`path_glob` may hold at most 16 `*` or `**` wildcards; it has 17");
        assert!(parse(&format!("/{}", "a".repeat(MAX_GLOB_BYTES))).is_err());
        assert!(parse("/a\u{7}").is_err());
    }

    proptest! {
        #[test]
        fn the_automaton_agrees_with_the_definition(
            glob in "/[ab/*?]{0,12}",
            path in "/[ab/]{0,12}",
        ) {
            prop_assert_eq!(matches(&glob, &path), reference(&glob, &path), "{} vs {}", glob, path);
        }

        #[test]
        fn long_globs_agree_across_machine_words(
            glob in "/[ab]{60,70}[*?]{1,2}[ab/]{0,8}",
            path in "/[ab]{60,75}[ab/]{0,8}",
        ) {
            prop_assert_eq!(matches(&glob, &path), reference(&glob, &path), "{} vs {}", glob, path);
        }
    }
}
