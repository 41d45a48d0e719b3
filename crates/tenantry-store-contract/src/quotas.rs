//! Hard limits, decided inside the write's transaction: exact at the boundary, and never passed
//! by concurrent writers together, not by one byte.

use crate::{assert_code, concurrently, file_journal, key, memory_journal, memory_write, now, path, write, Backend};
use std::sync::Arc;
use tenantry_core::store::{Precondition, StoredUsage};
use tenantry_core::ErrorCode;

pub async fn a_write_up_to_the_storage_limit_passes_and_one_byte_over_is_refused(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/a", "123456").await;
    let mut over = write("/b", b"12345");
    over.max_storage_bytes = Some(10);
    let e = assert_code(f.put_with(&a, over).await, ErrorCode::QuotaExceeded);
    let details = e.details.unwrap();
    assert_eq!((details["limit"].as_u64(), details["current"].as_u64()), (Some(10), Some(6)), "{details:?}");
    assert!(f.store.stat_file(&a, &path("/b")).await.unwrap().is_none());
    let mut exact = write("/b", b"1234");
    exact.max_storage_bytes = Some(10);
    f.put_with(&a, exact).await.unwrap();
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 10, files: 2 });
}

pub async fn the_file_limit_refuses_a_new_file_but_not_a_replacement(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for p in ["/1", "/2"] {
        let mut w = write(p, b"x");
        w.max_files = Some(2);
        f.put_with(&a, w).await.unwrap();
    }
    let mut third = write("/3", b"x");
    third.max_files = Some(2);
    assert_code(f.put_with(&a, third).await, ErrorCode::QuotaExceeded);
    let mut replace = write("/2", b"yy");
    replace.max_files = Some(2);
    f.put_with(&a, replace).await.unwrap();
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 3, files: 2 });
}

pub async fn a_change_that_does_not_grow_usage_passes_over_a_lowered_limit(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/a", &"x".repeat(100)).await;
    f.put(&a, "/b", "y").await;
    let mut shrink = write("/a", &[b'x'; 50]);
    (shrink.max_storage_bytes, shrink.max_files) = (Some(10), Some(1));
    f.put_with(&a, shrink).await.unwrap();
    let mut grow = write("/a", &[b'x'; 60]);
    grow.max_storage_bytes = Some(10);
    assert_code(f.put_with(&a, grow).await, ErrorCode::QuotaExceeded);
    f.store.delete_file(&a, &path("/b"), Precondition::None, now(), file_journal("/b")).await.unwrap();
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 50, files: 1 });
}

pub async fn concurrent_writers_never_pass_the_storage_limit_together(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let results = concurrently(24, |i| {
        let (store, a) = (f.store.clone(), a.clone());
        async move {
            let p = format!("/w{i}");
            let mut w = write(&p, &[b'z'; 100]);
            w.max_storage_bytes = Some(1000);
            store.put_file(&a, w, file_journal(&p)).await
        }
    })
    .await;
    let mut passed = 0;
    for r in results {
        match r {
            Ok(_) => passed += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::QuotaExceeded, "{}", e.message),
        }
    }
    assert_eq!(passed, 10);
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 1000, files: 10 });
}

pub async fn concurrent_writers_never_pass_the_file_limit_together(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let results = concurrently(20, |i| {
        let (store, a) = (f.store.clone(), a.clone());
        async move {
            let p = format!("/n{i}");
            let mut w = write(&p, b"1");
            w.max_files = Some(7);
            store.put_file(&a, w, file_journal(&p)).await.is_ok()
        }
    })
    .await;
    let passed = results.into_iter().filter(|ok| *ok).count();
    assert_eq!(passed, 7);
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 7, files: 7 });
}

pub async fn memory_values_count_toward_the_storage_limit(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/a", "12345678").await;
    let mut over = memory_write("ns", "k", serde_json::json!("abc")); // 5 bytes of JSON
    over.max_storage_bytes = Some(10);
    assert_code(f.store.put_memory(&a, over, memory_journal("ns", "k")).await, ErrorCode::QuotaExceeded);
    let mut fits = memory_write("ns", "k", serde_json::json!(12)); // 2 bytes
    fits.max_storage_bytes = Some(10);
    let entry = f.store.put_memory(&a, fits, memory_journal("ns", "k")).await.unwrap();
    assert_eq!(entry.size, 2);
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 10, files: 1 });
    let mut file_over = write("/b", b"x");
    file_over.max_storage_bytes = Some(10);
    assert_code(f.put_with(&a, file_over).await, ErrorCode::QuotaExceeded);
}

pub async fn concurrent_key_creations_never_pass_the_key_limit(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let t = Arc::new(t);
    let results = concurrently(12, |i| {
        let (store, a, t) = (f.store.clone(), a.clone(), t.clone());
        async move {
            let k = key(&t, &format!("k{i}"));
            store.insert_key(&a, &k, Some(3), crate::draft("key.create", &k.id.to_string()).into()).await
        }
    })
    .await;
    let mut passed = 0;
    for r in results {
        match r {
            Ok(()) => passed += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::QuotaExceeded, "{}", e.message),
        }
    }
    assert_eq!(passed, 3);
    assert_eq!(f.store.list_keys(&a).await.unwrap().len(), 3);
}

pub async fn a_refused_write_leaves_no_audit_entry_and_no_event(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/a", "1234").await;
    let (audit, events) = (f.audit_log(&a).await.len(), f.event_log(&a).await.len());
    let mut over = write("/b", b"123456");
    over.max_storage_bytes = Some(5);
    assert_code(f.put_with(&a, over).await, ErrorCode::QuotaExceeded);
    let mut stale = write("/a", b"x");
    stale.precondition = Precondition::IfMatch(vec!["\"stale\"".into()]);
    assert_code(f.put_with(&a, stale).await, ErrorCode::PreconditionFailed);
    assert_eq!((f.audit_log(&a).await.len(), f.event_log(&a).await.len()), (audit, events));
    assert_eq!(f.store.last_event_seq(&a).await.unwrap(), events as u64);
}

pub async fn crossing_eighty_percent_of_a_limit_warns_once_right_after_the_change(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let limited = |p: &str, n: usize| {
        let mut w = write(p, &vec![b'x'; n]);
        (w.max_storage_bytes, w.max_files) = (Some(100), Some(50));
        w
    };
    f.put_with(&a, limited("/a", 70)).await.unwrap();
    f.put_with(&a, limited("/b", 15)).await.unwrap(); // 85 of 100: across the line
    f.put_with(&a, limited("/c", 5)).await.unwrap(); // still above: no second warning
    let log = f.event_log(&a).await;
    let kinds: Vec<_> = log.iter().map(|e| (e.seq, e.kind.as_str(), e.path.as_deref())).collect();
    assert_eq!(
        kinds,
        [
            (1, "file.written", Some("/a")),
            (2, "file.written", Some("/b")),
            (3, "quota.warning", None),
            (4, "file.written", Some("/c"))
        ]
    );
    let detail = log[2].detail.clone().unwrap();
    assert_eq!(
        detail,
        serde_json::json!({"quota": "max_storage_bytes", "limit": 100, "current": 85, "threshold": 0.8})
    );
    assert_eq!(log[2].actor, "system");
}
