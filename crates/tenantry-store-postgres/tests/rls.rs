//! Row-level security as a real lock, against a real PostgreSQL (scripts/pg-cluster.sh): as the
//! server's role, a transaction sees and writes only the rows of the tenant it set, nothing with
//! no tenant set, and a pooled connection carries no tenant into its next transaction.

use tenantry_core::ids::TenantId;
use tenantry_store_postgres::schema::{self, Migrated, INSTALL_TABLES, TENANT_TABLES};
use tenantry_store_postgres::testing::TestDatabase;
use tenantry_store_postgres::{read_once, tenant_transaction, PgDatabase};

/// A migrated database with tenants `a` and `b`, each with one file row, written as the owner.
async fn two_tenants() -> Option<(TestDatabase, TenantId, TenantId)> {
    let db = TestDatabase::create().await?;
    let mut owner = db.connect_as(&db.owner_role).await;
    assert_eq!(
        schema::migrate(&mut owner, &db.app_role).await.unwrap(),
        Migrated { from: 0, to: schema::current_version() }
    );
    let (a, b) = (TenantId::generate(), TenantId::generate());
    for (t, slug) in [(&a, "alpha"), (&b, "bravo")] {
        owner
            .execute(
                "INSERT INTO tenants (id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at)
                 VALUES ($1, $2, $2, 'free', 'active', 'shared', '[]', '{}', '{}', 0, 0)",
                &[&t.as_str(), &slug],
            )
            .await
            .unwrap();
        owner
            .execute(
                "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, body_id)
                 VALUES ($1, '/' || $2, 1, 'e', 1, 'text/plain', 0, 0, 1)",
                &[&t.as_str(), &slug],
            )
            .await
            .unwrap();
    }
    Some((db, a, b))
}

fn paths(rows: &[tokio_postgres::Row]) -> Vec<String> {
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

#[tokio::test]
async fn every_tenant_table_has_row_level_security_enabled_and_forced() {
    let Some(db) = TestDatabase::create().await else { return };
    let mut owner = db.connect_as(&db.owner_role).await;
    schema::migrate(&mut owner, &db.app_role).await.unwrap();
    let rows = owner
        .query(
            "SELECT relname::text, relrowsecurity, relforcerowsecurity FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname",
            &[],
        )
        .await
        .unwrap();
    let mut locked: Vec<String> = Vec::new();
    for r in &rows {
        let (name, enabled, forced): (String, bool, bool) = (r.get(0), r.get(1), r.get(2));
        match name.as_str() {
            "tenantry_schema" => assert!(!enabled, "the schema version is no tenant's"),
            n if INSTALL_TABLES.contains(&n) => assert!(!enabled, "{n} is the install's, no tenant's"),
            _ => {
                assert!(enabled && forced, "{name}: row-level security enabled {enabled}, forced {forced}");
                locked.push(name);
            }
        }
    }
    let mut listed: Vec<String> = TENANT_TABLES.iter().map(|(t, _)| t.to_string()).collect();
    listed.sort();
    assert_eq!(
        locked, listed,
        "every table but the schema version and the install's people is a tenant table, and locked"
    );
    db.drop_all().await;
}

#[tokio::test]
async fn a_transaction_sees_and_writes_only_the_rows_of_the_tenant_it_set() {
    let Some((db, a, b)) = two_tenants().await else { return };
    let node = PgDatabase::connect(&db.app_url(), 2).await.unwrap();
    let mut conn = node.client().await.unwrap();
    let tx = tenant_transaction(&mut conn, &a).await.unwrap();
    // Unfiltered: A's rows only.
    assert_eq!(paths(&tx.query("SELECT path FROM files", &[]).await.unwrap()), ["/alpha"]);
    assert_eq!(paths(&tx.query("SELECT slug FROM tenants", &[]).await.unwrap()), ["alpha"]);
    // Asking for B's rows by name finds nothing.
    let theirs = tx.query("SELECT path FROM files WHERE tenant_id = $1", &[&b.as_str()]).await.unwrap();
    assert!(theirs.is_empty());
    // An unfiltered update or delete touches A's rows only.
    assert_eq!(tx.execute("UPDATE files SET size = 99", &[]).await.unwrap(), 1);
    // Writing a row of B's is refused.
    let refused = tx
        .execute(
            "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, body_id)
             VALUES ($1, '/planted', 1, 'e', 1, 'text/plain', 0, 0, 1)",
            &[&b.as_str()],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{refused:?}");
    drop(tx); // rolled back
    let tx = tenant_transaction(&mut conn, &a).await.unwrap();
    // Moving A's row to B is refused too (WITH CHECK).
    let moved = tx.execute("UPDATE files SET tenant_id = $1", &[&b.as_str()]).await.unwrap_err();
    assert_eq!(moved.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    drop(tx);
    let tx = tenant_transaction(&mut conn, &a).await.unwrap();
    assert_eq!(tx.execute("DELETE FROM files", &[]).await.unwrap(), 1);
    tx.commit().await.unwrap();
    // B's row is untouched, as its owner sees.
    let owner = db.connect_as(&db.owner_role).await;
    let left = owner.query("SELECT path FROM files ORDER BY path", &[]).await.unwrap();
    assert_eq!(paths(&left), ["/bravo"]);
    drop(conn);
    db.drop_all().await;
}

#[tokio::test]
async fn with_no_tenant_set_nothing_is_visible_or_writable() {
    let Some((db, a, _)) = two_tenants().await else { return };
    let node = PgDatabase::connect(&db.app_url(), 1).await.unwrap();
    let conn = node.client().await.unwrap();
    for table in ["files", "tenants"] {
        let n: i64 = conn.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "{table}");
    }
    let refused = conn
        .execute(
            "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, body_id)
             VALUES ($1, '/x', 1, 'e', 1, 'text/plain', 0, 0, 1)",
            &[&a.as_str()],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    // The policies read only the setting, which the server makes per transaction and never for
    // a session (`tenant_transaction`): the next test shows a connection keeps none of it.
    drop(conn);
    db.drop_all().await;
}

#[tokio::test]
async fn the_next_transaction_on_the_same_pooled_connection_sees_nothing_of_the_previous_tenant() {
    let Some((db, a, _)) = two_tenants().await else { return };
    let node = PgDatabase::connect(&db.app_url(), 1).await.unwrap();
    let pid = {
        let mut conn = node.client().await.unwrap();
        let tx = tenant_transaction(&mut conn, &a).await.unwrap();
        assert_eq!(paths(&tx.query("SELECT path FROM files", &[]).await.unwrap()), ["/alpha"]);
        let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        tx.commit().await.unwrap();
        pid
    };
    for ended in ["committed", "rolled back"] {
        let mut conn = node.client().await.unwrap();
        let same: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        assert_eq!(same, pid, "one connection in the pool: the same one again");
        let n: i64 = conn.query_one("SELECT count(*) FROM files", &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "after a {ended} transaction of A's, nothing of A's is visible");
        let setting: Option<String> =
            conn.query_one("SELECT current_setting('tenantry.tenant_id', true)", &[]).await.unwrap().get(0);
        assert!(setting.unwrap_or_default().is_empty());
        // This time roll back instead.
        let tx = tenant_transaction(&mut conn, &a).await.unwrap();
        assert_eq!(paths(&tx.query("SELECT path FROM files", &[]).await.unwrap()), ["/alpha"]);
        drop(tx);
    }
    db.drop_all().await;
}

#[tokio::test]
async fn a_one_trip_read_sees_its_tenant_only_and_leaves_the_connection_as_it_found_it() {
    let Some((db, a, b)) = two_tenants().await else { return };
    let node = PgDatabase::connect(&db.app_url(), 1).await.unwrap();
    let conn = node.client().await.unwrap();
    let unscoped = read_once(&conn, &a, "SELECT path FROM files", &[]).await.unwrap();
    assert_eq!(paths(&unscoped), ["/alpha"], "an unfiltered read sees A's rows only");
    // A failing statement: its transaction is rolled back, and the connection is usable.
    let failed = read_once(&conn, &b, "SELECT 1 / (count(*) - 1) FROM files", &[]).await;
    assert!(failed.is_err());
    assert_eq!(paths(&read_once(&conn, &b, "SELECT path FROM files", &[]).await.unwrap()), ["/bravo"]);
    // Nothing stays: no transaction open, no tenant set, nothing visible.
    let xid = || async { conn.query_one("SELECT txid_current()", &[]).await.unwrap().get::<_, i64>(0) };
    assert_ne!(xid().await, xid().await, "each statement is a transaction of its own: none was left open");
    let n: i64 = conn.query_one("SELECT count(*) FROM files", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
    let setting: Option<String> =
        conn.query_one("SELECT current_setting('tenantry.tenant_id', true)", &[]).await.unwrap().get(0);
    assert!(setting.unwrap_or_default().is_empty());
    drop(conn);
    db.drop_all().await;
}

#[tokio::test]
async fn a_node_refuses_a_role_that_row_level_security_would_not_bind() {
    let Some((db, _, _)) = two_tenants().await else { return };
    let err = PgDatabase::connect(&db.owner_url(), 1).await.err().expect("the owner is refused");
    assert!(err.message.contains(&format!("the database role {} owns tables", db.owner_role)), "{}", err.message);
    let admin = db.admin().await;
    admin.batch_execute(&format!("ALTER ROLE {} BYPASSRLS", db.app_role)).await.unwrap();
    let err = PgDatabase::connect(&db.app_url(), 1).await.err().expect("a BYPASSRLS role is refused");
    assert!(err.message.contains("has BYPASSRLS"), "{}", err.message);
    admin.batch_execute(&format!("ALTER ROLE {} NOBYPASSRLS", db.app_role)).await.unwrap();
    PgDatabase::connect(&db.app_url(), 1).await.unwrap();
    db.drop_all().await;
}

#[tokio::test]
async fn a_node_refuses_a_schema_older_or_newer_than_it_knows_saying_what_to_run() {
    let Some(db) = TestDatabase::create().await else { return };
    let err = PgDatabase::connect(&db.app_url(), 1).await.err().expect("no schema");
    assert!(err.message.contains("no Tenantry schema: run `tenantry db migrate --url URL`"), "{}", err.message);
    let mut owner = db.connect_as(&db.owner_role).await;
    schema::migrate(&mut owner, &db.app_role).await.unwrap();
    owner.execute("UPDATE tenantry_schema SET version = 999", &[]).await.unwrap();
    let err = PgDatabase::connect(&db.app_url(), 1).await.err().expect("a newer schema");
    assert!(err.message.contains("schema version 999, newer than this binary knows"), "{}", err.message);
    let err = schema::migrate(&mut owner, &db.app_role).await.unwrap_err();
    assert!(err.message.contains("newer than this binary knows"), "migrate does not go back: {}", err.message);
    db.drop_all().await;
}

#[tokio::test]
async fn migrating_twice_at_once_applies_each_migration_once() {
    let Some(db) = TestDatabase::create().await else { return };
    let (mut one, mut two) = (db.connect_as(&db.owner_role).await, db.connect_as(&db.owner_role).await);
    let app = db.app_role.clone();
    let (r1, r2) = tokio::join!(schema::migrate(&mut one, &app), schema::migrate(&mut two, &app));
    let mut outcomes = [r1.unwrap(), r2.unwrap()];
    outcomes.sort_by_key(|m| m.from);
    let v = schema::current_version();
    assert_eq!(outcomes, [Migrated { from: 0, to: v }, Migrated { from: v, to: v }]);
    drop((one, two));
    db.drop_all().await;
}

/// A database an earlier build migrated (version 1) is refused until `db migrate` brings it up;
/// then its keys' revocations are notified in their own form too, and the event heads function
/// answers the server's role.
#[tokio::test]
async fn a_database_of_version_one_is_brought_up_by_migrate() {
    let Some(db) = TestDatabase::create().await else { return };
    let mut owner = db.connect_as(&db.owner_role).await;
    assert_eq!(schema::migrate_to(&mut owner, &db.app_role, 1).await.unwrap(), Migrated { from: 0, to: 1 });
    let refused = PgDatabase::connect(&db.app_url(), 1).await.err().unwrap();
    assert!(refused.message.contains("older than this binary's"), "{}", refused.message);
    let v = schema::current_version();
    assert_eq!(schema::migrate(&mut owner, &db.app_role).await.unwrap(), Migrated { from: 1, to: v });
    let t = TenantId::generate();
    owner
        .batch_execute(&format!(
            "INSERT INTO tenants (id, slug, name, tier, status, placement, domains, quotas, metadata, created_at, updated_at)
             VALUES ('{t}', 'acme', 'acme', 'free', 'active', 'shared', '[]', '{{}}', '{{}}', 0, 0);
             INSERT INTO tenant_usage (tenant_id, last_event_seq) VALUES ('{t}', 7);
             INSERT INTO keys (tenant_id, id, name, role, hash, created_at, created_by)
             VALUES ('{t}', 'k1', 'k', 'reader', '\\x00', 0, 'test')"
        ))
        .await
        .unwrap();
    let app = PgDatabase::connect(&db.app_url(), 1).await.unwrap();
    let app = app.client().await.unwrap();
    let heads = app.query("SELECT tenant_id, last_event_seq FROM tenantry_event_heads($1)", &[&vec![t.as_str()]]).await;
    let heads: Vec<(String, i64)> = heads.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(heads, [(t.as_str().to_owned(), 7)]);
    // The revocation's own notice, then the plain one.
    let (listener, mut connection) = tokio_postgres::connect(&db.app_url(), tokio_postgres::NoTls).await.unwrap();
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN tenantry_directory").await.unwrap();
    owner.batch_execute("UPDATE keys SET revoked_at = 42 WHERE id = 'k1'").await.unwrap();
    let mut heard = Vec::new();
    while heard.len() < 2 {
        heard.push(tokio::time::timeout(std::time::Duration::from_secs(5), notices.recv()).await.unwrap().unwrap());
    }
    assert_eq!(heard, [format!("{t} k1 42"), t.to_string()]);
    db.drop_all().await;
}

#[tokio::test]
async fn every_key_of_tenant_data_leads_with_the_tenant() {
    let Some(db) = TestDatabase::create().await else { return };
    let mut owner = db.connect_as(&db.owner_role).await;
    schema::migrate(&mut owner, &db.app_role).await.unwrap();
    // Every primary key and unique index, with its first column.
    let rows = owner
        .query(
            "SELECT c.relname::text, i.relname::text, a.attname::text
             FROM pg_index x
             JOIN pg_class c ON c.oid = x.indrelid
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
             WHERE (x.indisprimary OR x.indisunique) AND c.relnamespace = 'public'::regnamespace
             ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut global = Vec::new();
    for r in &rows {
        let (table, index, first): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        match table.as_str() {
            // The registry: a slug and a domain are unique across tenants; people (users, their
            // sessions, invitations found by id) are the install's, an email unique across it.
            "tenants" | "tenant_domains" | "users" | "sessions" | "invitations" => {
                global.push(format!("{index}({first})"))
            }
            _ => assert_eq!(first, "tenant_id", "{table}: {index} leads with {first}"),
        }
    }
    assert_eq!(
        global,
        [
            "invitations_pkey(id)",
            "invitations_tenant_id_email_key(tenant_id)",
            "sessions_pkey(id)",
            "tenant_domains_pkey(domain)",
            "tenants_pkey(id)",
            "tenants_slug_key(slug)",
            "users_email_key(email)",
            "users_pkey(id)"
        ]
    );
    db.drop_all().await;
}

#[tokio::test]
async fn the_servers_role_reads_across_tenants_only_through_the_upkeep_functions() {
    let Some((db, a, b)) = two_tenants().await else { return };
    let app = db.connect_as(&db.app_role).await;
    let direct: i64 = app.query_one("SELECT count(*) FROM tenants", &[]).await.unwrap().get(0);
    assert_eq!(direct, 0, "no tenant set: nothing");
    let mut ids: Vec<String> =
        app.query("SELECT id FROM tenantry_directory_tenants()", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    ids.sort();
    let mut expected = vec![a.as_str().to_owned(), b.as_str().to_owned()];
    expected.sort();
    assert_eq!(ids, expected, "the directory function sees every tenant");
    // The role can neither define a function of its own nor change the owner's.
    let refused = app
        .batch_execute(
            "CREATE FUNCTION mine() RETURNS SETOF tenants LANGUAGE sql SECURITY DEFINER AS $$ SELECT * FROM tenants $$",
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{refused:?}");
    let refused = app
        .batch_execute("CREATE OR REPLACE FUNCTION tenantry_directory_keys() RETURNS SETOF keys LANGUAGE sql AS $$ SELECT * FROM keys $$")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{refused:?}");
    // A role that was not granted them cannot call them.
    let admin = db.admin().await;
    let stranger = format!("{}_other", db.app_role);
    admin.batch_execute(&format!("CREATE ROLE {stranger} LOGIN")).await.unwrap();
    let other = db.connect_as(&stranger).await;
    let refused = other.query("SELECT * FROM tenantry_directory_tenants()", &[]).await.unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    drop((app, other));
    db.drop_all().await;
    admin.batch_execute(&format!("DROP ROLE {stranger}")).await.unwrap();
}
