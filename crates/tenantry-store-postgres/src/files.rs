//! Files: metadata rows and bodies in chunks (`file_chunks`, `CHUNK` bytes each), so a body never
//! travels as one value and a range read fetches only the chunks it covers.

use crate::error::pg_error;
use crate::flight::first_flight;
use crate::journal::{hooks_from_rows, last_flight, plan, CounterDelta, Pending, HOOKS};
use crate::search::{self, plan_reindex, reindex_statements, OLD_DOC};
use crate::store::{begin, commit, locked_row, Flights, PgStore, LOCK_TENANT};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use tenantry_core::events::Journal;
use tenantry_core::ids::TenantId;
use tenantry_core::model::FileMeta;
use tenantry_core::path::TenantPath;
use tenantry_core::quota;
use tenantry_core::search::DocKind;
use tenantry_core::store::{
    etag_of, past_folder, ByteRange, FileListing, FileStore, FileWrite, FolderScan, HeldFile, ListedEntry,
    Precondition, StoredUsage, TenantScope, WriteOutcome,
};
use tenantry_core::time::{Clock, SystemClock, Timestamp};
use tenantry_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Bytes per chunk of a body.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Bodies over this size are hashed off the async workers.
const HASH_INLINE_MAX: usize = 1 << 20;

/// Files read per seek of a folder listing at most (`list_folder`).
const LISTING_BATCH_MAX: usize = 128;

const FILE_COLUMNS: &str = "path, size, etag, version, content_type, created_at, updated_at";

fn file_from_row(r: &Row) -> Result<FileMeta> {
    let path: String = r.get(0);
    Ok(FileMeta {
        path: TenantPath::parse(&path).map_err(|_| crate::error::corrupt("file path"))?,
        size: r.get::<_, i64>(1) as u64,
        etag: r.get(2),
        version: r.get::<_, i64>(3) as u64,
        content_type: r.get(4),
        created_at: Timestamp::from_millis(r.get(5)),
        updated_at: Timestamp::from_millis(r.get(6)),
    })
}

/// The file at a path, as a write needs it.
pub(crate) struct CurrentFile {
    pub size: i64,
    pub etag: String,
    pub version: i64,
    pub created_at: i64,
    pub body_id: i64,
}

/// The file at a path, row-locked: what a write decides on.
pub(crate) const CURRENT_FILE: &str =
    "SELECT size, etag, version, created_at, body_id FROM files WHERE tenant_id = $1 AND path = $2 FOR UPDATE";

pub(crate) fn current_from_row(r: &Row) -> CurrentFile {
    CurrentFile { size: r.get(0), etag: r.get(1), version: r.get(2), created_at: r.get(3), body_id: r.get(4) }
}

pub(crate) async fn current_file_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    path: &str,
) -> Result<Option<CurrentFile>> {
    let st = tx.prepare_cached(CURRENT_FILE).await.map_err(pg_error)?;
    let row = tx.query_opt(&st, &[&tenant.as_str(), &path]).await.map_err(pg_error)?;
    Ok(row.as_ref().map(current_from_row))
}

/// The ETag of the file at a path, without locking its row (a hint for a stager: the commit
/// decides again under the tenant's lock).
pub(crate) async fn peek_etag_tx(tx: &Transaction<'_>, tenant: &TenantId, path: &str) -> Result<Option<String>> {
    let st = tx.prepare_cached("SELECT etag FROM files WHERE tenant_id = $1 AND path = $2").await.map_err(pg_error)?;
    Ok(tx.query_opt(&st, &[&tenant.as_str(), &path]).await.map_err(pg_error)?.map(|r| r.get(0)))
}

/// Writes a new body, its chunks given as one array, under a new id; the id (a body of no bytes has
/// an id and no chunk).
pub(crate) const WRITE_BODY: &str = "WITH body AS (SELECT nextval('file_bodies') AS id),
         chunks AS (INSERT INTO file_chunks (tenant_id, body_id, n, bytes)
                    SELECT $1, body.id, (c.n - 1)::int4, c.bytes
                    FROM body, unnest($2::bytea[]) WITH ORDINALITY AS c(bytes, n))
    SELECT id FROM body";

/// Writes a new body in chunks; its id.
pub(crate) async fn write_body_tx(tx: &Transaction<'_>, tenant: &TenantId, content: &[u8]) -> Result<i64> {
    let st = tx.prepare_cached(WRITE_BODY).await.map_err(pg_error)?;
    let chunks: Vec<&[u8]> = content.chunks(CHUNK).collect();
    Ok(tx.query_one(&st, &[&tenant.as_str(), &chunks]).await.map_err(pg_error)?.get(0))
}

/// The statement that deletes a body, for a write's flight.
pub(crate) async fn drop_body<'a, C: GenericClient>(
    tx: &'a C,
    tenant: &'a TenantId,
    body_id: i64,
) -> Result<Pending<'a>> {
    let st =
        tx.prepare_cached("DELETE FROM file_chunks WHERE tenant_id = $1 AND body_id = $2").await.map_err(pg_error)?;
    Ok(Box::pin(async move { tx.execute(&st, &[&tenant.as_str(), &body_id]).await.map_err(pg_error) }))
}

pub(crate) async fn drop_body_tx(tx: &Transaction<'_>, tenant: &TenantId, body_id: i64) -> Result<()> {
    drop_body(tx, tenant, body_id).await?.await.map(|_| ())
}

/// The bytes `[start, end)` of a body of `size` bytes: only the chunks they lie in are read.
async fn read_range_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    body_id: i64,
    size: i64,
    range: ByteRange,
) -> Result<Vec<u8>> {
    let (start, end) = (range.start as usize, (range.end as usize).min(size.max(0) as usize));
    if start >= end {
        return Ok(Vec::new());
    }
    let (first, last) = ((start / CHUNK) as i32, ((end - 1) / CHUNK) as i32);
    let rows = tx
        .query(
            "SELECT n, bytes FROM file_chunks WHERE tenant_id = $1 AND body_id = $2 AND n >= $3 AND n <= $4 ORDER BY n",
            &[&tenant.as_str(), &body_id, &first, &last],
        )
        .await
        .map_err(pg_error)?;
    let mut out = Vec::with_capacity(end - start);
    for (expected, r) in (first..).zip(rows.iter()) {
        let (n, bytes): (i32, Vec<u8>) = (r.get(0), r.get(1));
        if n != expected {
            return Err(Error::internal(format!("body {body_id} of tenant {tenant} misses chunk {expected}")));
        }
        let base = n as usize * CHUNK;
        let from = start.saturating_sub(base).min(bytes.len());
        let to = (end - base).min(bytes.len());
        out.extend_from_slice(&bytes[from..to]);
    }
    if out.len() != end - start {
        return Err(Error::internal(format!("body {body_id} of tenant {tenant} is shorter than its file")));
    }
    Ok(out)
}

/// A file's metadata row.
pub(crate) struct FileRow<'a> {
    pub path: &'a str,
    pub size: i64,
    pub etag: &'a str,
    pub version: i64,
    pub content_type: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
    pub body_id: i64,
}

/// The statement that writes a file's row, for a write's flight.
pub(crate) async fn upsert_file_row<'a, C: GenericClient>(
    tx: &'a C,
    tenant: &'a TenantId,
    row: &'a FileRow<'_>,
) -> Result<Pending<'a>> {
    let st = tx
        .prepare_cached(
            "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, body_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, path) DO UPDATE SET size = excluded.size, etag = excluded.etag,
                 version = excluded.version, content_type = excluded.content_type, created_at = excluded.created_at,
                 updated_at = excluded.updated_at, body_id = excluded.body_id",
        )
        .await
        .map_err(pg_error)?;
    Ok(Box::pin(async move {
        tx.execute(
            &st,
            &[
                &tenant.as_str(),
                &row.path,
                &row.size,
                &row.etag,
                &row.version,
                &row.content_type,
                &row.created_at,
                &row.updated_at,
                &row.body_id,
            ],
        )
        .await
        .map_err(pg_error)
    }))
}

pub(crate) async fn upsert_file_row_tx(tx: &Transaction<'_>, tenant: &TenantId, row: &FileRow<'_>) -> Result<()> {
    upsert_file_row(tx, tenant, row).await?.await.map(|_| ())
}

/// The file's metadata and bytes (all, or `range`), read in one transaction.
async fn read_file_in(
    store: &PgStore,
    tenant: &TenantId,
    path: &TenantPath,
    range: Option<ByteRange>,
) -> Result<Option<(FileMeta, Vec<u8>)>> {
    let Some(range) = range else { return read_whole_file(store, tenant, path).await };
    let mut conn = store.conn_of(tenant).await?;
    let tx = crate::tenant_snapshot(&mut conn, tenant).await?;
    let row = tx
        .query_opt(
            &format!("SELECT {FILE_COLUMNS}, body_id FROM files WHERE tenant_id = $1 AND path = $2"),
            &[&tenant.as_str(), &path.as_str()],
        )
        .await
        .map_err(pg_error)?;
    let Some(row) = row else {
        commit(tx).await?;
        return Ok(None);
    };
    let meta = file_from_row(&row)?;
    let body_id: i64 = row.get(7);
    let size = meta.size as i64;
    let bytes = read_range_tx(&tx, tenant, body_id, size, range).await?;
    commit(tx).await?;
    Ok(Some((meta, bytes)))
}

/// A whole file: its row and its chunks in one statement (so one snapshot), in one round trip.
async fn read_whole_file(store: &PgStore, tenant: &TenantId, path: &TenantPath) -> Result<Option<(FileMeta, Vec<u8>)>> {
    let conn = store.conn_of(tenant).await?;
    let rows = crate::read_once(
        &conn,
        tenant,
        "SELECT f.path, f.size, f.etag, f.version, f.content_type, f.created_at, f.updated_at, f.body_id, c.n, c.bytes
         FROM files f LEFT JOIN file_chunks c ON c.tenant_id = f.tenant_id AND c.body_id = f.body_id
         WHERE f.tenant_id = $1 AND f.path = $2 ORDER BY c.n",
        &[&tenant.as_str(), &path.as_str()],
    )
    .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let meta = file_from_row(first)?;
    let body_id: i64 = first.get(7);
    let mut bytes = Vec::with_capacity(meta.size as usize);
    for (expected, r) in (0..).zip(rows.iter()) {
        let Some(n) = r.get::<_, Option<i32>>(8) else { break }; // no chunk: an empty body
        if n != expected {
            return Err(Error::internal(format!("body {body_id} of tenant {tenant} misses chunk {expected}")));
        }
        bytes.extend_from_slice(r.get::<_, &[u8]>(9));
    }
    if bytes.len() as u64 != meta.size {
        return Err(Error::internal(format!("body {body_id} of tenant {tenant} is not as long as its file")));
    }
    Ok(Some((meta, bytes)))
}

#[async_trait]
impl FileStore for PgStore {
    async fn put_file(
        &self,
        scope: &TenantScope,
        write: FileWrite,
        journal: Journal,
    ) -> Result<(FileMeta, WriteOutcome)> {
        let tenant = scope.tenant_id();
        let (write, etag) = if write.content.len() > HASH_INLINE_MAX {
            tokio::task::spawn_blocking(move || {
                let etag = etag_of(&write.content);
                (write, etag)
            })
            .await
            .map_err(|e| Error::internal(format!("hashing failed: {e}")))?
        } else {
            let etag = etag_of(&write.content);
            (write, etag)
        };
        let turn = self.turn(tenant).await;
        let routed = self.places.is_dedicated(tenant);
        let flights = Flights::new(self.conn_of(tenant).await?);
        let tx = flights.client();
        let (id, path, k) = (tenant.as_str(), write.path.as_str(), DocKind::File as i16);
        let begin = crate::begin_writing(tenant)?;
        let statements = (
            tx.prepare_cached(WRITE_BODY).await.map_err(pg_error)?,
            tx.prepare_cached(LOCK_TENANT).await.map_err(pg_error)?,
            tx.prepare_cached(CURRENT_FILE).await.map_err(pg_error)?,
            tx.prepare_cached(HOOKS).await.map_err(pg_error)?,
            tx.prepare_cached(OLD_DOC).await.map_err(pg_error)?,
        );
        let chunks: Vec<&[u8]> = write.content.chunks(CHUNK).collect();
        let by_tenant: [&(dyn ToSql + Sync); 1] = [&id];
        let (with_chunks, by_path, by_doc): (
            [&(dyn ToSql + Sync); 2],
            [&(dyn ToSql + Sync); 2],
            [&(dyn ToSql + Sync); 3],
        ) = ([&id, &chunks], [&id, &path], [&id, &k, &path]);
        // One flight: the transaction begun with the tenant set, the bytes (before its lock: its
        // other writes wait only for the rows), then under the lock everything the write decides on.
        let (_, body, locked, current, hooks, old_doc) = tokio::try_join!(
            biased;
            tx.batch_execute(&begin),
            tx.query_one(&statements.0, &with_chunks),
            tx.query_opt(&statements.1, &by_tenant),
            tx.query_opt(&statements.2, &by_path),
            tx.query(&statements.3, &by_tenant),
            tx.query_opt(&statements.4, &by_doc),
        )
        .map_err(pg_error)?;
        let body_id: i64 = body.get(0);
        if locked.is_none() && self.rerouted(tenant, routed).await? {
            // Moved since this node routed it (`moves`): nothing was written; again, there.
            drop((flights, turn));
            return self.put_file(scope, write, journal).await;
        }
        let (used, heads) = locked_row(&self.places, tenant, locked.as_ref())?;
        let current = current.as_ref().map(current_from_row);
        let decision = write.decide(current.as_ref().map(|c| HeldFile {
            etag: &c.etag,
            version: c.version as u64,
            size: c.size as u64,
            created_at: Timestamp::from_millis(c.created_at),
        }))?;
        let limits = write.limits();
        let after = quota::storage(used, decision.delta, limits)?;
        let reindex = plan_reindex(DocKind::File, search::old_doc(old_doc.as_ref()), write.index.as_ref());
        let planned = plan(
            &heads,
            &hooks_from_rows(&hooks)?,
            scope.slug().as_str(),
            Some(journal.audit),
            journal.event.into_iter().chain(quota::storage_warnings(used, after, limits)).collect(),
            SystemClock.now(),
        )?;
        let delta = CounterDelta {
            storage_bytes: decision.delta.bytes,
            files: decision.delta.files,
            search_docs: reindex.docs,
            search_words: reindex.words,
        };
        let row = FileRow {
            path,
            size: write.content.len() as i64,
            etag: &etag,
            version: decision.version as i64,
            content_type: &write.content_type,
            created_at: decision.created_at.millis(),
            updated_at: write.at.millis(),
            body_id,
        };
        // One flight: every row the write changes, and the commit.
        let mut writes = vec![upsert_file_row(tx, tenant, &row).await?];
        if let Some(c) = &current {
            writes.push(drop_body(tx, tenant, c.body_id).await?);
        }
        writes.extend(reindex_statements(tx, tenant, path, &reindex).await?);
        last_flight(tx, tenant, writes, &planned, delta).await?;
        flights.committed();
        self.publish(tenant, &planned.into_events());
        let meta = FileMeta {
            path: write.path.clone(),
            size: write.content.len() as u64,
            etag,
            version: decision.version,
            content_type: write.content_type.clone(),
            created_at: decision.created_at,
            updated_at: write.at,
        };
        Ok((meta, decision.outcome))
    }

    async fn stat_file(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<FileMeta>> {
        let tenant = scope.tenant_id();
        let row = self
            .read_row(
                tenant,
                &format!("SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = $1 AND path = $2"),
                &[&tenant.as_str(), &path.as_str()],
            )
            .await?;
        row.as_ref().map(file_from_row).transpose()
    }

    async fn read_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        range: Option<ByteRange>,
    ) -> Result<Option<(FileMeta, Vec<u8>)>> {
        read_file_in(self, scope.tenant_id(), path, range).await
    }

    async fn read_file_cold(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<(FileMeta, Vec<u8>)>> {
        read_file_in(self, scope.tenant_id(), path, None).await
    }

    async fn delete_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        precondition: Precondition,
        _at: Timestamp,
        journal: Journal,
    ) -> Result<()> {
        let tenant = scope.tenant_id();
        let turn = self.turn(tenant).await;
        // Two flights, as a PUT: what the delete decides on, then what it changes and the
        // commit. Refused (no file, a precondition), the flights roll back when dropped.
        let routed = self.places.is_dedicated(tenant);
        let flights = Flights::new(self.conn_of(tenant).await?);
        let tx = flights.client();
        let file = path;
        let (id, path) = (tenant.as_str(), path.as_str());
        let by_path: [&(dyn ToSql + Sync); 2] = [&id, &path];
        let read = first_flight(tx, tenant, (CURRENT_FILE, &by_path), (DocKind::File, path)).await?;
        let (locked, current, hooks, old_doc) = (read.locked, read.held, read.hooks, read.old_doc);
        let removed =
            tx.prepare_cached("DELETE FROM files WHERE tenant_id = $1 AND path = $2").await.map_err(pg_error)?;
        if locked.is_none() && self.rerouted(tenant, routed).await? {
            drop((flights, turn));
            return self.delete_file(scope, file, precondition, _at, journal).await;
        }
        let (_, heads) = locked_row(&self.places, tenant, locked.as_ref())?;
        let Some(current) = current.as_ref().map(current_from_row) else {
            return Err(Error::not_found(format!("no file at {path}")));
        };
        precondition.check(Some(&current.etag))?;
        let reindex = plan_reindex(DocKind::File, search::old_doc(old_doc.as_ref()), None);
        let planned = plan(
            &heads,
            &hooks_from_rows(&hooks)?,
            scope.slug().as_str(),
            Some(journal.audit),
            journal.event.into_iter().collect(),
            SystemClock.now(),
        )?;
        let delta = CounterDelta {
            storage_bytes: -current.size,
            files: -1,
            search_docs: reindex.docs,
            search_words: reindex.words,
        };
        let mut writes: Vec<Pending<'_>> =
            vec![Box::pin(async move { tx.execute(&removed, &by_path).await.map_err(pg_error) })];
        writes.push(drop_body(tx, tenant, current.body_id).await?);
        writes.extend(reindex_statements(tx, tenant, path, &reindex).await?);
        last_flight(tx, tenant, writes, &planned, delta).await?;
        flights.committed();
        self.publish(tenant, &planned.into_events());
        Ok(())
    }

    async fn list_files(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<FileMeta>> {
        let tenant = scope.tenant_id();
        let dir = listing.within.as_dir();
        let end = past_folder(&dir);
        let after = listing.after.unwrap_or_default();
        let limit = listing.limit.min(i64::MAX as usize) as i64;
        let rows = self
            .read_rows(
                tenant,
                &format!(
                    "SELECT {FILE_COLUMNS} FROM files
                 WHERE tenant_id = $1 AND path > $4
                   AND ((path >= $2 AND path < $3 AND ($5 OR strpos(substr(path, length($2) + 1), '/') = 0))
                        OR ($7 AND path = $8))
                 ORDER BY path LIMIT $6"
                ),
                &[
                    &tenant.as_str(),
                    &dir,
                    &end,
                    &after,
                    &listing.recursive,
                    &limit,
                    &listing.include_within,
                    &listing.within.as_str(),
                ],
            )
            .await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn list_folder(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<ListedEntry>> {
        let tenant = scope.tenant_id();
        let mut scan = FolderScan::new(&listing.within, listing.after);
        let mut conn = self.conn_of(tenant).await?;
        let tx = crate::tenant_snapshot(&mut conn, tenant).await?;
        let at_or_after = tx
            .prepare_cached(&format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = $1 AND path >= $2 AND path < $3 ORDER BY path LIMIT $4"
            ))
            .await
            .map_err(pg_error)?;
        let after = tx
            .prepare_cached(&format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = $1 AND path > $2 AND path < $3 ORDER BY path LIMIT $4"
            ))
            .await
            .map_err(pg_error)?;
        // Each seek reads up to `batch` files in path order: the files of this folder come one
        // entry each, those of a folder already taken are skipped. The batch doubles with the
        // entries a seek gave and falls back toward one when a folder's files filled it, so a
        // folder of plain files takes one round trip per 128 entries and a folder of big
        // folders no more seeks than one per entry.
        let mut entries = Vec::new();
        let mut batch: usize = 16;
        while entries.len() < listing.limit {
            let limit = batch.min(listing.limit - entries.len()).max(1);
            let statement = if scan.inclusive { &at_or_after } else { &after };
            let rows = tx
                .query(statement, &[&tenant.as_str(), &scan.from, &scan.end(), &(limit as i64)])
                .await
                .map_err(pg_error)?;
            let (found, before) = (rows.len(), entries.len());
            for row in &rows {
                if scan.admits(row.get::<_, &str>(0)) {
                    entries.push(scan.take(file_from_row(row)?));
                    if entries.len() == listing.limit {
                        break;
                    }
                }
            }
            if found < limit {
                break; // nothing more in the folder
            }
            if entries.len() == before {
                // The seek's first file is always admitted while the database orders paths as the
                // core does (collation "C"): anything else would seek the same files forever.
                return Err(Error::internal("a folder listing's seek found no new entry"));
            }
            batch = ((entries.len() - before) * 2).clamp(1, LISTING_BATCH_MAX);
        }
        commit(tx).await?;
        Ok(entries)
    }

    async fn usage(&self, scope: &TenantScope) -> Result<StoredUsage> {
        let tenant = scope.tenant_id();
        let routed = self.places.is_dedicated(tenant);
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        let row = tx
            .query_opt("SELECT storage_bytes, files FROM tenant_usage WHERE tenant_id = $1", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?;
        commit(tx).await?;
        let Some(row) = row else {
            // Moved since this node routed it (`moves`): read where it is now; purged: nothing.
            return match self.rerouted(tenant, routed).await {
                Ok(true) => self.usage(scope).await,
                Ok(false) => Ok(StoredUsage::default()),
                Err(e) if e.code == tenantry_core::ErrorCode::NotFound => Ok(StoredUsage::default()),
                Err(e) => Err(e),
            };
        };
        Ok(StoredUsage { storage_bytes: row.get::<_, i64>(0).max(0) as u64, files: row.get::<_, i64>(1).max(0) as u64 })
    }
}
