//! The cross-tenant property test: seeded random sequences of operations by several tenants and
//! keys (roles, prefixes, suspended and archived tenants, the operator with and without naming a
//! tenant) and by signed-in people (members of one, two or no tenants, naming any tenant) against
//! the real server, each answer checked against a simple model: files, memory,
//! search and the event feed. No answer may carry another tenant's data, and no event names
//! another tenant's key. `TENANTRY_TEST_SEED` replays a run; `TENANTRY_MODEL_OPS` sets
//! its length (default 3000).

use crate::helpers::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use std::collections::{BTreeMap, HashMap};

const PATHS: &[&str] = &["/a", "/p", "/p/x", "/p/q", "/p/q/y", "/p2/z", "/pq"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Active,
    Suspended,
    Archived,
}

#[derive(Clone, Debug)]
struct ModelKey {
    secret: String,
    writer: bool,
    prefix: Option<&'static str>,
}

impl ModelKey {
    fn covers(&self, path: &str) -> bool {
        self.prefix.is_none_or(|p| path == p || path.starts_with(&format!("{p}/")))
    }
}

struct ModelTenant {
    slug: String,
    status: Status,
    keys: Vec<ModelKey>,
}

#[derive(Debug, Clone)]
enum Actor {
    Key {
        tenant: usize,
        key: usize,
    },
    /// A tenant key naming another tenant by header or path.
    Foreign {
        tenant: usize,
        key: usize,
        names: usize,
        by_path: bool,
    },
    Operator {
        names: Option<usize>,
    },
    /// A signed-in person (a session cookie) naming a tenant by header or path.
    Person {
        person: usize,
        names: usize,
        by_path: bool,
    },
}

/// Whose data a request acts on, the key it acts as (a person's role as a key of that role), the
/// bearer secret sent (none for a person), its headers and its `/t/{slug}` path prefix.
type Acting = (usize, Option<ModelKey>, Option<String>, Vec<(String, String)>, String);

/// A signed-in person: their session cookie and their role (writer or not) in each tenant.
struct ModelPerson {
    cookie: String,
    writer_in: HashMap<usize, bool>,
}

fn marker(slug: &str) -> String {
    format!("SECRET-{slug}-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_never_cross_tenants_and_match_the_model() {
    let seed: u64 = std::env::var("TENANTRY_TEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    let ops: usize = std::env::var("TENANTRY_MODEL_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    println!("model test seed {seed} (TENANTRY_TEST_SEED), {ops} operations");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let app = spawn_app().await;

    let mut tenants = Vec::new();
    for slug in ["mt-alpha", "mt-beta", "mt-gamma"] {
        let t = app.create_tenant(slug).await;
        let mut keys = vec![ModelKey { secret: t.owner.clone(), writer: true, prefix: None }];
        for (role, prefix, writer) in
            [("writer", Some("/p"), true), ("reader", None, false), ("admin", Some("/p/q"), true)]
        {
            keys.push(ModelKey { secret: app.key(&t, role, prefix).await.1, writer, prefix });
        }
        tenants.push(ModelTenant { slug: slug.into(), status: Status::Active, keys });
    }
    // default's data, for the operator without a tenant name.
    let default_idx = tenants.len();
    tenants.push(ModelTenant { slug: "default".into(), status: Status::Active, keys: vec![] });
    // People: a writer of alpha and a reader of beta, an admin of gamma, and a member of nothing.
    let mut people = Vec::new();
    for (email, roles) in [
        ("two@example.com", vec![(0, "writer"), (1, "reader")]),
        ("one@example.com", vec![(2, "admin")]),
        ("none@example.com", vec![]),
    ] {
        let user = serde_json::json!({"email": email, "password": "model password"});
        app.operator().json(Method::POST, "/v1/users", Some(&user)).await.unwrap();
        let mut writer_in = HashMap::new();
        for (t, role) in roles {
            let operator = app.operator().with_tenant(Some(tenants[t].slug.clone()));
            let member = serde_json::json!({"email": email, "role": role});
            operator.json(Method::POST, "/v1/members", Some(&member)).await.unwrap();
            writer_in.insert(t, role != "reader");
        }
        let login = app.raw(None, Method::POST, "/v1/auth/login", Some(user.to_string().as_bytes()), &[]).await;
        let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
        people.push(ModelPerson { cookie, writer_in });
    }
    let mut files: HashMap<(usize, String), String> = HashMap::new();
    let mut memory: HashMap<(usize, String), String> = HashMap::new();
    // Key ids by tenant (the id is inside the secret: tnr_key_<id>_<random>).
    let key_id =
        |secret: &str| secret.strip_prefix("tnr_").and_then(|s| s.rsplit_once('_')).map(|(id, _)| id.to_owned());
    let key_ids: Vec<Vec<String>> =
        tenants.iter().map(|t| t.keys.iter().filter_map(|k| key_id(&k.secret)).collect()).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();

    for step in 0..ops {
        let ctx = format!("seed {seed}, step {step}");
        // Tenant administration now and then.
        if rng.gen_ratio(1, 40) {
            let i = rng.gen_range(0..default_idx);
            let (verb, next) = match tenants[i].status {
                Status::Active if rng.gen_bool(0.5) => ("suspend", Status::Suspended),
                Status::Active => ("archive", Status::Archived),
                Status::Suspended => ("resume", Status::Active),
                Status::Archived => ("restore", Status::Active),
            };
            let op = app.operator();
            let res = if verb == "archive" {
                op.archive_tenant(&tenants[i].slug).await
            } else {
                op.tenant_action(&tenants[i].slug, verb).await
            };
            assert_eq!(res.unwrap()["slug"], tenants[i].slug.as_str(), "{ctx}");
            tenants[i].status = next;
            *counts.entry(verb).or_default() += 1;
            continue;
        }

        let actor = match rng.gen_range(0..12) {
            0 => Actor::Operator { names: if rng.gen_bool(0.3) { None } else { Some(rng.gen_range(0..default_idx)) } },
            10 | 11 => Actor::Person {
                person: rng.gen_range(0..people.len()),
                names: rng.gen_range(0..default_idx),
                by_path: rng.gen_bool(0.5),
            },
            1 => {
                let tenant = rng.gen_range(0..default_idx);
                let names = (tenant + rng.gen_range(1..default_idx)) % default_idx;
                Actor::Foreign { tenant, key: rng.gen_range(0..4), names, by_path: rng.gen_bool(0.5) }
            }
            _ => Actor::Key { tenant: rng.gen_range(0..default_idx), key: rng.gen_range(0..4) },
        };
        let path = *PATHS.choose(&mut rng).unwrap();
        let op =
            *["put", "get", "delete", "list", "head", "search", "events", "mset", "mget"].choose(&mut rng).unwrap();
        let mem_key = *["k1", "k2"].choose(&mut rng).unwrap();
        let file_op = ["put", "get", "delete", "head"].contains(&op);
        *counts.entry(op).or_default() += 1;

        // Whose data the request acts on, which key (if any), and what the model expects first.
        let (acting, key, secret, mut headers, mut prefix_path): Acting = match &actor {
            Actor::Key { tenant, key } => {
                let k = tenants[*tenant].keys[*key].clone();
                (*tenant, Some(k.clone()), Some(k.secret), vec![], String::new())
            }
            Actor::Person { person, names, by_path } => {
                let p = &people[*person];
                // As a key of the person's role there, without a prefix (none when not a member).
                let k = ModelKey { secret: String::new(), writer: p.writer_in.get(names) == Some(&true), prefix: None };
                let mut headers = vec![("cookie".into(), p.cookie.clone()), ("origin".into(), app.url.clone())];
                let slug = tenants[*names].slug.clone();
                if *by_path {
                    (*names, Some(k), None, headers, format!("/t/{slug}"))
                } else {
                    headers.push(("x-tenant-id".into(), slug));
                    (*names, Some(k), None, headers, String::new())
                }
            }
            Actor::Foreign { tenant, key, names, by_path } => {
                let k = tenants[*tenant].keys[*key].clone();
                let slug = tenants[*names].slug.clone();
                if *by_path {
                    (*tenant, Some(k.clone()), Some(k.secret), vec![], format!("/t/{slug}"))
                } else {
                    (*tenant, Some(k.clone()), Some(k.secret), vec![("x-tenant-id".into(), slug)], String::new())
                }
            }
            Actor::Operator { names: Some(j) } => (
                *j,
                None,
                Some(app.admin_key.clone()),
                vec![("x-tenant-id".into(), tenants[*j].slug.clone())],
                String::new(),
            ),
            Actor::Operator { names: None } => (default_idx, None, Some(app.admin_key.clone()), vec![], String::new()),
        };
        if rng.gen_ratio(1, 10) && matches!(actor, Actor::Key { .. }) {
            // Naming its own tenant explicitly is fine.
            if rng.gen_bool(0.5) {
                headers.push(("x-tenant-id".into(), tenants[acting].slug.clone()));
            } else {
                prefix_path = format!("/t/{}", tenants[acting].slug);
            }
        }
        let status = tenants[acting].status;
        let refusal: Option<(u16, &str)> = match (&actor, key.as_ref()) {
            // A tenant a person is not a member of (or an archived one) does not exist for them.
            (Actor::Person { person, .. }, _)
                if status == Status::Archived || !people[*person].writer_in.contains_key(&acting) =>
            {
                Some((404, "tenant_not_found"))
            }
            (_, Some(_)) if status == Status::Archived => Some((401, "unauthenticated")),
            (Actor::Foreign { .. }, _) => Some((403, "tenant_mismatch")),
            (_, Some(_)) if status == Status::Suspended => Some((403, "tenant_suspended")),
            (_, None) if status == Status::Archived => Some((409, "conflict")),
            (_, Some(k)) if (op == "put" || op == "delete" || op == "mset") && !k.writer => Some((403, "forbidden")),
            // Memory lies under no path: keys with a prefix have none.
            (_, Some(k)) if (op == "mset" || op == "mget") && k.prefix.is_some() => Some((403, "forbidden")),
            (_, Some(k)) if file_op && !k.covers(path) => Some((403, "forbidden")),
            _ => None,
        };

        let body = format!("{}{step}", marker(&tenants[acting].slug));
        let (method, url) = match op {
            "put" => (Method::PUT, format!("{prefix_path}/v1/files{path}")),
            "get" => (Method::GET, format!("{prefix_path}/v1/files{path}")),
            "head" => (Method::HEAD, format!("{prefix_path}/v1/files{path}")),
            "delete" => (Method::DELETE, format!("{prefix_path}/v1/files{path}")),
            "search" => (Method::GET, format!("{prefix_path}/v1/search?q=secret&kind=file&limit=100")),
            "events" => (Method::GET, format!("{prefix_path}/v1/events?after=0&limit=1000")),
            "mset" => (Method::PUT, format!("{prefix_path}/v1/memory/ns/{mem_key}")),
            "mget" => (Method::GET, format!("{prefix_path}/v1/memory/ns/{mem_key}")),
            _ => (Method::GET, format!("{prefix_path}/v1/files?prefix={path}&recursive=true")),
        };
        let json_body = serde_json::to_string(&body).unwrap();
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let sent = match op {
            "put" => Some(body.as_bytes()),
            "mset" => Some(json_body.as_bytes()),
            _ => None,
        };
        let res = app.raw(secret.as_deref(), method, &url, sent, &header_refs).await;
        let text = String::from_utf8_lossy(&res.body).to_string();
        let header_text: String =
            res.headers.iter().map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes()))).collect();

        // Never another tenant's data or id, in the body or the headers, whatever the answer.
        for (j, t) in tenants.iter().enumerate() {
            if j != acting {
                for (part, what) in [(&text, "body"), (&header_text, "headers")] {
                    assert!(
                        !part.contains(&marker(&t.slug)),
                        "{ctx}: {actor:?} {op} {path} leaked {} in its {what}: {part}",
                        t.slug
                    );
                }
            }
        }

        if let Some((code_status, code_name)) = refusal {
            assert_eq!(res.status.as_u16(), code_status, "{ctx}: {actor:?} {op} {path}: {text}");
            if op != "head" {
                assert_eq!(code(&res), code_name, "{ctx}: {actor:?} {op} {path}");
            }
            continue;
        }
        let current = files.get(&(acting, path.to_owned())).cloned();
        match op {
            "search" => {
                assert_eq!(res.status.as_u16(), 200, "{ctx}: search: {text}");
                let v = res.json().unwrap();
                let mut got: Vec<String> =
                    v["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_owned()).collect();
                got.sort();
                let mut want: Vec<String> = files
                    .keys()
                    .filter(|(t, p)| *t == acting && key.as_ref().is_none_or(|k| k.covers(p)))
                    .map(|(_, p)| p.clone())
                    .collect();
                want.sort();
                assert_eq!(got, want, "{ctx}: search by {actor:?}");
            }
            "events" => {
                assert_eq!(res.status.as_u16(), 200, "{ctx}: events: {text}");
                let v = res.json().unwrap();
                for e in v["items"].as_array().unwrap() {
                    let actor_field = e["actor"].as_str().unwrap();
                    for (j, ids) in key_ids.iter().enumerate() {
                        if j != acting {
                            assert!(
                                !ids.iter().any(|id| actor_field == format!("key:{id}")),
                                "{ctx}: an event of {} reached {}: {e}",
                                tenants[j].slug,
                                tenants[acting].slug
                            );
                        }
                    }
                    if let (Some(k), Some(p)) = (key.as_ref(), e["path"].as_str()) {
                        assert!(k.covers(p), "{ctx}: a key limited to {:?} saw an event about {p}", k.prefix);
                    }
                    if key.as_ref().is_some_and(|k| k.prefix.is_some()) {
                        assert!(e["path"].is_string(), "{ctx}: a prefixed key saw a pathless event: {e}");
                    }
                }
            }
            "mset" => {
                assert_eq!(res.status.as_u16(), 200, "{ctx}: mset: {text}");
                memory.insert((acting, mem_key.to_owned()), body.clone());
            }
            "mget" => match memory.get(&(acting, mem_key.to_owned())) {
                Some(want) => {
                    assert_eq!(res.status.as_u16(), 200, "{ctx}: mget {mem_key}: {text}");
                    assert_eq!(res.json().unwrap()["value"], want.as_str(), "{ctx}: mget {mem_key}");
                }
                None => assert_eq!((res.status.as_u16(), code(&res).as_str()), (404, "not_found"), "{ctx}: mget"),
            },
            "put" => {
                assert_eq!(res.status.as_u16(), if current.is_some() { 200 } else { 201 }, "{ctx}: put {path}: {text}");
                files.insert((acting, path.to_owned()), body);
            }
            "get" => match current {
                Some(c) => assert_eq!((res.status.as_u16(), text.as_str()), (200, c.as_str()), "{ctx}: get {path}"),
                None => assert_eq!((res.status.as_u16(), code(&res).as_str()), (404, "not_found"), "{ctx}: get {path}"),
            },
            "head" => assert_eq!(res.status.as_u16(), if current.is_some() { 200 } else { 404 }, "{ctx}: head {path}"),
            "delete" => {
                assert_eq!(res.status.as_u16(), if current.is_some() { 204 } else { 404 }, "{ctx}: delete {path}");
                files.remove(&(acting, path.to_owned()));
            }
            _ => {
                assert_eq!(res.status.as_u16(), 200, "{ctx}: list {path}: {text}");
                let v = res.json().unwrap();
                let got: Vec<String> =
                    v["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_owned()).collect();
                let mut want: Vec<String> = files
                    .keys()
                    .filter(|(t, p)| *t == acting && p.starts_with(&format!("{path}/")))
                    .filter(|(_, p)| key.as_ref().is_none_or(|k| k.covers(p)))
                    .map(|(_, p)| p.clone())
                    .collect();
                want.sort();
                assert_eq!(got, want, "{ctx}: list {path} by {actor:?}");
            }
        }
    }
    println!("model test: {counts:?}");
    assert!(counts.values().sum::<usize>() >= ops);
    // Each tenant's audit chain still verifies after all of it.
    for t in &tenants[..default_idx] {
        let op = app.operator().with_tenant(Some(t.slug.clone()));
        let report = op.verify_audit().await.unwrap();
        assert_eq!(report["ok"], true, "{}: {report}", t.slug);
    }
}
