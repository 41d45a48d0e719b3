//! tenantry-core's `Upkeep` on SQLite: the background work that spans tenants (loading the
//! directory, metering, pruning, expiry, webhook deliveries). Each method's SQL lives with its
//! capability; this is only where the trait is implemented, apart from the traits a request
//! reaches through its `TenantScope`.

use crate::store::SqliteStore;
use async_trait::async_trait;
use tenantry_core::ids::TenantId;
use tenantry_core::model::{KeyRecord, Tenant};
use tenantry_core::store::{AttemptReport, AuditPruned, DueDelivery, RelayPosition, TenantScope, Upkeep};
use tenantry_core::time::Timestamp;
use tenantry_core::usage::Counters;
use tenantry_core::Result;

#[async_trait]
impl Upkeep for SqliteStore {
    async fn load_directory(&self) -> Result<(Vec<Tenant>, Vec<KeyRecord>)> {
        SqliteStore::load_directory(self).await
    }

    async fn load_tenant_directory(&self, tenant: &TenantId) -> Result<Option<(Tenant, Vec<KeyRecord>)>> {
        SqliteStore::load_tenant_directory(self, tenant).await
    }

    async fn add_usage(&self, batch: Vec<(TenantId, i64, Counters)>) -> Result<()> {
        SqliteStore::add_usage(self, batch).await
    }

    async fn calls_between(&self, from_day: i64, to_day: i64) -> Result<Vec<(TenantId, u64)>> {
        SqliteStore::calls_between(self, from_day, to_day).await
    }

    async fn prune_events(&self, before: Timestamp, relay: Option<&str>) -> Result<u64> {
        SqliteStore::prune_events(self, before, relay).await
    }

    async fn claim_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<RelayPosition>> {
        SqliteStore::claim_relay(self, scope, relay, holder, now, lease_until).await
    }

    async fn advance_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        seq: u64,
        lease_until: Timestamp,
    ) -> Result<bool> {
        SqliteStore::advance_relay(self, scope, relay, holder, seq, lease_until).await
    }

    async fn prune_audit(&self, scope: &TenantScope, before: Timestamp, max: usize) -> Result<AuditPruned> {
        SqliteStore::prune_audit(self, scope, before, max).await
    }

    async fn reclaim_expired_memory(&self, now: Timestamp, limit: usize) -> Result<u64> {
        SqliteStore::reclaim_expired_memory(self, now, limit).await
    }

    async fn due_deliveries(&self, now: Timestamp, limit: usize, per_tenant: usize) -> Result<Vec<DueDelivery>> {
        SqliteStore::due_deliveries(self, now, limit, per_tenant).await
    }

    async fn record_attempt(&self, report: AttemptReport) -> Result<()> {
        SqliteStore::record_attempt(self, report).await
    }

    async fn next_delivery_at(&self) -> Result<Option<Timestamp>> {
        SqliteStore::next_delivery_at(self).await
    }

    async fn claim_delivery(&self, tenant: &TenantId, id: u64, now: Timestamp, lease_until: Timestamp) -> Result<bool> {
        SqliteStore::claim_delivery(self, tenant, id, now, lease_until).await
    }
}
