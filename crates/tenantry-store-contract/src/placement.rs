//! Moves between placements: every row of the tenant arrives, and it keeps serving.

use crate::{file_journal, key, memory_journal, memory_write, now, path, people, write, Backend};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tenantry_core::memory::{MemoryKey, Namespace};
use tenantry_core::model::Placement;
use tenantry_core::store::{FileListing, MoveProgress, Precondition, StoredUsage, TenantScope};
use tenantry_core::time::Timestamp;

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

/// What a reader sees of a tenant: its files (with their bytes), memory, audit log, events,
/// keys and usage.
async fn everything(f: &crate::Fixture, scope: &TenantScope) -> impl PartialEq + std::fmt::Debug {
    let all = FileListing {
        within: tenantry_core::path::PathPrefix::root(),
        recursive: true,
        include_within: true,
        after: None,
        limit: 100,
    };
    let files = f.store.list_files(scope, all).await.unwrap();
    let mut bytes = Vec::new();
    for file in &files {
        bytes.push(f.store.read_file(scope, &file.path, None).await.unwrap().map(|(_, b)| b));
    }
    let memory = f.store.list_all_memory(scope, None, 100, now()).await.unwrap();
    let audit = f.store.list_audit(scope, 0, None, 1000).await.unwrap();
    let events = f.store.list_events(scope, 0, None, 1000).await.unwrap();
    let keys = f.store.list_keys(scope).await.unwrap();
    let usage = f.store.usage(scope).await.unwrap();
    (files, bytes, memory, audit, events, keys, usage)
}

/// The documents a search for one word finds.
async fn found(f: &crate::Fixture, scope: &TenantScope, word: &str) -> Vec<String> {
    crate::search::found(f, scope, crate::search::query(&[word])).await
}

/// A move's progress listener that makes changes, what a reader saw of the tenant after the last
/// of them, and how many reports the move made.
type Acting =
    (Arc<dyn Fn(MoveProgress) + Send + Sync>, Arc<std::sync::Mutex<Option<String>>>, Arc<std::sync::atomic::AtomicU32>);

/// Makes `changes(n)` at the move's report of progress `n` (each while the move waits), and
/// keeps what a reader then saw of the tenant: the changes arrive whichever round copies them.
fn acting_at_reports<F, Fut>(f: &Arc<crate::Fixture>, scope: &TenantScope, changes: F) -> Acting
where
    F: Fn(u32) -> Option<Fut> + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let reports = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let last_seen = Arc::new(std::sync::Mutex::new(None));
    let (f, scope, r, seen) = (f.clone(), scope.clone(), reports.clone(), last_seen.clone());
    let act = move |_: MoveProgress| {
        let n = r.fetch_add(1, Ordering::SeqCst);
        let Some(change) = changes(n) else { return };
        let (f, scope, seen) = (f.clone(), scope.clone(), seen.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                change.await;
                *seen.lock().unwrap() = Some(format!("{:?}", everything(&f, &scope).await));
            })
        });
    };
    (Arc::new(act), last_seen, reports)
}

/// Moves the tenant to `to`, making `changes` at its reports of progress; checks that it verified
/// and that the tenant there is as the last change left it. The tenant's scope there, and how
/// many reports the move made.
async fn move_acting<F, Fut>(
    f: &Arc<crate::Fixture>,
    tenant: &mut tenantry_core::model::Tenant,
    to: Placement,
    changes: F,
) -> (TenantScope, u32)
where
    F: Fn(u32) -> Option<Fut> + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let scope = TenantScope::for_store_contract(tenant);
    let (act, last_seen, reports) = acting_at_reports(f, &scope, changes);
    let report = f.store.move_tenant(&scope, to, act).await.unwrap();
    assert!(report.verified, "{report:?}");
    tenant.placement = to;
    let there = TenantScope::for_store_contract(tenant);
    let before = last_seen.lock().unwrap().take().expect("the move reported its progress");
    assert_eq!(format!("{:?}", everything(f, &there).await), before, "the tenant as the last change left it");
    (there, reports.load(Ordering::SeqCst))
}

pub async fn every_kind_of_change_made_during_a_move_arrives(b: &dyn Backend) {
    use tenantry_core::import::ConflictPolicy;
    use tenantry_core::time::Timestamp;
    let f = Arc::new(b.open().await);
    let (mut tenant, scope) = f.tenant("acme").await;
    for i in 0..20 {
        f.put(&scope, &format!("/f{i}.txt"), &format!("file number {i}")).await;
    }
    f.put(&scope, "/gone.txt", "vanishing aardvark").await;
    f.put(&scope, "/changed.txt", "obsolete walrus").await;
    let t0 = now();
    // "later" lives an hour: the snapshots compared must not differ by the clock.
    for (key, text, ttl) in [("soon", "ephemeral pelican", 500), ("later", "fleeting gecko", 3_600_000)] {
        let mut w = memory_write("ns", key, serde_json::json!(text));
        w.expires_at = Some(Timestamp::from_millis(t0.millis() + ttl));
        f.store.put_memory(&scope, w, memory_journal("ns", key)).await.unwrap();
    }
    f.store
        .put_memory(
            &scope,
            memory_write("ns", "old", serde_json::json!("forgotten okapi")),
            memory_journal("ns", "old"),
        )
        .await
        .unwrap();
    let big: String = (0..40_000).map(|i| format!("zebra{} ", i % 7)).collect();
    // The move there: at its first report, files and memory entries written and deleted, a
    // large file of several chunks, an expired entry reclaimed (which no event names); at its
    // second (if it makes one), a file written at the first deleted and an import (whose event
    // names no path).
    let changes = {
        let (f, scope, big) = (f.clone(), scope.clone(), big.clone());
        move |n: u32| {
            let (f, scope, big) = (f.clone(), scope.clone(), big.clone());
            (n < 2).then_some(async move {
                let at = now();
                if n == 0 {
                    f.put(&scope, "/big.txt", &big).await;
                    f.put(&scope, "/transient.txt", "passing lemur").await;
                    let gone = file_journal("/gone.txt");
                    f.store.delete_file(&scope, &path("/gone.txt"), Precondition::None, at, gone).await.unwrap();
                    f.put(&scope, "/changed.txt", "current narwhal").await;
                    let fresh = memory_write("ns", "new", serde_json::json!("arriving quokka"));
                    f.store.put_memory(&scope, fresh, memory_journal("ns", "new")).await.unwrap();
                    let (ns, key) = (Namespace::parse("ns").unwrap(), MemoryKey::parse("old").unwrap());
                    f.store.delete_memory(&scope, &ns, &key, at, memory_journal("ns", "old")).await.unwrap();
                    let expired = Timestamp::from_millis(t0.millis() + 2_000);
                    assert_eq!(f.store.reclaim_expired_memory(expired, 100).await.unwrap(), 1);
                } else {
                    let gone = file_journal("/transient.txt");
                    f.store.delete_file(&scope, &path("/transient.txt"), Precondition::None, at, gone).await.unwrap();
                    let staged = vec![crate::import::file(0, "/imported.txt", "delivered platypus")];
                    crate::import::stage(&f, &scope, "imp", ConflictPolicy::Overwrite, staged).await;
                    let plan = crate::import::plan(ConflictPolicy::Overwrite, None);
                    f.store.commit_import(&scope, "imp", plan, crate::import::journal()).await.unwrap();
                }
            })
        }
    };
    let (there, reports) = move_acting(&f, &mut tenant, Placement::Dedicated, changes).await;
    let (_, bytes) = f.store.read_file(&there, &path("/big.txt"), None).await.unwrap().unwrap();
    assert_eq!(bytes, big.as_bytes());
    assert_eq!(found(&f, &there, "zebra3").await, ["/big.txt"]);
    assert_eq!(found(&f, &there, "narwhal").await, ["/changed.txt"]);
    assert_eq!(found(&f, &there, "quokka").await, ["ns/new"]);
    for gone in ["aardvark", "walrus", "okapi", "pelican"] {
        assert_eq!(found(&f, &there, gone).await, Vec::<String>::new(), "{gone}");
    }
    let imported = reports >= 2;
    assert_eq!(found(&f, &there, "platypus").await.len(), usize::from(imported));
    assert_eq!(found(&f, &there, "lemur").await.len(), usize::from(!imported));
    // And back, with only an expired entry reclaimed and a value written at its first report.
    let changes = {
        let (f, there) = (f.clone(), there.clone());
        move |n: u32| {
            let (f, there) = (f.clone(), there.clone());
            (n == 0).then_some(async move {
                let expired = Timestamp::from_millis(t0.millis() + 7_200_000);
                assert_eq!(f.store.reclaim_expired_memory(expired, 100).await.unwrap(), 1);
                let fresh = memory_write("ns", "newer", serde_json::json!("returning ibex"));
                f.store.put_memory(&there, fresh, memory_journal("ns", "newer")).await.unwrap();
            })
        }
    };
    let (home, _) = move_acting(&f, &mut tenant, Placement::Shared, changes).await;
    assert_eq!(found(&f, &home, "gecko").await, Vec::<String>::new());
    assert_eq!(found(&f, &home, "ibex").await, ["ns/newer"]);
}

pub async fn memberships_move_with_their_tenant(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let ada = people::user("ada@example.com");
    f.store.insert_user(&ada).await.unwrap();
    let m = people::member(&ta, &ada, tenantry_core::role::Role::Writer);
    f.store.insert_member(&a, &m, people::member_journal("member.add", &ada)).await.unwrap();
    let report = f.store.move_tenant(&a, Placement::Dedicated, Arc::new(|_| {})).await.unwrap();
    assert!(report.verified, "{report:?}");
    let mut moved = ta.clone();
    moved.placement = Placement::Dedicated;
    let there = TenantScope::for_store_contract(&moved);
    assert_eq!(f.store.load_members(&there).await.unwrap(), vec![m.clone()]);
    assert_eq!(f.store.load_people().await.unwrap().2, vec![m.clone()], "read where the tenant lives now");
    let tom = people::user("tom@example.com");
    f.store.insert_user(&tom).await.unwrap();
    let t = people::member(&ta, &tom, tenantry_core::role::Role::Reader);
    f.store.insert_member(&there, &t, people::member_journal("member.add", &tom)).await.unwrap();
    let back = f.store.move_tenant(&there, Placement::Shared, Arc::new(|_| {})).await.unwrap();
    assert!(back.verified, "{back:?}");
    let home = TenantScope::for_store_contract(&ta);
    let members = people::sorted(f.store.load_members(&home).await.unwrap(), |m| m.user_id.to_string());
    assert_eq!(members, people::sorted(vec![m, t], |m| m.user_id.to_string()));
    assert_eq!(f.store.load_people().await.unwrap().2.len(), 2);
}

pub async fn a_relays_position_moves_with_its_tenant(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let later = |ms: i64| Timestamp::from_millis(now().millis() + ms);
    let claim = |scope: TenantScope, holder: &'static str| {
        let store = f.store.clone();
        async move {
            let p = store.claim_relay(&scope, "nats", holder, later(0), later(60_000)).await.unwrap().unwrap();
            (p.taken, p.seq)
        }
    };
    assert_eq!(claim(a.clone(), "n1").await, (true, 0));
    assert!(f.store.advance_relay(&a, "nats", "n1", 7, later(60_000)).await.unwrap());
    let report = f.store.move_tenant(&a, Placement::Dedicated, Arc::new(|_| {})).await.unwrap();
    assert!(report.verified, "{report:?}");
    let mut moved = ta.clone();
    moved.placement = Placement::Dedicated;
    let there = TenantScope::for_store_contract(&moved);
    assert_eq!(claim(there.clone(), "n2").await, (false, 7), "still n1's");
    assert_eq!(claim(there.clone(), "n1").await, (true, 7));
    assert!(f.store.advance_relay(&there, "nats", "n1", 9, later(60_000)).await.unwrap());
    let back = f.store.move_tenant(&there, Placement::Shared, Arc::new(|_| {})).await.unwrap();
    assert!(back.verified, "{back:?}");
    assert_eq!(claim(TenantScope::for_store_contract(&ta), "n1").await, (true, 9));
}
