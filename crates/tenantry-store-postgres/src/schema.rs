//! The PostgreSQL schema as code: numbered migrations, applied by `tenantry db migrate` with the
//! role that owns the tables, all pending ones in one transaction under an advisory lock (several
//! nodes may run it at once; the second finds nothing to do). `tenantry_schema` records how far
//! the database is; a node checks it at start and refuses any other version, saying what to run.
//! Migration 1 was amended in place while the backend was first built; from migration 2 on,
//! migrations are only appended, and `db migrate` brings a database of an earlier build up.
//!
//! Every table that holds a tenant's rows is locked by row-level security, enabled and forced (the
//! owner too is bound): the policy `tenant_rows` lets a transaction see and write only the rows
//! of the tenant it set with `set_config('tenantry.tenant_id', ..., true)`; `owner_rows` gives the
//! owning role (migrations, upkeep functions it defines) every row. The role the server connects
//! with owns nothing and gets only row privileges (`grant_to`).

use crate::error::pg_error;
use tenantry_core::{Error, Result};
use tokio_postgres::Client;

/// Tables holding tenants' rows, with the column naming the tenant (those of migration 1, then
/// `memberships`, of migration 3, then `event_relays`, of migration 4).
pub const TENANT_TABLES: &[(&str, &str)] = &[
    ("tenants", "id"),
    ("tenant_domains", "tenant_id"),
    ("keys", "tenant_id"),
    ("audit_anchor", "tenant_id"),
    ("imports", "tenant_id"),
    ("import_files", "tenant_id"),
    ("import_records", "tenant_id"),
    ("tenant_usage", "tenant_id"),
    ("files", "tenant_id"),
    ("file_chunks", "tenant_id"),
    ("usage_daily", "tenant_id"),
    ("audit", "tenant_id"),
    ("events", "tenant_id"),
    ("memory", "tenant_id"),
    ("search_docs", "tenant_id"),
    ("search_postings", "tenant_id"),
    ("webhooks", "tenant_id"),
    ("webhook_outbox", "tenant_id"),
    ("webhook_attempts", "tenant_id"),
    ("memberships", "tenant_id"),
    ("event_relays", "tenant_id"),
];

/// How many of [`TENANT_TABLES`] migration 1 made.
const TENANT_TABLES_OF_1: usize = 19;
/// How many of [`TENANT_TABLES`] there are once migration 3 is applied.
const TENANT_TABLES_OF_3: usize = 20;

/// The install's tables that hold no tenant's rows (people; migration 3): row privileges only. An
/// invitation names its tenant but is the install's: the person accepting it names no tenant.
pub const INSTALL_TABLES: &[&str] = &["users", "sessions", "invitations"];

/// Migration 3: people. Users, sessions and invitations belong to the install (used in the shared
/// database only; no row-level security: no tenant owns them, and a tenant's request never reads them, the
/// in-memory view does); memberships are a tenant's rows, locked like the others, read across
/// tenants at start through `tenantry_directory_members()`. The triggers tell other nodes (see
/// `feed`): a tenant's id when its memberships change, a user's id when the user or their
/// sessions do (a session's last-seen time included, at most once a minute per session).
const PEOPLE_3: &str = r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password TEXT,
    super_admin BOOLEAN NOT NULL,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (tenant_id, email)
);
CREATE TABLE memberships (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE FUNCTION tenantry_directory_members() RETURNS SETOF memberships
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT * FROM memberships ORDER BY tenant_id, created_at, user_id $$;
REVOKE EXECUTE ON FUNCTION tenantry_directory_members() FROM PUBLIC;
CREATE TRIGGER people_changed AFTER INSERT OR UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION tenantry_directory_changed('tenant_id');
CREATE TRIGGER people_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION tenantry_directory_changed('id');
CREATE TRIGGER people_changed AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION tenantry_directory_changed('user_id');
"#;

/// The functions migration 3 adds, for the server's role.
const PEOPLE_FUNCTIONS: &[&str] = &["tenantry_directory_members()"];

/// Migration 1: the tables. Times are Unix milliseconds; JSON is kept as the text the core wrote
/// (a memory value's size is its bytes, and an export gives them back byte for byte). Every
/// primary key and unique index of tenant data leads with the tenant, so those tables can be
/// distributed by it; the registry (`tenants`, `tenant_domains`) is global, because a slug and a
/// domain are unique across tenants (on Citus: reference tables).
const TABLES_1: &str = r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    tier TEXT NOT NULL,
    status TEXT NOT NULL,
    placement TEXT NOT NULL,
    domains TEXT NOT NULL,
    quotas TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE tenant_domains (
    domain TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL
);
CREATE INDEX tenant_domains_by_tenant ON tenant_domains (tenant_id);
CREATE TABLE keys (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    prefix TEXT,
    hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE tenant_usage (
    tenant_id TEXT PRIMARY KEY,
    storage_bytes BIGINT NOT NULL DEFAULT 0,
    files BIGINT NOT NULL DEFAULT 0,
    last_event_seq BIGINT NOT NULL DEFAULT 0,
    audit_seq BIGINT NOT NULL DEFAULT 0,
    audit_head TEXT NOT NULL DEFAULT '',
    search_docs BIGINT NOT NULL DEFAULT 0,
    search_words BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE files (
    tenant_id TEXT NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    version BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    body_id BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, path)
);
CREATE SEQUENCE file_bodies;
CREATE TABLE file_chunks (
    tenant_id TEXT NOT NULL,
    body_id BIGINT NOT NULL,
    n INTEGER NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, body_id, n)
);
CREATE TABLE usage_daily (
    tenant_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    api_calls BIGINT NOT NULL,
    reads BIGINT NOT NULL,
    writes BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    searches BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
CREATE TABLE audit (
    tenant_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    tenant_slug TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    request_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE TABLE audit_anchor (
    tenant_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE events (
    tenant_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    path TEXT COLLATE "C",
    namespace TEXT,
    key TEXT,
    detail TEXT,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX events_by_time ON events (at);
CREATE TABLE memory (
    tenant_id TEXT NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    size BIGINT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, key)
);
CREATE INDEX memory_by_expiry ON memory (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE search_docs (
    tenant_id TEXT NOT NULL,
    kind SMALLINT NOT NULL,
    doc TEXT COLLATE "C" NOT NULL,
    len INTEGER NOT NULL,
    terms TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, doc)
);
CREATE TABLE search_postings (
    tenant_id TEXT NOT NULL,
    term TEXT COLLATE "C" NOT NULL,
    kind SMALLINT NOT NULL,
    doc TEXT COLLATE "C" NOT NULL,
    tf INTEGER NOT NULL,
    len INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, term, kind, doc)
);
CREATE TABLE webhooks (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    path_glob TEXT,
    secret TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    disabled_reason TEXT,
    consecutive_failures INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE imports (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE import_files (
    tenant_id TEXT NOT NULL,
    import_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    body_id BIGINT,
    index_doc TEXT,
    PRIMARY KEY (tenant_id, import_id, n)
);
CREATE TABLE import_records (
    tenant_id TEXT NOT NULL,
    import_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (tenant_id, import_id, n)
);
CREATE SEQUENCE webhook_deliveries;
CREATE TABLE webhook_outbox (
    tenant_id TEXT NOT NULL,
    id BIGINT NOT NULL DEFAULT nextval('webhook_deliveries'),
    webhook_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX outbox_due ON webhook_outbox (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE TABLE webhook_attempts (
    tenant_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    n BIGSERIAL NOT NULL,
    delivery_id BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status INTEGER,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    outcome TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, webhook_id, n)
);
"#;

/// Cross-tenant reads for upkeep, as functions the owner defines (`SECURITY DEFINER`: they run as
/// the owner, whom `owner_rows` lets see every row) and the server's role may only execute: here
/// the directory a node loads at start; the others are in `upkeep` and `import`. Each returns
/// exactly what its job needs. They guard against mistakes in the server's own scoping, not
/// against a stolen server role, which may set any tenant in its transactions anyway.
const UPKEEP_1: &str = r#"
CREATE FUNCTION tenantry_directory_tenants() RETURNS SETOF tenants
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT * FROM tenants ORDER BY id $$;
CREATE FUNCTION tenantry_directory_keys() RETURNS SETOF keys
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT * FROM keys ORDER BY tenant_id, id $$;
REVOKE EXECUTE ON FUNCTION tenantry_directory_tenants() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenantry_directory_keys() FROM PUBLIC;
"#;

/// The upkeep functions the server's role may execute.
pub const UPKEEP_FUNCTIONS: &[&str] = &["tenantry_directory_tenants()", "tenantry_directory_keys()"];

/// The SQL that locks `table` by its tenant `column`: row-level security enabled and forced, the
/// tenant policy for everyone and the all-rows policy for the owning role (who runs this).
fn lock_rows(table: &str, column: &str) -> String {
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_rows ON {table}
             USING ({column} = current_setting('tenantry.tenant_id', true))
             WITH CHECK ({column} = current_setting('tenantry.tenant_id', true));
         CREATE POLICY owner_rows ON {table} TO CURRENT_USER USING (true) WITH CHECK (true);"
    )
}

/// The migrations in order: the schema version is the number applied.
fn migrations() -> Vec<String> {
    let lock = |tables: &[(&str, &str)]| tables.iter().map(|(t, c)| lock_rows(t, c)).collect::<Vec<_>>().join("\n");
    let locks = lock(&TENANT_TABLES[..TENANT_TABLES_OF_1]);
    // Nobody but the owner creates objects here (PostgreSQL 15's default, made explicit).
    let revoke = "REVOKE CREATE ON SCHEMA public FROM PUBLIC;";
    vec![
        format!(
            "{revoke}\n{TABLES_1}\n{locks}\n{UPKEEP_1}\n{}\n{}\n{}",
            crate::upkeep::UPKEEP_SQL,
            crate::import::IMPORT_SQL,
            crate::feed::FEED_SQL
        ),
        crate::feed::FEED_SQL_2.to_owned(),
        format!("{PEOPLE_3}\n{}", lock(&TENANT_TABLES[TENANT_TABLES_OF_1..TENANT_TABLES_OF_3])),
        format!("{}\n{}", crate::upkeep::RELAYS_4, lock(&TENANT_TABLES[TENANT_TABLES_OF_3..])),
    ]
}

/// The schema version this binary reads and writes.
pub fn current_version() -> i32 {
    migrations().len() as i32
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// Any key for the advisory lock that serializes migrations ("tnry").
const MIGRATION_LOCK: i64 = 0x746e_7279;

/// Applies the pending migrations (as the connected role, which becomes the tables' owner) and
/// grants `app_role` row access to every table: the role the server connects with.
pub async fn migrate(client: &mut Client, app_role: &str) -> Result<Migrated> {
    migrate_to(client, app_role, current_version()).await
}

/// [`migrate`], but only up to version `target` (at most [`current_version`]): how a test makes
/// a database as an earlier build left it.
pub async fn migrate_to(client: &mut Client, app_role: &str, target: i32) -> Result<Migrated> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tenantry_schema (version INTEGER NOT NULL)")
        .await
        .map_err(pg_error)?;
    let from: i32 = match tx.query_opt("SELECT version FROM tenantry_schema", &[]).await.map_err(pg_error)? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO tenantry_schema (version) VALUES (0)", &[]).await.map_err(pg_error)?;
            0
        }
    };
    let all = migrations();
    if from > all.len() as i32 {
        return Err(newer(from));
    }
    let to = target.clamp(from, all.len() as i32);
    for sql in &all[from as usize..to as usize] {
        tx.batch_execute(sql).await.map_err(pg_error)?;
    }
    tx.execute("UPDATE tenantry_schema SET version = $1", &[&to]).await.map_err(pg_error)?;
    tx.batch_execute(&grant_to(app_role, to)?).await.map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(Migrated { from, to })
}

/// Row privileges on every table and the sequences, reading the schema version, and executing
/// the upkeep functions schema `version` has: nothing that changes the schema, and no ownership.
fn grant_to(role: &str, version: i32) -> Result<String> {
    let ok = !role.is_empty()
        && role.len() <= 63
        && role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !role.as_bytes()[0].is_ascii_digit();
    if !ok {
        return Err(Error::invalid_request(format!(
            "the app role {role:?} is not a plain role name (lowercase letters, digits and _)"
        )));
    }
    let tenant_tables = match version {
        ..=2 => &TENANT_TABLES[..TENANT_TABLES_OF_1],
        3 => &TENANT_TABLES[..TENANT_TABLES_OF_3],
        _ => TENANT_TABLES,
    };
    let global: &[&str] = if version >= 3 { INSTALL_TABLES } else { &[] };
    let tables: Vec<&str> = tenant_tables.iter().map(|(t, _)| *t).chain(global.iter().copied()).collect();
    Ok(format!(
        "GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {role};
         GRANT SELECT ON tenantry_schema TO {role};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};
         GRANT EXECUTE ON FUNCTION {} TO {role};",
        tables.join(", "),
        UPKEEP_FUNCTIONS
            .iter()
            .chain(crate::upkeep::UPKEEP_FUNCTIONS)
            .chain(crate::import::IMPORT_FUNCTIONS)
            .chain(if version >= 2 { crate::feed::FEED_FUNCTIONS } else { &[] })
            .chain(if version >= 3 { PEOPLE_FUNCTIONS } else { &[] })
            .chain(if version >= 4 { crate::upkeep::RELAY_FUNCTIONS } else { &[] })
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn newer(found: i32) -> Error {
    Error::internal(format!(
        "the database has schema version {found}, newer than this binary knows ({}): run a newer tenantry",
        current_version()
    ))
}

/// Refuses a database whose triggers for the feed of directory changes are missing: one
/// migrated by a build from before migration 1 had them (it was amended in place until the first
/// release that serves from PostgreSQL), whose nodes would not hear each other's changes.
pub async fn check_feed(client: &Client) -> Result<()> {
    let triggers: i64 = client
        .query_one("SELECT count(*) FROM pg_trigger WHERE tgname = 'directory_changed'", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    if triggers == 2 {
        return Ok(());
    }
    Err(Error::internal(
        "the database was migrated by a development build of migration 1 without the triggers that tell nodes of          each other's changes: migrate a new database (`tenantry db migrate`) and move the data there",
    ))
}

/// Refuses a database whose schema is not the one this binary knows, saying what to run.
pub async fn check_version(client: &Client) -> Result<()> {
    let exists: bool =
        client.query_one("SELECT to_regclass('tenantry_schema') IS NOT NULL", &[]).await.map_err(pg_error)?.get(0);
    let found: i32 = match exists {
        true => client
            .query_opt("SELECT version FROM tenantry_schema", &[])
            .await
            .map_err(pg_error)?
            .map_or(0, |r| r.get(0)),
        false => 0,
    };
    let known = current_version();
    match found {
        v if v == known => Ok(()),
        v if v > known => Err(newer(v)),
        0 => Err(Error::internal(
            "the database has no Tenantry schema: run `tenantry db migrate --url URL` with the role that is to own the tables",
        )),
        v => Err(Error::internal(format!(
            "the database has schema version {v}, older than this binary's ({known}): run `tenantry db migrate --url URL` with the role that owns the tables"
        ))),
    }
}
