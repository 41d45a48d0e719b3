//! The runbooks in docs/runbooks are tested as written: every ```sh block of a page is run, in
//! order, as one bash script (`set -euo pipefail`) against a real server started the way the page
//! assumes (`tenantry serve` with its data in `./tenantry-data`), with the real binary on PATH.
//! Then the state the page promises is checked.

mod common;

use serde_json::json;
use std::path::Path;
use tenantry_client::Client;

/// The ```sh blocks of a markdown page, joined.
fn script_of(page: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(page)).unwrap();
    let mut out = String::from("set -euo pipefail\n");
    let mut inside = false;
    for line in text.lines() {
        match (inside, line.trim_end()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, l) => {
                out.push_str(l);
                out.push('\n');
            }
            _ => {}
        }
    }
    assert!(out.lines().count() > 10, "{page} has its commands in ```sh blocks");
    out
}

/// Runs the page's script in `dir` with the server at `url`; returns its standard output.
fn run_page(page: &str, dir: &Path, url: &str) -> String {
    run_page_with(page, dir, url, &[])
}

/// [`run_page`] with more variables set (and PostgreSQL's programs on the PATH, when the test
/// cluster's are known).
fn run_page_with(page: &str, dir: &Path, url: &str, vars: &[(&str, &str)]) -> String {
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let mut path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    if let Ok(pg_bin) = std::env::var("PG_CLUSTER_BIN") {
        path = format!("{pg_bin}:{path}");
    }
    let mut cmd = std::process::Command::new("bash");
    for (k, _) in std::env::vars() {
        if k.starts_with("TENANTRY_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg("-c")
        .arg(script_of(page))
        .current_dir(dir)
        .env("PATH", path)
        .env("TENANTRY_URL", url)
        .env("TENANTRY_LOG", "error")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{page} failed:\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `tenantry serve` in a temp dir with its data in `./tenantry-data` and a generated operator key,
/// as the pages assume; and an operator client.
fn serve_as_the_pages_assume() -> (tempfile::TempDir, common::Served, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::clean_command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data", "tenantry-data"]).current_dir(dir.path());
    let served = common::start_serving(cmd);
    let operator_key = std::fs::read_to_string(dir.path().join("tenantry-data/admin.key")).unwrap();
    let op = Client::new(&served.url, Some(operator_key.trim().to_owned()));
    (dir, served, op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_and_restore_runbook_works_as_written() {
    let (dir, served, op) = serve_as_the_pages_assume();
    let mut child = served.child;
    let acme = op.create_tenant(&json!({"slug": "acme", "tier": "enterprise", "name": "Acme"})).await.unwrap();
    let owner = Client::new(&served.url, Some(acme["owner_key"].as_str().unwrap().to_owned()));
    for i in 0..12 {
        owner.put_file(&format!("/docs/{i}.txt"), format!("report {i}").into_bytes(), None).await.unwrap();
    }
    owner.put_file("/report.pdf", b"%PDF original".to_vec(), None).await.unwrap();
    owner.set_memory("agent", "plan", &json!({"step": 3}), None).await.unwrap();
    op.create_tenant(&json!({"slug": "globex", "tier": "enterprise"})).await.unwrap();

    // (What each on_conflict policy does is tested in tests/api/import.rs; here, that the
    // commands run as written.)
    let out = run_page("docs/runbooks/backup-restore.md", dir.path(), &served.url);
    assert!(out.contains("[acme-drill] imported acme.tenantry"), "{out}");
    assert!(out.contains("[acme-restored] imported acme.tenantry"), "{out}");

    // Backups of every tenant, each verifying, with its manifest beside it.
    for slug in ["default", "acme", "globex"] {
        let bundle = dir.path().join(format!("backups/{slug}.tenantry"));
        let (header, manifest) = tenantry_bundle::verify(std::fs::File::open(&bundle).unwrap()).unwrap();
        assert_eq!(header.tenant["slug"], slug);
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("backups/{slug}.json"))).unwrap()).unwrap();
        assert_eq!(saved["manifest"]["files"], manifest.files);
    }
    // The drill tenant is gone; the restored one holds what acme held, and a new admin key.
    assert_eq!(op.show_tenant("acme-drill").await.unwrap_err().code(), Some("tenant_not_found"));
    let usage = |slug: &'static str| {
        let op = op.clone();
        async move { op.tenant_usage(slug, "").await.unwrap()["usage"].clone() }
    };
    let (a, r) = (usage("acme").await, usage("acme-restored").await);
    assert_eq!((a["files"].as_u64(), a["storage_bytes"].as_u64()), (r["files"].as_u64(), r["storage_bytes"].as_u64()));
    assert_eq!(r["files"], 13);
    let restored = op.clone().with_tenant(Some("acme-restored".into()));
    assert_eq!(&restored.get_file("/report.pdf").await.unwrap()[..], b"%PDF original");
    assert_eq!(restored.get_memory("agent", "plan").await.unwrap()["value"], json!({"step": 3}));
    assert_eq!(op.show_tenant("acme-restored").await.unwrap()["name"], "Acme");
    let keys = restored.list_keys().await.unwrap();
    assert!(keys["items"].as_array().unwrap().iter().any(|k| k["name"] == "restored-admin"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graduation_runbook_works_as_written() {
    let (dir, served, op) = serve_as_the_pages_assume();
    let mut child = served.child;
    let acme = op.create_tenant(&json!({"slug": "acme", "tier": "starter"})).await.unwrap();
    let id = acme["id"].as_str().unwrap().to_owned();
    let owner = Client::new(&served.url, Some(acme["owner_key"].as_str().unwrap().to_owned()));
    for i in 0..20 {
        owner.put_file(&format!("/docs/{i}.txt"), format!("doc {i}").into_bytes(), None).await.unwrap();
    }
    // Refused while the tier does not allow it (the page says so).
    let refused = op.move_tenant("acme", "dedicated").await.unwrap_err();
    assert_eq!(refused.code(), Some("feature_not_in_tier"));

    let out = run_page("docs/runbooks/graduation.md", dir.path(), &served.url);
    assert!(out.contains("[acme] moved shared -> dedicated: 20 files"), "{out}");
    assert!(out.contains("[acme] moved dedicated -> shared: 20 files"), "{out}");
    assert!(out.contains("verified"), "{out}");
    let shown = op.show_tenant("acme").await.unwrap();
    assert_eq!((shown["placement"].as_str(), shown["tier"].as_str()), (Some("shared"), Some("starter")));
    assert!(!dir.path().join(format!("tenantry-data/tenants/{id}.db")).exists(), "moved back: no database of its own");
    assert_eq!(&owner.get_file("/docs/7.txt").await.unwrap()[..], b"doc 7", "its key works throughout");
    let bigco: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bigco.json")).unwrap()).unwrap();
    assert_eq!(bigco["placement"], "dedicated");
    let bigco_id = bigco["id"].as_str().unwrap();
    assert!(dir.path().join(format!("tenantry-data/tenants/{bigco_id}.db")).exists());
    let audit = op.clone().with_tenant(Some("acme".into())).audit("?action=tenant.move").await.unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_to_postgres_runbook_works_as_written() {
    use tenantry_store_postgres::testing::{cluster_configured, CLUSTER_VAR};
    if !cluster_configured() {
        return;
    }
    let admin_url = std::env::var(CLUSTER_VAR).unwrap();
    let config: tokio_postgres::Config = admin_url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        other => panic!("the test cluster is reached over TCP, not {other:?}"),
    };
    let hostport = format!("{host}:{}", config.get_ports().first().copied().unwrap_or(5432));
    let suffix: String = (0..8).map(|_| (b'a' + rand::random::<u8>() % 26) as char).collect();
    let (db, owner, app) = (format!("rb_{suffix}"), format!("rbo_{suffix}"), format!("rba_{suffix}"));

    let (dir, served, op) = serve_as_the_pages_assume();
    let mut child = served.child;
    let acme = op.create_tenant(&json!({"slug": "acme", "tier": "pro", "name": "Acme"})).await.unwrap();
    let owner_key = acme["owner_key"].as_str().unwrap().to_owned();
    let acme_client = Client::new(&served.url, Some(owner_key.clone()));
    acme_client.put_file("/plan.md", b"# the plan".to_vec(), None).await.unwrap();
    // Stopped as the page says (it flushes and closes the data directory).
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let out = run_page_with(
        "docs/runbooks/sqlite-to-postgres.md",
        dir.path(),
        &url,
        &[
            ("PG_ADMIN_URL", admin_url.as_str()),
            ("PG_HOSTPORT", hostport.as_str()),
            ("DB", db.as_str()),
            ("OWNER", owner.as_str()),
            ("APP", app.as_str()),
            ("TENANTRY_LISTEN", listen.as_str()),
        ],
    );
    assert!(out.contains("[db copy] 2 tenants: 2 copied, 0 there already, 0 not copied"), "{out}");
    assert!(out.contains("[db copy] 2 tenants: 0 copied, 2 there already, 0 not copied"), "{out}");
    assert!(out.contains("[acme] audit chain intact: 2 entries verified"), "{out}");
    assert!(out.contains("acme") && out.contains("default"), "the tenant list: {out}");

    // The copy is served from PostgreSQL: the key made on SQLite reads the file.
    let mut cmd = common::clean_command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data", "tenantry-data"])
        .current_dir(dir.path())
        .env("TENANTRY_DATABASE_URL", format!("postgres://{app}@{hostport}/{db}"));
    let served = common::start_serving(cmd);
    let mut child = served.child;
    let acme_client = Client::new(&served.url, Some(owner_key));
    assert_eq!(&acme_client.get_file("/plan.md").await.unwrap()[..], b"# the plan");
    assert!(served.stdout_lines.iter().any(|l| l.contains("PostgreSQL")), "{:?}", served.stdout_lines);
    child.kill().unwrap();
    child.wait().unwrap();

    let psql = std::env::var("PG_CLUSTER_BIN").map(|b| format!("{b}/psql")).unwrap_or_else(|_| "psql".into());
    let dropped = std::process::Command::new(psql)
        .arg(&admin_url)
        .args(["-q", "-c", &format!("DROP DATABASE {db} WITH (FORCE)"), "-c", &format!("DROP ROLE {owner}")])
        .args(["-c", &format!("DROP ROLE {app}")])
        .status()
        .unwrap();
    assert!(dropped.success());
}
