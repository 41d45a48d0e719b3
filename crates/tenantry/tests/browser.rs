//! The admin page (`/admin`) in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver, started here), against the real `tenantry serve` binary. Each page
//! visited is checked with axe-core (vendored into tests/browser/vendor by
//! scripts/browser-deps.sh): no serious or critical accessibility violation.
//!
//! Without chromedriver or axe-core these tests say so and pass, except under `CI=true`, where
//! they fail: `.ci/run` installs both, so a broken install cannot hide behind a green run.
//! `TENANTRY_WRITE_SCREENSHOTS=1` also saves the main pages to docs/img.

mod common;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const OPERATOR: &str = "tnr_browser_operator_key_0123456789abcdef";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const PASSWORD: &str = "correct horse battery staple";

fn axe_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/vendor/axe.min.js")
}

/// Whether the browser and axe-core are here; under CI=true their absence is a failure.
fn browser_available() -> bool {
    let missing: Vec<String> = [PathBuf::from(CHROMEDRIVER), PathBuf::from(CHROMIUM), axe_path()]
        .into_iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("missing {}: run scripts/browser-deps.sh (as root) to install them", missing.join(", "));
    assert!(std::env::var("CI").as_deref() != Ok("true"), "the browser tests cannot run under CI=true: {why}");
    eprintln!("browser tests skipped: {why}");
    false
}

/// `tenantry serve` on a fresh data directory, killed when dropped.
struct Server {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = common::clean_command();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data.path()).env("TENANTRY_ADMIN_KEY", OPERATOR);
        let served = common::start_serving(cmd);
        Server { child: served.child, url: served.url, _data: data, http: reqwest::Client::new() }
    }

    /// An operator call to the API; panics unless it succeeds.
    async fn operator(&self, method: reqwest::Method, path: &str, tenant: Option<&str>, body: Value) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.url)).bearer_auth(OPERATOR);
        if let Some(t) = tenant {
            req = req.header("X-Tenant-ID", t);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn tenant(&self, slug: &str) {
        self.operator(
            reqwest::Method::POST,
            "/v1/tenants",
            None,
            json!({"slug": slug, "name": format!("{slug} Inc."), "tier": "pro"}),
        )
        .await;
    }

    async fn user(&self, email: &str, super_admin: bool) -> String {
        let made = self
            .operator(
                reqwest::Method::POST,
                "/v1/users",
                None,
                json!({"email": email, "name": email.split('@').next().unwrap(), "password": PASSWORD, "super_admin": super_admin}),
            )
            .await;
        made["id"].as_str().unwrap().to_owned()
    }

    async fn member(&self, tenant: &str, email: &str, role: &str) {
        let added = self
            .operator(reqwest::Method::POST, "/v1/members", Some(tenant), json!({"email": email, "role": role}))
            .await;
        assert_eq!(added["status"], "member");
    }

    /// The status of `GET path` with a tenant key.
    async fn status_with_key(&self, key: &str, path: &str) -> u16 {
        self.http.get(format!("{}{path}", self.url)).bearer_auth(key).send().await.unwrap().status().as_u16()
    }
}

/// chromedriver and a headless Chromium session, ended when dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
    base: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(base: &str) -> Browser {
        let port = common::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,860",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.as_object().unwrap().clone());
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match builder.connect(&webdriver).await {
                Ok(client) => {
                    return Browser { driver, client: Some(client), _profile: profile, base: base.to_owned() };
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session from chromedriver on port {port}: {last:?}");
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }

    async fn goto(&self, path: &str) {
        self.c().goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    fn path_of(url: &url::Url) -> String {
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn path(&self) -> String {
        Self::path_of(&self.c().current_url().await.unwrap())
    }

    /// Waits until the page's heading is `title`.
    async fn heading(&self, title: &str) {
        let xpath = format!("//main//h1[normalize-space()='{title}']");
        if let Err(e) = self.c().wait().at_most(Duration::from_secs(20)).for_element(Locator::XPath(&xpath)).await {
            let shown = self.c().find(Locator::Css("main")).await.map(|m| async move { m.text().await });
            let text = match shown {
                Ok(f) => f.await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("no heading {title:?} at {}: {e}; the page shows: {text}", self.path().await);
        }
    }

    async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        self.c()
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self.wait_css(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_css(css).await.click().await.unwrap();
    }

    async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/admin").await;
        self.heading("Sign in").await;
        self.fill("input[name=email]", email).await;
        self.fill("input[name=password]", password).await;
        self.click("form[aria-label='Sign in'] button[type=submit]").await;
    }

    /// Runs axe-core on the page: no serious or critical violation.
    async fn accessible(&self, page: &str) {
        let axe = std::fs::read_to_string(axe_path()).unwrap();
        self.c().execute(&format!("{axe}\nreturn true;"), vec![]).await.unwrap();
        let found = self
            .c()
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations
                   .filter(v => v.impact === 'serious' || v.impact === 'critical')
                   .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))),
                   e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .unwrap();
        let violations: Vec<String> = serde_json::from_value(found).unwrap();
        assert!(violations.is_empty(), "accessibility violations on {page}:\n{}", violations.join("\n"));
    }

    /// With TENANTRY_WRITE_SCREENSHOTS=1: the page as docs/img/admin-NAME.png.
    async fn screenshot(&self, name: &str) {
        if std::env::var("TENANTRY_WRITE_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let png = self.c().screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("admin-{name}.png")), png).unwrap();
    }

    /// `fetch(path)` inside the page (with its cookie): (status, body text).
    async fn fetch(&self, path: &str) -> (u16, String) {
        let got = self
            .c()
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch(arguments[0]).then(async r => done([r.status, await r.text()]), e => done([0, String(e)]));",
                vec![json!(path)],
            )
            .await
            .unwrap();
        (got[0].as_u64().unwrap() as u16, got[1].as_str().unwrap().to_owned())
    }

    /// Waits until the texts of the elements matching `css` are `expected`, in order.
    async fn wait_texts(&self, css: &str, expected: &[&str]) {
        let mut seen = Vec::new();
        for _ in 0..200 {
            seen = self.texts(css).await;
            if seen == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} at {}: {seen:?}, not {expected:?}", self.path().await);
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for el in self.c().find_all(Locator::Css(css)).await.unwrap() {
            out.push(el.text().await.unwrap());
        }
        out
    }
}

async fn setup() -> Option<(Server, Browser)> {
    if !browser_available() {
        return None;
    }
    let server = Server::start();
    let browser = Browser::start(&server.url).await;
    Some((server, browser))
}

#[tokio::test]
async fn a_member_signs_in_switches_tenant_moves_files_and_makes_and_revokes_a_key() {
    let Some((server, b)) = setup().await else { return };
    for slug in ["acme", "globex", "initech"] {
        server.tenant(slug).await;
    }
    server.user("alice@example.com", false).await;
    server.member("acme", "alice@example.com", "owner").await;
    server.member("globex", "alice@example.com", "reader").await;

    // Signing in: a wrong password is refused on the form; the right one opens her first tenant.
    b.goto("/admin/t/acme/files").await;
    b.heading("Sign in").await;
    assert_eq!(b.path().await, "/admin/login?next=%2Fadmin%2Ft%2Facme%2Ffiles");
    b.wait_texts("nav.side li a", &[]).await;
    b.accessible("the sign-in page").await;
    b.screenshot("sign-in").await;
    b.fill("input[name=email]", "alice@example.com").await;
    b.fill("input[name=password]", "not her password").await;
    b.click("form[aria-label='Sign in'] button[type=submit]").await;
    let error = b.wait_css("form[aria-label='Sign in'] .form-error:not(:empty)").await;
    assert_eq!(error.text().await.unwrap(), "wrong email or password");
    b.fill("input[name=password]", PASSWORD).await;
    b.click("form[aria-label='Sign in'] button[type=submit]").await;
    b.heading("Files").await;
    assert_eq!(b.path().await, "/admin/t/acme/files", "back where the sign-in was asked for");

    // Upload through the form, see it listed, download it through its link's address.
    let upload = tempfile::tempdir().unwrap();
    let file = upload.path().join("report.txt");
    std::fs::write(&file, "quarterly numbers\n").unwrap();
    b.wait_css("input[type=file]").await.send_keys(&file.display().to_string()).await.unwrap();
    b.click("form[aria-label='Upload files'] button[type=submit]").await;
    let link = b.wait_css("a[download='report.txt']").await;
    let href = link.attr("href").await.unwrap().unwrap();
    assert_eq!(href, "/t/acme/v1/files/report.txt");
    assert_eq!(b.fetch(&href).await, (200, "quarterly numbers\n".to_owned()));
    b.accessible("the files page").await;
    b.screenshot("files").await;

    // The overview: use against limits and the per-day chart.
    b.goto("/admin/t/acme").await;
    b.heading("Overview").await;
    b.wait_css("svg.chart rect.bar").await;
    let meters = b.texts(".meter-head").await;
    assert!(meters.iter().any(|m| m.starts_with("Files") && m.contains("1 of 1,000,000")), "{meters:?}");
    b.accessible("the overview").await;
    b.screenshot("overview").await;

    // A key: made (its secret shown once, and it works), then revoked (and it stops).
    b.goto("/admin/t/acme/keys").await;
    b.heading("Keys").await;
    b.fill("form[aria-label='Create a key'] input[name=name]", "ci-bot").await;
    b.click("form[aria-label='Create a key'] select[name=role] option[value=writer]").await;
    b.click("form[aria-label='Create a key'] button[type=submit]").await;
    let secret = b.wait_css(".secret code.key-secret").await.text().await.unwrap();
    assert!(secret.starts_with("tnr_"), "{secret}");
    assert_eq!(server.status_with_key(&secret, "/v1/whoami").await, 200);
    b.accessible("the keys page").await;
    b.screenshot("keys").await;
    b.click("button[aria-label='Revoke ci-bot']").await;
    b.c().accept_alert().await.unwrap();
    b.c()
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//tr[td[1][text()='ci-bot']]/td[6][starts-with(text(), 'revoked')]"))
        .await
        .unwrap();
    assert_eq!(server.status_with_key(&secret, "/v1/whoami").await, 401);

    // The switcher: typing asks the server; Enter opens the same page in the other tenant,
    // where a reader gets no upload form and no admin pages.
    b.goto("/admin/t/acme/files").await;
    b.heading("Files").await;
    b.fill("#switch-input", "glob").await;
    b.wait_texts("#switch-list li[role=option] strong", &["globex"]).await;
    assert_eq!(b.texts("#switch-list li[role=option] .badge").await, ["reader"]);
    b.wait_css("#switch-list li[role=option][aria-selected=true]").await;
    b.wait_css("#switch-input").await.send_keys("\u{E007}").await.unwrap();
    b.heading("Files").await;
    assert_eq!(b.path().await, "/admin/t/globex/files");
    assert!(b.c().find(Locator::Css("input[type=file]")).await.is_err(), "a reader has no upload form");
    let pages = b.texts("nav.side li a").await;
    assert_eq!(pages, ["Overview", "Files", "Memory", "Search", "Live events"]);

    // Another tenant's address: the same "not found" as a tenant that does not exist, and the
    // API behind it answers 404 tenant_not_found for both.
    for slug in ["initech", "no-such-tenant"] {
        b.goto(&format!("/admin/t/{slug}")).await;
        b.heading("Not found").await;
        let (status, body) = b.fetch(&format!("/t/{slug}/v1/usage")).await;
        assert_eq!(status, 404);
        assert!(body.contains("\"tenant_not_found\""), "{body}");
    }
    b.close().await;
}

#[tokio::test]
async fn an_invited_member_accepts_signs_in_and_sees_only_that_tenant() {
    let Some((server, b)) = setup().await else { return };
    for slug in ["acme", "globex"] {
        server.tenant(slug).await;
    }
    server.user("alice@example.com", false).await;
    server.member("acme", "alice@example.com", "admin").await;
    server.member("globex", "alice@example.com", "admin").await;

    b.sign_in("alice@example.com", PASSWORD).await;
    b.heading("Overview").await;
    b.goto("/admin/t/acme/members").await;
    b.heading("Members").await;
    b.fill("form[aria-label='Invite a member'] input[name=email]", "bob@example.com").await;
    b.click("form[aria-label='Invite a member'] select[name=role] option[value=writer]").await;
    b.click("form[aria-label='Invite a member'] button[type=submit]").await;
    let link = b.wait_css(".secret code.invite-link").await.text().await.unwrap();
    let path = link.strip_prefix(&server.url).unwrap_or_else(|| panic!("{link}")).to_owned();
    assert!(path.starts_with("/admin/accept#token="), "{path}");
    // Alice in the members' table, Bob in the invitations' (not a member until he accepts).
    b.wait_texts("table tbody tr td:first-child", &["alice@example.com", "bob@example.com"]).await;
    b.accessible("the members page").await;
    b.screenshot("members").await;
    b.click("button.link").await; // sign out
    b.heading("Sign in").await;

    // Bob opens the link, names himself and picks his first password: he is in, in acme only.
    b.goto(&path).await;
    b.heading("Accept an invitation").await;
    b.accessible("the invitation page").await;
    b.fill("input[name=name]", "Bob").await;
    b.fill("input[name=password]", "bobs own password").await;
    b.click("form[aria-label='Accept the invitation'] button[type=submit]").await;
    b.heading("Overview").await;
    assert_eq!(b.path().await, "/admin/t/acme");
    b.click("#switch-input").await;
    b.wait_texts("#switch-list li[role=option] strong", &["acme"]).await;
    assert_eq!(b.texts("#switch-list li[role=option] .badge").await, ["writer"]);
    b.goto("/admin/t/globex").await;
    b.heading("Not found").await;
    let (status, _) = b.fetch("/t/globex/v1/files").await;
    assert_eq!(status, 404);
    // The link worked once.
    b.click("button.link").await;
    b.heading("Sign in").await;
    b.goto(&path).await;
    b.fill("input[name=password]", "bobs own password").await;
    b.click("form[aria-label='Accept the invitation'] button[type=submit]").await;
    let error = b.wait_css("form .form-error:not(:empty)").await;
    assert_eq!(error.text().await.unwrap(), "the invitation is unknown, used or expired");
    b.close().await;
}

#[tokio::test]
async fn an_operator_finds_archives_and_purges_a_tenant_only_after_typing_its_slug() {
    let Some((server, b)) = setup().await else { return };
    for slug in ["acme", "doomed"] {
        server.tenant(slug).await;
    }
    server.user("root@example.com", true).await;

    b.sign_in("root@example.com", PASSWORD).await;
    b.heading("Tenants").await;
    assert_eq!(b.path().await, "/admin/tenants");
    b.accessible("the tenants page").await;
    b.screenshot("tenants").await;
    b.fill("form[aria-label='Find tenants'] input[name=q]", "doom").await;
    b.click("form[aria-label='Find tenants'] button[type=submit]").await;
    b.wait_texts("table tbody tr td:first-child", &["doomed"]).await;
    assert_eq!(b.path().await, "/admin/tenants?q=doom");
    // Its use this month, beside its status, tier and placement.
    b.wait_texts(
        "table tbody tr td:nth-child(3), table tbody tr td:nth-child(4), table tbody tr td:nth-child(5)",
        &["active", "pro", "shared"],
    )
    .await;
    b.wait_texts("table tbody tr .use", &["0 B · 0 files · 0 calls"]).await;

    b.goto("/admin/t/doomed/settings").await;
    b.heading("Settings").await;
    b.accessible("the settings page").await;
    b.screenshot("settings").await;
    b.c().find(Locator::XPath("//button[text()='Archive']")).await.unwrap().click().await.unwrap();
    b.c().accept_alert().await.unwrap();
    b.wait_css("form[aria-label='Purge the tenant']").await;
    assert_eq!(
        server.operator(reqwest::Method::GET, "/v1/tenants/doomed", None, Value::Null).await["status"],
        "archived"
    );
    b.fill("form[aria-label='Purge the tenant'] input[name=confirm]", "doome").await;
    b.click("form[aria-label='Purge the tenant'] button[type=submit]").await;
    let error = b.wait_css("form[aria-label='Purge the tenant'] .form-error:not(:empty)").await;
    assert_eq!(error.text().await.unwrap(), "Type the slug \"doomed\" exactly to confirm.");
    assert_eq!(
        server.operator(reqwest::Method::GET, "/v1/tenants/doomed", None, Value::Null).await["status"],
        "archived"
    );
    b.fill("form[aria-label='Purge the tenant'] input[name=confirm]", "doomed").await;
    b.click("form[aria-label='Purge the tenant'] button[type=submit]").await;
    b.wait_texts("table tbody tr td:first-child", &["acme", "default"]).await;
    let gone = server.http.get(format!("{}/v1/tenants/doomed", server.url)).bearer_auth(OPERATOR).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    b.close().await;
}

#[tokio::test]
async fn every_other_page_has_no_serious_accessibility_violation() {
    let Some((server, b)) = setup().await else { return };
    server.tenant("acme").await;
    server.user("root@example.com", true).await;
    let put = |path: &str, body: &str| {
        server.http.put(format!("{}/t/acme/v1/{path}", server.url)).bearer_auth(OPERATOR).body(body.to_owned()).send()
    };
    assert!(put("files/docs/hello.txt", "hello from the docs").await.unwrap().status().is_success());
    assert!(put("memory/agent/topic", r#"{"focus": "solar"}"#).await.unwrap().status().is_success());

    b.sign_in("root@example.com", PASSWORD).await;
    b.heading("Tenants").await;
    for (path, title, shows) in [
        ("/admin/t/acme/memory?ns=agent", "Memory", "table tbody tr"),
        ("/admin/t/acme/search?q=hello", "Search", "ol.results li mark"),
        ("/admin/t/acme/events", "Live events", "ol.events"),
        ("/admin/t/acme/webhooks", "Webhooks", "form[aria-label='Add a webhook']"),
        ("/admin/t/acme/audit", "Audit log", "table tbody tr"),
        ("/admin/users", "Users", "table tbody tr"),
    ] {
        b.goto(path).await;
        b.heading(title).await;
        b.wait_css(shows).await;
        b.accessible(path).await;
    }
    // A user disabled from the users page (after a confirmation) is disabled.
    server.user("ada@example.com", false).await;
    b.goto("/admin/users").await;
    b.click("button[aria-label='Disable ada@example.com']").await;
    b.c().accept_alert().await.unwrap();
    b.wait_css("button[aria-label='Enable ada@example.com']").await;
    let users = server.operator(reqwest::Method::GET, "/v1/users", None, Value::Null).await;
    let ada = users["items"].as_array().unwrap().iter().find(|u| u["email"] == "ada@example.com").unwrap().clone();
    assert_eq!(ada["disabled"], true, "{ada}");
    assert!(b.c().find(Locator::Css("button[aria-label='Disable root@example.com']")).await.is_err(), "not oneself");
    // The memory value, the search hit and the audit chain, as the pages show them.
    b.goto("/admin/t/acme/memory?ns=agent").await;
    b.wait_texts("table tbody tr td:first-child", &["topic"]).await;
    b.goto("/admin/t/acme/search?q=hello").await;
    b.wait_texts("ol.results li a", &["/docs/hello.txt"]).await;
    assert_eq!(b.texts("ol.results li mark").await, ["hello"]);
    b.goto("/admin/t/acme/audit").await;
    b.heading("Audit log").await;
    b.c().find(Locator::XPath("//button[text()='Verify the chain']")).await.unwrap().click().await.unwrap();
    let verdict = b.wait_css("p.ok").await.text().await.unwrap();
    assert!(verdict.starts_with("The chain verifies:"), "{verdict}");
    b.accessible("the audit page, verified").await;
    // A live event reaches the open events page.
    b.goto("/admin/t/acme/events").await;
    b.heading("Live events").await;
    b.c()
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//p[starts-with(text(), 'Connected')]"))
        .await
        .unwrap();
    assert!(put("files/live.txt", "now").await.unwrap().status().is_success());
    b.c()
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//ol[@class='events']/li[strong[text()='file.written']]"))
        .await
        .unwrap();
    b.accessible("the events page with an event").await;
    b.close().await;
}
