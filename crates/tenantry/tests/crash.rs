//! Crash safety: concurrent writers against the real binary, SIGKILL at random moments (25
//! times), restart on the same data dir, and check that every acknowledged write is there and
//! intact, nothing half-written is visible, and each tenant's audit chain still verifies.
//! `TENANTRY_CRASH_ROUNDS` sets the number of kills (longer runs: see docs/SECURITY.md).
//! With `TENANTRY_TEST_BACKEND=postgres` the servers serve from a database of their own on the
//! test cluster instead (the node is killed, the database goes on); the checks of the embedded
//! store's own files are then left out, and moves are the embedded store's only.

mod common;

use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_client::Client;
use tenantry_store_postgres::schema;
use tenantry_store_postgres::testing::TestDatabase;

const OPERATOR: &str = "crash-test-operator-key";

/// Where this test's servers keep their data: a data dir, and with `TENANTRY_TEST_BACKEND=postgres`
/// a migrated database of its own on the test cluster.
struct Storage {
    data: PathBuf,
    db: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl Storage {
    async fn new() -> Storage {
        let dir = tempfile::tempdir().unwrap();
        let db = match std::env::var("TENANTRY_TEST_BACKEND").as_deref() {
            Ok("postgres") => {
                let db = TestDatabase::create()
                    .await
                    .expect("TENANTRY_TEST_BACKEND=postgres needs the test cluster (TENANTRY_TEST_POSTGRES)");
                schema::migrate(&mut db.connect_as(&db.owner_role).await, &db.app_role).await.unwrap();
                Some(db)
            }
            _ => None,
        };
        Storage { data: dir.path().join("data"), db, _dir: dir }
    }

    /// True (after saying so) when the servers serve from PostgreSQL.
    fn on_postgres(&self, skipping: &str) -> bool {
        if self.db.is_some() {
            eprintln!("on PostgreSQL: {skipping}");
        }
        self.db.is_some()
    }

    fn start(&self) -> (Child, String) {
        let mut cmd = common::clean_command();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&self.data).env("TENANTRY_ADMIN_KEY", OPERATOR);
        if let Some(db) = &self.db {
            cmd.env("TENANTRY_DATABASE_URL", db.app_url()).env("TENANTRY_DATABASE_OWNER_URL", db.owner_url());
        }
        let served = common::start_serving(cmd);
        (served.child, served.url)
    }

    /// A tenant's stored usage counters: (storage bytes, files).
    async fn stored_usage(&self, tenant_id: &str) -> (u64, u64) {
        match &self.db {
            Some(db) => {
                let owner = db.connect_as(&db.owner_role).await;
                let row = owner
                    .query_one("SELECT storage_bytes, files FROM tenant_usage WHERE tenant_id = $1", &[&tenant_id])
                    .await
                    .unwrap();
                (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64)
            }
            None => {
                let db = rusqlite::Connection::open(self.data.join("tenantry.db")).unwrap();
                let counted: (i64, i64) = db
                    .query_row("SELECT storage_bytes, files FROM usage_all WHERE tenant_id = ?1", [tenant_id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .unwrap();
                (counted.0 as u64, counted.1 as u64)
            }
        }
    }
}

/// What the writers know: acknowledged contents, and writes that were sent but not answered.
#[derive(Default)]
struct Ledger {
    acked: HashMap<(String, String), Vec<u8>>,
    in_flight: HashMap<(String, String), Vec<Vec<u8>>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let rounds: usize = std::env::var("TENANTRY_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(25);
    let seed: u64 = std::env::var("TENANTRY_TEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("crash test seed {seed} (TENANTRY_TEST_SEED), {rounds} rounds");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let storage = Storage::new().await;

    let (mut child, url) = storage.start();
    let op = Client::new(&url, Some(OPERATOR.into()));
    let mut owners = HashMap::new();
    for slug in ["crash-a", "crash-b"] {
        let t = op.create_tenant(&serde_json::json!({ "slug": slug, "tier": "enterprise" })).await.unwrap();
        owners.insert(slug.to_owned(), t["owner_key"].as_str().unwrap().to_owned());
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut url = url;
    let mut total_acked = 0usize;
    let mut acked_by_tenant: HashMap<&str, usize> = HashMap::new();

    for round in 0..rounds {
        let mut writers = Vec::new();
        for w in 0..6usize {
            let slug = if w % 2 == 0 { "crash-a" } else { "crash-b" };
            let client = Client::new(&url, Some(owners[slug].clone()));
            let ledger = ledger.clone();
            let mut wrng = rand::rngs::StdRng::seed_from_u64(rng.gen());
            writers.push((
                slug,
                tokio::spawn(async move {
                    let mut n = 0usize;
                    loop {
                        // Half new files, half rewrites of one hot file per writer.
                        let path =
                            if wrng.gen_bool(0.5) { format!("/r{round}/w{w}/{n}") } else { format!("/hot/w{w}") };
                        let len = wrng.gen_range(0..20_000);
                        // Half text (indexed: a word of its own finds it), half bytes (not).
                        let content = if wrng.gen_bool(0.5) {
                            let filler = "lorem ipsum dolor sit amet ".repeat(len % 200);
                            format!("{slug} crash note m{round}x{w}x{n} {filler}").into_bytes()
                        } else {
                            let mut bytes = format!("{slug}:{path}:{n}:").into_bytes();
                            bytes.extend((0..len).map(|_| wrng.gen::<u8>()));
                            bytes
                        };
                        let key = (slug.to_owned(), path.clone());
                        ledger.lock().unwrap().in_flight.entry(key.clone()).or_default().push(content.clone());
                        match client.put_file(&path, content.clone(), None).await {
                            Ok(_) => {
                                let mut l = ledger.lock().unwrap();
                                l.acked.insert(key.clone(), content.clone());
                                if let Some(v) = l.in_flight.get_mut(&key) {
                                    v.retain(|c| c != &content);
                                }
                            }
                            Err(_) => return n, // the server is gone
                        }
                        n += 1;
                    }
                }),
            ));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(40..250))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for (slug, w) in writers {
            let n = w.await.unwrap();
            total_acked += n;
            *acked_by_tenant.entry(slug).or_default() += n;
        }

        let (c, u) = storage.start();
        child = c;
        url = u;
        // Every acknowledged write of this round is there, whole, and so is a sample of older
        // ones; a write in flight at the kill is either fully there or absent.
        // The writers are done: work on a copy, so no lock is held across the awaits below.
        let l = {
            let guard = ledger.lock().unwrap();
            Ledger { acked: guard.acked.clone(), in_flight: guard.in_flight.clone() }
        };
        let this_round = format!("/r{round}/");
        let mut to_check: Vec<(String, String)> = l
            .acked
            .keys()
            .filter(|(_, p)| p.starts_with(&this_round) || p.starts_with("/hot/") || rng.gen_ratio(1, 20))
            .cloned()
            .collect();
        to_check.sort();
        let mut observed = Vec::new();
        for (s, path) in &to_check {
            let client = Client::new(&url, Some(owners[s].clone()));
            let acked = &l.acked[&(s.clone(), path.clone())];
            let got =
                client.get_file(path).await.unwrap_or_else(|e| panic!("round {round}: acked {s}{path} lost: {e}"));
            let pending = l.in_flight.get(&(s.clone(), path.clone()));
            let ok = &got[..] == acked.as_slice() || pending.is_some_and(|p| p.iter().any(|c| c[..] == got[..]));
            assert!(ok, "round {round}: {s}{path} holds neither the acknowledged nor an in-flight version");
            observed.push(((s.clone(), path.clone()), got.to_vec()));
        }
        for ((s, path), pending) in l.in_flight.iter().filter(|(_, p)| !p.is_empty()) {
            if l.acked.contains_key(&(s.clone(), path.clone())) {
                continue;
            }
            let client = Client::new(&url, Some(owners[s].clone()));
            if let Ok(got) = client.get_file(path).await {
                assert!(pending.iter().any(|c| c[..] == got[..]), "round {round}: {s}{path} is half-written");
                observed.push(((s.clone(), path.clone()), got.to_vec()));
            }
        }
        // The search index agrees: a text version there is found by its own word, at its path
        // only; one in flight at the kill and not there is found nowhere.
        for ((s, path), got) in &observed {
            if let Some(word) = marker(got) {
                let client = Client::new(&url, Some(owners[s].clone()));
                let found = search_paths(&client, &word).await;
                assert_eq!(found, std::slice::from_ref(path), "round {round}: {s}{path}'s word {word}");
            }
        }
        for ((s, path), pending) in l.in_flight.iter() {
            for content in pending {
                let there = observed.iter().any(|((os, op), got)| os == s && op == path && got == content);
                if let (false, Some(word)) = (there, marker(content)) {
                    let client = Client::new(&url, Some(owners[s].clone()));
                    assert!(
                        search_paths(&client, &word).await.is_empty(),
                        "round {round}: {s}{path}: lost {word} found"
                    );
                }
            }
        }
        for (slug, owner) in &owners {
            let client = Client::new(&url, Some(owner.clone()));
            let report = client.verify_audit().await.unwrap();
            assert_eq!(report["ok"], true, "round {round}: audit chain of {slug} broken: {report}");
            // The event log too: numbered 1, 2, ... without a gap, a file.written event for every
            // acknowledged write (and perhaps for writes in flight at a kill).
            let (mut seqs, mut written, mut after) = (Vec::new(), 0usize, 0u64);
            loop {
                let page = client.events(after, Some(1000)).await.unwrap();
                for e in page["items"].as_array().unwrap() {
                    seqs.push(e["seq"].as_u64().unwrap());
                    written += usize::from(e["type"] == "file.written");
                }
                match page["next_cursor"].as_str() {
                    Some(c) => after = c.parse().unwrap(),
                    None => break,
                }
            }
            assert!(seqs.iter().copied().eq(1..=seqs.len() as u64), "round {round}: {slug}'s event seqs have a gap");
            let acked = acked_by_tenant.get(slug.as_str()).copied().unwrap_or(0);
            assert!(
                written >= acked,
                "round {round}: {slug} has {written} file.written events for {acked} acked writes"
            );
            // Nothing of the other tenant is visible here.
            let other = if slug == "crash-a" { "crash-b" } else { "crash-a" };
            let listing = client.list_files(&this_round, true, None).await.unwrap();
            assert!(!listing.to_string().contains(&format!("{other}:")));
        }
        // The restart settled the in-flight writes: what it showed is the truth from now on.
        let mut guard = ledger.lock().unwrap();
        guard.in_flight.clear();
        for (key, content) in observed {
            guard.acked.insert(key, content);
        }
    }
    // The usage counters (kept in the same transactions as the writes) match the data exactly.
    for owner in owners.values() {
        let client = Client::new(&url, Some(owner.clone()));
        let tenant_id = client.whoami().await.unwrap()["tenant"]["id"].as_str().unwrap().to_owned();
        let (mut bytes, mut files, mut cursor) = (0u64, 0u64, None::<String>);
        loop {
            let page = client.list_files("/", true, cursor.as_deref()).await.unwrap();
            for item in page["items"].as_array().unwrap() {
                bytes += item["size"].as_u64().unwrap();
                files += 1;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(storage.stored_usage(&tenant_id).await, (bytes, files), "usage counters of {tenant_id}");
    }
    let _ = child.kill();
    assert!(total_acked > rounds, "the writers got too few writes in ({total_acked}) for the test to mean much");
    println!("crash test: {rounds} SIGKILLs survived, {total_acked} acknowledged writes checked");
}

/// The word of its own a text version of the crash test holds (`m{round}x{writer}x{n}`).
fn marker(content: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let mut words = text.split(' ');
    let (_, crash, note, word) = (words.next()?, words.next()?, words.next()?, words.next()?);
    (crash == "crash" && note == "note").then(|| word.to_owned())
}

/// The paths a search for `word` finds.
async fn search_paths(client: &Client, word: &str) -> Vec<String> {
    let found = client.search(word, "&limit=10").await.unwrap();
    found["items"].as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap_or("").to_owned()).collect()
}

/// Metering is counted in memory and flushed every 2 s: a crash may lose the last seconds, never
/// more, and never counts a request twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_at_most_the_last_seconds_of_metering() {
    let storage = Storage::new().await;
    let (mut child, url) = storage.start();
    let op = Client::new(&url, Some(OPERATOR.into()));
    let t = op.create_tenant(&serde_json::json!({ "slug": "metered", "tier": "enterprise" })).await.unwrap();
    let owner = Client::new(&url, Some(t["owner_key"].as_str().unwrap().to_owned()));
    for _ in 0..40 {
        owner.whoami().await.unwrap();
    }
    // Two flush intervals: the 40 calls are stored.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    for _ in 0..25 {
        owner.whoami().await.unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, url) = storage.start();
    let op = Client::new(&url, Some(OPERATOR.into()));
    let usage = op.tenant_usage("metered", "").await.unwrap();
    let calls = usage["usage"]["api_calls"].as_u64().unwrap();
    assert!((40..=65).contains(&calls), "{calls} calls metered; 40 were flushed before the crash, 65 made");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A reader that hands out its bytes slowly, so a kill lands in the middle of an upload.
struct Throttled {
    data: std::io::Cursor<Vec<u8>>,
    pause: Duration,
}

impl std::io::Read for Throttled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(self.pause);
        let n = buf.len().min(64 << 10);
        self.data.read(&mut buf[..n])
    }
}

/// An import is all or nothing even when the server is killed in the middle of it (while the
/// bundle streams in and is staged, or while it commits): after the restart the tenant holds the
/// whole bundle or none of it, and no staged bytes are left behind in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_leaves_all_or_nothing_and_no_staged_bytes() {
    let seed: u64 = std::env::var("TENANTRY_TEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    const FILES: usize = 160;
    let header = tenantry_bundle::Header::new(
        serde_json::json!({"name": "Imported", "tier": "enterprise", "quotas": {}, "metadata": {}, "domains": []}),
        "2026-11-23T00:00:00.000Z".into(),
    );
    let mut w = tenantry_bundle::Writer::new(Vec::new(), &header).unwrap();
    let mut contents = Vec::new();
    for i in 0..FILES {
        // Every 32nd file is over 1 MiB: its body is staged in a file of its own.
        let len = if i % 32 == 5 { (1 << 20) + 4096 } else { 64 << 10 };
        let content: Vec<u8> = (0..len).map(|_| rng.gen::<u8>()).collect();
        let at = "2026-01-02T03:04:05.006Z";
        let meta = tenantry_bundle::FileMeta::describing(
            &format!("/batch/{i:04}.bin"),
            &content,
            "application/octet-stream",
            at,
        );
        w.file(&meta, content.as_slice()).unwrap();
        contents.push(content);
    }
    let bundle = w.finish().unwrap().1;

    let storage = Storage::new().await;
    let data = storage.data.clone();
    let (mut child, mut url) = storage.start();
    let op = Client::new(&url, Some(OPERATOR.into()));
    op.create_tenant(&serde_json::json!({ "slug": "imported", "tier": "enterprise" })).await.unwrap();
    let (mut complete, mut empty) = (0, 0);
    for round in 0..4 {
        let op = Client::new(&url, Some(OPERATOR.into()));
        let input = Throttled { data: std::io::Cursor::new(bundle.clone()), pause: Duration::from_millis(6) };
        let upload =
            tokio::spawn(
                async move { op.upload("/v1/tenants/imported/import", Box::new(input), Arc::new(|_| {})).await },
            );
        // About 1 s of upload: the kill lands early, midway, anywhere (the commit included), or
        // once the import was answered.
        let wait = match round {
            0 => Some(300),
            1 => Some(800),
            2 => Some(rng.gen_range(150..3000)),
            _ => None,
        };
        match wait {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => {
                while !upload.is_finished() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let answered = upload.await.unwrap().is_ok();
        (child, url) = storage.start();
        let owner_view = Client::new(&url, Some(OPERATOR.into())).with_tenant(Some("imported".into()));
        let usage = Client::new(&url, Some(OPERATOR.into())).tenant_usage("imported", "").await.unwrap();
        let n = usage["usage"]["files"].as_u64().unwrap() as usize;
        assert!(n == 0 || n == FILES, "round {round}: {n} of {FILES} files visible: an import is all or nothing");
        assert!(!answered || n == FILES, "round {round}: an acknowledged import must be there whole");
        if n == FILES {
            complete += 1;
            for i in [0, FILES / 2, FILES - 1] {
                let got = owner_view.get_file(&format!("/batch/{i:04}.bin")).await.unwrap();
                assert!(got[..] == contents[i][..], "round {round}: file {i} intact");
            }
            if storage.db.is_none() {
                let id = Client::new(&url, Some(OPERATOR.into())).show_tenant("imported").await.unwrap()["id"].clone();
                let bodies = std::fs::read_dir(data.join("blobs").join(id.as_str().unwrap())).unwrap().count();
                assert_eq!(bodies, 5, "round {round}: the imported large bodies, each in its file");
            }
            // Start the next round from an empty tenant again.
            for i in 0..FILES {
                owner_view.delete_file(&format!("/batch/{i:04}.bin")).await.unwrap();
            }
        } else {
            empty += 1;
        }
        if storage.on_postgres("its staged rows stay until swept as abandoned (another node may be importing)") {
            continue;
        }
        let db = rusqlite::Connection::open(data.join("tenantry.db")).unwrap();
        let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM imports"), 0, "round {round}: the interrupted import was swept");
        assert_eq!(
            count("SELECT COUNT(*) FROM file_content"),
            count("SELECT COUNT(*) FROM files"),
            "round {round}: no staged bytes left behind"
        );
        let tenant_id: String =
            db.query_row("SELECT id FROM tenants WHERE slug = 'imported'", [], |r| r.get(0)).unwrap();
        let on_disk = std::fs::read_dir(data.join("blobs").join(&tenant_id)).map_or(0, |d| d.count()) as i64;
        assert_eq!(
            on_disk,
            count("SELECT COUNT(*) FROM file_content WHERE blob IS NOT NULL"),
            "round {round}: one body file per named body, none staged or stray"
        );
        assert_eq!(on_disk, 0, "round {round}: the tenant is empty again, and so is its body directory");
    }
    println!("import crash test: {complete} rounds complete, {empty} rounds rolled back");
    assert!(complete >= 1 && empty >= 1, "both outcomes were exercised");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A move killed at any moment (copying, at the fence, after the switch) settles on restart:
/// the tenant is in one place or the other, whole, with every acknowledged write, no move left
/// half done and no stray database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_killed_midway_settles_on_restart_with_every_acknowledged_write() {
    let seed: u64 = std::env::var("TENANTRY_TEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let storage = Storage::new().await;
    let data = storage.data.clone();
    let (mut child, mut url) = storage.start();
    let op = Client::new(&url, Some(OPERATOR.into()));
    let t = op.create_tenant(&serde_json::json!({ "slug": "moving", "tier": "enterprise" })).await.unwrap();
    let (id, owner_key) = (t["id"].as_str().unwrap().to_owned(), t["owner_key"].as_str().unwrap().to_owned());
    let owner = Client::new(&url, Some(owner_key.clone()));
    for i in 0..400 {
        owner.put_file(&format!("/base/{i}"), vec![i as u8; 32 << 10], None).await.unwrap();
    }
    // Large bodies stay in their files whichever way the tenant moves.
    let large: Vec<Vec<u8>> = (0..3).map(|i| (0..(3 << 19) + i).map(|_| rng.gen::<u8>()).collect()).collect();
    for (i, body) in large.iter().enumerate() {
        owner.put_file(&format!("/large/{i}"), body.clone(), None).await.unwrap();
    }
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let mut outcomes = Vec::new();
    for round in 0..6 {
        let writer = {
            let owner = Client::new(&url, Some(owner_key.clone()));
            tokio::spawn(async move {
                let mut done = Vec::new();
                for n in 0.. {
                    let (path, body) = (format!("/live/{round}/{n}"), format!("round {round} write {n}").into_bytes());
                    match owner.put_file(&path, body.clone(), None).await {
                        Ok(_) => done.push((path, body)),
                        Err(_) => return done, // the server is gone
                    }
                }
                done
            })
        };
        let to =
            if Client::new(&url, Some(OPERATOR.into())).show_tenant("moving").await.unwrap()["placement"] == "shared" {
                "dedicated"
            } else {
                "shared"
            };
        let mover = {
            let op = Client::new(&url, Some(OPERATOR.into()));
            tokio::spawn(async move { op.move_tenant("moving", to).await })
        };
        // Odd rounds let the move finish first (so the next round moves the other way); even
        // rounds kill it at a random moment.
        if round == 4 && storage.db.is_some() {
            // Right after the switch (on PostgreSQL the old copy is kept a while after it).
            let op = Client::new(&url, Some(OPERATOR.into()));
            while op.show_tenant("moving").await.unwrap()["placement"] != to {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else if round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..600))).await;
        } else {
            while !mover.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        acked.extend(writer.await.unwrap());
        let answered = mover.await.unwrap().is_ok();
        (child, url) = storage.start();
        let op = Client::new(&url, Some(OPERATOR.into()));
        let placement = op.show_tenant("moving").await.unwrap()["placement"].as_str().unwrap().to_owned();
        assert!(!answered || placement == to, "round {round}: an answered move must have happened");
        outcomes.push(format!("{to}:{}", if placement == to { "moved" } else { "rolled back" }));
        let (own_database, in_shared) = match &storage.db {
            Some(db) => {
                let own = db.dedicated_databases().await.contains(&format!("{}_{id}", db.name));
                let superuser = db.superuser_in(&db.name).await;
                let sql = "SELECT count(*) FROM files WHERE tenant_id = $1";
                (own, superuser.query_one(sql, &[&id]).await.unwrap().get::<_, i64>(0))
            }
            None => {
                let own = data.join("tenants").join(format!("{id}.db")).exists();
                let shared = rusqlite::Connection::open(data.join("tenantry.db")).unwrap();
                let count = |sql: &str| shared.query_row(sql, [&id], |r| r.get::<_, i64>(0)).unwrap();
                assert_eq!(count("SELECT COUNT(*) FROM moves WHERE tenant_id = ?1"), 0, "round {round}: settled");
                (own, count("SELECT COUNT(*) FROM files WHERE tenant_id = ?1"))
            }
        };
        assert_eq!(own_database, placement == "dedicated", "round {round}: a database of its own iff dedicated");
        assert_eq!(in_shared > 0, placement == "shared", "round {round}: rows only where the tenant is");
        let view = Client::new(&url, Some(owner_key.clone()));
        for (path, body) in &acked {
            assert_eq!(&view.get_file(path).await.unwrap()[..], &body[..], "round {round}: {path} acknowledged");
        }
        for i in [0, 200, 399] {
            assert_eq!(view.get_file(&format!("/base/{i}")).await.unwrap().len(), 32 << 10);
        }
        for (i, body) in large.iter().enumerate() {
            assert!(view.get_file(&format!("/large/{i}")).await.unwrap()[..] == body[..], "round {round}: large {i}");
        }
        if storage.db.is_none() {
            assert_eq!(std::fs::read_dir(data.join("blobs").join(&id)).unwrap().count(), 3, "round {round}: bodies");
        }
        let verify = view.json(reqwest::Method::GET, "/v1/audit/verify", None).await.unwrap();
        assert_eq!(verify["ok"], true, "round {round}: {verify}");
    }
    println!("move crash test: {outcomes:?}, {} acknowledged writes checked", acked.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
