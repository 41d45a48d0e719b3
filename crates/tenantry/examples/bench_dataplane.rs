//! Load generator for the data-plane benchmarks (bench/dataplane.sh runs it against a release
//! server): memory vs file rates, search latency with 100,000 documents in one tenant and 1,000
//! tenants of 100 (BIG_DOCS=1000000 for the large tenant), bulk indexing on import against
//! SQLite FTS5, SSE fan-out to 1,000 subscribers, webhook delivery throughput.
//!   bench_dataplane URL OPERATOR_KEY memory|search|import|sse|webhooks [SCALE]
//! SCALE (default 1.0) shrinks the document counts and durations for a quick run.
//! BENCH_DATA_DIR, when set, is the server's data directory: the search index's bytes are read
//! from it.

use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantry_client::Client;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut v: Vec<f64>) -> (f64, f64, usize) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99), v.len())
}

async fn tenant(op: &Client, slug: &str) -> Client {
    let t = op.create_tenant(&json!({"slug": slug, "tier": "enterprise"})).await.expect("create tenant");
    Client::new(op.base(), Some(t["owner_key"].as_str().unwrap().to_owned()))
}

/// Runs `f(i)` from `conc` tasks for `secs` seconds; returns completions per second.
async fn rate<F, Fut>(secs: f64, conc: usize, f: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..conc {
        let (f, done) = (f.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t as u64;
            while Instant::now() < deadline {
                f(i).await;
                done.fetch_add(1, Ordering::Relaxed);
                i += conc as u64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// A gauge or counter of the server's `/metrics` (operator key), 0 if absent.
async fn metric(op: &Client, name: &str) -> f64 {
    let res = op.send(reqwest::Method::GET, "/metrics", None, &[]).await.expect("metrics");
    let text = String::from_utf8_lossy(&res.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn memory(op: Client, scale: f64) {
    let c = tenant(&op, "mem-bench").await;
    let text = "x".repeat(1000);
    let value = json!(text);
    // 1 KiB the index leaves alone (it holds NUL bytes: not text).
    let body: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let secs = 8.0 * scale;
    let (c1, b1) = (c.clone(), body.clone());
    let file_put = rate(secs, 32, move |i| {
        let (c, b) = (c1.clone(), b1.clone());
        async move {
            c.put_file(&format!("/f/{}", i % 1000), b, None).await.unwrap();
        }
    })
    .await;
    let (c2, v2) = (c.clone(), value.clone());
    let mem_put = rate(secs, 32, move |i| {
        let (c, v) = (c2.clone(), v2.clone());
        async move {
            c.set_memory("bench", &format!("k{}", i % 1000), &v, None).await.unwrap();
        }
    })
    .await;
    let c3 = c.clone();
    let file_get = rate(secs, 32, move |i| {
        let c = c3.clone();
        async move {
            c.get_file(&format!("/f/{}", i % 1000)).await.unwrap();
        }
    })
    .await;
    let c4 = c.clone();
    let mem_get = rate(secs, 32, move |i| {
        let c = c4.clone();
        async move {
            c.get_memory("bench", &format!("k{}", i % 1000)).await.unwrap();
        }
    })
    .await;
    // The same size of prose (about 150 words, ~100 distinct): every write updates the index.
    // The corpus is made before the clock starts (the same every run: a fixed seed), so the rate
    // is the server's, not the text generator's.
    let words = vocabulary(5000);
    let zipf = Zipf::new(words.len());
    let corpus: Arc<Vec<Vec<u8>>> = Arc::new((0..4096u64).map(|n| prose(&words, &zipf, n)).collect());
    let c5 = c.clone();
    let (steps_before, step_ms_before) = (
        metric(&op, "tenantry_search_steps_total").await,
        metric(&op, "tenantry_search_step_milliseconds_total").await,
    );
    let phase = Instant::now();
    let text_put = rate(secs, 32, move |i| {
        let (c, corpus) = (c5.clone(), corpus.clone());
        async move {
            let text = corpus[(i % corpus.len() as u64) as usize].clone();
            c.put_file(&format!("/t/{}", i % 1000), text, None).await.unwrap();
        }
    })
    .await;
    let written = text_put * phase.elapsed().as_secs_f64();
    // The documents not yet in a segment when the writes stop, and how long the writer takes to
    // flush them (a layout that only defers its work would show it here).
    let left = metric(&op, "tenantry_search_tail_documents").await;
    let drain = Instant::now();
    while metric(&op, "tenantry_search_tail_documents").await > 0.0 && drain.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = drain.elapsed().as_secs_f64();
    let total = phase.elapsed().as_secs_f64();
    let steps = metric(&op, "tenantry_search_steps_total").await - steps_before;
    let step_ms = metric(&op, "tenantry_search_step_milliseconds_total").await - step_ms_before;
    println!("file PUT 1 KiB        {file_put:>9.0}/s   (binary: not indexed)");
    println!(
        "file PUT 1 KiB prose  {text_put:>9.0}/s   ratio to file PUT {:.2} (the cost of indexing)",
        text_put / file_put
    );
    println!(
        "  then {left:.0} documents in tails (a tail is flushed after 1,024 writes, or once writes pause: \
         these {drained:.2} s later); {steps:.0} flush/merge steps took {step_ms:.0} ms of writer time \
         ({:.0} µs per document written)",
        step_ms * 1000.0 / written
    );
    let _ = total;
    println!("memory set 1 KiB      {mem_put:>9.0}/s   ratio to file PUT {:.2}", mem_put / file_put);
    println!("file GET 1 KiB        {file_get:>9.0}/s");
    println!("memory get 1 KiB      {mem_get:>9.0}/s   ratio to file GET {:.2}", mem_get / file_get);
}

/// A deterministic vocabulary of pronounceable words, most frequent first.
fn vocabulary(n: usize) -> Vec<String> {
    const SYL: &[&str] = &["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "po", "za", "gu", "be", "fi", "ho"];
    (0..n)
        .map(|i| {
            let mut w = String::new();
            let mut x = i + SYL.len();
            while x > 0 {
                w.push_str(SYL[x % SYL.len()]);
                x /= SYL.len();
            }
            w
        })
        .collect()
}

struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut acc = 0.0;
        let mut cdf = Vec::with_capacity(n);
        for r in 1..=n {
            acc += 1.0 / r as f64;
            cdf.push(acc);
        }
        let total = acc;
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf { cdf }
    }
    fn sample(&self, u: f64) -> usize {
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// A small xorshift generator: reproducible documents and queries without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Document `n` of the prose corpus: 150 words (about 1 KiB), the same for the same `n` every run.
fn prose(words: &[String], zipf: &Zipf, n: u64) -> Vec<u8> {
    let mut rng = Rng(n + 1);
    let text: Vec<&str> = (0..150).map(|_| words[zipf.sample(rng.next())].as_str()).collect();
    text.join(" ").into_bytes()
}

fn document(words: &[String], zipf: &Zipf, rng: &mut Rng) -> Vec<u8> {
    (0..40).map(|_| words[zipf.sample(rng.next())].as_str()).collect::<Vec<_>>().join(" ").into_bytes()
}

/// PUTs `n` documents of 40 words from 32 connections; returns the bytes of text written.
async fn load_docs(c: &Client, n: usize, prefix: &str, words: Arc<Vec<String>>, zipf: Arc<Zipf>, seed: u64) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let (c, next, bytes, words, zipf, prefix) =
            (c.clone(), next.clone(), bytes.clone(), words.clone(), zipf.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed * 1000 + t + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return;
                }
                let text = document(&words, &zipf, &mut rng);
                bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                c.put_file(&format!("{prefix}/{i}.txt"), text, Some("text/plain")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    bytes.load(Ordering::Relaxed)
}

/// Waits (up to 10 minutes) until no tenant's tail holds a document and the upkeep has taken
/// no step for 2 s: everything written is in segments, merged.
async fn settle(op: &Client) {
    drain_tails(op).await;
    let mut steps = metric(op, "tenantry_search_steps_total").await;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = metric(op, "tenantry_search_steps_total").await;
        if now == steps {
            return;
        }
        steps = now;
    }
}

/// Waits (up to 10 minutes) until no tenant's tail holds a document: everything written is in
/// segments. Returns the seconds waited.
async fn drain_tails(op: &Client) -> f64 {
    let t0 = Instant::now();
    while metric(op, "tenantry_search_tail_documents").await > 0.0 && t0.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed().as_secs_f64()
}

/// The bytes of the search index (its tables' pages, as SQLite's dbstat counts them) in every
/// database under `BENCH_DATA_DIR`, read while the server runs (WAL: a reader sees the last
/// commit). None when the variable is unset.
fn index_bytes() -> Option<(u64, Vec<(String, u64)>)> {
    let dir = std::env::var_os("BENCH_DATA_DIR")?;
    let mut by_table = std::collections::BTreeMap::<String, u64>::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if !(name.ends_with(".db") || name.ends_with(".sqlite")) {
                continue;
            }
            let read = || -> rusqlite::Result<Vec<(String, i64)>> {
                let conn = rusqlite::Connection::open_with_flags(&p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                let mut st =
                    conn.prepare("SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'search%' GROUP BY name")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            };
            match read() {
                Ok(rows) => rows.into_iter().for_each(|(t, b)| *by_table.entry(t).or_default() += b as u64),
                Err(e) => eprintln!("index bytes: {} not read: {e}", p.display()),
            }
        }
    }
    Some((by_table.values().sum(), by_table.into_iter().collect()))
}

/// Query words drawn like the documents' words (Zipf), skipping the 20 most common (stop
/// words): one word in half the queries and two in the other half.
fn query(words: &[String], zipf: &Zipf, rng: &mut Rng) -> String {
    let pick = |rng: &mut Rng| loop {
        let r = zipf.sample(rng.next());
        if r >= 20 {
            return &words[r];
        }
    };
    if rng.next() < 0.5 {
        pick(rng).clone()
    } else {
        format!("{} {}", pick(rng), pick(rng))
    }
}

async fn query_latencies(clients: &[Client], n: usize, words: &[String], zipf: &Zipf, seed: u64) -> (f64, f64, f64) {
    let mut rng = Rng(seed);
    let mut ms = Vec::with_capacity(n);
    let mut hits = 0usize;
    for i in 0..n {
        let q = query(words, zipf, &mut rng);
        let c = &clients[i % clients.len()];
        let t0 = Instant::now();
        let r = c.search(&q, "&limit=10").await.unwrap();
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        hits += r["items"].as_array().map_or(0, Vec::len);
    }
    let (p50, p99, _) = summary(ms);
    (p50, p99, hits as f64 / n as f64)
}

async fn search(op: Client, scale: f64) {
    let words = Arc::new(vocabulary(5000));
    let zipf = Arc::new(Zipf::new(words.len()));
    let big_docs = (100_000.0 * scale) as usize;
    let tenants = (1000.0 * scale).max(2.0) as usize;
    let queries = (2000.0 * scale).max(200.0) as usize;
    let big_docs: usize = std::env::var("BIG_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or(big_docs);
    let first = tenant(&op, "small-0000").await;
    let mut text_bytes = load_docs(&first, 100, "/docs", words.clone(), zipf.clone(), 1).await;
    let (a50, a99, ah) = query_latencies(std::slice::from_ref(&first), queries, &words, &zipf, 7).await;
    println!("1 tenant of 100 docs, alone:            p50 {a50:.2} ms  p99 {a99:.2} ms  ({ah:.1} hits/query)");
    let t0 = Instant::now();
    let mut smalls = vec![first.clone()];
    for i in 1..tenants {
        let c = tenant(&op, &format!("small-{i:04}")).await;
        text_bytes += load_docs(&c, 100, "/docs", words.clone(), zipf.clone(), i as u64 + 1).await;
        // A fresh client for the queries: the loading one's 32 pooled connections close with it
        // (1,000 of those pools held some 32,000 sockets open).
        smalls.push(Client::new(op.base(), c.key().map(str::to_owned)));
    }
    let big = tenant(&op, "big").await;
    text_bytes += load_docs(&big, big_docs, "/corpus", words.clone(), zipf.clone(), 99_999).await;
    println!(
        "loaded {} tenants x 100 docs and 1 tenant x {big_docs} docs in {:.0} s ({:.0} docs/s)",
        tenants,
        t0.elapsed().as_secs_f64(),
        (tenants * 100 + big_docs) as f64 / t0.elapsed().as_secs_f64()
    );
    let drained = drain_tails(&op).await;
    println!("  the tails were flushed {drained:.1} s after the last write");
    if let Some((bytes, tables)) = index_bytes() {
        let detail: Vec<String> = tables.iter().map(|(t, b)| format!("{t} {:.1} MiB", *b as f64 / 1048576.0)).collect();
        println!(
            "index {:.1} MiB for {:.1} MiB of text: {:.2}x  ({})",
            bytes as f64 / 1048576.0,
            text_bytes as f64 / 1048576.0,
            bytes as f64 / text_bytes as f64,
            detail.join(", ")
        );
    }
    let (b50, b99, bh) = query_latencies(std::slice::from_ref(&first), queries, &words, &zipf, 7).await;
    println!("the same tenant among {tenants} others:     p50 {b50:.2} ms  p99 {b99:.2} ms  ({bh:.1} hits/query)");
    let (c50, c99, ch) = query_latencies(&smalls, queries, &words, &zipf, 11).await;
    println!("random tenants of 100 docs:              p50 {c50:.2} ms  p99 {c99:.2} ms  ({ch:.1} hits/query)");
    let (d50, d99, dh) = query_latencies(std::slice::from_ref(&big), queries, &words, &zipf, 13).await;
    println!("1 tenant of {big_docs} docs:              p50 {d50:.2} ms  p99 {d99:.2} ms  ({dh:.1} hits/query)");
    println!("growth with other tenants (p50 among / alone): {:.2}", b50 / a50);
}

/// Bulk indexing on import: a tenant of 1 KiB prose documents exported and imported into an
/// empty tenant (until its tail is flushed into segments), against the same count of 1 KiB
/// unindexed files through the same path, and against SQLite FTS5 loading the same documents in
/// one transaction in this process (what the storage engine's own full-text index does).
async fn import(op: Client, scale: f64) {
    let n: usize =
        std::env::var("IMPORT_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or((100_000.0 * scale) as usize);
    let words = vocabulary(5000);
    let zipf = Zipf::new(words.len());
    let corpus: Arc<Vec<Vec<u8>>> = Arc::new((0..n as u64).map(|i| prose(&words, &zipf, i)).collect());
    let text_bytes: usize = corpus.iter().map(Vec::len).sum();
    let dir = std::env::temp_dir().join(format!("tenantry-bench-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut report = Vec::new();
    for (slug, indexed) in [("prose", true), ("binary", false)] {
        let c = tenant(&op, slug).await;
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (c, next, corpus) = (c.clone(), next.clone(), corpus.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= corpus.len() {
                        return;
                    }
                    // The same bytes with a NUL in front: as large and as unique (not shared
                    // content), but not text, so never indexed.
                    let mut body = corpus[i].clone();
                    if !indexed {
                        body[0] = 0;
                    }
                    c.put_file(&format!("/docs/{i}.txt"), body, None).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // The source's flushes and merges end before anything is timed.
        settle(&op).await;
        let bundle = dir.join(format!("{slug}.tenantry"));
        let mut out = std::fs::File::create(&bundle).unwrap();
        op.download(&format!("/v1/tenants/{slug}/export"), &mut out, |_| {}).await.unwrap();
        drop(out);
        op.create_tenant(&json!({"slug": format!("{slug}-restored"), "tier": "enterprise"})).await.unwrap();
        let t0 = Instant::now();
        let input = Box::new(std::fs::File::open(&bundle).unwrap());
        op.upload(&format!("/v1/tenants/{slug}-restored/import"), input, Arc::new(|_| {})).await.unwrap();
        let imported = t0.elapsed().as_secs_f64();
        drain_tails(&op).await;
        let indexed_in = t0.elapsed().as_secs_f64();
        report.push((slug, imported, indexed_in));
    }
    // The reference: FTS5 (bundled with the same SQLite), the same documents, one transaction,
    // in a file database with the server's journal settings (WAL, synchronous FULL).
    let fts = dir.join("fts5.db");
    let conn = rusqlite::Connection::open(&fts).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE VIRTUAL TABLE docs USING fts5(path UNINDEXED, body)").unwrap();
    let t0 = Instant::now();
    conn.execute_batch("BEGIN").unwrap();
    {
        let mut st = conn.prepare("INSERT INTO docs (path, body) VALUES (?1, ?2)").unwrap();
        for (i, d) in corpus.iter().enumerate() {
            st.execute(rusqlite::params![format!("/docs/{i}.txt"), std::str::from_utf8(d).unwrap()]).unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    let fts_secs = t0.elapsed().as_secs_f64();
    let fts_bytes: i64 =
        conn.query_row("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'docs%'", [], |r| r.get(0)).unwrap();
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{n} documents of 1 KiB prose ({:.1} MiB of text)", text_bytes as f64 / 1048576.0);
    let fts_rate = n as f64 / fts_secs;
    println!(
        "SQLite FTS5, one transaction:   {fts_secs:>7.1} s  {fts_rate:>7.0} docs/s  (index {:.1} MiB)",
        fts_bytes as f64 / 1048576.0
    );
    for (slug, imported, indexed_in) in report {
        let r = n as f64 / indexed_in;
        println!(
            "import of {slug:<6} files:        {indexed_in:>7.1} s  {r:>7.0} docs/s  ratio to FTS5 {:.2}  (the import answered after {imported:.1} s)",
            r / fts_rate
        );
    }
    if let Some((bytes, _)) = index_bytes() {
        // Two tenants hold the prose: the one exported (indexed through the tail, merged) and the
        // one imported.
        println!(
            "index {:.1} MiB for {:.1} MiB of text: {:.2}x",
            bytes as f64 / 1048576.0,
            2.0 * text_bytes as f64 / 1048576.0,
            bytes as f64 / (2.0 * text_bytes as f64)
        );
    }
}

fn millis_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn sse(op: Client, scale: f64) {
    let subscribers = (1000.0 * scale).max(10.0) as usize;
    let events = 200usize;
    let c = tenant(&op, "sse-bench").await;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(subscribers * events)));
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        // A client each: one connection per subscriber, as browsers and agents would have.
        let sub = Client::new(c.base(), c.key().map(str::to_owned));
        let mut stream = sub.event_stream(None).await.expect("subscribe");
        let lat = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            while got < events {
                match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
                    Ok(Ok(Some(e))) => {
                        let at = tenantry_core::time::Timestamp::parse(e["at"].as_str().unwrap()).unwrap();
                        lat.lock().unwrap().push((millis_now() - at.millis()) as f64);
                        got += 1;
                    }
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    for i in 0..events {
        c.set_memory("sse", &format!("k{i}"), &json!(i), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = t0.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    let lat = std::mem::take(&mut *latencies.lock().unwrap());
    let (p50, p99, n) = summary(lat);
    println!(
        "{subscribers} subscribers x {events} events ({:.0} events/s): {n} of {} delivered, \
         latency from commit p50 {p50:.1} ms p99 {p99:.1} ms",
        events as f64 / written.as_secs_f64(),
        subscribers * events
    );
}

/// A keep-alive HTTP/1.1 receiver answering 200 to everything; counts requests.
async fn receiver() -> (String, Arc<AtomicU64>, Arc<Mutex<Option<Instant>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(None));
    let (c, l) = (count.clone(), last.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (c, l) = (c.clone(), l.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    c.fetch_add(1, Ordering::Relaxed);
                    *l.lock().unwrap() = Some(Instant::now());
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count, last)
}

async fn webhooks(op: Client, scale: f64) {
    let n = (5000.0 * scale).max(100.0) as u64;
    let c = tenant(&op, "hook-bench").await;
    let (url, count, last) = receiver().await;
    c.create_webhook(&json!({"url": url, "events": ["memory.set"]})).await.unwrap();
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (c, next) = (c.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                c.set_memory("hooks", &format!("k{i}"), &json!(i), None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let written = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = count.load(Ordering::Relaxed);
    let done = last.lock().unwrap().map(|l| l.duration_since(t0).as_secs_f64()).unwrap_or(f64::NAN);
    println!(
        "{n} events written in {written:.1} s ({:.0}/s); {delivered} delivered, the last {done:.1} s after the first \
         write: {:.0} deliveries/s, ratio to the write rate {:.2}",
        n as f64 / written,
        delivered as f64 / done,
        (delivered as f64 / done) / (n as f64 / written)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: bench_dataplane URL OPERATOR_KEY memory|search|import|sse|webhooks [SCALE]");
        std::process::exit(2);
    }
    let op = Client::new(&args[1], Some(args[2].clone()));
    let scale: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    match args[3].as_str() {
        "memory" => memory(op, scale).await,
        "search" => search(op, scale).await,
        "import" => import(op, scale).await,
        "sse" => sse(op, scale).await,
        "webhooks" => webhooks(op, scale).await,
        other => {
            eprintln!("unknown section {other}");
            std::process::exit(2);
        }
    }
}
