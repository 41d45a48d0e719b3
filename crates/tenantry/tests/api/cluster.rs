//! Several nodes on one PostgreSQL database (skipped on the embedded store, which one node owns):
//! directory changes made on one node hold on the other, a write answered by one reads back on
//! the other, and a stream on one carries every node's events without gaps or duplicates.

use crate::helpers::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tenantry_client::Client;

fn several_nodes() -> bool {
    if !on_postgres() {
        eprintln!("skipped on the embedded store: several nodes need PostgreSQL");
    }
    on_postgres()
}

/// Polls `status` of `GET path` with `key` on `base` until it is `want` (at most 10 s), and
/// returns how long that took.
async fn until_status(base: &str, key: &str, path: &str, want: u16) -> Duration {
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        let res = http.get(format!("{base}{path}")).bearer_auth(key).send().await.unwrap();
        if res.status().as_u16() == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{path} never answered {want} (last {})", res.status());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An `enterprise` tenant without a request rate limit (these tests poll), placed as `placement`
/// (`dedicated`: a database of its own).
async fn unlimited_placed(app: &TestApp, placement: &str) -> Tenant {
    let tenant = json!({"slug": "acme", "tier": "enterprise", "placement": placement,
        "quotas": {"max_requests_per_minute": null}});
    app.create_tenant_with(tenant).await
}

/// Two nodes on one database, a tenant `acme` without a rate limit, and a client of its owner
/// on each node.
struct TwoNodes {
    app: TestApp,
    acme: Tenant,
    node_b: tenantry::server::Running,
    on_a: Client,
    on_b: Client,
}

async fn two_nodes() -> TwoNodes {
    two_nodes_placed("shared").await
}

async fn two_nodes_placed(placement: &str) -> TwoNodes {
    let app = spawn_app().await;
    let acme = unlimited_placed(&app, placement).await;
    let (node_b, b) = app.another_node().await;
    let (on_a, on_b) = (app.as_key(&acme.owner), Client::new(&b, Some(acme.owner.clone())));
    TwoNodes { app, acme, node_b, on_a, on_b }
}

#[tokio::test]
async fn directory_changes_made_on_one_node_hold_on_the_other() {
    directory_changes_hold_on_the_other_node("shared").await;
}

#[tokio::test]
async fn a_dedicated_tenants_directory_changes_made_on_one_node_hold_on_the_other() {
    directory_changes_hold_on_the_other_node("dedicated").await;
}

async fn directory_changes_hold_on_the_other_node(placement: &str) {
    if !several_nodes() {
        return;
    }
    let app = spawn_app().await;
    let (node_b, b) = app.another_node().await;
    // A tenant created on A is served by B.
    let acme = unlimited_placed(&app, placement).await;
    until_status(&b, &acme.owner, "/v1/whoami", 200).await;
    // A key created on A works on B; revoked on A, B refuses it.
    let (key_id, key) = app.key(&acme, "writer", None).await;
    until_status(&b, &key, "/v1/whoami", 200).await;
    app.as_key(&acme.owner).revoke_key(&key_id).await.unwrap();
    until_status(&b, &key, "/v1/whoami", 401).await;
    // Suspended on A: B refuses the tenant's keys; resumed on A: B serves them again.
    app.operator().tenant_action("acme", "suspend").await.unwrap();
    until_status(&b, &acme.owner, "/v1/whoami", 403).await;
    app.operator().tenant_action("acme", "resume").await.unwrap();
    until_status(&b, &acme.owner, "/v1/whoami", 200).await;
    // A quota lowered on A is enforced by B.
    app.operator().update_tenant("acme", &json!({"quotas": {"max_files": 1}})).await.unwrap();
    let on_b = Client::new(&b, Some(acme.owner.clone()));
    on_b.put_file("/one", b"1".to_vec(), None).await.unwrap();
    let mut refused = false;
    for _ in 0..500 {
        match on_b.put_file("/two", b"2".to_vec(), None).await {
            Err(e) if e.code() == Some("quota_exceeded") => {
                refused = true;
                break;
            }
            // Still the old limit: undo, and try again.
            Ok(_) => on_b.delete_file("/two").await.unwrap(),
            Err(e) => panic!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "B never enforced the lowered quota");
    // Purged on A: gone on B.
    app.operator().archive_tenant("acme").await.unwrap();
    app.operator().purge_tenant("acme").await.unwrap();
    until_status(&b, &acme.owner, "/v1/whoami", 401).await;
    node_b.stop().await.unwrap();
}

#[tokio::test]
async fn a_write_answered_by_one_node_reads_back_on_the_other() {
    a_write_reads_back_on_the_other_node("shared").await;
}

#[tokio::test]
async fn a_dedicated_tenants_write_answered_by_one_node_reads_back_on_the_other() {
    a_write_reads_back_on_the_other_node("dedicated").await;
}

async fn a_write_reads_back_on_the_other_node(placement: &str) {
    if !several_nodes() {
        return;
    }
    let TwoNodes { app: _serving, node_b, on_a, on_b, .. } = two_nodes_placed(placement).await;
    for i in 0..20u8 {
        let (writer, reader) = if i % 2 == 0 { (&on_a, &on_b) } else { (&on_b, &on_a) };
        let body = vec![i; 1000 + i as usize];
        writer.put_file("/same", body.clone(), None).await.unwrap();
        assert_eq!(reader.get_file("/same").await.unwrap().to_vec(), body, "round {i}");
        writer.set_memory("ns", "k", &json!({"round": i}), None).await.unwrap();
        assert_eq!(reader.get_memory("ns", "k").await.unwrap()["value"], json!({"round": i}));
    }
    on_a.delete_file("/same").await.unwrap();
    assert_eq!(on_b.get_file("/same").await.unwrap_err().code(), Some("not_found"));
    node_b.stop().await.unwrap();
}

#[tokio::test]
async fn a_stream_on_one_node_carries_every_nodes_events_and_resumes_on_the_other() {
    a_stream_carries_every_nodes_events("shared").await;
}

#[tokio::test]
async fn a_dedicated_tenants_stream_on_one_node_carries_every_nodes_events() {
    a_stream_carries_every_nodes_events("dedicated").await;
}

async fn a_stream_carries_every_nodes_events(placement: &str) {
    if !several_nodes() {
        return;
    }
    let TwoNodes { app: _serving, node_b, on_a, on_b, .. } = two_nodes_placed(placement).await;
    let start = on_a.events(0, Some(1000)).await.unwrap()["items"].as_array().unwrap().len() as u64;
    let mut stream = on_b.event_stream(Some(start)).await.unwrap();
    // Three writers on each node at once: B's own events and A's (through the feed) reach B's
    // hub in either order.
    let writers: Vec<_> = [&on_a, &on_b, &on_a, &on_b, &on_a, &on_b]
        .into_iter()
        .cloned()
        .enumerate()
        .map(|(n, c)| {
            tokio::spawn(async move {
                for i in 0..25 {
                    c.put_file(&format!("/n{n}/{i}"), vec![b'x'], None).await.unwrap();
                }
            })
        })
        .collect();
    let mut seqs = Vec::new();
    while seqs.len() < 150 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        seqs.push(e["seq"].as_u64().unwrap());
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(seqs, (start + 1..=start + 150).collect::<Vec<u64>>(), "in order, no gap, no duplicate");
    assert!(tokio::time::timeout(Duration::from_millis(500), stream.next()).await.is_err(), "nothing more");
    drop(stream);
    // Resumed on A from the middle of what B carried.
    let mut stream = on_a.event_stream(Some(start + 140)).await.unwrap();
    on_b.put_file("/last", vec![], None).await.unwrap();
    let mut rest = Vec::new();
    while rest.len() < 11 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        rest.push(e["seq"].as_u64().unwrap());
    }
    assert_eq!(rest, (start + 141..=start + 151).collect::<Vec<u64>>());
    node_b.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_by_the_other_within_moments() {
    if !several_nodes() {
        return;
    }
    let TwoNodes { app, acme, node_b, on_a, on_b } = two_nodes().await;
    // The propagation is measured and printed (not asserted: these machines are shared).
    let mut took = Vec::new();
    for _ in 0..10 {
        let (id, key) = app.key(&acme, "writer", None).await;
        until_status(on_b.base(), &key, "/v1/whoami", 200).await;
        on_a.revoke_key(&id).await.unwrap();
        took.push(until_status(on_b.base(), &key, "/v1/whoami", 401).await);
    }
    took.sort();
    eprintln!("revocation reached the other node after {:?} (median) and {:?} (worst)", took[5], took[9]);
    node_b.stop().await.unwrap();
}

/// Sends `n` requests to `GET /v1/files`, alternating between the nodes, `pace` apart, and
/// counts the answers by status.
async fn alternate(nodes: [&str; 2], key: &str, n: usize, pace: Duration) -> std::collections::BTreeMap<u16, usize> {
    let http = reqwest::Client::new();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..n {
        let res = http.get(format!("{}/v1/files", nodes[i % 2])).bearer_auth(key).send().await.unwrap();
        *statuses.entry(res.status().as_u16()).or_insert(0) += 1;
        tokio::time::sleep(pace).await;
    }
    statuses
}

#[tokio::test]
async fn a_tenants_rate_limit_holds_for_the_cluster_as_a_whole() {
    if !several_nodes() {
        return;
    }
    let app = spawn_app().await;
    // 60 a minute: a burst of 30, then one a second.
    let acme = app.create_tenant_with(json!({"slug": "acme", "quotas": {"max_requests_per_minute": 60}})).await;
    let (node_b, b) = app.another_node().await;
    let statuses = alternate([&app.url, &b], &acme.owner, 90, Duration::from_millis(20)).await;
    let allowed = statuses.get(&200).copied().unwrap_or(0);
    // One node alone would let 30 through, so two would let 60 without sharing; together they
    // let the burst and the second or two of refill through, and what each let through in the
    // last tenth of a second before hearing of the other's.
    assert!((30..=40).contains(&allowed), "{statuses:?}");
    assert_eq!(statuses.get(&429).copied().unwrap_or(0), 90 - allowed, "{statuses:?}");
    node_b.stop().await.unwrap();
}

#[tokio::test]
async fn the_monthly_allowance_holds_and_metering_adds_up_across_nodes() {
    if !several_nodes() {
        return;
    }
    let app = spawn_app().await;
    let acme = app
        .create_tenant_with(
            json!({"slug": "acme", "quotas": {"max_requests_per_minute": null, "max_api_calls_month": 40}}),
        )
        .await;
    let (node_b, b) = app.another_node().await;
    let statuses = alternate([&app.url, &b], &acme.owner, 80, Duration::from_millis(20)).await;
    let allowed = statuses.get(&200).copied().unwrap_or(0);
    assert!((40..=44).contains(&allowed), "{statuses:?}");
    // Each node writes what it metered; once B has stopped (flushing), A's answer is the sum.
    node_b.stop().await.unwrap();
    let globex = app.create_tenant_with(json!({"slug": "globex", "quotas": {"max_requests_per_minute": null}})).await;
    let (node_c, c) = app.another_node().await;
    alternate([&app.url, &c], &globex.owner, 20, Duration::ZERO).await;
    node_c.stop().await.unwrap();
    let usage = app.operator().tenant_usage("globex", "").await.unwrap();
    assert_eq!(usage["usage"]["api_calls"], 20);
}

#[tokio::test]
async fn a_hard_quota_is_exact_with_writers_on_both_nodes() {
    if !several_nodes() {
        return;
    }
    let app = spawn_app().await;
    let acme = app
        .create_tenant_with(json!({"slug": "acme", "quotas": {"max_requests_per_minute": null, "max_files": 25}}))
        .await;
    let (node_b, b) = app.another_node().await;
    // Eight writers, four on each node, each trying ten new files: exactly 25 may land.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let c = if w % 2 == 0 { app.as_key(&acme.owner) } else { Client::new(&b, Some(acme.owner.clone())) };
            tokio::spawn(async move {
                let mut landed = 0;
                for i in 0..10 {
                    match c.put_file(&format!("/w{w}/{i}"), vec![b'x'; 10], None).await {
                        Ok(_) => landed += 1,
                        Err(e) => assert_eq!(e.code(), Some("quota_exceeded"), "{e:?}"),
                    }
                }
                landed
            })
        })
        .collect();
    let mut landed = 0;
    for w in writers {
        landed += w.await.unwrap();
    }
    assert_eq!(landed, 25);
    let listed = app.as_key(&acme.owner).list_files("/", true, None).await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 25);
    let usage = app.as_key(&acme.owner).json(reqwest::Method::GET, "/v1/usage", None).await.unwrap();
    assert_eq!((usage["usage"]["files"].as_u64(), usage["usage"]["storage_bytes"].as_u64()), (Some(25), Some(250)));
    node_b.stop().await.unwrap();
}

/// A write a node answered: its path and bytes.
type Acked = (String, Vec<u8>);

/// A tenant moves to a database of its own and back while both nodes write to it and one reads
/// it: no read or write fails (a write caught by the switch goes again to the new place),
/// every acknowledged write is there after, on both nodes, nothing else is, and the other node
/// writes to the new place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_while_both_nodes_serve_it() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    if !several_nodes() {
        return;
    }
    let TwoNodes { app, acme, node_b, on_a, on_b } = two_nodes().await;
    for i in 0..50 {
        on_a.put_file(&format!("/base/{i}"), format!("base {i}").into_bytes(), None).await.unwrap();
    }
    let acked: Arc<Mutex<Vec<Acked>>> = Default::default();
    let (stop, read_failures) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for (w, c) in [on_a.clone(), on_b.clone(), on_a.clone(), on_b.clone()].into_iter().enumerate() {
        let (acked, stop) = (acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (path, body) = (format!("/live/{w}/{n}"), format!("writer {w} write {n}").into_bytes());
                match c.put_file(&path, body.clone(), None).await {
                    Ok(_) => acked.lock().unwrap().push((path, body)),
                    Err(e) => panic!("a write failed during the move: {e:?}"),
                }
                n += 1;
            }
        }));
    }
    {
        let (c, stop, failures) = (on_b.clone(), stop.clone(), read_failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if c.get_file(&format!("/base/{}", i % 50)).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for to in ["dedicated", "shared"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let report = app.operator().move_tenant("acme", to).await.unwrap();
        assert_eq!((report["to"].as_str(), report["verified"].as_bool()), (Some(to), Some(true)), "{report}");
        until_status(on_b.base(), &acme.owner, "/v1/whoami", 200).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(read_failures.load(Ordering::Relaxed), 0, "reads on B kept working through both moves");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "writes landed ({})", acked.len());
    for (path, body) in &acked {
        assert_eq!(on_a.get_file(path).await.unwrap().to_vec(), *body, "{path} on A");
        assert_eq!(on_b.get_file(path).await.unwrap().to_vec(), *body, "{path} on B");
    }
    let usage = on_b.json(reqwest::Method::GET, "/v1/usage", None).await.unwrap();
    assert_eq!(usage["usage"]["files"].as_u64(), Some(50 + acked.len() as u64), "nothing unacknowledged was kept");
    on_b.put_file("/after", b"after".to_vec(), None).await.unwrap();
    assert_eq!(&on_a.get_file("/after").await.unwrap()[..], b"after");
    node_b.stop().await.unwrap();
}

#[tokio::test]
async fn a_session_and_a_membership_changed_on_one_node_hold_on_the_other() {
    people_hold_on_the_other_node("shared").await;
}

#[tokio::test]
async fn a_dedicated_tenants_members_changed_on_one_node_hold_on_the_other() {
    people_hold_on_the_other_node("dedicated").await;
}

/// A person signed in on node A is let in by node B; a membership removed on A, and a sign-out
/// on A, are refused by B within moments.
async fn people_hold_on_the_other_node(placement: &str) {
    if !several_nodes() {
        return;
    }
    let TwoNodes { app, acme, node_b, .. } = two_nodes_placed(placement).await;
    let b = format!("http://{}", node_b.addr);
    let user = json!({"email": "ada@example.com", "password": "correct horse battery"});
    app.operator().json(reqwest::Method::POST, "/v1/users", Some(&user)).await.unwrap();
    let member = json!({"email": "ada@example.com", "role": "writer"});
    let operator = app.operator().with_tenant(Some("acme".into()));
    let added = operator.json(reqwest::Method::POST, "/v1/members", Some(&member)).await.unwrap();
    let ada = added["user_id"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let login = http.post(format!("{}/v1/auth/login", app.url)).json(&user).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let on_b = |path: &str| {
        let (http, url, cookie) = (http.clone(), format!("{b}{path}"), cookie.clone());
        async move { http.get(url).header("cookie", cookie).send().await.unwrap().status().as_u16() }
    };
    let until_b = |path: &'static str, want: u16| {
        let on_b = &on_b;
        async move {
            let start = Instant::now();
            while on_b(path).await != want {
                assert!(start.elapsed() < Duration::from_secs(10), "{path} on B never answered {want}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    until_b("/v1/files", 200).await;
    // Removed from acme on A: B refuses her there.
    app.as_key(&acme.owner).call(reqwest::Method::DELETE, &format!("/v1/members/{ada}"), None, &[]).await.unwrap();
    until_b("/v1/files", 404).await;
    assert_eq!(on_b("/v1/auth/session").await, 200, "the session itself still stands");
    // Signed out on A: B refuses the session.
    let out = http
        .post(format!("{}/v1/auth/logout", app.url))
        .header("cookie", &cookie)
        .header("origin", &app.url)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    until_b("/v1/auth/session", 401).await;
}
