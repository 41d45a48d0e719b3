//! Webhooks and their outbox: a wanted event queues one delivery per webhook in the change's
//! own transaction, deliveries are retried until delivered or given up, at least once each.

use crate::{assert_code, draft, now, Backend, Fixture};
use tenantry_core::ids::{TenantId, WebhookId};
use tenantry_core::model::Tenant;
use tenantry_core::store::{AttemptReport, DueDelivery, NewWebhookRecord, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::webhook::Webhook;
use tenantry_core::ErrorCode;

pub(crate) fn hook(events: &[&str], glob: Option<&str>) -> NewWebhookRecord {
    NewWebhookRecord {
        hook: Webhook {
            id: WebhookId::generate(),
            url: "https://receiver.example/hook".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            path_glob: glob.map(str::to_owned),
            enabled: true,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: now(),
            created_by: "contract".into(),
        },
        secret: format!("whsec_{}", WebhookId::generate()),
    }
}

async fn add_hook(f: &Fixture, scope: &TenantScope, events: &[&str], glob: Option<&str>) -> NewWebhookRecord {
    let record = hook(events, glob);
    f.store.insert_webhook(scope, record.clone(), 10, draft("webhook.create", "hook").into()).await.unwrap();
    record
}

/// Deliveries due a minute from now (every queued one), at most 1000, of `tenant` only.
async fn due_of(f: &Fixture, tenant: &Tenant) -> Vec<DueDelivery> {
    let later = Timestamp::from_millis(now().millis() + 60_000);
    let all = f.store.due_deliveries(later, 1000, 1000).await.unwrap();
    all.into_iter().filter(|d| d.tenant_id == tenant.id).collect()
}

fn attempt(tenant: &TenantId, d: &DueDelivery, delivered: bool, retry_at: Option<Timestamp>) -> AttemptReport {
    AttemptReport {
        tenant_id: tenant.clone(),
        delivery_id: d.id,
        status: Some(if delivered { 200 } else { 503 }),
        latency_ms: 12,
        error: (!delivered).then(|| "503 Service Unavailable".into()),
        delivered,
        at: now(),
        retry_at,
        disable_after: 3,
    }
}

pub async fn a_wanted_event_queues_one_delivery_per_webhook_that_wants_it(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let all = add_hook(&f, &a, &["*"], None).await;
    let docs = add_hook(&f, &a, &["file.written"], Some("/docs/**")).await;
    let _memory_only = add_hook(&f, &a, &["memory.set"], None).await;
    f.put(&a, "/docs/readme.md", "x").await;
    f.put(&a, "/other.txt", "x").await;
    let mut due: Vec<_> = due_of(&f, &t).await.into_iter().map(|d| (d.webhook_id.clone(), d)).collect();
    due.sort_by_key(|(_, d)| d.id);
    let summary: Vec<_> = due
        .iter()
        .map(|(id, d)| {
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            (
                id == &all.hook.id,
                id == &docs.hook.id,
                body["seq"].as_u64().unwrap(),
                body["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut summary = summary;
    summary.sort_by_key(|x| (x.2, x.1));
    assert_eq!(
        summary,
        [
            (true, false, 1, "/docs/readme.md".to_owned()),
            (false, true, 1, "/docs/readme.md".to_owned()),
            (true, false, 2, "/other.txt".to_owned()),
        ]
    );
    for (_, d) in &due {
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!((body["tenant"].as_str(), d.event_type.as_str(), d.attempts), (Some("acme"), "file.written", 0));
        assert_eq!(d.url, "https://receiver.example/hook");
    }
    let docs_due = due.iter().find(|(id, _)| id == &docs.hook.id).unwrap();
    assert_eq!(docs_due.1.secret, docs.secret);
}

pub async fn a_failed_attempt_is_retried_at_its_time_and_a_delivered_one_is_done(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let h = add_hook(&f, &a, &["*"], None).await;
    f.put(&a, "/a", "x").await;
    let first = due_of(&f, &t).await.pop().unwrap();
    let retry_at = Timestamp::from_millis(now().millis() + 120_000);
    f.store.record_attempt(attempt(&t.id, &first, false, Some(retry_at))).await.unwrap();
    assert!(due_of(&f, &t).await.is_empty(), "not due before its retry time");
    let at_retry = f.store.due_deliveries(retry_at, 10, 10).await.unwrap();
    assert_eq!(at_retry.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(), [(first.id, 1)]);
    assert_eq!(at_retry[0].body, first.body, "every attempt carries the same bytes");
    assert_eq!(f.store.next_delivery_at().await.unwrap(), Some(retry_at));
    f.store.record_attempt(attempt(&t.id, &at_retry[0], true, None)).await.unwrap();
    assert!(f.store.due_deliveries(retry_at, 10, 10).await.unwrap().is_empty());
    let log = f.store.list_deliveries(&a, &h.hook.id, None, 10).await.unwrap();
    let outcomes: Vec<_> = log.iter().map(|x| (x.attempt, x.outcome.as_str(), x.status)).collect();
    assert_eq!(outcomes, [(2, "delivered", Some(200)), (1, "retrying", Some(503))]);
    assert_eq!(f.store.get_webhook(&a, &h.hook.id).await.unwrap().unwrap().consecutive_failures, 0);
}

pub async fn repeated_failures_disable_a_webhook_and_enabling_it_clears_them(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let h = add_hook(&f, &a, &["*"], None).await;
    for p in ["/1", "/2", "/3", "/4"] {
        f.put(&a, p, "x").await;
    }
    for d in due_of(&f, &t).await.iter().take(3) {
        f.store.record_attempt(attempt(&t.id, d, false, None)).await.unwrap();
    }
    let disabled = f.store.get_webhook(&a, &h.hook.id).await.unwrap().unwrap();
    assert_eq!((disabled.enabled, disabled.consecutive_failures), (false, 3));
    assert!(disabled.disabled_reason.is_some());
    assert!(due_of(&f, &t).await.is_empty(), "a disabled webhook's deliveries are not due");
    f.store.set_webhook_enabled(&a, &h.hook.id, true).await.unwrap();
    let enabled = f.store.get_webhook(&a, &h.hook.id).await.unwrap().unwrap();
    assert_eq!((enabled.enabled, enabled.consecutive_failures, enabled.disabled_reason), (true, 0, None));
    assert_eq!(due_of(&f, &t).await.len(), 1, "the delivery not yet attempted is due again");
}

pub async fn a_deleted_webhook_takes_its_pending_deliveries_and_log_with_it(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let h = add_hook(&f, &a, &["*"], None).await;
    f.put(&a, "/a", "x").await;
    f.put(&a, "/b", "x").await;
    let d = due_of(&f, &t).await.pop().unwrap();
    f.store.record_attempt(attempt(&t.id, &d, false, Some(now()))).await.unwrap();
    f.store.delete_webhook(&a, &h.hook.id, draft("webhook.delete", "h").into()).await.unwrap();
    assert!(due_of(&f, &t).await.is_empty());
    assert!(f.store.get_webhook(&a, &h.hook.id).await.unwrap().is_none());
    assert!(f.store.list_deliveries(&a, &h.hook.id, None, 10).await.unwrap().is_empty());
    assert_code(f.store.delete_webhook(&a, &h.hook.id, draft("webhook.delete", "h").into()).await, ErrorCode::NotFound);
    // An attempt reported after the deletion records nothing and fails nothing.
    f.store.record_attempt(attempt(&t.id, &d, true, None)).await.unwrap();
}

pub async fn webhooks_are_limited_and_scoped_to_their_tenant(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    let h1 = hook(&["*"], None);
    f.store.insert_webhook(&a, h1.clone(), 1, draft("webhook.create", "1").into()).await.unwrap();
    assert_code(
        f.store.insert_webhook(&a, hook(&["*"], None), 1, draft("webhook.create", "2").into()).await,
        ErrorCode::QuotaExceeded,
    );
    assert!(f.store.list_webhooks(&other).await.unwrap().is_empty());
    assert!(f.store.get_webhook(&other, &h1.hook.id).await.unwrap().is_none());
    assert!(f.store.webhook_secrets(&other).await.unwrap().is_empty());
    assert_code(f.store.set_webhook_enabled(&other, &h1.hook.id, false).await, ErrorCode::NotFound);
    assert_code(
        f.store.delete_webhook(&other, &h1.hook.id, draft("webhook.delete", "1").into()).await,
        ErrorCode::NotFound,
    );
    assert_eq!(f.store.webhook_secrets(&a).await.unwrap(), vec![(h1.hook.id.clone(), h1.secret.clone())]);
    // The other tenant's events never reach acme's webhook.
    f.put(&other, "/g", "x").await;
    assert!(due_of(&f, &tb).await.is_empty());
    assert_eq!(f.store.list_webhooks(&a).await.unwrap(), vec![h1.hook]);
}

pub async fn due_deliveries_take_at_most_a_share_of_each_tenant(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    add_hook(&f, &a, &["*"], None).await;
    add_hook(&f, &other, &["*"], None).await;
    for i in 0..8 {
        f.put(&a, &format!("/a{i}"), "x").await;
    }
    f.put(&other, "/b0", "x").await;
    f.put(&other, "/b1", "x").await;
    let later = Timestamp::from_millis(now().millis() + 60_000);
    let due = f.store.due_deliveries(later, 100, 3).await.unwrap();
    let count = |t: &Tenant| due.iter().filter(|d| d.tenant_id == t.id).count();
    assert_eq!((count(&ta), count(&tb), due.len()), (3, 2, 5));
    let seqs: Vec<u64> = due
        .iter()
        .filter(|d| d.tenant_id == ta.id)
        .map(|d| serde_json::from_str::<serde_json::Value>(&d.body).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3], "a tenant's oldest first");
}

pub async fn a_claimed_delivery_is_nobody_elses_until_its_lease_ends(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    add_hook(&f, &a, &["*"], None).await;
    f.put(&a, "/a", "x").await;
    let d = due_of(&f, &t).await.pop().unwrap();
    let later = Timestamp::from_millis(now().millis() + 60_000);
    let lease = Timestamp::from_millis(now().millis() + 600_000);
    // Two workers found it due: one claims it.
    assert!(f.store.claim_delivery(&t.id, d.id, later, lease).await.unwrap());
    assert!(!f.store.claim_delivery(&t.id, d.id, later, lease).await.unwrap(), "claimed already");
    assert!(due_of(&f, &t).await.is_empty(), "not due while claimed");
    // The worker stopped without an attempt: due again when its lease ends, and claimable.
    let again = f.store.due_deliveries(lease, 10, 10).await.unwrap();
    assert_eq!(again.iter().map(|x| (x.id, x.attempts)).collect::<Vec<_>>(), [(d.id, 0)]);
    assert!(f.store.claim_delivery(&t.id, d.id, lease, Timestamp::from_millis(lease.millis() + 1)).await.unwrap());
    // Once delivered, nothing is left to claim; another tenant's scope claims nothing.
    f.store.record_attempt(attempt(&t.id, &again[0], true, None)).await.unwrap();
    assert!(!f.store.claim_delivery(&t.id, d.id, lease, lease).await.unwrap());
    let (other, _) = f.tenant("globex").await;
    assert!(!f.store.claim_delivery(&other.id, d.id, lease, lease).await.unwrap());
}
