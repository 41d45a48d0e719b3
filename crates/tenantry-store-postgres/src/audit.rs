//! The audit log: each tenant's hash chain (appended by `journal`), its listing and its anchor.

use crate::journal::append_audit_tx;
use crate::store::{begin, commit, lock_usage, PgStore};
use async_trait::async_trait;
use tenantry_core::audit::AuditAnchor;
use tenantry_core::model::{AuditDraft, AuditEntry};
use tenantry_core::store::{AuditLog, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::Result;
use tokio_postgres::Row;

pub(crate) const AUDIT_COLUMNS: &str =
    "seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash";

pub(crate) fn audit_from_row(r: &Row) -> AuditEntry {
    AuditEntry {
        seq: r.get::<_, i64>(0) as u64,
        at: Timestamp::from_millis(r.get(1)),
        tenant: r.get(2),
        actor: r.get(3),
        action: r.get(4),
        target: r.get(5),
        result: r.get(6),
        request_id: r.get(7),
        ip: r.get(8),
        prev_hash: r.get(9),
        hash: r.get(10),
    }
}

#[async_trait]
impl AuditLog for PgStore {
    async fn append_audit(&self, scope: &TenantScope, draft: AuditDraft) -> Result<()> {
        let tenant = scope.tenant_id();
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        append_audit_tx(&tx, tenant, scope.slug().as_str(), draft).await?;
        commit(tx).await
    }

    async fn list_audit(
        &self,
        scope: &TenantScope,
        after: u64,
        action: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let (after, limit) = (after.min(i64::MAX as u64) as i64, limit.min(i64::MAX as usize) as i64);
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE tenant_id = $1
             AND seq > GREATEST($2, COALESCE((SELECT seq FROM audit_anchor WHERE tenant_id = $1), 0))
             AND ($3::text IS NULL OR action = $3)
             ORDER BY seq LIMIT $4"
        );
        let tenant = scope.tenant_id();
        let rows = self.read_rows(tenant, &sql, &[&tenant.as_str(), &after, &action, &limit]).await?;
        Ok(rows.iter().map(audit_from_row).collect())
    }

    async fn audit_anchor(&self, scope: &TenantScope) -> Result<Option<AuditAnchor>> {
        let tenant = scope.tenant_id();
        let sql = "SELECT seq, hash, at FROM audit_anchor WHERE tenant_id = $1";
        let row = self.read_row(tenant, sql, &[&tenant.as_str()]).await?;
        Ok(row.map(|r| AuditAnchor {
            seq: r.get::<_, i64>(0) as u64,
            hash: r.get(1),
            at: Timestamp::from_millis(r.get(2)),
        }))
    }
}
