//! Tiers and limits (API.md §8): a tier is a named set of [`Limits`]; a tenant's `quotas` object
//! overrides its tier's values one by one (`null` = unlimited).

use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Effective limits. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub max_keys: Option<u64>,
    pub max_storage_bytes: Option<u64>,
    pub max_files: Option<u64>,
    pub max_api_calls_month: Option<u64>,
    pub max_requests_per_minute: Option<u64>,
    /// Audit entries older than this many days are pruned, the chain kept verifiable from an
    /// anchor (docs/SECURITY.md); `None` keeps them all.
    pub audit_retention_days: Option<u64>,
    pub webhooks: bool,
    pub dedicated_placement: bool,
}

/// Usage at this fraction of a hard limit (4/5 = 80%) raises a `quota.warning` event.
pub const WARNING_NUMERATOR: u64 = 4;
pub const WARNING_DENOMINATOR: u64 = 5;

/// Whether moving usage from `before` to `after` crosses the warning line of `limit` upward
/// (once per crossing: a tenant hovering above the line is not warned on every write).
pub fn crosses_warning(before: u64, after: u64, limit: Option<u64>) -> bool {
    let Some(limit) = limit else { return false };
    let line =
        |v: u64| u128::from(v) * u128::from(WARNING_DENOMINATOR) >= u128::from(limit) * u128::from(WARNING_NUMERATOR);
    limit > 0 && !line(before) && line(after)
}

const NUMERIC_LIMITS: &[&str] = &[
    "max_keys",
    "max_storage_bytes",
    "max_files",
    "max_api_calls_month",
    "max_requests_per_minute",
    "audit_retention_days",
];
const FEATURES: &[&str] = &["webhooks", "dedicated_placement"];

const GIB: u64 = 1 << 30;

impl Limits {
    pub fn unlimited() -> Limits {
        Limits { webhooks: true, dedicated_placement: true, ..Limits::default() }
    }

    /// Applies a tenant's overrides on top of its tier's limits.
    pub fn with_overrides(&self, overrides: &QuotaOverrides) -> Limits {
        let mut out = *self;
        for (name, value) in &overrides.0 {
            let n = value.as_u64();
            let b = value.as_bool().unwrap_or(false);
            match name.as_str() {
                "max_keys" => out.max_keys = n,
                "max_storage_bytes" => out.max_storage_bytes = n,
                "max_files" => out.max_files = n,
                "max_api_calls_month" => out.max_api_calls_month = n,
                "max_requests_per_minute" => out.max_requests_per_minute = n,
                "audit_retention_days" => out.audit_retention_days = n,
                "webhooks" => out.webhooks = b,
                "dedicated_placement" => out.dedicated_placement = b,
                _ => {}
            }
        }
        out
    }
}

/// A tenant's overrides of its tier's limits, validated: only known names, numbers are
/// non-negative integers or `null`, features are booleans.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct QuotaOverrides(BTreeMap<String, Value>);

impl QuotaOverrides {
    pub fn parse(value: &Value) -> Result<QuotaOverrides, Error> {
        let Value::Object(map) = value else {
            return Err(Error::invalid_request("`quotas` must be an object"));
        };
        Self::from_map(map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<QuotaOverrides, Error> {
        let mut out = BTreeMap::new();
        for (name, v) in map {
            let ok = if NUMERIC_LIMITS.contains(&name.as_str()) {
                v.is_null() || v.as_u64().is_some()
            } else if FEATURES.contains(&name.as_str()) {
                v.is_boolean()
            } else {
                return Err(Error::invalid_request(format!(
                    "unknown quota {name:?}: use one of {}, {}",
                    NUMERIC_LIMITS.join(", "),
                    FEATURES.join(", ")
                )));
            };
            if !ok {
                return Err(Error::invalid_request(format!(
                    "quota {name:?} must be a non-negative integer or null (features: true or false)"
                )));
            }
            out.insert(name.clone(), v.clone());
        }
        Ok(QuotaOverrides(out))
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or(Value::Null)
    }
}

impl<'de> Deserialize<'de> for QuotaOverrides {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        QuotaOverrides::parse(&v).map_err(serde::de::Error::custom)
    }
}

/// The tiers an operator offers, by name.
#[derive(Debug, Clone)]
pub struct TierTable {
    tiers: BTreeMap<String, Limits>,
    pub default_tier: String,
}

impl Default for TierTable {
    /// The built-in tiers of API.md §8.
    fn default() -> Self {
        let mut tiers = BTreeMap::new();
        let tier = |keys, storage_gib: u64, files, calls, rpm, audit_days, webhooks, dedicated| Limits {
            max_keys: Some(keys),
            max_storage_bytes: Some(storage_gib * GIB),
            max_files: Some(files),
            max_api_calls_month: Some(calls),
            max_requests_per_minute: Some(rpm),
            audit_retention_days: Some(audit_days),
            webhooks,
            dedicated_placement: dedicated,
        };
        tiers.insert("free".into(), tier(2, 1, 10_000, 1_000, 60, 30, false, false));
        tiers.insert("starter".into(), tier(5, 10, 100_000, 10_000, 300, 90, true, false));
        tiers.insert("pro".into(), tier(15, 100, 1_000_000, 100_000, 1_200, 365, true, true));
        tiers.insert("enterprise".into(), Limits::unlimited());
        TierTable { tiers, default_tier: "free".into() }
    }
}

impl TierTable {
    /// Adds or replaces a tier (from the config file's `[tiers.NAME]`).
    pub fn set(&mut self, name: &str, limits: Limits) {
        self.tiers.insert(name.to_owned(), limits);
    }

    pub fn get(&self, name: &str) -> Option<&Limits> {
        self.tiers.get(name)
    }

    pub fn require(&self, name: &str) -> Result<&Limits, Error> {
        self.get(name).ok_or_else(|| {
            Error::invalid_request(format!(
                "unknown tier {name:?}: use one of {}",
                self.tiers.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The smallest tier (by storage) whose limits have `feature`: what to suggest to a tenant
    /// refused for the want of it.
    pub fn smallest_with(&self, feature: impl Fn(&Limits) -> bool) -> Option<&str> {
        self.tiers
            .iter()
            .filter(|(_, l)| feature(l))
            .min_by_key(|(_, l)| l.max_storage_bytes.unwrap_or(u64::MAX))
            .map(|(name, _)| name.as_str())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tiers.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_tiers_match_the_contract() {
        let t = TierTable::default();
        let free = t.get("free").unwrap();
        assert_eq!(free.max_keys, Some(2));
        assert_eq!(free.max_storage_bytes, Some(1 << 30));
        assert_eq!(free.max_requests_per_minute, Some(60));
        assert!(!free.webhooks && !free.dedicated_placement);
        let pro = t.get("pro").unwrap();
        assert_eq!((pro.max_files, pro.max_api_calls_month), (Some(1_000_000), Some(100_000)));
        assert!(pro.dedicated_placement);
        let retention = |tier: &str| t.get(tier).unwrap().audit_retention_days;
        assert_eq!(
            (retention("free"), retention("starter"), retention("pro"), retention("enterprise")),
            (Some(30), Some(90), Some(365), None)
        );
        assert_eq!(t.get("enterprise").unwrap(), &Limits::unlimited());
        assert_eq!(t.default_tier, "free");
    }

    #[test]
    fn overrides_replace_one_value_each_and_null_means_unlimited() {
        let free = *TierTable::default().get("free").unwrap();
        let o = QuotaOverrides::parse(&json!({"max_keys": 10, "max_files": null, "webhooks": true})).unwrap();
        let eff = free.with_overrides(&o);
        assert_eq!(eff.max_keys, Some(10));
        assert_eq!(eff.max_files, None);
        assert!(eff.webhooks);
        assert_eq!(eff.max_storage_bytes, free.max_storage_bytes);
    }

    #[test]
    fn bad_overrides_are_refused() {
        for v in
            [json!({"max_keys": -1}), json!({"max_keys": "5"}), json!({"bogus": 1}), json!({"webhooks": 1}), json!([1])]
        {
            assert!(QuotaOverrides::parse(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn the_warning_fires_once_when_usage_crosses_eighty_percent() {
        assert!(crosses_warning(79, 80, Some(100)));
        assert!(crosses_warning(0, 100, Some(100)));
        assert!(!crosses_warning(80, 90, Some(100)), "already above: no new warning");
        assert!(!crosses_warning(10, 79, Some(100)));
        assert!(!crosses_warning(90, 10, Some(100)));
        assert!(!crosses_warning(0, u64::MAX, None));
        assert!(crosses_warning(0, u64::MAX, Some(u64::MAX)));
    }
}
