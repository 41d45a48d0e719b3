//! Search: documents holding every term, kept current with every change, ranked with the
//! statistics of the searching tenant only; the query language answers exactly as a brute-force
//! scan of the tenant's documents does.

use crate::{file_journal, memory_journal, memory_write, now, path, Backend};
use std::collections::BTreeMap;
use tenantry_core::memory::{MemoryKey, Namespace, SEPARATOR};
use tenantry_core::path::PathPrefix;
use tenantry_core::search::{tokens, DocKind, Query, SearchHit};
use tenantry_core::store::{Precondition, SearchQuery, TenantScope};

pub(crate) fn query(terms: &[&str]) -> SearchQuery {
    parsed(&terms.join(" "))
}

/// A search of `q` over every file and memory entry.
pub(crate) fn parsed(q: &str) -> SearchQuery {
    SearchQuery {
        query: Query::parse(q).unwrap(),
        files: Some(PathPrefix::root()),
        memory: Some(None),
        glob: None,
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
        .hits
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
    let scores = |answer: tenantry_core::search::SearchAnswer| {
        let hits: Vec<SearchHit> = answer.hits;
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

pub async fn phrases_prefixes_alternatives_and_exclusions_find_what_they_say(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/1.md", "Release notes: the deployment of rust-2024 went well").await;
    f.put(&a, "/2.md", "notes on the release of tokio, deployed by hand").await;
    f.put(&a, "/3.md", "a draft about rust and 2024 plans, deploy later").await;
    f.put(&a, "/docs/4.txt", "release notes draft").await;
    assert_eq!(found(&f, &a, parsed("\"release notes\"")).await, ["/1.md", "/docs/4.txt"]);
    assert_eq!(found(&f, &a, parsed("release notes")).await, ["/1.md", "/2.md", "/docs/4.txt"]);
    assert_eq!(found(&f, &a, parsed("rust-2024")).await, ["/1.md"]);
    assert_eq!(found(&f, &a, parsed("rust 2024")).await, ["/1.md", "/3.md"]);
    assert_eq!(found(&f, &a, parsed("deploy*")).await, ["/1.md", "/2.md", "/3.md"]);
    assert_eq!(found(&f, &a, parsed("deployed OR tokio")).await, ["/2.md"]);
    assert_eq!(found(&f, &a, parsed("tokio OR draft")).await, ["/2.md", "/3.md", "/docs/4.txt"]);
    assert_eq!(found(&f, &a, parsed("notes -draft")).await, ["/1.md", "/2.md"]);
    assert_eq!(found(&f, &a, parsed("notes -\"release notes\"")).await, ["/2.md"]);
    assert_eq!(found(&f, &a, parsed("de* -deploy*")).await, Vec::<String>::new());
    assert!(found(&f, &a, parsed("zz* OR nowhere")).await.is_empty());
    // The words that matched: a prefix names its expansions found in the document.
    let hits = f.store.search(&a, parsed("deploy* \"release notes\"")).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].matched, ["deployment", "release", "notes"]);
    assert_eq!(
        hits[0].snippet,
        "<mark>Release</mark> <mark>notes</mark>: the <mark>deployment</mark> of rust-2024 went well"
    );
}

pub async fn a_prefix_matching_too_many_words_in_the_scope_is_refused(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let many: Vec<String> = (0..=tenantry_core::search::MAX_PREFIX_WORDS).map(|i| format!("zz{i}")).collect();
    f.put(&a, "/wide/all.txt", &many.join(" ")).await;
    f.put(&a, "/narrow/few.txt", "zz1 zz2 zz3").await;
    let e = f.store.search(&a, parsed("zz*")).await.unwrap_err();
    assert_eq!(e.code, tenantry_core::ErrorCode::InvalidRequest);
    assert!(e.message.contains("`zz*` matches more than 256 different words"), "{}", e.message);
    // Counted in the searched scope only: under /narrow there are three.
    let mut narrow = parsed("zz*");
    narrow.files = Some(PathPrefix::parse("/narrow").unwrap());
    let hits = f.store.search(&a, narrow).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].matched, ["zz1", "zz2", "zz3"]);
}

pub async fn a_glob_narrows_the_hits_but_not_the_statistics(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/docs/a.md", "budget plan").await;
    f.put(&a, "/docs/deep/b.md", "budget").await;
    f.put(&a, "/docs/c.txt", "budget budget").await;
    f.put(&a, "/other.md", "budget").await;
    let value = serde_json::json!("budget talk, a long one about it");
    f.store.put_memory(&a, memory_write("ns", "m", value), memory_journal("ns", "m")).await.unwrap();
    let mut q = parsed("budget");
    q.glob = Some("/docs/**/*.md".into());
    let globbed = f.store.search(&a, q).await.unwrap().hits;
    assert_eq!(globbed.iter().map(|h| h.path.clone().unwrap()).collect::<Vec<_>>(), ["/docs/deep/b.md", "/docs/a.md"]);
    // The same scores as without the glob: the statistics are the scope's (memory included).
    let all = f.store.search(&a, parsed("budget")).await.unwrap().hits;
    assert_eq!(all.len(), 5);
    for hit in &globbed {
        let same = all.iter().find(|h| h.path == hit.path).unwrap();
        assert_eq!(hit.score.to_bits(), same.score.to_bits());
    }
}

/// A small deterministic generator (xorshift), so a failing case can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const VOCABULARY: [&str; 12] = [
    "alpha",
    "beta",
    "gamma",
    "deploy",
    "deployed",
    "deployment",
    "depot",
    "release",
    "notes",
    "rust",
    "tokio",
    "Notes",
];

fn random_text(rng: &mut Rng) -> String {
    let n = 1 + rng.below(10);
    let mut out = String::new();
    for i in 0..n {
        let word: &&str = rng.pick(&VOCABULARY);
        let separator: &&str = rng.pick(&[" ", " ", " ", "-", ", ", "\n"]);
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(word);
    }
    out
}

/// A unit of the model's query: a word, a prefix, or a phrase.
#[derive(Debug, Clone, PartialEq)]
enum ModelUnit {
    Word(String),
    Prefix(String),
    Phrase(Vec<String>),
}

#[derive(Debug, Clone)]
struct ModelQuery {
    groups: Vec<Vec<ModelUnit>>,
    excluded: Vec<ModelUnit>,
}

fn random_unit(rng: &mut Rng) -> ModelUnit {
    match rng.below(3) {
        0 => ModelUnit::Word(rng.pick(&VOCABULARY).to_lowercase()),
        1 => ModelUnit::Prefix(rng.pick(&["de", "dep", "deploy", "al", "re", "no", "zz"]).to_string()),
        _ => ModelUnit::Phrase(vec![rng.pick(&VOCABULARY).to_lowercase(), rng.pick(&VOCABULARY).to_lowercase()]),
    }
}

/// `q` for the model's query, written the ways a person might.
fn render(rng: &mut Rng, q: &ModelQuery) -> String {
    let unit = |rng: &mut Rng, u: &ModelUnit| match u {
        ModelUnit::Word(w) if rng.below(2) == 0 => w.to_uppercase(),
        ModelUnit::Word(w) => w.clone(),
        ModelUnit::Prefix(p) => format!("{p}*"),
        ModelUnit::Phrase(ws) if rng.below(2) == 0 => format!("\"{}\"", ws.join(" ")),
        ModelUnit::Phrase(ws) => ws.join("-"),
    };
    let mut parts: Vec<String> = Vec::new();
    for group in &q.groups {
        let alternatives: Vec<String> = group.iter().map(|u| unit(rng, u)).collect();
        parts.push(alternatives.join(" OR "));
    }
    for u in &q.excluded {
        parts.push(format!("-{}", unit(rng, u)));
    }
    parts.join("  ")
}

/// A document as the model holds it: its words in order.
struct ModelDoc {
    words: Vec<String>,
}

impl ModelDoc {
    fn count(&self, w: &str) -> u32 {
        self.words.iter().filter(|x| *x == w).count() as u32
    }

    fn count_prefix(&self, p: &str) -> u32 {
        self.words.iter().filter(|x| x.starts_with(p)).count() as u32
    }

    fn holds_phrase(&self, ws: &[String]) -> bool {
        self.words.windows(ws.len()).any(|w| w == ws)
    }

    fn matches(&self, u: &ModelUnit) -> bool {
        match u {
            ModelUnit::Word(w) => self.count(w) > 0,
            ModelUnit::Prefix(p) => self.count_prefix(p) > 0,
            ModelUnit::Phrase(ws) => self.holds_phrase(ws),
        }
    }
}

/// The answer by definition: every document of the scope read, every statistic counted.
fn brute_force(
    docs: &BTreeMap<(DocKind, String), ModelDoc>,
    in_scope: impl Fn(DocKind, &str) -> bool,
    admitted: impl Fn(DocKind, &str) -> bool,
    q: &ModelQuery,
    limit: usize,
) -> Vec<(String, f64, Vec<String>)> {
    let scope: Vec<(&(DocKind, String), &ModelDoc)> = docs.iter().filter(|((k, d), _)| in_scope(*k, d)).collect();
    let n = scope.len().max(1) as f64;
    let total: usize = scope.iter().map(|(_, d)| d.words.len()).sum();
    let avgdl = (total as f64 / n).max(1.0);
    let idf = |df: usize| (1.0 + (n - df as f64 + 0.5) / (df as f64 + 0.5)).ln();
    let df_word = |w: &str| scope.iter().filter(|(_, d)| d.count(w) > 0).count();
    let df_prefix = |p: &str| scope.iter().filter(|(_, d)| d.count_prefix(p) > 0).count();
    let bm25 = |idf: f64, tf: u32, len: usize| {
        let tf = f64::from(tf);
        idf * tf * 2.2 / (tf + 1.2 * (1.0 - 0.75 + 0.75 * len as f64 / avgdl))
    };
    // A unit said twice in a group, or a group said twice, is one condition (`a OR a` is `a`).
    let mut groups: Vec<Vec<&ModelUnit>> = Vec::new();
    for group in &q.groups {
        let mut distinct: Vec<&ModelUnit> = Vec::new();
        group.iter().for_each(|u| {
            if !distinct.contains(&u) {
                distinct.push(u)
            }
        });
        if !groups.contains(&distinct) {
            groups.push(distinct);
        }
    }
    let mut hits: Vec<(DocKind, String, f64, Vec<String>)> = Vec::new();
    for ((kind, id), doc) in &scope {
        if !admitted(*kind, id) || q.excluded.iter().any(|u| doc.matches(u)) {
            continue;
        }
        let mut score = 0.0;
        let mut matched: Vec<String> = Vec::new();
        let mut all_groups = true;
        for group in &groups {
            let mut any = false;
            for u in group.iter().filter(|u| doc.matches(u)) {
                any = true;
                let len = doc.words.len();
                let mut named: Vec<String> = Vec::new();
                match u {
                    ModelUnit::Word(w) => {
                        score += bm25(idf(df_word(w)), doc.count(w), len);
                        named.push(w.clone());
                    }
                    ModelUnit::Prefix(p) => {
                        score += bm25(idf(df_prefix(p)), doc.count_prefix(p), len);
                        let mut expansions: Vec<String> =
                            doc.words.iter().filter(|w| w.starts_with(p.as_str())).cloned().collect();
                        expansions.sort();
                        named.extend(expansions);
                    }
                    ModelUnit::Phrase(ws) => {
                        let mut distinct: Vec<&String> = Vec::new();
                        ws.iter().for_each(|w| {
                            if !distinct.contains(&w) {
                                distinct.push(w)
                            }
                        });
                        score += distinct.iter().fold(0.0, |sum, w| sum + bm25(idf(df_word(w)), doc.count(w), len));
                        named.extend(ws.iter().cloned());
                    }
                }
                for w in named {
                    if !matched.contains(&w) {
                        matched.push(w);
                    }
                }
            }
            all_groups &= any;
        }
        if all_groups {
            hits.push((*kind, id.clone(), (score * 1e6).round() / 1e6, matched));
        }
    }
    hits.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| (a.0, &a.1).cmp(&(b.0, &b.1))));
    hits.truncate(limit);
    hits.into_iter().map(|(_, id, score, matched)| (id.replace(SEPARATOR, "/"), score, matched)).collect()
}

/// A random document of the test's few: a file path, or a memory entry's id.
fn random_doc(rng: &mut Rng) -> (DocKind, String) {
    const PLACES: [&str; 8] =
        ["/a/1.md", "/a/2.txt", "/a/x/3.md", "/a/x/4.md", "/b/5.md", "/b/6.txt", "/7.md", "/a.md"];
    let kind = if rng.below(4) == 0 { DocKind::Memory } else { DocKind::File };
    let id = match kind {
        DocKind::File => format!("{}{}", rng.pick(&PLACES), rng.below(4)),
        DocKind::Memory => format!("{}{SEPARATOR}k{}", rng.pick(&["n1", "n2"]), rng.below(6)),
    };
    (kind, id)
}

/// Imports a few random documents over `scope`'s (overwriting), in the store and in the model: a
/// bundle's documents are indexed together (a store may index them otherwise than one write's).
/// Some files are binary, which unindexes what they replace; a path may come twice (the later
/// wins).
async fn random_import(
    f: &crate::Fixture,
    scope: &TenantScope,
    rng: &mut Rng,
    docs: &mut BTreeMap<(DocKind, String), ModelDoc>,
    import: &str,
) {
    use crate::import::{file, journal, plan, stage};
    use tenantry_core::import::{ConflictPolicy, StagedRecord};
    let (mut files, mut records) = (Vec::new(), Vec::new());
    for n in 0..1 + rng.below(6) as u64 {
        let (kind, id) = random_doc(rng);
        let text = random_text(rng);
        match kind {
            DocKind::File if rng.below(5) == 0 => {
                files.push(file(n, &id, &format!("\0{text}")));
                docs.remove(&(kind, id));
            }
            DocKind::File => {
                files.push(file(n, &id, &text));
                docs.insert((kind, id), ModelDoc { words: tokens(&text).map(|t| t.2).collect() });
            }
            DocKind::Memory => {
                let (ns, key) = id.split_once(SEPARATOR).unwrap();
                let w = memory_write(ns, key, serde_json::json!(text));
                let (created_at, updated_at) = (now(), now());
                records.push((
                    n,
                    StagedRecord::Memory {
                        namespace: ns.to_owned(),
                        key: key.to_owned(),
                        value: w.value,
                        expires_at: None,
                        created_at,
                        updated_at,
                        index: w.index,
                    },
                ));
                docs.insert((kind, id), ModelDoc { words: tokens(&text).map(|t| t.2).collect() });
            }
        }
    }
    stage(f, scope, import, ConflictPolicy::Overwrite, files).await;
    f.store.stage_records(scope, import, records).await.unwrap();
    f.store.commit_import(scope, import, plan(ConflictPolicy::Overwrite, None), journal()).await.unwrap();
}

/// Writes, replaces or deletes a random document of `scope`, in the store and in the model.
async fn random_change(
    f: &crate::Fixture,
    scope: &TenantScope,
    rng: &mut Rng,
    docs: &mut BTreeMap<(DocKind, String), ModelDoc>,
) {
    let text = random_text(rng);
    let (kind, id) = random_doc(rng);
    let delete = docs.contains_key(&(kind, id.clone())) && rng.below(5) == 0;
    match (kind, delete) {
        (DocKind::File, false) => {
            f.put(scope, &id, &text).await;
        }
        (DocKind::File, true) => {
            f.store.delete_file(scope, &path(&id), Precondition::None, now(), file_journal(&id)).await.unwrap();
        }
        (DocKind::Memory, _) => {
            let (ns, key) = id.split_once(SEPARATOR).unwrap();
            if delete {
                let (namespace, key_) = (Namespace::parse(ns).unwrap(), MemoryKey::parse(key).unwrap());
                f.store.delete_memory(scope, &namespace, &key_, now(), memory_journal(ns, key)).await.unwrap();
            } else {
                let w = memory_write(ns, key, serde_json::json!(text));
                f.store.put_memory(scope, w, memory_journal(ns, key)).await.unwrap();
            }
        }
    }
    if delete {
        docs.remove(&(kind, id));
    } else {
        docs.insert((kind, id), ModelDoc { words: tokens(&text).map(|t| t.2).collect() });
    }
}

pub async fn search_answers_as_a_brute_force_scan_of_the_tenants_documents(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (_, other) = f.tenant("globex").await;
    let mut rng = Rng(0x5eed_2026_1207);
    let mut docs: BTreeMap<(DocKind, String), ModelDoc> = BTreeMap::new();
    for _ in 0..40 {
        random_change(&f, &a, &mut rng, &mut docs).await;
    }
    // Another tenant with the same words: it must change nothing.
    for i in 0..20 {
        f.put(&other, &format!("/a/{i}.md"), &random_text(&mut rng)).await;
    }
    let mut checked = 0;
    for round in 0..30 {
        if round % 4 == 3 {
            random_import(&f, &a, &mut rng, &mut docs, &format!("import-{round}")).await;
        } else {
            random_change(&f, &a, &mut rng, &mut docs).await;
        }
        for _ in 0..6 {
            let groups =
                (0..1 + rng.below(3)).map(|_| (0..1 + rng.below(2)).map(|_| random_unit(&mut rng)).collect()).collect();
            let excluded = (0..rng.below(2)).map(|_| random_unit(&mut rng)).collect();
            let model = ModelQuery { groups, excluded };
            let q = render(&mut rng, &model);
            let Ok(parsed_q) = Query::parse(&q) else { panic!("round {round}: {q:?} does not parse") };
            let limit = 1 + rng.below(8);
            let (files, memory, glob): (Option<&str>, Option<Option<&str>>, Option<&str>) = match rng.below(5) {
                0 => (Some("/"), Some(None), None),
                1 => (Some("/a"), None, None),
                2 => (None, Some(Some("n1")), None),
                3 => (Some("/"), Some(None), Some("/a/**/*.md*")),
                _ => (Some("/b"), Some(Some("n2")), None),
            };
            let search = SearchQuery {
                query: parsed_q,
                files: files.map(|p| PathPrefix::parse(p).unwrap()),
                memory: memory.map(|ns| ns.map(|n| Namespace::parse(n).unwrap())),
                glob: glob.map(str::to_owned),
                limit,
                now: now(),
            };
            let in_scope = |kind: DocKind, id: &str| match kind {
                DocKind::File => files.is_some_and(|p| p == "/" || id.starts_with(&format!("{p}/"))),
                DocKind::Memory => {
                    memory.is_some_and(|ns| ns.is_none_or(|ns| id.starts_with(&format!("{ns}{SEPARATOR}"))))
                }
            };
            let admitted = |kind: DocKind, id: &str| match glob {
                None => true,
                Some(g) => kind == DocKind::File && tenantry_core::glob::matches(g, id),
            };
            let want = brute_force(&docs, in_scope, admitted, &model, limit);
            let got: Vec<(String, f64, Vec<String>)> = f
                .store
                .search(&a, search)
                .await
                .unwrap()
                .hits
                .into_iter()
                .map(|h| {
                    let id = h.path.unwrap_or_else(|| format!("{}/{}", h.namespace.unwrap(), h.key.unwrap()));
                    (id, h.score, h.matched)
                })
                .collect();
            assert_eq!(
                got.len(),
                want.len(),
                "round {round}: {q:?} (limit {limit}, {files:?} {memory:?} {glob:?}): {got:?} != {want:?}"
            );
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    g.0 == w.0 && (g.1 - w.1).abs() < 1e-9 && g.2 == w.2,
                    "round {round}: {q:?} (limit {limit}, {files:?} {memory:?} {glob:?}): {got:?} != {want:?}"
                );
            }
            checked += usize::from(!want.is_empty());
        }
    }
    // Most queries find something: the comparison is not of empty lists.
    assert!(checked > 60, "only {checked} queries had hits");
}
