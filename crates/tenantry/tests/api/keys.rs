//! API.md §5: keys — secrets shown once, revocation, roles and prefixes.
use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_created_key_shows_its_secret_once_and_lists_without_it() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let res = app
        .raw(Some(&t.owner), Method::POST, "/v1/keys", Some(br#"{"name":"ci","role":"writer","prefix":"/docs/"}"#), &[])
        .await;
    assert_eq!(res.status, 201);
    let k = res.json().unwrap();
    assert_eq!(
        (k["name"].as_str(), k["role"].as_str(), k["prefix"].as_str()),
        (Some("ci"), Some("writer"), Some("/docs"))
    );
    let secret = k["key"].as_str().unwrap();
    assert!(secret.starts_with("tnr_key_") && secret.contains(k["id"].as_str().unwrap()));
    let list = app.as_key(&t.owner).list_keys().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let text = list.to_string();
    assert!(!text.contains(secret) && !text.contains(&t.owner), "secrets must never be listed");
    assert!(items.iter().all(|i| i.get("key").is_none()));
}

#[tokio::test]
async fn a_revoked_key_gets_401_on_its_very_next_request() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let (id, secret) = app.key(&t, "reader", None).await;
    assert!(app.as_key(&secret).whoami().await.is_ok());
    let res = app.raw(Some(&t.owner), Method::DELETE, &format!("/v1/keys/{id}"), None, &[]).await;
    assert_eq!(res.status, 204);
    let res = app.raw(Some(&secret), Method::GET, "/v1/whoami", None, &[]).await;
    assert_error(&res, 401, "unauthenticated");
    let listed = app.as_key(&t.owner).list_keys().await.unwrap();
    let k = listed["items"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert!(k["revoked_at"].is_string());
    let res = app.raw(Some(&t.owner), Method::DELETE, "/v1/keys/key_doesnotexist0000", None, &[]).await;
    assert_error(&res, 404, "not_found");
}

#[tokio::test]
async fn missing_malformed_forged_and_expired_keys_are_unauthenticated() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let flipped = if t.owner.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &t.owner[..t.owner.len() - 1]);
    for key in [None, Some("nonsense"), Some(forged.as_str()), Some("")] {
        let res = app.raw(key, Method::GET, "/v1/whoami", None, &[]).await;
        assert_error(&res, 401, "unauthenticated");
    }
    let res = app.raw(None, Method::GET, "/v1/files/a", None, &[("authorization", "Basic abc")]).await;
    assert_error(&res, 401, "unauthenticated");
    // Expiry in the past is refused at creation; a near expiry stops working once passed.
    let err = app
        .as_key(&t.owner)
        .create_key(&json!({"name": "old", "role": "reader", "expires_at": "2001-01-01T00:00:00Z"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_request"));
    let soon = tenantry_core::time::Timestamp::from_millis(
        tenantry_core::time::Clock::now(&tenantry_core::time::SystemClock).millis() + 1500,
    );
    let k = app
        .as_key(&t.owner)
        .create_key(&json!({"name": "brief", "role": "reader", "expires_at": soon.to_string()}))
        .await
        .unwrap();
    let secret = k["key"].as_str().unwrap();
    assert!(app.as_key(secret).whoami().await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert_eq!(app.as_key(secret).whoami().await.unwrap_err().code(), Some("unauthenticated"));
}

#[tokio::test]
async fn roles_allow_exactly_what_the_contract_says() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let (_, reader) = app.key(&t, "reader", None).await;
    // free tier allows 2 keys but limits are issue #4's; quotas are not enforced on key count yet.
    let (_, writer) = app.key(&t, "writer", None).await;
    let (_, admin) = app.key(&t, "admin", None).await;
    app.as_key(&writer).put_file("/a.txt", b"a".to_vec(), None).await.unwrap();
    assert_eq!(&app.as_key(&reader).get_file("/a.txt").await.unwrap()[..], b"a");
    let res = app.raw(Some(&reader), Method::PUT, "/v1/files/b.txt", Some(b"b"), &[]).await;
    assert_error(&res, 403, "forbidden");
    let res = app.raw(Some(&reader), Method::DELETE, "/v1/files/a.txt", None, &[]).await;
    assert_error(&res, 403, "forbidden");
    for k in [&reader, &writer] {
        let res = app.raw(Some(k), Method::POST, "/v1/keys", Some(br#"{"name":"x","role":"reader"}"#), &[]).await;
        assert_error(&res, 403, "forbidden");
        let res = app.raw(Some(k), Method::GET, "/v1/keys", None, &[]).await;
        assert_error(&res, 403, "forbidden");
        let res = app.raw(Some(k), Method::GET, "/v1/audit", None, &[]).await;
        assert_error(&res, 403, "forbidden");
    }
    // An admin manages keys but cannot mint or revoke an owner.
    let res = app.raw(Some(&admin), Method::POST, "/v1/keys", Some(br#"{"name":"x","role":"owner"}"#), &[]).await;
    assert_error(&res, 403, "forbidden");
    let owner_id = app.as_key(&t.owner).whoami().await.unwrap()["key"]["id"].as_str().unwrap().to_owned();
    let res = app.raw(Some(&admin), Method::DELETE, &format!("/v1/keys/{owner_id}"), None, &[]).await;
    assert_error(&res, 403, "forbidden");
    assert!(app.as_key(&t.owner).whoami().await.is_ok());
    let k = app.as_key(&admin).create_key(&json!({"name": "w2", "role": "writer"})).await.unwrap();
    assert_eq!(k["role"], "writer");
    let res = app.raw(Some(&admin), Method::POST, "/v1/keys", Some(br#"{"name":"x","role":"root"}"#), &[]).await;
    assert_error(&res, 400, "invalid_request");
}

#[tokio::test]
async fn a_prefixed_key_sees_and_touches_only_its_prefix_on_segment_boundaries() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let owner = app.as_key(&t.owner);
    for p in ["/docs", "/docs/a.txt", "/docs/sub/b.txt", "/docs2/c.txt", "/other.txt"] {
        owner.put_file(p, p.as_bytes().to_vec(), None).await.unwrap();
    }
    let (_, docs) = app.key(&t, "writer", Some("/docs")).await;
    let c = app.as_key(&docs);
    assert_eq!(&c.get_file("/docs/a.txt").await.unwrap()[..], b"/docs/a.txt");
    assert_eq!(&c.get_file("/docs").await.unwrap()[..], b"/docs");
    for p in ["/v1/files/docs2/c.txt", "/v1/files/other.txt", "/v1/files/doc"] {
        let res = app.raw(Some(&docs), Method::GET, p, None, &[]).await;
        assert_error(&res, 403, "forbidden");
        let body = String::from_utf8_lossy(&res.body).to_string();
        assert!(!body.contains("docs2/c.txt") || p.contains("docs2"), "no leak of other paths");
    }
    let res = app.raw(Some(&docs), Method::PUT, "/v1/files/docs2/new", Some(b"x"), &[]).await;
    assert_error(&res, 403, "forbidden");
    let paths = |v: serde_json::Value| {
        v["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    // The key covers /docs itself, so a file at exactly /docs is listed too.
    assert_eq!(paths(c.list_files("/", true, None).await.unwrap()), ["/docs", "/docs/a.txt", "/docs/sub/b.txt"]);
    assert_eq!(paths(c.list_files("/docs2", true, None).await.unwrap()), Vec::<String>::new());
    assert_eq!(paths(c.list_files("/docs/", false, None).await.unwrap()), ["/docs/a.txt"]);
    // By folder, the key sees only the way to its own files.
    assert_eq!(paths(c.list_folder("/", None).await.unwrap()), ["/docs", "/docs/"]);
    assert_eq!(paths(c.list_folder("/docs", None).await.unwrap()), ["/docs/a.txt", "/docs/sub/"]);
    assert_eq!(paths(c.list_folder("/docs2", None).await.unwrap()), Vec::<String>::new());
    let (_, deep) = app.key(&t, "reader", Some("/docs/sub/inner")).await;
    let deep = app.as_key(&deep);
    assert_eq!(paths(deep.list_folder("/", None).await.unwrap()), Vec::<String>::new(), "nothing is there yet");
    owner.put_file("/docs/sub/inner/z", b"z".to_vec(), None).await.unwrap();
    assert_eq!(paths(deep.list_folder("/", None).await.unwrap()), ["/docs/"]);
    assert_eq!(paths(deep.list_folder("/docs/sub", None).await.unwrap()), ["/docs/sub/inner/"]);
    // It cannot mint a key wider than itself; a narrower one is fine, and no prefix means its own.
    let k = app.key(&t, "admin", Some("/docs")).await.1;
    let err = app.as_key(&k).create_key(&json!({"name": "wide", "role": "reader", "prefix": "/"})).await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    let err =
        app.as_key(&k).create_key(&json!({"name": "wide", "role": "reader", "prefix": "/docs2"})).await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    let narrow =
        app.as_key(&k).create_key(&json!({"name": "n", "role": "reader", "prefix": "/docs/sub"})).await.unwrap();
    assert_eq!(narrow["prefix"], "/docs/sub");
    let inherit = app.as_key(&k).create_key(&json!({"name": "i", "role": "reader"})).await.unwrap();
    assert_eq!(inherit["prefix"], "/docs");
}

#[tokio::test]
async fn whoami_names_the_tenant_and_the_key() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let (id, secret) = app.key(&t, "reader", Some("/x")).await;
    let me = app.as_key(&secret).whoami().await.unwrap();
    assert_eq!(me["tenant"]["slug"], "acme");
    assert_eq!(me["tenant"]["id"], t.id.as_str());
    assert_eq!(me["key"], json!({"id": id, "role": "reader", "prefix": "/x", "operator": false}));
    let op = app.operator().whoami().await.unwrap();
    assert_eq!(op["tenant"]["slug"], "default");
    assert_eq!(op["key"]["operator"], true);
}
