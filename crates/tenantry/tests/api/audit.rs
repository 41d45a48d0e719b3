//! API.md §8 audit log: what is recorded, who may read it, and the tamper-evident chain.
use crate::helpers::*;
use reqwest::Method;

#[tokio::test]
async fn every_mutation_and_refusal_is_audited_with_the_contract_fields() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let (rid, reader) = app.key(&t, "reader", None).await;
    app.as_key(&t.owner).put_file("/a.txt", b"a".to_vec(), None).await.unwrap();
    app.as_key(&t.owner).delete_file("/a.txt").await.unwrap();
    let refused = app.raw(Some(&reader), Method::PUT, "/v1/files/x", Some(b"x"), &[]).await;
    assert_eq!(refused.status, 403);
    let _ = app.raw(Some("tnr_key_nosuchkey0000000_00"), Method::GET, "/v1/whoami", None, &[]).await; // 401: not audited
    let log = app.as_key(&t.owner).audit("").await.unwrap();
    let items = log["items"].as_array().unwrap();
    let actions: Vec<_> =
        items.iter().map(|e| (e["action"].as_str().unwrap(), e["result"].as_str().unwrap())).collect();
    assert_eq!(
        actions,
        [
            ("tenant.create", "ok"),
            ("key.create", "ok"),
            ("file.write", "ok"),
            ("file.delete", "ok"),
            ("file.write", "refused:forbidden")
        ]
    );
    let last = &items[4];
    for field in ["seq", "at", "tenant", "actor", "action", "target", "result", "request_id", "ip"] {
        assert!(!last[field].is_null(), "{field}");
    }
    assert_eq!(last["tenant"], "acme");
    assert_eq!(last["actor"], format!("key:{rid}"));
    assert_eq!(last["target"], "/v1/files/x");
    assert_eq!(last["ip"], "127.0.0.1");
    assert_eq!(last["request_id"].as_str(), refused.header("x-request-id"));
    assert_eq!(items.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(items[0]["actor"] == "operator");
    // Filters and paging.
    let writes = app.as_key(&t.owner).audit("?action=file.write").await.unwrap();
    assert_eq!(writes["items"].as_array().unwrap().len(), 2);
    let after = app.as_key(&t.owner).audit("?after=3&limit=1").await.unwrap();
    assert_eq!(after["items"][0]["seq"], 4);
    assert_eq!(after["next_cursor"], "4");
}

#[tokio::test]
async fn tenant_admins_read_only_their_own_log_and_the_operator_reads_any() {
    let app = spawn_app().await;
    let a = app.create_tenant("acme").await;
    let g = app.create_tenant("globex").await;
    app.as_key(&g.owner).put_file("/globex-only", b"g".to_vec(), None).await.unwrap();
    let (_, admin) = app.key(&a, "admin", None).await;
    let log = app.as_key(&admin).audit("?limit=1000").await.unwrap().to_string();
    assert!(!log.contains("globex"), "acme's log mentions nothing of globex");
    let res = app.raw(Some(&admin), Method::GET, "/v1/audit", None, &[("x-tenant-id", "globex")]).await;
    assert_error(&res, 403, "tenant_mismatch");
    let glog = app.operator().with_tenant(Some("globex".into())).audit("").await.unwrap();
    assert!(glog.to_string().contains("/globex-only"));
}

#[tokio::test]
async fn verify_reports_an_intact_chain_and_the_first_tampered_entry() {
    if sqlite_only("it tampers with the SQLite file") {
        return;
    }
    let mut app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    for i in 0..5 {
        app.as_key(&t.owner).put_file(&format!("/f{i}"), b"x".to_vec(), None).await.unwrap();
    }
    let report = app.as_key(&t.owner).verify_audit().await.unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries"], 6);
    app.restart().await;
    {
        let db = rusqlite::Connection::open(app.data.join("tenantry.db")).unwrap();
        // The entry is a keyed row or a tail row (see the store's `tails`): forged wherever it is.
        let forge = |table: &str| {
            db.execute(&format!("UPDATE {table} SET target = '/forged' WHERE tenant_slug = 'acme' AND seq = 4"), [])
                .unwrap()
        };
        assert_eq!(forge("audit") + forge("audit_tail"), 1);
    }
    let report = app.as_key(&t.owner).verify_audit().await.unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_broken_seq"], 4);
}

/// The audit entries of `slug` (its owner's view), all pages.
async fn whole_log(app: &TestApp, owner: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = app.as_key(owner).audit(&format!("?after={after}&limit=1000")).await.unwrap();
        let items = page["items"].as_array().unwrap().clone();
        let Some(last) = items.last() else { return all };
        after = last["seq"].as_u64().unwrap();
        all.extend(items);
        if page["next_cursor"].is_null() {
            return all;
        }
    }
}

#[tokio::test]
async fn retention_prunes_old_entries_and_the_rest_verify_from_the_anchor_the_chain_records() {
    // Upkeep often, but with pauses: entries are pruned once indexed, which the store does
    // after a second without writes (upkeep writes too).
    let mut app = spawn_with(|c| c.upkeep_interval = std::time::Duration::from_millis(1500)).await;
    // Retention 0: every entry is old at once. `keeper` is on the free tier (30 days). No rate
    // limit: the test sends its requests as fast as it can.
    let keeper = app
        .create_tenant_with(
            serde_json::json!({"slug": "keeper", "tier": "free", "quotas": {"max_requests_per_minute": null}}),
        )
        .await;
    let shared = app
        .create_tenant_with(
            serde_json::json!({"slug": "acme", "quotas": {"audit_retention_days": 0, "max_requests_per_minute": null}}),
        )
        .await;
    let dedicated = app
        .create_tenant_with(serde_json::json!({
            "slug": "solo", "tier": "pro", "placement": "dedicated", "quotas": {"audit_retention_days": 0}
        }))
        .await;
    for i in 0..20 {
        for t in [&keeper, &shared, &dedicated] {
            app.as_key(&t.owner).put_file(&format!("/f{i}"), b"x".to_vec(), None).await.unwrap();
        }
    }
    // Entry 1 is the tenant's creation, 2..=21 its writes: each pruned tenant's anchor reaches 21.
    for t in [&shared, &dedicated] {
        let mut waited = 0;
        loop {
            let report = app.as_key(&t.owner).verify_audit().await.unwrap();
            assert_eq!(report["ok"], true, "{report}");
            if report["anchor"]["seq"].as_u64().is_some_and(|s| s >= 21) {
                break;
            }
            waited += 1;
            assert!(waited < 300, "{} not pruned within 30 s: {report}", t.slug);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Kept from here on: new entries stay.
        app.operator()
            .update_tenant(&t.slug, &serde_json::json!({"quotas": {"audit_retention_days": null}}))
            .await
            .unwrap();
        app.as_key(&t.owner).put_file("/after", b"y".to_vec(), None).await.unwrap();
    }
    for t in [&shared, &dedicated] {
        let report = app.as_key(&t.owner).verify_audit().await.unwrap();
        assert_eq!(report["ok"], true, "{report}");
        let anchor = &report["anchor"];
        let log = whole_log(&app, &t.owner).await;
        assert_eq!(report["entries"], log.len());
        assert_eq!(
            log[0]["seq"].as_u64(),
            Some(anchor["seq"].as_u64().unwrap() + 1),
            "the log starts after the anchor"
        );
        assert_eq!(log[0]["prev_hash"], anchor["hash"], "and links to it");
        assert!(log.iter().all(|e| e["action"] != "file.write" || e["target"] == "/after"), "{log:?}");
        let record = log.iter().rev().find(|e| e["action"] == "audit.prune").expect("the prune is in the chain");
        assert_eq!(record["actor"], "system");
        assert_eq!(
            record["target"],
            format!("seq {} hash {}", anchor["seq"].as_u64().unwrap(), anchor["hash"].as_str().unwrap())
        );
        assert!(log.iter().any(|e| e["target"] == "/after"), "entries after the change are kept");
    }
    let report = app.as_key(&keeper.owner).verify_audit().await.unwrap();
    assert_eq!((report["ok"].clone(), report["entries"].clone()), (serde_json::json!(true), serde_json::json!(21)));
    assert!(report["anchor"].is_null(), "{report}");

    // In the databases: nothing at or below the anchor is left, in any of the log's tables.
    let anchors: Vec<(String, u64)> = {
        let mut v = Vec::new();
        for t in [&shared, &dedicated] {
            let r = app.as_key(&t.owner).verify_audit().await.unwrap();
            v.push((t.id.clone(), r["anchor"]["seq"].as_u64().unwrap()));
        }
        v
    };
    app.restart().await;
    if let Some(db) = app.database() {
        for ((id, anchor), name) in anchors.iter().zip([db.name.clone(), format!("{}_{}", db.name, dedicated.id)]) {
            let sql = "SELECT count(*) FROM audit WHERE tenant_id = $1 AND seq <= $2";
            let left: i64 = db.superuser_in(&name).await.query_one(sql, &[id, &(*anchor as i64)]).await.unwrap().get(0);
            assert_eq!(left, 0, "audit of {id}");
        }
        return;
    }
    for ((id, anchor), db) in anchors.iter().zip(["tenantry.db".to_owned(), format!("tenants/{}.db", dedicated.id)]) {
        let db = rusqlite::Connection::open(app.data.join(db)).unwrap();
        for table in ["audit", "audit_tail", "audit_tail_index"] {
            let left: i64 = db
                .query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = ?1 AND seq <= ?2"),
                    rusqlite::params![id, *anchor as i64],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(left, 0, "{table} of {id}");
        }
    }
    // Forged: the first kept entry deleted and the anchor moved onto it. Every link after it
    // still holds; the chain's own record of the prune no longer matches.
    {
        let db = rusqlite::Connection::open(app.data.join("tenantry.db")).unwrap();
        let (id, anchor) = &anchors[0];
        let first = anchor + 1;
        let (hash, at): (String, i64) = db
            .query_row(
                "SELECT hash, at FROM audit_all WHERE tenant_id = ?1 AND seq = ?2",
                rusqlite::params![id, first as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let gone: usize = ["audit", "audit_tail"]
            .iter()
            .map(|t| {
                db.execute(
                    &format!("DELETE FROM {t} WHERE tenant_id = ?1 AND seq = ?2"),
                    rusqlite::params![id, first as i64],
                )
                .unwrap()
            })
            .sum();
        assert_eq!(gone, 1);
        db.execute(
            "UPDATE audit_anchor SET seq = ?2, hash = ?3, at = ?4 WHERE tenant_id = ?1",
            rusqlite::params![id, first as i64, hash, at],
        )
        .unwrap();
    }
    let report = app.as_key(&shared.owner).verify_audit().await.unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["reason"].as_str().unwrap().contains("does not name the anchor"), "{report}");

    // A move takes the anchor along: the pruned chain verifies in its new place.
    let before = app.as_key(&dedicated.owner).verify_audit().await.unwrap();
    let moved = app.operator().move_tenant("solo", "shared").await.unwrap();
    assert_eq!(moved["verified"], true, "{moved}");
    let after = app.as_key(&dedicated.owner).verify_audit().await.unwrap();
    assert_eq!((after["ok"].clone(), after["anchor"].clone()), (serde_json::json!(true), before["anchor"].clone()));
}
