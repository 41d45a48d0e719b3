//! `tenantry db copy`: an embedded install copied into PostgreSQL, then served from there, shows
//! everything it showed before (files byte for byte, memory, search, keys, webhooks with their
//! queued deliveries, events with their seqs, audit chains that still verify and go on); running
//! the copy again changes nothing; a copy killed midway finishes when run again.

mod common;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use tenantry_client::Client;
use tenantry_store_postgres::testing::TestDatabase;

/// A server that is killed if the test ends without stopping it.
struct Running(common::Served);

impl std::ops::Deref for Running {
    type Target = common::Served;
    fn deref(&self) -> &common::Served {
        &self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

/// `tenantry serve` on the data dir `data`, on PostgreSQL when `database` is given.
fn serve(data: &Path, database: Option<&str>) -> Running {
    let mut cmd = common::clean_command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data);
    cmd.env("TENANTRY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "1");
    if let Some(url) = database {
        cmd.env("TENANTRY_DATABASE_URL", url);
    }
    Running(common::start_serving(cmd))
}

/// Stops a server as an operator would (SIGTERM: it finishes, flushes what it metered, closes).
fn stop(mut served: Running) {
    let status = Command::new("kill").args(["-TERM", &served.0.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exited = served.0.child.wait().unwrap();
    assert!(exited.success(), "serve exited with {exited}");
}

fn operator(served: &Running, data: &Path) -> Client {
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    Client::new(&served.url, Some(key.trim().to_owned()))
}

/// `tenantry db ARGS...`; its exit success and standard output.
fn db(args: &[&str]) -> (bool, String) {
    let out = common::clean_command().arg("db").args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn copy_json(data: &Path, to: &str) -> (bool, Value) {
    let (ok, out) = db(&["--json", "copy", "--from", data.to_str().unwrap(), "--to", to]);
    (ok, serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Everything a tenant's clients can see of it, but what reading it meters.
async fn everything(op: &Client, slug: &str) -> Value {
    let c = op.clone().with_tenant(Some(slug.to_owned()));
    let mut tenant = op.show_tenant(slug).await.unwrap();
    tenant.as_object_mut().unwrap().remove("usage");
    let files = c.list_files("/", true, None).await.unwrap();
    let mut bodies = serde_json::Map::new();
    for f in files["items"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        bodies.insert(path.to_owned(), json!(sha(&c.get_file(path).await.unwrap())));
    }
    let usage = op.tenant_usage(slug, "").await.unwrap()["usage"].clone();
    let webhooks = c.list_webhooks().await.unwrap();
    let mut deliveries = Vec::new();
    for w in webhooks["items"].as_array().unwrap() {
        deliveries.push(c.webhook_deliveries(w["id"].as_str().unwrap()).await.unwrap());
    }
    json!({
        "tenant": tenant,
        "files": files,
        "bodies": bodies,
        "memory": c.list_memory("notes", "").await.unwrap(),
        "search": c.search("quarterly", "").await.unwrap()["items"],
        "events": c.events(0, Some(1000)).await.unwrap(),
        "audit": c.audit("?limit=1000").await.unwrap(),
        "verified": c.verify_audit().await.unwrap(),
        "keys": c.list_keys().await.unwrap(),
        "webhooks": webhooks,
        "deliveries": deliveries,
        "storage": [usage["storage_bytes"].clone(), usage["files"].clone()],
    })
}

/// Signs `email` in at `url`: the session cookie (`name=value`).
async fn sign_in(url: &str, email: &str, password: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{email}");
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

/// `GET /v1/auth/session` with `cookie`: the status, and the person's tenants as "slug:role".
async fn session_of(url: &str, cookie: &str) -> (u16, Vec<String>) {
    let res =
        reqwest::Client::new().get(format!("{url}/v1/auth/session")).header("cookie", cookie).send().await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let tenants = body["tenants"].as_array().map_or(vec![], |ts| {
        ts.iter().map(|t| format!("{}:{}", t["slug"].as_str().unwrap(), t["role"].as_str().unwrap())).collect()
    });
    (status, tenants)
}

/// People: Ada, a member of acme (admin) and of the dedicated beta (reader), signed in; a
/// super-admin; an invitation to acme not accepted yet. Ada's session cookie.
async fn populate_people(op: &Client, url: &str) -> String {
    for body in [
        json!({"email": "ada@example.com", "name": "Ada", "password": "ada's password"}),
        json!({"email": "root@example.com", "password": "root's password", "super_admin": true}),
    ] {
        op.json(reqwest::Method::POST, "/v1/users", Some(&body)).await.unwrap();
    }
    for (slug, role) in [("acme", "admin"), ("beta", "reader")] {
        let added = op
            .json(
                reqwest::Method::POST,
                &format!("/t/{slug}/v1/members"),
                Some(&json!({"email": "ada@example.com", "role": role})),
            )
            .await
            .unwrap();
        assert_eq!(added["status"], "member");
    }
    let invited = op
        .json(reqwest::Method::POST, "/t/acme/v1/members", Some(&json!({"email": "bob@example.com", "role": "writer"})))
        .await
        .unwrap();
    assert_eq!(invited["status"], "invited");
    sign_in(url, "ada@example.com", "ada's password").await
}

/// An install with a tenant of every kind of data, a dedicated one, and a deleted one.
async fn populate(op: &Client, url: &str) -> Vec<String> {
    let acme = op.create_tenant(&json!({"slug": "acme", "tier": "enterprise", "name": "Acme"})).await.unwrap();
    let owner = Client::new(url, Some(acme["owner_key"].as_str().unwrap().to_owned()));
    for i in 0..30 {
        owner.put_file(&format!("/docs/{i:02}.txt"), format!("quarterly report {i}").into_bytes(), None).await.unwrap();
    }
    // Bodies of several chunks: one kept in the database, one in a file of its own.
    let medium: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 253) as u8).collect();
    owner.put_file("/bin/medium.bin", medium, Some("application/octet-stream")).await.unwrap();
    owner.put_file("/bin/large.bin", large, Some("application/octet-stream")).await.unwrap();
    owner.put_file("/docs/05.txt", b"quarterly report 5, second version".to_vec(), None).await.unwrap();
    owner.delete_file("/docs/29.txt").await.unwrap();
    owner.set_memory("notes", "plan", &json!({"step": 3, "text": "quarterly planning"}), None).await.unwrap();
    owner.set_memory("notes", "brief", &json!("short"), Some(86_400)).await.unwrap();
    let reader = owner.create_key(&json!({"name": "reader", "role": "reader", "prefix": "/docs/"})).await.unwrap();
    let gone = owner.create_key(&json!({"name": "gone", "role": "writer"})).await.unwrap();
    owner.revoke_key(gone["id"].as_str().unwrap()).await.unwrap();
    // Nothing listens there: the delivery stays queued, with its failed attempts on record.
    owner.create_webhook(&json!({"url": "http://127.0.0.1:9/hook", "events": ["file.written"]})).await.unwrap();
    owner.put_file("/docs/hooked.txt", b"quarterly hook".to_vec(), None).await.unwrap();
    for _ in 0..100 {
        let listed = owner.list_webhooks().await.unwrap();
        let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
        if !owner.webhook_deliveries(&id).await.unwrap()["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let beta =
        op.create_tenant(&json!({"slug": "beta", "tier": "enterprise", "placement": "dedicated"})).await.unwrap();
    let beta_owner = Client::new(url, Some(beta["owner_key"].as_str().unwrap().to_owned()));
    beta_owner.put_file("/own.txt", b"quarterly, dedicated".to_vec(), None).await.unwrap();
    op.create_tenant(&json!({"slug": "gamma"})).await.unwrap();
    op.tenant_action("gamma", "suspend").await.unwrap();
    op.create_tenant(&json!({"slug": "delta"})).await.unwrap();
    op.json(reqwest::Method::DELETE, "/v1/tenants/delta", None).await.unwrap();
    vec![
        acme["owner_key"].as_str().unwrap().to_owned(),
        reader["key"].as_str().unwrap().to_owned(),
        gone["key"].as_str().unwrap().to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_install_copied_into_postgresql_serves_the_same_and_a_second_copy_changes_nothing() {
    let Some(database) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let served = serve(&data, None);
    let op = operator(&served, &data);
    let keys = populate(&op, &served.url).await;
    let ada = populate_people(&op, &served.url).await;
    assert_eq!(session_of(&served.url, &ada).await, (200, vec!["acme:admin".to_owned(), "beta:reader".to_owned()]));
    let members_before = op.json(reqwest::Method::GET, "/t/acme/v1/members", None).await.unwrap();
    let slugs = ["default", "acme", "beta", "gamma"];
    let mut before = Vec::new();
    for slug in slugs {
        before.push(everything(&op, slug).await);
    }
    // The deleted tenant is archived.
    let deleted = op.list_tenants("?status=archived").await.unwrap();
    assert_eq!(deleted["items"][0]["slug"], "delta", "{deleted}");

    // No copy while a server holds the data directory.
    let (ok, _) = db(&["migrate", "--url", &database.owner_url(), "--app-role", &database.app_role]);
    assert!(ok);
    let (ok, refused) = copy_json(&data, &database.owner_url());
    assert!(!ok);
    assert!(refused["error"]["message"].as_str().unwrap().contains("in use by another tenantry process"), "{refused}");
    stop(served);

    // Nor as the server's role (it may not set where the database's sequences are).
    let (ok, refused) = copy_json(&data, &database.app_url());
    assert!(!ok);
    assert!(refused["error"]["message"].as_str().unwrap().contains("owns the tables"), "{refused}");

    let (ok, report) = copy_json(&data, &database.owner_url());
    assert!(ok, "{report}");
    assert_eq!(
        (report["copied"].as_u64(), report["already_there"].as_u64(), report["failed"].as_u64()),
        (Some(5), Some(0), Some(0))
    );
    let acme = report["tenants"].as_array().unwrap().iter().find(|t| t["slug"] == "acme").unwrap().clone();
    assert_eq!(acme["files"], 32, "{acme}");
    let file_bytes: u64 =
        before[1]["files"]["items"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).sum();
    assert_eq!(acme["file_bytes"].as_u64(), Some(file_bytes), "every file's bytes: {acme}");
    assert_eq!(acme["rows"]["webhook_outbox"], 1, "the queued delivery: {acme}");
    assert_eq!(acme["audit_chain_verifies"], true);
    assert_eq!(acme["rows"]["memberships"], 1, "{acme}");
    assert_eq!(
        report["people"],
        json!({
            "users": {"rows": 2, "added": 2, "not_there": 0},
            "sessions": {"rows": 1, "added": 1, "not_there": 0},
            "invitations": {"rows": 1, "added": 1, "not_there": 0}
        })
    );
    // Deliveries are numbered on past every id SQLite ever gave (a receiver de-duplicates by id).
    let sqlite = rusqlite::Connection::open(data.join("tenantry.db")).unwrap();
    let given: i64 =
        sqlite.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'webhook_outbox'", [], |r| r.get(0)).unwrap();
    let pg = database.connect_as(&database.owner_role).await;
    let at: i64 = pg.query_one("SELECT last_value FROM webhook_deliveries", &[]).await.unwrap().get(0);
    assert_eq!((at, given > 0), (given, true));

    // Served from PostgreSQL, everything reads as it did.
    let served = serve(&data, Some(&database.app_url()));
    let op = operator(&served, &data);
    for (slug, was) in slugs.iter().zip(&before) {
        let mut now = everything(&op, slug).await;
        let mut was = was.clone();
        if *slug == "beta" {
            // PostgreSQL places every tenant shared (for now): the one thing that changes.
            assert_eq!(was["tenant"]["placement"], "dedicated");
            assert_eq!(now["tenant"]["placement"], "shared");
            was["tenant"]["placement"] = json!("shared");
        }
        // The delivery goes on being retried from PostgreSQL: the attempts made before are there.
        let attempts = |v: &Value| {
            v["deliveries"].as_array().unwrap().iter().map(|d| d["items"].as_array().unwrap().len()).sum::<usize>()
        };
        assert!(attempts(&now) >= attempts(&was));
        for v in [&mut now, &mut was] {
            v.as_object_mut().unwrap().remove("deliveries");
        }
        assert_eq!(now, was, "{slug}");
    }
    let deleted = op.list_tenants("?status=archived").await.unwrap();
    assert_eq!(deleted["items"][0]["slug"], "delta");
    // People: Ada's session goes on, in both her tenants (the dedicated one's membership came with
    // it); she and the super-admin sign in with their passwords; the invitation is still open.
    assert_eq!(session_of(&served.url, &ada).await, (200, vec!["acme:admin".to_owned(), "beta:reader".to_owned()]));
    let root = sign_in(&served.url, "root@example.com", "root's password").await;
    assert_eq!(session_of(&served.url, &root).await.0, 200);
    assert_eq!(op.json(reqwest::Method::GET, "/t/acme/v1/members", None).await.unwrap(), members_before);
    // Keys authenticate as they did; the revoked one still does not.
    let owner = Client::new(&served.url, Some(keys[0].clone()));
    let reader = Client::new(&served.url, Some(keys[1].clone()));
    assert_eq!(&reader.get_file("/docs/05.txt").await.unwrap()[..], b"quarterly report 5, second version");
    assert_eq!(reader.get_file("/bin/medium.bin").await.unwrap_err().code(), Some("forbidden"));
    let revoked = Client::new(&served.url, Some(keys[2].clone()));
    assert_eq!(revoked.list_files("/", true, None).await.unwrap_err().code(), Some("unauthenticated"));
    // A range read of the body re-cut into chunks.
    let range = owner
        .send(reqwest::Method::GET, "/v1/files/bin/large.bin", None, &[("range", "bytes=1000000-1300000")])
        .await
        .unwrap();
    assert_eq!(range.status.as_u16(), 206);
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 253) as u8).collect();
    assert_eq!(&range.body[..], &large[1_000_000..=1_300_000]);
    // The logs go on from where they were: the next event's seq, the chain.
    let last_seq = before[1]["events"]["items"].as_array().unwrap().last().unwrap()["seq"].as_u64().unwrap();
    owner.put_file("/docs/after.txt", b"after the copy".to_vec(), None).await.unwrap();
    let events = owner.events(last_seq, None).await.unwrap();
    assert_eq!(events["items"][0]["seq"].as_u64(), Some(last_seq + 1), "{events}");
    let verified = owner.verify_audit().await.unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
    // Two entries more: the reader's refused read, and the write.
    assert_eq!(verified["entries"].as_u64(), Some(before[1]["verified"]["entries"].as_u64().unwrap() + 2));
    // Ada signs out on PostgreSQL: her session ends, and a copy run again must not bring it back.
    let out = reqwest::Client::new()
        .post(format!("{}/v1/auth/logout", served.url))
        .header("cookie", &ada)
        .header("origin", &served.url)
        .send()
        .await
        .unwrap();
    assert!(out.status().is_success(), "{}", out.status());
    stop(served);

    // Run again: every tenant is found there, matching; nothing is written. Changed since on
    // PostgreSQL, acme no longer matches its source and is refused, and so is the default
    // tenant (the sign-in there was audited in its log); the others are not.
    let (ok, again) = copy_json(&data, &database.owner_url());
    assert!(!ok, "acme changed on PostgreSQL: {again}");
    assert_eq!(
        (again["copied"].as_u64(), again["already_there"].as_u64(), again["failed"].as_u64()),
        (Some(0), Some(3), Some(2))
    );
    let ids =
        |slug: &str| report["tenants"].as_array().unwrap().iter().find(|t| t["slug"] == slug).unwrap()["id"].clone();
    let mut refused: Vec<Value> = Vec::new();
    for t in again["tenants"].as_array().unwrap().iter().filter(|t| t["outcome"] == "failed") {
        assert!(t["error"].as_str().unwrap().contains("differs from the source"), "{t}");
        refused.push(t["id"].clone());
    }
    let mut expected = vec![ids("acme"), ids("default")];
    expected.sort_by_key(|v| v.to_string());
    refused.sort_by_key(|v| v.to_string());
    assert_eq!(refused, expected);
    // The people are found there, the users as they were: nothing is written (Ada's session,
    // ended since, stays ended, and is reported as not there; the super-admin's new one stays).
    assert_eq!(
        again["people"],
        json!({
            "users": {"rows": 2, "added": 0, "not_there": 0},
            "sessions": {"rows": 1, "added": 0, "not_there": 1},
            "invitations": {"rows": 1, "added": 0, "not_there": 0}
        })
    );
    let served = serve(&data, Some(&database.app_url()));
    assert_eq!(session_of(&served.url, &ada).await.0, 401, "an ended session stays ended");
    assert_eq!(session_of(&served.url, &root).await.0, 200);
    stop(served);
    database.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_midway_finishes_when_run_again() {
    let Some(database) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data, None);
    let op = operator(&served, &data);
    let mut owners = Vec::new();
    for slug in ["one", "two", "three"] {
        let t = op.create_tenant(&json!({"slug": slug, "tier": "enterprise"})).await.unwrap();
        owners.push(Client::new(&served.url, Some(t["owner_key"].as_str().unwrap().to_owned())));
    }
    // 24 MiB each: long enough to copy that the kill lands inside one.
    for (n, owner) in owners.iter().enumerate() {
        for i in 0..6u8 {
            owner.put_file(&format!("/f{i}.bin"), vec![i ^ n as u8; 4 << 20], None).await.unwrap();
        }
    }
    stop(served);
    assert!(db(&["migrate", "--url", &database.owner_url(), "--app-role", &database.app_role]).0);

    // Killed once the second tenant's copy has started.
    let mut child = common::clean_command()
        .args(["db", "copy", "--from", data.to_str().unwrap(), "--to", &database.owner_url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut started = 0;
        for line in stderr.lines() {
            if line.unwrap().contains("copying") {
                started += 1;
                if started == 2 {
                    break;
                }
            }
        }
        assert_eq!(started, 2);
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed before it finished");

    let (ok, report) = copy_json(&data, &database.owner_url());
    assert!(ok, "{report}");
    let copied = report["copied"].as_u64().unwrap();
    let there = report["already_there"].as_u64().unwrap();
    // default and the first tenant at most were committed before the kill; the second was not.
    assert_eq!(copied + there, 4, "{report}");
    assert!(copied >= 2, "{report}");
    let (ok, again) = copy_json(&data, &database.owner_url());
    assert!(ok);
    assert_eq!((again["copied"].as_u64(), again["already_there"].as_u64()), (Some(0), Some(4)));

    let served = serve(&data, Some(&database.app_url()));
    for (n, owner) in owners.iter().enumerate() {
        let owner = Client::new(&served.url, owner.key().map(str::to_owned));
        for i in 0..6u8 {
            let body = owner.get_file(&format!("/f{i}.bin")).await.unwrap();
            assert!(body.len() == 4 << 20 && body.iter().all(|b| *b == i ^ n as u8));
        }
    }
    stop(served);
    database.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_that_do_not_fit_the_target_stop_the_copy_before_any_tenant() {
    let Some(database) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    // Two installs, each with an account for the same email: two different people to Tenantry.
    let mut installs = Vec::new();
    for (name, slug) in [("first", "one"), ("second", "two")] {
        let data = dir.path().join(name);
        let served = serve(&data, None);
        let op = operator(&served, &data);
        op.create_tenant(&json!({"slug": slug})).await.unwrap();
        let body = json!({"email": "ada@example.com", "password": format!("{name} password")});
        op.json(reqwest::Method::POST, "/v1/users", Some(&body)).await.unwrap();
        stop(served);
        installs.push(data);
    }
    assert!(db(&["migrate", "--url", &database.owner_url(), "--app-role", &database.app_role]).0);
    let (ok, report) = copy_json(&installs[0], &database.owner_url());
    assert!(ok, "{report}");
    let (ok, refused) = copy_json(&installs[1], &database.owner_url());
    assert!(!ok);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("the target's people differ from the source's, so none were copied"), "{refused}");
    assert_eq!(refused["error"]["code"], "conflict", "{refused}");
    // Nothing of the second install went in: not its tenant, not its account.
    let pg = database.connect_as(&database.owner_role).await;
    let slugs: Vec<String> =
        pg.query("SELECT slug FROM tenants ORDER BY slug", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(slugs, ["default", "one"]);
    let served = serve(&installs[0], Some(&database.app_url()));
    sign_in(&served.url, "ada@example.com", "first password").await;
    stop(served);
    database.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_withdrawn_after_the_copy_stays_withdrawn_when_the_copy_runs_again() {
    let Some(database) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An install whose only people are one invitation (an operator's, to an email without an
    // account): after the withdrawal on PostgreSQL the target holds no people at all.
    let served = serve(&data, None);
    let op = operator(&served, &data);
    op.create_tenant(&json!({"slug": "one"})).await.unwrap();
    let body = json!({"email": "bob@example.com", "role": "writer"});
    let invited = op.json(reqwest::Method::POST, "/t/one/v1/members", Some(&body)).await.unwrap();
    let (id, token) = (invited["invitation"]["id"].clone(), invited["invitation"]["token"].clone());
    stop(served);
    assert!(db(&["migrate", "--url", &database.owner_url(), "--app-role", &database.app_role]).0);
    let (ok, report) = copy_json(&data, &database.owner_url());
    assert!(ok, "{report}");
    assert_eq!(report["people"]["invitations"], json!({"rows": 1, "added": 1, "not_there": 0}));

    let served = serve(&data, Some(&database.app_url()));
    let op = operator(&served, &data);
    op.json(reqwest::Method::DELETE, &format!("/t/one/v1/invitations/{}", id.as_str().unwrap()), None).await.unwrap();
    stop(served);
    // The tenant itself changed there (the withdrawal is in its audit log) and is refused; the
    // invitation is reported as not there, and not written again.
    let (ok, again) = copy_json(&data, &database.owner_url());
    assert!(!ok, "{again}");
    assert_eq!((again["already_there"].as_u64(), again["failed"].as_u64()), (Some(1), Some(1)), "{again}");
    assert_eq!(again["people"]["invitations"], json!({"rows": 1, "added": 0, "not_there": 1}));
    let served = serve(&data, Some(&database.app_url()));
    let accept = reqwest::Client::new()
        .post(format!("{}/v1/auth/accept", served.url))
        .json(&json!({"token": token, "password": "bob's first password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accept.status(), 401, "a withdrawn invitation stays withdrawn");
    stop(served);
    database.drop_all().await;
}
