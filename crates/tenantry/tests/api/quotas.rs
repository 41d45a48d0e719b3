//! API.md §8 hard limits: storage, file count and keys are checked inside the write transaction,
//! so no number of concurrent writers can take usage past a limit.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

/// The counters as stored (`usage_all`: folded or still in the usage tail).
fn stored_usage(app: &TestApp, tenant_id: &str) -> (u64, u64) {
    let db = rusqlite::Connection::open(app.data.join("tenantry.db")).unwrap();
    db.query_row("SELECT storage_bytes, files FROM usage_all WHERE tenant_id = ?1", [tenant_id], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })
    .unwrap_or((0, 0))
}

async fn listed_usage(app: &TestApp, owner: &str) -> (u64, u64) {
    let list = app.as_key(owner).list_files("/", true, None).await.unwrap();
    let items = list["items"].as_array().unwrap();
    (items.iter().map(|i| i["size"].as_u64().unwrap()).sum(), items.len() as u64)
}

#[tokio::test]
async fn put_over_the_storage_quota_is_refused_with_limit_and_use_and_changes_nothing() {
    if sqlite_only("it reads the counters from the SQLite file") {
        return;
    }
    let app = spawn_app().await;
    let t = app
        .create_tenant_with(
            json!({"slug": "small", "quotas": {"max_storage_bytes": 1000, "max_requests_per_minute": null}}),
        )
        .await;
    let c = app.as_key(&t.owner);
    c.put_file("/a", vec![1; 600], None).await.unwrap();
    let res = app.raw(Some(&t.owner), Method::PUT, "/v1/files/b", Some(&[2; 401]), &[]).await;
    assert_error(&res, 403, "quota_exceeded");
    let err = res.json().unwrap();
    assert_eq!(err["error"]["quota"], "max_storage_bytes");
    assert_eq!(err["error"]["limit"], 1000);
    assert_eq!(err["error"]["current"], 600);
    assert_eq!(c.get_file("/b").await.unwrap_err().code(), Some("not_found"));
    // Exactly up to the limit is fine; replacing counts the difference; deleting frees at once.
    c.put_file("/b", vec![2; 400], None).await.unwrap();
    assert_eq!(stored_usage(&app, &t.id), (1000, 2));
    let res = app.raw(Some(&t.owner), Method::PUT, "/v1/files/a", Some(&[1; 601]), &[]).await;
    assert_error(&res, 403, "quota_exceeded");
    c.put_file("/a", vec![1; 100], None).await.unwrap();
    assert_eq!(stored_usage(&app, &t.id), (500, 2));
    c.delete_file("/b").await.unwrap();
    assert_eq!(stored_usage(&app, &t.id), (100, 1));
    c.put_file("/c", vec![3; 900], None).await.unwrap();
    assert_eq!(stored_usage(&app, &t.id), (1000, 2));
}

#[tokio::test]
async fn the_file_count_limit_is_hard_and_replacing_does_not_count() {
    if sqlite_only("it reads the counters from the SQLite file") {
        return;
    }
    let app = spawn_app().await;
    let t = app
        .create_tenant_with(json!({"slug": "few", "quotas": {"max_files": 3, "max_requests_per_minute": null}}))
        .await;
    let c = app.as_key(&t.owner);
    for p in ["/1", "/2", "/3"] {
        c.put_file(p, b"x".to_vec(), None).await.unwrap();
    }
    let res = app.raw(Some(&t.owner), Method::PUT, "/v1/files/4", Some(b"x"), &[]).await;
    assert_error(&res, 403, "quota_exceeded");
    assert_eq!(res.json().unwrap()["error"]["quota"], "max_files");
    c.put_file("/3", b"replaced".to_vec(), None).await.unwrap();
    c.delete_file("/1").await.unwrap();
    c.put_file("/4", b"x".to_vec(), None).await.unwrap();
    assert_eq!(stored_usage(&app, &t.id), (1 + 8 + 1, 3));
}

#[tokio::test]
async fn concurrent_writers_never_push_usage_past_the_limits_and_counters_match_the_data() {
    if sqlite_only("it reads the counters from the SQLite file") {
        return;
    }
    let app = spawn_app().await;
    let t =
        app.create_tenant_with(json!({"slug": "race", "quotas": {"max_storage_bytes": 20_000, "max_files": 25, "max_requests_per_minute": null}})).await;
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let (url, key) = (app.url.clone(), t.owner.clone());
        tasks.push(tokio::spawn(async move {
            let c = tenantry_client::Client::new(&url, Some(key));
            let mut refused = 0;
            for i in 0..30u64 {
                let path = format!("/f{}", (w * 7 + i) % 40);
                let size = ((w * 131 + i * 977) % 2000) as usize;
                match i % 5 {
                    4 => {
                        let _ = c.delete_file(&path).await;
                    }
                    _ => match c.put_file(&path, vec![b'q'; size], None).await {
                        Ok(_) => {}
                        Err(e) => {
                            assert_eq!(e.code(), Some("quota_exceeded"), "{e}");
                            refused += 1;
                        }
                    },
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for task in tasks {
        refused += task.await.unwrap();
    }
    assert!(refused > 0, "the test should hit the limits");
    let (bytes, files) = listed_usage(&app, &t.owner).await;
    assert!(bytes <= 20_000 && files <= 25, "over the limit: {bytes} bytes, {files} files");
    assert_eq!(stored_usage(&app, &t.id), (bytes, files), "the counters match the data exactly");
}

#[tokio::test]
async fn the_key_limit_counts_usable_keys_and_holds_under_concurrency() {
    let app = spawn_app().await;
    // free tier: 2 keys, the owner key included.
    let t = app
        .create_tenant_with(json!({"slug": "keys", "tier": "free", "quotas": {"max_requests_per_minute": null}}))
        .await;
    let (id, _) = app.key(&t, "reader", None).await;
    let res = app.raw(Some(&t.owner), Method::POST, "/v1/keys", Some(br#"{"name":"x","role":"reader"}"#), &[]).await;
    assert_error(&res, 403, "quota_exceeded");
    assert_eq!((res.json().unwrap()["error"]["limit"].as_u64()), Some(2));
    app.as_key(&t.owner).revoke_key(&id).await.unwrap();
    app.key(&t, "reader", None).await;
    // Raise the limit through the tenant's quotas: effective on the next request.
    app.operator()
        .update_tenant("keys", &json!({"quotas": {"max_keys": 6, "max_requests_per_minute": null}}))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (url, owner) = (app.url.clone(), t.owner.clone());
        tasks.push(tokio::spawn(async move {
            let c = tenantry_client::Client::new(&url, Some(owner));
            c.create_key(&json!({"name": format!("k{i}"), "role": "reader"})).await.is_ok()
        }));
    }
    let mut made = 0;
    for task in tasks {
        made += usize::from(task.await.unwrap());
    }
    assert_eq!(made, 4, "6 allowed, 2 usable already");
    let keys = app.as_key(&t.owner).list_keys().await.unwrap();
    let usable = keys["items"].as_array().unwrap().iter().filter(|k| k["revoked_at"].is_null()).count();
    assert_eq!(usable, 6);
}

#[tokio::test]
async fn requests_over_the_rate_limit_get_429_with_retry_after_and_ratelimit_headers() {
    let app = spawn_app().await;
    // free tier: 60 requests per minute, a burst of 30.
    let t = app.create_tenant_with(json!({"slug": "limited", "tier": "free"})).await;
    let other = app.create_tenant_with(json!({"slug": "other", "tier": "free"})).await;
    let mut remaining = Vec::new();
    for _ in 0..30 {
        let res = app.raw(Some(&t.owner), Method::GET, "/v1/whoami", None, &[]).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("ratelimit-limit"), Some("60"));
        remaining.push(res.header("ratelimit-remaining").unwrap().parse::<u64>().unwrap());
    }
    assert_eq!(remaining, (0..30).rev().collect::<Vec<u64>>());
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/files/x", None, &[]).await;
    assert_error(&res, 429, "rate_limited");
    assert!(res.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(res.header("ratelimit-remaining"), Some("0"));
    // Another tenant is not affected, and the operator is never rate limited.
    let res = app.raw(Some(&other.owner), Method::GET, "/v1/whoami", None, &[]).await;
    assert_eq!((res.status.as_u16(), res.header("ratelimit-remaining")), (200, Some("29")));
    for _ in 0..20 {
        let res = app.raw(Some(&app.admin_key), Method::GET, "/v1/whoami", None, &[("x-tenant-id", "limited")]).await;
        assert_eq!(res.status, 200);
        assert!(res.header("ratelimit-limit").is_none());
    }
    // A raised limit applies on the next request.
    app.operator().update_tenant("limited", &json!({"quotas": {"max_requests_per_minute": 100000}})).await.unwrap();
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/whoami", None, &[]).await;
    assert_eq!((res.status.as_u16(), res.header("ratelimit-limit")), (200, Some("100000")));
}

#[tokio::test]
async fn crossing_eighty_percent_of_a_limit_raises_one_quota_warning_event() {
    let app = spawn_app().await;
    let acme = app
        .create_tenant_with(serde_json::json!({
            "slug": "acme", "tier": "enterprise", "quotas": {"max_storage_bytes": 100, "max_files": 5}
        }))
        .await;
    let c = app.as_key(&acme.owner);
    c.put_file("/a", vec![b'a'; 50], None).await.unwrap(); // 50 bytes, 1 file
    c.put_file("/b", vec![b'b'; 30], None).await.unwrap(); // 80 bytes: crosses 80%
    c.put_file("/c", vec![b'c'; 5], None).await.unwrap(); // 85 bytes: still above, no new warning
    c.put_file("/d", vec![], None).await.unwrap(); // 4 files of 5: crosses 80%
    let events = c.events(0, None).await.unwrap();
    let items = events["items"].as_array().unwrap();
    let warnings: Vec<&serde_json::Value> = items.iter().filter(|e| e["type"] == "quota.warning").collect();
    assert_eq!(warnings.len(), 2, "{items:?}");
    assert_eq!(
        warnings[0]["detail"],
        serde_json::json!({"quota": "max_storage_bytes", "limit": 100, "current": 80, "threshold": 0.8})
    );
    assert_eq!(warnings[1]["detail"]["quota"], "max_files");
    assert_eq!(warnings[1]["detail"]["current"], 4);
    assert_eq!(warnings[0]["actor"], "system");
    // The warning follows the write that caused it.
    let b = items.iter().position(|e| e["path"] == "/b").unwrap();
    assert_eq!(items[b + 1]["type"], "quota.warning");
    // Going below and back above warns again: bytes 85 → 35 → 85, files 4 → 3 → 4.
    c.delete_file("/a").await.unwrap();
    c.put_file("/e", vec![b'e'; 50], None).await.unwrap();
    let events = c.events(0, None).await.unwrap();
    let n = events["items"].as_array().unwrap().iter().filter(|e| e["type"] == "quota.warning").count();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn the_key_limit_and_the_monthly_allowance_warn_at_eighty_percent_too() {
    let app = spawn_app().await;
    let acme = app
        .create_tenant_with(serde_json::json!({
            "slug": "acme", "tier": "enterprise",
            "quotas": {"max_keys": 5, "max_api_calls_month": 10}
        }))
        .await;
    // The owner key is 1 of 5; the third new key makes 4: 80%.
    for _ in 0..3 {
        app.key(&acme, "reader", None).await;
    }
    // Read the feed as the operator, who is not metered.
    let op = app.operator().with_tenant(Some("acme".into()));
    let warnings = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "quota.warning")
            .map(|e| e["detail"].clone())
            .collect()
    };
    let page = op.events(0, None).await.unwrap();
    assert_eq!(warnings(&page), [serde_json::json!({"quota": "max_keys", "limit": 5, "current": 4, "threshold": 0.8})]);
    // 3 calls so far (the key creations); calls 4..=9: the 8th crosses 80% of 10. The warning is
    // written with the next usage flush.
    let c = app.as_key(&acme.owner);
    for _ in 0..6 {
        c.whoami().await.unwrap();
    }
    eventually(10, "the allowance warning", || async {
        warnings(&op.events(0, None).await.unwrap()).iter().any(|w| w["quota"] == "max_api_calls_month")
    })
    .await;
    let all = warnings(&op.events(0, None).await.unwrap());
    assert_eq!(
        all[1],
        serde_json::json!({"quota": "max_api_calls_month", "limit": 10, "current": 8, "threshold": 0.8})
    );
    // Once per month: the 10th call and the refused 11th raise no second one.
    c.whoami().await.unwrap();
    assert!(c.whoami().await.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(warnings(&op.events(0, None).await.unwrap()).len(), 2);
}

#[tokio::test]
async fn a_tenant_at_its_in_flight_bound_waits_while_other_tenants_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_with(|c| c.http.max_in_flight_per_tenant = 1).await;
    let (a, b) = (app.create_tenant("flood").await, app.create_tenant("quiet").await);
    app.as_key(&a.owner).put_file("/x", b"x".to_vec(), None).await.unwrap();
    // A's upload holds A's only slot while its body trickles in.
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /v1/files/slow HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 10\r\n\r\nhello",
        a.owner
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // A's next request waits for the slot...
    let waiting = {
        let c = app.as_key(&a.owner);
        tokio::spawn(async move { c.get_file("/x").await.unwrap() })
    };
    // ...while B is served at once.
    let t0 = std::time::Instant::now();
    app.as_key(&b.owner).put_file("/y", b"y".to_vec(), None).await.unwrap();
    assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "A's second request waits while its first holds the slot");
    slow.write_all(b"world").await.unwrap();
    let mut answer = vec![0u8; 12];
    slow.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    assert_eq!(&got[..], b"x");
}

#[tokio::test]
async fn a_read_flood_beside_another_tenant_is_answered_in_full_and_never_refused() {
    // Pacing (fairness.rs) may delay the flooding tenant's reads while the server is congested;
    // it must never refuse one, answer one wrongly, or touch the other tenant's.
    let app = spawn_app().await;
    let (a, b) = (app.create_tenant("flood").await, app.create_tenant("quiet").await);
    app.as_key(&a.owner).put_file("/a.txt", b"from a".to_vec(), None).await.unwrap();
    app.as_key(&b.owner).put_file("/b.txt", b"from b".to_vec(), None).await.unwrap();
    let reader = |key: String, path: &'static str, n: usize| {
        let c = app.as_key(&key);
        tokio::spawn(async move {
            let mut bodies = Vec::new();
            for _ in 0..n {
                bodies.push(c.get_file(path).await.unwrap());
            }
            bodies
        })
    };
    let floods: Vec<_> = (0..16).map(|_| reader(a.owner.clone(), "/a.txt", 150)).collect();
    let quiet = reader(b.owner.clone(), "/b.txt", 150);
    for f in floods {
        let bodies = f.await.unwrap();
        assert_eq!(bodies.len(), 150);
        assert!(bodies.iter().all(|x| &x[..] == b"from a"));
    }
    let bodies = quiet.await.unwrap();
    assert!(bodies.iter().all(|x| &x[..] == b"from b"));
    let u = app.as_key(&a.owner).json(reqwest::Method::GET, "/v1/usage", None).await.unwrap();
    assert_eq!(u["usage"]["reads"], 16 * 150, "every read was answered and metered once: {u}");
}

#[tokio::test]
async fn large_bodies_wait_for_room_in_the_body_memory_budget_and_small_ones_never_do() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Budget 3 MiB (the floor is the largest single body a route takes: 2 MiB for a memory
    // value's JSON by default): one 2 MiB upload fits, a second one waits until the first is done.
    let app = spawn_with(|c| {
        c.max_file_bytes = 5 << 19;
        c.http.max_body_memory_bytes = 3 << 20;
    })
    .await;
    let (a, b) = (app.create_tenant("uploads").await, app.create_tenant("other").await);
    let big = 2usize << 20;
    let mut first = start_upload(&app, &a.owner, "first", big, &[b'x'; 1000]).await;
    eventually(10, "the first body's share held", || async { body_memory(&app, "held").await == Some(2 << 20) }).await;
    assert_eq!(body_memory(&app, "budget").await, Some(3 << 20));
    // The second upload of the same size waits for room, whichever tenant sends it.
    let second = {
        let (key, url) = (b.owner.clone(), app.url.clone());
        tokio::spawn(async move {
            let c = tenantry_client::Client::new(&url, Some(key));
            c.put_file("/second", vec![b'y'; big], None).await
        })
    };
    // A small body is not counted and goes through at once.
    app.as_key(&b.owner).put_file("/small", vec![b's'; 1000], None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second large body waits while the first holds the budget");
    // The waiting body has claimed what was free (first come, first served) and waits for the rest.
    assert_eq!(body_memory(&app, "held").await, Some(3 << 20));
    first.write_all(&vec![b'x'; big - 1000]).await.unwrap();
    let mut answer = vec![0u8; 12];
    first.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");
    tokio::time::timeout(std::time::Duration::from_secs(10), second).await.unwrap().unwrap().unwrap();
    assert_eq!(app.as_key(&b.owner).get_file("/second").await.unwrap().len(), big);
    assert_eq!(app.as_key(&a.owner).get_file("/first").await.unwrap().len(), big);
    eventually(10, "every share released", || async { body_memory(&app, "held").await == Some(0) }).await;
}
