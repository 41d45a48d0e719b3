//! What every change writes beside itself, inside its transaction: the audit entry, the event
//! (numbered from the tenant's counter) and one outbox row per webhook that wants the event.
//! The events are handed to the sinks only after the commit, on the writer thread, so they reach
//! subscribers in commit order and never before they are durable.

use crate::audit::append_audit_tx;
use crate::error::sql_error;
use crate::sinks::Published;
use crate::tails::Log;
use rusqlite::{params, Connection};
use tenantry_core::events::{Event, EventDraft, Journal};
use tenantry_core::ids::TenantId;
use tenantry_core::time::{Clock, SystemClock};
use tenantry_core::Result;

/// Writes the journal of a change inside its transaction.
pub(crate) fn journal_tx(
    tx: &Connection,
    tenant: &TenantId,
    slug: &str,
    journal: Journal,
    published: &Published,
) -> Result<()> {
    append_audit_tx(tx, tenant, slug, journal.audit)?;
    match journal.event {
        Some(draft) => event_tx(tx, tenant, slug, draft, published),
        None => Ok(()),
    }
}

/// Writes the `quota.warning` events the core decided a change raises, after its own event.
pub(crate) fn quota_warnings_tx(
    tx: &Connection,
    tenant: &TenantId,
    slug: &str,
    warnings: Vec<EventDraft>,
    published: &Published,
) -> Result<()> {
    for draft in warnings {
        event_tx(tx, tenant, slug, draft, published)?;
    }
    Ok(())
}

/// Numbers and writes one event, and queues its webhook deliveries.
pub(crate) fn event_tx(
    tx: &Connection,
    tenant: &TenantId,
    slug: &str,
    draft: EventDraft,
    published: &Published,
) -> Result<()> {
    let seq = crate::counters::next_event_seq_tx(tx, tenant)?;
    let event = draft.into_event(seq as u64, SystemClock.now());
    let detail = event.detail.as_ref().map(|d| d.to_string());
    // A dense tenant of the group with nothing in the tail skips it (see `tails`); either way its
    // seq is the counter's.
    let table = if crate::tails::events_direct(tenant) { Log::Events.keyed() } else { Log::Events.tail() };
    tx.prepare_cached(&format!(
        "INSERT INTO {table} (tenant_id, seq, type, path, namespace, key, detail, actor, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            tenant.as_str(),
            seq,
            event.kind,
            event.path,
            event.namespace,
            event.key,
            detail,
            event.actor,
            event.at.millis()
        ])
    })
    .map_err(sql_error)?;
    queue_deliveries_tx(tx, tenant, slug, &event)?;
    published.push(event);
    Ok(())
}

/// The outbox: one row per enabled webhook of the tenant that wants the event.
fn queue_deliveries_tx(tx: &Connection, tenant: &TenantId, slug: &str, event: &Event) -> Result<()> {
    let hooks: Vec<(String, String, Option<String>)> = {
        let mut s = tx
            .prepare_cached("SELECT id, events, path_glob FROM webhooks WHERE tenant_id = ?1 AND enabled = 1")
            .map_err(sql_error)?;
        let rows = s.query_map([tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(sql_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql_error)?
    };
    if hooks.is_empty() {
        return Ok(());
    }
    let mut body = serde_json::to_value(event).map_err(|e| tenantry_core::Error::internal(e.to_string()))?;
    body["tenant"] = serde_json::Value::String(slug.to_owned());
    let body = body.to_string();
    for (id, events, path_glob) in hooks {
        let events: Vec<String> = serde_json::from_str(&events).map_err(|_| crate::error::corrupt("webhook events"))?;
        if tenantry_core::webhook::wants(&events, path_glob.as_deref(), event) {
            tx.prepare_cached(
                "INSERT INTO webhook_outbox (tenant_id, webhook_id, event_seq, event, attempts, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            )
            .and_then(|mut s| s.execute(params![tenant.as_str(), id, event.seq as i64, body, event.at.millis()]))
            .map_err(sql_error)?;
        }
    }
    Ok(())
}
