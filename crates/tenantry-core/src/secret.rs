//! Key secrets (DESIGN.md §5): 256 random bits, shown once, stored only as a SHA-256 hash.
//! A tenant key embeds its id (`tnr_key_…_<64 hex>`), so authentication is one hash-map lookup
//! and one constant-time comparison. `Debug` never prints a secret.

use crate::ids::KeyId;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const TENANT_KEY_PREFIX: &str = "tnr_";
const SECRET_HEX_LEN: usize = 64;

/// The SHA-256 of a secret: all that is ever stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> SecretHash {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }
    /// Constant-time: the comparison takes as long whatever the first differing byte.
    pub fn matches(&self, secret: &str) -> bool {
        SecretHash::of(secret).0.ct_eq(&self.0).into()
    }
    pub fn from_slice(bytes: &[u8]) -> Option<SecretHash> {
        Some(SecretHash(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &hex::encode(self.0)[..8])
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A presented or freshly minted secret. Holding one is holding a credential: it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret(String);

impl KeySecret {
    /// A new tenant key secret for key `id`.
    pub fn mint(id: &KeyId) -> KeySecret {
        KeySecret(format!("{TENANT_KEY_PREFIX}{id}_{}", random_hex()))
    }

    /// A new operator key (no id inside: there is only one).
    pub fn mint_operator() -> KeySecret {
        KeySecret(format!("{TENANT_KEY_PREFIX}op_{}", random_hex()))
    }

    pub fn from_presented(s: &str) -> KeySecret {
        KeySecret(s.to_owned())
    }

    /// The key id embedded in a tenant key, if the secret has that shape.
    pub fn key_id(&self) -> Option<KeyId> {
        let rest = self.0.strip_prefix(TENANT_KEY_PREFIX)?;
        let (id, secret) = rest.rsplit_once('_')?;
        if secret.len() != SECRET_HEX_LEN || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        KeyId::parse(id)
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }

    /// The secret itself, for showing it once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_minted_key_names_its_id_and_matches_only_its_own_hash() {
        let id = KeyId::generate();
        let secret = KeySecret::mint(&id);
        assert_eq!(secret.key_id(), Some(id.clone()));
        let hash = secret.hash();
        assert!(hash.matches(secret.expose()));
        assert!(!hash.matches(KeySecret::mint(&id).expose()));
        assert_eq!(format!("{secret:?}"), "KeySecret(<redacted>)");
    }

    #[test]
    fn operator_keys_and_garbage_have_no_key_id() {
        assert_eq!(KeySecret::mint_operator().key_id(), None);
        for s in ["", "tnr_", "tnr_key_abc_00", "Bearer x", "tnr_key_0123456789abcdef_zz"] {
            assert_eq!(KeySecret::from_presented(s).key_id(), None, "{s}");
        }
    }

    proptest! {
        #[test]
        fn key_id_parsing_never_panics(s in "\\PC{0,120}") {
            let _ = KeySecret::from_presented(&s).key_id();
        }
    }
}
