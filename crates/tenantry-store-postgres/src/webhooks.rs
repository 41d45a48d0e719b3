//! Webhooks and their delivery log, per tenant. The outbox rows are written by `journal` in the
//! change's transaction; the delivery worker's side (due deliveries across tenants, recording an
//! attempt, the next due time) is `Upkeep`, in `upkeep`. Also the rows other modules write and
//! read whole (imports, moves): [`insert_webhook_row_tx`] and [`webhook_rows_tx`].

use crate::error::{corrupt, pg_error};
use crate::journal::journal_tx;
use crate::store::{begin, commit, lock_usage, PgStore};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tenantry_core::events::Journal;
use tenantry_core::ids::{TenantId, WebhookId};
use tenantry_core::store::{NewWebhookRecord, TenantScope, WebhookStore};
use tenantry_core::time::Timestamp;
use tenantry_core::webhook::{DeliveryAttempt, Webhook};
use tenantry_core::{Error, Result};
use tokio_postgres::Row;

/// The columns [`webhook_from_row`] reads, in its order.
const COLUMNS: &str =
    "id, url, events, path_glob, enabled, disabled_reason, consecutive_failures, created_at, created_by";

fn webhook_from_row(r: &Row) -> Result<Webhook> {
    let id: String = r.get::<_, String>(0);
    let events: String = r.get::<_, String>(2);
    let failures: i32 = r.get::<_, i32>(6);
    Ok(Webhook {
        id: WebhookId::parse(&id).ok_or_else(|| corrupt("webhook id"))?,
        url: r.get::<_, String>(1),
        events: serde_json::from_str(&events).map_err(|_| corrupt("webhook events"))?,
        path_glob: r.get::<_, Option<String>>(3),
        enabled: r.get::<_, bool>(4),
        disabled_reason: r.get::<_, Option<String>>(5),
        consecutive_failures: failures.max(0) as u32,
        created_at: Timestamp::from_millis(r.get::<_, i64>(7)),
        created_by: r.get::<_, String>(8),
    })
}

/// The `type` of a queued delivery body (empty if it has none).
pub(crate) fn event_type_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// Inserts a webhook row as given (its failure count, enabled flag and reason included) with its
/// signing secret. The limit and the journal are the caller's; a webhook id the tenant already
/// has is a `conflict`.
pub(crate) async fn insert_webhook_row_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    hook: &Webhook,
    secret: &str,
) -> Result<()> {
    let events: String = serde_json::to_string(&hook.events).map_err(|e| Error::internal(e.to_string()))?;
    let failures: i32 = i32::try_from(hook.consecutive_failures).unwrap_or(i32::MAX);
    let created_at: i64 = hook.created_at.millis();
    tx.execute(
        "INSERT INTO webhooks (tenant_id, id, url, events, path_glob, secret, enabled, disabled_reason,
           consecutive_failures, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &tenant.as_str(),
            &hook.id.as_str(),
            &hook.url,
            &events,
            &hook.path_glob,
            &secret,
            &hook.enabled,
            &hook.disabled_reason,
            &failures,
            &created_at,
            &hook.created_by,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Every webhook of the tenant with its signing secret, by id (byte order).
pub(crate) async fn webhook_rows_tx(tx: &Transaction<'_>, tenant: &TenantId) -> Result<Vec<(Webhook, String)>> {
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS}, secret FROM webhooks WHERE tenant_id = $1 ORDER BY id COLLATE \"C\""),
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_error)?;
    rows.iter().map(|r| -> Result<(Webhook, String)> { Ok((webhook_from_row(r)?, r.get::<_, String>(9))) }).collect()
}

fn webhook_not_found(id: &WebhookId) -> Error {
    Error::not_found(format!("webhook '{id}' not found"))
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn insert_webhook(
        &self,
        scope: &TenantScope,
        record: NewWebhookRecord,
        max: usize,
        journal: Journal,
    ) -> Result<()> {
        let tenant = scope.tenant_id();
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        let count: i64 = tx
            .query_one("SELECT count(*) FROM webhooks WHERE tenant_id = $1", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?
            .get::<_, i64>(0);
        tenantry_core::quota::one_more_webhook(count.max(0) as u64, max)?;
        insert_webhook_row_tx(&tx, tenant, &record.hook, &record.secret).await?;
        let mut published = Vec::new();
        journal_tx(&tx, tenant, scope.slug().as_str(), journal, &mut published).await?;
        commit(tx).await?;
        self.publish(tenant, &published);
        Ok(())
    }

    async fn list_webhooks(&self, scope: &TenantScope) -> Result<Vec<Webhook>> {
        let tenant = scope.tenant_id();
        let rows = self
            .read_rows(
                tenant,
                &format!("SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id COLLATE \"C\""),
                &[&tenant.as_str()],
            )
            .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn webhook_secrets(&self, scope: &TenantScope) -> Result<Vec<(WebhookId, String)>> {
        let tenant = scope.tenant_id();
        let rows = self
            .read_rows(
                tenant,
                "SELECT id, secret FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id COLLATE \"C\"",
                &[&tenant.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| -> Result<(WebhookId, String)> {
                let id: String = r.get::<_, String>(0);
                Ok((WebhookId::parse(&id).ok_or_else(|| corrupt("webhook id"))?, r.get::<_, String>(1)))
            })
            .collect()
    }

    async fn get_webhook(&self, scope: &TenantScope, id: &WebhookId) -> Result<Option<Webhook>> {
        let tenant = scope.tenant_id();
        let row = self
            .read_row(
                tenant,
                &format!("SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 AND id = $2"),
                &[&tenant.as_str(), &id.as_str()],
            )
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    async fn set_webhook_enabled(&self, scope: &TenantScope, id: &WebhookId, enabled: bool) -> Result<()> {
        let tenant = scope.tenant_id();
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        let n = tx
            .execute(
                "UPDATE webhooks SET enabled = $3::boolean,
                   disabled_reason = CASE WHEN $3::boolean THEN NULL ELSE 'disabled by an admin' END,
                   consecutive_failures = CASE WHEN $3::boolean THEN 0 ELSE consecutive_failures END
                 WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &id.as_str(), &enabled],
            )
            .await
            .map_err(pg_error)?;
        if n == 0 {
            return Err(webhook_not_found(id));
        }
        commit(tx).await
    }

    async fn delete_webhook(&self, scope: &TenantScope, id: &WebhookId, journal: Journal) -> Result<()> {
        let tenant = scope.tenant_id();
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        let n = tx
            .execute("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2", &[&tenant.as_str(), &id.as_str()])
            .await
            .map_err(pg_error)?;
        if n == 0 {
            return Err(webhook_not_found(id));
        }
        for sql in [
            "DELETE FROM webhook_outbox WHERE tenant_id = $1 AND webhook_id = $2",
            "DELETE FROM webhook_attempts WHERE tenant_id = $1 AND webhook_id = $2",
        ] {
            tx.execute(sql, &[&tenant.as_str(), &id.as_str()]).await.map_err(pg_error)?;
        }
        let mut published = Vec::new();
        journal_tx(&tx, tenant, scope.slug().as_str(), journal, &mut published).await?;
        commit(tx).await?;
        self.publish(tenant, &published);
        Ok(())
    }

    async fn list_deliveries(
        &self,
        scope: &TenantScope,
        id: &WebhookId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>> {
        let tenant = scope.tenant_id();
        let before: i64 = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let limit: i64 = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .read_rows(
                tenant,
                "SELECT n, delivery_id, event_seq, event_type, attempt, status, latency_ms, error, outcome, at
             FROM webhook_attempts WHERE tenant_id = $1 AND webhook_id = $2 AND n < $3
             ORDER BY n DESC LIMIT $4",
                &[&tenant.as_str(), &id.as_str(), &before, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryAttempt {
                id: r.get::<_, i64>(0).max(0) as u64,
                event_seq: r.get::<_, i64>(2).max(0) as u64,
                event_type: r.get::<_, String>(3),
                attempt: r.get::<_, i32>(4).max(0) as u32,
                status: r.get::<_, Option<i32>>(5).map(|s| s.clamp(0, 999) as u16),
                latency_ms: r.get::<_, i64>(6).max(0) as u64,
                error: r.get::<_, Option<String>>(7),
                outcome: r.get::<_, String>(8),
                at: Timestamp::from_millis(r.get::<_, i64>(9)),
            })
            .collect())
    }
}
