//! The tenant registry: records, their copies in dedicated databases, purges, and the
//! directory the server loads at start.

use crate::audit::append_audit_tx;
use crate::counters;
use crate::error::{corrupt, is_unique_violation, sql_error};
use crate::journal::journal_tx;
use crate::keys::{insert_key_tx, key_from_row, KEY_COLUMNS};
use crate::store::{truncate_wal, SqliteStore};
use crate::tails::Log;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tenantry_core::events::Journal;
use tenantry_core::ids::{KeyId, TenantId};
use tenantry_core::model::{AuditDraft, KeyRecord, Placement, Tenant, TenantStatus};
use tenantry_core::slug::Slug;
use tenantry_core::store::{TenantRegistry, TenantScope};
use tenantry_core::tier::QuotaOverrides;
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};

/// The tenant's record as this database holds it.
pub(crate) fn tenant_record(conn: &Connection, id: &TenantId) -> Result<Option<Tenant>> {
    conn.prepare_cached(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.as_str()], tenant_from_row).optional())
        .map_err(sql_error)?
        .transpose()
}

pub(crate) fn tenant_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Tenant>> {
    let id: String = r.get(0)?;
    let slug: String = r.get(1)?;
    let status: String = r.get(4)?;
    let placement: String = r.get(5)?;
    let domains: String = r.get(6)?;
    let quotas: String = r.get(7)?;
    let metadata: String = r.get(8)?;
    let (name, tier, created, updated): (String, String, i64, i64) = (r.get(2)?, r.get(3)?, r.get(9)?, r.get(10)?);
    Ok((|| {
        Ok(Tenant {
            id: TenantId::parse(&id).ok_or_else(|| corrupt("tenant id"))?,
            slug: Slug::parse(&slug).map_err(|_| corrupt("slug"))?,
            name,
            tier,
            status: TenantStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            placement: Placement::parse(&placement).ok_or_else(|| corrupt("placement"))?,
            domains: serde_json::from_str(&domains).map_err(|_| corrupt("domains"))?,
            quotas: serde_json::from_str::<QuotaOverrides>(&quotas).map_err(|_| corrupt("quotas"))?,
            metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("metadata"))?,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
        })
    })())
}

pub(crate) const TENANT_COLUMNS: &str =
    "id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at";

pub(crate) fn write_tenant_row(tx: &Connection, t: &Tenant, insert: bool) -> Result<()> {
    let domains = serde_json::to_string(&t.domains).map_err(|e| Error::internal(e.to_string()))?;
    let quotas = t.quotas.to_value().to_string();
    let metadata = t.metadata.to_string();
    let sql = if insert {
        "INSERT INTO tenants (id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    } else {
        // Placement (?6) is not updated here: only a move's switch changes it.
        "UPDATE tenants SET slug = ?2, name = ?3, tier = ?4, status = ?5, domains = ?7, quotas = ?8,
         metadata = ?9, created_at = ?10, updated_at = ?11 WHERE id = ?1"
    };
    let slug_taken = |e: rusqlite::Error| {
        if is_unique_violation(&e) {
            Error::conflict(format!("slug '{}' is taken", t.slug))
        } else {
            sql_error(e)
        }
    };
    tx.execute(
        sql,
        params![
            t.id.as_str(),
            t.slug.as_str(),
            t.name,
            t.tier,
            t.status.as_str(),
            t.placement.as_str(),
            domains,
            quotas,
            metadata,
            t.created_at.millis(),
            t.updated_at.millis()
        ],
    )
    .map_err(slug_taken)?;
    tx.execute("DELETE FROM tenant_domains WHERE tenant_id = ?1", [t.id.as_str()]).map_err(sql_error)?;
    for d in &t.domains {
        tx.execute("INSERT INTO tenant_domains (domain, tenant_id) VALUES (?1, ?2)", params![d, t.id.as_str()])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("domain '{d}' is already registered to another tenant"))
                } else {
                    sql_error(e)
                }
            })?;
    }
    Ok(())
}

/// Whether the tenant is registered in the database its writes go to (a purge does not wait at
/// the tenant's gate, so upkeep writing for a tenant checks inside its transaction).
pub(crate) fn registered_tx(tx: &Connection, tenant: &TenantId) -> Result<bool> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = ?1)")
        .and_then(|mut s| s.query_row([tenant.as_str()], |r| r.get(0)))
        .map_err(sql_error)
}

/// Deletes every row of the tenant in one database: its data, and with `registry` also its
/// registry rows (record, domains, metered usage, a move in progress).
pub(crate) fn delete_tenant_rows_tx(tx: &Connection, id: &TenantId, registry: bool) -> Result<()> {
    // Bytes first (they are found through the rows that point at them), staged imports included.
    tx.execute(
        "DELETE FROM file_content WHERE tenant_id = ?1
           AND (id IN (SELECT content_id FROM files WHERE tenant_id = ?1)
                OR id IN (SELECT content_id FROM import_files WHERE tenant_id = ?1))",
        [id.as_str()],
    )
    .map_err(sql_error)?;
    let data = [
        "import_files",
        "import_records",
        "imports",
        "files",
        "keys",
        "memberships",
        "audit",
        "audit_anchor",
        "tenant_usage",
        "events",
        "memory",
        "search_docs",
        "search_tail",
        "search_segments",
        "search_segment_docs",
        "search_pending",
        "search_segment_terms",
        "webhooks",
        "webhook_outbox",
        "webhook_attempts",
        "event_relays",
    ];
    crate::tails::forget_audit_head(tx, id)?;
    counters::forget_tx(tx, id)?;
    for log in [Log::Audit, Log::Events] {
        for ids in log.tenant_tail_ids() {
            tx.execute(&format!("DELETE FROM {} WHERE id IN ({ids})", log.tail()), [id.as_str()]).map_err(sql_error)?;
        }
        // The triggers took the index entries of the rows deleted; a fold indexes entries from
        // the registry, so one whose row was pruned before could name no row: it goes too.
        tx.execute(&format!("DELETE FROM {} WHERE tenant_id = ?1", log.tail_index()), [id.as_str()])
            .map_err(sql_error)?;
    }
    let registry_tables: &[&str] = if registry { &["tenant_domains", "usage_daily", "moves"] } else { &[] };
    for table in data.iter().chain(registry_tables) {
        tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1"), [id.as_str()]).map_err(sql_error)?;
    }
    if registry {
        tx.execute("DELETE FROM tenants WHERE id = ?1", [id.as_str()]).map_err(sql_error)?;
    }
    Ok(())
}

/// A tenant's record is changed only under its own scope.
fn same_tenant(scope: &TenantScope, tenant: &Tenant) -> Result<()> {
    if scope.tenant_id() == &tenant.id {
        Ok(())
    } else {
        Err(Error::internal("the tenant record differs from the scope"))
    }
}

#[async_trait]
impl TenantRegistry for SqliteStore {
    async fn insert_tenant(
        &self,
        scope: &TenantScope,
        tenant: &Tenant,
        owner: Option<&KeyRecord>,
        audit: AuditDraft,
    ) -> Result<()> {
        same_tenant(scope, tenant)?;
        let (tenant, owner) = (tenant.clone(), owner.cloned());
        if tenant.placement == Placement::Shared {
            return self
                .write_shared(move |tx| {
                    write_tenant_row(tx, &tenant, true)?;
                    if let Some(k) = &owner {
                        insert_key_tx(tx, k)?;
                    }
                    append_audit_tx(tx, &tenant.id, tenant.slug.as_str(), audit)
                })
                .await;
        }
        // Its own database first (its copy of the record, the owner key, the audit entry), then
        // the registry row: a crash in between leaves a database nothing points at, deleted at
        // the next start; a refused registry row (slug taken) deletes it at once.
        let id = tenant.id.clone();
        self.dedicated.delete_files(&id)?;
        let pool = self.dedicated.get(&id)?;
        let t = tenant.clone();
        pool.write(
            None,
            move |tx| {
                write_tenant_row(tx, &t, true)?;
                if let Some(k) = &owner {
                    insert_key_tx(tx, k)?;
                }
                append_audit_tx(tx, &t.id, t.slug.as_str(), audit)
            },
            None,
        )
        .await?;
        drop(pool);
        let registered = self.write_shared(move |tx| write_tenant_row(tx, &tenant, true)).await;
        match registered {
            Ok(()) => {
                self.routes.set_dedicated(&id, true);
                Ok(())
            }
            Err(e) => {
                self.dedicated.delete_files(&id)?;
                Err(e)
            }
        }
    }

    async fn update_tenant(&self, scope: &TenantScope, tenant: &Tenant, journal: Journal) -> Result<()> {
        same_tenant(scope, tenant)?;
        let tenant = tenant.clone();
        let t = tenant.clone();
        self.write_journaled(&tenant.id.clone(), None, move |tx, published| {
            write_tenant_row(tx, &t, false)?;
            journal_tx(tx, &t.id, t.slug.as_str(), journal, published)
        })
        .await?;
        if self.routes.is_dedicated(&tenant.id) {
            // The registry's copy (slug, domains and status answer routing for every request).
            self.write_shared(move |tx| write_tenant_row(tx, &tenant, false)).await?;
        }
        Ok(())
    }

    async fn purge_tenant(&self, scope: &TenantScope) -> Result<()> {
        let id = scope.tenant_id().clone();
        let cache = self.cache.clone();
        if self.routes.is_dedicated(&id) {
            // Its database goes whole (the files are unlinked; nothing of it stays on disk). Routed
            // away first, so nothing opens it again.
            self.routes.set_dedicated(&id, false);
            self.dedicated.delete_files(&id)?;
        }
        // Alone on the write connection: the checkpoint below cannot run inside a transaction.
        let tenant = id.clone();
        self.shared
            .exclusive(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_error)?;
                delete_tenant_rows_tx(&tx, &tenant, true)?;
                tx.commit().map_err(sql_error)?;
                cache.invalidate_tenant(&tenant);
                // secure_delete zeroed the pages; checkpointing moves them out of the WAL too, so
                // no copy of the purged bytes stays behind in the log.
                truncate_wal(conn)?;
                Ok(())
            })
            .await?;
        // No row names the tenant's external bodies any more: erased (a crash before this is
        // finished by the sweep at open, which erases the bodies of tenants that do not exist).
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.erase_tenant(&id))
            .await
            .map_err(|e| Error::internal(format!("purge failed: {e}")))?
    }

    async fn insert_key(
        &self,
        scope: &TenantScope,
        key: &KeyRecord,
        max_keys: Option<u64>,
        journal: Journal,
    ) -> Result<()> {
        crate::keys::insert(self, scope, key, max_keys, journal).await
    }

    async fn revoke_key(&self, scope: &TenantScope, id: &KeyId, at: Timestamp, journal: Journal) -> Result<()> {
        crate::keys::revoke(self, scope, id, at, journal).await
    }

    async fn list_keys(&self, scope: &TenantScope) -> Result<Vec<KeyRecord>> {
        crate::keys::list(self, scope).await
    }
}

/// Cross-tenant upkeep (see `upkeep`): not reachable through a request's scope.
impl SqliteStore {
    /// One tenant and its keys, from the database that holds them (a dedicated tenant's own
    /// record wins, as in [`SqliteStore::load_directory`]).
    pub(crate) async fn load_tenant_directory(&self, id: &TenantId) -> Result<Option<(Tenant, Vec<KeyRecord>)>> {
        let dedicated = self.routes.is_dedicated(id);
        let tenant = id.clone();
        let found = self
            .read_of(id, move |conn| {
                let Some(t) = conn
                    .prepare_cached(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"))
                    .and_then(|mut s| s.query_row([tenant.as_str()], tenant_from_row).optional())
                    .map_err(sql_error)?
                    .transpose()?
                else {
                    return Ok(None);
                };
                let mut s = conn
                    .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE tenant_id = ?1"))
                    .map_err(sql_error)?;
                let keys = s
                    .query_map([tenant.as_str()], key_from_row)
                    .map_err(sql_error)?
                    .map(|k| k.map_err(sql_error)?)
                    .collect::<Result<Vec<KeyRecord>>>()?;
                Ok(Some((t, keys)))
            })
            .await?;
        Ok(found.map(|(mut t, keys)| {
            if dedicated {
                t.placement = Placement::Dedicated;
            }
            (t, keys)
        }))
    }

    pub(crate) async fn load_directory(&self) -> Result<(Vec<Tenant>, Vec<KeyRecord>)> {
        let (mut tenants, mut keys) = self
            .read_shared(|conn| {
                let mut tenants = Vec::new();
                let mut s = conn.prepare(&format!("SELECT {TENANT_COLUMNS} FROM tenants")).map_err(sql_error)?;
                for t in s.query_map([], tenant_from_row).map_err(sql_error)? {
                    tenants.push(t.map_err(sql_error)??);
                }
                let mut keys = Vec::new();
                let mut s = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM keys")).map_err(sql_error)?;
                for k in s.query_map([], key_from_row).map_err(sql_error)? {
                    keys.push(k.map_err(sql_error)??);
                }
                Ok((tenants, keys))
            })
            .await?;
        // A dedicated tenant's keys and settings live in its own database (its settings there
        // are written with their audit entry, so they win over the registry's copy).
        let dedicated: Vec<(TenantId, std::path::PathBuf)> =
            self.routes.dedicated_tenants().into_iter().map(|t| (t.clone(), self.dedicated.path_of(&t))).collect();
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<(Option<Tenant>, Vec<KeyRecord>)>> {
            let mut out = Vec::new();
            for (tenant, path) in dedicated {
                let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(sql_error)?;
                let row = conn
                    .prepare(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"))
                    .and_then(|mut s| s.query_row([tenant.as_str()], tenant_from_row).optional())
                    .map_err(sql_error)?
                    .transpose()?;
                let mut keys = Vec::new();
                let mut s = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM keys")).map_err(sql_error)?;
                for k in s.query_map([], key_from_row).map_err(sql_error)? {
                    keys.push(k.map_err(sql_error)??);
                }
                out.push((row, keys));
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::internal(format!("store task failed: {e}")))??;
        for (row, dedicated_keys) in found {
            keys.extend(dedicated_keys);
            let Some(mut own) = row else { continue };
            own.placement = Placement::Dedicated;
            if let Some(t) = tenants.iter_mut().find(|t| t.id == own.id) {
                if *t != own {
                    let fixed = own.clone();
                    self.write_shared(move |tx| write_tenant_row(tx, &fixed, false)).await?;
                    *t = own;
                }
            }
        }
        Ok((tenants, keys))
    }
}
