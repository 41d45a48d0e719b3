//! Tenant scoping: tenant B's scope never reads, counts, lists or changes tenant A's rows, and
//! whatever B does leaves A's exactly as they were.

use crate::{assert_code, file_journal, key, memory_journal, memory_write, now, path, Backend};
use tenantry_core::memory::{MemoryKey, Namespace};
use tenantry_core::path::PathPrefix;
use tenantry_core::store::{FileListing, MemoryListing, Precondition, StoredUsage};
use tenantry_core::usage::Counters;
use tenantry_core::ErrorCode;

pub async fn another_tenants_scope_reads_none_of_its_files(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    f.put(&a, "/secret.txt", "acme only").await;
    let p = path("/secret.txt");
    assert!(f.store.stat_file(&other, &p).await.unwrap().is_none());
    assert!(f.store.read_file(&other, &p, None).await.unwrap().is_none());
    assert!(f.store.read_file_cold(&other, &p).await.unwrap().is_none());
    // Read once by its owner (a backend's cache must be per tenant too), then again by the other.
    assert!(f.store.read_file(&a, &p, None).await.unwrap().is_some());
    assert!(f.store.read_file(&other, &p, None).await.unwrap().is_none());
}

pub async fn another_tenants_listing_and_usage_count_none_of_its_files(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    for p in ["/a", "/dir/b", "/dir/c"] {
        f.put(&a, p, "acme's").await;
    }
    let all =
        FileListing { within: PathPrefix::root(), recursive: true, include_within: true, after: None, limit: 100 };
    assert!(f.store.list_files(&other, all.clone()).await.unwrap().is_empty());
    assert_eq!(f.store.usage(&other).await.unwrap(), StoredUsage::default());
    assert_eq!(f.store.list_files(&a, all).await.unwrap().len(), 3);
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 18, files: 3 });
}

pub async fn another_tenants_scope_cannot_delete_or_overwrite_its_files(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    let (meta, _) = f.put(&a, "/shared-name", "acme's bytes").await;
    let r = f.store.delete_file(&other, &path("/shared-name"), Precondition::None, now(), file_journal("/x")).await;
    assert_code(r, ErrorCode::NotFound);
    // The same path in the other tenant is its own file: created, not a replacement of acme's.
    let mut w = crate::write("/shared-name", b"globex's");
    w.precondition = Precondition::IfNoneMatchAny;
    let (theirs, _) = f.put_with(&other, w).await.unwrap();
    assert_eq!(theirs.version, 1);
    let (still, bytes) = f.store.read_file(&a, &path("/shared-name"), None).await.unwrap().unwrap();
    assert_eq!((still, bytes), (meta, b"acme's bytes".to_vec()));
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 12, files: 1 });
}

pub async fn another_tenants_scope_sees_none_of_its_memory(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    f.store
        .put_memory(&a, memory_write("notes", "k1", serde_json::json!({"v": 1})), memory_journal("notes", "k1"))
        .await
        .unwrap();
    let (ns, k) = (Namespace::parse("notes").unwrap(), MemoryKey::parse("k1").unwrap());
    assert!(f.store.get_memory(&other, &ns, &k, now()).await.unwrap().is_none());
    let listing = MemoryListing {
        namespace: ns.clone(),
        prefix: String::new(),
        after: None,
        limit: 100,
        with_values: true,
        now: now(),
    };
    assert!(f.store.list_memory(&other, listing.clone()).await.unwrap().is_empty());
    assert!(f.store.list_all_memory(&other, None, 100, now()).await.unwrap().is_empty());
    assert_code(
        f.store.delete_memory(&other, &ns, &k, now(), memory_journal("notes", "k1")).await,
        ErrorCode::NotFound,
    );
    let kept = f.store.get_memory(&a, &ns, &k, now()).await.unwrap().unwrap();
    assert_eq!(kept.value, Some(serde_json::json!({"v": 1})));
    assert_eq!(f.store.list_memory(&a, listing).await.unwrap().len(), 1);
    assert_eq!(f.store.usage(&other).await.unwrap(), StoredUsage::default());
}

pub async fn another_tenants_keys_are_neither_listed_nor_revocable(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    let k = key(&ta, "acme-key");
    f.store.insert_key(&a, &k, None, crate::draft("key.create", "k").into()).await.unwrap();
    assert!(f.store.list_keys(&other).await.unwrap().is_empty());
    let r = f.store.revoke_key(&other, &k.id, now(), crate::draft("key.revoke", "k").into()).await;
    assert_code(r, ErrorCode::NotFound);
    let keys = f.store.list_keys(&a).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].revoked_at.is_none());
}

pub async fn each_tenant_has_its_own_audit_chain_and_event_sequence(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    for i in 0..5 {
        f.put(&a, &format!("/a{i}"), "x").await;
        if i % 2 == 0 {
            f.put(&other, &format!("/g{i}"), "y").await;
        }
    }
    let (la, lo) = (f.audit_log(&a).await, f.audit_log(&other).await);
    // Entry 1 is each tenant's creation.
    assert_eq!(la.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    assert_eq!(lo.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=4).collect::<Vec<_>>());
    assert!(la.iter().all(|e| e.tenant == "acme") && lo.iter().all(|e| e.tenant == "globex"));
    assert!(tenantry_core::audit::verify(None, &la).ok && tenantry_core::audit::verify(None, &lo).ok);
    let (ea, eo) = (f.event_log(&a).await, f.event_log(&other).await);
    assert_eq!(ea.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(eo.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(eo.iter().all(|e| e.path.as_deref().is_some_and(|p| p.starts_with("/g"))));
    assert_eq!((f.store.last_event_seq(&a).await.unwrap(), f.store.last_event_seq(&other).await.unwrap()), (5, 3));
}

pub async fn a_prefix_filter_on_events_keeps_only_paths_under_it(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for p in ["/in/a", "/inside", "/in", "/out/b", "/in/deep/c"] {
        f.put(&a, p, "x").await;
    }
    let visible = f.store.list_events(&a, 0, Some(PathPrefix::parse("/in").unwrap()), 100).await.unwrap();
    let seen: Vec<_> = visible.iter().map(|e| (e.seq, e.path.clone().unwrap())).collect();
    assert_eq!(seen, [(1, "/in/a".to_owned()), (3, "/in".to_owned()), (5, "/in/deep/c".to_owned())]);
    let after = f.store.list_events(&a, 3, Some(PathPrefix::parse("/in").unwrap()), 100).await.unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [5]);
}

pub async fn purging_a_tenant_erases_only_its_rows(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    for scope in [&a, &other] {
        f.put(scope, "/f", "same path in both").await;
        f.put(scope, "/big", &"b".repeat(2 << 20)).await;
        f.store
            .put_memory(scope, memory_write("ns", "k", serde_json::json!("v")), memory_journal("ns", "k"))
            .await
            .unwrap();
    }
    f.store.insert_key(&a, &key(&ta, "ka"), None, crate::draft("key.create", "ka").into()).await.unwrap();
    f.store.insert_key(&other, &key(&tb, "kb"), None, crate::draft("key.create", "kb").into()).await.unwrap();
    let before = (f.audit_log(&other).await, f.event_log(&other).await, f.store.usage(&other).await.unwrap());
    f.store.purge_tenant(&a).await.unwrap();
    let (tenants, keys) = f.store.load_directory().await.unwrap();
    assert_eq!(tenants.iter().map(|t| t.slug.as_str()).collect::<Vec<_>>(), ["globex"]);
    assert_eq!(keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["kb"]);
    assert!(f.store.read_file(&a, &path("/f"), None).await.unwrap().is_none());
    assert!(f.audit_log(&a).await.is_empty() && f.event_log(&a).await.is_empty());
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage::default());
    let after = (f.audit_log(&other).await, f.event_log(&other).await, f.store.usage(&other).await.unwrap());
    assert_eq!(after, before);
    let (_, big) = f.store.read_file(&other, &path("/big"), None).await.unwrap().unwrap();
    assert_eq!(big.len(), 2 << 20);
}

pub async fn usage_is_counted_per_tenant(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    let c = |calls| Counters { api_calls: calls, reads: 1, writes: 2, bytes_in: 3, bytes_out: 4, searches: 5 };
    f.store
        .add_usage(vec![(ta.id.clone(), 100, c(7)), (tb.id.clone(), 100, c(1)), (ta.id.clone(), 101, c(2))])
        .await
        .unwrap();
    let sum = f.store.usage_between(&a, 100, 102).await.unwrap();
    assert_eq!((sum.api_calls, sum.searches), (9, 10));
    assert_eq!(f.store.usage_between(&other, 100, 102).await.unwrap().api_calls, 1);
    let days = f.store.usage_by_day(&a, 100, 102).await.unwrap();
    assert_eq!(days.iter().map(|(d, c)| (*d, c.api_calls)).collect::<Vec<_>>(), [(100, 7), (101, 2)]);
    let mut calls = f.store.calls_between(100, 101).await.unwrap();
    calls.sort();
    let mut expected = vec![(ta.id.clone(), 7), (tb.id.clone(), 1)];
    expected.sort();
    assert_eq!(calls, expected);
}

pub async fn another_tenants_search_finds_none_of_its_files_or_memory(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    f.put(&a, "/plan.txt", "confidential merger plan").await;
    f.store
        .put_memory(&a, memory_write("notes", "m", serde_json::json!("merger notes")), memory_journal("notes", "m"))
        .await
        .unwrap();
    let mut q = crate::search::parsed("merger");
    q.limit = 10;
    assert!(f.store.search(&other, q.clone()).await.unwrap().hits.is_empty());
    assert_eq!(f.store.search(&a, q).await.unwrap().hits.len(), 2);
}

pub async fn metering_racing_a_purge_leaves_no_usage_of_the_purged_tenant(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, _) = f.tenant("globex").await;
    let store = f.store.clone();
    let (ida, idb) = (ta.id.clone(), tb.id.clone());
    let calls = Counters { api_calls: 1, ..Default::default() };
    // Flushes of both tenants' counters, one day each, while the first tenant is purged.
    let flusher = tokio::spawn(async move {
        for day in 0..60 {
            store
                .add_usage(vec![(ida.clone(), 20_000 + day, calls), (idb.clone(), 20_000 + day, calls)])
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    f.store.purge_tenant(&a).await.unwrap();
    flusher.await.unwrap();
    let counted = f.store.calls_between(0, i64::MAX).await.unwrap();
    assert!(counted.iter().all(|(t, _)| t != &ta.id), "usage rows of the purged tenant: {counted:?}");
    assert_eq!(counted, vec![(tb.id.clone(), 60)], "the other tenant's usage, whole");
}
