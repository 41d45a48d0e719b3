//! Webhooks, their outbox and their delivery log. The outbox rows are written by `journal` in the
//! change's transaction; the worker takes due rows here, and each attempt's outcome (log line,
//! reschedule or completion, failure count, disabling) is recorded in one transaction.

use crate::error::corrupt;
use crate::error::sql_error;
use crate::journal::journal_tx;
use crate::store::SqliteStore;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use tenantry_core::events::Journal;
use tenantry_core::ids::{TenantId, WebhookId};
use tenantry_core::store::{AttemptReport, DueDelivery, NewWebhookRecord, TenantScope, WebhookStore};
use tenantry_core::time::Timestamp;
use tenantry_core::webhook::{DeliveryAttempt, Webhook};
use tenantry_core::{Error, Result};

const COLUMNS: &str =
    "id, url, events, path_glob, enabled, disabled_reason, consecutive_failures, created_at, created_by";

fn webhook_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Webhook>> {
    let (id, url, events): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (glob, enabled, reason): (Option<String>, bool, Option<String>) = (r.get(3)?, r.get(4)?, r.get(5)?);
    let (failures, created, by): (i64, i64, String) = (r.get(6)?, r.get(7)?, r.get(8)?);
    Ok((|| {
        Ok(Webhook {
            id: WebhookId::parse(&id).ok_or_else(|| corrupt("webhook id"))?,
            url,
            events: serde_json::from_str(&events).map_err(|_| corrupt("webhook events"))?,
            path_glob: glob,
            enabled,
            disabled_reason: reason,
            consecutive_failures: failures.clamp(0, u32::MAX as i64) as u32,
            created_at: Timestamp::from_millis(created),
            created_by: by,
        })
    })())
}

/// The `type` of a queued delivery body.
fn event_type_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_webhook(
        &self,
        scope: &TenantScope,
        record: NewWebhookRecord,
        max: usize,
        journal: Journal,
    ) -> Result<()> {
        let scope = scope.clone();
        let tenant_for_hooks = scope.tenant_id().clone();
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let tenant = scope.tenant_id();
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM webhooks WHERE tenant_id = ?1")
                .and_then(|mut s| s.query_row([tenant.as_str()], |r| r.get(0)))
                .map_err(sql_error)?;
            tenantry_core::quota::one_more_webhook(count.max(0) as u64, max)?;
            let h = &record.hook;
            let events = serde_json::to_string(&h.events).map_err(|e| Error::internal(e.to_string()))?;
            tx.prepare_cached(&format!(
                "INSERT INTO webhooks ({COLUMNS}, tenant_id, secret) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    h.id.as_str(),
                    h.url,
                    events,
                    h.path_glob,
                    h.enabled,
                    h.disabled_reason,
                    h.consecutive_failures,
                    h.created_at.millis(),
                    h.created_by,
                    tenant.as_str(),
                    record.secret
                ])
            })
            .map_err(sql_error)?;
            journal_tx(tx, tenant, scope.slug().as_str(), journal, published)
        })
        .await?;
        self.routes.set_hooked(&tenant_for_hooks);
        Ok(())
    }

    async fn list_webhooks(&self, scope: &TenantScope) -> Result<Vec<Webhook>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            let mut s = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks WHERE tenant_id = ?1 ORDER BY created_at, id"))
                .map_err(sql_error)?;
            let rows = s.query_map([tenant.as_str()], webhook_from_row).map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }

    async fn webhook_secrets(&self, scope: &TenantScope) -> Result<Vec<(WebhookId, String)>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            let mut s = conn
                .prepare_cached("SELECT id, secret FROM webhooks WHERE tenant_id = ?1 ORDER BY created_at, id")
                .map_err(sql_error)?;
            let rows = s
                .query_map([tenant.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, secret) = row.map_err(sql_error)?;
                out.push((WebhookId::parse(&id).ok_or_else(|| corrupt("webhook id"))?, secret));
            }
            Ok(out)
        })
        .await
    }

    async fn get_webhook(&self, scope: &TenantScope, id: &WebhookId) -> Result<Option<Webhook>> {
        let (tenant, id) = (scope.tenant_id().clone(), id.clone());
        self.read_of(&tenant.clone(), move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks WHERE tenant_id = ?1 AND id = ?2"))
                .and_then(|mut s| s.query_row(params![tenant.as_str(), id.as_str()], webhook_from_row).optional())
                .map_err(sql_error)?
                .transpose()
        })
        .await
    }

    async fn set_webhook_enabled(&self, scope: &TenantScope, id: &WebhookId, enabled: bool) -> Result<()> {
        let (tenant, id) = (scope.tenant_id().clone(), id.clone());
        self.write_of(&tenant.clone(), move |tx| {
            let n = tx
                .execute(
                    "UPDATE webhooks SET enabled = ?3,
                       disabled_reason = CASE WHEN ?3 THEN NULL ELSE 'disabled by an admin' END,
                       consecutive_failures = CASE WHEN ?3 THEN 0 ELSE consecutive_failures END
                     WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant.as_str(), id.as_str(), enabled],
                )
                .map_err(sql_error)?;
            if n == 0 {
                return Err(Error::not_found(format!("webhook '{id}' not found")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_webhook(&self, scope: &TenantScope, id: &WebhookId, journal: Journal) -> Result<()> {
        let (scope, id) = (scope.clone(), id.clone());
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let tenant = scope.tenant_id();
            let n = tx
                .execute("DELETE FROM webhooks WHERE tenant_id = ?1 AND id = ?2", params![tenant.as_str(), id.as_str()])
                .map_err(sql_error)?;
            if n == 0 {
                return Err(Error::not_found(format!("webhook '{id}' not found")));
            }
            for table in ["webhook_outbox", "webhook_attempts"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE tenant_id = ?1 AND webhook_id = ?2"),
                    params![tenant.as_str(), id.as_str()],
                )
                .map_err(sql_error)?;
            }
            journal_tx(tx, tenant, scope.slug().as_str(), journal, published)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        scope: &TenantScope,
        id: &WebhookId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>> {
        let (tenant, id) = (scope.tenant_id().clone(), id.clone());
        self.read_of(&tenant.clone(), move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT id, delivery_id, event_seq, event_type, attempt, status, latency_ms, error, outcome, at
                     FROM webhook_attempts WHERE tenant_id = ?1 AND webhook_id = ?2 AND id < ?3
                     ORDER BY id DESC LIMIT ?4",
                )
                .map_err(sql_error)?;
            let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
            let rows = s
                .query_map(params![tenant.as_str(), id.as_str(), before, limit as i64], |r| {
                    Ok(DeliveryAttempt {
                        id: r.get::<_, i64>(0)? as u64,
                        event_seq: r.get::<_, i64>(2)? as u64,
                        event_type: r.get(3)?,
                        attempt: r.get::<_, i64>(4)?.clamp(0, u32::MAX as i64) as u32,
                        status: r.get::<_, Option<i64>>(5)?.map(|s| s.clamp(0, 999) as u16),
                        latency_ms: r.get::<_, i64>(6)?.max(0) as u64,
                        error: r.get(7)?,
                        outcome: r.get(8)?,
                        at: Timestamp::from_millis(r.get(9)?),
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_error)
        })
        .await
    }
}

/// Cross-tenant upkeep (see `upkeep`): not reachable through a request's scope.
impl SqliteStore {
    pub(crate) async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        per_tenant: usize,
    ) -> Result<Vec<DueDelivery>> {
        let mut all = self
            .webhook_read(move |conn| {
                // The oldest few of each tenant, so one tenant's backlog never hides another's.
                let mut s = conn
                    .prepare_cached(
                        "SELECT id, tenant_id, webhook_id, url, secret, event, attempts FROM (
                       SELECT o.id, o.tenant_id, o.webhook_id, w.url, w.secret, o.event, o.attempts, o.next_attempt_at,
                         row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.next_attempt_at, o.id) AS nth
                       FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id AND w.tenant_id = o.tenant_id
                       WHERE o.next_attempt_at IS NOT NULL AND o.next_attempt_at <= ?1 AND w.enabled = 1)
                     WHERE nth <= ?3 ORDER BY next_attempt_at, id LIMIT ?2",
                    )
                    .map_err(sql_error)?;
                let rows = s
                    .query_map(params![now.millis(), limit as i64, per_tenant as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    })
                    .map_err(sql_error)?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, tenant, webhook, url, secret, body, attempts) = row.map_err(sql_error)?;
                    out.push(DueDelivery {
                        id: id as u64,
                        tenant_id: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant id"))?,
                        webhook_id: WebhookId::parse(&webhook).ok_or_else(|| corrupt("webhook id"))?,
                        url,
                        secret,
                        event_type: event_type_of(&body),
                        body,
                        attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                    });
                }
                Ok(out)
            })
            .await?;
        let mut due: Vec<DueDelivery> = all.drain(..).flatten().collect();
        due.truncate(limit);
        Ok(due)
    }

    pub(crate) async fn claim_delivery(
        &self,
        tenant: &TenantId,
        id: u64,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool> {
        let t = tenant.clone();
        self.write_of(tenant, move |tx| {
            let claimed = tx
                .prepare_cached(
                    "UPDATE webhook_outbox SET next_attempt_at = ?4
                     WHERE id = ?1 AND tenant_id = ?2 AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?3",
                )
                .and_then(|mut s| s.execute(params![id as i64, t.as_str(), now.millis(), lease_until.millis()]))
                .map_err(sql_error)?;
            Ok(claimed == 1)
        })
        .await
    }

    pub(crate) async fn record_attempt(&self, report: AttemptReport) -> Result<()> {
        self.write_of(&report.tenant_id.clone(), move |tx| {
            let row: Option<(String, String, i64, String, i64)> = tx
                .prepare_cached("SELECT tenant_id, webhook_id, event_seq, event, attempts FROM webhook_outbox WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row([report.delivery_id as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()
                })
                .map_err(sql_error)?;
            // Gone meanwhile (the webhook was deleted): nothing to record.
            let Some((tenant, webhook, seq, body, attempts)) = row else { return Ok(()) };
            let event_type = event_type_of(&body);
            let outcome = match (report.delivered, report.retry_at) {
                (true, _) => "delivered",
                (false, Some(_)) => "retrying",
                (false, None) => "failed",
            };
            tx.prepare_cached(
                "INSERT INTO webhook_attempts (tenant_id, webhook_id, delivery_id, event_seq, event_type, attempt, status,
                   latency_ms, error, outcome, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    tenant,
                    webhook,
                    report.delivery_id as i64,
                    seq,
                    event_type,
                    attempts + 1,
                    report.status.map(i64::from),
                    report.latency_ms.min(i64::MAX as u64) as i64,
                    report.error,
                    outcome,
                    report.at.millis()
                ])
            })
            .map_err(sql_error)?;
            match (report.delivered, report.retry_at) {
                (false, Some(at)) => tx
                    .execute(
                        "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1",
                        params![report.delivery_id as i64, at.millis()],
                    )
                    .map_err(sql_error)?,
                _ => tx
                    .execute("DELETE FROM webhook_outbox WHERE id = ?1", [report.delivery_id as i64])
                    .map_err(sql_error)?,
            };
            if report.delivered {
                tx.execute(
                    "UPDATE webhooks SET consecutive_failures = 0 WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, webhook],
                )
                .map_err(sql_error)?;
            } else {
                tx.execute(
                    "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1,
                       enabled = CASE WHEN consecutive_failures + 1 >= ?3 THEN 0 ELSE enabled END,
                       disabled_reason = CASE WHEN consecutive_failures + 1 >= ?3
                         THEN 'disabled after ' || (consecutive_failures + 1) || ' consecutive failed attempts'
                         ELSE disabled_reason END
                     WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, webhook, i64::from(report.disable_after.max(1))],
                )
                .map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn next_delivery_at(&self) -> Result<Option<Timestamp>> {
        let all = self
            .webhook_read(|conn| {
                conn.prepare_cached(
                    "SELECT min(o.next_attempt_at) FROM webhook_outbox o JOIN webhooks w
                   ON w.id = o.webhook_id AND w.tenant_id = o.tenant_id
                 WHERE o.next_attempt_at IS NOT NULL AND w.enabled = 1",
                )
                .and_then(|mut s| s.query_row([], |r| r.get::<_, Option<i64>>(0)))
                .map(|t| t.map(Timestamp::from_millis))
                .map_err(sql_error)
            })
            .await?;
        Ok(all.into_iter().flatten().min())
    }
}
