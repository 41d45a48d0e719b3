//! API.md §4: tenant administration by the operator.
use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn creating_a_tenant_answers_201_with_an_owner_key_that_works_at_once() {
    let app = spawn_app().await;
    let res = app
        .raw(
            Some(&app.admin_key),
            Method::POST,
            "/v1/tenants",
            Some(br#"{"slug":"acme","name":"Acme Inc","metadata":{"plan":"x"}}"#),
            &[],
        )
        .await;
    assert_eq!(res.status, 201);
    let t = res.json().unwrap();
    assert_eq!(t["slug"], "acme");
    assert_eq!(t["name"], "Acme Inc");
    assert_eq!(t["tier"], "free");
    assert_eq!(t["status"], "active");
    assert_eq!(t["placement"], "shared");
    assert_eq!(t["domains"], json!([]));
    assert_eq!(t["metadata"], json!({"plan": "x"}));
    assert_eq!(t["limits"]["max_keys"], 2);
    let owner = t["owner_key"].as_str().unwrap();
    let me = app.as_key(owner).whoami().await.unwrap();
    assert_eq!(me["tenant"]["slug"], "acme");
    assert_eq!(me["key"]["role"], "owner");
    // The owner key is never shown again.
    let shown = app.operator().show_tenant("acme").await.unwrap();
    assert!(shown.get("owner_key").is_none());
}

#[tokio::test]
async fn invalid_reserved_and_taken_slugs_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    for slug in ["Acme", "-x", "a_b", "admin", "api", "www", "t", "v1", ""] {
        let body = serde_json::to_vec(&json!({ "slug": slug })).unwrap();
        let res = app.raw(Some(&app.admin_key), Method::POST, "/v1/tenants", Some(&body), &[]).await;
        assert_error(&res, 400, "invalid_slug");
    }
    app.create_tenant("acme").await;
    let res = app.raw(Some(&app.admin_key), Method::POST, "/v1/tenants", Some(br#"{"slug":"acme"}"#), &[]).await;
    assert_error(&res, 409, "conflict");
    let list = app.operator().list_tenants("").await.unwrap();
    let slugs: Vec<_> =
        list["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_owned()).collect();
    assert_eq!(slugs, ["acme", "default"]);
}

#[tokio::test]
async fn bad_create_bodies_are_invalid_requests() {
    let app = spawn_app().await;
    for body in [
        &br#"{"slug":"x1","tier":"platinum"}"#[..],
        br#"{"slug":"x2","quotas":{"max_keys":-1}}"#,
        br#"{"slug":"x3","metadata":[1]}"#,
        br#"{"slug":"x4","unknown":1}"#,
        br#"{"slug":"x5","domains":["not a domain"]}"#,
        br#"{"slug":"x6","placement":"moon"}"#,
        br#"{"slug": "#,
        b"",
    ] {
        let res = app.raw(Some(&app.admin_key), Method::POST, "/v1/tenants", Some(body), &[]).await;
        assert_error(&res, 400, "invalid_request");
    }
    let res = app
        .raw(Some(&app.admin_key), Method::POST, "/v1/tenants", Some(br#"{"slug":"x7","placement":"dedicated"}"#), &[])
        .await;
    assert_error(&res, 403, "feature_not_in_tier");
    assert_eq!(app.operator().list_tenants("").await.unwrap()["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tenants_page_in_slug_order_with_a_cursor_and_filter_by_status() {
    let app = spawn_app().await;
    for s in ["c", "a", "e", "b", "d"] {
        app.create_tenant(s).await;
    }
    app.operator().tenant_action("b", "suspend").await.unwrap();
    let op = app.operator();
    let p1 = op.list_tenants("?limit=2").await.unwrap();
    let slugs = |p: &serde_json::Value| {
        p["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(slugs(&p1), ["a", "b"]);
    let c = p1["next_cursor"].as_str().unwrap();
    let p2 = op.list_tenants(&format!("?limit=2&cursor={c}")).await.unwrap();
    assert_eq!(slugs(&p2), ["c", "d"]);
    let p3 = op.list_tenants(&format!("?limit=2&cursor={}", p2["next_cursor"].as_str().unwrap())).await.unwrap();
    assert_eq!(slugs(&p3), ["default", "e"]);
    assert!(p3["next_cursor"].is_null());
    assert_eq!(slugs(&op.list_tenants("?status=suspended").await.unwrap()), ["b"]);
    let res = app.raw(Some(&app.admin_key), Method::GET, "/v1/tenants?status=gone", None, &[]).await;
    assert_error(&res, 400, "invalid_request");
    let res = app.raw(Some(&app.admin_key), Method::GET, "/v1/tenants?limit=abc", None, &[]).await;
    assert_error(&res, 400, "invalid_request");
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_takes_effect_at_once() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let op = app.operator();
    let t = op
        .update_tenant(
            "acme",
            &json!({"tier": "pro", "quotas": {"max_keys": 40, "max_files": null}, "domains": ["Files.Acme.TEST"]}),
        )
        .await
        .unwrap();
    assert_eq!(t["tier"], "pro");
    assert_eq!(t["name"], "acme");
    assert_eq!(t["quotas"], json!({"max_keys": 40, "max_files": null}));
    assert_eq!(t["limits"]["max_keys"], 40);
    assert!(t["limits"]["max_files"].is_null());
    assert_eq!(t["limits"]["max_requests_per_minute"], 1200);
    assert_eq!(t["domains"], json!(["files.acme.test"]));
    let t = op.update_tenant("acme", &json!({"name": "Acme 2"})).await.unwrap();
    assert_eq!((t["name"].as_str(), t["tier"].as_str()), (Some("Acme 2"), Some("pro")));
    let err = op.update_tenant("acme", &json!({"tier": "platinum"})).await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_request"));
    let err = op.update_tenant("ghost", &json!({"name": "x"})).await.unwrap_err();
    assert_eq!(err.code(), Some("tenant_not_found"));
    // A domain another tenant holds is a conflict.
    app.create_tenant("globex").await;
    let err = op.update_tenant("globex", &json!({"domains": ["files.acme.test"]})).await.unwrap_err();
    assert_eq!(err.code(), Some("conflict"));
}

#[tokio::test]
async fn a_suspended_tenant_refuses_every_tenant_key_request_and_resume_restores_it() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.as_key(&t.owner).put_file("/a.txt", b"kept".to_vec(), None).await.unwrap();
    app.operator().tenant_action("acme", "suspend").await.unwrap();
    for (m, p) in [
        (Method::GET, "/v1/whoami"),
        (Method::GET, "/v1/files/a.txt"),
        (Method::GET, "/v1/keys"),
        (Method::PUT, "/v1/files/b.txt"),
    ] {
        let res = app.raw(Some(&t.owner), m, p, Some(b"x"), &[]).await;
        assert_error(&res, 403, "tenant_suspended");
    }
    // The operator still sees the data.
    let bytes = app.operator().with_tenant(Some("acme".into())).get_file("/a.txt").await.unwrap();
    assert_eq!(&bytes[..], b"kept");
    app.operator().tenant_action("acme", "resume").await.unwrap();
    assert_eq!(&app.as_key(&t.owner).get_file("/a.txt").await.unwrap()[..], b"kept");
    let b = app.raw(Some(&t.owner), Method::GET, "/v1/files/b.txt", None, &[]).await;
    assert_error(&b, 404, "not_found");
}

#[tokio::test]
async fn archiving_stops_keys_with_401_and_restore_brings_them_back_with_the_data() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.as_key(&t.owner).put_file("/a.txt", b"kept".to_vec(), None).await.unwrap();
    let archived = app.operator().archive_tenant("acme").await.unwrap();
    assert_eq!(archived["status"], "archived");
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/files/a.txt", None, &[]).await;
    assert_error(&res, 401, "unauthenticated");
    let err = app.operator().tenant_action("acme", "resume").await.unwrap_err();
    assert_eq!(err.code(), Some("conflict"));
    let restored = app.operator().tenant_action("acme", "restore").await.unwrap();
    assert_eq!(restored["status"], "active");
    assert_eq!(&app.as_key(&t.owner).get_file("/a.txt").await.unwrap()[..], b"kept");
    let err = app.operator().tenant_action("acme", "restore").await.unwrap_err();
    assert_eq!(err.code(), Some("conflict"));
}

#[tokio::test]
async fn purge_needs_an_archived_tenant_and_erases_it_and_nothing_else() {
    if sqlite_only("it looks for the bytes in the SQLite files") {
        return;
    }
    let app = spawn_app().await;
    let a = app.create_tenant("acme").await;
    let g = app.create_tenant("globex").await;
    app.as_key(&a.owner).put_file("/secret.txt", b"acme-secret-bytes".to_vec(), None).await.unwrap();
    app.as_key(&g.owner).put_file("/keep.txt", b"globex-bytes".to_vec(), None).await.unwrap();
    let err = app.operator().purge_tenant("acme").await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(409), Some("conflict")));
    app.operator().archive_tenant("acme").await.unwrap();
    app.operator().purge_tenant("acme").await.unwrap();
    assert_eq!(app.operator().show_tenant("acme").await.unwrap_err().code(), Some("tenant_not_found"));
    assert_eq!(app.as_key(&a.owner).whoami().await.unwrap_err().code(), Some("unauthenticated"));
    assert_eq!(&app.as_key(&g.owner).get_file("/keep.txt").await.unwrap()[..], b"globex-bytes");
    // No byte of the purged content is left in the database files.
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&app.data).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("tenantry.db") {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(!all.windows(17).any(|w| w == b"acme-secret-bytes"), "purged bytes remain on disk");
    assert!(all.windows(12).any(|w| w == b"globex-bytes"));
    // The slug is free again, as a new tenant with nothing in it.
    let again = app.create_tenant("acme").await;
    assert_ne!(again.id, a.id);
    let list = app.as_key(&again.owner).list_files("/", true, None).await.unwrap();
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn the_default_tenant_always_exists_and_cannot_be_archived() {
    let app = spawn_app().await;
    let t = app.operator().show_tenant("default").await.unwrap();
    assert_eq!(t["tier"], "enterprise");
    assert_eq!(app.operator().archive_tenant("default").await.unwrap_err().code(), Some("conflict"));
    assert_eq!(app.operator().tenant_action("default", "suspend").await.unwrap_err().code(), Some("conflict"));
}

#[tokio::test]
async fn tenant_keys_cannot_administer_tenants() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    for (m, p) in [
        (Method::GET, "/v1/tenants"),
        (Method::POST, "/v1/tenants"),
        (Method::GET, "/v1/tenants/acme"),
        (Method::POST, "/v1/tenants/acme/suspend"),
        (Method::DELETE, "/v1/tenants/acme"),
    ] {
        let res = app.raw(Some(&t.owner), m, p, Some(br#"{"slug":"zzz"}"#), &[]).await;
        assert_error(&res, 403, "forbidden");
    }
    assert_eq!(app.operator().show_tenant("acme").await.unwrap()["status"], "active");
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let mut app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let (_, reader) = app.key(&t, "reader", None).await;
    app.as_key(&t.owner).put_file("/d/x.bin", vec![0, 1, 2, 255], None).await.unwrap();
    app.operator().tenant_action("acme", "suspend").await.unwrap();
    app.restart().await;
    assert_eq!(app.as_key(&reader).whoami().await.unwrap_err().code(), Some("tenant_suspended"));
    app.operator().tenant_action("acme", "resume").await.unwrap();
    assert_eq!(&app.as_key(&reader).get_file("/d/x.bin").await.unwrap()[..], &[0, 1, 2, 255]);
}

#[tokio::test]
async fn the_operator_searches_tenants_by_slug_or_name_page_by_page() {
    let app = spawn_app().await;
    for (slug, name) in [("acme", "Acme"), ("acme-eu", "Acme Europe"), ("globex", "Globex for ACME"), ("zeta", "Zeta")]
    {
        app.create_tenant_with(json!({"slug": slug, "name": name})).await;
    }
    app.operator().tenant_action("acme-eu", "suspend").await.unwrap();
    let op = app.operator();
    let slugs = |p: &serde_json::Value| {
        p["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(slugs(&op.list_tenants("?q=aCmE").await.unwrap()), ["acme", "acme-eu", "globex"]);
    assert_eq!(slugs(&op.list_tenants("?q=europe").await.unwrap()), ["acme-eu"]);
    assert_eq!(slugs(&op.list_tenants("?q=acme&status=active").await.unwrap()), ["acme", "globex"]);
    let p1 = op.list_tenants("?q=acme&limit=2").await.unwrap();
    assert_eq!(slugs(&p1), ["acme", "acme-eu"]);
    let p2 = op.list_tenants(&format!("?q=acme&limit=2&cursor={}", p1["next_cursor"].as_str().unwrap())).await.unwrap();
    assert_eq!((slugs(&p2), p2["next_cursor"].is_null()), (vec!["globex".to_owned()], true));
    assert!(slugs(&op.list_tenants("?q=nothing").await.unwrap()).is_empty());
    let res =
        app.raw(Some(&app.admin_key), Method::GET, &format!("/v1/tenants?q={}", "x".repeat(201)), None, &[]).await;
    assert_error(&res, 400, "invalid_request");
    let acme = app.create_tenant("searcher").await;
    assert_error(&app.raw(Some(&acme.owner), Method::GET, "/v1/tenants?q=acme", None, &[]).await, 403, "forbidden");
}
