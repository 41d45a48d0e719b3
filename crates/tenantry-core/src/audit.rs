//! The tamper-evident audit chain: each tenant's entries are linked by
//! `hash = SHA-256(prev_hash ‖ canonical fields)`, so editing, removing or reordering an entry
//! breaks every link after it. Backends call [`chain_hash`] when appending; `verify` walks it.
//!
//! Retention prunes a chain's oldest entries (never its newest). What was pruned is anchored
//! twice: the backend keeps the last pruned entry's seq and hash as the tenant's
//! [`AuditAnchor`], where the walk starts, and the same transaction appends an `audit.prune`
//! entry naming that anchor ([`prune_record`]) to the chain itself. So the kept entries verify
//! from the anchor, and an anchor moved or forged without rewriting every later hash no longer
//! matches what the chain says was pruned.

use crate::model::{AuditDraft, AuditEntry};
use crate::time::Timestamp;
use sha2::{Digest, Sha256};

/// The action of the entry a prune appends.
pub const PRUNE_ACTION: &str = "audit.prune";

/// Where a pruned chain starts: the last entry pruned, by seq and hash, and when it was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditAnchor {
    pub seq: u64,
    pub hash: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}

/// The `target` of the `audit.prune` entry that records `anchor`.
pub fn prune_target(anchor: &AuditAnchor) -> String {
    format!("seq {} hash {}", anchor.seq, anchor.hash)
}

/// The entry a prune appends to the chain, in the same transaction that moves the anchor.
pub fn prune_record(anchor: &AuditAnchor) -> AuditDraft {
    AuditDraft {
        actor: "system".into(),
        action: PRUNE_ACTION.into(),
        target: prune_target(anchor),
        result: "ok".into(),
        request_id: String::new(),
        ip: String::new(),
    }
}

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

/// Whether deleting entries with these actions is worth a prune: not when they are only earlier
/// prunes' own records (a tenant keeping no history would otherwise replace one with the next
/// on every round).
pub fn worth_pruning<'a>(actions: impl IntoIterator<Item = &'a str>) -> bool {
    actions.into_iter().any(|a| a != PRUNE_ACTION)
}

/// The entry that follows `prev` (seq and hash of the chain's head; `None` for the first
/// entry): numbered next, linked to it, hashed. Backends store it as it is.
pub fn next_entry(prev: Option<(u64, &str)>, tenant_slug: &str, draft: AuditDraft, at: Timestamp) -> AuditEntry {
    let (prev_seq, prev_hash) = prev.unwrap_or((0, GENESIS));
    let mut entry = AuditEntry {
        seq: prev_seq + 1,
        at,
        tenant: tenant_slug.to_owned(),
        actor: draft.actor,
        action: draft.action,
        target: draft.target,
        result: draft.result,
        request_id: draft.request_id,
        ip: draft.ip,
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    entry.hash = chain_hash(&entry.prev_hash, &entry);
    entry
}

/// The outcome of walking a chain from its first kept entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainReport {
    /// Entries walked (those kept: a pruned prefix is not counted).
    pub entries: u64,
    pub ok: bool,
    /// The seq of the first entry whose link does not hold, and why.
    pub first_broken_seq: Option<u64>,
    pub reason: Option<String>,
    /// Where the walk started when older entries were pruned; absent for a whole chain.
    pub anchor: Option<AuditAnchor>,
}

/// Checks that entries (in seq order) form an unbroken chain: from seq 1 and the genesis hash,
/// or from just after `anchor` and its hash; with an anchor, the newest `audit.prune` entry must
/// name it.
pub fn verify<'a>(anchor: Option<&AuditAnchor>, entries: impl IntoIterator<Item = &'a AuditEntry>) -> ChainReport {
    let mut walk = ChainWalk::new(anchor.cloned());
    for e in entries {
        if !walk.push(e) {
            break;
        }
    }
    walk.finish()
}

/// [`verify`] one entry at a time, for a chain too long to hold (a copy checks one as it streams).
#[derive(Debug, Clone)]
pub struct ChainWalk {
    anchor: Option<AuditAnchor>,
    prev: String,
    expected_seq: u64,
    first_seq: u64,
    entries: u64,
    broken: Option<(u64, String)>,
    /// The seq and target of the newest `audit.prune` entry walked.
    last_prune: Option<(u64, String)>,
}

impl ChainWalk {
    pub fn new(anchor: Option<AuditAnchor>) -> ChainWalk {
        let (prev, first_seq) = match &anchor {
            Some(a) => (a.hash.clone(), a.seq + 1),
            None => (GENESIS.to_owned(), 1),
        };
        ChainWalk { anchor, prev, expected_seq: first_seq, first_seq, entries: 0, broken: None, last_prune: None }
    }

    /// Walks the next entry; false once the chain is broken (later entries change nothing).
    pub fn push(&mut self, e: &AuditEntry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.entries += 1;
        let expected = self.expected_seq;
        let broken = if e.seq != expected {
            Some(format!("expected seq {expected}, found {}", e.seq))
        } else if e.prev_hash != self.prev {
            Some(if expected == self.first_seq && self.anchor.is_some() {
                "prev_hash does not match the anchor's hash (the last pruned entry)".to_owned()
            } else {
                "prev_hash does not match the previous entry's hash".to_owned()
            })
        } else if chain_hash(&self.prev, e) != e.hash {
            Some("hash does not match the entry's contents".to_owned())
        } else {
            None
        };
        if let Some(reason) = broken {
            self.broken = Some((e.seq, reason));
            return false;
        }
        if e.action == PRUNE_ACTION && e.actor == "system" {
            self.last_prune = Some((e.seq, e.target.clone()));
        }
        self.prev = e.hash.clone();
        self.expected_seq += 1;
        true
    }

    /// The report of the entries walked.
    pub fn finish(self) -> ChainReport {
        let mut broken = self.broken;
        if let (None, Some(a)) = (&broken, &self.anchor) {
            let recorded = self.last_prune.as_ref().is_some_and(|(_, target)| *target == prune_target(a));
            if !recorded {
                let seq = self.last_prune.as_ref().map_or(self.first_seq, |(seq, _)| *seq);
                broken =
                    Some((seq, format!("the chain's last audit.prune entry does not name the anchor (seq {})", a.seq)));
            }
        }
        ChainReport {
            entries: self.entries,
            ok: broken.is_none(),
            first_broken_seq: broken.as_ref().map(|b| b.0),
            reason: broken.map(|b| b.1),
            anchor: self.anchor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn draft(target: String) -> AuditDraft {
        AuditDraft {
            actor: "operator".into(),
            action: "file.write".into(),
            target,
            result: "ok".into(),
            request_id: "r".into(),
            ip: "127.0.0.1".into(),
        }
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let e = next_entry(prev, "acme", draft(format!("/f{seq}")), Timestamp::from_millis(seq as i64 * 1000));
            out.push(e);
        }
        out
    }

    #[test]
    fn each_entry_is_numbered_and_linked_after_its_predecessor() {
        let c = chain(3);
        assert_eq!((c[0].seq, c[0].prev_hash.as_str()), (1, GENESIS));
        assert_eq!((c[2].seq, c[2].prev_hash.as_str()), (3, c[1].hash.as_str()));
        assert_eq!(c[1].hash, chain_hash(&c[0].hash, &c[1]));
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let report = verify(None, &chain(5));
        assert_eq!(report, ChainReport { entries: 5, ok: true, first_broken_seq: None, reason: None, anchor: None });
    }

    #[test]
    fn an_edited_entry_is_the_first_broken_link() {
        let mut c = chain(5);
        c[2].target = "/other".into();
        let report = verify(None, &c);
        assert_eq!(report.first_broken_seq, Some(3));
        assert!(!report.ok);
    }

    #[test]
    fn a_removed_entry_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(None, &c).first_broken_seq, Some(3));
    }

    /// `chain(n)` with `prune_record(anchor)` appended as seq n+1 and the first `anchor.seq`
    /// entries removed, as a prune leaves it.
    fn pruned(n: u64, through: u64) -> (AuditAnchor, Vec<AuditEntry>) {
        let mut c = chain(n);
        let last = &c[through as usize - 1];
        let anchor = AuditAnchor { seq: last.seq, hash: last.hash.clone(), at: last.at };
        let prev = &c[n as usize - 1];
        let e =
            next_entry(Some((prev.seq, prev.hash.as_str())), "acme", prune_record(&anchor), Timestamp::from_millis(0));
        c.push(e);
        (anchor, c.split_off(through as usize))
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_anchor() {
        let (anchor, kept) = pruned(6, 4);
        assert_eq!(kept.first().map(|e| e.seq), Some(5));
        let report = verify(Some(&anchor), &kept);
        assert_eq!((report.ok, report.entries, report.reason), (true, 3, None));
        assert_eq!(report.anchor, Some(anchor.clone()));
        // Without its anchor the same entries do not verify: the walk expects seq 1.
        assert_eq!(verify(None, &kept).first_broken_seq, Some(5));
    }

    #[test]
    fn an_anchor_moved_or_forged_is_caught() {
        let (anchor, kept) = pruned(6, 4);
        // One more entry deleted and the anchor moved onto it: the link holds, the record does not.
        let moved = AuditAnchor { seq: 5, hash: kept[0].hash.clone(), at: kept[0].at };
        let report = verify(Some(&moved), &kept[1..]);
        assert!(!report.ok);
        assert_eq!(report.first_broken_seq, Some(7), "the audit.prune entry that names another anchor");
        // A forged hash breaks the first kept link.
        let forged = AuditAnchor { hash: GENESIS.into(), ..anchor.clone() };
        assert_eq!(verify(Some(&forged), &kept).first_broken_seq, Some(5));
        // An anchor with nothing kept after it: the newest entry is never pruned.
        assert!(!verify(Some(&anchor), &[]).ok);
    }
}
