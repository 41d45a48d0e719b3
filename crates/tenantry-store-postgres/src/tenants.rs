//! The registry and the keys: tenants with their domains and counters, and API keys.

use crate::error::pg_error;
use crate::journal::{append_audit_tx, journal_tx, warnings_tx};
use crate::rows::{key_from_row, KEY_COLUMNS};
use crate::store::{begin, commit, lock_usage, PgStore};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tenantry_core::events::Journal;
use tenantry_core::ids::{KeyId, TenantId};
use tenantry_core::model::{AuditDraft, KeyRecord, Placement, Tenant};
use tenantry_core::quota;
use tenantry_core::store::{TenantRegistry, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};

/// Which unique index a violation hit (`None`: not a unique violation).
fn unique_violation(e: &tokio_postgres::Error) -> Option<String> {
    let db = e.as_db_error()?;
    (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or("").to_owned())
}

/// Writes the tenant's record and its domains (not its placement, which only a move changes).
async fn write_tenant_tx(tx: &Transaction<'_>, t: &Tenant, insert: bool) -> Result<()> {
    let domains = serde_json::to_string(&t.domains).map_err(|e| Error::internal(e.to_string()))?;
    let quotas = t.quotas.to_value().to_string();
    let metadata = t.metadata.to_string();
    let sql = if insert {
        "INSERT INTO tenants (id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    } else {
        "UPDATE tenants SET slug = $2, name = $3, tier = $4, status = $5, domains = $7, quotas = $8,
         metadata = $9, created_at = $10, updated_at = $11 WHERE id = $1 AND placement = $6"
    };
    tx.execute(
        sql,
        &[
            &t.id.as_str(),
            &t.slug.as_str(),
            &t.name,
            &t.tier,
            &t.status.as_str(),
            &t.placement.as_str(),
            &domains,
            &quotas,
            &metadata,
            &t.created_at.millis(),
            &t.updated_at.millis(),
        ],
    )
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(_) => Error::conflict(format!("slug '{}' is taken", t.slug)),
        None => pg_error(e),
    })?;
    tx.execute("DELETE FROM tenant_domains WHERE tenant_id = $1", &[&t.id.as_str()]).await.map_err(pg_error)?;
    for d in &t.domains {
        tx.execute("INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2)", &[d, &t.id.as_str()])
            .await
            .map_err(|e| match unique_violation(&e) {
                Some(_) => Error::conflict(format!("domain '{d}' is already registered to another tenant")),
                None => pg_error(e),
            })?;
    }
    Ok(())
}

pub(crate) async fn insert_key_tx(tx: &Transaction<'_>, k: &KeyRecord) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &k.id.as_str(),
            &k.tenant_id.as_str(),
            &k.name,
            &k.role.as_str(),
            &k.prefix.as_ref().map(|p| p.as_str().to_owned()),
            &k.hash.0.as_slice(),
            &k.created_at.millis(),
            &k.created_by,
            &k.expires_at.map(|t| t.millis()),
            &k.revoked_at.map(|t| t.millis()),
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Usable keys: not revoked and not expired at `at`.
async fn usable_keys_tx(tx: &Transaction<'_>, tenant: &TenantId, at: Timestamp) -> Result<u64> {
    let n: i64 = tx
        .query_one(
            "SELECT count(*) FROM keys WHERE tenant_id = $1 AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > $2)",
            &[&tenant.as_str(), &at.millis()],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(n.max(0) as u64)
}

/// The tables of tenant data, in the order a purge empties them (the registry rows last).
const PURGED: &[&str] = &[
    "file_chunks",
    "files",
    "import_files",
    "import_records",
    "imports",
    "keys",
    "memberships",
    "audit",
    "audit_anchor",
    "events",
    "event_relays",
    "memory",
    "search_docs",
    "search_postings",
    "webhook_attempts",
    "webhook_outbox",
    "webhooks",
    "usage_daily",
    "tenant_usage",
    "tenant_domains",
];

/// A new tenant's rows beside its record: its counters, its owner's key, its first audit entry.
async fn insert_own_rows_tx(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    owner: Option<&KeyRecord>,
    audit: AuditDraft,
) -> Result<()> {
    tx.execute("INSERT INTO tenant_usage (tenant_id) VALUES ($1)", &[&tenant.id.as_str()]).await.map_err(pg_error)?;
    if let Some(k) = owner {
        insert_key_tx(tx, k).await?;
    }
    append_audit_tx(tx, &tenant.id, tenant.slug.as_str(), audit).await
}

impl PgStore {
    /// Creates a dedicated tenant: its database (`places`), then its registry row, held open
    /// (the slug and domains checked and taken) while its own rows commit in its database, then
    /// committed. Whatever fails on the way drops the new database again.
    async fn insert_dedicated(&self, tenant: &Tenant, owner: Option<&KeyRecord>, audit: AuditDraft) -> Result<()> {
        // Held while its database exists without its registry row (`moves::settle_moves`).
        let Some(_lock) = self.places.placement_lock(&tenant.id).await? else {
            return Err(Error::conflict(format!("tenant {} is being placed by another request: try again", tenant.id)));
        };
        self.places.create(&tenant.id).await?;
        let created = async {
            let mut registry_conn = self.shared_conn().await?;
            let registry = begin(&mut registry_conn, &tenant.id).await?;
            write_tenant_tx(&registry, tenant, true).await?;
            self.places.set_placement(&tenant.id, Some(true));
            let mut conn = self.conn_of(&tenant.id).await?;
            let tx = begin(&mut conn, &tenant.id).await?;
            write_tenant_tx(&tx, tenant, true).await?;
            insert_own_rows_tx(&tx, tenant, owner, audit).await?;
            commit(tx).await?;
            commit(registry).await
        };
        match created.await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(dropped) = self.places.drop_database(&tenant.id).await {
                    tracing::warn!("could not drop the database of a tenant not created: {}", dropped.message);
                }
                Err(e)
            }
        }
    }

    /// Tells every node that a dedicated tenant's keys or members changed (`revoked`: which key,
    /// when), as the triggers on `keys` and `memberships` do for tenants in the shared database, whose feed the nodes
    /// follow. A node that stops between the commit and this is covered by the nodes' periodic
    /// re-read of dedicated tenants (`feed`).
    pub(crate) async fn announce_key_change(&self, tenant: &TenantId, revoked: Option<(&KeyId, Timestamp)>) {
        if !self.places.is_dedicated(tenant) {
            return;
        }
        let payload = match revoked {
            Some((key, at)) => format!("{tenant} {key} {}", at.millis()),
            None => tenant.to_string(),
        };
        let sent = async {
            let conn = self.shared_conn().await?;
            conn.execute("SELECT pg_notify($1, $2)", &[&crate::feed::DIRECTORY_CHANNEL, &payload])
                .await
                .map_err(pg_error)
        };
        if let Err(e) = sent.await {
            tracing::warn!("could not tell the other nodes of {tenant}'s key change: {}", e.message);
        }
    }
}

#[async_trait]
impl TenantRegistry for PgStore {
    async fn insert_tenant(
        &self,
        scope: &TenantScope,
        tenant: &Tenant,
        owner: Option<&KeyRecord>,
        audit: AuditDraft,
    ) -> Result<()> {
        if scope.tenant_id() != &tenant.id {
            return Err(Error::internal("tenant differs from its scope"));
        }
        let _turn = self.turn(&tenant.id).await;
        if tenant.placement == Placement::Dedicated {
            return self.insert_dedicated(tenant, owner, audit).await;
        }
        let mut conn = self.conn_of(&tenant.id).await?;
        let tx = begin(&mut conn, &tenant.id).await?;
        write_tenant_tx(&tx, tenant, true).await?;
        insert_own_rows_tx(&tx, tenant, owner, audit).await?;
        commit(tx).await
    }

    async fn update_tenant(&self, scope: &TenantScope, tenant: &Tenant, journal: Journal) -> Result<()> {
        if scope.tenant_id() != &tenant.id {
            return Err(Error::internal("tenant differs from its scope"));
        }
        let _turn = self.turn(&tenant.id).await;
        // Its usage row first, as every write of it (a move's fence holds it: waiting there
        // holds nothing the move needs); then, for a dedicated tenant, its registry row, held
        // until its own database has committed: the slug and domains are checked against every
        // tenant's there (see `insert_dedicated`).
        let mut conn = self.conn_of(&tenant.id).await?;
        let tx = begin(&mut conn, &tenant.id).await?;
        lock_usage(&self.places, &tx, &tenant.id).await?;
        let mut registry_conn = match self.places.is_dedicated(&tenant.id) {
            true => Some(self.shared_conn().await?),
            false => None,
        };
        let registry = match registry_conn.as_mut() {
            Some(conn) => {
                let registry = begin(conn, &tenant.id).await?;
                write_tenant_tx(&registry, tenant, false).await?;
                Some(registry)
            }
            None => None,
        };
        write_tenant_tx(&tx, tenant, false).await?;
        let mut published = Vec::new();
        journal_tx(&tx, &tenant.id, tenant.slug.as_str(), journal, &mut published).await?;
        commit(tx).await?;
        if let Some(registry) = registry {
            commit(registry).await?;
        }
        self.publish(&tenant.id, &published);
        Ok(())
    }

    async fn purge_tenant(&self, scope: &TenantScope) -> Result<()> {
        let tenant = scope.tenant_id();
        let _turn = self.turn(tenant).await;
        if self.places.is_dedicated(tenant) {
            // Its database goes whole, its connections (other nodes' too) closed; then what a
            // move that stopped may have left of it in the shared database, and its registry
            // rows. A purge cut short is finished by running it again.
            self.places.drop_database(tenant).await?;
            let mut conn = self.shared_conn().await?;
            let tx = begin(&mut conn, tenant).await?;
            // Waits for a metering flush holding its registry row, and keeps one from starting.
            tx.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", &[&tenant.as_str()])
                .await
                .map_err(pg_error)?;
            for table in PURGED {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&tenant.as_str()])
                    .await
                    .map_err(pg_error)?;
            }
            tx.execute("DELETE FROM tenants WHERE id = $1", &[&tenant.as_str()]).await.map_err(pg_error)?;
            return commit(tx).await;
        }
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        // The tenant's writes (upkeep's and other nodes' included) take its usage row first:
        // once the purge holds it, none is half way, and none starts until the rows are gone.
        // An import staging a batch holds its import's row: wait for those batches too.
        // FOR UPDATE, stronger than a write's lock. Then the registry row, which a metering
        // flush holds FOR KEY SHARE: in-flight flushes end first, and later ones find it gone.
        tx.execute("SELECT 1 FROM tenant_usage WHERE tenant_id = $1 FOR UPDATE", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
        tx.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", &[&tenant.as_str()]).await.map_err(pg_error)?;
        tx.execute("SELECT 1 FROM imports WHERE tenant_id = $1 FOR UPDATE", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
        for table in PURGED {
            tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&tenant.as_str()])
                .await
                .map_err(pg_error)?;
        }
        tx.execute("DELETE FROM tenants WHERE id = $1", &[&tenant.as_str()]).await.map_err(pg_error)?;
        commit(tx).await?;
        // A database of its own left by a move that stopped after switching back (none, mostly).
        if self.places.may_create() {
            self.places.drop_database(tenant).await?;
        }
        Ok(())
    }

    async fn insert_key(
        &self,
        scope: &TenantScope,
        key: &KeyRecord,
        max_keys: Option<u64>,
        journal: Journal,
    ) -> Result<()> {
        let tenant = scope.tenant_id();
        if &key.tenant_id != tenant {
            return Err(Error::internal("key's tenant differs from the scope"));
        }
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        if max_keys.is_some() {
            quota::one_more_key(usable_keys_tx(&tx, tenant, key.created_at).await?, max_keys)?;
        }
        insert_key_tx(&tx, key).await?;
        let mut published = Vec::new();
        journal_tx(&tx, tenant, scope.slug().as_str(), journal, &mut published).await?;
        if max_keys.is_some() {
            let usable = usable_keys_tx(&tx, tenant, key.created_at).await?;
            let warning = quota::key_warning(usable, max_keys).into_iter().collect();
            warnings_tx(&tx, tenant, scope.slug().as_str(), warning, &mut published).await?;
        }
        commit(tx).await?;
        self.announce_key_change(tenant, None).await;
        self.publish(tenant, &published);
        Ok(())
    }

    async fn revoke_key(&self, scope: &TenantScope, id: &KeyId, at: Timestamp, journal: Journal) -> Result<()> {
        let tenant = scope.tenant_id();
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        let n = tx
            .execute(
                "UPDATE keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                &[&tenant.as_str(), &id.as_str(), &at.millis()],
            )
            .await
            .map_err(pg_error)?;
        if n == 0 {
            return Err(Error::not_found(format!("key '{id}' not found")));
        }
        let mut published = Vec::new();
        journal_tx(&tx, tenant, scope.slug().as_str(), journal, &mut published).await?;
        commit(tx).await?;
        self.announce_key_change(tenant, Some((id, at))).await;
        self.publish(tenant, &published);
        Ok(())
    }

    async fn list_keys(&self, scope: &TenantScope) -> Result<Vec<KeyRecord>> {
        let tenant = scope.tenant_id();
        let rows = self
            .read_rows(
                tenant,
                &format!("SELECT {KEY_COLUMNS} FROM keys WHERE tenant_id = $1 ORDER BY created_at, id"),
                &[&tenant.as_str()],
            )
            .await?;
        rows.iter().map(key_from_row).collect()
    }
}
