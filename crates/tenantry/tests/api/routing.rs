//! API.md §3: which tenant a request is for.
use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

async fn slug_for(app: &TestApp, key: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let res = app.raw(Some(key), Method::GET, path, None, headers).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json().unwrap()["tenant"]["slug"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_operator_names_a_tenant_by_path_header_host_or_domain_else_default() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    app.operator().update_tenant("globex", &json!({"domains": ["files.globex.test"]})).await.unwrap();
    let k = app.admin_key.clone();
    assert_eq!(slug_for(&app, &k, "/v1/whoami", &[]).await, "default");
    assert_eq!(slug_for(&app, &k, "/t/acme/v1/whoami", &[]).await, "acme");
    assert_eq!(slug_for(&app, &k, "/v1/whoami", &[("x-tenant-id", "acme")]).await, "acme");
    assert_eq!(slug_for(&app, &k, "/v1/whoami", &[("x-tenant-id", &acme.id)]).await, "acme");
    assert_eq!(slug_for(&app, &k, "/v1/whoami", &[("host", "acme.tenantry.test")]).await, "acme");
    assert_eq!(slug_for(&app, &k, "/v1/whoami", &[("host", "files.globex.test:7070")]).await, "globex");
    // Path beats header beats host.
    assert_eq!(slug_for(&app, &k, "/t/globex/v1/whoami", &[("x-tenant-id", "acme")]).await, "globex");
    assert_eq!(
        slug_for(&app, &k, "/v1/whoami", &[("x-tenant-id", "globex"), ("host", "acme.tenantry.test")]).await,
        "globex"
    );
    let res = app.raw(Some(&k), Method::GET, "/t/nobody/v1/whoami", None, &[]).await;
    assert_error(&res, 404, "tenant_not_found");
    let res = app.raw(Some(&k), Method::GET, "/v1/whoami", Some(b""), &[("x-tenant-id", "nobody")]).await;
    assert_error(&res, 404, "tenant_not_found");
}

#[tokio::test]
async fn t_slug_paths_serve_the_same_routes_as_v1() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let res = app.raw(Some(&app.admin_key), Method::PUT, "/t/acme/v1/files/a/b.txt?x=1", Some(b"via path"), &[]).await;
    assert_eq!(res.status, 201);
    assert_eq!(&app.as_key(&t.owner).get_file("/a/b.txt").await.unwrap()[..], b"via path");
    let res = app.raw(Some(&t.owner), Method::GET, "/t/acme/v1/files?recursive=true", None, &[]).await;
    assert_eq!(res.json().unwrap()["items"][0]["path"], "/a/b.txt");
}

#[tokio::test]
async fn a_tenant_key_naming_another_tenant_is_refused_and_audited_in_its_own_tenant() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    app.as_key(&globex.owner).put_file("/g.txt", b"globex data".to_vec(), None).await.unwrap();
    app.operator().update_tenant("globex", &json!({"domains": ["files.globex.test"]})).await.unwrap();
    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/t/globex/v1/files/g.txt".into(), vec![]),
        ("/v1/files/g.txt".into(), vec![("x-tenant-id", "globex")]),
        ("/v1/files/g.txt".into(), vec![("x-tenant-id", globex.id.as_str())]),
        ("/v1/files/g.txt".into(), vec![("host", "globex.tenantry.test")]),
        ("/v1/files/g.txt".into(), vec![("host", "files.globex.test")]),
        ("/t/no-such-tenant/v1/files/g.txt".into(), vec![]),
    ];
    for (path, headers) in &attempts {
        let res = app.raw(Some(&acme.owner), Method::GET, path, None, headers).await;
        assert_error(&res, 403, "tenant_mismatch");
        assert!(!String::from_utf8_lossy(&res.body).contains("globex data"));
    }
    // Naming its own tenant any way is fine.
    assert_eq!(
        slug_for(&app, &acme.owner, "/t/acme/v1/whoami", &[("x-tenant-id", "acme"), ("host", "acme.tenantry.test")])
            .await,
        "acme"
    );
    let log = app.as_key(&acme.owner).audit("?action=auth.tenant_mismatch").await.unwrap();
    assert_eq!(log["items"].as_array().unwrap().len(), attempts.len());
    assert_eq!(log["items"][0]["result"], "refused:tenant_mismatch");
    let glog = app.as_key(&globex.owner).audit("?action=auth.tenant_mismatch").await.unwrap();
    assert_eq!(glog["items"].as_array().unwrap().len(), 0);
}
