//! Identifiers of tenants and keys: short, random, prefixed so a log line says what it names.

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

macro_rules! id_type {
    ($name:ident, $prefix:literal, $len:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub fn generate() -> Self {
                $name(random_id($prefix, $len))
            }
            /// Accepts an id read back from storage or a client; only the shape is checked.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (rest.len() == $len && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
                    .then(|| $name(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(TenantId, "tnt_", 16);
id_type!(KeyId, "key_", 16);
id_type!(WebhookId, "whk_", 16);

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
    }
}
