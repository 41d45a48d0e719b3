//! API.md §10: health, readiness, metrics, OpenAPI, and the error shape of unknown routes.
use crate::helpers::*;
use reqwest::Method;

#[tokio::test]
async fn health_and_readiness_answer_without_a_key() {
    let app = spawn_app().await;
    let res = app.raw(None, Method::GET, "/healthz", None, &[]).await;
    assert_eq!((res.status.as_u16(), res.json().unwrap()["status"].as_str()), (200, Some("ok")));
    let res = app.raw(None, Method::GET, "/readyz", None, &[]).await;
    assert_eq!((res.status.as_u16(), res.json().unwrap()["status"].as_str()), (200, Some("ready")));
    assert!(res.header("x-request-id").is_some_and(|r| r.starts_with("req_")));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_tenants_by_status() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    app.operator().tenant_action("globex", "suspend").await.unwrap();
    for _ in 0..3 {
        let _ = app.raw(Some(&t.owner), Method::GET, "/v1/files/missing", None, &[]).await;
    }
    let text = String::from_utf8(app.raw(None, Method::GET, "/metrics", None, &[]).await.body.to_vec()).unwrap();
    assert!(
        text.contains("tenantry_http_requests_total{route=\"/v1/files/{*path}\",method=\"GET\",status=\"404\"} 3"),
        "{text}"
    );
    assert!(text.contains("tenantry_tenants{status=\"active\"} 2"));
    assert!(text.contains("tenantry_tenants{status=\"suspended\"} 1"));
    assert!(text.contains("tenantry_http_request_duration_seconds_count{route=\"/v1/files/{*path}\"} 3"));
    assert!(!text.contains("missing"), "labels are route templates, never raw paths");
    // One tenant alone is never paced (crates/tenantry-http/src/fairness.rs).
    assert!(text.contains("\ntenantry_paced_requests_total 0\n"), "{text}");
    assert!(text.contains("\ntenantry_pacing_level_requests_per_second 0\n"), "{text}");
    assert!(text
        .lines()
        .any(|l| l.strip_prefix("tenantry_scheduler_lag_seconds ").is_some_and(|v| v.parse::<f64>().is_ok())));
}

#[tokio::test]
async fn metrics_count_open_event_streams() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let gauge = |text: &str| {
        text.lines().find_map(|l| l.strip_prefix("tenantry_event_streams ")).map(|v| v.trim().parse::<u64>().unwrap())
    };
    let scrape =
        || async { String::from_utf8(app.raw(None, Method::GET, "/metrics", None, &[]).await.body.to_vec()).unwrap() };
    assert_eq!(gauge(&scrape().await), Some(0));
    let _s1 = app.as_key(&t.owner).event_stream(None).await.unwrap();
    let _s2 = app.as_key(&t.owner).event_stream(None).await.unwrap();
    eventually(5, "two open streams", || async { gauge(&scrape().await) == Some(2) }).await;
    assert!(scrape().await.contains("tenantry_webhook_attempts_total{outcome=\"delivered\"}"));
}

/// The value of an unlabelled series in a Prometheus text scrape.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_file_cache_hits_and_misses() {
    if sqlite_only("the embedded store's file cache") {
        return;
    }
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.as_key(&t.owner).put_file("/a.txt", b"four".to_vec(), None).await.unwrap();
    let scrape =
        || async { String::from_utf8(app.raw(None, Method::GET, "/metrics", None, &[]).await.body.to_vec()).unwrap() };
    let before = scrape().await;
    for _ in 0..3 {
        assert_eq!(&app.as_key(&t.owner).get_file("/a.txt").await.unwrap()[..], b"four");
    }
    let after = scrape().await;
    let delta = |name| sample(&after, name).unwrap() - sample(&before, name).unwrap();
    // The first read goes to the database and fills the cache; the next two are answered by it.
    assert_eq!(delta("tenantry_file_cache_misses_total"), 1, "{after}");
    assert_eq!(delta("tenantry_file_cache_hits_total"), 2, "{after}");
    assert_eq!(sample(&after, "tenantry_file_cache_entries"), Some(1));
    assert!(sample(&after, "tenantry_file_cache_bytes").is_some_and(|b| b > 4));
    // A rewrite drops the entry: the next read misses again.
    app.as_key(&t.owner).put_file("/a.txt", b"five!".to_vec(), None).await.unwrap();
    assert_eq!(sample(&scrape().await, "tenantry_file_cache_entries"), Some(0));
    assert_eq!(&app.as_key(&t.owner).get_file("/a.txt").await.unwrap()[..], b"five!");
    let last = scrape().await;
    assert_eq!(
        sample(&last, "tenantry_file_cache_misses_total"),
        sample(&after, "tenantry_file_cache_misses_total").map(|m| m + 1)
    );
}

#[tokio::test]
async fn openapi_json_is_openapi_3_1_and_lists_the_routes() {
    let app = spawn_app().await;
    let spec = app.raw(None, Method::GET, "/openapi.json", None, &[]).await.json().unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    for p in ["/v1/tenants", "/v1/tenants/{slug}", "/v1/keys", "/v1/files/{path}", "/v1/audit", "/healthz"] {
        assert!(spec["paths"].get(p).is_some(), "{p}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_shape_with_a_request_id() {
    let app = spawn_app().await;
    let res = app.raw(None, Method::GET, "/nope", None, &[]).await;
    assert_error(&res, 404, "not_found");
    let res = app.raw(Some(&app.admin_key), Method::PATCH, "/v1/keys", None, &[]).await;
    assert_eq!(res.status, 405);
    assert_eq!(code(&res), "invalid_request");
}

#[tokio::test]
async fn busiest_tenants_get_their_own_series_only_for_the_operator() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.as_key(&t.owner).put_file("/a", vec![0; 1234], None).await.unwrap();
    for _ in 0..4 {
        app.as_key(&t.owner).get_file("/a").await.unwrap();
    }
    let anonymous = String::from_utf8(app.raw(None, Method::GET, "/metrics", None, &[]).await.body.to_vec()).unwrap();
    assert!(!anonymous.contains("acme"), "no tenant names without the operator key");
    let op = String::from_utf8(app.raw(Some(&app.admin_key), Method::GET, "/metrics", None, &[]).await.body.to_vec())
        .unwrap();
    assert!(op.contains("tenantry_tenant_requests_total{tenant=\"acme\"} 5"), "{op}");
    assert!(op.contains("tenantry_tenant_storage_bytes{tenant=\"acme\"} 1234"), "{op}");
    assert!(op.contains("tenantry_tenant_files{tenant=\"acme\"} 1"), "{op}");
    // However many tenants there are, only the 20 busiest get series.
    for i in 0..22 {
        let other = app.create_tenant(&format!("t{i}")).await;
        app.as_key(&other.owner).whoami().await.unwrap();
    }
    let op = String::from_utf8(app.raw(Some(&app.admin_key), Method::GET, "/metrics", None, &[]).await.body.to_vec())
        .unwrap();
    assert_eq!(op.lines().filter(|l| l.starts_with("tenantry_tenant_requests_total{")).count(), 20);
    assert!(op.contains("tenantry_tenant_requests_total{tenant=\"acme\"} 5"), "the busiest stays in");
}

#[tokio::test]
async fn the_docs_page_and_every_file_it_loads_are_served_without_a_key_and_from_nowhere_else() {
    let app = spawn_app().await;
    let page = app.raw(None, Method::GET, "/docs", None, &[]).await;
    assert_eq!((page.status.as_u16(), page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    // Every src= and href= of the page is one of ours, and is served with its type.
    let links: Vec<&str> =
        html.split(['"']).filter(|s| s.starts_with('/') || s.starts_with("http") || s.starts_with("//")).collect();
    assert_eq!(
        links,
        ["/docs/swagger-ui.css", "/docs/favicon-32x32.png", "/docs/swagger-ui-bundle.js", "/docs/init.js"]
    );
    for (link, content_type) in [
        ("/docs/swagger-ui.css", "text/css; charset=utf-8"),
        ("/docs/favicon-32x32.png", "image/png"),
        ("/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("/docs/init.js", "text/javascript; charset=utf-8"),
    ] {
        let res = app.raw(None, Method::GET, link, None, &[]).await;
        assert_eq!((res.status.as_u16(), res.header("content-type")), (200, Some(content_type)), "{link}");
        assert!(res.body.len() > 400, "{link}");
    }
    let init = String::from_utf8(app.raw(None, Method::GET, "/docs/init.js", None, &[]).await.body.to_vec()).unwrap();
    assert!(init.contains(r#"url: "/openapi.json""#) && init.contains("validatorUrl: null"), "{init}");
    let missing = app.raw(None, Method::GET, "/docs/index.css", None, &[]).await;
    assert_error(&missing, 404, "not_found");
}

#[tokio::test]
async fn the_admin_page_is_one_shell_for_every_address_with_a_strict_policy_and_its_files_embedded() {
    let app = spawn_app().await;
    let policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
    let shell = app.raw(None, Method::GET, "/admin", None, &[]).await;
    assert_eq!((shell.status.as_u16(), shell.header("content-type")), (200, Some("text/html; charset=utf-8")));
    let html = String::from_utf8(shell.body.to_vec()).unwrap();
    for path in ["/admin/", "/admin/tenants", "/admin/t/acme/files", "/admin/login?next=%2Fadmin"] {
        let res = app.raw(None, Method::GET, path, None, &[]).await;
        assert_eq!(res.status.as_u16(), 200, "{path}");
        assert_eq!(String::from_utf8(res.body.to_vec()).unwrap(), html, "{path} is the same page");
        assert_eq!(res.header("content-security-policy"), Some(policy), "{path}");
        assert_eq!(res.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(res.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(res.header("cache-control"), Some("no-cache"), "{path}");
    }
    // Its files are its own, named by their content's digest and kept for good.
    let links: Vec<&str> = html.split('"').filter(|s| s.starts_with('/') || s.starts_with("http")).collect();
    assert_eq!(links.len(), 3, "{links:?}");
    assert_eq!(links[2], "/docs", "the only other link: the API reference, for a browser without JavaScript");
    for (link, content_type) in [(links[0], "text/css; charset=utf-8"), (links[1], "text/javascript; charset=utf-8")] {
        assert!(link.starts_with("/admin/assets/app."), "{link}");
        let res = app.raw(None, Method::GET, link, None, &[]).await;
        assert_eq!((res.status.as_u16(), res.header("content-type")), (200, Some(content_type)), "{link}");
        assert_eq!(res.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert!(res.body.len() > 2000, "{link}");
    }
    assert_error(&app.raw(None, Method::GET, "/admin/assets/other.js", None, &[]).await, 404, "not_found");
}
