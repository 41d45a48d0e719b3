//! Memory: values by namespace and key, their sizes in the tenant's storage, expiry.

use crate::{assert_code, memory_journal, memory_write, now, Backend};
use tenantry_core::memory::{MemoryKey, Namespace};
use tenantry_core::store::{MemoryListing, StoredUsage};
use tenantry_core::time::Timestamp;
use tenantry_core::ErrorCode;

fn ns(s: &str) -> Namespace {
    Namespace::parse(s).unwrap()
}

fn k(s: &str) -> MemoryKey {
    MemoryKey::parse(s).unwrap()
}

pub async fn a_value_reads_back_and_a_replacement_counts_its_new_size(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let value = serde_json::json!({"a": [1, 2], "b": "x"});
    let entry =
        f.store.put_memory(&a, memory_write("ns", "key", value.clone()), memory_journal("ns", "key")).await.unwrap();
    assert_eq!(entry.size, value.to_string().len() as u64);
    let read = f.store.get_memory(&a, &ns("ns"), &k("key"), now()).await.unwrap().unwrap();
    assert_eq!((read.namespace.as_str(), read.key.as_str(), read.value), ("ns", "key", Some(value)));
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: entry.size, files: 0 });
    f.store
        .put_memory(&a, memory_write("ns", "key", serde_json::json!("x")), memory_journal("ns", "key"))
        .await
        .unwrap();
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 3, files: 0 });
}

pub async fn an_expired_value_is_gone_from_reads_and_listings(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let t0 = now();
    let mut soon = memory_write("ns", "soon", serde_json::json!(1));
    soon.expires_at = Some(Timestamp::from_millis(t0.millis() + 60_000));
    f.store.put_memory(&a, soon, memory_journal("ns", "soon")).await.unwrap();
    f.store
        .put_memory(&a, memory_write("ns", "kept", serde_json::json!(2)), memory_journal("ns", "kept"))
        .await
        .unwrap();
    let later = Timestamp::from_millis(t0.millis() + 60_000);
    assert!(f.store.get_memory(&a, &ns("ns"), &k("soon"), t0).await.unwrap().is_some());
    assert!(f.store.get_memory(&a, &ns("ns"), &k("soon"), later).await.unwrap().is_none(), "expired at its instant");
    let listing = |at| MemoryListing {
        namespace: ns("ns"),
        prefix: String::new(),
        after: None,
        limit: 10,
        with_values: false,
        now: at,
    };
    let keys = |v: Vec<tenantry_core::memory::MemoryEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(keys(f.store.list_memory(&a, listing(t0)).await.unwrap()), ["kept", "soon"]);
    assert_eq!(keys(f.store.list_memory(&a, listing(later)).await.unwrap()), ["kept"]);
    assert_eq!(keys(f.store.list_all_memory(&a, None, 10, later).await.unwrap()), ["kept"]);
    let r = f.store.delete_memory(&a, &ns("ns"), &k("soon"), later, memory_journal("ns", "soon")).await;
    assert_code(r, ErrorCode::NotFound);
}

pub async fn reclaiming_expired_values_frees_their_storage(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    let t0 = now();
    for (scope, key) in [(&a, "gone"), (&other, "gone-too")] {
        let mut w = memory_write("ns", key, serde_json::json!("12345678"));
        w.expires_at = Some(Timestamp::from_millis(t0.millis() + 1_000));
        f.store.put_memory(scope, w, memory_journal("ns", key)).await.unwrap();
    }
    f.store
        .put_memory(&a, memory_write("ns", "stays", serde_json::json!(7)), memory_journal("ns", "stays"))
        .await
        .unwrap();
    assert_eq!(f.store.reclaim_expired_memory(t0, 100).await.unwrap(), 0);
    let later = Timestamp::from_millis(t0.millis() + 2_000);
    let mut reclaimed = 0;
    loop {
        let n = f.store.reclaim_expired_memory(later, 1).await.unwrap();
        assert!(n <= 1);
        if n == 0 {
            break;
        }
        reclaimed += n;
    }
    assert_eq!(reclaimed, 2);
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 1, files: 0 });
    assert_eq!(f.store.usage(&other).await.unwrap(), StoredUsage::default());
    assert!(f.store.get_memory(&a, &ns("ns"), &k("stays"), later).await.unwrap().is_some());
}

pub async fn memory_listings_filter_by_prefix_in_key_order_and_resume(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for key in ["user:2", "user:10", "user:1", "team:1", "user"] {
        f.store
            .put_memory(&a, memory_write("ns", key, serde_json::json!(key)), memory_journal("ns", key))
            .await
            .unwrap();
    }
    f.store
        .put_memory(&a, memory_write("other", "user:3", serde_json::json!(0)), memory_journal("other", "user:3"))
        .await
        .unwrap();
    let l = |prefix: &str, after: Option<&str>, limit| MemoryListing {
        namespace: ns("ns"),
        prefix: prefix.into(),
        after: after.map(str::to_owned),
        limit,
        with_values: true,
        now: now(),
    };
    let keys = |v: Vec<tenantry_core::memory::MemoryEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(keys(f.store.list_memory(&a, l("user:", None, 10)).await.unwrap()), ["user:1", "user:10", "user:2"]);
    assert_eq!(keys(f.store.list_memory(&a, l("user:", Some("user:1"), 1)).await.unwrap()), ["user:10"]);
    assert_eq!(
        keys(f.store.list_memory(&a, l("", None, 10)).await.unwrap()),
        ["team:1", "user", "user:1", "user:10", "user:2"]
    );
    let all = f.store.list_all_memory(&a, Some(("ns".into(), "user:2".into())), 10, now()).await.unwrap();
    assert_eq!(all.iter().map(|e| (e.namespace.as_str(), e.key.as_str())).collect::<Vec<_>>(), [("other", "user:3")]);
}

pub async fn deleting_a_missing_value_is_not_found(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let r = f.store.delete_memory(&a, &ns("ns"), &k("never"), now(), memory_journal("ns", "never")).await;
    assert_code(r, ErrorCode::NotFound);
    f.store
        .put_memory(&a, memory_write("ns", "once", serde_json::json!(1)), memory_journal("ns", "once"))
        .await
        .unwrap();
    f.store.delete_memory(&a, &ns("ns"), &k("once"), now(), memory_journal("ns", "once")).await.unwrap();
    assert!(f.store.get_memory(&a, &ns("ns"), &k("once"), now()).await.unwrap().is_none());
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage::default());
}
