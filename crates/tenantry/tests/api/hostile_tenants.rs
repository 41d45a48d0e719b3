//! What a hostile tenant tried and must not manage: stall the server for everyone, keep rights it
//! lost, act beyond its key. Each test failed on the build before its fix.
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// A webhook glob made to backtrack (16 `**` around `a`s) once froze the one writer every tenant
/// shares: the write that matched it never finished, nor did anyone else's.
#[tokio::test]
async fn a_backtracking_webhook_glob_stalls_nobody() {
    let app = spawn_with(|c| c.webhooks.allow_private_networks = true).await;
    let (acme, globex) = (app.create_tenant("acme").await, app.create_tenant("globex").await);
    let rx = Receiver::start().await;
    let glob = format!("/{}b", "**a".repeat(16));
    app.as_key(&acme.owner)
        .create_webhook(&json!({"url": rx.url, "events": ["file.written"], "path_glob": glob}))
        .await
        .unwrap();
    let path = format!("/{}", "a".repeat(200));
    let (acme_client, globex_client) = (app.as_key(&acme.owner), app.as_key(&globex.owner));
    let acme_put = acme_client.put_file(&path, b"x".to_vec(), None);
    let written = tokio::time::timeout(Duration::from_secs(30), acme_put).await;
    assert!(written.expect("the write matching the glob never finished").is_ok());
    let globex_put = globex_client.put_file("/b", b"y".to_vec(), None);
    assert!(tokio::time::timeout(Duration::from_secs(30), globex_put).await.expect("another tenant stalled").is_ok());
    // A matching path is still delivered.
    let hit = format!("/{}b", "a".repeat(40));
    app.as_key(&acme.owner).put_file(&hit, b"z".to_vec(), None).await.unwrap();
    eventually(10, "the delivery for the matching path", || async {
        rx.received().iter().any(|r| r.json()["path"] == hit.as_str())
    })
    .await;
    assert!(rx.received().iter().all(|r| r.json()["path"] != path.as_str()));
    // More wildcards than a glob may hold: refused, at creation and nothing stored.
    let body = json!({"url": rx.url, "events": ["*"], "path_glob": format!("/{}", "*a".repeat(17))}).to_string();
    let res = app.raw(Some(&acme.owner), Method::POST, "/v1/webhooks", Some(body.as_bytes()), &[]).await;
    assert_error(&res, 400, "invalid_request");
    assert_eq!(app.as_key(&acme.owner).list_webhooks().await.unwrap()["items"].as_array().unwrap().len(), 1);
}

/// A revoked key's stream carried the next event about half the time: the relay checked the key
/// after sending, not before. The revocation is now the stream's last event, every time.
#[tokio::test]
async fn a_revoked_keys_stream_carries_nothing_after_the_revocation() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.as_key(&acme.owner);
    for round in 0..12 {
        let (id, reader) = app.key(&acme, "reader", None).await;
        let mut stream = app.as_key(&reader).event_stream(None).await.unwrap();
        // The stream is live once it carries this.
        owner.put_file(&format!("/before-{round}"), b"x".to_vec(), None).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(first["path"], format!("/before-{round}"));
        owner.revoke_key(&id).await.unwrap();
        owner.put_file(&format!("/after-{round}"), b"x".to_vec(), None).await.unwrap();
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Ok(Some(e))) => got.push(e["type"].as_str().unwrap().to_owned()),
                Ok(_) => break,
                Err(_) => panic!("round {round}: the stream of a revoked key stayed open"),
            }
        }
        assert_eq!(got, ["key.revoked"], "round {round}");
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["items"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
}

/// A key could mint a key without expiry, or with a later one, and so outlive itself.
#[tokio::test]
async fn a_key_never_mints_a_key_that_outlives_it() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let expiry = "2099-01-01T00:00:00Z";
    let admin = app
        .as_key(&acme.owner)
        .create_key(&json!({"name": "temp-admin", "role": "admin", "expires_at": expiry}))
        .await
        .unwrap();
    let admin = app.as_key(admin["key"].as_str().unwrap());
    let inherited = admin.create_key(&json!({"name": "w", "role": "writer"})).await.unwrap();
    let sooner =
        admin.create_key(&json!({"name": "s", "role": "writer", "expires_at": "2098-01-01T00:00:00Z"})).await.unwrap();
    let later = admin.create_key(&json!({"name": "l", "role": "writer", "expires_at": "2100-01-01T00:00:00Z"})).await;
    let err = later.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    assert!(
        err.to_string().contains("cannot outlive the key creating it, which expires at 2099-01-01T00:00:00"),
        "{err}"
    );
    let keys = app.as_key(&acme.owner).list_keys().await.unwrap();
    let expiry_of =
        |id: &Value| keys["items"].as_array().unwrap().iter().find(|k| &k["id"] == id).unwrap()["expires_at"].clone();
    assert_eq!(expiry_of(&inherited["id"]).as_str().map(|s| &s[..19]), Some("2099-01-01T00:00:00"));
    assert_eq!(expiry_of(&sooner["id"]).as_str().map(|s| &s[..19]), Some("2098-01-01T00:00:00"));
    assert_eq!(ids(&keys).len(), 4, "owner, admin and the two minted: nothing for the refused one");
}

/// A prefixed admin read audit entries about paths outside its prefix and could revoke a
/// tenant-wide admin key.
#[tokio::test]
async fn a_prefixed_admin_neither_sees_nor_acts_beyond_its_prefix() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.as_key(&acme.owner);
    let (wide_id, wide) = app.key(&acme, "admin", None).await;
    let (docs_admin_id, docs_admin) = app.key(&acme, "admin", Some("/docs")).await;
    let (other_id, _) = app.key(&acme, "reader", Some("/private")).await;
    let (narrow_id, _) = app.key(&acme, "reader", Some("/docs/sub")).await;
    owner.put_file("/private/plan.txt", b"secret".to_vec(), None).await.unwrap();
    owner.put_file("/docs/a.txt", b"open".to_vec(), None).await.unwrap();
    let docs = app.as_key(&docs_admin);

    // Revoking a key wider than itself, or beside it: answered as a key that does not exist
    // (its listing leaves them out too), and the key still works.
    for id in [&wide_id, &other_id] {
        let res = app.raw(Some(&docs_admin), Method::DELETE, &format!("/v1/keys/{id}"), None, &[]).await;
        assert_error(&res, 404, "not_found");
    }
    let listed = ids(&owner.list_keys().await.unwrap());
    async fn revoked(owner: &tenantry_client::Client, id: &str) -> bool {
        owner.list_keys().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id && !k["revoked_at"].is_null())
    }
    assert!(listed.contains(&wide_id) && !revoked(&owner, &wide_id).await && !revoked(&owner, &other_id).await);
    // A tenant-wide admin lists every key, the owner's too.
    assert_eq!(ids(&app.as_key(&wide).list_keys().await.unwrap()).len(), 5);
    // The prefixed one lists only the keys it could act on.
    let mut seen = ids(&docs.list_keys().await.unwrap());
    seen.sort();
    let mut want = vec![docs_admin_id.clone(), narrow_id.clone()];
    want.sort();
    assert_eq!(seen, want);
    // A narrower key is its to revoke.
    docs.revoke_key(&narrow_id).await.unwrap();
    assert!(revoked(&owner, &narrow_id).await);

    // The audit log: entries about its paths and its own doings, nothing about /private.
    let log = docs.audit("").await.unwrap();
    let entries = log["items"].as_array().unwrap();
    let targets: Vec<&str> = entries.iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert!(targets.contains(&"/docs/a.txt"), "{targets:?}");
    assert!(targets.contains(&narrow_id.as_str()), "its own revocation: {targets:?}");
    assert!(!targets.iter().any(|t| t.contains("private") || *t == wide_id || *t == other_id), "{targets:?}");
    // Another key's refused request names a URL (`/v1/files/...`): not shown, even to a key whose
    // prefix would cover that URL.
    let (_, reader) = app.key(&acme, "reader", None).await;
    let res = app.raw(Some(&reader), Method::PUT, "/v1/files/private/x", Some(b"no"), &[]).await;
    assert_error(&res, 403, "forbidden");
    let (_, v1_admin) = app.key(&acme, "admin", Some("/v1")).await;
    let seen = app.as_key(&v1_admin).audit("").await.unwrap();
    assert!(
        seen["items"].as_array().unwrap().iter().all(|e| !e["target"].as_str().unwrap().contains("private")),
        "{seen}"
    );
    assert!(entries
        .iter()
        .all(|e| e["target"].as_str().unwrap().starts_with("/docs/") || e["actor"] == format!("key:{docs_admin_id}")));
    // Paging through the filtered log gives the same entries.
    let first = docs.audit("?limit=1").await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let rest = docs.audit(&format!("?after={cursor}")).await.unwrap();
    let paged: Vec<&Value> =
        first["items"].as_array().unwrap().iter().chain(rest["items"].as_array().unwrap()).collect();
    assert_eq!(paged.len(), entries.len());
    // The chain runs through entries it may not see: verifying needs a key without a prefix.
    let res = app.raw(Some(&docs_admin), Method::GET, "/v1/audit/verify", None, &[]).await;
    assert_error(&res, 403, "forbidden");
    assert_eq!(app.as_key(&acme.owner).verify_audit().await.unwrap()["ok"], true);
}

/// Requests refused before the rate limiter (another tenant named, a suspended tenant) were free:
/// not rate-limited, not metered, and each wrote an audit row.
#[tokio::test]
async fn refusals_are_charged_to_the_rate_limit_and_the_meter_and_audited_once_per_run() {
    let app = spawn_app().await;
    let acme =
        app.create_tenant_with(json!({"slug": "acme", "tier": "free", "quotas": {"max_requests_per_minute": 6}})).await;
    app.create_tenant("globex").await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let res = app.raw(Some(&acme.owner), Method::GET, "/v1/whoami", None, &[("x-tenant-id", "globex")]).await;
        statuses.push(res.status.as_u16());
        if res.status == 429 {
            assert_eq!(code(&res), "rate_limited");
            assert!(res.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
        }
    }
    // The burst of 6 a minute (3, one every 10 s after) passes as 403s; the rest is rate-limited.
    let refused = statuses.iter().filter(|&&s| s == 403).count();
    assert_eq!(refused, 3, "{statuses:?}");
    assert!(statuses[refused..].iter().all(|&s| s == 429), "{statuses:?}");
    // Over the limit, the key's own requests are refused too (they share the tenant's limit),
    // and only the first 429 of the run is audited.
    for _ in 0..5 {
        let res = app.raw(Some(&acme.owner), Method::GET, "/v1/whoami", None, &[]).await;
        assert_error(&res, 429, "rate_limited");
    }
    let op = app.operator().with_tenant(Some("acme".into()));
    let log = op.audit("").await.unwrap();
    let results: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["result"].as_str().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| **r == "refused:tenant_mismatch").count(), 3, "{results:?}");
    assert_eq!(results.iter().filter(|r| **r == "refused:rate_limited").count(), 1, "{results:?}");
    // Each refusal that passed the limit is metered as an API call.
    let usage = app.operator().tenant_usage("acme", "").await.unwrap();
    assert_eq!(usage["usage"]["api_calls"], 3, "{usage}");
}

#[tokio::test]
async fn a_suspended_tenants_key_is_rate_limited_like_any_other() {
    let app = spawn_app().await;
    let acme =
        app.create_tenant_with(json!({"slug": "acme", "tier": "free", "quotas": {"max_requests_per_minute": 6}})).await;
    app.operator().tenant_action("acme", "suspend").await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(app.raw(Some(&acme.owner), Method::GET, "/v1/files", None, &[]).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 403).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 12, "{statuses:?}");
    let log = app.operator().with_tenant(Some("acme".into())).audit("?action=auth.suspended").await.unwrap();
    assert_eq!(log["items"].as_array().unwrap().len(), 3);
}

/// A bundle expanding to more files than the tenant may hold filled the disk while staging,
/// before the quota was checked at the commit. Now the quota is checked before each file is read.
#[tokio::test]
async fn an_import_is_held_to_the_quota_while_it_is_staged() {
    let app = spawn_app().await;
    let src = app.create_tenant("src").await;
    for i in 0..5 {
        app.as_key(&src.owner).put_file(&format!("/f{i}"), vec![b'0' + i; 10_000], None).await.unwrap();
    }
    app.create_tenant_with(json!({"slug": "dst", "tier": "enterprise", "quotas": {"max_storage_bytes": 30_000}})).await;
    let bundle = app.raw(Some(&app.admin_key), Method::GET, "/v1/tenants/src/export", None, &[]).await;
    assert_eq!(bundle.status, 200);
    let res = app.raw(Some(&app.admin_key), Method::POST, "/v1/tenants/dst/import", Some(&bundle.body), &[]).await;
    assert_error(&res, 403, "quota_exceeded");
    let v = res.json().unwrap();
    assert_eq!(
        v["error"]["message"],
        "the bundle's files hold more than 30000 bytes, the tenant's max_storage_bytes; nothing was changed"
    );
    assert_eq!((v["error"]["limit"].clone(), v["error"]["current"].clone()), (json!(30_000), json!(40_000)));
    let usage = app.operator().tenant_usage("dst", "").await.unwrap();
    assert_eq!((usage["usage"]["storage_bytes"].clone(), usage["usage"]["files"].clone()), (json!(0), json!(0)));
}

/// Uploads that declared a large body and then stalled held the whole server's body memory until
/// they timed out, and every other tenant's uploads waited behind them.
#[tokio::test]
async fn stalled_uploads_hold_only_their_tenants_share_of_body_memory() {
    // Budget 8 MiB; a tenant's share is an eighth, raised to the largest body a route takes
    // (a 2 MiB memory value's JSON): 2 MiB.
    let app = spawn_with(|c| {
        c.max_file_bytes = 1 << 20;
        c.http.max_body_memory_bytes = 8 << 20;
    })
    .await;
    let (a, b) = (app.create_tenant("stalls").await, app.create_tenant("other").await);
    let mut stalled = Vec::new();
    for i in 0..10 {
        stalled.push(start_upload(&app, &a.owner, &format!("stall-{i}"), 1 << 20, b"a few bytes").await);
    }
    eventually(10, "the stalled tenant's share held", || async { body_memory(&app, "held").await == Some(2 << 20) })
        .await;
    assert_eq!(body_memory(&app, "tenant_share").await, Some(2 << 20));
    // Another tenant's uploads (counted, over 64 KiB) are served at once.
    let other = app.as_key(&b.owner);
    for i in 0..3 {
        let path = format!("/doc-{i}");
        let put = other.put_file(&path, vec![b'x'; 100_000], None);
        let done = tokio::time::timeout(Duration::from_secs(20), put).await.expect("another tenant's upload waited");
        assert_eq!(done.unwrap()["size"], 100_000);
    }
    let value = json!("y".repeat(100_000));
    let set = other.set_memory("notes", "big", &value, None);
    tokio::time::timeout(Duration::from_secs(20), set).await.expect("another tenant's memory write waited").unwrap();
    // Still just the stalled tenant's share: the others' bodies were given back.
    assert_eq!(body_memory(&app, "held").await, Some(2 << 20));
    drop(stalled);
    eventually(10, "every share released", || async { body_memory(&app, "held").await == Some(0) }).await;
}

/// One tenant could open as many event streams as the server has connections.
#[tokio::test]
async fn a_tenant_holds_at_most_its_share_of_event_streams() {
    let app = spawn_with(|c| c.http.max_streams_per_tenant = 3).await;
    let (a, b) = (app.create_tenant("streams").await, app.create_tenant("other").await);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(app.as_key(&a.owner).event_stream(None).await.unwrap());
    }
    let res = app.raw(Some(&a.owner), Method::GET, "/v1/events", None, &[("accept", "text/event-stream")]).await;
    assert_error(&res, 429, "rate_limited");
    assert_eq!(res.header("retry-after"), Some("5"));
    assert_eq!(res.json().unwrap()["error"]["limit"], 3);
    // Pages are not streams, and other tenants have their own share.
    assert_eq!(app.raw(Some(&a.owner), Method::GET, "/v1/events", None, &[]).await.status, 200);
    let mut theirs = app.as_key(&b.owner).event_stream(None).await.unwrap();
    app.as_key(&b.owner).put_file("/x", b"x".to_vec(), None).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), theirs.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(e["path"], "/x");
    // A closed stream gives its place back.
    drop(open.pop());
    eventually(30, "a place freed", || async { app.as_key(&a.owner).event_stream(None).await.is_ok() }).await;
}

/// Request ids were a counter: the gap between two of a tenant's ids counted the other tenants'
/// requests in between.
#[tokio::test]
async fn request_ids_say_nothing_of_other_tenants_requests() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = app.raw(Some(&acme.owner), Method::GET, "/v1/whoami", None, &[]).await;
        ids.push(res.header("x-request-id").unwrap().to_owned());
    }
    let numbers: Vec<u128> = ids
        .iter()
        .map(|id| {
            let hex = id.strip_prefix("req_").unwrap();
            assert_eq!(hex.len(), 24, "{id}");
            u128::from_str_radix(hex, 16).unwrap()
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] != w[1] && w[0].abs_diff(w[1]) > 1_000_000), "{ids:?}");
}

/// A live suspension ends a stream; one replayed from the past (lifted since) does not.
#[tokio::test]
async fn a_stream_replaying_a_past_suspension_goes_on() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.as_key(&acme.owner);
    owner.put_file("/before", b"x".to_vec(), None).await.unwrap();
    app.operator().tenant_action("acme", "suspend").await.unwrap();
    app.operator().tenant_action("acme", "resume").await.unwrap();
    owner.put_file("/after", b"y".to_vec(), None).await.unwrap();
    let mut stream = owner.event_stream(Some(0)).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.last().map(String::as_str) != Some("/after") {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
        kinds.push(e["path"].as_str().unwrap_or(e["type"].as_str().unwrap()).to_owned());
    }
    assert_eq!(kinds, ["/before", "tenant.suspended", "tenant.resumed", "/after"]);
    // Live, the suspension is the stream's last event.
    app.operator().tenant_action("acme", "suspend").await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(e["type"], "tenant.suspended");
    assert!(tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().is_none());
}

/// A client that opens a stream and never reads held its place (and connection) for as long as
/// it liked, while the frames piled up for it.
#[tokio::test]
async fn a_stream_whose_client_stops_reading_is_ended() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_with(|c| {
        c.http.max_streams_per_tenant = 1;
        c.http.stream_stall_timeout = Duration::from_secs(1);
    })
    .await;
    let acme = app.create_tenant("acme").await;
    let addr = app.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut silent = socket.connect(addr).await.unwrap();
    let head = format!(
        "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        acme.owner
    );
    silent.write_all(head.as_bytes()).await.unwrap();
    // It reads its answer's status line, and nothing after.
    let mut status = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut silent, &mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    // Answers as soon as a stream's headers come (a stream's body never ends).
    let stream_refused = || async {
        match app.as_key(&acme.owner).event_stream(None).await {
            Ok(_) => false,
            Err(e) => e.code() == Some("rate_limited") || panic!("unexpected: {e}"),
        }
    };
    assert!(stream_refused().await, "the silent client's stream holds the tenant's one place");
    // Frames pile up for it: some 6 MB of events it never reads (more than the kernel's send
    // buffer grows to on loopback, 4 MiB, and hyper's and the stream's own buffers).
    let owner = app.as_key(&acme.owner);
    let folder = "d".repeat(1000);
    for i in 0..6000 {
        owner.put_file(&format!("/{folder}/{i}"), vec![], None).await.unwrap();
    }
    eventually(20, "the stalled stream ended and its place freed", || async { !stream_refused().await }).await;
    drop(silent);
}
