//! Tenant slugs: DNS labels (API.md §4), so a slug can always be a subdomain.

use crate::error::{Error, ErrorCode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Words a slug may not be, because they collide with routes or hostnames we use.
pub const RESERVED_SLUGS: &[&str] = &["admin", "api", "www", "t", "v1"];

/// The slug of the tenant that always exists and that the operator key acts on by default.
pub const DEFAULT_SLUG: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    /// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$` and not reserved.
    pub fn parse(s: &str) -> Result<Slug, Error> {
        let bytes = s.as_bytes();
        let valid_shape = !bytes.is_empty()
            && bytes.len() <= 63
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
        Ok(Slug(s.to_owned()))
    }

    pub fn default_tenant() -> Slug {
        Slug(DEFAULT_SLUG.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
        s.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
