//! Two nodes (two `PgStore`s) on one database: what one commits, the other hears through the
//! feed (LISTEN/NOTIFY), and a lost feed connection makes both re-read.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_core::directory::DirectoryFollower;
use tenantry_core::events::{Event, EventSink};
use tenantry_core::ids::{KeyId, TenantId};
use tenantry_core::model::Tenant;
use tenantry_core::slug::Slug;
use tenantry_core::store::{EventLog, FileStore, Health, MemoryStore, TenantRegistry, TenantScope, Upkeep};
use tenantry_core::time::Timestamp;
use tenantry_store_contract::{draft, file_journal, key, now, write};
use tenantry_store_postgres::testing::TestDatabase;
use tenantry_store_postgres::{schema, PgStore};

#[derive(Default)]
struct Heard {
    changed: Mutex<Vec<TenantId>>,
    /// Revocations heard, each with whether the tenant's change had been told already.
    revoked: Mutex<Vec<(TenantId, KeyId, Timestamp, bool)>>,
    resyncs: Mutex<usize>,
    events: Mutex<Vec<(TenantId, u64)>>,
    missed: Mutex<usize>,
    follows: bool,
}

impl DirectoryFollower for Heard {
    fn tenant_changed(&self, tenant: &TenantId) {
        self.changed.lock().unwrap().push(tenant.clone());
    }
    fn key_revoked(&self, tenant: &TenantId, key: &KeyId, at: Timestamp) {
        let told = self.changed.lock().unwrap().contains(tenant);
        self.revoked.lock().unwrap().push((tenant.clone(), key.clone(), at, told));
    }
    fn resync(&self) {
        *self.resyncs.lock().unwrap() += 1;
    }
}

impl EventSink for Heard {
    fn published(&self, tenant: &TenantId, events: &[Event]) {
        self.events.lock().unwrap().extend(events.iter().map(|e| (tenant.clone(), e.seq)));
    }
    fn follows(&self, _tenant: &TenantId) -> bool {
        self.follows
    }
    fn missed(&self) {
        *self.missed.lock().unwrap() += 1;
    }
}

impl Heard {
    fn following() -> Arc<Heard> {
        Arc::new(Heard { follows: true, ..Heard::default() })
    }
    fn seqs(&self, tenant: &TenantId) -> Vec<u64> {
        self.events.lock().unwrap().iter().filter(|(t, _)| t == tenant).map(|(_, s)| *s).collect()
    }
}

/// Waits (at most 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 20 s: {what}");
}

async fn node(db: &TestDatabase) -> Arc<PgStore> {
    Arc::new(PgStore::open(&db.app_url(), 4).await.unwrap())
}

async fn tenant(store: &PgStore, slug: &str) -> (Tenant, TenantScope) {
    let tenant = Tenant::new(Slug::parse(slug).unwrap(), slug, "free", now());
    let scope = TenantScope::for_store_contract(&tenant);
    store.insert_tenant(&scope, &tenant, None, draft("tenant.create", slug)).await.unwrap();
    (tenant, scope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_commits_the_other_hears_once_and_in_order() {
    let Some(db) = TestDatabase::create().await else { return };
    schema::migrate(&mut db.connect_as(&db.owner_role).await, &db.app_role).await.unwrap();
    let (a, b) = (node(&db).await, node(&db).await);
    let (heard_a, heard_b, deaf_b) = (Heard::following(), Heard::following(), Arc::new(Heard::default()));
    a.add_event_sink(heard_a.clone());
    b.add_event_sink(heard_b.clone());
    b.add_event_sink(deaf_b.clone());
    b.add_directory_follower(heard_b.clone());

    // A tenant and a key created on A: B is told the tenant changed.
    let (t, scope) = tenant(&a, "acme").await;
    until("B hears of the new tenant", || heard_b.changed.lock().unwrap().contains(&t.id)).await;
    heard_b.changed.lock().unwrap().clear();
    let k = key(&t, "ci");
    a.insert_key(&scope, &k, None, draft("key.create", "ci").into()).await.unwrap();
    until("B hears of the new key", || heard_b.changed.lock().unwrap().contains(&t.id)).await;
    heard_b.changed.lock().unwrap().clear();
    assert!(heard_b.revoked.lock().unwrap().is_empty(), "a key's creation is no revocation");
    let at = now();
    b.revoke_key(&scope, &k.id, at, draft("key.revoke", "ci").into()).await.unwrap();
    until("B hears of its own revocation too", || heard_b.changed.lock().unwrap().contains(&t.id)).await;
    let (_, keys) = b.load_tenant_directory(&t.id).await.unwrap().unwrap();
    assert_eq!(keys[0].revoked_at, Some(at));
    // The revocation itself, with its time, before the tenant's change (no re-read needed).
    assert_eq!(*heard_b.revoked.lock().unwrap(), [(t.id.clone(), k.id.clone(), at, false)]);

    // Events written alternately on A and B: each node's following sink hears every one exactly
    // once (its own node's after the commit, the other's through the feed).
    let before = a.last_event_seq(&scope).await.unwrap();
    for i in 0..10u64 {
        let on = if i % 2 == 0 { &a } else { &b };
        on.put_file(&scope, write(&format!("/f{i}"), b"x"), file_journal(&format!("/f{i}"))).await.unwrap();
    }
    let all: Vec<u64> = (before + 1..=before + 10).collect();
    until("B hears all ten", || {
        let mut s = heard_b.seqs(&t.id);
        s.retain(|s| *s > before);
        s.len() >= 10
    })
    .await;
    until("A hears all ten", || heard_a.seqs(&t.id).iter().filter(|s| **s > before).count() >= 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // any duplicate would have come by now
    for heard in [&heard_a, &heard_b] {
        let mut seqs: Vec<u64> = heard.seqs(&t.id).into_iter().filter(|s| *s > before).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, all, "every event once");
    }
    // A sink that follows no tenant hears only its own node's events, in seq order.
    let deaf: Vec<u64> = deaf_b.seqs(&t.id).into_iter().filter(|s| *s > before).collect();
    assert_eq!(deaf, all.iter().copied().filter(|s| (s - before) % 2 == 0).collect::<Vec<_>>());

    // The feed's connections cut: each node re-reads everything once it is back, and hears
    // the other's events again after that.
    let admin = db.admin().await;
    let cut = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND application_name LIKE 'tenantry-%-feed'",
            &[&db.name],
        )
        .await
        .unwrap();
    assert_eq!(cut, 2, "one feed connection per node");
    until("B's directory follower re-reads", || *heard_b.resyncs.lock().unwrap() == 1).await;
    until("B's sinks are told they may have missed events", || *heard_b.missed.lock().unwrap() == 1).await;
    a.put_file(&scope, write("/after", b"x"), file_journal("/after")).await.unwrap();
    until("B hears A's event after the reconnection", || heard_b.seqs(&t.id).contains(&(before + 11))).await;
    drop((a, b));
    db.drop_all().await;
}

/// A PUT or a DELETE sends its statements in flights on a pooled connection (the transaction begun
/// by the first, committed by the last). One refused between its flights (its precondition fails,
/// or there is no file, under the tenant's row lock) must leave neither the lock held nor the connection inside a
/// transaction: the next write on that node (one connection: the same one) and a write of the
/// same tenant on another node both go through at once, and what they wrote is what is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_or_delete_refused_between_its_flights_leaves_no_lock_and_no_open_transaction() {
    let Some(db) = TestDatabase::create().await else { return };
    schema::migrate(&mut db.connect_as(&db.owner_role).await, &db.app_role).await.unwrap();
    let a = Arc::new(PgStore::open(&db.app_url(), 1).await.unwrap());
    let b = node(&db).await;
    let (_, scope) = tenant(&a, "acme").await;
    a.put_file(&scope, write("/f", b"one"), file_journal("/f")).await.unwrap();
    for _ in 0..3 {
        let mut refused = write("/f", b"two");
        refused.precondition = tenantry_core::store::Precondition::IfMatch(vec!["\"not-the-etag\"".into()]);
        let e = a.put_file(&scope, refused, file_journal("/f")).await.unwrap_err();
        assert_eq!(e.code.as_str(), "precondition_failed");
        // Deletes decide between their flights too: a precondition, and a file not there.
        let (f, none) = (
            tenantry_core::path::TenantPath::parse("/f").unwrap(),
            tenantry_core::path::TenantPath::parse("/no").unwrap(),
        );
        let stale = tenantry_core::store::Precondition::IfMatch(vec!["\"not-the-etag\"".into()]);
        let e = a.delete_file(&scope, &f, stale, now(), file_journal("/f")).await.unwrap_err();
        assert_eq!(e.code.as_str(), "precondition_failed");
        let e = a
            .delete_file(&scope, &none, tenantry_core::store::Precondition::None, now(), file_journal("/no"))
            .await
            .unwrap_err();
        assert_eq!(e.code.as_str(), "not_found");
        let (ns, key) = (
            tenantry_core::memory::Namespace::parse("ns").unwrap(),
            tenantry_core::memory::MemoryKey::parse("k").unwrap(),
        );
        let e = a.delete_memory(&scope, &ns, &key, now(), file_journal("/k")).await.unwrap_err();
        assert_eq!(e.code.as_str(), "not_found");
    }
    let within = |what: &'static str| {
        move |r: Result<_, tokio::time::error::Elapsed>| r.unwrap_or_else(|_| panic!("{what} waited for a lock"))
    };
    let on_b =
        tokio::time::timeout(Duration::from_secs(5), b.put_file(&scope, write("/g", b"b"), file_journal("/g"))).await;
    within("a write on the other node")(on_b).unwrap();
    let on_a =
        tokio::time::timeout(Duration::from_secs(5), a.put_file(&scope, write("/f", b"three"), file_journal("/f")))
            .await;
    within("the next write on the same connection")(on_a).unwrap();
    let (_, bytes) =
        b.read_file(&scope, &tenantry_core::path::TenantPath::parse("/f").unwrap(), None).await.unwrap().unwrap();
    assert_eq!(bytes, b"three");
    let events = b.list_events(&scope, 0, None, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no seq taken by a refused write");
    assert_eq!(events.iter().filter(|e| e.kind == "file.written").count(), 3);
    a.close().await.unwrap();
    b.close().await.unwrap();
    db.drop_all().await;
}

/// A sink with a stream open on one tenant: what it is told to re-read.
#[derive(Default)]
struct Streaming {
    tenant: Mutex<Option<TenantId>>,
    reread: Mutex<Vec<TenantId>>,
}

impl EventSink for Streaming {
    fn published(&self, _tenant: &TenantId, _events: &[Event]) {}
    fn follows(&self, tenant: &TenantId) -> bool {
        self.tenant.lock().unwrap().as_ref() == Some(tenant)
    }
    fn followed(&self) -> Vec<TenantId> {
        self.tenant.lock().unwrap().iter().cloned().collect()
    }
    fn missed_of(&self, tenant: &TenantId) {
        self.reread.lock().unwrap().push(tenant.clone());
    }
}

/// A node that commits an event and stops before announcing it leaves the other nodes' streams
/// of that tenant without it: once the tenant's seq has stood still for six checks (seconds),
/// they are told to re-read the tenant. Events that were handed on as usual cause no re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_a_node_never_announced_makes_the_streams_of_its_tenant_re_read() {
    let Some(db) = TestDatabase::create().await else { return };
    schema::migrate(&mut db.connect_as(&db.owner_role).await, &db.app_role).await.unwrap();
    let (a, b) = (node(&db).await, node(&db).await);
    let streaming = Arc::new(Streaming::default());
    b.add_event_sink(streaming.clone());
    let (t, scope) = tenant(&a, "acme").await;
    *streaming.tenant.lock().unwrap() = Some(t.id.clone());
    // Once first followed, the tenant is checked once: its streams re-read what came before.
    until("the first check of a newly followed tenant", || streaming.reread.lock().unwrap().len() == 1).await;
    // Written on A and announced: B hands it on, and nothing is to be re-read.
    a.put_file(&scope, write("/f", b"x"), file_journal("/f")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(streaming.reread.lock().unwrap().len(), 1, "an announced event causes no re-read");

    // An event committed by a node that stopped before announcing it.
    let owner = db.connect_as(&db.owner_role).await;
    owner
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO events (tenant_id, seq, type, path, actor, at)
                 SELECT '{id}', last_event_seq + 1, 'file.written', '/g', 'key:gone', 0 FROM tenant_usage WHERE tenant_id = '{id}';
             UPDATE tenant_usage SET last_event_seq = last_event_seq + 1 WHERE tenant_id = '{id}';
             COMMIT;",
            id = t.id.as_str()
        ))
        .await
        .unwrap();
    until("B's streams are told to re-read", || streaming.reread.lock().unwrap().len() == 2).await;
    assert_eq!(streaming.reread.lock().unwrap()[1], t.id);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(streaming.reread.lock().unwrap().len(), 2, "once");
    db.drop_all().await;
}
