//! Schema migrations. Append only: a released migration is never edited, so every data dir
//! reaches the same schema by the same steps. `PRAGMA user_version` records how far a database is.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: tenants, keys, files, audit.
    r#"
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
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE tenant_domains (
        domain TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL
    );
    CREATE INDEX tenant_domains_by_tenant ON tenant_domains(tenant_id);
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        prefix TEXT,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX keys_by_tenant ON keys(tenant_id, id);
    CREATE TABLE files (
        tenant_id TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        version INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        content BLOB NOT NULL,
        UNIQUE (tenant_id, path)
    );
    CREATE TABLE audit (
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
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
    ) WITHOUT ROWID;
    CREATE INDEX audit_by_action ON audit(tenant_id, action, seq);
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug)]
pub enum MigrateError {
    Newer { found: i64 },
    Sql(rusqlite::Error),
}

/// Brings `conn` to [`SCHEMA_VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(MigrateError::Sql)?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::Newer { found });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(MigrateError::Sql)?;
        tx.execute_batch(sql).map_err(MigrateError::Sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(MigrateError::Sql)?;
        tx.commit().map_err(MigrateError::Sql)?;
    }
    Ok(())
}
