//! Moves between placements: every row of the tenant arrives, and it keeps serving.

use crate::{file_journal, key, memory_journal, memory_write, now, path, write, Backend};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tenantry_core::memory::{MemoryKey, Namespace};
use tenantry_core::model::Placement;
use tenantry_core::store::{FileListing, MoveProgress, Precondition, StoredUsage, TenantScope};

pub async fn a_move_there_and_back_keeps_every_row_of_the_tenant(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    f.put(&a, "/small.txt", "searchable words here").await;
    f.put(&a, "/big.bin", &"b".repeat(3 << 20)).await;
    f.store
        .put_memory(&a, memory_write("ns", "k", serde_json::json!("remembered value")), memory_journal("ns", "k"))
        .await
        .unwrap();
    f.store.insert_key(&a, &key(&t, "k"), None, crate::draft("key.create", "k").into()).await.unwrap();
    f.put(&other, "/theirs", "x").await;
    let snapshot = |scope: TenantScope| {
        let store = f.store.clone();
        async move {
            let all = FileListing {
                within: tenantry_core::path::PathPrefix::root(),
                recursive: true,
                include_within: true,
                after: None,
                limit: 100,
            };
            let files = store.list_files(&scope, all).await.unwrap();
            let memory = store.list_all_memory(&scope, None, 100, now()).await.unwrap();
            let audit = store.list_audit(&scope, 0, None, 1000).await.unwrap();
            let events = store.list_events(&scope, 0, None, 1000).await.unwrap();
            let keys = store.list_keys(&scope).await.unwrap();
            let usage = store.usage(&scope).await.unwrap();
            (files, memory, audit, events, keys, usage)
        }
    };
    let before = snapshot(a.clone()).await;
    let other_before = snapshot(other.clone()).await;
    let report = f.store.move_tenant(&a, Placement::Dedicated, Arc::new(|_| {})).await.unwrap();
    assert!(report.verified, "{report:?}");
    assert_eq!((report.files, report.file_bytes), (2, 21 + (3 << 20)));
    let mut moved = t.clone();
    moved.placement = Placement::Dedicated;
    let there = TenantScope::for_store_contract(&moved);
    let mut after = snapshot(there.clone()).await;
    // The move's own audit entry, if the backend writes one, comes after everything copied.
    after.2.truncate(before.2.len());
    assert_eq!(after, before);
    assert_eq!(f.store.usage(&there).await.unwrap(), StoredUsage { storage_bytes: 21 + (3 << 20) + 18, files: 2 });
    let (_, big) = f.store.read_file(&there, &path("/big.bin"), None).await.unwrap().unwrap();
    assert_eq!(big.len(), 3 << 20);
    // It keeps serving there: a write, its event next in seq.
    f.put(&there, "/after-move", "x").await;
    assert_eq!(f.store.last_event_seq(&there).await.unwrap(), before.3.len() as u64 + 1);
    let moved_there = snapshot(there.clone()).await;
    let back = f.store.move_tenant(&there, Placement::Shared, Arc::new(|_| {})).await.unwrap();
    assert!(back.verified);
    let home = TenantScope::for_store_contract(&t);
    let mut home_again = snapshot(home.clone()).await;
    home_again.2.truncate(moved_there.2.len());
    assert_eq!(home_again, moved_there, "every row came back");
    let value = f
        .store
        .get_memory(&home, &Namespace::parse("ns").unwrap(), &MemoryKey::parse("k").unwrap(), now())
        .await
        .unwrap();
    assert_eq!(value.unwrap().value, Some(serde_json::json!("remembered value")));
    assert!(f.store.stat_file(&home, &path("/after-move")).await.unwrap().is_some());
    assert!(tenantry_core::audit::verify(None, &f.audit_log(&home).await).ok);
    assert_eq!(snapshot(other.clone()).await, other_before, "the other tenant is untouched");
}

pub async fn a_file_replaced_by_another_with_its_bytes_during_a_move_ends_right(b: &dyn Backend) {
    let f = b.open().await;
    let (mut tenant, mut scope) = f.tenant("acme").await;
    for i in 0..10 {
        f.put(&scope, &format!("/f{i}"), &format!("file {i}")).await;
    }
    // Six moves, there and back: each copies a file written last (in a backend that numbers
    // bodies, the highest number), then, while the move goes on, the file is deleted and a new
    // one with the same bytes takes its place (and may take its body's number). Which of the two
    // paths a round brings up to date first is the backend's order: six moves try both.
    for round in 0..6 {
        let (gone, born) = (format!("/last{round}"), format!("/born{round}"));
        f.put(&scope, &gone, "the same bytes").await;
        let (store, during, acted) = (f.store.clone(), scope.clone(), Arc::new(AtomicBool::new(false)));
        let (g, n) = (gone.clone(), born.clone());
        let replace = move |_: MoveProgress| {
            // Once, at the first report of progress: after the first round's copy, before the
            // tenant's writes are held for the switch.
            if acted.swap(true, Ordering::SeqCst) {
                return;
            }
            let (store, during, g, n) = (store.clone(), during.clone(), g.clone(), n.clone());
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    let at = now();
                    store.delete_file(&during, &path(&g), Precondition::None, at, file_journal(&g)).await.unwrap();
                    store.put_file(&during, write(&n, b"the same bytes"), file_journal(&n)).await.unwrap();
                })
            });
        };
        let to = if tenant.placement == Placement::Shared { Placement::Dedicated } else { Placement::Shared };
        let report = f.store.move_tenant(&scope, to, Arc::new(replace)).await.unwrap();
        assert!(report.verified, "{report:?}");
        tenant.placement = to;
        scope = TenantScope::for_store_contract(&tenant);
        let read = f.store.read_file(&scope, &path(&born), None).await.unwrap();
        assert_eq!(read.map(|(_, bytes)| bytes), Some(b"the same bytes".to_vec()), "move {round}: {born}");
        assert!(f.store.stat_file(&scope, &path(&gone)).await.unwrap().is_none());
    }
    assert_eq!(f.store.usage(&scope).await.unwrap().files, 16);
}
