//! What every change writes beside itself, in its transaction: the audit entry (chained to the
//! tenant's head), the events (the tenant's next seqs) and their webhook deliveries.
//!
//! In two flights, whatever the number of rows: the tenant's heads and its enabled webhooks are
//! read together ([`Heads`], [`Hook`]; the heads under the tenant's row lock, which every write
//! holds), the rows are planned in memory ([`plan`]), and they are written together with the
//! heads' new values ([`write_planned`]; tokio-postgres pipelines the statements of futures
//! polled at once, and the server runs them in the order sent). A write that reads its own
//! rows in its first flight (a file's PUT) reads the heads there too and calls only the last two.

use crate::error::{corrupt, pg_error};
use deadpool_postgres::{GenericClient, Transaction};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tenantry_core::audit::next_entry;
use tenantry_core::events::{Event, EventDraft, Journal};
use tenantry_core::ids::TenantId;
use tenantry_core::model::{AuditDraft, AuditEntry};
use tenantry_core::time::{Clock, SystemClock, Timestamp};
use tenantry_core::webhook::wants;
use tenantry_core::{Error, Result};
use tokio_postgres::Row;

/// A statement on its way, for [`in_one_flight`].
pub(crate) type Pending<'a> = Pin<Box<dyn Future<Output = Result<u64>> + Send + 'a>>;

/// Where the tenant's audit chain and event seqs are (its `tenant_usage` row).
#[derive(Debug, Clone)]
pub(crate) struct Heads {
    pub audit_seq: i64,
    pub audit_head: String,
    pub last_event_seq: i64,
}

impl Heads {
    /// From columns `at`, `at + 1`, `at + 2` of a row selecting `audit_seq, audit_head,
    /// last_event_seq`.
    pub fn from_row(row: &Row, at: usize) -> Heads {
        Heads { audit_seq: row.get(at), audit_head: row.get(at + 1), last_event_seq: row.get(at + 2) }
    }
}

/// The heads, row-locked (as [`crate::store::lock_usage`] locks the row).
const HEADS: &str =
    "SELECT audit_seq, audit_head, last_event_seq FROM tenant_usage WHERE tenant_id = $1 FOR NO KEY UPDATE";

/// The tenant's enabled webhooks: what a journal's events are matched against.
pub(crate) const HOOKS: &str = "SELECT id, events, path_glob FROM webhooks WHERE tenant_id = $1 AND enabled";

/// An enabled webhook as its deliveries are decided.
pub(crate) struct Hook {
    id: String,
    events: Vec<String>,
    glob: Option<String>,
}

pub(crate) fn hooks_from_rows(rows: &[Row]) -> Result<Vec<Hook>> {
    rows.iter()
        .map(|r| {
            let events: String = r.get(1);
            Ok(Hook {
                id: r.get(0),
                events: serde_json::from_str(&events).map_err(|_| corrupt("webhook events"))?,
                glob: r.get(2),
            })
        })
        .collect()
}

/// The rows a journal writes, and the heads after them.
pub(crate) struct Planned {
    audit: Option<AuditEntry>,
    events: Vec<Event>,
    /// (webhook id, event seq, body, due at) per delivery.
    outbox: Vec<(String, i64, String, i64)>,
    pub heads: Heads,
}

impl Planned {
    /// The events written, for the sinks once committed.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }
}

/// Numbers, links and matches what a change journals: its audit entry after the chain's head,
/// its events (`warnings` after its own) at the next seqs, a delivery per enabled webhook that
/// wants each event.
pub(crate) fn plan(
    heads: &Heads,
    hooks: &[Hook],
    slug: &str,
    audit: Option<AuditDraft>,
    events: Vec<EventDraft>,
    now: Timestamp,
) -> Result<Planned> {
    let mut after = heads.clone();
    let audit = audit.map(|draft| {
        let prev = (heads.audit_seq > 0).then_some((heads.audit_seq as u64, heads.audit_head.as_str()));
        let entry = next_entry(prev, slug, draft, now);
        after.audit_seq = entry.seq as i64;
        after.audit_head = entry.hash.clone();
        entry
    });
    let mut numbered = Vec::with_capacity(events.len());
    let mut outbox = Vec::new();
    for draft in events {
        after.last_event_seq += 1;
        let event = draft.into_event(after.last_event_seq as u64, now);
        let wanted: Vec<&Hook> = hooks.iter().filter(|h| wants(&h.events, h.glob.as_deref(), &event)).collect();
        if !wanted.is_empty() {
            let mut body = serde_json::to_value(&event).map_err(|e| Error::internal(e.to_string()))?;
            body["tenant"] = serde_json::Value::String(slug.to_owned());
            let body = body.to_string();
            for hook in wanted {
                outbox.push((hook.id.clone(), event.seq as i64, body.clone(), event.at.millis()));
            }
        }
        numbered.push(event);
    }
    Ok(Planned { audit, events: numbered, outbox, heads: after })
}

/// What a change adds to the tenant's counters, written with its journal's heads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CounterDelta {
    pub storage_bytes: i64,
    pub files: i64,
    pub search_docs: i64,
    pub search_words: i64,
}

/// The last flight of a write sent in flights (`store::Flights`): its own `changes` (the rows
/// it writes, its search index's), then the journal `planned` with the tenant's row moved by
/// `delta`, and `COMMIT`. The caller then marks its flights committed and publishes the events.
pub(crate) async fn last_flight<'a, C: GenericClient>(
    tx: &'a C,
    tenant: &'a TenantId,
    mut changes: Vec<Pending<'a>>,
    planned: &'a Planned,
    delta: CounterDelta,
) -> Result<()> {
    changes.extend(planned_statements(tx, tenant, planned, delta).await?);
    changes.push(commit_statement(tx));
    in_one_flight(changes).await
}

/// The statements that write `planned` and move the tenant's row (heads and `delta`), for the
/// caller to send in one flight with its own.
pub(crate) async fn planned_statements<'a, C: GenericClient>(
    tx: &'a C,
    tenant: &'a TenantId,
    planned: &'a Planned,
    delta: CounterDelta,
) -> Result<Vec<Pending<'a>>> {
    let mut out: Vec<Pending<'a>> = Vec::new();
    let id = tenant.as_str();
    let usage = tx
        .prepare_cached(
            "UPDATE tenant_usage SET storage_bytes = storage_bytes + $2, files = files + $3,
                 search_docs = search_docs + $4, search_words = search_words + $5,
                 audit_seq = $6, audit_head = $7, last_event_seq = $8
             WHERE tenant_id = $1",
        )
        .await
        .map_err(pg_error)?;
    let h = &planned.heads;
    out.push(Box::pin(async move {
        tx.execute(
            &usage,
            &[
                &id,
                &delta.storage_bytes,
                &delta.files,
                &delta.search_docs,
                &delta.search_words,
                &h.audit_seq,
                &h.audit_head,
                &h.last_event_seq,
            ],
        )
        .await
        .map_err(pg_error)
    }));
    if let Some(e) = &planned.audit {
        let st = tx
            .prepare_cached(
                "INSERT INTO audit (tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip,
                                    prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .await
            .map_err(pg_error)?;
        out.push(Box::pin(async move {
            let (seq, at) = (e.seq as i64, e.at.millis());
            tx.execute(
                &st,
                &[
                    &id,
                    &seq,
                    &at,
                    &e.tenant,
                    &e.actor,
                    &e.action,
                    &e.target,
                    &e.result,
                    &e.request_id,
                    &e.ip,
                    &e.prev_hash,
                    &e.hash,
                ],
            )
            .await
            .map_err(pg_error)
        }));
    }
    if !planned.events.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO events (tenant_id, seq, type, path, namespace, key, detail, actor, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await
            .map_err(pg_error)?;
        for event in &planned.events {
            let st = st.clone();
            out.push(Box::pin(async move {
                let (seq, at) = (event.seq as i64, event.at.millis());
                let detail = event.detail.as_ref().map(|d| d.to_string());
                tx.execute(
                    &st,
                    &[&id, &seq, &event.kind, &event.path, &event.namespace, &event.key, &detail, &event.actor, &at],
                )
                .await
                .map_err(pg_error)
            }));
        }
    }
    if !planned.outbox.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO webhook_outbox (tenant_id, webhook_id, event_seq, event, attempts, next_attempt_at)
                 VALUES ($1, $2, $3, $4, 0, $5)",
            )
            .await
            .map_err(pg_error)?;
        for (hook, seq, body, due) in &planned.outbox {
            let st = st.clone();
            out.push(Box::pin(async move { tx.execute(&st, &[&id, hook, seq, body, due]).await.map_err(pg_error) }));
        }
    }
    Ok(out)
}

/// The `COMMIT` that ends a write's last flight (after a failed statement it rolls back).
pub(crate) fn commit_statement<C: GenericClient>(tx: &C) -> Pending<'_> {
    Box::pin(async move { tx.batch_execute("COMMIT").await.map(|_| 0).map_err(pg_error) })
}

/// Runs statements in one flight: each is polled once, in the order given, before any answer is
/// awaited, so all are sent at once and the server runs them in that order; then it waits for
/// every answer sent. The first failure in that order is returned (the one that aborted the
/// transaction: those after it fail for that reason, and a `COMMIT` among them rolls back). A
/// statement refused before it is sent (tokio-postgres checks its parameters first) stops the
/// flight there: the statements after it, a `COMMIT` included, are never sent, and the caller's
/// transaction is rolled back when it is dropped.
pub(crate) async fn in_one_flight(mut statements: Vec<Pending<'_>>) -> Result<()> {
    let mut outcomes: Vec<Option<Result<u64>>> = statements.iter().map(|_| None).collect();
    let mut sent = 0;
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (statement, outcome) in statements[..sent].iter_mut().zip(outcomes.iter_mut()) {
            if outcome.is_none() {
                match statement.as_mut().poll(cx) {
                    Poll::Ready(r) => *outcome = Some(r),
                    Poll::Pending => waiting = true,
                }
            }
        }
        while sent < statements.len() {
            let polled = statements[sent].as_mut().poll(cx);
            sent += 1;
            match polled {
                Poll::Pending => waiting = true,
                Poll::Ready(r) => {
                    let failed = r.is_err();
                    outcomes[sent - 1] = Some(r);
                    if failed {
                        statements.truncate(sent);
                        break;
                    }
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outcomes.into_iter().flatten().find_map(|r| r.err()).map_or(Ok(()), Err)
}

/// Writes the journal of a change (its audit entry and event, then `warnings`) in two flights;
/// its events join `published`. The tenant's row lock is taken here if the write has not taken
/// it yet.
pub(crate) async fn journal_with_warnings_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    journal: Journal,
    warnings: Vec<EventDraft>,
    published: &mut Vec<Event>,
) -> Result<()> {
    let events = journal.event.into_iter().chain(warnings).collect();
    write_journal_tx(tx, tenant, slug, Some(journal.audit), events, published).await
}

/// Writes the journal of a change; its event joins `published`.
pub(crate) async fn journal_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    journal: Journal,
    published: &mut Vec<Event>,
) -> Result<()> {
    journal_with_warnings_tx(tx, tenant, slug, journal, Vec::new(), published).await
}

/// Writes the `quota.warning` events a change raises, after its own event.
pub(crate) async fn warnings_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    warnings: Vec<EventDraft>,
    published: &mut Vec<Event>,
) -> Result<()> {
    if warnings.is_empty() {
        return Ok(());
    }
    write_journal_tx(tx, tenant, slug, None, warnings, published).await
}

/// Appends one audit entry after the tenant's head.
pub(crate) async fn append_audit_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    draft: AuditDraft,
) -> Result<()> {
    write_journal_tx(tx, tenant, slug, Some(draft), Vec::new(), &mut Vec::new()).await
}

/// Numbers and writes one event (the tenant's next seq), and queues its webhook deliveries.
pub(crate) async fn event_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    draft: EventDraft,
    published: &mut Vec<Event>,
) -> Result<()> {
    write_journal_tx(tx, tenant, slug, None, vec![draft], published).await
}

async fn write_journal_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: &str,
    audit: Option<AuditDraft>,
    events: Vec<EventDraft>,
    published: &mut Vec<Event>,
) -> Result<()> {
    let (heads_st, hooks_st) =
        (tx.prepare_cached(HEADS).await.map_err(pg_error)?, tx.prepare_cached(HOOKS).await.map_err(pg_error)?);
    let id = tenant.as_str();
    let by_tenant: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
    let (heads, hooks) = if events.is_empty() {
        (tx.query_opt(&heads_st, &by_tenant).await.map_err(pg_error)?, Vec::new())
    } else {
        tokio::try_join!(biased; tx.query_opt(&heads_st, &by_tenant), tx.query(&hooks_st, &by_tenant))
            .map_err(pg_error)?
    };
    let heads = heads.ok_or_else(|| Error::internal(format!("tenant {tenant} has no usage row")))?;
    let planned = plan(&Heads::from_row(&heads, 0), &hooks_from_rows(&hooks)?, slug, audit, events, SystemClock.now())?;
    in_one_flight(planned_statements(tx, tenant, &planned, CounterDelta::default()).await?).await?;
    published.extend(planned.into_events());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::audit::{verify, GENESIS};

    fn draft(target: &str) -> AuditDraft {
        AuditDraft {
            actor: "key:k".into(),
            action: "file.write".into(),
            target: target.into(),
            result: "ok".into(),
            request_id: "r".into(),
            ip: "::1".into(),
        }
    }

    fn written(path: &str) -> EventDraft {
        EventDraft::new("file.written", "key:k".into()).path(path)
    }

    #[tokio::test]
    async fn a_statement_refused_before_it_is_sent_stops_the_flight_there() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let sent = std::sync::Arc::new(AtomicUsize::new(0));
        let statement = |outcome: Result<u64>| -> Pending<'static> {
            let sent = sent.clone();
            Box::pin(async move {
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await; // its answer comes later
                outcome
            })
        };
        let refused: Pending<'static> = Box::pin(async { Err(Error::internal("a parameter of the wrong type")) });
        let commit = statement(Ok(0));
        let e = in_one_flight(vec![statement(Ok(1)), refused, commit]).await.unwrap_err();
        assert_eq!(e.message, "a parameter of the wrong type");
        assert_eq!(sent.load(Ordering::SeqCst), 1, "the statement after the refused one (the COMMIT) was never sent");
        // Failures the server answers with come in order, after everything was sent.
        sent.store(0, Ordering::SeqCst);
        let e = in_one_flight(vec![
            statement(Ok(1)),
            statement(Err(Error::conflict("first"))),
            statement(Err(Error::conflict("then"))),
        ])
        .await
        .unwrap_err();
        assert_eq!((e.message.as_str(), sent.load(Ordering::SeqCst)), ("first", 3));
        assert!(in_one_flight(vec![statement(Ok(1)), statement(Ok(2))]).await.is_ok());
    }

    #[test]
    fn a_plan_links_to_the_head_numbers_after_the_last_seq_and_matches_each_webhook() {
        let start = Heads { audit_seq: 0, audit_head: String::new(), last_event_seq: 0 };
        let hooks = vec![
            Hook { id: "all".into(), events: vec!["*".into()], glob: None },
            Hook { id: "docs".into(), events: vec!["file.written".into()], glob: Some("/docs/**".into()) },
        ];
        let now = Timestamp::from_millis(1_000);
        let first = plan(&start, &hooks, "acme", Some(draft("/a")), vec![written("/a")], now).unwrap();
        let entry = first.audit.clone().unwrap();
        assert_eq!((entry.seq, entry.prev_hash.as_str()), (1, GENESIS));
        assert_eq!(first.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(first.outbox.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(), vec!["all"]);
        let second = plan(
            &first.heads,
            &hooks,
            "acme",
            Some(draft("/docs/b")),
            vec![written("/docs/b"), written("/docs/c")],
            now,
        )
        .unwrap();
        let next = second.audit.clone().unwrap();
        assert!(verify(None, [&entry, &next]).ok);
        assert_eq!(second.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(second.outbox.len(), 4, "both webhooks want both events");
        assert_eq!((second.heads.audit_seq, second.heads.last_event_seq), (2, 3));
        assert_eq!(second.heads.audit_head, next.hash);
        let body: serde_json::Value = serde_json::from_str(&second.outbox[0].2).unwrap();
        assert_eq!((body["tenant"].as_str(), body["seq"].as_u64()), (Some("acme"), Some(2)));
        let quiet = plan(&second.heads, &hooks, "acme", None, vec![], now).unwrap();
        assert_eq!((quiet.heads.audit_seq, quiet.heads.audit_head.as_str()), (2, next.hash.as_str()));
    }
}
