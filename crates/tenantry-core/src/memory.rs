//! Agent memory (API.md §7): JSON values addressed by a namespace (free text such as
//! `agent:researcher`) and a key, each validated here once, with an optional time to live.

use crate::error::{Error, ErrorCode, Result};
use crate::time::Timestamp;
use serde::Serialize;

/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 200;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value accepted by default, in bytes of compact JSON (413 `too_large` beyond).
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1 << 20;
/// Longest time to live: ten years.
pub const MAX_TTL_SECONDS: u64 = 10 * 365 * 86_400;

/// Separates namespace and key where the two travel as one string (search documents, cursors).
/// A control character, so it can never appear in either.
pub const SEPARATOR: char = '\u{1f}';

fn check_name(what: &str, raw: &str, max: usize, allow_slash: bool) -> Result<String> {
    if raw.is_empty() {
        return Err(Error::invalid_request(format!("the memory {what} is empty")));
    }
    if raw.len() > max {
        return Err(Error::invalid_request(format!("the memory {what} is longer than {max} bytes")));
    }
    if raw.chars().any(char::is_control) {
        return Err(Error::invalid_request(format!("the memory {what} contains control characters")));
    }
    if !allow_slash && raw.contains('/') {
        return Err(Error::invalid_request(format!("the memory {what} may not contain `/`")));
    }
    Ok(raw.to_owned())
}

/// A validated namespace: 1 to 200 bytes of UTF-8, no control characters, no `/` (it is one URL
/// segment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    pub fn parse(raw: &str) -> Result<Namespace> {
        check_name("namespace", raw, MAX_NAMESPACE_BYTES, false).map(Namespace)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated key: 1 to 512 bytes of UTF-8 without control characters (`/` allowed, so keys
/// can be hierarchical like `notes/2026/11`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemoryKey(String);

impl MemoryKey {
    pub fn parse(raw: &str) -> Result<MemoryKey> {
        check_name("key", raw, MAX_KEY_BYTES, true).map(MemoryKey)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored memory entry, as `GET /v1/memory/{namespace}/{key}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"namespace": "agent:researcher", "key": "topic", "value": {"focus": "solar"}, "size": 17, "created_at": "2026-12-06T14:00:00.000Z", "updated_at": "2026-12-06T14:00:00.000Z"})))]
pub struct MemoryEntry {
    pub namespace: String,
    pub key: String,
    /// Left out of listings asked with `values=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Bytes of the value as compact JSON (what counts toward `storage_bytes`).
    pub size: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// Whether an entry expiring at `expires_at` is still there at `now`: it is gone from the
/// instant it expires. Backends filter by the same rule in their queries
/// (`expires_at IS NULL OR expires_at > now`).
pub fn is_live(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|e| e > now)
}

/// Parses the `ttl_seconds` query value into an expiry time.
pub fn expiry(ttl_seconds: Option<u64>, now: Timestamp) -> Result<Option<Timestamp>> {
    match ttl_seconds {
        None => Ok(None),
        Some(0) => Err(Error::invalid_request("`ttl_seconds` must be at least 1")),
        Some(s) if s > MAX_TTL_SECONDS => {
            Err(Error::invalid_request(format!("`ttl_seconds` must be at most {MAX_TTL_SECONDS} (ten years)")))
        }
        Some(s) => Ok(Some(now.plus_seconds(s as i64))),
    }
}

/// Serializes a value compactly and checks it against the maximum size.
pub fn encode_value(value: &serde_json::Value, max_bytes: u64) -> Result<String> {
    let text = serde_json::to_string(value).map_err(|e| Error::internal(format!("value does not serialize: {e}")))?;
    if text.len() as u64 > max_bytes {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("the value is {} bytes as JSON; the maximum is {max_bytes}", text.len()),
        ));
    }
    Ok(text)
}

/// The text of a value that search indexes: its strings (object keys too) and numbers.
pub fn searchable_text(value: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Number(n) => {
                out.push_str(&n.to_string());
                out.push('\n');
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push_str(k);
                    out.push('\n');
                    walk(v, out);
                }
            }
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }
    let mut out = String::new();
    walk(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_are_free_text_within_one_segment() {
        assert_eq!(Namespace::parse("agent:researcher").unwrap().as_str(), "agent:researcher");
        assert_eq!(Namespace::parse("équipe rouge").unwrap().as_str(), "équipe rouge");
        for bad in ["", "a/b", "a\nb", "a\u{1f}b", &"x".repeat(201)] {
            let e = Namespace::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }

    #[test]
    fn keys_may_be_hierarchical_but_never_hold_control_characters() {
        assert!(MemoryKey::parse("notes/2026/11").is_ok());
        assert!(MemoryKey::parse(&"k".repeat(512)).is_ok());
        for bad in ["", "a\tb", "a\u{0}b", &"k".repeat(513)] {
            assert_eq!(MemoryKey::parse(bad).unwrap_err().code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }

    #[test]
    fn ttl_becomes_an_expiry_and_nonsense_is_refused() {
        let now = Timestamp::from_millis(1_000);
        assert_eq!(expiry(None, now).unwrap(), None);
        assert_eq!(expiry(Some(60), now).unwrap(), Some(Timestamp::from_millis(61_000)));
        assert!(expiry(Some(0), now).is_err());
        assert!(expiry(Some(MAX_TTL_SECONDS + 1), now).is_err());
    }

    #[test]
    fn values_over_the_maximum_are_too_large() {
        assert_eq!(encode_value(&json!({"a": 1}), 100).unwrap(), r#"{"a":1}"#);
        assert_eq!(encode_value(&json!("x".repeat(100)), 100).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn searchable_text_holds_strings_keys_and_numbers() {
        let t = searchable_text(&json!({"topic": "rust", "n": [1, true, null, {"deep": "value"}]}));
        for word in ["topic", "rust", "1", "deep", "value"] {
            assert!(t.contains(word), "{word} missing from {t:?}");
        }
        assert!(!t.contains("true"));
    }
}
