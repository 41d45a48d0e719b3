//! Export (API.md §9): the bundle holds everything of the tenant and verifies.
use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn an_export_holds_every_file_memory_entry_webhook_and_key_and_verifies() {
    let app = spawn_with(|c| c.webhooks.allow_private_networks = true).await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let c = app.as_key(&acme.owner);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("/a.txt", b"hello".to_vec()),
        ("/empty", vec![]),
        ("/ünï/çode/deep/x.bin", (0..=255u8).cycle().take(100_000).collect()),
    ];
    for (p, content) in &files {
        c.put_file(p, content.clone(), Some("application/x-test")).await.unwrap();
    }
    for i in 0..1200 {
        c.set_memory(&format!("ns{}", i % 3), &format!("k{i}"), &json!({"i": i}), None).await.unwrap();
    }
    c.create_webhook(&json!({"url": "http://127.0.0.1:9/", "events": ["*"], "secret": "a-very-secret-secret"}))
        .await
        .unwrap();
    app.key(&acme, "reader", Some("/docs")).await;
    app.as_key(&globex.owner).put_file("/globex-only", b"not acme's".to_vec(), None).await.unwrap();

    let res = app.raw(Some(&app.admin_key), Method::GET, "/v1/tenants/acme/export", None, &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/vnd.tenantry.bundle"));
    let (mut got_files, mut memory, mut hooks, mut keys) = (Vec::new(), 0, Vec::new(), 0);
    let (header, manifest) = tenantry_bundle::read(res.body.as_ref(), |item| {
        match item {
            tenantry_bundle::Item::File { meta, content } => {
                let mut buf = Vec::new();
                content.read_to_end(&mut buf)?;
                assert_eq!(meta.content_type, "application/x-test");
                got_files.push((meta.path, buf));
            }
            tenantry_bundle::Item::Record { kind: "memory", record } => {
                assert_eq!(record["value"]["i"], record["key"].as_str().unwrap()[1..].parse::<u64>().unwrap());
                memory += 1;
            }
            tenantry_bundle::Item::Record { kind: "webhooks", record } => hooks.push(record),
            tenantry_bundle::Item::Record { kind: "keys", record } => {
                assert!(record.get("key").is_none() && record.get("hash").is_none(), "never a secret: {record}");
                keys += 1;
            }
            tenantry_bundle::Item::Record { kind, .. } => panic!("unexpected record kind {kind}"),
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(header.tenant["slug"], "acme");
    let mut want: Vec<(String, Vec<u8>)> = files.iter().map(|(p, c)| (p.to_string(), c.clone())).collect();
    want.sort();
    assert_eq!(got_files, want, "exactly acme's files, byte for byte, in path order");
    assert_eq!((memory, keys, manifest.files), (1200, 2, 3));
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].get("secret").is_none(), "secrets only when asked");

    let res =
        app.raw(Some(&app.admin_key), Method::GET, "/v1/tenants/acme/export?include_secrets=true", None, &[]).await;
    let mut secret = None;
    tenantry_bundle::read(res.body.as_ref(), |item| {
        if let tenantry_bundle::Item::Record { kind: "webhooks", record } = item {
            secret = record["secret"].as_str().map(str::to_owned);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(secret.as_deref(), Some("a-very-secret-secret"));
    // The export is in the tenant's audit log.
    let audit = app.operator().with_tenant(Some("acme".into())).audit("?action=tenant.export").await.unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn only_the_operator_exports_and_an_unknown_tenant_is_not_found() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let res = app.raw(Some(&acme.owner), Method::GET, "/v1/tenants/acme/export", None, &[]).await;
    assert_error(&res, 403, "forbidden");
    let res = app.raw(Some(&app.admin_key), Method::GET, "/v1/tenants/ghost/export", None, &[]).await;
    assert_error(&res, 404, "tenant_not_found");
}
