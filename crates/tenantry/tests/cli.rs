//! The real `tenantry` binary: `serve` as a process (first start, restart, signals, schema
//! checks) and the CLI client against it.

mod common;

use serde_json::Value;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn clean_command() -> Command {
    let mut c = common::clean_command();
    c.env("TENANTRY_LOG", "warn");
    c
}

struct Server {
    child: Child,
    url: String,
    stdout_lines: Vec<String>,
}

/// Starts `tenantry serve` on port 0 and reads its first lines until it says where it listens.
fn serve(data: &Path, extra_env: &[(&str, &str)]) -> Server {
    let mut cmd = clean_command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data).stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let served = common::start_serving(cmd);
    Server { child: served.child, url: served.url, stdout_lines: served.stdout_lines }
}

impl Server {
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("serve did not stop within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

struct Cli {
    url: String,
    key: String,
    client_config: PathBuf,
}

impl Cli {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = clean_command();
        c.args(args)
            .env("TENANTRY_URL", &self.url)
            .env("TENANTRY_KEY", &self.key)
            .env("TENANTRY_CLIENT_CONFIG", &self.client_config);
        c.stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} --json is not one JSON document ({e}): {text}"))
    }
    fn with_key(&self, key: &str) -> Cli {
        Cli { url: self.url.clone(), key: key.to_owned(), client_config: self.client_config.clone() }
    }
}

fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.key")).unwrap().trim().to_owned()
}

#[test]
fn first_start_prints_the_operator_key_once_and_stores_it_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let key = admin_key(&data);
    assert!(
        server.stdout_lines.iter().any(|l| l.contains("operator key") && l.contains(&key)),
        "{:?}",
        server.stdout_lines
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The data dir (databases, webhook secrets) is closed to other local users.
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
    let cli = Cli { url: server.url.clone(), key: key.clone(), client_config: dir.path().join("client.toml") };
    cli.ok(&["tenant", "create", "acme"]);
    assert!(server.terminate().success(), "SIGTERM is a clean stop");
    #[cfg(unix)]
    {
        // A data dir opened up by hand is narrowed again at the next start.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let again = serve(&data, &[]);
    assert!(!again.stdout_lines.iter().any(|l| l.contains(&key)), "the key is printed only once");
    // Every start says where to go, and where the key is.
    let url = &again.url;
    let key_file = std::path::absolute(data.join("admin.key")).unwrap();
    assert_eq!(
        again.stdout_lines[1..],
        [
            format!("  API          {url}/v1/  (Authorization: Bearer KEY)"),
            format!("  API docs     {url}/docs  (OpenAPI: {url}/openapi.json)"),
            format!("  metrics      {url}/metrics"),
            format!("  health       {url}/healthz, {url}/readyz"),
            format!("  operator key in {}", key_file.display()),
            "  next         tenantry tenant create acme   (the README's quickstart)".to_owned(),
        ]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
    let cli = Cli { url: again.url.clone(), ..cli };
    let t = cli.json(&["tenant", "show", "acme"]);
    assert_eq!(t["slug"], "acme");
}

#[test]
fn the_operator_key_from_the_environment_is_used_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[("TENANTRY_ADMIN_KEY", "my-operator-secret")]);
    assert!(!data.join("admin.key").exists());
    let cli =
        Cli { url: server.url.clone(), key: "my-operator-secret".into(), client_config: dir.path().join("c.toml") };
    assert_eq!(cli.json(&["whoami"])["key"]["operator"], true);
    let wrong = cli.with_key("other");
    assert!(!wrong.run(&["whoami"]).status.success());
}

#[test]
fn a_data_dir_from_a_newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    serve(&data, &[]).terminate();
    let db = rusqlite::Connection::open(data.join("tenantry.db")).unwrap();
    db.pragma_update(None, "user_version", 999).unwrap();
    drop(db);
    let out = clean_command().args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&data).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema version 999") && err.contains("newer"), "{err}");
}

#[test]
fn the_cli_creates_switches_and_moves_bytes_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };

    let created = cli.ok(&["tenant", "create", "acme", "--name", "Acme Inc", "--tier", "pro"]);
    assert!(created.starts_with("[acme] created"), "{created}");
    let owner =
        created.lines().find(|l| l.contains("owner key")).unwrap().split_whitespace().last().unwrap().to_owned();
    assert!(owner.starts_with("tnr_key_"));

    let switched = cli.ok(&["tenant", "switch", "acme"]);
    assert!(switched.starts_with("[acme]"), "{switched}");
    let status = cli.ok(&["tenant", "status"]);
    assert!(status.starts_with("[acme] acting on this tenant: active tenant (tenantry tenant switch)"), "{status}");

    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let mut put =
        cli.cmd(&["fs", "put", "/bin/all.bytes"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    put.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = put.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("[acme] wrote /bin/all.bytes"));

    let got = cli.run(&["fs", "get", "/bin/all.bytes"]);
    assert!(got.status.success());
    assert_eq!(got.stdout, bytes, "fs get writes the bytes unchanged");
    assert!(String::from_utf8_lossy(&got.stderr).starts_with("[acme]"));

    let local = dir.path().join("copy.bin");
    cli.ok(&["fs", "get", "/bin/all.bytes", "-o", local.to_str().unwrap()]);
    assert_eq!(std::fs::read(&local).unwrap(), bytes);
    cli.ok(&["fs", "put", "/docs/copy.bin", local.to_str().unwrap()]);

    let ls = cli.json(&["fs", "ls", "/", "--recursive"]);
    let paths: Vec<_> = ls["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/bin/all.bytes", "/docs/copy.bin"]);
    let human = cli.ok(&["fs", "ls", "/bin"]);
    assert!(human.starts_with("[acme] 1 file(s) under /bin") && human.contains("all.bytes"), "{human}");
    cli.ok(&["fs", "rm", "/bin/all.bytes"]);
    assert!(!cli.run(&["fs", "get", "/bin/all.bytes"]).status.success());

    // The owner key acts on its own tenant without any switching.
    let as_owner = Cli { client_config: dir.path().join("none.toml"), ..cli.with_key(&owner) };
    let k = as_owner.json(&["key", "create", "ci", "--role", "reader", "--prefix", "/docs"]);
    assert_eq!((k["role"].as_str(), k["prefix"].as_str()), (Some("reader"), Some("/docs")));
    let keys = as_owner.ok(&["key", "list"]);
    assert!(keys.starts_with("[acme] keys") && keys.contains("ci"), "{keys}");
    as_owner.ok(&["key", "revoke", k["id"].as_str().unwrap()]);
    let reader = as_owner.with_key(k["key"].as_str().unwrap());
    assert!(!reader.run(&["whoami"]).status.success());

    let usage = cli.ok(&["tenant", "usage", "acme"]);
    assert!(usage.starts_with("[acme] usage "), "{usage}");
    assert!(usage.contains("max") || usage.contains("unlimited") || usage.contains("storage_bytes"), "{usage}");
    let csv_path = dir.path().join("usage.csv");
    cli.ok(&["tenant", "usage", "acme", "--csv", csv_path.to_str().unwrap()]);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with("tenant,period,api_calls,"), "{csv}");
    assert_eq!(cli.json(&["tenant", "usage", "acme"])["tenant"], "acme");

    let verify = as_owner.ok(&["audit", "verify"]);
    assert!(verify.starts_with("[acme] audit chain intact"), "{verify}");
    let log = as_owner.json(&["audit", "--action", "file.write"]);
    assert_eq!(log["items"].as_array().unwrap().len(), 2);
}

#[test]
fn tenant_resolution_follows_flag_env_active_only_default() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    let slug = |args: &[&str], env: Option<&str>| {
        let mut c = cli.cmd(args);
        if let Some(e) = env {
            c.env("TENANTRY_TENANT", e);
        }
        let out = c.arg("--json").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["tenant"].as_str().unwrap().to_owned(), v["source"].as_str().unwrap().to_owned())
    };
    assert_eq!(slug(&["tenant", "status"], None), ("default".into(), "default".into()));
    cli.ok(&["tenant", "create", "acme"]);
    assert_eq!(slug(&["tenant", "status"], None).0, "acme", "the only tenant besides default");
    cli.ok(&["tenant", "create", "globex"]);
    assert_eq!(slug(&["tenant", "status"], None).0, "default");
    cli.ok(&["tenant", "switch", "globex"]);
    assert_eq!(slug(&["tenant", "status"], None).0, "globex");
    assert_eq!(slug(&["tenant", "status"], Some("acme")), ("acme".into(), "TENANTRY_TENANT".into()));
    assert_eq!(slug(&["tenant", "status", "--tenant", "default"], Some("acme")), ("default".into(), "--tenant".into()));
}

#[test]
fn errors_exit_non_zero_with_one_line_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    let out = cli.run(&["tenant", "show", "ghost"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tenant 'ghost' not found; `tenantry tenant list` shows the tenants"), "{err}");

    cli.ok(&["tenant", "create", "acme"]);
    let out = cli.run(&["tenant", "delete", "acme"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert_eq!(cli.json(&["tenant", "show", "acme"])["status"], "active");
    cli.ok(&["tenant", "delete", "acme", "--yes"]);
    assert_eq!(cli.json(&["tenant", "show", "acme"])["status"], "archived");
    cli.ok(&["tenant", "purge", "acme", "--yes"]);
    assert!(!cli.run(&["tenant", "show", "acme"]).status.success());

    let offline = Cli { url: "http://127.0.0.1:9".into(), ..cli.with_key("x") };
    let out = offline.run(&["tenant", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `tenantry serve` running?"));
}

#[test]
fn the_cli_reaches_memory_search_events_and_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[("TENANTRY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "1")]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    cli.ok(&["tenant", "create", "acme", "--tier", "pro"]);

    let set = cli.ok(&["mem", "set", "agent:a", "notes/1", r#"{"topic": "quarterly budget"}"#, "--ttl", "3600"]);
    assert!(set.starts_with("[acme] set agent:a/notes/1") && set.contains("expires"), "{set}");
    cli.ok(&["mem", "set", "agent:a", "plain", "just words", "--string"]);
    let bad = cli.run(&["mem", "set", "agent:a", "x", "not json"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--string"));
    assert_eq!(cli.json(&["mem", "get", "agent:a", "plain"])["value"], "just words");
    let human = cli.ok(&["mem", "get", "agent:a", "notes/1"]);
    assert!(human.starts_with("[acme] agent:a/notes/1") && human.contains("quarterly budget"), "{human}");
    let ls = cli.json(&["mem", "ls", "agent:a"]);
    let keys: Vec<_> = ls["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["notes/1", "plain"]);
    assert!(cli.ok(&["mem", "ls", "agent:a", "--prefix", "notes/"]).starts_with("[acme] 1 entry in agent:a"));

    let plan = dir.path().join("plan.md");
    std::fs::write(&plan, "a plan without the word").unwrap();
    cli.ok(&["fs", "put", "/docs/plan.md", plan.to_str().unwrap()]);
    let found = cli.json(&["fs", "search", "budget"]);
    assert_eq!(found["items"][0]["kind"], "memory");
    let human = cli.ok(&["fs", "search", "budget"]);
    assert!(human.starts_with("[acme] 1 hit(s)") && human.contains("«budget»"), "{human}");

    let hook = cli.json(&["webhook", "create", "http://127.0.0.1:9/hook", "--event", "file.written"]);
    let id = hook["id"].as_str().unwrap().to_owned();
    assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(cli.ok(&["webhook", "list"]).contains(&id));
    let deliveries = cli.ok(&["webhook", "deliveries", &id]);
    assert!(deliveries.starts_with("[acme]"), "{deliveries}");
    cli.ok(&["webhook", "rm", &id]);

    cli.ok(&["mem", "rm", "agent:a", "plain"]);
    let events = cli.json(&["events"]);
    let kinds: Vec<_> = events["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["memory.set", "memory.set", "file.written", "webhook.created", "webhook.deleted", "memory.deleted"]
    );
    let human = cli.ok(&["events", "--after", "5"]);
    assert!(human.starts_with("[acme] 1 event(s)") && human.contains("memory.deleted"), "{human}");

    // --follow prints events as they happen, one JSON document per line.
    let mut follow = cli.cmd(&["events", "--follow", "--json", "--after", "6"]).stdout(Stdio::piped()).spawn().unwrap();
    cli.ok(&["mem", "set", "agent:a", "live", "1"]);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(follow.stdout.take().unwrap()), &mut line).unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((e["seq"].as_u64(), e["key"].as_str()), (Some(7), Some("live")));
}

#[test]
fn migrate_reports_a_name_that_is_not_utf8_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    cli.ok(&["tenant", "create", "legacy", "--tier", "pro"]);
    let src = dir.path().join("old-install");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9.txt")), "old bytes").unwrap();
    std::fs::write(src.join("fine.txt"), "new bytes").unwrap();
    let from = src.to_str().unwrap();
    let plan = cli.json(&["migrate", "--from", from, "--tenant", "legacy"]);
    assert_eq!(plan["create"]["files"], 1, "{plan}");
    assert_eq!(plan["skipped"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan["skipped"][0]["reason"], "the name is not UTF-8");
    assert!(plan["skipped"][0]["local"].as_str().unwrap().ends_with("/latin1-\u{fffd}t\u{fffd}.txt"), "{plan}");
    let human = cli.ok(&["migrate", "--from", from, "--tenant", "legacy"]);
    assert!(human.contains("skipped  ") && human.contains("not UTF-8"), "{human}");
}

#[test]
fn migrate_copies_a_folder_reports_bad_names_and_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    cli.ok(&["tenant", "create", "legacy", "--tier", "pro"]);
    let src = dir.path().join("old-install");
    std::fs::create_dir_all(src.join("docs/deep/er")).unwrap();
    std::fs::create_dir_all(src.join("ünïcode")).unwrap();
    std::fs::write(src.join("readme.md"), "# hello").unwrap();
    std::fs::write(src.join("empty.txt"), "").unwrap();
    std::fs::write(src.join("docs/deep/er/data.bin"), vec![7u8; 70_000]).unwrap();
    std::fs::write(src.join("ünïcode/ça.txt"), "ça va").unwrap();
    std::fs::write(src.join("bad\\name.txt"), "backslash").unwrap();
    std::fs::write(src.join("line\nbreak.txt"), "control").unwrap();
    std::os::unix::fs::symlink(src.join("readme.md"), src.join("link.md")).unwrap();
    let from = src.to_str().unwrap();

    let plan = cli.json(&["migrate", "--from", from, "--dry-run", "--tenant", "legacy"]);
    assert_eq!(plan["create"]["files"], 4);
    assert_eq!(plan["create"]["bytes"], 7 + 70_000 + "ça va".len() as u64);
    assert_eq!(plan["skipped"].as_array().unwrap().len(), 3, "{plan}");
    let reasons = plan["skipped"].to_string();
    assert!(
        reasons.contains("backslash") && reasons.contains("control") && reasons.contains("symbolic link"),
        "{reasons}"
    );
    assert!(cli.json(&["fs", "ls", "/", "--recursive", "--tenant", "legacy"])["items"].as_array().unwrap().is_empty());
    let human = cli.ok(&["migrate", "--from", from, "--dry-run", "--tenant", "legacy"]);
    assert!(
        human.starts_with("[legacy] ") && human.contains("would copy") && human.contains("create   /readme.md"),
        "{human}"
    );

    let done = cli.json(&["migrate", "--from", from, "--tenant", "legacy"]);
    assert_eq!(done["create"]["files"], 4);
    assert!(done["failed"].as_array().unwrap().is_empty());
    let got = cli.run(&["fs", "get", "/docs/deep/er/data.bin", "--tenant", "legacy"]);
    assert_eq!(got.stdout, vec![7u8; 70_000]);
    assert_eq!(cli.run(&["fs", "get", "/ünïcode/ça.txt", "--tenant", "legacy"]).stdout, "ça va".as_bytes());

    // Again: nothing to do. After one local change: exactly that file is replaced.
    let again = cli.json(&["migrate", "--from", from, "--tenant", "legacy"]);
    assert_eq!((again["create"]["files"].clone(), again["unchanged"]["files"].clone()), (0.into(), 4.into()));
    std::fs::write(src.join("readme.md"), "# hello again").unwrap();
    let third = cli.json(&["migrate", "--from", from, "--tenant", "legacy"]);
    assert_eq!((third["replace"]["files"].clone(), third["unchanged"]["files"].clone()), (1.into(), 3.into()));
    assert!(!cli.run(&["migrate", "--from", "/nonexistent/dir"]).status.success());

    // The migrated tenant exports as a bundle that verifies.
    let out = dir.path().join("legacy.tenantry");
    let human = cli.ok(&["tenant", "export", "legacy", "-o", out.to_str().unwrap()]);
    assert!(
        human.starts_with("[legacy] exported to") && human.contains("4 files") && human.ends_with("verified\n"),
        "{human}"
    );
    let (header, manifest) = tenantry_bundle::verify(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!((header.tenant["slug"].as_str(), manifest.files), (Some("legacy"), 4));
    let json = cli.json(&["tenant", "export", "legacy", "-o", out.to_str().unwrap()]);
    assert_eq!(json["manifest"]["files"], 4);
    assert!(!cli.run(&["tenant", "export", "ghost", "-o", out.to_str().unwrap()]).status.success());
    assert!(!dir.path().join("legacy.tenantry.partial").exists());

    // And imports into another tenant: a report for people, the report as JSON for scripts.
    cli.ok(&["tenant", "create", "staging", "--tier", "enterprise"]);
    let human = cli.ok(&["tenant", "import", "staging", out.to_str().unwrap()]);
    assert!(human.starts_with("[staging] imported"), "{human}");
    assert!(human.contains("files      4 created"), "{human}");
    // The empty tenant took the bundle's settings, and the report names each change.
    assert!(human.contains("\n  settings   applied\n  changed    name: \"staging\" → \"legacy\"\n"), "{human}");
    assert!(human.contains("\n  changed    tier: \"enterprise\" → \"pro\"\n"), "{human}");
    let json = cli.json(&["tenant", "import", "staging", out.to_str().unwrap(), "--on-conflict", "rename"]);
    assert_eq!((json["files"]["unchanged"].clone(), json["on_conflict"].clone()), (4.into(), "rename".into()));
    let bad = cli.run(&["tenant", "import", "staging", out.to_str().unwrap(), "--on-conflict", "merge"]);
    assert!(!bad.status.success());
    let missing = cli.run(&["tenant", "import", "staging", "/nonexistent/x.tenantry"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/x.tenantry"));
}

#[test]
fn the_cli_waits_out_a_rate_limit_and_names_the_command_that_lifts_a_quota() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let op = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    // 20 a minute: a burst of 10, then one every 3 s.
    let created = op.json(&["tenant", "create", "slow"]);
    op.ok(&["tenant", "update", "slow", "--quota", "max_requests_per_minute=20", "--quota", "max_keys=1"]);
    let owner = op.with_key(created["owner_key"].as_str().unwrap());
    // Once the burst is spent, a command's request is refused with a Retry-After of a few
    // seconds: the CLI waits it out and the command succeeds.
    let mut retried = None;
    for n in 0..12 {
        let out = owner.run(&["fs", "ls", "/"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        if stderr.contains("rate limited: retrying in ") {
            retried = Some(n);
            break;
        }
    }
    assert!(retried.is_some_and(|n| n >= 4), "the burst of 10 passes first: {retried:?}");
    op.ok(&["tenant", "update", "slow", "--quota", "max_requests_per_minute=null", "--quota", "max_keys=1"]);
    // The owner key is the one key max_keys allows: a second is refused with the way out.
    let out = owner.run(&["key", "create", "ci", "--role", "reader"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_keys is 1") && err.contains("`tenantry tenant update slow --quota max_keys=N`"), "{err}");
    let webhook = owner.run(&["webhook", "create", "https://receiver.example/hook", "--event", "file.written"]);
    let err = String::from_utf8_lossy(&webhook.stderr);
    assert!(err.contains("the 'free' tier does not include webhooks"), "{err}");
    assert!(err.contains("`tenantry tenant update slow --tier starter`"), "{err}");
}

#[test]
fn a_key_given_for_a_command_acts_on_its_own_tenant_and_switch_clear_forgets_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    cli.ok(&["tenant", "create", "acme"]);
    let beta = cli.json(&["tenant", "create", "beta", "--tier", "starter"]);
    let beta_key = beta["owner_key"].as_str().unwrap();
    cli.ok(&["tenant", "switch", "acme"]);

    // The active tenant is acme, but beta's key can act on beta only: it wins, and says so.
    let as_beta = cli.with_key(beta_key);
    let status = as_beta.json(&["tenant", "status"]);
    assert_eq!(status["tenant"], "beta");
    assert_eq!(status["source"], "the tenant of the key from TENANTRY_KEY, not the active tenant 'acme'");
    let out = as_beta.run(&["fs", "put", "/notes.txt", "/dev/null"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("[beta] wrote /notes.txt"));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "note: acting on 'beta', the tenant of the key from TENANTRY_KEY; the active tenant 'acme' is not used"
    );
    // The operator key is for every tenant: the active tenant still counts for it.
    assert_eq!(cli.json(&["tenant", "status"])["tenant"], "acme");

    // Clearing is local: it needs no key.
    let cleared = clean_command()
        .args(["tenant", "switch", "--clear"])
        .env("TENANTRY_CLIENT_CONFIG", &cli.client_config)
        .env("TENANTRY_DATA", dir.path().join("no-data-here"))
        .output()
        .unwrap();
    let said = String::from_utf8(cleared.stdout).unwrap();
    assert!(cleared.status.success() && said.starts_with("no active tenant now"), "{said}");
    assert_eq!(cli.json(&["tenant", "status"])["source"], "default", "two tenants besides default, none active");
    let both = cli.run(&["tenant", "switch", "acme", "--clear"]);
    assert_eq!(both.status.code(), Some(2), "a slug and --clear together are a usage error");
}

#[test]
fn fs_ls_shows_folders_and_a_put_without_a_type_gets_one_from_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let operator =
        Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    let owner = operator.json(&["tenant", "create", "acme"])["owner_key"].as_str().unwrap().to_owned();
    let cli = operator.with_key(&owner);
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "hello").unwrap();
    for p in ["/docs/a.md", "/docs/sub/b.txt", "/top.txt"] {
        cli.ok(&["fs", "put", p, note.to_str().unwrap()]);
    }
    let put = cli.json(&["fs", "put", "/page.html", note.to_str().unwrap()]);
    assert_eq!(put["content_type"], "text/html");
    let ls = cli.json(&["fs", "ls"]);
    let items: Vec<_> = ls["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["kind"].as_str().unwrap(), i["path"].as_str().unwrap()))
        .collect();
    assert_eq!(items, [("folder", "/docs/"), ("file", "/page.html"), ("file", "/top.txt")]);
    let human = cli.ok(&["fs", "ls", "/"]);
    assert!(human.starts_with("[acme] 2 file(s) and 1 folder(s) under /\n"), "{human}");
    let top = human.lines().find(|l| l.contains("/top.txt")).unwrap();
    assert!(top.contains("text/plain") && top.contains("5 B"), "{top}");
    assert!(human.lines().any(|l| l.contains("/docs/") && l.contains("folder")), "{human}");
    let docs = cli.json(&["fs", "ls", "/docs"]);
    assert_eq!(docs["items"][0]["content_type"], "text/markdown");
    assert_eq!(docs["items"][1], serde_json::json!({"kind": "folder", "path": "/docs/sub/"}));

    let usage = operator.ok(&["tenant", "usage", "acme"]);
    let storage = usage.lines().find(|l| l.contains("storage_bytes")).unwrap();
    assert!(storage.contains("20 B") && storage.contains("1.0 GiB"), "sizes for people: {storage}");
    assert!(usage.contains("\nAPI calls per day (a full bar is "), "{usage}");
    let today = usage.lines().last().unwrap();
    assert!(today.ends_with(&"█".repeat(40)), "the busiest day, today, has the full bar: {today}");
}

#[test]
fn failures_exit_with_the_status_of_their_kind_and_as_json_under_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    let owner = cli.json(&["tenant", "create", "acme"])["owner_key"].as_str().unwrap().to_owned();
    let reader =
        cli.with_key(&owner).json(&["key", "create", "r", "--role", "reader"])["key"].as_str().unwrap().to_owned();
    let status = |cli: &Cli, args: &[&str]| cli.run(args).status.code();
    assert_eq!(status(&cli, &["tenant", "show", "ghost"]), Some(3), "not found");
    assert_eq!(status(&cli, &["tenant", "create", "Bad Slug"]), Some(2), "invalid slug");
    assert_eq!(status(&cli, &["tenant", "delete", "acme"]), Some(2), "no --yes");
    assert_eq!(status(&cli, &["fs", "ls", "--no-such-flag"]), Some(2), "a flag clap does not know");
    assert_eq!(status(&cli.with_key(&reader), &["fs", "rm", "/x"]), Some(4), "a reader may not delete");
    assert_eq!(status(&cli.with_key("tnr_key_wrong"), &["whoami"]), Some(4), "an unknown key");
    let offline = Cli { url: "http://127.0.0.1:9".into(), ..cli.with_key("x") };
    assert_eq!(status(&offline, &["tenant", "list"]), Some(5));

    let out = cli.run(&["tenant", "show", "ghost", "--json"]);
    let err: Value = serde_json::from_slice(&out.stderr).expect("one JSON document on standard error");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("and the same one on standard output");
    assert_eq!(doc, err);
    assert_eq!(err["error"]["code"], "tenant_not_found");
    assert_eq!(err["error"]["exit_status"], 3);
    assert_eq!(err["error"]["message"], "tenant 'ghost' not found; `tenantry tenant list` shows the tenants");

    // No key anywhere: said before anything is sent, naming where it looked.
    let mut bare = clean_command();
    bare.args(["whoami"]).env("TENANTRY_URL", &server.url).env("TENANTRY_DATA", dir.path().join("elsewhere"));
    let out = bare.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = dir.path().join("elsewhere").join("admin.key");
    assert!(
        err.starts_with("tenantry: no key to send: no --key, TENANTRY_KEY and TENANTRY_ADMIN_KEY are unset"),
        "{err}"
    );
    assert!(err.contains(&format!("{} does not exist", file.display())), "{err}");
    let unaccepted = cli.with_key("tnr_key_wrong").run(&["whoami"]);
    let err = String::from_utf8_lossy(&unaccepted.stderr);
    assert!(err.contains("the server did not accept the key from TENANTRY_KEY"), "{err}");

    // A command line clap refuses is a usage error, one JSON document too under --json.
    let out = cli.run(&["fs", "ls", "--bogus", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["error"],
        serde_json::json!({"code": "usage", "exit_status": 2,
            "message": "unexpected argument '--bogus' found (tenantry --help lists the commands)"})
    );
    let help = String::from_utf8(clean_command().arg("--help").output().unwrap().stdout).unwrap();
    assert!(help.contains("Exit status:") && help.contains("5  the server cannot be reached"), "{help}");
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = clean_command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&data).stderr(Stdio::piped());
    let mut served = common::start_serving(cmd);
    served.child.kill().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut served.child.stderr.take().unwrap(), &mut log).unwrap();
    served.child.wait().unwrap();
    assert!(log.contains("WARN") && log.contains("narrowed to 0700"), "{log}");
    assert!(!log.contains('\u{1b}'), "no escape codes: {log:?}");
}

#[test]
fn db_migrate_prepares_a_postgres_database_once_and_says_so() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(tenantry_store_postgres::testing::TestDatabase::create()) else { return };
    let version = tenantry_store_postgres::schema::current_version();
    let migrate = |extra: &[&str]| {
        let mut c = clean_command();
        c.args(["db", "migrate", "--url", &db.owner_url(), "--app-role", &db.app_role]).args(extra);
        c.output().unwrap()
    };
    let out = migrate(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("[db] schema version 0 → {version}; {} has row access to every table (and owns none)\n", db.app_role)
    );
    let again = migrate(&["--json"]);
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"from": version, "to": version, "app_role": db.app_role, "dedicated_databases": 0})
    );
    // The server's role may now connect; the owner may not.
    rt.block_on(async {
        tenantry_store_postgres::PgDatabase::connect(&db.app_url(), 1).await.unwrap();
        assert!(tenantry_store_postgres::PgDatabase::connect(&db.owner_url(), 1).await.is_err());
    });
    let nowhere = clean_command().args(["db", "migrate"]).output().unwrap();
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("name the database: --url postgres://"));
    let no_role = clean_command()
        .args(["db", "migrate", "--url", &db.owner_url(), "--app-role", "nobody_here"])
        .output()
        .unwrap();
    assert_eq!(no_role.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_role.stderr).contains("role \"nobody_here\" does not exist"));
    rt.block_on(db.drop_all());
}

#[test]
fn serve_from_postgres_keeps_everything_across_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(tenantry_store_postgres::testing::TestDatabase::create()) else { return };
    let migrated =
        clean_command().args(["db", "migrate", "--url", &db.owner_url(), "--app-role", &db.app_role]).output().unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app_url = db.app_url();
    let server = serve(&data, &[("TENANTRY_DATABASE_URL", &app_url)]);
    let host_and_db = app_url.rsplit('@').next().unwrap();
    assert!(server.stdout_lines.iter().any(|l| l.contains(&format!("(PostgreSQL at {host_and_db})"))));
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("c.toml") };
    let owner = cli.json(&["tenant", "create", "acme", "--tier", "pro"])["owner_key"].as_str().unwrap().to_owned();
    let acme = cli.with_key(&owner);
    let local = dir.path().join("notes.md");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(600_000).collect(); // three chunks
    std::fs::write(&local, &bytes).unwrap();
    acme.ok(&["fs", "put", "/docs/notes.md", local.to_str().unwrap()]);
    acme.ok(&["mem", "set", "agent", "topic", r#"{"focus": "solar"}"#]);
    let refused = cli.run(&["tenant", "create", "solo", "--placement", "dedicated", "--tier", "enterprise"]);
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("dedicated placement on PostgreSQL needs the owning role's URL: set [storage] owner_url"));
    assert!(server.terminate().success());

    let again = serve(&data, &[("TENANTRY_DATABASE_URL", &app_url)]);
    let acme = Cli { url: again.url.clone(), ..acme };
    assert_eq!(acme.run(&["fs", "get", "/docs/notes.md"]).stdout, bytes, "byte for byte after a restart");
    let ls = acme.json(&["fs", "ls", "/"]);
    assert_eq!(ls["items"], serde_json::json!([{"kind": "folder", "path": "/docs/"}]));
    assert_eq!(acme.json(&["mem", "get", "agent", "topic"])["value"], serde_json::json!({"focus": "solar"}));
    let verify = acme.ok(&["audit", "verify"]);
    assert!(verify.starts_with("[acme] audit chain intact"), "{verify}");
    drop(again);
    rt.block_on(db.drop_all());
}

/// `GET path` on a server, by hand (no client library): its status and body.
fn http_get(url: &str, path: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[test]
fn a_postgres_restart_answers_503_and_service_resumes_by_itself_with_nothing_lost() {
    if !tenantry_store_postgres::testing::cluster_configured() {
        return;
    }
    // A cluster of this test's own: it is stopped and started again while a server uses it.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster.sh");
    let started = Command::new("bash").arg(&script).arg("start").output().unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let exports = String::from_utf8(started.stdout).unwrap();
    let var = |name: &str| exports.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().to_owned();
    let (cluster_dir, admin_url) = (var("PG_CLUSTER_DIR"), var("TENANTRY_TEST_POSTGRES"));
    let cluster = |verb: &str| {
        let out = Command::new("bash").arg(&script).args([verb, &cluster_dir]).output().unwrap();
        assert!(out.status.success(), "{verb}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(tenantry_store_postgres::testing::TestDatabase::create_on(&admin_url));
    let migrated =
        clean_command().args(["db", "migrate", "--url", &db.owner_url(), "--app-role", &db.app_role]).output().unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[("TENANTRY_DATABASE_URL", &db.app_url())]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("c.toml") };
    let owner = cli.json(&["tenant", "create", "acme"])["owner_key"].as_str().unwrap().to_owned();
    let acme = cli.with_key(&owner);
    acme.ok(&["fs", "put", "/kept.txt", "/dev/null"]);

    cluster("halt");
    let (status, answer) = http_get(&server.url, "/readyz");
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("\"code\":\"storage_unavailable\""), "{answer}");
    let refused = acme.run(&["fs", "get", "/kept.txt", "--json"]);
    let doc: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "storage_unavailable", "{doc}");

    cluster("resume");
    let mut back = false;
    for _ in 0..100 {
        if http_get(&server.url, "/readyz").0 == 200 {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(back, "ready again by itself once the database answers");
    let got = acme.run(&["fs", "get", "/kept.txt"]);
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    acme.ok(&["fs", "put", "/after.txt", "/dev/null"]);
    let ls = acme.json(&["fs", "ls", "/"]);
    let paths: Vec<&str> = ls["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/after.txt", "/kept.txt"], "the write acknowledged before the restart is there");
    drop(server);
    cluster("stop");
}

/// Runs a command with `input` on its standard input.
fn with_input(cli: &Cli, args: &[&str], input: &str) -> Output {
    let mut child = cli.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_cli_manages_users_and_members_and_never_takes_a_password_as_an_argument() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let cli = Cli { url: server.url.clone(), key: admin_key(&data), client_config: dir.path().join("client.toml") };
    cli.ok(&["tenant", "create", "acme"]);
    let out = with_input(
        &cli,
        &["user", "create", "ada@example.com", "--name", "Ada", "--password-stdin", "--json"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ada: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((ada["email"].as_str(), ada["has_password"].as_bool()), (Some("ada@example.com"), Some(true)));
    // No password on standard input: refused, nothing created.
    let none = with_input(&cli, &["user", "create", "tom@example.com", "--password-stdin"], "");
    assert!(!none.status.success() && String::from_utf8_lossy(&none.stderr).contains("standard input"));
    let users = cli.json(&["user", "list"]);
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
    assert_eq!(cli.json(&["user", "show", "ADA@example.com"])["id"], ada["id"]);
    // The operator adds her to acme at once; a tenant key invites.
    let added = cli.json(&["member", "add", "ada@example.com", "--role", "writer", "--tenant", "acme"]);
    assert_eq!(added["status"], "member");
    let invited = cli.ok(&["member", "add", "grace@example.com", "--role", "reader", "--tenant", "acme"]);
    assert!(invited.starts_with("[acme] invited grace@example.com as reader") && invited.contains("inv_"), "{invited}");
    let list = cli.ok(&["member", "list", "--tenant", "acme"]);
    assert!(
        list.contains("ada@example.com") && list.contains("writer") && list.contains("grace@example.com"),
        "{list}"
    );
    let id = ada["id"].as_str().unwrap();
    let changed = cli.json(&["member", "set-role", id, "--role", "admin", "--tenant", "acme"]);
    assert_eq!(changed["role"], "admin");
    cli.ok(&["member", "rm", id, "--tenant", "acme"]);
    assert_eq!(cli.json(&["member", "list", "--tenant", "acme"])["items"], serde_json::json!([]));
    // A new password from standard input; disabling and enabling.
    let out = with_input(&cli, &["user", "passwd", "ada@example.com"], "another good one\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cli.json(&["user", "disable", id])["disabled"], true);
    assert_eq!(cli.json(&["user", "disable", id, "--enable"])["disabled"], false);
    let missing = cli.run(&["user", "show", "nobody@example.com"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("no user with email"));
}
