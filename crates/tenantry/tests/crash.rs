//! Crash safety: concurrent writers against the real binary, SIGKILL at random moments (25
//! times), restart on the same data dir, and check that every acknowledged write is there and
//! intact, nothing half-written is visible, and each tenant's audit chain still verifies.
//! `TENANTRY_CRASH_ROUNDS` sets the number of kills (longer runs: see docs/SECURITY.md).

mod common;

use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_client::Client;

const OPERATOR: &str = "crash-test-operator-key";

fn start(data: &Path) -> (Child, String) {
    let mut cmd = common::clean_command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data).env("TENANTRY_ADMIN_KEY", OPERATOR);
    let served = common::start_serving(cmd);
    (served.child, served.url)
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let (mut child, url) = start(&data);
    let op = Client::new(&url, Some(OPERATOR.into()));
    let mut owners = HashMap::new();
    for slug in ["crash-a", "crash-b"] {
        let t = op.create_tenant(&serde_json::json!({ "slug": slug, "tier": "enterprise" })).await.unwrap();
        owners.insert(slug.to_owned(), t["owner_key"].as_str().unwrap().to_owned());
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut url = url;
    let mut total_acked = 0usize;

    for round in 0..rounds {
        let mut writers = Vec::new();
        for w in 0..6usize {
            let slug = if w % 2 == 0 { "crash-a" } else { "crash-b" };
            let client = Client::new(&url, Some(owners[slug].clone()));
            let ledger = ledger.clone();
            let mut wrng = rand::rngs::StdRng::seed_from_u64(rng.gen());
            writers.push(tokio::spawn(async move {
                let mut n = 0usize;
                loop {
                    // Half new files, half rewrites of one hot file per writer.
                    let path = if wrng.gen_bool(0.5) { format!("/r{round}/w{w}/{n}") } else { format!("/hot/w{w}") };
                    let len = wrng.gen_range(0..20_000);
                    let mut content = format!("{slug}:{path}:{n}:").into_bytes();
                    content.extend((0..len).map(|_| wrng.gen::<u8>()));
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
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(40..250))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in writers {
            total_acked += w.await.unwrap();
        }

        let (c, u) = start(&data);
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
        for (slug, owner) in &owners {
            let client = Client::new(&url, Some(owner.clone()));
            let report = client.verify_audit().await.unwrap();
            assert_eq!(report["ok"], true, "round {round}: audit chain of {slug} broken: {report}");
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
    let db = rusqlite::Connection::open(data.join("tenantry.db")).unwrap();
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
        let counted: (i64, i64) = db
            .query_row("SELECT storage_bytes, files FROM tenant_usage WHERE tenant_id = ?1", [&tenant_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((counted.0 as u64, counted.1 as u64), (bytes, files), "usage counters of {tenant_id}");
    }
    let _ = child.kill();
    assert!(total_acked > rounds, "the writers got too few writes in ({total_acked}) for the test to mean much");
    println!("crash test: {rounds} SIGKILLs survived, {total_acked} acknowledged writes checked");
}

/// Metering is counted in memory and flushed every 2 s: a crash may lose the last seconds, never
/// more, and never counts a request twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_at_most_the_last_seconds_of_metering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = start(&data);
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
    let (mut child, url) = start(&data);
    let op = Client::new(&url, Some(OPERATOR.into()));
    let usage = op.tenant_usage("metered", "").await.unwrap();
    let calls = usage["usage"]["api_calls"].as_u64().unwrap();
    assert!((40..=65).contains(&calls), "{calls} calls metered; 40 were flushed before the crash, 65 made");
    child.kill().unwrap();
    child.wait().unwrap();
}
