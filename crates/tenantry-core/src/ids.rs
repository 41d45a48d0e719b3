//! Identifiers of tenants, keys, webhooks, users, sessions and invitations: short, random, prefixed so a log line says what it names.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

fn random_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Ids are held inline, as their 20 ASCII bytes: a clone is a copy, and comparing two (a hash-map
/// lookup keyed by tenant, several per request) reads no heap string, which with 10,000 tenants
/// would be cold memory (BENCHMARKS.md, session 7).
const ID_LEN: usize = 20;

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub fn generate() -> Self {
                Self::parse(&random_id($prefix, ID_LEN - $prefix.len())).expect("a generated id has the id shape")
            }
            /// Accepts an id read back from storage or a client; only the shape is checked.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                let shaped = s.len() == ID_LEN && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                shaped.then(|| $name(s.as_bytes().try_into().expect("length checked")))
            }
            pub fn as_str(&self) -> &str {
                // ASCII by construction (`parse` is the only way in).
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::custom(concat!("not a ", $prefix, "… id")))
            }
        }
    };
}

id_type!(TenantId, "tnt_");
id_type!(KeyId, "key_");
id_type!(WebhookId, "whk_");
id_type!(UserId, "usr_");
id_type!(SessionId, "ses_");
id_type!(InviteId, "inv_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_foreign_shapes_do_not() {
        let t = TenantId::generate();
        assert_eq!(TenantId::parse(t.as_str()), Some(t.clone()));
        assert_eq!(KeyId::parse(t.as_str()), None);
        assert_eq!(TenantId::parse("tnt_short"), None);
        assert_eq!(TenantId::parse("tnt_ABCDEFGHIJKLMNOP"), None);
        assert_eq!(TenantId::parse("tnt_abcdefghijklmnopq"), None, "one character too many");
        assert_eq!(t.as_str().len(), 20);
        // Serialized as the string; deserializing checks the shape.
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{t}\""));
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), t);
        assert!(serde_json::from_str::<TenantId>("\"tnt_nope\"").is_err());
        assert_eq!(format!("{t:?}"), format!("{:?}", t.as_str()));
    }
}
