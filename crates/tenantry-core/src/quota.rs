//! The hard limits (API.md §8), decided once for every write that can grow usage: files, memory
//! values, keys, webhooks and imports. A backend calls these inside the write's transaction,
//! with the counts that transaction reads, so concurrent writers cannot pass a limit together;
//! it never builds a `quota_exceeded` itself.
//!
//! A change that grows nothing is always allowed, so lowering a limit never blocks clean-up.
//! The `quota.warning` events a change raises (its usage crossing 80% of a limit) come from here
//! too, in the order they follow the change's own event.

use crate::error::{Error, Result};
use crate::events::EventDraft;
use crate::tier::crosses_warning;

/// How a write changes the tenant's stored bytes and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageDelta {
    pub bytes: i64,
    pub files: i64,
}

/// The storage limits a write is held to (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageLimits {
    pub max_storage_bytes: Option<u64>,
    pub max_files: Option<u64>,
}

/// A tenant's stored usage, as the usage counters hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredUsage {
    pub storage_bytes: u64,
    pub files: u64,
}

/// The usage `delta` leaves, or `quota_exceeded` naming the first limit it grows past
/// (`max_storage_bytes`, then `max_files`); `current` in the error is the usage before.
pub fn storage(used: StoredUsage, delta: UsageDelta, limits: StorageLimits) -> Result<StoredUsage> {
    let after = StoredUsage {
        storage_bytes: used.storage_bytes.saturating_add_signed(delta.bytes),
        files: used.files.saturating_add_signed(delta.files),
    };
    grow("max_storage_bytes", used.storage_bytes, after.storage_bytes, limits.max_storage_bytes)?;
    grow("max_files", used.files, after.files, limits.max_files)?;
    Ok(after)
}

/// `quota_exceeded` when one more usable key would pass `max_keys`.
pub fn one_more_key(usable: u64, max_keys: Option<u64>) -> Result<()> {
    grow("max_keys", usable, usable.saturating_add(1), max_keys)
}

/// `quota_exceeded` when one more webhook would pass the tenant's `max` (its tier allows none,
/// or an import would bring more than the bound on webhooks per tenant).
pub fn one_more_webhook(count: u64, max: usize) -> Result<()> {
    grow("webhooks", count, count.saturating_add(1), Some(max as u64))
}

fn grow(quota: &str, before: u64, after: u64, limit: Option<u64>) -> Result<()> {
    match limit {
        Some(max) if after > before && after > max => Err(Error::quota_exceeded(quota, max, before)),
        _ => Ok(()),
    }
}

/// The warnings of a change of stored usage from `before` to `after`.
pub fn storage_warnings(before: StoredUsage, after: StoredUsage, limits: StorageLimits) -> Vec<EventDraft> {
    [
        ("max_storage_bytes", limits.max_storage_bytes, before.storage_bytes, after.storage_bytes),
        ("max_files", limits.max_files, before.files, after.files),
    ]
    .into_iter()
    .filter(|&(_, limit, b, a)| crosses_warning(b, a, limit))
    .map(|(quota, limit, _, a)| EventDraft::quota_warning(quota, limit.unwrap_or(0), a))
    .collect()
}

/// The warning of a key created when `usable` keys (it included) are now usable.
pub fn key_warning(usable: u64, max_keys: Option<u64>) -> Option<EventDraft> {
    crosses_warning(usable.saturating_sub(1), usable, max_keys)
        .then(|| EventDraft::quota_warning("max_keys", max_keys.unwrap_or(0), usable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn used(storage_bytes: u64, files: u64) -> StoredUsage {
        StoredUsage { storage_bytes, files }
    }

    const LIMITS: StorageLimits = StorageLimits { max_storage_bytes: Some(100), max_files: Some(3) };

    #[test]
    fn a_change_up_to_a_limit_passes_and_one_past_it_is_refused_with_the_usage_before() {
        assert_eq!(storage(used(90, 2), UsageDelta { bytes: 10, files: 1 }, LIMITS).unwrap(), used(100, 3));
        let e = storage(used(90, 2), UsageDelta { bytes: 11, files: 1 }, LIMITS).unwrap_err();
        assert_eq!(e.code, ErrorCode::QuotaExceeded);
        let d = e.details.unwrap();
        assert_eq!(
            (d["quota"].as_str(), d["limit"].as_u64(), d["current"].as_u64()),
            (Some("max_storage_bytes"), Some(100), Some(90))
        );
        let files = storage(used(10, 3), UsageDelta { bytes: 1, files: 1 }, LIMITS).unwrap_err();
        assert_eq!(files.details.unwrap()["quota"], "max_files");
    }

    #[test]
    fn a_change_that_grows_nothing_passes_over_any_limit() {
        let over = used(500, 9);
        assert_eq!(storage(over, UsageDelta { bytes: -50, files: 0 }, LIMITS).unwrap(), used(450, 9));
        assert_eq!(storage(over, UsageDelta { bytes: 0, files: -1 }, LIMITS).unwrap(), used(500, 8));
        // Growing one while shrinking the other is still growth.
        assert!(storage(over, UsageDelta { bytes: 1, files: -1 }, LIMITS).is_err());
        assert!(storage(over, UsageDelta::default(), StorageLimits::default()).is_ok());
    }

    #[test]
    fn keys_and_webhooks_count_one_more() {
        assert!(one_more_key(1, Some(2)).is_ok());
        assert_eq!(one_more_key(2, Some(2)).unwrap_err().details.unwrap()["current"], 2);
        assert!(one_more_key(1_000, None).is_ok());
        assert!(one_more_webhook(0, 1).is_ok());
        assert_eq!(one_more_webhook(0, 0).unwrap_err().code, ErrorCode::QuotaExceeded);
    }

    #[test]
    fn warnings_follow_each_crossing_of_eighty_percent_once() {
        let w = storage_warnings(used(79, 0), used(85, 3), LIMITS);
        let details: Vec<_> = w.iter().map(|d| d.detail.clone().unwrap()).collect();
        assert_eq!(details[0]["quota"], "max_storage_bytes");
        assert_eq!((details[1]["quota"].as_str(), details[1]["current"].as_u64()), (Some("max_files"), Some(3)));
        assert!(storage_warnings(used(85, 3), used(90, 3), LIMITS).is_empty(), "already above");
        assert!(key_warning(4, Some(5)).is_some() && key_warning(5, Some(5)).is_none());
    }
}
