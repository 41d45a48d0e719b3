//! API.md §8 usage: metered exactly, kept across a clean restart, and the monthly allowance.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn usage_counts_exactly_the_requests_made() {
    let mut app = spawn_app().await;
    let t = app
        .create_tenant_with(json!({"slug": "metered", "tier": "starter", "quotas": {"max_requests_per_minute": null}}))
        .await;
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    for (i, size) in [100usize, 2000, 5].iter().enumerate() {
        let res = app.raw(Some(&t.owner), Method::PUT, &format!("/v1/files/f{i}"), Some(&vec![b'u'; *size]), &[]).await;
        assert_eq!(res.status, 201);
        bytes_in += *size as u64;
        bytes_out += res.body.len() as u64;
    }
    for _ in 0..4 {
        let res = app.raw(Some(&t.owner), Method::GET, "/v1/files/f1", None, &[]).await;
        bytes_out += res.body.len() as u64;
    }
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/files/missing", None, &[]).await;
    bytes_out += res.body.len() as u64;
    let u = app.as_key(&t.owner).json(Method::GET, "/v1/usage", None).await.unwrap();
    assert_eq!(u["tenant"], "metered");
    assert_eq!(u["tier"], "starter");
    let usage = &u["usage"];
    assert_eq!(usage["api_calls"], 8);
    assert_eq!(usage["writes"], 3);
    assert_eq!(usage["reads"], 5);
    assert_eq!(usage["bytes_in"], bytes_in);
    assert_eq!(usage["bytes_out"], bytes_out);
    assert_eq!(usage["searches"], 0);
    assert_eq!(usage["storage_bytes"], 2105);
    assert_eq!(usage["files"], 3);
    assert_eq!(usage["keys"], 1);
    assert_eq!(u["limits"]["max_keys"], 5);
    assert!(u["period"]["from"].as_str().unwrap().ends_with("-01T00:00:00.000Z"));
    // The operator sees the same for that tenant; the usage call above is now counted too.
    let op = app.operator().json(Method::GET, "/v1/tenants/metered/usage", None).await.unwrap();
    assert_eq!(op["usage"]["api_calls"], 9);
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/tenants/metered/usage", None, &[]).await;
    assert_error(&res, 403, "forbidden");
    // A clean restart loses nothing metered.
    app.restart().await;
    let after = app.operator().json(Method::GET, "/v1/tenants/metered/usage", None).await.unwrap();
    assert_eq!(after["usage"]["api_calls"], 10);
    assert_eq!(after["usage"]["bytes_in"], bytes_in);
}

#[tokio::test]
async fn the_monthly_allowance_answers_429_quota_exceeded_once_spent() {
    let app = spawn_app().await;
    let t = app
        .create_tenant_with(
            json!({"slug": "allowance", "quotas": {"max_api_calls_month": 5, "max_requests_per_minute": null}}),
        )
        .await;
    for _ in 0..5 {
        assert_eq!(app.raw(Some(&t.owner), Method::GET, "/v1/whoami", None, &[]).await.status, 200);
    }
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/whoami", None, &[]).await;
    assert_error(&res, 429, "quota_exceeded");
    assert_eq!(res.json().unwrap()["error"]["limit"], 5);
    // The operator is not metered, and raising the allowance applies at once.
    app.operator().update_tenant("allowance", &json!({"quotas": {"max_api_calls_month": 6}})).await.unwrap();
    assert_eq!(app.raw(Some(&t.owner), Method::GET, "/v1/whoami", None, &[]).await.status, 200);
    assert_eq!(app.raw(Some(&t.owner), Method::GET, "/v1/whoami", None, &[]).await.status, 429);
}

#[tokio::test]
async fn the_operator_gets_usage_by_day_or_month_and_as_csv() {
    let app = spawn_app().await;
    let t = app.create_tenant_with(json!({"slug": "billed", "quotas": {"max_requests_per_minute": null}})).await;
    for _ in 0..3 {
        app.raw(Some(&t.owner), Method::PUT, "/v1/files/x", Some(b"12345"), &[]).await;
    }
    let today = tenantry_core::time::Clock::now(&tenantry_core::time::SystemClock).to_string()[..10].to_owned();
    let month = &today[..7];
    let op = app.operator();
    let by_day = op.tenant_usage("billed", "?from=2020-01-01&to=2100-01-01&granularity=day").await.unwrap();
    assert_eq!(
        by_day["series"],
        json!([{"period": today, "api_calls": 3, "reads": 0, "writes": 3, "bytes_in": 15, "bytes_out": by_day["usage"]["bytes_out"], "searches": 0}])
    );
    assert_eq!(by_day["usage"]["api_calls"], 3);
    assert_eq!(by_day["period"]["from"], "2020-01-01T00:00:00.000Z");
    let by_month = op.tenant_usage("billed", "?granularity=month").await.unwrap();
    assert_eq!(by_month["series"][0]["period"], month);
    assert_eq!(by_month["series"][0]["api_calls"], 3);
    let before = op.tenant_usage("billed", "?from=2020-01-01&to=2020-02-01").await.unwrap();
    assert_eq!((before["usage"]["api_calls"].as_u64(), before["series"].as_array().map(Vec::len)), (Some(0), Some(0)));
    let csv = op.tenant_usage_csv("billed", "").await.unwrap();
    let text = String::from_utf8(csv.to_vec()).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines[0], "tenant,period,api_calls,reads,writes,bytes_in,bytes_out,searches");
    assert!(lines[1].starts_with(&format!("billed,{today},3,0,3,15,")), "{text}");
    for bad in ["?granularity=week", "?from=2026-02-01&to=2026-01-01", "?from=yesterday", "?format=xml"] {
        let res =
            app.raw(Some(&app.admin_key), Method::GET, &format!("/v1/tenants/billed/usage{bad}"), None, &[]).await;
        assert_error(&res, 400, "invalid_request");
    }
}

#[tokio::test]
async fn a_tenant_reads_its_own_usage_by_day_and_only_its_own() {
    let app = spawn_app().await;
    let t = app.create_tenant_with(json!({"slug": "charted", "quotas": {"max_requests_per_minute": null}})).await;
    let other = app.create_tenant("other").await;
    for _ in 0..2 {
        app.raw(Some(&t.owner), Method::PUT, "/v1/files/x", Some(b"1234"), &[]).await;
    }
    app.raw(Some(&other.owner), Method::PUT, "/v1/files/y", Some(b"1"), &[]).await;
    let today = tenantry_core::time::Clock::now(&tenantry_core::time::SystemClock).to_string()[..10].to_owned();
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/usage?from=2020-01-01&granularity=day", None, &[]).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let report = res.json().unwrap();
    assert_eq!(report["tenant"], "charted");
    assert_eq!(report["series"][0]["period"], today.as_str());
    assert_eq!(report["series"][0]["writes"], 2);
    assert_eq!(report["series"][0]["bytes_in"], 8);
    assert_eq!(report["series"].as_array().unwrap().len(), 1);
    // Without a period: this month's totals and no series, as before.
    let plain = app.raw(Some(&t.owner), Method::GET, "/v1/usage", None, &[]).await.json().unwrap();
    assert!(plain.get("series").is_none() || plain["series"].is_null(), "{plain}");
    for bad in ["?granularity=week", "?from=2026-02-01&to=2026-01-01", "?to=soon"] {
        let res = app.raw(Some(&t.owner), Method::GET, &format!("/v1/usage{bad}"), None, &[]).await;
        assert_error(&res, 400, "invalid_request");
    }
}
