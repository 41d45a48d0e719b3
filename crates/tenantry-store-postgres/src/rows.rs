//! Rows of the registry and the key table, read into the core's types.

use crate::error::corrupt;
use tenantry_core::ids::{KeyId, TenantId};
use tenantry_core::model::{KeyRecord, Placement, Tenant, TenantStatus};
use tenantry_core::path::PathPrefix;
use tenantry_core::role::Role;
use tenantry_core::secret::SecretHash;
use tenantry_core::slug::Slug;
use tenantry_core::tier::QuotaOverrides;
use tenantry_core::time::Timestamp;
use tenantry_core::Result;
use tokio_postgres::Row;

/// The columns [`tenant_from_row`] reads, in its order.
pub(crate) const TENANT_COLUMNS: &str =
    "id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at";

pub(crate) fn tenant_from_row(r: &Row) -> Result<Tenant> {
    let (id, slug, status, placement): (String, String, String, String) = (r.get(0), r.get(1), r.get(4), r.get(5));
    let (domains, quotas, metadata): (String, String, String) = (r.get(6), r.get(7), r.get(8));
    Ok(Tenant {
        id: TenantId::parse(&id).ok_or_else(|| corrupt("tenant id"))?,
        slug: Slug::parse(&slug).map_err(|_| corrupt("slug"))?,
        name: r.get(2),
        tier: r.get(3),
        status: TenantStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        placement: Placement::parse(&placement).ok_or_else(|| corrupt("placement"))?,
        domains: serde_json::from_str(&domains).map_err(|_| corrupt("domains"))?,
        quotas: serde_json::from_str::<QuotaOverrides>(&quotas).map_err(|_| corrupt("quotas"))?,
        metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("metadata"))?,
        created_at: Timestamp::from_millis(r.get(9)),
        updated_at: Timestamp::from_millis(r.get(10)),
    })
}

/// The columns [`key_from_row`] reads, in its order.
pub(crate) const KEY_COLUMNS: &str =
    "id, tenant_id, name, role, prefix, hash, created_at, created_by, expires_at, revoked_at";

pub(crate) fn key_from_row(r: &Row) -> Result<KeyRecord> {
    let (id, tenant, role, prefix, hash): (String, String, String, Option<String>, Vec<u8>) =
        (r.get(0), r.get(1), r.get(3), r.get(4), r.get(5));
    Ok(KeyRecord {
        id: KeyId::parse(&id).ok_or_else(|| corrupt("key id"))?,
        tenant_id: TenantId::parse(&tenant).ok_or_else(|| corrupt("key tenant"))?,
        name: r.get(2),
        role: Role::parse(&role).map_err(|_| corrupt("key role"))?,
        prefix: prefix.map(|p| PathPrefix::parse(&p).map_err(|_| corrupt("key prefix"))).transpose()?,
        hash: SecretHash::from_slice(&hash).ok_or_else(|| corrupt("key hash"))?,
        created_at: Timestamp::from_millis(r.get(6)),
        created_by: r.get(7),
        expires_at: r.get::<_, Option<i64>>(8).map(Timestamp::from_millis),
        revoked_at: r.get::<_, Option<i64>>(9).map(Timestamp::from_millis),
    })
}
