//! What every change writes beside itself, in its transaction: the audit entry (chained to the
//! tenant's head), the event (the tenant's next seq) and its webhook deliveries.

use crate::error::{corrupt, pg_error};
use deadpool_postgres::Transaction;
use tenantry_core::audit::next_entry;
use tenantry_core::events::{Event, EventDraft, Journal};
use tenantry_core::ids::TenantId;
use tenantry_core::model::AuditDraft;
use tenantry_core::time::{Clock, SystemClock};
use tenantry_core::webhook::wants;
use tenantry_core::{Error, Result};

/// Writes the journal of a change; its event joins `published`.
pub(crate) async fn journal_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    journal: Journal,
    published: &mut Vec<Event>,
) -> Result<()> {
    append_audit_tx(tx, tenant, slug, journal.audit).await?;
    if let Some(draft) = journal.event {
        event_tx(tx, tenant, slug, draft, published).await?;
    }
    Ok(())
}

/// Writes the `quota.warning` events a change raises, after its own event.
pub(crate) async fn warnings_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    warnings: Vec<EventDraft>,
    published: &mut Vec<Event>,
) -> Result<()> {
    for draft in warnings {
        event_tx(tx, tenant, slug, draft, published).await?;
    }
    Ok(())
}

/// Appends one audit entry after the tenant's head (its `tenant_usage` row holds the head).
pub(crate) async fn append_audit_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    draft: AuditDraft,
) -> Result<()> {
    let row = tx
        .query_one(
            "SELECT audit_seq, audit_head FROM tenant_usage WHERE tenant_id = $1 FOR NO KEY UPDATE",
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_error)?;
    let (seq, head): (i64, String) = (row.get(0), row.get(1));
    let prev = (seq > 0).then_some((seq as u64, head.as_str()));
    let entry = next_entry(prev, slug, draft, SystemClock.now());
    tx.execute(
        "INSERT INTO audit (tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &tenant.as_str(),
            &(entry.seq as i64),
            &entry.at.millis(),
            &entry.tenant,
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.result,
            &entry.request_id,
            &entry.ip,
            &entry.prev_hash,
            &entry.hash,
        ],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "UPDATE tenant_usage SET audit_seq = $2, audit_head = $3 WHERE tenant_id = $1",
        &[&tenant.as_str(), &(entry.seq as i64), &entry.hash],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Numbers and writes one event (the tenant's next seq), and queues its webhook deliveries.
pub(crate) async fn event_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    draft: EventDraft,
    published: &mut Vec<Event>,
) -> Result<()> {
    let seq: i64 = tx
        .query_one(
            "UPDATE tenant_usage SET last_event_seq = last_event_seq + 1 WHERE tenant_id = $1 RETURNING last_event_seq",
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    let event = draft.into_event(seq as u64, SystemClock.now());
    let detail = event.detail.as_ref().map(|d| d.to_string());
    tx.execute(
        "INSERT INTO events (tenant_id, seq, type, path, namespace, key, detail, actor, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &tenant.as_str(),
            &seq,
            &event.kind,
            &event.path,
            &event.namespace,
            &event.key,
            &detail,
            &event.actor,
            &event.at.millis(),
        ],
    )
    .await
    .map_err(pg_error)?;
    queue_deliveries_tx(tx, tenant, slug, &event).await?;
    published.push(event);
    Ok(())
}

/// The outbox: one row per enabled webhook of the tenant that wants the event.
async fn queue_deliveries_tx(tx: &Transaction<'_>, tenant: &TenantId, slug: &str, event: &Event) -> Result<()> {
    let hooks = tx
        .query("SELECT id, events, path_glob FROM webhooks WHERE tenant_id = $1 AND enabled", &[&tenant.as_str()])
        .await
        .map_err(pg_error)?;
    if hooks.is_empty() {
        return Ok(());
    }
    let mut body = serde_json::to_value(event).map_err(|e| Error::internal(e.to_string()))?;
    body["tenant"] = serde_json::Value::String(slug.to_owned());
    let body = body.to_string();
    for hook in hooks {
        let (id, events, glob): (String, String, Option<String>) = (hook.get(0), hook.get(1), hook.get(2));
        let events: Vec<String> = serde_json::from_str(&events).map_err(|_| corrupt("webhook events"))?;
        if !wants(&events, glob.as_deref(), event) {
            continue;
        }
        tx.execute(
            "INSERT INTO webhook_outbox (tenant_id, webhook_id, event_seq, event, attempts, next_attempt_at)
             VALUES ($1, $2, $3, $4, 0, $5)",
            &[&tenant.as_str(), &id, &(event.seq as i64), &body, &event.at.millis()],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}
