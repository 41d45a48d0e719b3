//! The records Tenantry keeps, in the shape the API shows them (API.md §4–§8).

use crate::ids::{KeyId, TenantId};
use crate::path::{PathPrefix, TenantPath};
use crate::role::Role;
use crate::secret::SecretHash;
use crate::slug::Slug;
use crate::tier::{Limits, QuotaOverrides, TierTable};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TenantStatus {
    Active,
    Suspended,
    Archived,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Archived => "archived",
        }
    }
    pub fn parse(s: &str) -> Option<TenantStatus> {
        match s {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            "archived" => Some(TenantStatus::Archived),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Placement {
    Shared,
    Dedicated,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Shared => "shared",
            Placement::Dedicated => "dedicated",
        }
    }
    pub fn parse(s: &str) -> Option<Placement> {
        match s {
            "shared" => Some(Placement::Shared),
            "dedicated" => Some(Placement::Dedicated),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: TenantId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub slug: Slug,
    pub name: String,
    pub tier: String,
    pub status: TenantStatus,
    pub placement: Placement,
    pub domains: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub quotas: QuotaOverrides,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

impl TierTable {
    /// A tenant's effective limits: its tier's, with its own quota overrides (an unknown tier
    /// is unlimited).
    pub fn limits_of(&self, tenant: &Tenant) -> Limits {
        self.get(&tenant.tier).copied().unwrap_or_default().with_overrides(&tenant.quotas)
    }
}

impl Tenant {
    /// A new active tenant on the shared placement, with a fresh id and no domains, quota
    /// overrides or metadata (set them on the result).
    pub fn new(slug: Slug, name: impl Into<String>, tier: impl Into<String>, now: Timestamp) -> Tenant {
        Tenant {
            id: TenantId::generate(),
            slug,
            name: name.into(),
            tier: tier.into(),
            status: TenantStatus::Active,
            placement: Placement::Shared,
            domains: vec![],
            quotas: QuotaOverrides::default(),
            metadata: serde_json::json!({}),
            created_at: now,
            updated_at: now,
        }
    }
}

/// A tenant as the API shows it: the record plus its effective limits.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantView {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub limits: Limits,
}

/// A key as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub role: Role,
    pub prefix: Option<PathPrefix>,
    pub hash: SecretHash,
    pub created_at: Timestamp,
    pub created_by: String,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl KeyRecord {
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            prefix: self.prefix.clone(),
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

/// A key as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: KeyId,
    pub name: String,
    pub role: Role,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub prefix: Option<PathPrefix>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    pub created_by: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
}

/// A newly minted key: the only time its secret is ever shown.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MintedKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"path": "/docs/hello.txt", "size": 5, "etag": "\"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"", "version": 1, "content_type": "text/plain", "created_at": "2026-12-06T14:00:00.000Z", "updated_at": "2026-12-06T14:00:00.000Z"})))]
pub struct FileMeta {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub path: TenantPath,
    pub size: u64,
    /// Quoted, as in the `ETag` header: the SHA-256 of the content.
    pub etag: String,
    pub version: u64,
    pub content_type: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// One line of a tenant's audit log (API.md §8), with its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub seq: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub request_id: String,
    pub ip: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What a change asks to be written to the audit log; the store adds seq, time and the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub request_id: String,
    pub ip: String,
}

/// A page of a listing and the cursor to the next one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` items fetched in order: the extra one, if present, only
    /// says there is more, and the cursor names the last item kept.
    pub fn cut(mut items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Page<T> {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor_of)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}
