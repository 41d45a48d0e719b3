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
