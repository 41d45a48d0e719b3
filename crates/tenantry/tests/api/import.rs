//! Import (API.md §9): a bundle is verified whole before anything changes, applied all at once,
//! conflicts decided by `on_conflict`, and export → import → export gives the same content.
use crate::helpers::*;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tenantry_client::RawResponse;

pub(crate) async fn export(app: &TestApp, slug: &str) -> Vec<u8> {
    let res = app
        .raw(Some(&app.admin_key), Method::GET, &format!("/v1/tenants/{slug}/export?include_secrets=true"), None, &[])
        .await;
    assert_eq!(res.status, 200);
    res.body.to_vec()
}

async fn import(app: &TestApp, slug: &str, bundle: &[u8], policy: &str) -> RawResponse {
    let q = if policy.is_empty() { String::new() } else { format!("?on_conflict={policy}") };
    app.raw(Some(&app.admin_key), Method::POST, &format!("/v1/tenants/{slug}/import{q}"), Some(bundle), &[]).await
}

pub(crate) async fn import_ok(app: &TestApp, slug: &str, bundle: &[u8], policy: &str) -> Value {
    let res = import(app, slug, bundle, policy).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json().unwrap()
}

/// A bundle's entries that carry content, in order: file metadata with bytes, and records.
/// (`keys` and `webhooks` records hold ids and times of their own tenant; they are compared apart.)
fn content_of(bundle: &[u8]) -> (Value, Vec<String>, Vec<Value>) {
    let mut items = Vec::new();
    let mut hooks = Vec::new();
    let (header, _) = tenantry_bundle::read(bundle, |item| {
        match item {
            tenantry_bundle::Item::File { meta, content } => {
                let mut buf = Vec::new();
                content.read_to_end(&mut buf)?;
                items.push(format!("file {}", serde_json::to_string(&meta).unwrap()));
                items.push(format!("data {}", hex::encode(&buf)));
            }
            tenantry_bundle::Item::Record { kind: "memory", record } => items.push(format!("memory {record}")),
            tenantry_bundle::Item::Record { kind: "webhooks", record } => hooks.push(record),
            tenantry_bundle::Item::Record { .. } => {}
        }
        Ok(())
    })
    .unwrap();
    (header.tenant, items, hooks)
}

fn random_tree(seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let names = ["a", "b c", "ünï", "çödé", "日本", "x.tar.gz", ".env", "deep", "z-9"];
    let mut tree = std::collections::BTreeMap::new();
    for i in 0..60 {
        let depth = rng.gen_range(1..8);
        let mut path = String::new();
        for _ in 0..depth {
            path.push('/');
            path.push_str(names[rng.gen_range(0..names.len())]);
        }
        path.push_str(&format!("-{i}"));
        let size = match rng.gen_range(0..10) {
            0 => 0,
            1 => rng.gen_range(200_000..3_000_000),
            _ => rng.gen_range(1..5000),
        };
        let content: Vec<u8> = if i % 3 == 0 {
            (0..size).map(|j| b"lorem ipsum dolor sit amet "[j % 27]).collect()
        } else {
            (0..size).map(|_| rng.gen::<u8>()).collect()
        };
        tree.insert(path, content);
    }
    tree.into_iter().collect()
}

#[tokio::test]
async fn export_import_export_reproduces_files_memory_and_settings_byte_for_byte() {
    let app = spawn_with(|c| c.webhooks.allow_private_networks = true).await;
    let acme = app
        .create_tenant_with(json!({
            "slug": "acme", "name": "Acme Corp", "tier": "enterprise", "quotas": {"max_files": 5000},
            "metadata": {"plan": "gold", "seats": 12}, "domains": ["files.acme.example"],
        }))
        .await;
    let c = app.as_key(&acme.owner);
    let tree = random_tree(7);
    for (path, content) in &tree {
        c.put_file(path, content.clone(), Some("application/x-test")).await.unwrap();
    }
    for i in 0..30 {
        c.set_memory(
            &format!("agent:{}", i % 4),
            &format!("notes/{i}"),
            &json!({"n": i, "text": "zebra crossing"}),
            None,
        )
        .await
        .unwrap();
    }
    c.set_memory("tmp", "with-ttl", &json!("soon gone"), Some(3600)).await.unwrap();
    c.create_webhook(&json!({"url": "http://127.0.0.1:9/hook", "events": ["file.written"], "path_glob": "/docs/**",
        "secret": "a-very-secret-secret"}))
        .await
        .unwrap();
    app.key(&acme, "reader", Some("/docs")).await;
    let first = export(&app, "acme").await;

    let copy = app.create_tenant_with(json!({"slug": "copy", "tier": "enterprise"})).await;
    let report = import_ok(&app, "copy", &first, "").await;
    assert_eq!(report["files"]["created"], tree.len() as u64);
    assert_eq!(report["file_bytes"], tree.iter().map(|(_, c)| c.len() as u64).sum::<u64>());
    assert_eq!(report["memory"]["created"], 31);
    assert_eq!(report["webhooks"]["created"], 1);
    assert_eq!(report["keys_not_imported"], 2);
    assert_eq!(report["settings"], "applied");
    let notes = report["notes"].to_string();
    assert!(notes.contains("files.acme.example"), "the domain stays acme's: {notes}");
    assert!(notes.contains("2 key records"), "{notes}");

    let second = export(&app, "copy").await;
    let (s1, items1, hooks1) = content_of(&first);
    let (s2, items2, hooks2) = content_of(&second);
    assert_eq!(items1.len(), tree.len() * 2 + 31);
    assert!(items1 == items2, "files (metadata and bytes) and memory are the same, in the same order");
    for field in ["name", "tier", "quotas", "metadata"] {
        assert_eq!(s1[field], s2[field], "setting {field}");
    }
    assert_eq!(s2["domains"], json!([]));
    assert_eq!(s2["slug"], "copy");
    assert_eq!(hooks2.len(), 1);
    for field in ["url", "events", "path_glob", "enabled", "secret", "created_at"] {
        assert_eq!(hooks1[0][field], hooks2[0][field], "webhook {field}");
    }
    assert_ne!(hooks1[0]["id"], hooks2[0]["id"], "webhook ids are the server's own");

    // The copy serves: its usage, search index and directory (name, quotas) are all in place.
    let usage = |slug: &'static str| {
        let op = app.operator();
        async move { op.tenant_usage(slug, "").await.unwrap()["usage"].clone() }
    };
    let (u1, u2) = (usage("acme").await, usage("copy").await);
    assert_eq!((u1["storage_bytes"].clone(), u1["files"].clone()), (u2["storage_bytes"].clone(), u2["files"].clone()));
    let copy_c = app.as_key(&copy.owner);
    let hits = copy_c.search("zebra", "&limit=100").await.unwrap();
    assert_eq!(hits["items"].as_array().unwrap().len(), 30);
    let hits = copy_c.search("lorem", "&kind=file&limit=100").await.unwrap();
    let source_hits = c.search("lorem", "&kind=file&limit=100").await.unwrap();
    assert!(source_hits["items"].as_array().unwrap().len() > 5);
    assert_eq!(hits["items"], source_hits["items"], "the same hits, scores and snippets as the source");
    let shown = app.operator().show_tenant("copy").await.unwrap();
    assert_eq!((shown["name"].clone(), shown["limits"]["max_files"].clone()), (json!("Acme Corp"), json!(5000)));
    // One event and one audit entry say what happened.
    let events = copy_c.events(0, None).await.unwrap();
    let imported: Vec<&Value> =
        events["items"].as_array().unwrap().iter().filter(|e| e["type"] == "tenant.imported").collect();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0]["detail"]["files"]["created"], tree.len() as u64);
    let audit = app.operator().with_tenant(Some("copy".into())).audit("?action=tenant.import").await.unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);

    // Importing the same bundle again changes nothing.
    let again = import_ok(&app, "copy", &first, "").await;
    assert_eq!(again["files"]["unchanged"], tree.len() as u64);
    assert_eq!((again["files"]["created"].clone(), again["memory"]["unchanged"].clone()), (json!(0), json!(31)));
    assert_eq!(again["webhooks"]["unchanged"], 1);
    assert_eq!(again["settings"], "kept");
    assert_eq!(usage("copy").await["storage_bytes"], u2["storage_bytes"]);
    assert!(content_of(&export(&app, "copy").await).1 == items2);
}

/// A bundle made by hand, for what an export never writes.
fn handmade(records: &[(&str, Value)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let header = tenantry_bundle::Header::new(
        json!({"slug": "src", "name": "Source", "tier": "enterprise", "quotas": {}, "metadata": {}, "domains": []}),
        "2026-11-23T00:00:00.000Z".into(),
    );
    let mut w = tenantry_bundle::Writer::new(Vec::new(), &header).unwrap();
    for (kind, r) in records {
        w.record(kind, r).unwrap();
    }
    for (path, content) in files {
        let meta = tenantry_bundle::FileMeta::describing(path, content, "text/plain", "2026-01-02T03:04:05.006Z");
        w.file(&meta, *content).unwrap();
    }
    w.finish().unwrap().1
}

fn memory_record(key: &str, value: Value) -> Value {
    json!({"namespace": "ns", "key": key, "value": value, "size": 1,
           "created_at": "2026-01-02T03:04:05.006Z", "updated_at": "2026-01-02T03:04:05.006Z"})
}

#[tokio::test]
async fn conflicts_are_skipped_overwritten_or_renamed_and_the_same_content_is_no_conflict() {
    let app = spawn_app().await;
    let t = app.create_tenant("target").await;
    let c = app.as_key(&t.owner);
    c.put_file("/a.txt", b"mine".to_vec(), None).await.unwrap();
    c.put_file("/same.txt", b"same".to_vec(), None).await.unwrap();
    c.set_memory("ns", "k", &json!("mine"), None).await.unwrap();
    let bundle = handmade(
        &[("memory", memory_record("k", json!("theirs"))), ("memory", memory_record("new", json!(1)))],
        &[("/a.txt", b"theirs!"), ("/same.txt", b"same"), ("/b.txt", b"new file")],
    );
    let usage = || async { app.operator().tenant_usage("target", "").await.unwrap()["usage"].clone() };
    let before = usage().await;

    let r = import_ok(&app, "target", &bundle, "skip").await;
    assert_eq!(r["files"], json!({"created": 1, "replaced": 0, "renamed": 0, "skipped": 1, "unchanged": 1}));
    assert_eq!(r["memory"], json!({"created": 1, "replaced": 0, "renamed": 0, "skipped": 1, "unchanged": 0}));
    assert_eq!(r["settings"], "kept", "the target held data");
    assert_eq!(&c.get_file("/a.txt").await.unwrap()[..], b"mine");
    assert_eq!(c.get_memory("ns", "k").await.unwrap()["value"], "mine");
    assert_eq!(&c.get_file("/b.txt").await.unwrap()[..], b"new file");
    let after_skip = usage().await;
    assert_eq!(after_skip["files"], before["files"].as_u64().unwrap() + 1);
    // "8 bytes of /b.txt" + `1` as JSON.
    assert_eq!(after_skip["storage_bytes"], before["storage_bytes"].as_u64().unwrap() + 8 + 1);

    let r = import_ok(&app, "target", &bundle, "rename").await;
    assert_eq!(r["files"], json!({"created": 0, "replaced": 0, "renamed": 1, "skipped": 0, "unchanged": 2}));
    assert_eq!(r["memory"]["renamed"], 1);
    assert_eq!(
        r["renamed"],
        json!([{"kind": "memory", "from": "ns/k", "to": "ns/k.imported"},
               {"kind": "file", "from": "/a.txt", "to": "/a.imported.txt"}])
    );
    assert_eq!(&c.get_file("/a.txt").await.unwrap()[..], b"mine");
    assert_eq!(&c.get_file("/a.imported.txt").await.unwrap()[..], b"theirs!");
    assert_eq!(c.get_memory("ns", "k.imported").await.unwrap()["value"], "theirs");
    // Renaming again finds the earlier copy: nothing new.
    let r = import_ok(&app, "target", &bundle, "rename").await;
    assert_eq!((r["files"]["renamed"].clone(), r["memory"]["renamed"].clone()), (json!(0), json!(0)));

    let r = import_ok(&app, "target", &bundle, "overwrite").await;
    assert_eq!(r["files"]["replaced"], 1);
    assert_eq!(r["memory"]["replaced"], 1);
    assert_eq!(r["settings"], "applied", "overwrite takes the bundle's settings");
    assert_eq!(&c.get_file("/a.txt").await.unwrap()[..], b"theirs!");
    let listed = c.list_files("/", false, None).await.unwrap();
    let a = listed["items"].as_array().unwrap().iter().find(|f| f["path"] == "/a.txt").unwrap().clone();
    assert_eq!(a["version"], 2, "an overwrite is a new version of the file");
    assert_eq!(c.get_memory("ns", "k").await.unwrap()["value"], "theirs");
    assert_eq!(app.operator().show_tenant("target").await.unwrap()["name"], "Source");
    let files: u64 = usage().await["files"].as_u64().unwrap();
    assert_eq!(files, 4, "/a.txt, /same.txt, /b.txt, /a.imported.txt");

    let res = import(&app, "target", &bundle, "merge").await;
    assert_error(&res, 400, "invalid_request");

    // settings=keep keeps the target's own though the import overwrites; replace takes the
    // bundle's though it skips, and the answer names each setting it changed.
    app.operator().update_tenant("target", &json!({"name": "Target"})).await.unwrap();
    let r = import_ok(&app, "target", &bundle, "overwrite&settings=keep").await;
    assert_eq!((r["settings"].clone(), r["settings_changed"].clone()), (json!("kept"), json!([])));
    assert_eq!(app.operator().show_tenant("target").await.unwrap()["name"], "Target");
    let r = import_ok(&app, "target", &bundle, "skip&settings=replace").await;
    assert_eq!(r["settings"], "applied");
    assert_eq!(r["settings_changed"], json!([{"setting": "name", "from": "Target", "to": "Source"}]));
    let res = import(&app, "target", &bundle, "skip&settings=mine").await;
    assert_error(&res, 400, "invalid_request");
    assert_eq!(res.json().unwrap()["error"]["message"], "unknown settings \"mine\": use keep, replace or auto");
}

#[tokio::test]
async fn a_damaged_truncated_or_unknown_bundle_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let src = app.create_tenant("src").await;
    let c = app.as_key(&src.owner);
    for i in 0..20 {
        c.put_file(&format!("/f/{i}.txt"), format!("file number {i} ").repeat(50).into_bytes(), None).await.unwrap();
    }
    c.set_memory("ns", "k", &json!({"v": 1}), None).await.unwrap();
    let good = export(&app, "src").await;
    app.create_tenant("dst").await;
    let untouched = || async {
        let u = app.operator().tenant_usage("dst", "").await.unwrap()["usage"].clone();
        assert_eq!((u["files"].as_u64(), u["storage_bytes"].as_u64()), (Some(0), Some(0)), "nothing applied");
    };

    // A flipped byte anywhere (a sample of positions across the whole bundle). The reader
    // checks each item as it comes, before the checksums at the end: now and then a flip still
    // decompresses, into a file path that is not valid, and that is what the refusal names.
    let step = (good.len() / 40).max(1);
    for pos in (0..good.len()).step_by(step) {
        let mut bad = good.clone();
        bad[pos] ^= 0x5a;
        if tenantry_bundle::verify(bad.as_slice()).is_ok() {
            // A few bytes of a zstd stream are slack (in an entropy table's description): a flip
            // there decodes to the very same bundle, which is no damage.
            continue;
        }
        let res = import(&app, "dst", &bad, "").await;
        assert_eq!(res.status, 400, "{}", code_message(&res));
        assert!(["invalid_request", "invalid_path"].contains(&code(&res).as_str()), "{}", code_message(&res));
    }
    // Cut short anywhere.
    for len in [0, 10, good.len() / 3, good.len() / 2, good.len() - 1] {
        let res = import(&app, "dst", &good[..len], "").await;
        assert_error(&res, 400, "invalid_request");
    }
    untouched().await;

    // A record kind this server does not know: refused, not dropped silently.
    let res = import(&app, "dst", &handmade(&[("widgets", json!({"a": 1}))], &[("/x", b"x")]), "").await;
    assert_error(&res, 400, "invalid_request");
    assert!(code_message(&res).contains("widgets"), "{}", code_message(&res));
    // A path that is not a valid path.
    let res = import(&app, "dst", &handmade(&[], &[("/ok", b"1"), ("no-slash", b"2")]), "").await;
    assert_error(&res, 400, "invalid_path");
    // A webhook aimed at a private address (the server refuses those).
    let hook = json!({"url": "http://10.0.0.1/h", "events": ["*"], "enabled": true,
                      "created_at": "2026-01-02T03:04:05.006Z", "created_by": "x"});
    let res = import(&app, "dst", &handmade(&[("webhooks", hook)], &[("/ok", b"1")]), "").await;
    assert_error(&res, 400, "invalid_request");
    untouched().await;

    // The whole import against the limits, at once.
    app.operator().update_tenant("dst", &json!({"quotas": {"max_files": 5}})).await.unwrap();
    let res = import(&app, "dst", &good, "").await;
    assert_error(&res, 403, "quota_exceeded");
    untouched().await;

    // Who may import into what.
    let res = app.raw(Some(&src.owner), Method::POST, "/v1/tenants/dst/import", Some(&good), &[]).await;
    assert_eq!(res.status, 403);
    assert_error(&import(&app, "nope", &good, "").await, 404, "tenant_not_found");
    app.operator().archive_tenant("dst").await.unwrap();
    assert_error(&import(&app, "dst", &good, "").await, 409, "conflict");
    app.operator().tenant_action("dst", "restore").await.unwrap();
    untouched().await;

    // And the good bundle still imports whole.
    app.operator().update_tenant("dst", &json!({"quotas": {"max_files": 100}})).await.unwrap();
    let r = import_ok(&app, "dst", &good, "").await;
    assert_eq!((r["files"]["created"].clone(), r["memory"]["created"].clone()), (json!(20), json!(1)));
}

fn code_message(res: &RawResponse) -> String {
    res.json().unwrap()["error"]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_domain_another_tenant_holds_is_left_out_of_an_import_into_a_dedicated_tenant_too() {
    let app = spawn_app().await;
    app.create_tenant_with(json!({"slug": "holder", "domains": ["taken.example"]})).await;
    app.create_tenant_with(json!({"slug": "solo", "tier": "enterprise", "placement": "dedicated"})).await;
    let header = tenantry_bundle::Header::new(
        json!({"slug": "src", "name": "Source", "tier": "enterprise", "quotas": {}, "metadata": {},
               "domains": ["free.example", "taken.example"]}),
        "2026-11-23T00:00:00.000Z".into(),
    );
    let bundle = tenantry_bundle::Writer::new(Vec::new(), &header).unwrap().finish().unwrap().1;
    let r = import_ok(&app, "solo", &bundle, "").await;
    assert_eq!(r["settings"], "applied");
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "domains registered to another tenant were not applied: taken.example"),
        "{r}"
    );
    let domains = r["settings_changed"].as_array().unwrap().iter().find(|c| c["setting"] == "domains").unwrap().clone();
    assert_eq!(domains["to"], json!(["free.example"]));
    assert_eq!(app.operator().show_tenant("solo").await.unwrap()["domains"], json!(["free.example"]));
    assert_eq!(app.operator().show_tenant("holder").await.unwrap()["domains"], json!(["taken.example"]));
}
