//! TLS to the database, against the test cluster (scripts/pg-cluster.sh), which serves TLS with a
//! certificate for the name `localhost` signed by a CA of its own (`PG_CLUSTER_DIR/ca.crt`), and
//! lets members of `tenantry_cert_login` in with a client certificate only.

use std::path::{Path, PathBuf};
use tenantry_store_postgres::testing::{cluster_configured, TestDatabase};
use tenantry_store_postgres::{migrate_url, PgDatabase, PgStore, Target};

/// The test cluster's directory, or `None` (the test is skipped, saying so) for a cluster that
/// scripts/pg-cluster.sh did not start. Under `CI=true` it must be there.
fn cluster_dir() -> Option<PathBuf> {
    if !cluster_configured() {
        return None;
    }
    match std::env::var_os("PG_CLUSTER_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PG_CLUSTER_DIR is not set under CI=true: scripts/pg-cluster.sh exports it")
        }
        None => {
            eprintln!(
                "skipped: PG_CLUSTER_DIR is not set (a cluster scripts/pg-cluster.sh started has the certificates)"
            );
            None
        }
    }
}

fn ca() -> String {
    cluster_dir().expect("checked by the test").join("ca.crt").display().to_string()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `url` (as `TestDatabase` writes it, to 127.0.0.1) naming the server `localhost`, the name on
/// its certificate, while still connecting to 127.0.0.1.
fn by_name(url: &str) -> String {
    let named = url.replacen("@127.0.0.1:", "@localhost:", 1);
    assert_ne!(named, url, "the test cluster is reached at 127.0.0.1");
    format!("{named}?hostaddr=127.0.0.1")
}

/// `url` with `params` added to its query.
fn with(url: &str, params: &str) -> String {
    let joint = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joint}{params}")
}

async fn encrypted(db: &PgDatabase) -> bool {
    let client = db.client().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

async fn connect(url: &str) -> Result<PgDatabase, String> {
    PgDatabase::connect(url, 2).await.map_err(|e| e.message)
}

#[tokio::test]
async fn each_sslmode_connects_as_libpq_would_and_a_certificate_is_checked_as_asked() {
    if cluster_dir().is_none() {
        return;
    }
    let db = TestDatabase::create().await.expect("configured");
    // A CA that signed nothing the cluster presents.
    let dir = tempfile::tempdir().unwrap();
    let (other_key, other) = (path(&dir.path().join("other.key")), path(&dir.path().join("other.crt")));
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other CA", "-keyout"]
            .into_iter()
            .chain([other_key.as_str(), "-out", other.as_str()])
            .collect::<Vec<_>>(),
    );
    let verify_full = format!("sslmode=verify-full&sslrootcert={}", ca());
    // Migrations go over verified TLS too.
    migrate_url(&with(&by_name(&db.owner_url()), &verify_full), &db.app_role).await.unwrap();
    let app = db.app_url();

    let full = connect(&with(&by_name(&app), &verify_full)).await.unwrap();
    assert!(encrypted(&full).await);
    let wrong_name = connect(&with(&app, &verify_full)).await.err().unwrap();
    assert!(wrong_name.contains("certificate not valid for name \"127.0.0.1\""), "{wrong_name}");
    let unknown_issuer = connect(&with(&by_name(&app), "sslmode=verify-full&sslrootcert=system")).await.err().unwrap();
    assert!(unknown_issuer.contains("UnknownIssuer"), "{unknown_issuer}");
    let chain_only = connect(&with(&app, &format!("sslmode=verify-ca&sslrootcert={}", ca()))).await.unwrap();
    assert!(encrypted(&chain_only).await, "verify-ca takes the chain and not the name");
    let chain_unknown = connect(&with(&app, &format!("sslmode=verify-ca&sslrootcert={other}"))).await.err().unwrap();
    assert!(chain_unknown.contains("UnknownIssuer"), "{chain_unknown}");
    // libpq checks the chain whenever it has a root certificate, in `require` and `prefer` too.
    for mode in ["require", "prefer"] {
        let refused = connect(&with(&app, &format!("sslmode={mode}&sslrootcert={other}"))).await.err().unwrap();
        assert!(refused.contains("UnknownIssuer"), "{mode}: {refused}");
    }
    assert!(encrypted(&connect(&with(&app, &format!("sslmode=require&sslrootcert={}", ca()))).await.unwrap()).await);

    assert!(encrypted(&connect(&with(&app, "sslmode=require")).await.unwrap()).await);
    assert!(encrypted(&connect(&app).await.unwrap()).await, "prefer, the default, encrypts where the server can");
    assert!(!encrypted(&connect(&with(&app, "sslmode=disable")).await.unwrap()).await);
    db.drop_all().await;
}

#[tokio::test]
async fn a_node_keeps_every_connection_on_verified_tls() {
    if cluster_dir().is_none() {
        return;
    }
    let db = TestDatabase::create().await.expect("configured");
    migrate_url(&db.owner_url(), &db.app_role).await.unwrap();
    let url = with(&by_name(&db.app_url()), &format!("sslmode=verify-full&sslrootcert={}", ca()));
    let store = PgStore::open(&url, 4).await.unwrap();
    let admin = db.admin().await;
    let rows = admin
        .query(
            "SELECT a.application_name::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = $1 AND a.usename = $2 ORDER BY 1",
            &[&db.name, &db.app_role],
        )
        .await
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // The pool's connection, the directory's, and the feed's LISTEN connection.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(_, ssl)| *ssl), "{seen:?}");
    assert!(seen.iter().any(|(name, _)| name.ends_with("-feed")), "{seen:?}");
    tenantry_core::store::Health::close(&store).await.unwrap();
    db.drop_all().await;
}

#[tokio::test]
async fn a_client_certificate_logs_in_a_role_that_needs_one() {
    let Some(cluster) = cluster_dir() else { return };
    let db = TestDatabase::create().await.expect("configured");
    let role = format!("{}_cert", db.app_role);
    db.admin().await.batch_execute(&format!("CREATE ROLE {role} LOGIN IN ROLE tenantry_cert_login")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key, csr, cert) =
        (dir.path().join("client.key"), dir.path().join("client.csr"), dir.path().join("client.crt"));
    let ca_key = cluster.join("ca.key");
    let subject = format!("/CN={role}");
    let (key_at, csr_at, cert_at) = (path(&key), path(&csr), path(&cert));
    let (ca_at, ca_key_at) = (ca(), path(&ca_key));
    // Extensions make it a version 3 certificate, as rustls requires.
    let ext = dir.path().join("client.ext");
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    let ext_at = path(&ext);
    let steps: [&[&str]; 2] = [
        &["req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key_at, "-out", &csr_at],
        &[
            "x509", "-req", "-days", "1", "-CA", &ca_at, "-CAkey", &ca_key_at, "-in", &csr_at, "-extfile", &ext_at,
            "-out", &cert_at,
        ],
    ];
    for args in steps {
        openssl(args);
    }
    let url = with(&by_name(&db.url_as(&role)), &format!("sslmode=verify-full&sslrootcert={}", ca()));
    let with_cert = with(&url, &format!("sslcert={}&sslkey={}", cert.display(), key.display()));
    let client = Target::parse(&with_cert).unwrap().connect().await.unwrap();
    let me: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(me, role);
    // Without one, pg_hba's `cert` refuses the login itself (28000), after TLS went through.
    let refused = Target::parse(&url).unwrap().connect().await.err().unwrap();
    let said = tenantry_store_postgres::error::describe(&refused);
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION), "{said}");
    assert!(said.contains("certificate"), "{said}");
    drop(client);
    db.admin().await.batch_execute(&format!("DROP ROLE {role}")).await.unwrap();
    db.drop_all().await;
}
