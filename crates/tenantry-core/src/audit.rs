//! The tamper-evident audit chain: each tenant's entries are linked by
//! `hash = SHA-256(prev_hash ‖ canonical fields)`, so editing, removing or reordering an entry
//! breaks every link after it. Backends call [`chain_hash`] when appending; `verify` walks it.

use crate::model::AuditEntry;
use sha2::{Digest, Sha256};

/// The `prev_hash` of a tenant's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of `entry` given its predecessor's hash. Fields are length-prefixed so no two
/// different entries can serialize alike.
pub fn chain_hash(prev_hash: &str, entry: &AuditEntry) -> String {
    let mut h = Sha256::new();
    let seq = entry.seq.to_string();
    let at = entry.at.millis().to_string();
    for field in [
        prev_hash,
        seq.as_str(),
        at.as_str(),
        &entry.tenant,
        &entry.actor,
        &entry.action,
        &entry.target,
        &entry.result,
        &entry.request_id,
        &entry.ip,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The outcome of walking a chain from its first entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainReport {
    pub entries: u64,
    pub ok: bool,
    /// The seq of the first entry whose link does not hold, and why.
    pub first_broken_seq: Option<u64>,
    pub reason: Option<String>,
}

/// Checks that entries (in seq order, starting at seq 1) form an unbroken chain.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> ChainReport {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for (expected_seq, e) in (1u64..).zip(entries) {
        count += 1;
        let broken = if e.seq != expected_seq {
            Some(format!("expected seq {expected_seq}, found {}", e.seq))
        } else if e.prev_hash != prev {
            Some("prev_hash does not match the previous entry's hash".to_owned())
        } else if chain_hash(&prev, e) != e.hash {
            Some("hash does not match the entry's contents".to_owned())
        } else {
            None
        };
        if let Some(reason) = broken {
            return ChainReport { entries: count, ok: false, first_broken_seq: Some(e.seq), reason: Some(reason) };
        }
        prev = e.hash.clone();
    }
    ChainReport { entries: count, ok: true, first_broken_seq: None, reason: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    at: Timestamp::from_millis(seq as i64 * 1000),
                    tenant: "acme".into(),
                    actor: "operator".into(),
                    action: "file.write".into(),
                    target: format!("/f{seq}"),
                    result: "ok".into(),
                    request_id: format!("r{seq}"),
                    ip: "127.0.0.1".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = chain_hash(&prev, &e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let report = verify(&chain(5));
        assert_eq!(report, ChainReport { entries: 5, ok: true, first_broken_seq: None, reason: None });
    }

    #[test]
    fn an_edited_entry_is_the_first_broken_link() {
        let mut c = chain(5);
        c[2].target = "/other".into();
        let report = verify(&c);
        assert_eq!(report.first_broken_seq, Some(3));
        assert!(!report.ok);
    }

    #[test]
    fn a_removed_entry_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c).first_broken_seq, Some(3));
    }
}
