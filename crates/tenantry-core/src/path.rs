//! File paths inside a tenant (API.md §6), validated in this one place after percent-decoding.
//! A [`TenantPath`] is absolute, `/`-separated UTF-8 of at most 1024 bytes with no empty, `.` or
//! `..` segments, no control characters and no backslashes.

use crate::error::{Error, ErrorCode};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const MAX_PATH_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantPath(String);

fn invalid(raw: &str, why: &str) -> Error {
    let shown: String = raw.chars().take(80).flat_map(char::escape_default).collect();
    Error::new(ErrorCode::InvalidPath, format!("invalid path \"{shown}\": {why}"))
}

impl TenantPath {
    /// Parses an already percent-decoded path. A missing leading `/` is added (`a/b` is `/a/b`);
    /// a trailing `/` is refused because it would be an empty segment.
    pub fn parse(raw: &str) -> Result<TenantPath, Error> {
        let s = if raw.starts_with('/') { raw.to_owned() } else { format!("/{raw}") };
        if s.len() > MAX_PATH_BYTES {
            return Err(invalid(raw, "longer than 1024 bytes"));
        }
        if s == "/" {
            return Err(invalid(raw, "a file path needs at least one segment"));
        }
        if let Some(c) = s.chars().find(|c| c.is_control() || *c == '\\') {
            let why = if c == '\\' { "backslashes are not allowed" } else { "control characters are not allowed" };
            return Err(invalid(raw, why));
        }
        for segment in s[1..].split('/') {
            match segment {
                "" => return Err(invalid(raw, "empty segment (`//` or a trailing `/`)")),
                "." | ".." => return Err(invalid(raw, "`.` and `..` segments are not allowed")),
                _ => {}
            }
        }
        Ok(TenantPath(s))
    }

    /// Percent-decodes then parses: the one entry point for paths taken from a URL.
    pub fn parse_encoded(encoded: &str) -> Result<TenantPath, Error> {
        let decoded = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .map_err(|_| invalid(encoded, "not UTF-8 after percent-decoding"))?;
        TenantPath::parse(&decoded)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Segment-boundary containment: `/docs` covers `/docs` and `/docs/x`, never `/docs2`.
    pub fn is_within(&self, prefix: &PathPrefix) -> bool {
        prefix.covers(&self.0)
    }
}

impl TryFrom<String> for TenantPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        TenantPath::parse(&s)
    }
}
impl From<TenantPath> for String {
    fn from(p: TenantPath) -> String {
        p.0
    }
}
impl fmt::Display for TenantPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's path prefix or a listing's prefix: like a path, but `/` (everything) is allowed and a
/// trailing `/` is tolerated and dropped. Stored without the trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathPrefix(String);

impl PathPrefix {
    pub fn root() -> PathPrefix {
        PathPrefix("/".to_owned())
    }

    pub fn parse(raw: &str) -> Result<PathPrefix, Error> {
        let trimmed = raw.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(PathPrefix::root());
        }
        Ok(PathPrefix(TenantPath::parse(trimmed)?.0))
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix as a directory, with its trailing slash: what listings match and show.
    pub fn as_dir(&self) -> String {
        if self.is_root() {
            "/".to_owned()
        } else {
            format!("{}/", self.0)
        }
    }

    pub fn covers(&self, path: &str) -> bool {
        self.is_root()
            || path == self.0
            || (path.starts_with(&self.0) && path.as_bytes().get(self.0.len()) == Some(&b'/'))
    }

    /// Whether `self` lies inside `outer` (a key may only hand out prefixes inside its own).
    pub fn is_within(&self, outer: &PathPrefix) -> bool {
        outer.covers(&self.0)
    }

    /// Whether any path under `self` can be under `other`: the two nest one way or the other.
    pub fn overlaps(&self, other: &PathPrefix) -> bool {
        self.is_within(other) || other.is_within(self)
    }
}

impl TryFrom<String> for PathPrefix {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        PathPrefix::parse(&s)
    }
}
impl From<PathPrefix> for String {
    fn from(p: PathPrefix) -> String {
        p.0
    }
}
impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_paths_are_kept_as_given() {
        for p in ["/a", "/docs/readme.md", "/ünïcødé/файл", "/a b/c", "/.hidden", "/a..b", "/..."] {
            assert_eq!(TenantPath::parse(p).unwrap().as_str(), p);
        }
        assert_eq!(TenantPath::parse("a/b").unwrap().as_str(), "/a/b");
    }

    #[test]
    fn each_forbidden_form_is_an_invalid_path() {
        let long = format!("/{}", "a".repeat(1024));
        for p in ["/", "", "/a//b", "/a/", "/./a", "/a/..", "/../etc", "/a\\b", "/a\0b", "/a\nb", "/\u{7f}", &long] {
            assert_eq!(TenantPath::parse(p).unwrap_err().code, ErrorCode::InvalidPath, "{p:?}");
        }
    }

    #[test]
    fn checks_happen_after_percent_decoding() {
        assert_eq!(TenantPath::parse_encoded("/a%20b").unwrap().as_str(), "/a b");
        for p in ["/a/%2e%2e/b", "/%2E/x", "/a%2F%2Fb", "/a%5Cb", "/a%00", "/%ff", "/a%0a"] {
            assert_eq!(TenantPath::parse_encoded(p).unwrap_err().code, ErrorCode::InvalidPath, "{p}");
        }
    }

    #[test]
    fn exactly_1024_bytes_is_allowed() {
        let p = format!("/{}", "a".repeat(1023));
        assert!(TenantPath::parse(&p).is_ok());
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let docs = PathPrefix::parse("/docs/").unwrap();
        assert_eq!(docs.as_str(), "/docs");
        assert!(docs.covers("/docs"));
        assert!(docs.covers("/docs/a/b"));
        assert!(!docs.covers("/docs2"));
        assert!(!docs.covers("/doc"));
        assert!(PathPrefix::root().covers("/anything"));
        assert!(PathPrefix::parse("/docs/x").unwrap().is_within(&docs));
        assert!(!PathPrefix::parse("/docsx").unwrap().is_within(&docs));
        assert!(PathPrefix::root().overlaps(&docs));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepted_paths_hold_the_invariants(s in "\\PC*|[/a.\\\\%]{0,12}") {
            if let Ok(p) = TenantPath::parse(&s) {
                let p = p.as_str();
                prop_assert!(p.starts_with('/') && p.len() <= MAX_PATH_BYTES);
                prop_assert!(p[1..].split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
                prop_assert!(!p.chars().any(|c| c.is_control() || c == '\\'));
                // Parsing is idempotent.
                let again = TenantPath::parse(p).unwrap();
                prop_assert_eq!(again.as_str(), p);
            }
        }

        #[test]
        fn encoded_dot_segments_never_survive(prefix in "[a-z]{1,4}", enc in prop::sample::select(vec!["%2e%2e", "%2E%2E", ".%2e", "%2e."])) {
            let raw = format!("/{prefix}/{enc}/x");
            prop_assert!(TenantPath::parse_encoded(&raw).is_err());
        }

        #[test]
        fn a_prefix_covers_exactly_itself_and_its_descendants(a in "[a-c]{1,3}", b in "[a-c]{1,3}") {
            let prefix = PathPrefix::parse(&format!("/{a}")).unwrap();
            let path = format!("/{b}");
            prop_assert_eq!(prefix.covers(&path), a == b);
            let child = format!("/{b}/x");
            prop_assert_eq!(prefix.covers(&child), a == b);
        }
    }
}
