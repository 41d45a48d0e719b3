//! Events (API.md §7): one per change, numbered per tenant, paged, streamed and resumed.
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn kinds(page: &Value) -> Vec<(u64, String)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["type"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn every_change_is_an_event_numbered_from_one_per_tenant() {
    let app = spawn_app().await;
    let (acme, globex) = (app.create_tenant("acme").await, app.create_tenant("globex").await);
    let c = app.as_key(&acme.owner);
    c.put_file("/a.txt", b"1".to_vec(), None).await.unwrap();
    c.delete_file("/a.txt").await.unwrap();
    c.set_memory("ns", "k", &json!(1), None).await.unwrap();
    c.delete_memory("ns", "k").await.unwrap();
    let (key_id, _) = app.key(&acme, "reader", None).await;
    c.revoke_key(&key_id).await.unwrap();
    app.operator().tenant_action("acme", "suspend").await.unwrap();
    app.operator().tenant_action("acme", "resume").await.unwrap();
    app.as_key(&globex.owner).put_file("/g.txt", b"g".to_vec(), None).await.unwrap();
    let page = c.events(0, None).await.unwrap();
    let expected = [
        "file.written",
        "file.deleted",
        "memory.set",
        "memory.deleted",
        "key.created",
        "key.revoked",
        "tenant.suspended",
        "tenant.resumed",
    ];
    assert_eq!(
        kinds(&page),
        expected.iter().enumerate().map(|(i, k)| (i as u64 + 1, k.to_string())).collect::<Vec<_>>()
    );
    let first = &page["items"][0];
    assert_eq!(first["path"], "/a.txt");
    assert!(first["actor"].as_str().unwrap().starts_with("key:"));
    assert!(first["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(page["items"][2]["namespace"], "ns");
    assert_eq!(page["items"][2]["key"], "k");
    assert_eq!(page["items"][4]["detail"]["id"], key_id.as_str());
    assert_eq!(page["items"][6]["actor"], "operator");
    // Globex has its own numbering and sees none of acme's.
    assert_eq!(kinds(&app.as_key(&globex.owner).events(0, None).await.unwrap()), [(1, "file.written".to_owned())]);
}

#[tokio::test]
async fn pages_follow_after_and_limit() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    for i in 0..5 {
        c.put_file(&format!("/{i}"), vec![], None).await.unwrap();
    }
    let p = c.events(0, Some(2)).await.unwrap();
    assert_eq!(kinds(&p).iter().map(|k| k.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(p["next_cursor"], "2");
    let p = c.events(2, Some(10)).await.unwrap();
    assert_eq!(kinds(&p).iter().map(|k| k.0).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(p["next_cursor"].is_null());
    for bad in ["/v1/events?after=-1", "/v1/events?limit=0", "/v1/events?after=x"] {
        let res = app.raw(Some(&acme.owner), Method::GET, bad, None, &[]).await;
        assert_error(&res, 400, "invalid_request");
    }
}

#[tokio::test]
async fn a_prefixed_key_sees_only_events_under_its_prefix() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    let (_, docs) = app.key(&acme, "reader", Some("/docs")).await;
    for p in ["/docs/a", "/private/b", "/docs", "/docs2/c", "/docs/sub/d"] {
        c.put_file(p, vec![], None).await.unwrap();
    }
    c.set_memory("ns", "k", &json!(1), None).await.unwrap();
    let page = app.as_key(&docs).events(0, None).await.unwrap();
    let paths: Vec<&str> = page["items"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/docs/a", "/docs", "/docs/sub/d"]);
    // A full page is a full page of what the key may see.
    let page = app.as_key(&docs).events(0, Some(2)).await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_stream_delivers_live_events_and_resumes_without_gaps_or_duplicates() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.put_file("/before", vec![], None).await.unwrap(); // seq 1
    let mut stream = c.event_stream(None).await.unwrap(); // from now on
    c.put_file("/live-1", vec![], None).await.unwrap(); // seq 2
    let e = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((e["seq"].as_u64(), e["path"].as_str()), (Some(2), Some("/live-1")));
    drop(stream);
    // Missed while disconnected.
    for i in 3..=6 {
        c.put_file(&format!("/missed-{i}"), vec![], None).await.unwrap();
    }
    let mut stream = c.event_stream(Some(2)).await.unwrap();
    // More arrive while the stream replays.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 7..=20 {
                c.put_file(&format!("/during-{i}"), vec![], None).await.unwrap();
            }
        })
    };
    let mut seqs = Vec::new();
    while seqs.len() < 18 {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
        seqs.push(e["seq"].as_u64().unwrap());
    }
    writer.await.unwrap();
    assert_eq!(seqs, (3..=20).collect::<Vec<u64>>());
    // Nothing more (no duplicates trailing behind).
    assert!(tokio::time::timeout(Duration::from_millis(300), stream.next()).await.is_err());
}

#[tokio::test]
async fn a_stream_ends_when_its_key_is_revoked_and_never_carries_another_tenants_events() {
    let app = spawn_app().await;
    let (acme, globex) = (app.create_tenant("acme").await, app.create_tenant("globex").await);
    let (reader_id, reader) = app.key(&acme, "reader", None).await;
    let mut stream = app.as_key(&reader).event_stream(Some(0)).await.unwrap();
    app.as_key(&globex.owner).put_file("/globex-secret", vec![], None).await.unwrap();
    app.as_key(&acme.owner).put_file("/acme", vec![], None).await.unwrap();
    // key.created of the reader itself is seq 1; then the file.
    let e = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(e["type"], "key.created");
    let e = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(e["path"], "/acme");
    app.as_key(&acme.owner).revoke_key(&reader_id).await.unwrap();
    // The revocation event is the last thing this stream carries; then it ends.
    let mut rest = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Ok(Some(e))) => rest.push(e),
            Ok(_) => break, // the server ended the stream
            Err(_) => panic!("the stream of a revoked key stayed open"),
        }
    }
    assert_eq!(rest.last().unwrap()["type"], "key.revoked");
    assert!(rest.iter().all(|e| e["path"] != "/globex-secret"));
    let res = app.raw(Some(&reader), Method::GET, "/v1/events", None, &[("accept", "text/event-stream")]).await;
    assert_error(&res, 401, "unauthenticated");
}

#[tokio::test]
async fn event_numbers_continue_after_a_restart() {
    let mut app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.as_key(&acme.owner).put_file("/a", vec![], None).await.unwrap();
    app.restart().await;
    app.as_key(&acme.owner).put_file("/b", vec![], None).await.unwrap();
    let page = app.as_key(&acme.owner).events(0, None).await.unwrap();
    assert_eq!(kinds(&page).iter().map(|k| k.0).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test]
async fn a_stream_opens_with_a_comment_and_its_first_event_carries_the_retry_delay() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.as_key(&acme.owner).put_file("/a", vec![], None).await.unwrap();
    app.as_key(&acme.owner).put_file("/b", vec![], None).await.unwrap();
    let mut res = reqwest::Client::new()
        .get(format!("{}/v1/events?after=0", app.url))
        .bearer_auth(&acme.owner)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while text.matches("\n\n").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk()).await.unwrap().unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks[0], ": tenantry event stream", "a comment first: no client takes it for a message");
    assert!(blocks[1].starts_with("retry: 2000\nid: 1\nevent: file.written\ndata: {"), "{:?}", blocks[1]);
    assert!(blocks[2].starts_with("id: 2\nevent: file.written\ndata: {"), "the delay is said once: {:?}", blocks[2]);
}
