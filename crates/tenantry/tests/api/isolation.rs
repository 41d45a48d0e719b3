//! The cross-tenant matrix: for every tenant route, another tenant's key, the same key naming
//! the other tenant, and the operator naming the wrong tenant get 404/403 and never the data.
use crate::helpers::*;
use reqwest::Method;

const SECRET: &[u8] = b"acme-confidential-7f3a";

struct World {
    app: TestApp,
    acme: Tenant,
    globex: Tenant,
    acme_key_id: String,
    acme_webhook_id: String,
}

async fn world() -> World {
    let app = spawn_with(|c| c.webhooks.allow_private_networks = true).await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let c = app.as_key(&acme.owner);
    c.put_file("/private/plan.txt", SECRET.to_vec(), None).await.unwrap();
    c.set_memory("ns", "plan.txt", &serde_json::json!(String::from_utf8_lossy(SECRET)), None).await.unwrap();
    let (acme_key_id, _) = app.key(&acme, "reader", None).await;
    let hook = c.create_webhook(&serde_json::json!({"url": "http://127.0.0.1:9/", "events": ["*"]})).await.unwrap();
    let acme_webhook_id = hook["id"].as_str().unwrap().to_owned();
    World { app, acme, globex, acme_key_id, acme_webhook_id }
}

/// Every tenant-scoped route, pointed at acme's things.
fn routes(w: &World) -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/v1/files/private/plan.txt".into()),
        (Method::HEAD, "/v1/files/private/plan.txt".into()),
        (Method::DELETE, "/v1/files/private/plan.txt".into()),
        (Method::GET, "/v1/files?prefix=/private&recursive=true".into()),
        (Method::GET, "/v1/keys".into()),
        (Method::DELETE, format!("/v1/keys/{}", w.acme_key_id)),
        (Method::GET, "/v1/audit?limit=1000".into()),
        (Method::GET, "/v1/audit/verify".into()),
        (Method::GET, "/v1/whoami".into()),
        (Method::GET, "/v1/memory/ns/plan.txt".into()),
        (Method::PUT, "/v1/memory/ns/plan.txt".into()),
        (Method::DELETE, "/v1/memory/ns/plan.txt".into()),
        (Method::GET, "/v1/memory/ns".into()),
        (Method::GET, "/v1/search?q=confidential".into()),
        (Method::GET, "/v1/events?after=0".into()),
        (Method::GET, "/v1/webhooks".into()),
        (Method::GET, format!("/v1/webhooks/{}", w.acme_webhook_id)),
        (Method::PATCH, format!("/v1/webhooks/{}", w.acme_webhook_id)),
        (Method::DELETE, format!("/v1/webhooks/{}", w.acme_webhook_id)),
        (Method::GET, format!("/v1/webhooks/{}/deliveries", w.acme_webhook_id)),
    ]
}

/// A JSON body that parses for every route that takes one (PUT memory, PATCH webhook).
const BODY: &[u8] = b"{\"enabled\": false}";

/// Whether an answer carries anything of acme's beyond what the request itself said: the
/// content, acme's id, its slug as data, or its key's details.
fn leaks(w: &World, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    body.windows(SECRET.len()).any(|x| x == SECRET)
        || text.contains(&w.acme.id)
        || text.contains("\"slug\":\"acme\"")
        || text.contains(&format!("\"id\":\"{}", w.acme_key_id))
        || text.contains(&format!("\"id\":\"{}", w.acme_webhook_id))
        || text.contains("confidential")
}

async fn acme_is_untouched(w: &World) {
    assert_eq!(&w.app.as_key(&w.acme.owner).get_file("/private/plan.txt").await.unwrap()[..], SECRET);
    let keys = w.app.as_key(&w.acme.owner).list_keys().await.unwrap();
    let k = keys["items"].as_array().unwrap().iter().find(|k| k["id"] == w.acme_key_id.as_str()).unwrap().clone();
    assert!(k["revoked_at"].is_null());
    let c = w.app.as_key(&w.acme.owner);
    assert_eq!(c.get_memory("ns", "plan.txt").await.unwrap()["value"], String::from_utf8_lossy(SECRET).as_ref());
    let hooks = c.list_webhooks().await.unwrap();
    assert_eq!(hooks["items"][0]["id"], w.acme_webhook_id.as_str());
    assert_eq!(hooks["items"][0]["enabled"], true);
    let found = c.search("confidential", "").await.unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn another_tenants_key_never_gets_a_byte_of_the_data() {
    let w = world().await;
    for (m, p) in routes(&w) {
        let res = w.app.raw(Some(&w.globex.owner), m.clone(), &p, Some(BODY), &[]).await;
        assert!(res.status == 404 || res.status.is_success(), "{m} {p}: {}", res.status);
        if res.status == 404 {
            assert!(code(&res) == "not_found" || m == Method::HEAD, "{m} {p}");
        }
        assert!(!leaks(&w, &res.body), "{m} {p} leaked: {}", String::from_utf8_lossy(&res.body));
        // The same answer as for something that never existed anywhere.
        let never = p
            .replace("plan.txt", "never.txt")
            .replace(&w.acme_key_id, "key_0000000000000000")
            .replace(&w.acme_webhook_id, "whk_0000000000000000");
        let other = w.app.raw(Some(&w.globex.owner), m.clone(), &never, Some(BODY), &[]).await;
        assert_eq!((res.status, code(&res)), (other.status, code(&other)), "{m} {p}");
    }
    // A write by globex to the same path lands in globex, not in acme.
    w.app.as_key(&w.globex.owner).put_file("/private/plan.txt", b"globex's own".to_vec(), None).await.unwrap();
    acme_is_untouched(&w).await;
}

#[tokio::test]
async fn a_key_naming_another_tenant_by_path_or_header_is_a_mismatch_on_every_route() {
    let w = world().await;
    for (m, p) in routes(&w) {
        let res = w.app.raw(Some(&w.globex.owner), m.clone(), &p, Some(BODY), &[("x-tenant-id", "acme")]).await;
        assert_eq!(res.status, 403, "{m} {p}");
        if m != Method::HEAD {
            assert_eq!(code(&res), "tenant_mismatch");
        }
        assert!(!leaks(&w, &res.body));
        let res = w.app.raw(Some(&w.globex.owner), m.clone(), &format!("/t/acme{p}"), Some(BODY), &[]).await;
        assert_eq!(res.status, 403, "/t/acme{p}");
        assert!(!leaks(&w, &res.body));
    }
    let res = w
        .app
        .raw(Some(&w.globex.owner), Method::PUT, "/t/acme/v1/files/private/plan.txt", Some(b"overwrite"), &[])
        .await;
    assert_eq!(res.status, 403);
    acme_is_untouched(&w).await;
}

#[tokio::test]
async fn the_operator_naming_the_wrong_tenant_sees_only_that_tenant() {
    let w = world().await;
    for (m, p) in routes(&w) {
        let lists_of_globex = ["/v1/whoami", "/v1/keys", "/v1/audit", "/v1/search", "/v1/events", "/v1/memory/ns"];
        if lists_of_globex.iter().any(|l| p.starts_with(l)) && m == Method::GET || p == "/v1/webhooks" {
            continue; // these answer for globex, which is right; checked for leaks below
        }
        let res = w.app.raw(Some(&w.app.admin_key), m.clone(), &p, Some(BODY), &[("x-tenant-id", "globex")]).await;
        // Writes to globex's own namespace succeed (in globex: the PUT creates globex's entry, which
        // the DELETE then removes); everything else of acme's is 404.
        let globex_write = (m == Method::PUT || m == Method::DELETE) && p.starts_with("/v1/memory/ns/");
        assert_eq!(
            res.status.as_u16() / 100 == 2 && (p.contains("prefix") || globex_write),
            res.status.is_success(),
            "{m} {p}: {}",
            res.status
        );
        assert!(!leaks(&w, &res.body), "{m} {p}");
    }
    for p in [
        "/v1/keys",
        "/v1/audit?limit=1000",
        "/v1/whoami",
        "/v1/search?q=confidential",
        "/v1/events",
        "/v1/memory/ns",
        "/v1/webhooks",
    ] {
        let res = w.app.raw(Some(&w.app.admin_key), Method::GET, p, None, &[("x-tenant-id", "globex")]).await;
        assert_eq!(res.status, 200);
        assert!(!leaks(&w, &res.body), "{p}");
    }
    acme_is_untouched(&w).await;
}

#[tokio::test]
async fn a_prefixed_key_learns_nothing_outside_its_prefix_from_errors_or_listings() {
    let w = world().await;
    let (_, docs) = w.app.key(&w.acme, "admin", Some("/docs")).await;
    for p in ["/v1/files/private/plan.txt", "/v1/files/private/nothing-here.txt"] {
        let res = w.app.raw(Some(&docs), Method::GET, p, None, &[]).await;
        // The same answer whether or not the file exists: existence is not revealed.
        assert_error(&res, 403, "forbidden");
        assert!(!res.body.windows(SECRET.len()).any(|x| x == SECRET));
    }
    let list = w.app.as_key(&docs).list_files("/", true, None).await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let list = w.app.as_key(&docs).list_files("/private", true, None).await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

/// A person who is globex's owner, signed in: their session cookie and the same-origin header
/// their browser sends with it.
async fn globex_person(w: &World) -> Vec<(String, String)> {
    let user = serde_json::json!({"email": "gus@globex.test", "password": "globex owner's password"});
    w.app.operator().json(Method::POST, "/v1/users", Some(&user)).await.unwrap();
    let member = serde_json::json!({"email": "gus@globex.test", "role": "owner"});
    w.app.operator().with_tenant(Some("globex".into())).json(Method::POST, "/v1/members", Some(&member)).await.unwrap();
    let login = w.app.raw(None, Method::POST, "/v1/auth/login", Some(user.to_string().as_bytes()), &[]).await;
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    vec![("cookie".into(), cookie), ("origin".into(), w.app.url.clone())]
}

#[tokio::test]
async fn a_person_of_another_tenant_never_gets_a_byte_and_cannot_tell_the_tenant_exists() {
    let w = world().await;
    let session = globex_person(&w).await;
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h: Vec<(String, String)> = session.clone();
        h.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        h
    };
    for (m, p) in routes(&w) {
        // In their own tenant: acme's things are not there.
        let own = with(&[]);
        let refs: Vec<(&str, &str)> = own.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let res = w.app.raw(None, m.clone(), &p, Some(BODY), &refs).await;
        assert!(res.status == 404 || res.status.is_success(), "{m} {p}: {}", res.status);
        assert!(!leaks(&w, &res.body), "{m} {p} leaked: {}", String::from_utf8_lossy(&res.body));
        // Naming acme by header or path: exactly what naming a tenant that does not exist gets.
        for (named, nope) in
            [(with(&[("x-tenant-id", "acme")]), with(&[("x-tenant-id", "nope")])), (with(&[]), with(&[]))]
        {
            let (acme_path, nope_path) = if named.len() == session.len() {
                (format!("/t/acme{p}"), format!("/t/nope{p}"))
            } else {
                (p.clone(), p.clone())
            };
            let refs: Vec<(&str, &str)> = named.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let res = w.app.raw(None, m.clone(), &acme_path, Some(BODY), &refs).await;
            let refs: Vec<(&str, &str)> = nope.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let none = w.app.raw(None, m.clone(), &nope_path, Some(BODY), &refs).await;
            assert_eq!(res.status, 404, "{m} {acme_path}");
            if m != Method::HEAD {
                assert_eq!(code(&res), "tenant_not_found", "{m} {acme_path}");
                let message = |r: &tenantry_client::RawResponse| {
                    r.json().unwrap()["error"]["message"].as_str().unwrap().replace("nope", "acme")
                };
                assert_eq!(message(&res), message(&none), "{m} {acme_path}: the same words as for no tenant");
            }
            assert!(!leaks(&w, &res.body), "{m} {acme_path}");
        }
    }
    acme_is_untouched(&w).await;
}
