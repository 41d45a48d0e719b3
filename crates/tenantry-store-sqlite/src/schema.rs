//! Schema migrations. Append only: a released migration is never edited, so every data dir
//! reaches the same schema by the same steps. `PRAGMA user_version` records how far a database is.

use crate::error::sql_error;
use rusqlite::Connection;
use std::path::Path;
use tenantry_core::Error;

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
    // 2: per-tenant usage counters, kept in the same transaction as every write so quota checks
    // are exact under any number of concurrent writers.
    r#"
    CREATE TABLE tenant_usage (
        tenant_id TEXT PRIMARY KEY,
        storage_bytes INTEGER NOT NULL,
        files INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO tenant_usage (tenant_id, storage_bytes, files)
        SELECT tenant_id, SUM(size), COUNT(*) FROM files GROUP BY tenant_id;
    "#,
    // 3: metered request usage by tenant and UTC day (flushed in batches from memory).
    r#"
    CREATE TABLE usage_daily (
        tenant_id TEXT NOT NULL,
        day INTEGER NOT NULL,
        api_calls INTEGER NOT NULL,
        reads INTEGER NOT NULL,
        writes INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        searches INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, day)
    ) WITHOUT ROWID;
    "#,
    // 4: the data plane. Events and the webhook outbox are written in the same transaction as the
    // change they record; `last_event_seq` keeps seq increasing even after old events are pruned.
    // Search is a plain inverted index (see tenantry_core::search for why not FTS5's ranking):
    // one posting per (tenant, term, document), the document id sorting files by path so a
    // prefix is a key range; `search_docs` keeps each document's terms so it can be unindexed.
    r#"
    ALTER TABLE tenant_usage ADD COLUMN last_event_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tenant_usage ADD COLUMN search_docs INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tenant_usage ADD COLUMN search_words INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE events (
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        path TEXT,
        namespace TEXT,
        key TEXT,
        detail TEXT,
        actor TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX events_by_time ON events(at);
    CREATE TABLE memory (
        tenant_id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        size INTEGER NOT NULL,
        expires_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (tenant_id, namespace, key)
    );
    CREATE INDEX memory_by_expiry ON memory(expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE search_docs (
        tenant_id TEXT NOT NULL,
        kind INTEGER NOT NULL,
        doc TEXT NOT NULL,
        len INTEGER NOT NULL,
        terms TEXT NOT NULL,
        PRIMARY KEY (tenant_id, kind, doc)
    ) WITHOUT ROWID;
    CREATE TABLE search_postings (
        tenant_id TEXT NOT NULL,
        term TEXT NOT NULL,
        kind INTEGER NOT NULL,
        doc TEXT NOT NULL,
        tf INTEGER NOT NULL,
        len INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, term, kind, doc)
    ) WITHOUT ROWID;
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        path_glob TEXT,
        secret TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        disabled_reason TEXT,
        consecutive_failures INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE INDEX webhooks_by_tenant ON webhooks(tenant_id, id);
    CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        event_seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at INTEGER
    );
    CREATE INDEX outbox_due ON webhook_outbox(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
    CREATE INDEX outbox_by_tenant ON webhook_outbox(tenant_id, webhook_id);
    CREATE TABLE webhook_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        delivery_id INTEGER NOT NULL,
        event_seq INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status INTEGER,
        latency_ms INTEGER NOT NULL,
        error TEXT,
        outcome TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX attempts_by_webhook ON webhook_attempts(tenant_id, webhook_id, id);
    "#,
    // 5: the (tenant, action, seq) index cost every write a random page (with many tenants each
    // write's entry lands on a different leaf) to speed up one rare query, the audit listing
    // filtered by action, which now walks the tenant's log by seq instead.
    r#"
    DROP INDEX audit_by_action;
    "#,
    // 6: file bytes move to a table of their own, so a bundle import can write them in small
    // transactions that nobody sees (staged, listed in `import_files`) and then publish the whole
    // tenant in one short transaction that only inserts metadata rows: a 1 GiB import never holds
    // the shared writer for the time it takes to write 1 GiB. Rows staged by an import that never
    // committed (a crash) are swept when the store opens.
    r#"
    CREATE TABLE file_content (
        id INTEGER PRIMARY KEY,
        content BLOB NOT NULL
    );
    INSERT INTO file_content (id, content) SELECT rowid, content FROM files;
    CREATE TABLE files_v6 (
        tenant_id TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        version INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        content_id INTEGER NOT NULL,
        UNIQUE (tenant_id, path)
    );
    INSERT INTO files_v6 (tenant_id, path, size, etag, version, content_type, created_at, updated_at, content_id)
        SELECT tenant_id, path, size, etag, version, content_type, created_at, updated_at, rowid FROM files;
    DROP TABLE files;
    ALTER TABLE files_v6 RENAME TO files;
    CREATE TABLE imports (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        started_at INTEGER NOT NULL
    );
    CREATE TABLE import_files (
        import_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        content_type TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        content_id INTEGER,
        index_doc TEXT,
        PRIMARY KEY (import_id, n)
    ) WITHOUT ROWID;
    CREATE TABLE import_records (
        import_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        kind TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (import_id, n)
    ) WITHOUT ROWID;
    "#,
    // 7: tenant moves between placements (shared database ⇄ a database of the tenant's own). A row
    // exists while a move is under way; `phase` says whether the registry already points at the
    // new place (`switched`: finish by deleting the old copy) or not (`copying`: roll back by
    // deleting the new copy). Dedicated databases have this table too, always empty.
    r#"
    CREATE TABLE moves (
        tenant_id TEXT PRIMARY KEY,
        to_placement TEXT NOT NULL,
        phase TEXT NOT NULL,
        started_at INTEGER NOT NULL
    );
    "#,
    // 8: bodies over 1 MiB live in files of their own (`blobs`); the row keeps the file's name and
    // an empty `content`. The partial index lets the sweep at open list every named body without
    // reading any content.
    r#"
    ALTER TABLE file_content ADD COLUMN blob TEXT;
    CREATE INDEX file_content_blobs ON file_content(blob) WHERE blob IS NOT NULL;
    "#,
    // 9: the audit and event logs are appended to tails without an index (every write's entry
    // lands on the tail's last page, shared by the whole group commit) and folded into the
    // (tenant, seq) tables in batches sorted by tenant (see `tails`). AUTOINCREMENT: a tail id is
    // never reused, so an id remembered for a tenant can only ever name that tenant's entry. The
    // views are each log whole, for the readers that take a tenant's whole log (moves). While a
    // fold is under way they may show an entry twice (UNION would dedupe, but then SQLite no
    // longer pushes a tenant filter into each table): their readers key rows by (tenant, seq).
    r#"
    CREATE TABLE audit_tail (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
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
        hash TEXT NOT NULL
    );
    CREATE TABLE events_tail (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        path TEXT,
        namespace TEXT,
        key TEXT,
        detail TEXT,
        actor TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE VIEW audit_all AS
        SELECT tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash
        FROM audit
        UNION ALL
        SELECT tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash
        FROM audit_tail;
    CREATE VIEW events_all AS
        SELECT tenant_id, seq, type, path, namespace, key, detail, actor, at FROM events
        UNION ALL
        SELECT tenant_id, seq, type, path, namespace, key, detail, actor, at FROM events_tail;
    "#,
    // 10: a fold no longer copies the tails' entries into the keyed tables (writing each entry a
    // second time, and a third as the zeroed pages `secure_delete` leaves when the tail is
    // emptied): the tail rows stay where they were appended, and a fold fills a small keyed index
    // of them, (tenant, seq) → tail id, sorted by tenant (see `tails`). `tails_indexed` says up to
    // which id every tail row is in its index (the rest are found through the registry in memory,
    // or by scanning that short end of the tail); the triggers keep an index free of deleted rows.
    // Keyed rows (a dense tenant's, a move's, those folded before this version) stay where they
    // are. Entries a crash left both in a tail and keyed (mid-fold, before this version) are kept
    // once, keyed. Events are pruned by time from the tail too: the time index is appended to, one
    // page per group.
    r#"
    CREATE TABLE audit_tail_index (
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, seq)
    ) WITHOUT ROWID;
    CREATE TRIGGER audit_tail_unindex AFTER DELETE ON audit_tail BEGIN
        DELETE FROM audit_tail_index WHERE tenant_id = old.tenant_id AND seq = old.seq AND id = old.id;
    END;
    DELETE FROM audit_tail WHERE EXISTS
        (SELECT 1 FROM audit k WHERE k.tenant_id = audit_tail.tenant_id AND k.seq = audit_tail.seq);
    CREATE TABLE events_tail_index (
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, seq)
    ) WITHOUT ROWID;
    CREATE TRIGGER events_tail_unindex AFTER DELETE ON events_tail BEGIN
        DELETE FROM events_tail_index WHERE tenant_id = old.tenant_id AND seq = old.seq AND id = old.id;
    END;
    DELETE FROM events_tail WHERE EXISTS
        (SELECT 1 FROM events k WHERE k.tenant_id = events_tail.tenant_id AND k.seq = events_tail.seq);
    CREATE TABLE tails_indexed (
        log TEXT PRIMARY KEY,
        upto INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO tails_indexed (log, upto) VALUES ('audit', 0), ('events', 0);
    CREATE INDEX events_tail_by_time ON events_tail(at);
    CREATE VIEW audit_indexed AS
        SELECT i.tenant_id AS tenant_id, i.seq AS seq, t.at AS at, t.tenant_slug AS tenant_slug, t.actor AS actor, t.action AS action, t.target AS target, t.result AS result, t.request_id AS request_id, t.ip AS ip, t.prev_hash AS prev_hash, t.hash AS hash
        FROM audit_tail_index i JOIN audit_tail t ON t.id = i.id;
    CREATE VIEW events_indexed AS
        SELECT i.tenant_id AS tenant_id, i.seq AS seq, t.type AS type, t.path AS path, t.namespace AS namespace, t.key AS key, t.detail AS detail, t.actor AS actor, t.at AS at
        FROM events_tail_index i JOIN events_tail t ON t.id = i.id;
    DROP VIEW audit_all;
    DROP VIEW events_all;
    CREATE VIEW audit_all AS
        SELECT tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash FROM audit
        UNION ALL
        SELECT tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash FROM audit_indexed
        UNION ALL
        SELECT tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash FROM audit_tail WHERE id > (SELECT upto FROM tails_indexed WHERE log = 'audit');
    CREATE VIEW events_all AS
        SELECT tenant_id, seq, type, path, namespace, key, detail, actor, at FROM events
        UNION ALL
        SELECT tenant_id, seq, type, path, namespace, key, detail, actor, at FROM events_indexed
        UNION ALL
        SELECT tenant_id, seq, type, path, namespace, key, detail, actor, at FROM events_tail WHERE id > (SELECT upto FROM tails_indexed WHERE log = 'events');
    "#,
    // 11: the counters of `tenant_usage` are no longer updated in place by every write (10,000
    // tenants' rows span some hundred pages, so a group of spread writes dirtied a page per
    // write): a write appends the tenant's new values to `usage_tail`, and a fold writes each
    // tenant's latest values back, sorted by tenant (see `counters`). A tenant's latest tail row,
    // if it has one, is its current values; `usage_all` shows them so for readers of a whole
    // tenant (moves).
    r#"
    CREATE TABLE usage_tail (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        storage_bytes INTEGER NOT NULL,
        files INTEGER NOT NULL,
        last_event_seq INTEGER NOT NULL,
        search_docs INTEGER NOT NULL,
        search_words INTEGER NOT NULL
    );
    CREATE VIEW usage_all AS
        SELECT tenant_id, storage_bytes, files, last_event_seq, search_docs, search_words
        FROM (SELECT tenant_id, MAX(id) AS id, storage_bytes, files, last_event_seq, search_docs, search_words
              FROM usage_tail GROUP BY tenant_id)
        UNION ALL
        SELECT tenant_id, storage_bytes, files, last_event_seq, search_docs, search_words FROM tenant_usage u
        WHERE NOT EXISTS (SELECT 1 FROM usage_tail t WHERE t.tenant_id = u.tenant_id);
    "#,
    // 12: audit retention. A tenant whose oldest entries were pruned has an anchor, the last
    // entry pruned (seq, hash, time): its chain is read and verified from just after it.
    r#"
    CREATE TABLE audit_anchor (
        tenant_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 13: tenant_id leads the key of every table of tenant data but the append-ordered ones
    // (ARCHITECTURE.md lists both): keys, webhooks and imports are keyed (tenant_id, id) (their
    // (tenant_id, id) indexes were the same key again), and the staged rows of an import
    // (tenant_id, import_id, n). File bodies carry their tenant: `file_content` stays keyed by
    // insertion order (a group's bodies share the table's last pages), with `tenant_id`, and
    // `blob` before `content` (a row's short columns are read without its body's overflow pages).
    // A body no file or staged import names (none should exist) is not carried over; one named
    // twice (none should be) is carried over once, as its first file's. The old table's pages are
    // not zeroed (see `migrate`): every body on them is carried over.
    r#"
    CREATE TABLE keys_v13 (
        id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        prefix TEXT,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER,
        PRIMARY KEY (tenant_id, id)
    );
    INSERT INTO keys_v13 (id, tenant_id, name, role, prefix, hash, created_at, created_by, expires_at, revoked_at)
        SELECT id, tenant_id, name, role, prefix, hash, created_at, created_by, expires_at, revoked_at FROM keys;
    DROP TABLE keys;
    ALTER TABLE keys_v13 RENAME TO keys;
    CREATE TABLE webhooks_v13 (
        id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        path_glob TEXT,
        secret TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        disabled_reason TEXT,
        consecutive_failures INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    INSERT INTO webhooks_v13 (id, tenant_id, url, events, path_glob, secret, enabled, disabled_reason,
                              consecutive_failures, created_at, created_by)
        SELECT id, tenant_id, url, events, path_glob, secret, enabled, disabled_reason,
               consecutive_failures, created_at, created_by FROM webhooks;
    DROP TABLE webhooks;
    ALTER TABLE webhooks_v13 RENAME TO webhooks;
    CREATE TABLE file_content_v13 (
        id INTEGER PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        blob TEXT,
        content BLOB NOT NULL
    );
    INSERT OR IGNORE INTO file_content_v13 (id, tenant_id, blob, content)
        SELECT c.id, f.tenant_id, c.blob, c.content FROM files f JOIN file_content c ON c.id = f.content_id
        ORDER BY f.rowid;
    INSERT OR IGNORE INTO file_content_v13 (id, tenant_id, blob, content)
        SELECT c.id, i.tenant_id, c.blob, c.content
        FROM import_files s JOIN imports i ON i.id = s.import_id JOIN file_content c ON c.id = s.content_id;
    DROP TABLE file_content;
    ALTER TABLE file_content_v13 RENAME TO file_content;
    CREATE INDEX file_content_blobs ON file_content(blob) WHERE blob IS NOT NULL;
    CREATE TABLE import_files_v13 (
        tenant_id TEXT NOT NULL,
        import_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        content_type TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        content_id INTEGER,
        index_doc TEXT,
        PRIMARY KEY (tenant_id, import_id, n)
    ) WITHOUT ROWID;
    INSERT INTO import_files_v13 (tenant_id, import_id, n, path, size, etag, content_type, created_at,
                                  updated_at, content_id, index_doc)
        SELECT i.tenant_id, s.import_id, s.n, s.path, s.size, s.etag, s.content_type, s.created_at,
               s.updated_at, s.content_id, s.index_doc
        FROM import_files s JOIN imports i ON i.id = s.import_id;
    DROP TABLE import_files;
    ALTER TABLE import_files_v13 RENAME TO import_files;
    CREATE TABLE import_records_v13 (
        tenant_id TEXT NOT NULL,
        import_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        kind TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (tenant_id, import_id, n)
    ) WITHOUT ROWID;
    INSERT INTO import_records_v13 (tenant_id, import_id, n, kind, record)
        SELECT i.tenant_id, s.import_id, s.n, s.kind, s.record
        FROM import_records s JOIN imports i ON i.id = s.import_id;
    DROP TABLE import_records;
    ALTER TABLE import_records_v13 RENAME TO import_records;
    CREATE TABLE imports_v13 (
        id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    INSERT INTO imports_v13 (id, tenant_id, started_at) SELECT id, tenant_id, started_at FROM imports;
    DROP TABLE imports;
    ALTER TABLE imports_v13 RENAME TO imports;
    "#,
    // 14: people. Users, sessions and invitations are the install's (used in the shared database only);
    // memberships are rows of their tenant, beside its keys, in whichever database holds it.
    r#"
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        password TEXT,
        super_admin INTEGER NOT NULL,
        disabled_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE TABLE invitations (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        email TEXT NOT NULL,
        role TEXT NOT NULL,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        UNIQUE (tenant_id, email)
    );
    CREATE TABLE memberships (
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (tenant_id, user_id)
    );
    "#,
    // 15: the search index in segments (see `search`): a write appends its document to the
    // tenant's tail; the writer flushes tails into immutable segments and merges segments in the
    // background. The postings of the old layout become tail documents (in one pass over them,
    // sorted), flushed after the open. Documents without a word stay indexed (and counted)
    // until they change: since this version such a document is not indexed.
    r#"
    CREATE TABLE search_tail (
        tenant_id TEXT NOT NULL,
        kind INTEGER NOT NULL,
        doc TEXT NOT NULL,
        len INTEGER NOT NULL,
        terms TEXT NOT NULL,
        PRIMARY KEY (tenant_id, kind, doc)
    ) WITHOUT ROWID;
    INSERT INTO search_tail (tenant_id, kind, doc, len, terms)
        SELECT d.tenant_id, d.kind, d.doc, d.len, COALESCE(p.terms, '')
        FROM search_docs d LEFT JOIN (
            SELECT tenant_id, kind, doc, group_concat(line, char(10)) AS terms
            FROM (SELECT tenant_id, kind, doc, term || ' ' || tf AS line FROM search_postings
                  ORDER BY tenant_id, kind, doc, term)
            GROUP BY tenant_id, kind, doc
        ) p ON p.tenant_id = d.tenant_id AND p.kind = d.kind AND p.doc = d.doc;
    DROP TABLE search_postings;
    CREATE TABLE search_docs_v15 (
        tenant_id TEXT NOT NULL,
        kind INTEGER NOT NULL,
        doc TEXT NOT NULL,
        len INTEGER NOT NULL,
        seg INTEGER NOT NULL,
        number INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, kind, doc)
    ) WITHOUT ROWID;
    INSERT INTO search_docs_v15 (tenant_id, kind, doc, len, seg, number)
        SELECT tenant_id, kind, doc, len, 0, 0 FROM search_docs;
    DROP TABLE search_docs;
    ALTER TABLE search_docs_v15 RENAME TO search_docs;
    CREATE TABLE search_segments (
        tenant_id TEXT NOT NULL,
        seg INTEGER NOT NULL,
        level INTEGER NOT NULL,
        docs INTEGER NOT NULL,
        dead BLOB NOT NULL,
        uid INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, seg)
    ) WITHOUT ROWID;
    CREATE TABLE search_segment_docs (
        tenant_id TEXT NOT NULL,
        seg INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        docs BLOB NOT NULL,
        PRIMARY KEY (tenant_id, seg, chunk)
    ) WITHOUT ROWID;
    CREATE TABLE search_segment_terms (
        tenant_id TEXT NOT NULL,
        seg INTEGER NOT NULL,
        term TEXT NOT NULL,
        postings BLOB NOT NULL,
        PRIMARY KEY (tenant_id, seg, term)
    ) WITHOUT ROWID;
    "#,
    // 16: a staged file says only whether it is indexed; its terms are read from its (inline)
    // content when the import publishes it, into segments of their own. Rows staged before hold
    // their index as JSON: not NULL, so indexed, which they are.
    r#"
    ALTER TABLE import_files RENAME COLUMN index_doc TO indexed;
    "#,
    // 17: segments written and deleted a slice per step (see `search_upkeep`): a segment being
    // merged into, or one merged away whose rows are still being deleted, is listed in
    // `search_pending` (with the number its merge knows it by), not in the catalog, so no search
    // reads it. The catalog counts each segment's term rows, which a merge is chosen by.
    r#"
    CREATE TABLE search_pending (
        tenant_id TEXT NOT NULL,
        seg INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, seg)
    ) WITHOUT ROWID;
    ALTER TABLE search_segments ADD COLUMN terms INTEGER NOT NULL DEFAULT 0;
    UPDATE search_segments SET terms = (SELECT count(*) FROM search_segment_terms t
        WHERE t.tenant_id = search_segments.tenant_id AND t.seg = search_segments.seg);
    "#,
    // 18: how far each relay of a tenant's events elsewhere (NATS publishing) has got, and which
    // node holds it until when; pruning keeps the events a relay has not passed.
    r#"
    CREATE TABLE event_relays (
        tenant_id TEXT NOT NULL,
        relay TEXT NOT NULL,
        seq INTEGER NOT NULL,
        holder TEXT NOT NULL,
        lease_until INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, relay)
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug)]
pub enum MigrateError {
    Newer { found: i64 },
    Sql(rusqlite::Error),
}

/// Brings `conn` to [`SCHEMA_VERSION`], each step in its own transaction. `secure_delete` is off
/// meanwhile: a step that rebuilds a table carries every row over, so zeroing the old table's
/// pages would only double what the step writes (it is there for purged tenants' bytes).
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(MigrateError::Sql)?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::Newer { found });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let secure: i64 = conn.query_row("PRAGMA secure_delete", [], |r| r.get(0)).map_err(MigrateError::Sql)?;
    conn.pragma_update(None, "secure_delete", 0).map_err(MigrateError::Sql)?;
    let migrated = migrate_from(conn, found);
    conn.pragma_update(None, "secure_delete", secure).map_err(MigrateError::Sql)?;
    migrated
}

/// [`migrate`] for the database file at `path` (which the refusal of a newer schema names), its
/// failure as the core's error.
pub(crate) fn migrate_file(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    migrate(conn).map_err(|e| match e {
        MigrateError::Newer { found } => Error::internal(format!(
            "{} has schema version {found}, newer than this tenantry binary knows ({SCHEMA_VERSION}): run a newer tenantry",
            path.display()
        )),
        MigrateError::Sql(e) => sql_error(e),
    })
}

fn migrate_from(conn: &mut Connection, found: i64) -> Result<(), MigrateError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(MigrateError::Sql)?;
        tx.execute_batch(sql).map_err(MigrateError::Sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(MigrateError::Sql)?;
        tx.commit().map_err(MigrateError::Sql)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_database_is_migrated_and_its_usage_counted_from_its_files() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        for (tenant, path, size) in [("t1", "/a", 10), ("t1", "/b", 5), ("t2", "/a", 7)] {
            conn.execute(
                "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, content)
                 VALUES (?1, ?2, ?3, '', 1, '', 0, 0, zeroblob(?3))",
                rusqlite::params![tenant, path, size],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let usage: Vec<(String, i64, i64)> = conn
            .prepare("SELECT tenant_id, storage_bytes, files FROM tenant_usage ORDER BY tenant_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(usage, vec![("t1".to_owned(), 15, 2), ("t2".to_owned(), 7, 1)]);
        // Migrating again changes nothing.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_version_9_log_keeps_each_entry_once_and_its_tail_rows_are_indexed_at_open() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..9] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 9).unwrap();
        let t = tenantry_core::ids::TenantId::generate();
        let entry = |table: &str, seq: i64| {
            conn.execute(
                &format!(
                    "INSERT INTO {table} (tenant_id, seq, at, tenant_slug, actor, action, target, result, request_id, ip, prev_hash, hash)
                     VALUES (?3, ?1, 0, 's', 'a', 'file.write', ?2, 'ok', 'r', 'ip', 'p', 'h')"
                ),
                rusqlite::params![seq, format!("/{seq}"), t.as_str()],
            )
            .unwrap();
        };
        // Folded: 1 and 2; a crash mid-fold left 2 in the tail too; 3 was only in the tail.
        entry("audit", 1);
        entry("audit", 2);
        entry("audit_tail", 2);
        entry("audit_tail", 3);
        migrate(&mut conn).unwrap();
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM audit"), 2);
        assert_eq!(count("SELECT seq FROM audit_tail"), 3, "the copy of 2 went, 3 stays");
        assert_eq!(count("SELECT COUNT(*) FROM audit_tail_index"), 0);
        let tails = crate::tails::Tails::open(&conn, 1, crate::search_upkeep::STEP_ROWS).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM audit_tail_index"), 1);
        assert_eq!(
            count("SELECT upto FROM tails_indexed WHERE log = 'audit'"),
            count("SELECT MAX(id) FROM audit_tail")
        );
        let ids = tails.ids(crate::tails::Log::Audit, &t, 0, None);
        let sql = crate::tails::Log::Audit.select("seq, target", "seq > 0", 2, "ORDER BY seq");
        let log: Vec<(i64, String)> = conn
            .prepare(&sql)
            .unwrap()
            .query_map(rusqlite::params![t.as_str(), ids], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(log, [(1, "/1".to_owned()), (2, "/2".to_owned()), (3, "/3".to_owned())]);
        let whole: i64 =
            conn.query_row("SELECT COUNT(*) FROM audit_all WHERE tenant_id = ?1", [t.as_str()], |r| r.get(0)).unwrap();
        assert_eq!(whole, 3);
    }

    #[test]
    fn a_version_14_search_index_becomes_tail_documents_that_a_flush_puts_in_a_segment() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..14] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 14).unwrap();
        conn.execute_batch(
            "INSERT INTO search_docs (tenant_id, kind, doc, len, terms)
                 VALUES ('ta', 0, '/a', 3, 'beta alpha'), ('ta', 1, 'ns' || char(31) || 'k', 1, 'alpha'),
                        ('tb', 0, '/empty', 0, '');
             INSERT INTO search_postings (tenant_id, term, kind, doc, tf, len)
                 VALUES ('ta', 'beta', 0, '/a', 1, 3), ('ta', 'alpha', 0, '/a', 2, 3), ('ta', 'alpha', 1, 'ns' || char(31) || 'k', 1, 1);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows = |sql: &str| -> Vec<String> {
            conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(
            rows("SELECT tenant_id || ' ' || kind || ' ' || doc || ' ' || len || ' ' || replace(terms, char(10), '|') FROM search_tail ORDER BY tenant_id, kind, doc"),
            ["ta 0 /a 3 alpha 2|beta 1", "ta 1 ns\u{1f}k 1 alpha 1", "tb 0 /empty 0 "]
        );
        assert_eq!(
            rows("SELECT tenant_id || ' ' || doc || ' ' || len || ' ' || seg FROM search_docs ORDER BY tenant_id, kind, doc"),
            ["ta /a 3 0", "ta ns\u{1f}k 1 0", "tb /empty 0 0"]
        );
        let ta = tenantry_core::ids::TenantId::parse("tnt_aaaaaaaaaaaaaaaa").unwrap();
        conn.execute_batch(&format!(
            "UPDATE search_tail SET tenant_id = '{ta}' WHERE tenant_id = 'ta'; UPDATE search_docs SET tenant_id = '{ta}' WHERE tenant_id = 'ta';"
        ))
        .unwrap();
        assert_eq!(crate::search_upkeep::flush_tx(&conn, &ta, 100, 100, None).unwrap().docs, 2);
        assert_eq!(
            rows(
                "SELECT doc || ' ' || seg || ' ' || number FROM search_docs WHERE tenant_id LIKE 'tnt%' ORDER BY kind"
            ),
            ["/a 1 0", "ns\u{1f}k 1 1"]
        );
        assert_eq!(rows("SELECT term FROM search_segment_terms ORDER BY term"), ["alpha", "beta"]);
    }

    #[test]
    fn a_version_12_database_gets_tenant_led_keys_and_bodies_that_name_their_tenant() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..12] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 12).unwrap();
        conn.execute_batch(
            "INSERT INTO keys (id, tenant_id, name, role, prefix, hash, created_at, created_by)
                 VALUES ('k1', 'ta', 'n', 'admin', NULL, x'01', 1, 'op'), ('k2', 'tb', 'n', 'reader', '/p/', x'02', 2, 'op');
             INSERT INTO webhooks (id, tenant_id, url, events, path_glob, secret, enabled, consecutive_failures, created_at, created_by)
                 VALUES ('w1', 'ta', 'https://x/', '[]', NULL, 's', 1, 0, 1, 'op');
             INSERT INTO file_content (id, content, blob) VALUES (7, x'aa', NULL), (8, x'', 'big'), (9, x'bb', NULL), (10, x'cc', NULL);
             INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, content_id)
                 VALUES ('ta', '/a', 1, 'e', 1, 't', 0, 0, 7), ('tb', '/b', 2000000, 'e', 1, 't', 0, 0, 8);
             INSERT INTO imports (id, tenant_id, started_at) VALUES ('i1', 'tb', 5);
             INSERT INTO import_files (import_id, n, path, size, etag, content_type, created_at, updated_at, content_id)
                 VALUES ('i1', 0, '/c', 1, 'e', 't', 0, 0, 9);
             INSERT INTO import_records (import_id, n, kind, record) VALUES ('i1', 1, 'memory', '{}');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows = |sql: &str| -> Vec<String> {
            conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        // Every body a file or a staged import names, with its tenant; the one nothing named is gone.
        assert_eq!(
            rows("SELECT id || ' ' || tenant_id || ' ' || coalesce(blob, '-') || ' ' || hex(content) FROM file_content ORDER BY id"),
            ["7 ta - AA", "8 tb big ", "9 tb - BB"]
        );
        assert_eq!(
            rows("SELECT tenant_id || ' ' || id || ' ' || role FROM keys ORDER BY id"),
            ["ta k1 admin", "tb k2 reader"]
        );
        assert_eq!(rows("SELECT tenant_id || ' ' || id || ' ' || url FROM webhooks"), ["ta w1 https://x/"]);
        assert_eq!(rows("SELECT tenant_id || ' ' || import_id || ' ' || path FROM import_files"), ["tb i1 /c"]);
        assert_eq!(rows("SELECT tenant_id || ' ' || import_id || ' ' || kind FROM import_records"), ["tb i1 memory"]);
        assert_eq!(rows("SELECT tenant_id || ' ' || id FROM imports"), ["tb i1"]);
        // The keys lead with the tenant: the same id may exist for two tenants, not twice for one.
        let key = |tenant: &str| {
            conn.execute(
                "INSERT INTO keys (id, tenant_id, name, role, prefix, hash, created_at, created_by)
                 VALUES ('k1', ?1, 'n', 'admin', NULL, x'03', 3, 'op')",
                [tenant],
            )
        };
        assert!(key("tb").is_ok());
        assert!(key("ta").is_err());
        for table in ["keys", "webhooks", "imports", "import_files", "import_records"] {
            let first: String = conn
                .query_row(
                    &format!(
                        "SELECT i.name FROM pragma_index_list('{table}') l, pragma_index_info(l.name) i
                         WHERE l.origin = 'pk' AND i.seqno = 0"
                    ),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(first, "tenant_id", "{table}");
        }
        let blob_index: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'file_content_blobs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(blob_index, 1);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        assert!(matches!(migrate(&mut conn), Err(MigrateError::Newer { found }) if found == SCHEMA_VERSION + 1));
    }
}
