//! Search (API.md §7): consistent with writes, ranked inside the tenant and the key's prefix only.
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

fn hits(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| match h["kind"].as_str().unwrap() {
            "file" => h["path"].as_str().unwrap().to_owned(),
            _ => format!("{}:{}", h["namespace"].as_str().unwrap(), h["key"].as_str().unwrap()),
        })
        .collect()
}

#[tokio::test]
async fn a_write_is_found_at_once_and_a_delete_or_replace_is_forgotten_at_once() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.put_file("/notes/q3.md", b"The quarterly roadmap mentions Kubernetes twice: kubernetes.".to_vec(), None)
        .await
        .unwrap();
    let found = c.search("kubernetes roadmap", "").await.unwrap();
    assert_eq!(hits(&found), ["/notes/q3.md"]);
    let hit = &found["items"][0];
    assert_eq!(hit["kind"], "file");
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    assert!(hit["snippet"].as_str().unwrap().contains("<mark>Kubernetes</mark>"), "{hit}");
    c.put_file("/notes/q3.md", b"now about nomad only".to_vec(), None).await.unwrap();
    assert!(hits(&c.search("kubernetes", "").await.unwrap()).is_empty());
    assert_eq!(hits(&c.search("nomad", "").await.unwrap()), ["/notes/q3.md"]);
    c.delete_file("/notes/q3.md").await.unwrap();
    assert!(hits(&c.search("nomad", "").await.unwrap()).is_empty());
}

#[tokio::test]
async fn memory_values_are_searched_too_and_kind_narrows() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.set_memory("agent:researcher", "finding/1", &json!({"summary": "Solar panels degrade slowly"}), None)
        .await
        .unwrap();
    c.put_file("/solar.txt", b"solar power notes".to_vec(), None).await.unwrap();
    let all = c.search("solar", "").await.unwrap();
    let mut got = hits(&all);
    got.sort();
    assert_eq!(got, ["/solar.txt", "agent:researcher:finding/1"]);
    assert_eq!(hits(&c.search("solar", "&kind=memory").await.unwrap()), ["agent:researcher:finding/1"]);
    assert_eq!(hits(&c.search("solar", "&kind=file").await.unwrap()), ["/solar.txt"]);
    assert!(hits(&c.search("solar", "&namespace=other").await.unwrap()).iter().all(|h| h.starts_with('/')));
    c.delete_memory("agent:researcher", "finding/1").await.unwrap();
    assert_eq!(hits(&c.search("solar", "").await.unwrap()), ["/solar.txt"]);
}

#[tokio::test]
async fn every_word_must_match_and_binary_files_are_skipped() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.put_file("/a.txt", b"alpha beta".to_vec(), None).await.unwrap();
    c.put_file("/b.txt", b"alpha gamma".to_vec(), None).await.unwrap();
    let mut binary = b"alpha beta ".to_vec();
    binary.extend_from_slice(&[0, 159, 146, 150]);
    c.put_file("/c.bin", binary, None).await.unwrap();
    assert_eq!(hits(&c.search("alpha beta", "").await.unwrap()), ["/a.txt"]);
    let mut both = hits(&c.search("ALPHA", "").await.unwrap());
    both.sort();
    assert_eq!(both, ["/a.txt", "/b.txt"]);
}

#[tokio::test]
async fn a_prefixed_key_gets_its_full_limit_from_under_its_prefix() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    // Twenty better matches outside the prefix, five weaker ones inside.
    for i in 0..20 {
        c.put_file(&format!("/elsewhere/{i}.txt"), b"budget budget budget".to_vec(), None).await.unwrap();
    }
    for i in 0..5 {
        let text = format!("the budget is mentioned once here, among many other words, {i}");
        c.put_file(&format!("/team/{i}.txt"), text.into_bytes(), None).await.unwrap();
    }
    c.set_memory("ns", "k", &json!("budget"), None).await.unwrap();
    let (_, team) = app.key(&acme, "reader", Some("/team")).await;
    let found = app.as_key(&team).search("budget", "&limit=5").await.unwrap();
    let mut got = hits(&found);
    got.sort();
    assert_eq!(got, ["/team/0.txt", "/team/1.txt", "/team/2.txt", "/team/3.txt", "/team/4.txt"]);
    // Asking for a wider prefix is narrowed to the key's; a disjoint one finds nothing.
    assert_eq!(hits(&app.as_key(&team).search("budget", "&prefix=/&limit=50").await.unwrap()).len(), 5);
    assert!(hits(&app.as_key(&team).search("budget", "&prefix=/elsewhere").await.unwrap()).is_empty());
    // The owner can narrow the same way.
    assert_eq!(hits(&c.search("budget", "&prefix=/team&limit=50").await.unwrap()).len(), 5);
    assert_eq!(hits(&c.search("budget", "&limit=50").await.unwrap()).len(), 26);
}

#[tokio::test]
async fn another_tenants_documents_never_appear_and_never_move_the_scores() {
    let app = spawn_app().await;
    let (acme, globex) = (app.create_tenant("acme").await, app.create_tenant("globex").await);
    let g = app.as_key(&globex.owner);
    g.put_file("/x.txt", b"merger plans with initech".to_vec(), None).await.unwrap();
    g.put_file("/y.txt", b"lunch menu".to_vec(), None).await.unwrap();
    let before = g.search("merger", "").await.unwrap();
    // Acme writes many documents with the same word; globex's ranking must not notice.
    let a = app.as_key(&acme.owner);
    for i in 0..30 {
        a.put_file(&format!("/m{i}.txt"), b"merger merger acme secret".to_vec(), None).await.unwrap();
    }
    let after = g.search("merger", "").await.unwrap();
    assert_eq!(before, after);
    assert_eq!(hits(&after), ["/x.txt"]);
    assert!(hits(&g.search("secret", "").await.unwrap()).is_empty());
    assert_eq!(hits(&a.search("initech", "").await.unwrap()), Vec::<String>::new());
}

#[tokio::test]
async fn a_query_without_words_or_with_a_bad_limit_is_refused() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    for q in ["/v1/search", "/v1/search?q=", "/v1/search?q=%20--%20", "/v1/search?q=a&limit=0", "/v1/search?q=a&kind=x"]
    {
        let res = app.raw(Some(&acme.owner), Method::GET, q, None, &[]).await;
        assert_error(&res, 400, "invalid_request");
    }
    let res = app.raw(Some(&acme.owner), Method::GET, "/v1/search?q=a&prefix=/../x", None, &[]).await;
    assert_error(&res, 400, "invalid_path");
}

#[tokio::test]
async fn searches_are_metered() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.search("one", "").await.unwrap();
    c.search("two", "").await.unwrap();
    let usage = c.json(Method::GET, "/v1/usage", None).await.unwrap();
    assert_eq!(usage["usage"]["searches"], 2);
}

#[tokio::test]
async fn phrases_prefixes_or_exclusions_and_a_glob_through_the_api() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let c = app.as_key(&acme.owner);
    c.put_file("/docs/a.md", b"Release notes for the deployment".to_vec(), None).await.unwrap();
    c.put_file("/docs/b.txt", b"notes on a release, deployed".to_vec(), None).await.unwrap();
    c.put_file("/draft.md", b"release notes draft".to_vec(), None).await.unwrap();
    c.set_memory("ns", "k", &json!("release notes in memory"), None).await.unwrap();
    let mut phrase = hits(&c.search("\"release notes\"", "").await.unwrap());
    phrase.sort();
    assert_eq!(phrase, ["/docs/a.md", "/draft.md", "ns:k"]);
    assert_eq!(hits(&c.search("\"release notes\" -draft -memory", "").await.unwrap()), ["/docs/a.md"]);
    let found = c.search("deploy* notes", "&glob=/docs/**").await.unwrap();
    let mut got = hits(&found);
    got.sort();
    assert_eq!(got, ["/docs/a.md", "/docs/b.txt"]);
    for hit in found["items"].as_array().unwrap() {
        let matched: Vec<&str> = hit["matched"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        match hit["path"].as_str().unwrap() {
            "/docs/a.md" => assert_eq!(matched, ["deployment", "notes"]),
            _ => assert_eq!(matched, ["deployed", "notes"]),
        }
    }
    assert_eq!(hits(&c.search("draft OR deployed", "&glob=/*.md").await.unwrap()), ["/draft.md"]);
}

#[tokio::test]
async fn a_malformed_query_or_glob_is_refused_saying_where() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let cases = [
        ("/v1/search?q=alpha%20%22beta", "the quote at character 7 is not closed"),
        ("/v1/search?q=alpha%20OR", "the `OR` at character 7 must be followed by a word or phrase"),
        ("/v1/search?q=-alpha", "only excludes"),
        ("/v1/search?q=a*", "needs at least 2 letters or digits"),
        ("/v1/search?q=alpha&glob=docs/*", "`glob` must be an absolute pattern"),
    ];
    for (uri, says) in cases {
        let res = app.raw(Some(&acme.owner), Method::GET, uri, None, &[]).await;
        assert_error(&res, 400, "invalid_request");
        let v: Value = res.json().unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{uri}: {v}");
    }
}
