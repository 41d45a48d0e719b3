//! The audit chain as the store keeps it: one entry per change, linked, gapless under
//! concurrency, listed by page, and pruned from its oldest end with an anchor.

use crate::{draft, write, Backend, Fixture};
use std::time::Duration;
use tenantry_core::audit::{prune_target, verify, PRUNE_ACTION};
use tenantry_core::store::TenantScope;
use tenantry_core::time::Timestamp;

pub async fn every_change_appends_one_linked_entry(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/a", "x").await;
    f.store.append_audit(&a, draft("request", "refused:forbidden")).await.unwrap();
    let log = f.audit_log(&a).await;
    let summary: Vec<_> = log.iter().map(|e| (e.seq, e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(summary, [(1, "tenant.create", "acme"), (2, "file.write", "/a"), (3, "request", "refused:forbidden")]);
    assert_eq!(log[0].prev_hash, tenantry_core::audit::GENESIS);
    assert_eq!((log[1].prev_hash.as_str(), log[2].prev_hash.as_str()), (log[0].hash.as_str(), log[1].hash.as_str()));
    let e = &log[1];
    assert_eq!(
        (e.actor.as_str(), e.result.as_str(), e.request_id.as_str(), e.ip.as_str()),
        ("contract", "ok", "req_contract", "127.0.0.1")
    );
    assert!(verify(None, &log).ok);
}

pub async fn concurrent_appends_keep_the_chain_unbroken_and_gapless(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let results = crate::concurrently(40, |i| {
        let (store, a) = (f.store.clone(), a.clone());
        async move {
            if i % 2 == 0 {
                store.append_audit(&a, draft("request", &format!("/r{i}"))).await
            } else {
                let p = format!("/w{i}");
                store.put_file(&a, write(&p, b"x"), crate::file_journal(&p)).await.map(|_| ())
            }
        }
    })
    .await;
    results.into_iter().collect::<tenantry_core::Result<Vec<()>>>().unwrap();
    let log = f.audit_log(&a).await;
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=41).collect::<Vec<_>>());
    let report = verify(None, &log);
    assert!(report.ok, "{report:?}");
}

pub async fn the_audit_listing_filters_by_action_and_resumes_after_a_seq(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for i in 0..6 {
        f.put(&a, &format!("/f{i}"), "x").await;
        f.store.append_audit(&a, draft("request", &format!("/r{i}"))).await.unwrap();
    }
    let writes = f.store.list_audit(&a, 0, Some("file.write"), 100).await.unwrap();
    assert_eq!(writes.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 4, 6, 8, 10, 12]);
    let page = f.store.list_audit(&a, 4, Some("file.write"), 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 8]);
    let unfiltered = f.store.list_audit(&a, 10, None, 100).await.unwrap();
    assert_eq!(unfiltered.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12, 13]);
    assert!(f.store.list_audit(&a, 13, None, 100).await.unwrap().is_empty());
}

/// Prunes until the anchor reaches `through` (a backend may leave its newest entries for a
/// later round, e.g. until it has indexed them), checking each call's batch bound.
async fn prune_until(f: &Fixture, a: &TenantScope, before: Timestamp, max: usize, through: u64) {
    for _ in 0..150 {
        let pruned = f.store.prune_audit(a, before, max).await.unwrap();
        assert!(pruned.deleted <= max as u64, "{pruned:?}");
        if f.store.audit_anchor(a).await.unwrap().is_some_and(|x| x.seq >= through) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the anchor did not reach seq {through} within 15 s");
}

pub async fn pruning_keeps_the_newest_entry_and_the_rest_verify_from_the_anchor(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for i in 0..9 {
        f.put(&a, &format!("/f{i}"), "x").await;
    }
    assert!(f.store.audit_anchor(&a).await.unwrap().is_none());
    // Everything is older than a cutoff in the future: all but the newest (seq 10) may go.
    let future = Timestamp::from_millis(crate::now().millis() + 86_400_000);
    prune_until(&f, &a, future, 1000, 9).await;
    // A backend that prunes in rounds may take seq 10 too, once a round's own record followed it.
    let anchor = f.store.audit_anchor(&a).await.unwrap().unwrap();
    let log = f.audit_log(&a).await;
    assert!(!log.is_empty(), "the newest entry is never pruned");
    assert!(anchor.seq >= 9 && log[0].seq == anchor.seq + 1, "{anchor:?} then {}", log[0].seq);
    assert_eq!(log[0].prev_hash, anchor.hash);
    let record = log.iter().rev().find(|e| e.action == PRUNE_ACTION).expect("the prune is recorded in the chain");
    assert_eq!((record.actor.as_str(), record.target.clone()), ("system", prune_target(&anchor)));
    let report = verify(Some(&anchor), &log);
    assert!(report.ok, "{report:?}");
    assert!(f.store.list_audit(&a, 0, Some("file.write"), 100).await.unwrap().iter().all(|e| e.seq > 9));
}

pub async fn pruning_deletes_only_entries_older_than_the_cutoff_and_at_most_a_batch(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for i in 0..5 {
        f.put(&a, &format!("/old{i}"), "x").await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = crate::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..3 {
        f.put(&a, &format!("/new{i}"), "x").await;
    }
    prune_until(&f, &a, cutoff, 2, 6).await;
    for _ in 0..3 {
        assert_eq!(f.store.prune_audit(&a, cutoff, 2).await.unwrap().deleted, 0, "nothing older is left");
    }
    assert_eq!(f.store.audit_anchor(&a).await.unwrap().unwrap().seq, 6);
    let log = f.audit_log(&a).await;
    let targets: Vec<_> = log.iter().filter(|e| e.action == "file.write").map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["/new0", "/new1", "/new2"]);
    assert!(verify(f.store.audit_anchor(&a).await.unwrap().as_ref(), &log).ok);
}
