//! The event log: per-tenant seqs that increase by one without gaps (also under concurrency and
//! after pruning), and sinks told of committed events only.

use crate::{write, Backend};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_core::events::{Event, EventDraft, EventSink};
use tenantry_core::ids::TenantId;
use tenantry_core::store::{Precondition, TenantScope};
use tenantry_core::time::Timestamp;

pub async fn event_seqs_increase_by_one_without_gaps(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    crate::concurrently(30, |i| {
        let (store, a) = (f.store.clone(), a.clone());
        async move {
            let p = format!("/e{i}");
            store.put_file(&a, write(&p, b"x"), crate::file_journal(&p)).await.unwrap();
        }
    })
    .await;
    let log = f.event_log(&a).await;
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    assert_eq!(f.store.last_event_seq(&a).await.unwrap(), 30);
    let page = f.store.list_events(&a, 10, None, 5).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12, 13, 14, 15]);
}

#[derive(Default)]
struct Heard(Mutex<Vec<(TenantId, u64, String)>>);

impl EventSink for Heard {
    fn published(&self, tenant: &TenantId, events: &[Event]) {
        let mut heard = self.0.lock().unwrap();
        heard.extend(events.iter().map(|e| (tenant.clone(), e.seq, e.path.clone().unwrap_or_default())));
    }
}

pub async fn sinks_hear_committed_events_in_order_and_nothing_refused(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let heard = Arc::new(Heard::default());
    f.store.add_event_sink(heard.clone());
    for p in ["/1", "/2", "/3"] {
        f.put(&a, p, "x").await;
    }
    let mut refused = write("/1", b"y");
    refused.precondition = Precondition::IfNoneMatchAny;
    assert!(f.put_with(&a, refused).await.is_err());
    f.put(&a, "/4", "x").await;
    let expected: Vec<_> = (1..=4).map(|i| (ta.id.clone(), i as u64, format!("/{i}"))).collect();
    for _ in 0..100 {
        if heard.0.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*heard.0.lock().unwrap(), expected);
}

pub async fn pruned_events_never_give_their_seq_back(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for p in ["/1", "/2", "/3"] {
        f.put(&a, p, "x").await;
    }
    let future = Timestamp::from_millis(crate::now().millis() + 60_000);
    while f.store.prune_events(future, None).await.unwrap() > 0 {}
    assert!(f.event_log(&a).await.is_empty());
    assert_eq!(f.store.last_event_seq(&a).await.unwrap(), 3);
    f.put(&a, "/4", "x").await;
    assert_eq!(f.event_log(&a).await.iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
}

pub async fn a_published_event_takes_the_next_seq(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/1", "x").await;
    let warning = EventDraft::new("quota.warning", "system".into());
    f.store.publish_event(&a, warning).await.unwrap();
    let log = f.event_log(&a).await;
    assert_eq!(
        log.iter().map(|e| (e.seq, e.kind.as_str())).collect::<Vec<_>>(),
        [(1, "file.written"), (2, "quota.warning")]
    );
    assert_eq!(log[1].actor, "system");
}

/// `now` moved by `ms`.
fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(crate::now().millis() + ms)
}

pub async fn a_relay_is_held_by_one_holder_until_its_lease_ends(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    let s = &f.store;
    // Times from one instant, so a lease's end reads back as it was given.
    let t0 = crate::now().millis();
    let at = |ms: i64| Timestamp::from_millis(t0 + ms);
    let claim = |scope: &TenantScope, relay: &'static str, holder: &'static str, now: i64, until: i64| {
        let (s, scope) = (s.clone(), scope.clone());
        async move {
            let p = s.claim_relay(&scope, relay, holder, at(now), at(until)).await.unwrap();
            p.map(|p| (p.taken, p.seq, p.lease_until))
        }
    };
    assert_eq!(claim(&a, "nats", "n1", 0, 10_000).await, Some((true, 0, at(10_000))));
    // Refused, it says where the relay is and until when n1 holds it.
    assert_eq!(claim(&a, "nats", "n2", 0, 20_000).await, Some((false, 0, at(10_000))), "held by n1");
    assert!(s.advance_relay(&a, "nats", "n1", 3, at(10_000)).await.unwrap());
    assert!(!s.advance_relay(&a, "nats", "n2", 5, at(10_000)).await.unwrap(), "n2 holds nothing");
    assert_eq!(claim(&a, "nats", "n2", 0, 20_000).await, Some((false, 3, at(10_000))));
    assert_eq!(claim(&a, "nats", "n1", 0, 10_000).await, Some((true, 3, at(10_000))), "its holder again");
    // Another tenant, and another relay of the same tenant, are held apart.
    assert_eq!(claim(&other, "nats", "n2", 0, 10_000).await, Some((true, 0, at(10_000))));
    assert_eq!(claim(&a, "archive", "n2", 0, 10_000).await, Some((true, 0, at(10_000))));
    // n1's lease ends at +10 s: n2 takes over where n1 got, and n1 can no longer move it.
    assert_eq!(claim(&a, "nats", "n2", 20_000, 30_000).await, Some((true, 3, at(30_000))));
    assert!(!s.advance_relay(&a, "nats", "n1", 9, at(40_000)).await.unwrap());
    assert!(s.advance_relay(&a, "nats", "n2", 2, at(30_000)).await.unwrap(), "an older seq is no error");
    assert_eq!(claim(&a, "nats", "n2", 0, 30_000).await, Some((true, 3, at(30_000))), "never moves back");
    f.store.purge_tenant(&a).await.unwrap();
    assert_eq!(claim(&a, "nats", "n2", 0, 30_000).await, None, "purged");
}

pub async fn pruning_keeps_the_events_a_relay_has_not_passed(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    for scope in [&a, &other] {
        for p in ["/1", "/2", "/3", "/4"] {
            f.put(scope, p, "x").await;
        }
    }
    assert!(f.store.claim_relay(&a, "nats", "n1", at(0), at(10_000)).await.unwrap().unwrap().taken);
    assert!(f.store.advance_relay(&a, "nats", "n1", 2, at(10_000)).await.unwrap());
    let seqs = |scope| {
        let f = &f;
        async move { f.event_log(scope).await.iter().map(|e| e.seq).collect::<Vec<_>>() }
    };
    let future = at(60_000);
    while f.store.prune_events(future, Some("nats")).await.unwrap() > 0 {}
    assert_eq!(seqs(&a).await, [3, 4], "past the relay's position");
    assert_eq!(seqs(&other).await, [1, 2, 3, 4], "no position yet: nothing relayed");
    // Another relay's position keeps nothing of this one's.
    while f.store.prune_events(future, Some("archive")).await.unwrap() > 0 {}
    assert_eq!(seqs(&a).await, [3, 4]);
    assert!(f.store.advance_relay(&a, "nats", "n1", 4, at(10_000)).await.unwrap());
    while f.store.prune_events(future, Some("nats")).await.unwrap() > 0 {}
    assert!(seqs(&a).await.is_empty());
    while f.store.prune_events(future, None).await.unwrap() > 0 {}
    assert!(seqs(&other).await.is_empty(), "without a relay, age alone decides");
}

pub async fn a_reader_following_the_log_never_sees_a_later_event_before_an_earlier_one(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let writers = crate::concurrently(8, |w| {
        let (store, a) = (f.store.clone(), a.clone());
        async move {
            for i in 0..150 {
                let p = format!("/w{w}/{i}");
                store.put_file(&a, write(&p, b"x"), crate::file_journal(&p)).await.unwrap();
            }
        }
    });
    let reader = async {
        // As a client paging the feed does: each page from the last seq it got.
        let mut after = 0;
        while after < 8 * 150 {
            let page = f.store.list_events(&a, after, None, 64).await.unwrap();
            for e in &page {
                assert_eq!(e.seq, after + 1, "a page skipped from {after} to {}", e.seq);
                after = e.seq;
            }
        }
    };
    tokio::join!(writers, reader);
}
