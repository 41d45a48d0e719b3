//! API.md §11: users, members, sessions.
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A browser's session: its cookie, and the `Origin` header its pages send.
struct Browser {
    cookie: String,
    origin: String,
}

impl Browser {
    async fn send(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> tenantry_client::RawResponse {
        let body = body.map(|b| b.to_string().into_bytes());
        app.raw(None, method, path, body.as_deref(), &[("cookie", &self.cookie), ("origin", &self.origin)]).await
    }
}

async fn create_user(app: &TestApp, email: &str, password: &str) -> String {
    let res = app
        .raw(
            Some(&app.admin_key),
            Method::POST,
            "/v1/users",
            Some(json!({"email": email, "password": password, "name": "Ada"}).to_string().as_bytes()),
            &[],
        )
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    res.json().unwrap()["id"].as_str().unwrap().to_owned()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Browser {
    let res = app
        .raw(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"email": email, "password": password}).to_string().as_bytes()),
            &[],
        )
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let set = res.header("set-cookie").unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("tenantry_session="), "{cookie}");
    Browser { cookie, origin: app.url.clone() }
}

async fn add_member(app: &TestApp, key: &str, email: &str, role: &str) -> tenantry_client::RawResponse {
    app.raw(
        Some(key),
        Method::POST,
        "/v1/members",
        Some(json!({"email": email, "role": role}).to_string().as_bytes()),
        &[],
    )
    .await
}

/// The operator adds an existing account to `slug` directly.
async fn operator_adds(app: &TestApp, slug: &str, email: &str, role: &str) {
    let body = json!({"email": email, "role": role}).to_string();
    let res =
        app.raw(Some(&app.admin_key), Method::POST, &format!("/t/{slug}/v1/members"), Some(body.as_bytes()), &[]).await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json().unwrap()["status"], "member");
}

/// A tenant key invites `email`; the person accepts with `password` (the account's, or a new
/// account's first). The accept's answer.
async fn invite_and_accept(
    app: &TestApp,
    key: &str,
    email: &str,
    role: &str,
    password: &str,
) -> tenantry_client::RawResponse {
    let res = add_member(app, key, email, role).await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let invited = res.json().unwrap();
    assert_eq!((invited["status"].as_str(), invited.get("user_id")), (Some("invited"), None));
    let token = invited["invitation"]["token"].as_str().unwrap();
    let accept = json!({"token": token, "password": password}).to_string();
    app.raw(None, Method::POST, "/v1/auth/accept", Some(accept.as_bytes()), &[]).await
}

#[tokio::test]
async fn a_person_signs_in_works_in_their_tenant_with_their_role_and_signs_out() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let ada = create_user(&app, "ada@example.com", "correct horse battery").await;
    let body = json!({"email": "ADA@example.com ", "role": "writer"}).to_string();
    let res = app.raw(Some(&app.admin_key), Method::POST, "/t/acme/v1/members", Some(body.as_bytes()), &[]).await;
    assert_eq!(res.status, 201);
    let m = res.json().unwrap();
    let got = (m["user_id"].as_str(), m["role"].as_str(), m["status"].as_str());
    assert_eq!(got, (Some(ada.as_str()), Some("writer"), Some("member")));
    assert!(m.get("invitation").is_none(), "the operator adds an existing account directly");
    let b = sign_in(&app, "ada@example.com", "correct horse battery").await;
    let s = b.send(&app, Method::GET, "/v1/auth/session", None).await.json().unwrap();
    assert_eq!(s["user"]["email"], "ada@example.com");
    assert_eq!(
        s["tenants"],
        json!([{"id": acme.id, "slug": "acme", "name": "acme", "role": "writer", "status": "active"}])
    );
    assert!(s.to_string().find("argon2").is_none(), "never a hash");
    // Her only tenant needs no naming; she writes and reads there, audited as herself.
    let put = b.send(&app, Method::PUT, "/v1/files/notes.txt", None).await;
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let got = b.send(&app, Method::GET, "/t/acme/v1/files/notes.txt", None).await;
    assert_eq!(got.status, 200);
    let audit = app.as_key(&acme.owner).audit("?action=file.write").await.unwrap();
    assert_eq!(audit["items"][0]["actor"], format!("user:{ada}"));
    // A writer manages no keys; another tenant is as unknown as one that does not exist.
    let keys = b.send(&app, Method::POST, "/v1/keys", Some(json!({"name": "k", "role": "reader"}))).await;
    assert_error(&keys, 403, "forbidden");
    for path in ["/t/globex/v1/files/x", "/t/nope/v1/files/x"] {
        assert_error(&b.send(&app, Method::GET, path, None).await, 404, "tenant_not_found");
    }
    let by_header =
        app.raw(None, Method::GET, "/v1/files/x", None, &[("cookie", &b.cookie), ("x-tenant-id", &globex.id)]).await;
    assert_error(&by_header, 404, "tenant_not_found");
    // Signing out ends the session: the same cookie is refused everywhere.
    let out = b.send(&app, Method::POST, "/v1/auth/logout", None).await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_error(&b.send(&app, Method::GET, "/v1/files/notes.txt", None).await, 401, "unauthenticated");
    assert_error(&b.send(&app, Method::GET, "/v1/auth/session", None).await, 401, "unauthenticated");
}

#[tokio::test]
async fn a_change_with_a_cookie_needs_a_same_origin_request() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    create_user(&app, "ada@example.com", "correct horse battery").await;
    operator_adds(&app, "acme", "ada@example.com", "admin").await;
    let b = sign_in(&app, "ada@example.com", "correct horse battery").await;
    let cookie = [("cookie", b.cookie.as_str())];
    // No Origin, another site's, or a cross-site fetch: refused, and nothing written.
    for extra in [vec![], vec![("origin", "https://evil.example")], vec![("sec-fetch-site", "cross-site")]] {
        let headers: Vec<(&str, &str)> = cookie.iter().copied().chain(extra).collect();
        let res = app.raw(None, Method::PUT, "/v1/files/x", Some(b"x"), &headers).await;
        assert_error(&res, 403, "forbidden");
    }
    let listed = app.as_key(&acme.owner).list_files("/", true, None).await.unwrap();
    assert_eq!(listed["items"], json!([]));
    // Reads need no Origin; same-origin by header works too.
    assert_eq!(app.raw(None, Method::GET, "/v1/files", None, &cookie).await.status, 200);
    let ok = app
        .raw(None, Method::PUT, "/v1/files/x", Some(b"x"), &[("cookie", &b.cookie), ("sec-fetch-site", "same-origin")])
        .await;
    assert_eq!(ok.status, 201);
    // Signing in from another site's page is refused too (login CSRF).
    let res = app
        .raw(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"email": "ada@example.com", "password": "correct horse battery"}).to_string().as_bytes()),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_error(&res, 403, "forbidden");
}

#[tokio::test]
async fn wrong_passwords_are_refused_alike_throttled_and_audited() {
    let app = spawn_app().await;
    create_user(&app, "ada@example.com", "correct horse battery").await;
    let attempt = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let body = json!({"email": email, "password": password}).to_string();
            app.raw(None, Method::POST, "/v1/auth/login", Some(body.as_bytes()), &[]).await
        }
    };
    let wrong = attempt("ada@example.com", "wrong password").await;
    let unknown = attempt("nobody@example.com", "wrong password").await;
    assert_error(&wrong, 401, "unauthenticated");
    assert_error(&unknown, 401, "unauthenticated");
    assert_eq!(wrong.json().unwrap()["error"]["message"], unknown.json().unwrap()["error"]["message"]);
    // Five failures for the account: the sixth try is throttled, even with the right password.
    for _ in 0..4 {
        assert_error(&attempt("ada@example.com", "wrong again").await, 401, "unauthenticated");
    }
    let throttled = attempt("ada@example.com", "correct horse battery").await;
    assert_error(&throttled, 429, "rate_limited");
    assert!(throttled.header("retry-after").is_some());
    // Audited in the install's own (default) tenant, success and failure; never a password.
    let log = app.operator().audit("?action=auth.login").await.unwrap();
    let results: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["result"].as_str().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| **r == "refused:unauthenticated").count(), 6);
    assert_eq!(results.iter().filter(|r| **r == "refused:rate_limited").count(), 1);
    assert!(!log.to_string().contains("wrong") && !log.to_string().contains("horse"));
}

#[tokio::test]
async fn an_invited_person_becomes_a_member_only_by_accepting_and_sees_only_that_tenant() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let res = add_member(&app, &acme.owner, "grace@example.com", "reader").await;
    assert_eq!(res.status, 201);
    let invited = res.json().unwrap();
    let token = invited["invitation"]["token"].as_str().unwrap().to_owned();
    // Pending: listed as an invitation, not a member; no account yet.
    let listed = app.raw(Some(&acme.owner), Method::GET, "/v1/members", None, &[]).await.json().unwrap();
    assert_eq!(listed["items"], json!([]));
    assert_eq!(listed["invitations"][0]["email"], "grace@example.com");
    assert!(!listed.to_string().contains(&token), "a token is shown once");
    let body = json!({"email": "grace@example.com", "password": "anything at all"}).to_string();
    let login = app.raw(None, Method::POST, "/v1/auth/login", Some(body.as_bytes()), &[]).await;
    assert_error(&login, 401, "unauthenticated");
    let accept = json!({"token": token, "password": "grace's own secret", "name": "Grace"}).to_string();
    let res = app.raw(None, Method::POST, "/v1/auth/accept", Some(accept.as_bytes()), &[]).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let s = res.json().unwrap();
    assert_eq!(s["user"]["name"], "Grace");
    let slugs: Vec<&str> = s["tenants"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["acme"]);
    // The invitation works once.
    let again = app.raw(None, Method::POST, "/v1/auth/accept", Some(accept.as_bytes()), &[]).await;
    assert_error(&again, 401, "unauthenticated");
    let b = sign_in(&app, "grace@example.com", "grace's own secret").await;
    assert_eq!(b.send(&app, Method::GET, "/v1/files", None).await.status, 200);
    assert_error(&b.send(&app, Method::PUT, "/v1/files/x", None).await, 403, "forbidden");
    assert_error(&b.send(&app, Method::GET, "/t/globex/v1/files", None).await, 404, "tenant_not_found");
    let listed = app.raw(Some(&acme.owner), Method::GET, "/v1/members", None, &[]).await.json().unwrap();
    assert_eq!(listed["items"][0]["email"], "grace@example.com");
    assert_eq!(listed["invitations"], json!([]));
}

#[tokio::test]
async fn an_invitation_cannot_take_over_an_account() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    // An account with a password joins only with that password.
    create_user(&app, "ada@example.com", "correct horse battery").await;
    let wrong = invite_and_accept(&app, &globex.owner, "ada@example.com", "owner", "the attacker's choice").await;
    assert_error(&wrong, 401, "unauthenticated");
    let b = sign_in(&app, "ada@example.com", "correct horse battery").await;
    assert_error(&b.send(&app, Method::GET, "/t/globex/v1/files", None).await, 404, "tenant_not_found");
    // A super-admin created without a password cannot be claimed through an invitation.
    let body = json!({"email": "root@example.com", "super_admin": true}).to_string();
    assert_eq!(app.raw(Some(&app.admin_key), Method::POST, "/v1/users", Some(body.as_bytes()), &[]).await.status, 201);
    let claim = invite_and_accept(&app, &acme.owner, "root@example.com", "reader", "now it is mine").await;
    assert_error(&claim, 401, "unauthenticated");
    let login = json!({"email": "root@example.com", "password": "now it is mine"}).to_string();
    let res = app.raw(None, Method::POST, "/v1/auth/login", Some(login.as_bytes()), &[]).await;
    assert_error(&res, 401, "unauthenticated");
    // Ada accepts an invitation with her own password: a member of a second tenant.
    let ok = invite_and_accept(&app, &globex.owner, "ada@example.com", "writer", "correct horse battery").await;
    assert_eq!(ok.status, 200);
    let tenants = ok.json().unwrap()["tenants"].clone();
    let slugs: Vec<&str> = tenants.as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["globex"]);
    // A withdrawn invitation no longer works; another tenant cannot withdraw it.
    let res = add_member(&app, &acme.owner, "late@example.com", "reader").await.json().unwrap();
    let path = format!("/v1/invitations/{}", res["invitation"]["id"].as_str().unwrap());
    assert_eq!(app.raw(Some(&globex.owner), Method::DELETE, &path, None, &[]).await.status, 404);
    assert_eq!(app.raw(Some(&acme.owner), Method::DELETE, &path, None, &[]).await.status, 204);
    let accept = json!({"token": res["invitation"]["token"], "password": "a fine password"}).to_string();
    let late = app.raw(None, Method::POST, "/v1/auth/accept", Some(accept.as_bytes()), &[]).await;
    assert_error(&late, 401, "unauthenticated");
    // An account the operator made without a password is not claimed by accepting, rights or not.
    let body = json!({"email": "plain@example.com"}).to_string();
    assert_eq!(app.raw(Some(&app.admin_key), Method::POST, "/v1/users", Some(body.as_bytes()), &[]).await.status, 201);
    let claim = invite_and_accept(&app, &acme.owner, "plain@example.com", "reader", "now it is mine").await;
    assert_error(&claim, 401, "unauthenticated");
    // An invitation made by a key since revoked no longer works.
    let (key_id, admin_key) = app.key(&acme, "admin", None).await;
    let made = add_member(&app, &admin_key, "someone@example.com", "writer").await.json().unwrap();
    assert_eq!(app.raw(Some(&acme.owner), Method::DELETE, &format!("/v1/keys/{key_id}"), None, &[]).await.status, 204);
    let accept = json!({"token": made["invitation"]["token"], "password": "a fine password"}).to_string();
    let orphan = app.raw(None, Method::POST, "/v1/auth/accept", Some(accept.as_bytes()), &[]).await;
    assert_error(&orphan, 401, "unauthenticated");
    // An admin can neither withdraw nor replace an invitation to a role above their own.
    let (_, admin_key) = app.key(&acme, "admin", None).await;
    let owner_invite = add_member(&app, &acme.owner, "heir@example.com", "owner").await.json().unwrap();
    let path = format!("/v1/invitations/{}", owner_invite["invitation"]["id"].as_str().unwrap());
    assert_error(&app.raw(Some(&admin_key), Method::DELETE, &path, None, &[]).await, 403, "forbidden");
    assert_error(&add_member(&app, &admin_key, "heir@example.com", "reader").await, 403, "forbidden");
    // The owner's invitation still works, and its acceptance is audited in the install's log.
    let accept = json!({"token": owner_invite["invitation"]["token"], "password": "heir's password"}).to_string();
    assert_eq!(app.raw(None, Method::POST, "/v1/auth/accept", Some(accept.as_bytes()), &[]).await.status, 200);
    let log = app.operator().audit("?action=auth.accept").await.unwrap();
    let last = log["items"].as_array().unwrap().last().unwrap();
    assert!(last["target"].as_str().unwrap().starts_with("heir@example.com (inv_"), "{log}");
}

#[tokio::test]
async fn admins_manage_members_below_owner_and_a_removal_takes_effect_at_once() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let (_, admin_key) = app.key(&acme, "admin", None).await;
    let ada = create_user(&app, "ada@example.com", "correct horse battery").await;
    let boss = create_user(&app, "boss@example.com", "correct horse battery").await;
    // An admin cannot make an owner; the owner can.
    assert_error(&add_member(&app, &admin_key, "boss@example.com", "owner").await, 403, "forbidden");
    let boss_joins = invite_and_accept(&app, &acme.owner, "boss@example.com", "owner", "correct horse battery").await;
    assert_eq!(boss_joins.status, 200);
    let ada_joins = invite_and_accept(&app, &admin_key, "ada@example.com", "writer", "correct horse battery").await;
    assert_eq!(ada_joins.status, 200);
    assert_error(&add_member(&app, &admin_key, "ada@example.com", "reader").await, 409, "conflict");
    // An admin cannot change or remove an owner.
    let patch = |who: &str| format!("/v1/members/{who}");
    let demote = json!({"role": "reader"}).to_string();
    assert_error(
        &app.raw(Some(&admin_key), Method::PATCH, &patch(&boss), Some(demote.as_bytes()), &[]).await,
        403,
        "forbidden",
    );
    assert_error(&app.raw(Some(&admin_key), Method::DELETE, &patch(&boss), None, &[]).await, 403, "forbidden");
    // A writer key lists no members.
    let (_, writer_key) = app.key(&acme, "writer", None).await;
    assert_error(&app.raw(Some(&writer_key), Method::GET, "/v1/members", None, &[]).await, 403, "forbidden");
    let res = app.raw(Some(&admin_key), Method::PATCH, &patch(&ada), Some(demote.as_bytes()), &[]).await;
    assert_eq!(res.json().unwrap()["role"], "reader");
    let listed = app.raw(Some(&admin_key), Method::GET, "/v1/members", None, &[]).await.json().unwrap();
    let roles: Vec<(String, String)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(roles, [("boss@example.com".into(), "owner".into()), ("ada@example.com".into(), "reader".into())]);
    let b = sign_in(&app, "ada@example.com", "correct horse battery").await;
    assert_eq!(b.send(&app, Method::GET, "/v1/files", None).await.status, 200);
    assert_eq!(app.raw(Some(&admin_key), Method::DELETE, &patch(&ada), None, &[]).await.status, 204);
    assert_error(&b.send(&app, Method::GET, "/v1/files", None).await, 404, "tenant_not_found");
    // The changes are in the tenant's audit log and event feed.
    let events = app.as_key(&acme.owner).events(0, None).await.unwrap();
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|t| t.starts_with("member."))
        .collect();
    assert_eq!(kinds, ["member.added", "member.added", "member.updated", "member.removed"]);
}

#[tokio::test]
async fn users_are_the_operators_and_a_new_password_or_disabling_ends_sessions() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let ada = create_user(&app, "ada@example.com", "correct horse battery").await;
    operator_adds(&app, "acme", "ada@example.com", "reader").await;
    // Tenant keys manage no users.
    assert_error(&app.raw(Some(&acme.owner), Method::GET, "/v1/users", None, &[]).await, 403, "forbidden");
    let dup = json!({"email": "Ada@Example.com", "password": "another password"}).to_string();
    assert_error(
        &app.raw(Some(&app.admin_key), Method::POST, "/v1/users", Some(dup.as_bytes()), &[]).await,
        409,
        "conflict",
    );
    let short = json!({"email": "x@example.com", "password": "short"}).to_string();
    assert_error(
        &app.raw(Some(&app.admin_key), Method::POST, "/v1/users", Some(short.as_bytes()), &[]).await,
        400,
        "invalid_request",
    );
    let listed = app.raw(Some(&app.admin_key), Method::GET, "/v1/users", None, &[]).await.json().unwrap();
    assert_eq!(listed["items"][0]["email"], "ada@example.com");
    assert!(!listed.to_string().contains("argon2"), "{listed}");
    assert!(listed["items"][0].get("password").is_none() && listed["items"][0]["has_password"] == true);
    let b = sign_in(&app, "ada@example.com", "correct horse battery").await;
    let path = format!("/v1/users/{ada}");
    let res = app
        .raw(
            Some(&app.admin_key),
            Method::PATCH,
            &path,
            Some(json!({"password": "a brand new one"}).to_string().as_bytes()),
            &[],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_error(&b.send(&app, Method::GET, "/v1/files", None).await, 401, "unauthenticated");
    let b = sign_in(&app, "ada@example.com", "a brand new one").await;
    let res = app
        .raw(Some(&app.admin_key), Method::PATCH, &path, Some(json!({"disabled": true}).to_string().as_bytes()), &[])
        .await;
    assert_eq!(res.json().unwrap()["disabled"], true);
    assert_error(&b.send(&app, Method::GET, "/v1/files", None).await, 401, "unauthenticated");
    let body = json!({"email": "ada@example.com", "password": "a brand new one"}).to_string();
    assert_error(
        &app.raw(None, Method::POST, "/v1/auth/login", Some(body.as_bytes()), &[]).await,
        401,
        "unauthenticated",
    );
}

#[tokio::test]
async fn a_super_admin_has_the_operators_rights_and_sessions_survive_a_restart() {
    let mut app = spawn_app().await;
    let body = json!({"email": "root@example.com", "password": "correct horse battery", "super_admin": true});
    let res = app.raw(Some(&app.admin_key), Method::POST, "/v1/users", Some(body.to_string().as_bytes()), &[]).await;
    assert_eq!(res.status, 201);
    let b = sign_in(&app, "root@example.com", "correct horse battery").await;
    let created = b.send(&app, Method::POST, "/v1/tenants", Some(json!({"slug": "made-by-root"}))).await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    app.restart().await;
    let b = Browser { cookie: b.cookie, origin: app.url.clone() };
    let t = b.send(&app, Method::GET, "/v1/tenants/made-by-root", None).await;
    assert_eq!(t.status, 200);
    let log = app.raw(Some(&app.admin_key), Method::GET, "/t/made-by-root/v1/audit", None, &[]).await.json().unwrap();
    assert!(log["items"][0]["actor"].as_str().unwrap().starts_with("user:usr_"), "{log}");
}

/// `GET /v1/auth/tenants{query}` as `b`: "slug:role" of each tenant found.
async fn switcher(app: &TestApp, b: &Browser, query: &str) -> Vec<String> {
    let res = b.send(app, Method::GET, &format!("/v1/auth/tenants{query}"), None).await;
    assert_eq!(res.status, 200, "{query}: {}", String::from_utf8_lossy(&res.body));
    let items = res.json().unwrap()["items"].as_array().unwrap().clone();
    items.iter().map(|t| format!("{}:{}", t["slug"].as_str().unwrap(), t["role"].as_str().unwrap())).collect()
}

#[tokio::test]
async fn the_switcher_finds_a_members_tenants_and_a_super_admins_every_tenant_by_slug_or_name() {
    let app = spawn_app().await;
    for (slug, name) in
        [("acme", "Acme Rockets"), ("acme-labs", "Labs"), ("globex", "Globex ACME Division"), ("initech", "Initech")]
    {
        app.create_tenant_with(json!({"slug": slug, "name": name})).await;
    }
    create_user(&app, "ada@example.com", "correct horse battery").await;
    for slug in ["acme", "globex", "initech"] {
        operator_adds(&app, slug, "ada@example.com", if slug == "globex" { "reader" } else { "admin" }).await;
    }
    let archived = app.raw(Some(&app.admin_key), Method::DELETE, "/v1/tenants/initech", None, &[]).await;
    assert_eq!(archived.status, 200, "{}", String::from_utf8_lossy(&archived.body));
    let ada = sign_in(&app, "ada@example.com", "correct horse battery").await;
    // Her memberships only (not acme-labs), the archived one left out; by slug or name, any case.
    assert_eq!(switcher(&app, &ada, "").await, ["acme:admin", "globex:reader"]);
    assert_eq!(switcher(&app, &ada, "?q=ACME").await, ["acme:admin", "globex:reader"]);
    assert_eq!(switcher(&app, &ada, "?q=rocket").await, ["acme:admin"]);
    assert_eq!(switcher(&app, &ada, "?q=labs").await, Vec::<String>::new());
    assert_eq!(switcher(&app, &ada, "?q=acme&limit=1").await, ["acme:admin"]);

    // A super-admin finds every tenant, archived ones too, as owner.
    let id = create_user(&app, "root@example.com", "correct horse battery").await;
    let patch = json!({"super_admin": true}).to_string();
    let res =
        app.raw(Some(&app.admin_key), Method::PATCH, &format!("/v1/users/{id}"), Some(patch.as_bytes()), &[]).await;
    assert_eq!(res.status, 200);
    let root = sign_in(&app, "root@example.com", "correct horse battery").await;
    assert_eq!(switcher(&app, &root, "?q=acme").await, ["acme:owner", "acme-labs:owner", "globex:owner"]);
    assert_eq!(switcher(&app, &root, "?q=init").await, ["initech:owner"]);

    // Bad input is refused with a clear code; without a session, 401; a key is no session.
    for query in ["?limit=0", "?limit=101", "?limit=x"] {
        assert_error(
            &ada.send(&app, Method::GET, &format!("/v1/auth/tenants{query}"), None).await,
            400,
            "invalid_request",
        );
    }
    let long = format!("/v1/auth/tenants?q={}", "a".repeat(201));
    assert_error(&ada.send(&app, Method::GET, &long, None).await, 400, "invalid_request");
    assert_error(&app.raw(None, Method::GET, "/v1/auth/tenants", None, &[]).await, 401, "unauthenticated");
    assert_error(
        &app.raw(Some(&app.admin_key), Method::GET, "/v1/auth/tenants", None, &[]).await,
        401,
        "unauthenticated",
    );
}
