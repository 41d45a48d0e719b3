//! API keys: their rows, and the key-count quota decided by the core.

use crate::error::{corrupt, sql_error};
use crate::journal::{journal_tx, quota_warnings_tx};
use crate::store::SqliteStore;
use rusqlite::{params, Connection, Row};
use tenantry_core::events::Journal;
use tenantry_core::ids::{KeyId, TenantId};
use tenantry_core::model::KeyRecord;
use tenantry_core::path::PathPrefix;
use tenantry_core::quota;
use tenantry_core::role::Role;
use tenantry_core::secret::SecretHash;
use tenantry_core::store::TenantScope;
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};

pub(crate) const KEY_COLUMNS: &str =
    "id, tenant_id, name, role, prefix, hash, created_at, created_by, expires_at, revoked_at";

pub(crate) fn key_from_row(r: &Row<'_>) -> rusqlite::Result<Result<KeyRecord>> {
    let (id, tenant, name, role): (String, String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let prefix: Option<String> = r.get(4)?;
    let hash: Vec<u8> = r.get(5)?;
    let (created, created_by, expires, revoked): (i64, String, Option<i64>, Option<i64>) =
        (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?);
    Ok((|| {
        Ok(KeyRecord {
            id: KeyId::parse(&id).ok_or_else(|| corrupt("key id"))?,
            tenant_id: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant id"))?,
            name,
            role: Role::parse(&role).map_err(|_| corrupt("role"))?,
            prefix: prefix.map(|p| PathPrefix::parse(&p)).transpose().map_err(|_| corrupt("prefix"))?,
            hash: SecretHash::from_slice(&hash).ok_or_else(|| corrupt("key hash"))?,
            created_at: Timestamp::from_millis(created),
            created_by,
            expires_at: expires.map(Timestamp::from_millis),
            revoked_at: revoked.map(Timestamp::from_millis),
        })
    })())
}

pub(crate) fn insert_key_tx(tx: &Connection, k: &KeyRecord) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            k.id.as_str(),
            k.tenant_id.as_str(),
            k.name,
            k.role.as_str(),
            k.prefix.as_ref().map(|p| p.as_str().to_owned()),
            k.hash.0.as_slice(),
            k.created_at.millis(),
            k.created_by,
            k.expires_at.map(Timestamp::millis),
            k.revoked_at.map(Timestamp::millis)
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// Usable keys: not revoked and not expired at `at`.
pub(crate) fn usable_keys_tx(tx: &Connection, tenant: &TenantId, at: Timestamp) -> Result<u64> {
    let n: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM keys WHERE tenant_id = ?1 AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .and_then(|mut s| s.query_row(params![tenant.as_str(), at.millis()], |r| r.get(0)))
        .map_err(sql_error)?;
    Ok(n.max(0) as u64)
}

pub(crate) async fn insert(
    store: &SqliteStore,
    scope: &TenantScope,
    key: &KeyRecord,
    max_keys: Option<u64>,
    journal: Journal,
) -> Result<()> {
    if &key.tenant_id != scope.tenant_id() {
        return Err(Error::internal("key's tenant differs from the scope"));
    }
    let (scope, key) = (scope.clone(), key.clone());
    store
        .write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            if max_keys.is_some() {
                quota::one_more_key(usable_keys_tx(tx, scope.tenant_id(), key.created_at)?, max_keys)?;
            }
            insert_key_tx(tx, &key)?;
            journal_tx(tx, scope.tenant_id(), scope.slug().as_str(), journal, published)?;
            if max_keys.is_some() {
                let usable = usable_keys_tx(tx, scope.tenant_id(), key.created_at)?;
                let warning = quota::key_warning(usable, max_keys).into_iter().collect();
                quota_warnings_tx(tx, scope.tenant_id(), scope.slug().as_str(), warning, published)?;
            }
            Ok(())
        })
        .await
}

pub(crate) async fn revoke(
    store: &SqliteStore,
    scope: &TenantScope,
    id: &KeyId,
    at: Timestamp,
    journal: Journal,
) -> Result<()> {
    let (scope, id) = (scope.clone(), id.clone());
    store
        .write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let n = tx
                .execute(
                    "UPDATE keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                    params![scope.tenant_id().as_str(), id.as_str(), at.millis()],
                )
                .map_err(sql_error)?;
            if n == 0 {
                return Err(Error::not_found(format!("key '{id}' not found")));
            }
            journal_tx(tx, scope.tenant_id(), scope.slug().as_str(), journal, published)
        })
        .await
}

pub(crate) async fn list(store: &SqliteStore, scope: &TenantScope) -> Result<Vec<KeyRecord>> {
    let tenant = scope.tenant_id().clone();
    store
        .read_of(&tenant.clone(), move |conn| {
            let mut s = conn
                .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE tenant_id = ?1 ORDER BY created_at, id"))
                .map_err(sql_error)?;
            let rows = s.query_map([tenant.as_str()], key_from_row).map_err(sql_error)?;
            rows.map(|k| k.map_err(sql_error)?).collect()
        })
        .await
}
