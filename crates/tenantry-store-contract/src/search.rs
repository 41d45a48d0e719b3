//! Search: documents holding every term, kept current with every change, ranked with the
//! statistics of the searching tenant only.

use crate::{file_journal, memory_journal, memory_write, now, path, Backend};
use tenantry_core::memory::Namespace;
use tenantry_core::path::PathPrefix;
use tenantry_core::search::SearchHit;
use tenantry_core::store::{Precondition, SearchQuery, TenantScope};

pub(crate) fn query(terms: &[&str]) -> SearchQuery {
    SearchQuery {
        terms: terms.iter().map(|t| t.to_string()).collect(),
        files: Some(PathPrefix::root()),
        memory: Some(None),
        limit: 50,
        now: now(),
    }
}

pub(crate) async fn found(f: &crate::Fixture, scope: &TenantScope, q: SearchQuery) -> Vec<String> {
    let mut hits: Vec<String> = f
        .store
        .search(scope, q)
        .await
        .unwrap()
        .into_iter()
        .map(|h: SearchHit| h.path.unwrap_or_else(|| format!("{}/{}", h.namespace.unwrap(), h.key.unwrap())))
        .collect();
    hits.sort();
    hits
}

pub async fn a_search_finds_documents_holding_every_term(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/both.txt", "the quick brown fox").await;
    f.put(&a, "/one.txt", "a quick decision").await;
    f.put(&a, "/docs/fox.md", "fox hunting is quick to explain").await;
    assert_eq!(found(&f, &a, query(&["quick", "fox"])).await, ["/both.txt", "/docs/fox.md"]);
    assert_eq!(found(&f, &a, query(&["decision"])).await, ["/one.txt"]);
    assert!(found(&f, &a, query(&["quick", "nowhere"])).await.is_empty());
    let mut under = query(&["quick"]);
    under.files = Some(PathPrefix::parse("/docs").unwrap());
    assert_eq!(found(&f, &a, under).await, ["/docs/fox.md"]);
}

pub async fn a_replaced_or_deleted_file_is_no_longer_found_by_its_old_words(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/a.txt", "original wording here").await;
    f.put(&a, "/b.txt", "original text too").await;
    f.put(&a, "/a.txt", "replacement wording").await;
    assert_eq!(found(&f, &a, query(&["original"])).await, ["/b.txt"]);
    assert_eq!(found(&f, &a, query(&["replacement"])).await, ["/a.txt"]);
    f.store.delete_file(&a, &path("/b.txt"), Precondition::None, now(), file_journal("/b.txt")).await.unwrap();
    assert!(found(&f, &a, query(&["original"])).await.is_empty());
    assert!(found(&f, &a, query(&["text"])).await.is_empty());
}

pub async fn memory_values_are_found_within_their_namespace(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for (ns, key, text) in [("notes", "n1", "meeting about pricing"), ("chat", "c1", "pricing question")] {
        f.store.put_memory(&a, memory_write(ns, key, serde_json::json!(text)), memory_journal(ns, key)).await.unwrap();
    }
    f.put(&a, "/pricing.txt", "pricing page").await;
    assert_eq!(found(&f, &a, query(&["pricing"])).await, ["/pricing.txt", "chat/c1", "notes/n1"]);
    let mut notes = query(&["pricing"]);
    (notes.files, notes.memory) = (None, Some(Some(Namespace::parse("notes").unwrap())));
    assert_eq!(found(&f, &a, notes).await, ["notes/n1"]);
}

pub async fn another_tenants_documents_change_neither_hits_nor_scores(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    f.put(&a, "/1.txt", "apple banana").await;
    f.put(&a, "/2.txt", "apple apple cherry").await;
    f.put(&a, "/3.txt", "cherry only").await;
    let scores = |hits: Vec<SearchHit>| {
        let mut v: Vec<(String, u64)> = hits.into_iter().map(|h| (h.path.unwrap(), h.score.to_bits())).collect();
        v.sort();
        v
    };
    let before = scores(f.store.search(&a, query(&["apple"])).await.unwrap());
    assert_eq!(before.len(), 2);
    // The other tenant makes "apple" common and adds documents of every length.
    for i in 0..40 {
        f.put(&other, &format!("/g{i}.txt"), &"apple ".repeat(i + 1)).await;
    }
    assert!(found(&f, &other, query(&["cherry"])).await.is_empty());
    assert_eq!(scores(f.store.search(&a, query(&["apple"])).await.unwrap()), before);
    assert_eq!(found(&f, &other, query(&["apple"])).await.len(), 40);
}
