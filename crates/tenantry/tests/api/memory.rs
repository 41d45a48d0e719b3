//! Memory (API.md §7): set/get/delete/list, TTL, size limit, roles, prefixes, quotas.
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn a_value_set_is_read_back_exactly_and_deleted() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    for (i, value) in [json!({"topic": "rust", "n": [1, 2.5, null, true]}), json!("text"), json!(42), json!(null)]
        .into_iter()
        .enumerate()
    {
        let key = format!("k{i}");
        let set = c.set_memory("agent:researcher", &key, &value, None).await.unwrap();
        assert_eq!(set["namespace"], "agent:researcher");
        assert_eq!(set["key"], key.as_str());
        assert_eq!(set["size"], serde_json::to_string(&value).unwrap().len());
        let got = c.get_memory("agent:researcher", &key).await.unwrap();
        assert_eq!(got["value"], value);
        assert!(got["updated_at"].as_str().unwrap().ends_with('Z'));
    }
    c.delete_memory("agent:researcher", "k0").await.unwrap();
    let res = app.raw(Some(&acme.owner), Method::GET, "/v1/memory/agent:researcher/k0", None, &[]).await;
    assert_error(&res, 404, "not_found");
    let res = app.raw(Some(&acme.owner), Method::DELETE, "/v1/memory/agent:researcher/k0", None, &[]).await;
    assert_error(&res, 404, "not_found");
}

#[tokio::test]
async fn keys_may_hold_slashes_and_unicode_and_namespaces_may_not_hold_slashes() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.set_memory("équipe", "notes/2026/11 été", &json!(1), None).await.unwrap();
    assert_eq!(c.get_memory("équipe", "notes/2026/11 été").await.unwrap()["key"], "notes/2026/11 été");
    let res = app.raw(Some(&acme.owner), Method::PUT, "/v1/memory/a%2Fb/k", Some(b"1"), &[]).await;
    assert_error(&res, 400, "invalid_request");
    let res = app.raw(Some(&acme.owner), Method::PUT, "/v1/memory/ns/k%00x", Some(b"1"), &[]).await;
    assert_error(&res, 400, "invalid_request");
    let res = app.raw(Some(&acme.owner), Method::PUT, "/v1/memory/ns/k", Some(b"{not json"), &[]).await;
    assert_error(&res, 400, "invalid_request");
    let res = app.raw(Some(&acme.owner), Method::PUT, "/v1/memory/ns/k?ttl_seconds=soon", Some(b"1"), &[]).await;
    assert_error(&res, 400, "invalid_request");
    let res = app.raw(Some(&acme.owner), Method::PUT, "/v1/memory/ns/k?ttl_seconds=0", Some(b"1"), &[]).await;
    assert_error(&res, 400, "invalid_request");
    assert!(c.list_memory("ns", "").await.unwrap()["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_same_namespace_and_key_in_two_tenants_never_collide() {
    let app = spawn_app().await;
    let (acme, globex) = (app.create_tenant("acme").await, app.create_tenant("globex").await);
    app.as_key(&acme.owner).set_memory("ns", "k", &json!("acme's"), None).await.unwrap();
    app.as_key(&globex.owner).set_memory("ns", "k", &json!("globex's"), None).await.unwrap();
    assert_eq!(app.as_key(&acme.owner).get_memory("ns", "k").await.unwrap()["value"], "acme's");
    assert_eq!(app.as_key(&globex.owner).get_memory("ns", "k").await.unwrap()["value"], "globex's");
    app.as_key(&globex.owner).delete_memory("ns", "k").await.unwrap();
    assert_eq!(app.as_key(&acme.owner).get_memory("ns", "k").await.unwrap()["value"], "acme's");
    let list = app.as_key(&globex.owner).list_memory("ns", "").await.unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_entry_is_never_returned_and_its_storage_is_reclaimed() {
    let app = spawn_with(|c| c.upkeep_interval = std::time::Duration::from_millis(200)).await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    let value = json!("x".repeat(1000));
    let set = c.set_memory("ns", "short", &value, Some(1)).await.unwrap();
    assert!(set["expires_at"].is_string());
    c.set_memory("ns", "long", &json!(1), None).await.unwrap();
    assert_eq!(c.get_memory("ns", "short").await.unwrap()["value"], value);
    let usage = |c: tenantry_client::Client| async move {
        c.json(Method::GET, "/v1/usage", None).await.unwrap()["usage"]["storage_bytes"].as_u64().unwrap()
    };
    assert_eq!(usage(c.clone()).await, 1003);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = app.raw(Some(&acme.owner), Method::GET, "/v1/memory/ns/short", None, &[]).await;
    assert_error(&res, 404, "not_found");
    let keys: Vec<Value> = c.list_memory("ns", "").await.unwrap()["items"].as_array().unwrap().clone();
    assert_eq!(keys.iter().map(|k| k["key"].as_str().unwrap()).collect::<Vec<_>>(), ["long"]);
    eventually(10, "expired memory reclaimed", || {
        let c = c.clone();
        async move { usage(c).await == 1 }
    })
    .await;
}

#[tokio::test]
async fn a_value_over_the_maximum_is_too_large_and_changes_nothing() {
    let app = spawn_with(|c| c.max_memory_value_bytes = 100).await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.set_memory("ns", "k", &json!("small"), None).await.unwrap();
    let big = serde_json::to_vec(&json!("y".repeat(200))).unwrap();
    let res = app.raw(Some(&acme.owner), Method::PUT, "/v1/memory/ns/k", Some(&big), &[]).await;
    assert_error(&res, 413, "too_large");
    assert_eq!(c.get_memory("ns", "k").await.unwrap()["value"], "small");
}

#[tokio::test]
async fn memory_counts_toward_the_storage_quota_and_a_write_over_it_is_refused() {
    let app = spawn_app().await;
    let acme = app
        .create_tenant_with(json!({"slug": "acme", "tier": "enterprise", "quotas": {"max_storage_bytes": 50}}))
        .await;
    let c = app.as_key(&acme.owner);
    c.set_memory("ns", "a", &json!("x".repeat(30)), None).await.unwrap(); // 32 bytes
    let res = app
        .raw(Some(&acme.owner), Method::PUT, "/v1/memory/ns/b", Some(json!("y".repeat(30)).to_string().as_bytes()), &[])
        .await;
    assert_error(&res, 403, "quota_exceeded");
    let res = app.raw(Some(&acme.owner), Method::GET, "/v1/memory/ns/b", None, &[]).await;
    assert_eq!(res.status, 404);
    // Shrinking is always allowed, and frees room.
    c.set_memory("ns", "a", &json!("x"), None).await.unwrap();
    c.set_memory("ns", "b", &json!("y".repeat(30)), None).await.unwrap();
}

#[tokio::test]
async fn readers_read_writers_write_and_prefixed_keys_have_no_memory() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.as_key(&acme.owner).set_memory("ns", "k", &json!(1), None).await.unwrap();
    let (_, reader) = app.key(&acme, "reader", None).await;
    let (_, writer) = app.key(&acme, "writer", None).await;
    let (_, prefixed) = app.key(&acme, "admin", Some("/docs")).await;
    assert_eq!(app.as_key(&reader).get_memory("ns", "k").await.unwrap()["value"], 1);
    let res = app.raw(Some(&reader), Method::PUT, "/v1/memory/ns/k", Some(b"2"), &[]).await;
    assert_error(&res, 403, "forbidden");
    let res = app.raw(Some(&reader), Method::DELETE, "/v1/memory/ns/k", None, &[]).await;
    assert_error(&res, 403, "forbidden");
    app.as_key(&writer).set_memory("ns", "k", &json!(2), None).await.unwrap();
    for (m, p) in [(Method::GET, "/v1/memory/ns/k"), (Method::PUT, "/v1/memory/ns/k"), (Method::GET, "/v1/memory/ns")] {
        let res = app.raw(Some(&prefixed), m.clone(), p, Some(b"3"), &[]).await;
        assert_error(&res, 403, "forbidden");
    }
    assert_eq!(app.as_key(&reader).get_memory("ns", "k").await.unwrap()["value"], 2);
}

#[tokio::test]
async fn listing_pages_in_key_order_with_a_prefix_and_optional_values() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    for k in ["task/3", "task/1", "note/1", "task/2", "task/10"] {
        c.set_memory("agent", k, &json!({"k": k}), None).await.unwrap();
    }
    let page = c.list_memory("agent", "?prefix=task/&limit=2").await.unwrap();
    let keys = |p: &Value| {
        p["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(keys(&page), ["task/1", "task/10"]);
    assert_eq!(page["items"][0]["value"], json!({"k": "task/1"}));
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let page = c.list_memory("agent", &format!("?prefix=task/&limit=2&cursor={cursor}&values=false")).await.unwrap();
    assert_eq!(keys(&page), ["task/2", "task/3"]);
    assert!(page["items"][0].get("value").is_none());
    assert!(page["next_cursor"].is_null());
}
