//! Placement (API.md §9): dedicated tenants live in a database of their own; `move` switches a
//! tenant between placements while it serves, losing no acknowledged write.
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn dedicated_db(app: &TestApp, id: &str) -> std::path::PathBuf {
    app.data.join("tenants").join(format!("{id}.db"))
}

/// Whether the tenant's own database exists (a file of the embedded store, or a database on the
/// PostgreSQL server).
async fn has_own_database(app: &TestApp, id: &str) -> bool {
    match app.database() {
        Some(db) => db.dedicated_databases().await.contains(&format!("{}_{id}", db.name)),
        None => dedicated_db(app, id).exists(),
    }
}

/// Rows of the tenant in the shared database, outside the registry (its record and domains; on
/// PostgreSQL metered usage is the registry's too).
async fn rows_in_shared(app: &TestApp, id: &str) -> i64 {
    let Some(db) = app.database() else { return shared_rows(app, id) };
    let client = db.superuser_in(&db.name).await;
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.columns WHERE table_schema = 'public'
               AND column_name = 'tenant_id' AND table_name NOT IN ('tenant_domains', 'usage_daily')",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 15, "{} tenant tables", tables.len());
    let mut rows = 0;
    for t in &tables {
        let table: String = t.get(0);
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        rows += client.query_one(&sql, &[&id]).await.unwrap().get::<_, i64>(0);
    }
    rows
}

/// Rows of the tenant in the shared database's data tables.
fn shared_rows(app: &TestApp, id: &str) -> i64 {
    let db = rusqlite::Connection::open(app.data.join("tenantry.db")).unwrap();
    [
        "files",
        "memory",
        "keys",
        "audit",
        "audit_tail",
        "audit_tail_index",
        "events",
        "events_tail",
        "events_tail_index",
        "search_docs",
        "search_tail",
        "search_segments",
    ]
    .iter()
    .map(|t| {
        db.query_row(&format!("SELECT COUNT(*) FROM {t} WHERE tenant_id = ?1"), [id], |r| r.get::<_, i64>(0)).unwrap()
    })
    .sum()
}

async fn move_to(app: &TestApp, slug: &str, placement: &str) -> Value {
    let res = app
        .raw(
            Some(&app.admin_key),
            Method::POST,
            &format!("/v1/tenants/{slug}/move"),
            Some(json!({ "placement": placement }).to_string().as_bytes()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json().unwrap()
}

#[tokio::test]
async fn a_dedicated_tenant_lives_in_its_own_database_and_serves_everything() {
    let mut app = spawn_app().await;
    let t = app.create_tenant_with(json!({"slug": "solo", "tier": "enterprise", "placement": "dedicated"})).await;
    let shown = app.operator().show_tenant("solo").await.unwrap();
    assert_eq!(shown["placement"], "dedicated");
    assert!(has_own_database(&app, &t.id).await);
    let c = app.as_key(&t.owner);
    c.put_file("/notes/a.txt", b"alpha words here".to_vec(), None).await.unwrap();
    c.set_memory("ns", "k", &json!({"text": "beta words"}), None).await.unwrap();
    let (_, reader) = app.key(&t, "reader", Some("/notes")).await;
    assert_eq!(&app.as_key(&reader).get_file("/notes/a.txt").await.unwrap()[..], b"alpha words here");
    assert_eq!(c.search("words", "").await.unwrap()["items"].as_array().unwrap().len(), 2);
    assert!(c.events(0, None).await.unwrap()["items"].as_array().unwrap().len() >= 3);
    let verify = c.json(Method::GET, "/v1/audit/verify", None).await.unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(rows_in_shared(&app, &t.id).await, 0, "nothing of it in the shared database");
    // Another tenant (shared) is unaffected and cannot see it.
    let other = app.create_tenant("other").await;
    assert_eq!(app.as_key(&other.owner).get_file("/notes/a.txt").await.unwrap_err().code(), Some("not_found"));

    app.restart().await;
    let c = app.as_key(&t.owner);
    assert_eq!(&c.get_file("/notes/a.txt").await.unwrap()[..], b"alpha words here");
    assert_eq!(app.as_key(&reader).whoami().await.unwrap()["key"]["role"], "reader", "its keys load at start");
    assert_eq!(app.operator().show_tenant("solo").await.unwrap()["placement"], "dedicated");

    // Settings changes reach both its own copy and the registry.
    app.operator().update_tenant("solo", &json!({"name": "Solo Inc"})).await.unwrap();
    app.restart().await;
    assert_eq!(app.operator().show_tenant("solo").await.unwrap()["name"], "Solo Inc");

    // Its bundle imports into another dedicated tenant (staging and publishing in that one's
    // database).
    let bundle = app.raw(Some(&app.admin_key), Method::GET, "/v1/tenants/solo/export", None, &[]).await.body.to_vec();
    let copy =
        app.create_tenant_with(json!({"slug": "solo-copy", "tier": "enterprise", "placement": "dedicated"})).await;
    let res = app.raw(Some(&app.admin_key), Method::POST, "/v1/tenants/solo-copy/import", Some(&bundle), &[]).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json().unwrap()["files"]["created"], 1);
    assert_eq!(&app.as_key(&copy.owner).get_file("/notes/a.txt").await.unwrap()[..], b"alpha words here");
    assert_eq!(rows_in_shared(&app, &copy.id).await, 0);

    // Purge erases its database.
    app.operator().archive_tenant("solo").await.unwrap();
    app.operator().purge_tenant("solo").await.unwrap();
    assert!(!has_own_database(&app, &t.id).await);
    assert_eq!(app.operator().show_tenant("solo").await.unwrap_err().code(), Some("tenant_not_found"));

    // The tier decides.
    let res = app
        .raw(
            Some(&app.admin_key),
            Method::POST,
            "/v1/tenants",
            Some(br#"{"slug": "cheap", "tier": "free", "placement": "dedicated"}"#),
            &[("content-type", "application/json")],
        )
        .await;
    assert_error(&res, 403, "feature_not_in_tier");
}

/// Writers and readers run against the tenant the whole time; every acknowledged write must be
/// there after each move, and reads never fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_to_dedicated_and_back_while_writers_and_readers_run() {
    let app = spawn_app().await;
    let t = app.create_tenant("mover").await;
    let c = app.as_key(&t.owner);
    for i in 0..200 {
        c.put_file(&format!("/base/{i}.txt"), format!("base file {i} ").repeat(40).into_bytes(), None).await.unwrap();
    }
    for i in 0..50 {
        c.set_memory("ns", &format!("k{i}"), &json!({"i": i}), None).await.unwrap();
    }
    let acked: Arc<Mutex<HashMap<String, Vec<u8>>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (c, acked, stop) = (app.as_key(&t.owner), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/live/w{w}/{}.txt", n % 40);
                let body = format!("writer {w} write {n}").into_bytes();
                if c.put_file(&path, body.clone(), None).await.is_ok() {
                    acked.lock().unwrap().insert(path, body);
                }
                n += 1;
            }
        }));
    }
    for _ in 0..2 {
        let (c, stop, failures) = (app.as_key(&t.owner), stop.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if c.get_file(&format!("/base/{}.txt", i % 200)).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let there = move_to(&app, "mover", "dedicated").await;
    assert_eq!(
        (there["from"].clone(), there["to"].clone(), there["verified"].clone()),
        (json!("shared"), json!("dedicated"), json!(true))
    );
    assert!(there["fence_ms"].as_u64().is_some() && there["rounds"].as_u64().unwrap() >= 2, "{there}");
    assert!(has_own_database(&app, &t.id).await);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let back = move_to(&app, "mover", "shared").await;
    assert_eq!((back["to"].clone(), back["verified"].clone()), (json!("shared"), json!(true)));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "reads kept working through both moves");
    assert!(!has_own_database(&app, &t.id).await, "the old copy is deleted");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40, "the writers got writes in ({})", acked.len());
    for (path, body) in &acked {
        assert_eq!(&c.get_file(path).await.unwrap()[..], &body[..], "{path}: the last acknowledged write");
    }
    for i in [0, 99, 199] {
        assert_eq!(c.get_file(&format!("/base/{i}.txt")).await.unwrap().len(), format!("base file {i} ").len() * 40);
    }
    assert_eq!(c.get_memory("ns", "k7").await.unwrap()["value"], json!({"i": 7}));
    let verify = c.json(Method::GET, "/v1/audit/verify", None).await.unwrap();
    assert_eq!(verify["ok"], true, "the audit chain moved intact: {verify}");
    let usage = app.operator().tenant_usage("mover", "").await.unwrap()["usage"].clone();
    assert_eq!(usage["files"], 200 + acked.len() as u64);
    assert_eq!(app.operator().show_tenant("mover").await.unwrap()["placement"], "shared");
    let audit = app.operator().with_tenant(Some("mover".into())).audit("?action=tenant.move").await.unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");

    // Where it already is: a conflict; an unknown placement: invalid.
    let res = app
        .raw(
            Some(&app.admin_key),
            Method::POST,
            "/v1/tenants/mover/move",
            Some(br#"{"placement": "shared"}"#),
            &[("content-type", "application/json")],
        )
        .await;
    assert_error(&res, 409, "conflict");
    let res = app
        .raw(
            Some(&app.admin_key),
            Method::POST,
            "/v1/tenants/mover/move",
            Some(br#"{"placement": "mars"}"#),
            &[("content-type", "application/json")],
        )
        .await;
    assert_error(&res, 400, "invalid_request");
    let status = app.operator().json(Method::GET, "/v1/tenants/mover/move", None).await.unwrap();
    assert_eq!((status["moving"].clone(), status["placement"].clone()), (json!(false), json!("shared")));
    let res = app
        .raw(
            Some(&t.owner),
            Method::POST,
            "/v1/tenants/mover/move",
            Some(br#"{"placement": "dedicated"}"#),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(res.status, 403, "only the operator moves tenants");
}

#[tokio::test]
async fn many_dedicated_tenants_run_with_a_bounded_number_of_open_databases() {
    let app = spawn_with(|c| c.max_open_dedicated = 3).await;
    let mut tenants = Vec::new();
    for i in 0..12 {
        let t = app
            .create_tenant_with(json!({"slug": format!("d{i}"), "tier": "enterprise", "placement": "dedicated"}))
            .await;
        app.as_key(&t.owner).put_file("/x.txt", format!("tenant {i}").into_bytes(), None).await.unwrap();
        tenants.push(t);
    }
    for (i, t) in tenants.iter().enumerate() {
        assert_eq!(app.as_key(&t.owner).get_file("/x.txt").await.unwrap(), format!("tenant {i}").into_bytes());
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    if let Some(db) = app.database() {
        // On PostgreSQL: the server's connections to dedicated databases, by database.
        let admin = db.admin().await;
        let rows = admin
            .query(
                "SELECT datname::text FROM pg_stat_activity WHERE usename = $1 AND starts_with(datname, $2)",
                &[&db.app_role, &format!("{}_", db.name)],
            )
            .await
            .unwrap();
        let open: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(open.len() <= 3, "{} dedicated databases connected: {open:?}", open.len());
        assert!(!open.is_empty(), "the latest ones stay open");
        assert_eq!(db.dedicated_databases().await.len(), 12);
        return;
    }
    let tenants_dir = app.data.join("tenants");
    let open_now = || -> std::collections::HashSet<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(&tenants_dir))
            .map(|p| {
                p.file_name().unwrap().to_string_lossy().trim_end_matches("-wal").trim_end_matches("-shm").to_owned()
            })
            .collect()
    };
    // A closed database's writer thread lets its files go once it has stopped: on a loaded
    // machine that can take longer than the pause above.
    let mut open = open_now();
    for _ in 0..50 {
        if open.len() <= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        open = open_now();
    }
    assert!(open.len() <= 3, "{} dedicated databases open: {open:?}", open.len());
}

/// A dedicated tenant's webhook deliveries go out, and a retry still pending across a restart
/// goes out afterwards while another dedicated tenant holds the one database kept open
/// (upkeep visits the others' unasked).
#[tokio::test]
async fn a_dedicated_tenants_webhooks_deliver_and_retry_across_a_restart() {
    let mut app = spawn_with(|c| {
        c.webhooks.allow_private_networks = true;
        c.webhooks.retry_base_ms = 1500;
        c.max_open_dedicated = 1;
    })
    .await;
    let solo = app.create_tenant_with(json!({"slug": "solo", "tier": "enterprise", "placement": "dedicated"})).await;
    let rx = Receiver::start().await;
    let owner = app.as_key(&solo.owner);
    owner.create_webhook(&json!({"url": rx.url, "events": ["file.written"]})).await.unwrap();
    owner.put_file("/a.txt", b"a".to_vec(), None).await.unwrap();
    eventually(10, "the first delivery", || async { rx.received().len() == 1 }).await;
    assert_eq!(rx.received()[0].json()["path"], "/a.txt");

    rx.answer_with(503);
    owner.put_file("/b.txt", b"b".to_vec(), None).await.unwrap();
    eventually(10, "the refused attempt", || async { rx.received().len() == 2 }).await;
    app.restart().await;
    let busy = app.create_tenant_with(json!({"slug": "busy", "tier": "enterprise", "placement": "dedicated"})).await;
    app.as_key(&busy.owner).put_file("/x", b"x".to_vec(), None).await.unwrap();
    rx.answer_with(200);
    eventually(20, "the retry after the restart", || async { rx.received().len() == 3 }).await;
    assert_eq!(rx.received()[2].json()["path"], "/b.txt");
}
