//! Tenant slugs: DNS labels (API.md §4), so a slug can always be a subdomain.

use crate::error::{Error, ErrorCode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Words a slug may not be, because they collide with routes or hostnames we use.
pub const RESERVED_SLUGS: &[&str] = &["admin", "api", "www", "t", "v1"];

/// The slug of the tenant that always exists and that the operator key acts on by default.
pub const DEFAULT_SLUG: &str = "default";

/// The longest slug (a DNS label).
pub const MAX_SLUG_LEN: usize = 63;

/// A valid slug, held inline (like the ids): a request clones its tenant's slug into the
/// storage scope, and a `String` made that an allocation and a read of cold heap memory per
/// request with 10,000 tenants. Compared, hashed and ordered as its text.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug {
    len: u8,
    bytes: [u8; MAX_SLUG_LEN],
}

impl Slug {
    /// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$` and not reserved.
    pub fn parse(s: &str) -> Result<Slug, Error> {
        let bytes = s.as_bytes();
        let valid_shape = !bytes.is_empty()
            && bytes.len() <= MAX_SLUG_LEN
            && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-';
        if !valid_shape {
            return Err(Error::new(
                ErrorCode::InvalidSlug,
                format!("invalid slug {s:?}: use 1 to 63 lowercase letters, digits and inner hyphens (a DNS label)"),
            ));
        }
        if RESERVED_SLUGS.contains(&s) {
            return Err(Error::new(ErrorCode::InvalidSlug, format!("slug '{s}' is reserved")));
        }
        Ok(Slug::inline(bytes))
    }

    /// `bytes` already checked: at most [`MAX_SLUG_LEN`] ASCII bytes.
    fn inline(bytes: &[u8]) -> Slug {
        let mut slug = Slug { len: bytes.len() as u8, bytes: [0; MAX_SLUG_LEN] };
        slug.bytes[..bytes.len()].copy_from_slice(bytes);
        slug
    }

    pub fn default_tenant() -> Slug {
        Slug::inline(DEFAULT_SLUG.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        // ASCII by construction (`parse` is the only way in).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl PartialEq for Slug {
    fn eq(&self, other: &Slug) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Slug {}

impl std::hash::Hash for Slug {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Slug {
    fn partial_cmp(&self, other: &Slug) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Slug {
    fn cmp(&self, other: &Slug) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Slug").field(&self.as_str()).finish()
    }
}

impl TryFrom<String> for Slug {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Slug::parse(&s)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.as_str().to_owned()
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dns_labels_are_accepted() {
        for s in ["a", "acme", "acme-corp", "0", "a1-b2", &"x".repeat(63)] {
            assert_eq!(Slug::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn non_labels_and_reserved_words_are_refused_as_invalid_slug() {
        for s in ["", "-a", "a-", "Acme", "a_b", "a.b", "é", &"x".repeat(64), "admin", "api", "www", "t", "v1"] {
            assert_eq!(Slug::parse(s).unwrap_err().code, ErrorCode::InvalidSlug, "{s:?}");
        }
    }

    #[test]
    fn an_inline_slug_compares_orders_hashes_and_serializes_as_its_text() {
        let (a, ab, b) = (Slug::parse("a").unwrap(), Slug::parse("ab").unwrap(), Slug::parse("b").unwrap());
        // Text order, not length order: "ab" sorts before "b".
        let mut v = [b.clone(), ab.clone(), a.clone()];
        v.sort();
        assert_eq!(v.iter().map(Slug::as_str).collect::<Vec<_>>(), ["a", "ab", "b"]);
        assert_eq!(Slug::parse("ab").unwrap(), ab);
        assert_ne!(a, ab);
        let set: std::collections::HashSet<Slug> = [a.clone(), Slug::parse("a").unwrap()].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_eq!(serde_json::to_string(&ab).unwrap(), "\"ab\"");
        assert_eq!(serde_json::from_str::<Slug>("\"ab\"").unwrap(), ab);
        assert!(serde_json::from_str::<Slug>("\"Not A Slug\"").is_err());
        assert_eq!(format!("{ab} {ab:?}"), "ab Slug(\"ab\")");
        assert_eq!(Slug::default_tenant().as_str(), DEFAULT_SLUG);
        let long = "x".repeat(MAX_SLUG_LEN);
        assert_eq!(Slug::parse(&long).unwrap().as_str(), long);
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_regex(s in "\\PC{0,70}") {
            let by_regex = {
                let b = s.as_bytes();
                !b.is_empty() && b.len() <= 63
                    && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                    && !s.starts_with('-') && !s.ends_with('-')
                    && !RESERVED_SLUGS.contains(&s.as_str())
            };
            prop_assert_eq!(Slug::parse(&s).is_ok(), by_regex);
        }

        #[test]
        fn generated_labels_always_parse(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assume!(!RESERVED_SLUGS.contains(&s.as_str()));
            prop_assert!(Slug::parse(&s).is_ok());
        }
    }
}
