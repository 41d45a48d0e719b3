//! API.md §6: files — writes, reads, conditional requests, ranges, paths, sizes, listings.
use crate::helpers::*;
use reqwest::Method;
use sha2::{Digest, Sha256};

fn etag(content: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(content)))
}

#[tokio::test]
async fn put_creates_then_replaces_and_get_returns_the_bytes_unchanged() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let res = app
        .raw(
            Some(&t.owner),
            Method::PUT,
            "/v1/files/data/blob.bin",
            Some(&content),
            &[("content-type", "application/x-thing")],
        )
        .await;
    assert_eq!(res.status, 201);
    let meta = res.json().unwrap();
    assert_eq!(meta["path"], "/data/blob.bin");
    assert_eq!(meta["size"], 70_000);
    assert_eq!(meta["etag"], etag(&content));
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["content_type"], "application/x-thing");
    assert!(meta["updated_at"].is_string());
    assert_eq!(res.header("etag"), Some(etag(&content).as_str()));

    let got = app.raw(Some(&t.owner), Method::GET, "/v1/files/data/blob.bin", None, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], &content[..]);
    assert_eq!(got.header("etag"), Some(etag(&content).as_str()));
    assert_eq!(got.header("content-type"), Some("application/x-thing"));
    assert_eq!(got.header("content-length"), Some("70000"));

    let res = app.raw(Some(&t.owner), Method::PUT, "/v1/files/data/blob.bin", Some(b"v2"), &[]).await;
    assert_eq!(res.status, 200);
    let meta = res.json().unwrap();
    assert_eq!((meta["version"].as_u64(), meta["size"].as_u64()), (Some(2), Some(2)));
    assert_eq!(meta["content_type"], "application/octet-stream");
    assert_eq!(&app.as_key(&t.owner).get_file("/data/blob.bin").await.unwrap()[..], b"v2");
}

#[tokio::test]
async fn a_put_without_a_content_type_or_with_curls_form_default_gets_one_from_the_file_name() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for (path, headers, stored) in [
        ("/v1/files/notes.txt", &[][..], "text/plain"),
        ("/v1/files/notes.txt", &form[..], "text/plain"),
        ("/v1/files/data.json", &form[..], "application/json"),
        ("/v1/files/README", &form[..], "application/octet-stream"),
        ("/v1/files/page.html", &[("content-type", "text/x-mine")][..], "text/x-mine"),
    ] {
        let res = app.raw(Some(&t.owner), Method::PUT, path, Some(b"x"), headers).await;
        assert_eq!(res.json().unwrap()["content_type"], stored, "{path} {headers:?}");
        let got = app.raw(Some(&t.owner), Method::GET, path, None, &[]).await;
        assert_eq!(got.header("content-type"), Some(stored), "{path}");
        // Whatever its type, a file is served as data: no sniffing, and sandboxed in a browser.
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(got.header("content-security-policy"), Some("sandbox"));
    }
}

#[tokio::test]
async fn head_gives_the_headers_of_get_without_a_body() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.as_key(&t.owner).put_file("/h.txt", b"hello head".to_vec(), Some("text/plain")).await.unwrap();
    let res = app.raw(Some(&t.owner), Method::HEAD, "/v1/files/h.txt", None, &[]).await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    assert_eq!(res.header("content-length"), Some("10"));
    assert_eq!(res.header("etag"), Some(etag(b"hello head").as_str()));
    assert_eq!(res.header("content-type"), Some("text/plain"));
    let res = app.raw(Some(&t.owner), Method::HEAD, "/v1/files/missing", None, &[]).await;
    assert_eq!(res.status, 404);
}

#[tokio::test]
async fn delete_answers_204_then_the_file_is_gone() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.as_key(&t.owner).put_file("/d.txt", b"x".to_vec(), None).await.unwrap();
    let res = app.raw(Some(&t.owner), Method::DELETE, "/v1/files/d.txt", None, &[]).await;
    assert_eq!(res.status, 204);
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/files/d.txt", None, &[]).await;
    assert_error(&res, 404, "not_found");
    let res = app.raw(Some(&t.owner), Method::DELETE, "/v1/files/d.txt", None, &[]).await;
    assert_error(&res, 404, "not_found");
}

#[tokio::test]
async fn if_match_on_a_write_compares_strongly_and_if_none_match_on_a_read_weakly() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let k = Some(t.owner.as_str());
    app.as_key(&t.owner).put_file("/w.txt", b"one".to_vec(), None).await.unwrap();
    // RFC 9110 §13.1.1: If-Match takes a strong tag; the same tag marked weak does not match.
    let weak = format!("W/{}", etag(b"one"));
    let res = app.raw(k, Method::PUT, "/v1/files/w.txt", Some(b"two"), &[("if-match", &weak)]).await;
    assert_error(&res, 412, "precondition_failed");
    assert_eq!(&app.as_key(&t.owner).get_file("/w.txt").await.unwrap()[..], b"one");
    let res = app.raw(k, Method::GET, "/v1/files/w.txt", None, &[("if-none-match", &weak)]).await;
    assert_eq!(res.status, 304);
}

#[tokio::test]
async fn conditional_writes_fail_with_412_and_change_nothing() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let k = Some(t.owner.as_str());
    let res = app.raw(k, Method::PUT, "/v1/files/c.txt", Some(b"one"), &[("if-none-match", "*")]).await;
    assert_eq!(res.status, 201);
    let res = app.raw(k, Method::PUT, "/v1/files/c.txt", Some(b"two"), &[("if-none-match", "*")]).await;
    assert_error(&res, 412, "precondition_failed");
    let res = app.raw(k, Method::PUT, "/v1/files/c.txt", Some(b"two"), &[("if-match", "\"deadbeef\"")]).await;
    assert_error(&res, 412, "precondition_failed");
    let res = app.raw(k, Method::DELETE, "/v1/files/c.txt", None, &[("if-match", "\"deadbeef\"")]).await;
    assert_error(&res, 412, "precondition_failed");
    assert_eq!(&app.as_key(&t.owner).get_file("/c.txt").await.unwrap()[..], b"one");
    let res = app.raw(k, Method::PUT, "/v1/files/c.txt", Some(b"two"), &[("if-match", &etag(b"one"))]).await;
    assert_eq!(res.status, 200);
    let res = app.raw(k, Method::PUT, "/v1/files/new.txt", Some(b"x"), &[("if-match", "*")]).await;
    assert_error(&res, 412, "precondition_failed");
    // GET with a matching If-None-Match is 304.
    let res = app.raw(k, Method::GET, "/v1/files/c.txt", None, &[("if-none-match", &etag(b"two"))]).await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
}

#[tokio::test]
async fn range_requests_return_the_asked_bytes() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    app.as_key(&t.owner).put_file("/r.txt", b"0123456789".to_vec(), None).await.unwrap();
    let k = Some(t.owner.as_str());
    for (range, body, content_range) in [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=8-100", "89", "bytes 8-9/10"),
    ] {
        let res = app.raw(k, Method::GET, "/v1/files/r.txt", None, &[("range", range)]).await;
        assert_eq!(res.status, 206, "{range}");
        assert_eq!(&res.body[..], body.as_bytes());
        assert_eq!(res.header("content-range"), Some(content_range));
    }
    let res = app.raw(k, Method::GET, "/v1/files/r.txt", None, &[("range", "bytes=10-")]).await;
    assert_eq!(res.status, 416);
    assert_eq!(res.header("content-range"), Some("bytes */10"));
    let res = app.raw(k, Method::GET, "/v1/files/r.txt", None, &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!((res.status.as_u16(), &res.body[..]), (200, &b"0123456789"[..]));
}

#[tokio::test]
async fn invalid_paths_are_refused_after_percent_decoding_and_change_nothing() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;

    let long = format!("/v1/files/{}", "a".repeat(1030));
    for p in [
        "/v1/files/a/%2e%2e/b",
        "/v1/files/a/%2E/b",
        "/v1/files/a/./b",
        "/v1/files/a//b",
        "/v1/files/a/",
        "/v1/files/a%00b",
        "/v1/files/a%0Ab",
        "/v1/files/a%5Cb",
        "/v1/files/a%2F%2Fb",
        "/v1/files/%FF",
        long.as_str(),
    ] {
        for method in ["PUT", "GET", "DELETE"] {
            let (status, body) = app.raw_request(method, p, &t.owner, b"x").await;
            assert_eq!(status, 400, "{method} {p}: {body}");
            assert!(body.contains("\"invalid_path\""), "{method} {p}: {body}");
        }
    }
    let list = app.as_key(&t.owner).list_files("/", true, None).await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // Unicode and spaces are fine, percent-encoded or not.
    app.as_key(&t.owner).put_file("/ünï côdé/файл.txt", b"u".to_vec(), None).await.unwrap();
    let list = app.as_key(&t.owner).list_files("/", true, None).await.unwrap();
    assert_eq!(list["items"][0]["path"], "/ünï côdé/файл.txt");
}

#[tokio::test]
async fn a_body_over_the_maximum_is_413_too_large_and_writes_nothing() {
    let app = spawn_with(|c| c.max_file_bytes = 1000).await;
    let t = app.create_tenant("acme").await;
    let res = app.raw(Some(&t.owner), Method::PUT, "/v1/files/big", Some(&vec![7u8; 1001]), &[]).await;
    assert_error(&res, 413, "too_large");
    let res = app.raw(Some(&t.owner), Method::PUT, "/v1/files/big", Some(&vec![7u8; 50_000]), &[]).await;
    assert_error(&res, 413, "too_large");
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/files/big", None, &[]).await;
    assert_error(&res, 404, "not_found");
    let res = app.raw(Some(&t.owner), Method::PUT, "/v1/files/ok", Some(&vec![7u8; 1000]), &[]).await;
    assert_eq!(res.status, 201);
}

#[tokio::test]
async fn listings_page_in_path_order_and_recurse_only_when_asked() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let c = app.as_key(&t.owner);
    let mut all = Vec::new();
    for i in 0..25 {
        let p = format!("/logs/{i:02}.txt");
        c.put_file(&p, vec![b'x'; i], None).await.unwrap();
        all.push(p);
    }
    c.put_file("/logs/deep/z.txt", b"z".to_vec(), None).await.unwrap();
    c.put_file("/logsx.txt", b"no".to_vec(), None).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(cur) => format!("/v1/files?prefix=/logs/&limit=10&cursor={cur}"),
            None => "/v1/files?prefix=/logs/&limit=10".into(),
        };
        let page = app.raw(Some(&t.owner), Method::GET, &q, None, &[]).await.json().unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        for i in items {
            assert!(i["size"].is_u64() && i["etag"].is_string() && i["updated_at"].is_string());
            seen.push(i["path"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all, "non-recursive: direct children only, in order");
    let rec = c.list_files("/logs", true, None).await.unwrap();
    let rec: Vec<_> = rec["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_owned()).collect();
    assert_eq!(rec.len(), 26);
    assert_eq!(rec.last().unwrap(), "/logs/deep/z.txt");
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/files?cursor=zz!", None, &[]).await;
    assert_error(&res, 400, "invalid_request");
    let res = app.raw(Some(&t.owner), Method::GET, "/v1/files?prefix=/a/../b", None, &[]).await;
    assert_error(&res, 400, "invalid_path");
}

#[tokio::test]
async fn a_listing_with_a_delimiter_shows_each_folder_once_and_pages_through_them() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let c = app.as_key(&t.owner);
    for p in ["/readme.md", "/docs/a.txt", "/docs/b/c.txt", "/docs.txt", "/src/main.rs", "/src/lib/x.rs"] {
        c.put_file(p, b"x".to_vec(), None).await.unwrap();
    }
    let listed = |page: &serde_json::Value| {
        let items = page["items"].as_array().unwrap();
        items
            .iter()
            .map(|i| format!("{} {}", i["kind"].as_str().unwrap(), i["path"].as_str().unwrap()))
            .collect::<Vec<_>>()
    };
    let root = c.list_folder("/", None).await.unwrap();
    assert_eq!(listed(&root), ["file /docs.txt", "folder /docs/", "file /readme.md", "folder /src/"]);
    assert_eq!(root["items"][1], serde_json::json!({"kind": "folder", "path": "/docs/"}));
    assert_eq!((root["items"][0]["size"].as_u64(), root["items"][0]["etag"].is_string()), (Some(1), true));
    assert_eq!(listed(&c.list_folder("/docs/", None).await.unwrap()), ["file /docs/a.txt", "folder /docs/b/"]);
    // Pages of one, each resuming after the folder or file before.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = format!("/v1/files?delimiter=/&limit=1{}", cursor.map(|c| format!("&cursor={c}")).unwrap_or_default());
        let page = app.raw(Some(&t.owner), Method::GET, &q, None, &[]).await.json().unwrap();
        seen.extend(listed(&page));
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, listed(&root));
    // Without a delimiter, files only, each with its kind.
    assert_eq!(listed(&c.list_files("/", false, None).await.unwrap()), ["file /docs.txt", "file /readme.md"]);
    for (q, why) in [
        ("/v1/files?delimiter=%2C", "`delimiter` may only be `/`"),
        ("/v1/files?delimiter=/&recursive=true", "`delimiter=/` lists one folder: leave out `recursive=true`"),
    ] {
        let res = app.raw(Some(&t.owner), Method::GET, q, None, &[]).await;
        assert_error(&res, 400, "invalid_request");
        assert_eq!(res.json().unwrap()["error"]["message"], why);
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_a_restart() {
    let mut app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    for i in 0..20 {
        app.as_key(&t.owner).put_file(&format!("/f{i}"), format!("content {i}").into_bytes(), None).await.unwrap();
    }
    app.restart().await;
    for i in 0..20 {
        assert_eq!(
            app.as_key(&t.owner).get_file(&format!("/f{i}")).await.unwrap(),
            format!("content {i}").into_bytes()
        );
    }
}

#[tokio::test]
async fn reads_after_writes_and_deletes_never_see_a_cached_old_version() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let c = app.as_key(&t.owner);
    for round in 0..20u32 {
        let body = format!("round {round}").into_bytes();
        c.put_file("/hot.txt", body.clone(), None).await.unwrap();
        assert_eq!(c.get_file("/hot.txt").await.unwrap(), body); // fills the cache
        assert_eq!(c.get_file("/hot.txt").await.unwrap(), body); // served from it
        let head = app.raw(Some(&t.owner), Method::HEAD, "/v1/files/hot.txt", None, &[]).await;
        assert_eq!(head.header("etag"), Some(etag(&body).as_str()));
        if round % 5 == 4 {
            c.delete_file("/hot.txt").await.unwrap();
            assert_eq!(c.get_file("/hot.txt").await.unwrap_err().code(), Some("not_found"));
        }
    }
    // Concurrent writers and readers: every read sees some acknowledged version, and the last
    // acknowledged write is what a read after all of them returns.
    let mut tasks = Vec::new();
    for w in 0..4u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                c.put_file("/race.txt", format!("w{w}-{i}").into_bytes(), None).await.unwrap();
                let got = c.get_file("/race.txt").await.unwrap();
                assert!(got.starts_with(b"w"), "{got:?}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let final_put = c.put_file("/race.txt", b"final".to_vec(), None).await.unwrap();
    assert_eq!(final_put["version"], 101);
    assert_eq!(&c.get_file("/race.txt").await.unwrap()[..], b"final");
}

#[tokio::test]
async fn concurrent_conditional_creates_have_exactly_one_winner_and_others_are_unaffected() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let mut tasks = Vec::new();
    for i in 0..32u32 {
        let (url, key) = (app.url.clone(), t.owner.clone());
        tasks.push(tokio::spawn(async move {
            let c = tenantry_client::Client::new(&url, Some(key));
            let contested = c
                .send(
                    Method::PUT,
                    "/v1/files/once.txt",
                    Some(format!("writer {i}").into_bytes()),
                    &[("if-none-match", "*")],
                )
                .await
                .unwrap();
            let own = c.put_file(&format!("/own/{i}.txt"), vec![b'x'; 10], None).await.unwrap();
            (contested.status.as_u16(), own["version"].as_u64())
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, own_version) = task.await.unwrap();
        statuses.push(status);
        assert_eq!(own_version, Some(1));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 31);
    let listing = app.as_key(&t.owner).list_files("/own", true, None).await.unwrap();
    assert_eq!(listing["items"].as_array().unwrap().len(), 32);
    let report = app.as_key(&t.owner).verify_audit().await.unwrap();
    assert_eq!(report["ok"], true);
    // create, 32 own writes, 1 contested win, 31 audited refusals
    assert_eq!(report["entries"], 1 + 32 + 1 + 31);
}

#[tokio::test]
async fn an_empty_file_is_stored_and_served_as_empty() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let c = app.as_key(&t.owner);
    let meta = c.put_file("/empty", vec![], None).await.unwrap();
    assert_eq!(meta["size"], 0);
    // Twice: the second read may come from the cache.
    for _ in 0..2 {
        let res = app.raw(Some(&t.owner), reqwest::Method::GET, "/v1/files/empty", None, &[]).await;
        assert_eq!(res.status, 200);
        assert!(res.body.is_empty());
        assert_eq!(res.header("etag"), meta["etag"].as_str());
    }
    let res = app.raw(Some(&t.owner), reqwest::Method::HEAD, "/v1/files/empty", None, &[]).await;
    assert_eq!(res.status, 200);
}
