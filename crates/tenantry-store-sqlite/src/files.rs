//! Files: metadata rows, bodies (inline or external), reads, writes, listings.

use crate::blobs::{Blobs, Pending, EXTERNAL_OVER};
use crate::error::{corrupt, sql_error};
use crate::journal::{journal_tx, quota_warnings_tx};
use crate::search::reindex_tx;
use crate::store::SqliteStore;
use crate::usage::{add_usage_tx, stored_usage, usage_tx};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::sync::Arc;
use tenantry_core::events::Journal;
use tenantry_core::ids::TenantId;
use tenantry_core::model::FileMeta;
use tenantry_core::path::TenantPath;
use tenantry_core::quota;
use tenantry_core::search::DocKind;
use tenantry_core::store::{
    etag_of, ByteRange, FileListing, FileStore, FileWrite, FolderScan, HeldFile, ListedEntry, Precondition,
    StoredUsage, TenantScope, WriteOutcome,
};
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};

pub(crate) const FILE_COLUMNS: &str = "path, size, etag, version, content_type, created_at, updated_at";

pub(crate) fn file_from_row(r: &Row<'_>) -> rusqlite::Result<Result<FileMeta>> {
    let path: String = r.get(0)?;
    let (size, etag, version, content_type, created, updated): (i64, String, i64, String, i64, i64) =
        (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
    Ok(TenantPath::parse(&path).map_err(|_| corrupt("path")).map(|path| FileMeta {
        path,
        size: size as u64,
        etag,
        version: version as u64,
        content_type,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
    }))
}

/// A stored file's row, without its bytes.
pub(crate) struct CurrentFile {
    pub etag: String,
    pub version: i64,
    pub created_at: i64,
    pub size: i64,
    pub content_id: i64,
}

impl CurrentFile {
    pub fn content(&self) -> ContentRef {
        ContentRef { id: self.content_id, size: self.size }
    }
}

/// The current row of a file, if any.
pub(crate) fn current_file(tx: &Connection, tenant: &TenantId, path: &str) -> Result<Option<CurrentFile>> {
    tx.prepare_cached(
        "SELECT etag, version, created_at, size, content_id FROM files WHERE tenant_id = ?1 AND path = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![tenant.as_str(), path], |r| {
            Ok(CurrentFile {
                etag: r.get(0)?,
                version: r.get(1)?,
                created_at: r.get(2)?,
                size: r.get(3)?,
                content_id: r.get(4)?,
            })
        })
        .optional()
    })
    .map_err(sql_error)
}

/// A file's body as a `file_content` row holds it.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Inline(&'a [u8]),
    /// In a file of its own (`blobs`), by name.
    External(&'a str),
}

/// A `file_content` row, with the size of the body it holds: a body of at most `EXTERNAL_OVER`
/// bytes is always inline, so only a larger one needs its row read to learn whether it is external.
#[derive(Clone, Copy)]
pub(crate) struct ContentRef {
    pub id: i64,
    pub size: i64,
}

impl ContentRef {
    fn blob_tx(self, tx: &Connection, tenant: &TenantId) -> Result<Option<String>> {
        if self.size > EXTERNAL_OVER as i64 {
            blob_of_tx(tx, tenant, self.id)
        } else {
            Ok(None)
        }
    }
}

/// Stores a file's body for `tenant`: over `replacing`'s row in place, or in a new row. Returns
/// its id and the external body the row named before, which the caller unlinks once the change
/// has committed.
pub(crate) fn store_content_tx(
    tx: &Connection,
    tenant: &TenantId,
    replacing: Option<ContentRef>,
    body: Body<'_>,
) -> Result<(i64, Option<String>)> {
    let (content, blob): (&[u8], Option<&str>) = match body {
        Body::Inline(bytes) => (bytes, None),
        Body::External(name) => (&[], Some(name)),
    };
    match replacing {
        Some(old) => {
            let (id, before) = (old.id, old.blob_tx(tx, tenant)?);
            let changed = tx
                .prepare_cached("UPDATE file_content SET content = ?3, blob = ?4 WHERE id = ?2 AND tenant_id = ?1")
                .and_then(|mut s| s.execute(params![tenant.as_str(), id, content, blob]))
                .map_err(sql_error)?;
            content_row_found(changed)?;
            Ok((id, before))
        }
        None => {
            tx.prepare_cached("INSERT INTO file_content (tenant_id, blob, content) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![tenant.as_str(), blob, content]))
                .map_err(sql_error)?;
            Ok((tx.last_insert_rowid(), None))
        }
    }
}

pub(crate) fn blob_of_tx(tx: &Connection, tenant: &TenantId, id: i64) -> Result<Option<String>> {
    tx.prepare_cached("SELECT blob FROM file_content WHERE id = ?2 AND tenant_id = ?1")
        .and_then(|mut s| s.query_row(params![tenant.as_str(), id], |r| r.get(0)).optional())
        .map(Option::flatten)
        .map_err(sql_error)
}

/// A body row a file row of the same tenant names must exist: its absence is a broken database.
fn content_row_found(changed: usize) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(crate::error::corrupt("file body reference"))
    }
}

/// Deletes a body's row. Returns the external body it named, which the caller unlinks after the
/// commit.
pub(crate) fn drop_content_tx(tx: &Connection, tenant: &TenantId, content: ContentRef) -> Result<Option<String>> {
    let blob = content.blob_tx(tx, tenant)?;
    drop_content_row_tx(tx, tenant, content.id)?;
    Ok(blob)
}

/// Deletes a body's row and nothing else: for a move's copies, whose external bodies the other
/// database's rows still name.
pub(crate) fn drop_content_row_tx(tx: &Connection, tenant: &TenantId, id: i64) -> Result<()> {
    let changed = tx
        .prepare_cached("DELETE FROM file_content WHERE id = ?2 AND tenant_id = ?1")
        .and_then(|mut s| s.execute(params![tenant.as_str(), id]))
        .map_err(sql_error)?;
    content_row_found(changed)
}

/// Every external body a database names (through the partial index: no content is read).
pub(crate) fn named_blobs(conn: &Connection) -> Result<Vec<String>> {
    conn.prepare("SELECT blob FROM file_content WHERE blob IS NOT NULL")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql_error)
}

/// A file's metadata row as stored.
pub(crate) struct FileRow<'a> {
    pub path: &'a str,
    pub size: i64,
    pub etag: &'a str,
    pub version: i64,
    pub content_type: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
    pub content_id: i64,
}

pub(crate) fn upsert_file_row_tx(tx: &Connection, tenant: &TenantId, row: &FileRow<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, content_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant_id, path) DO UPDATE SET size = excluded.size, etag = excluded.etag,
           version = excluded.version, content_type = excluded.content_type,
           created_at = excluded.created_at, updated_at = excluded.updated_at, content_id = excluded.content_id",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant.as_str(),
            row.path,
            row.size,
            row.etag,
            row.version,
            row.content_type,
            row.created_at,
            row.updated_at,
            row.content_id
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

/// Files at most this large are read inline (see `read_file`).
const INLINE_READ_MAX: i64 = 64 * 1024;

enum FileRead {
    Missing,
    /// The bytes asked for exceed the inline limit: read again on the blocking pool.
    TooLarge,
    Found(FileMeta, Vec<u8>),
    /// The body is in a file of its own, by this name.
    External(FileMeta, String),
}

fn read_file_tx(
    conn: &Connection,
    tenant: &TenantId,
    path: &TenantPath,
    range: Option<ByteRange>,
    max_len: i64,
) -> Result<FileRead> {
    let (start, len) = match range {
        Some(r) => (r.start as i64 + 1, (r.end - r.start) as i64),
        None => (1, i64::MAX),
    };
    let row = conn
        .prepare_cached(&format!(
            "SELECT {FILE_COLUMNS}, CASE WHEN size > {EXTERNAL_OVER} THEN blob END,
                    CASE WHEN min(size - ?3 + 1, ?4) <= ?5 AND (size <= {EXTERNAL_OVER} OR blob IS NULL)
                         THEN coalesce(substr(content, ?3, ?4), x'') END
             FROM files JOIN file_content ON file_content.id = files.content_id AND file_content.tenant_id = files.tenant_id
             WHERE files.tenant_id = ?1 AND path = ?2"
        ))
        .and_then(|mut s| {
            s.query_row(params![tenant.as_str(), path.as_str(), start, len, max_len], |r| {
                let blob: Option<String> = r.get(7)?;
                let bytes: Option<Vec<u8>> = r.get(8)?;
                Ok((file_from_row(r)?, blob, bytes))
            })
            .optional()
        })
        .map_err(sql_error)?;
    // `blob` is read only for a body large enough to be external (a smaller one never is).
    Ok(match row {
        None => FileRead::Missing,
        Some((meta, Some(blob), _)) => FileRead::External(meta?, blob),
        Some((meta, None, Some(bytes))) => FileRead::Found(meta?, bytes),
        // NULL means over the limit: substr of an empty blob is NULL too, hence the coalesce.
        Some((_, None, None)) => FileRead::TooLarge,
    })
}

/// Reads a file and its body wherever the body is kept (blocking: call on a blocking thread).
fn read_file_whole(
    conn: &Connection,
    blobs: &Blobs,
    tenant: &TenantId,
    path: &TenantPath,
    range: Option<ByteRange>,
) -> Result<Option<(FileMeta, Vec<u8>)>> {
    // An external body can be unlinked between reading its row and opening it (a replace or
    // delete committed meanwhile); the row is then read again and names the current body.
    for _ in 0..16 {
        match read_file_tx(conn, tenant, path, range, i64::MAX)? {
            FileRead::Missing => return Ok(None),
            FileRead::Found(meta, bytes) => return Ok(Some((meta, bytes))),
            FileRead::External(meta, name) => {
                let part = range.map(|r| (r.start.min(meta.size), r.end.min(meta.size)));
                if let Some(bytes) = blobs.read(tenant, &name, part)? {
                    return Ok(Some((meta, bytes)));
                }
            }
            FileRead::TooLarge => return Err(Error::internal("a file read without a limit was over it")),
        }
    }
    Err(Error::internal(format!("{path} kept changing while it was read")))
}

#[async_trait]
impl FileStore for SqliteStore {
    async fn put_file(
        &self,
        scope: &TenantScope,
        write: FileWrite,
        journal: Journal,
    ) -> Result<(FileMeta, WriteOutcome)> {
        // Hash outside the writer, which only runs the short transaction; a large body is hashed
        // (and, over `EXTERNAL_OVER`, written to a file of its own) on the blocking pool rather
        // than on an async worker.
        let write = Arc::new(write);
        let (etag, blob) = if write.content.len() as i64 <= INLINE_READ_MAX {
            (etag_of(&write.content), None)
        } else {
            let (w, blobs, t) = (write.clone(), self.blobs.clone(), scope.tenant_id().clone());
            tokio::task::spawn_blocking(move || -> Result<(String, Option<String>)> {
                let blob =
                    if w.content.len() > EXTERNAL_OVER { Some(blobs.write(&t, &w.content, true)?) } else { None };
                Ok((etag_of(&w.content), blob))
            })
            .await
            .map_err(|e| Error::internal(format!("hashing failed: {e}")))??
        };
        let pending = Pending::new(scope.tenant_id(), blob.iter().cloned().collect());
        let ran = pending.ran();
        let scope = scope.clone();
        let (on_commit, doomed) = self.after_files_commit(scope.tenant_id(), Some(write.path.as_str()));
        let result = self
            .write_journaled(&scope.tenant_id().clone(), Some(on_commit), move |tx, published| {
                let tenant = scope.tenant_id();
                let current = current_file(tx, tenant, write.path.as_str())?;
                let decision = write.decide(current.as_ref().map(|c| HeldFile {
                    etag: &c.etag,
                    version: c.version as u64,
                    size: c.size as u64,
                    created_at: Timestamp::from_millis(c.created_at),
                }))?;
                let (version, created_at, outcome) =
                    (decision.version as i64, decision.created_at.millis(), decision.outcome);
                // Hard limits, inside the transaction (see `tenantry_core::quota`).
                let used = usage_tx(tx, tenant)?;
                let limits = write.limits();
                let after = quota::storage(used, decision.delta, limits)?;
                add_usage_tx(tx, tenant, decision.delta.bytes, decision.delta.files)?;
                let body = match &blob {
                    Some(name) => Body::External(name),
                    None => Body::Inline(&write.content),
                };
                let (content_id, before) =
                    store_content_tx(tx, tenant, current.as_ref().map(CurrentFile::content), body)?;
                doomed.push(before);
                let row = FileRow {
                    path: write.path.as_str(),
                    size: write.content.len() as i64,
                    etag: &etag,
                    version,
                    content_type: &write.content_type,
                    created_at,
                    updated_at: write.at.millis(),
                    content_id,
                };
                upsert_file_row_tx(tx, tenant, &row)?;
                reindex_tx(tx, tenant, DocKind::File, write.path.as_str(), write.index.as_ref())?;
                journal_tx(tx, tenant, scope.slug().as_str(), journal, published)?;
                let warnings = quota::storage_warnings(used, after, limits);
                quota_warnings_tx(tx, tenant, scope.slug().as_str(), warnings, published)?;
                let meta = FileMeta {
                    path: write.path.clone(),
                    size: write.content.len() as u64,
                    etag: etag.clone(),
                    version: version as u64,
                    content_type: write.content_type.clone(),
                    created_at: Timestamp::from_millis(created_at),
                    updated_at: write.at,
                };
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok((meta, outcome))
            })
            .await;
        pending.settle(&self.blobs, &result);
        result
    }

    async fn stat_file(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<FileMeta>> {
        if let Some(hit) = self.cache.get(scope.tenant_id(), path.as_str()) {
            return Ok(Some(hit.0.clone()));
        }
        let (tenant, path) = (scope.tenant_id().clone(), path.clone());
        self.read_of(&tenant.clone(), move |conn| {
            conn.prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = ?1 AND path = ?2"))
                .and_then(|mut s| s.query_row(params![tenant.as_str(), path.as_str()], file_from_row).optional())
                .map_err(sql_error)?
                .transpose()
        })
        .await
    }

    async fn read_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        range: Option<ByteRange>,
    ) -> Result<Option<(FileMeta, Vec<u8>)>> {
        let tenant = scope.tenant_id();
        if let Some(hit) = self.cache.get(tenant, path.as_str()) {
            let bytes = match range {
                Some(r) => hit.1[r.start as usize..(r.end as usize).min(hit.1.len())].to_vec(),
                None => hit.1.clone(),
            };
            return Ok(Some((hit.0.clone(), bytes)));
        }
        let generation = self.cache.generation();
        // Small files are read inline on the calling thread when a reader is free: a
        // prepared-statement read of a few KiB costs microseconds, less than a hop to the
        // blocking pool. Larger ones (or a busy pool) go to the blocking pool.
        let pool = self.pool_of(tenant)?;
        let inline = match pool.try_reader() {
            Some(conn) => read_file_tx(&conn, tenant, path, range, INLINE_READ_MAX)?,
            None => FileRead::TooLarge,
        };
        let found = match inline {
            FileRead::Missing => return Ok(None),
            FileRead::Found(meta, bytes) => Some((meta, bytes)),
            FileRead::TooLarge | FileRead::External(..) => {
                let (t, p, blobs) = (tenant.clone(), path.clone(), self.blobs.clone());
                self.read_of(tenant, move |conn| read_file_whole(conn, &blobs, &t, &p, range)).await?
            }
        };
        if let (Some((meta, bytes)), None) = (&found, range) {
            if bytes.len() as i64 <= INLINE_READ_MAX {
                self.cache.insert(tenant, generation, Arc::new((meta.clone(), bytes.clone())));
            }
        }
        Ok(found)
    }

    async fn read_file_cold(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<(FileMeta, Vec<u8>)>> {
        let (t, p, blobs) = (scope.tenant_id().clone(), path.clone(), self.blobs.clone());
        self.read_of(&t.clone(), move |conn| read_file_whole(conn, &blobs, &t, &p, None)).await
    }

    async fn delete_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        precondition: Precondition,
        _at: Timestamp,
        journal: Journal,
    ) -> Result<()> {
        let (scope, path) = (scope.clone(), path.clone());
        let (on_commit, doomed) = self.after_files_commit(scope.tenant_id(), Some(path.as_str()));
        self.write_journaled(&scope.tenant_id().clone(), Some(on_commit), move |tx, published| {
            let tenant = scope.tenant_id();
            let Some(current) = current_file(tx, tenant, path.as_str())? else {
                return Err(Error::not_found(format!("no file at {path}")));
            };
            precondition.check(Some(&current.etag))?;
            tx.prepare_cached("DELETE FROM files WHERE tenant_id = ?1 AND path = ?2")
                .and_then(|mut s| s.execute(params![tenant.as_str(), path.as_str()]))
                .map_err(sql_error)?;
            doomed.push(drop_content_tx(tx, tenant, current.content())?);
            add_usage_tx(tx, tenant, -current.size, -1)?;
            reindex_tx(tx, tenant, DocKind::File, path.as_str(), None)?;
            journal_tx(tx, tenant, scope.slug().as_str(), journal, published)
        })
        .await
    }

    async fn usage(&self, scope: &TenantScope) -> Result<StoredUsage> {
        let tenant = scope.tenant_id();
        crate::database::read_committed(self.pool_of(tenant)?, tenant).await.map(stored_usage)
    }

    async fn list_files(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<FileMeta>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            let dir = listing.within.as_dir();
            // Every path under `dir` sorts in [dir, dir with its final '/' bumped to '0').
            let upper = format!("{}0", &dir[..dir.len() - 1]);
            let after = listing.after.unwrap_or_default();
            let mut s = conn
                .prepare_cached(&format!(
                    "SELECT {FILE_COLUMNS} FROM files
                     WHERE tenant_id = ?1 AND path > ?4
                       AND ((path >= ?2 AND path < ?3 AND (?5 OR instr(substr(path, length(?2) + 1), '/') = 0))
                            OR (?7 AND path = ?8))
                     ORDER BY path LIMIT ?6"
                ))
                .map_err(sql_error)?;
            let rows = s
                .query_map(
                    params![
                        tenant.as_str(),
                        dir,
                        upper,
                        after,
                        listing.recursive,
                        listing.limit as i64,
                        listing.include_within,
                        listing.within.as_str()
                    ],
                    file_from_row,
                )
                .map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }

    async fn list_folder(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<ListedEntry>> {
        let tenant = scope.tenant_id().clone();
        self.read_of(&tenant.clone(), move |conn| {
            let mut scan = FolderScan::new(&listing.within, listing.after);
            let mut entries = Vec::new();
            while entries.len() < listing.limit {
                let bound = if scan.inclusive { ">=" } else { ">" };
                let mut next = conn
                    .prepare_cached(&format!(
                        "SELECT {FILE_COLUMNS} FROM files
                         WHERE tenant_id = ?1 AND path {bound} ?2 AND path < ?3 ORDER BY path LIMIT 1"
                    ))
                    .map_err(sql_error)?;
                let mut rows = next
                    .query_map(params![tenant.as_str(), scan.from, scan.end()], file_from_row)
                    .map_err(sql_error)?;
                let Some(file) = rows.next() else { break };
                let file = file.map_err(sql_error)??;
                entries.push(scan.take(file));
            }
            Ok(entries)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::OpenOptions;
    use tenantry_core::ErrorCode;
    use tenantry_store_contract::{assert_code, file_journal, path, write, Fixture};

    #[tokio::test]
    async fn a_file_row_naming_another_tenants_body_neither_reads_nor_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OpenOptions { cache_bytes: 0, ..OpenOptions::default() };
        let store = Arc::new(SqliteStore::open(dir.path(), opts).unwrap());
        let fx = Fixture::new(store.clone(), dir);
        let ((a, sa), (b, sb)) = (fx.tenant("owner").await, fx.tenant("other").await);
        fx.put(&sa, "/secret", "a's bytes").await;
        fx.put(&sb, "/mine", "b's bytes").await;
        // A broken row: b's file names a's body.
        let (ta, tb) = (a.id.clone(), b.id.clone());
        store
            .write_shared(move |tx| {
                tx.execute(
                    "UPDATE files SET content_id = (SELECT content_id FROM files WHERE tenant_id = ?1)
                     WHERE tenant_id = ?2",
                    [ta.as_str(), tb.as_str()],
                )
                .map_err(sql_error)
            })
            .await
            .unwrap();
        assert!(store.read_file(&sb, &path("/mine"), None).await.unwrap().is_none());
        assert_code(
            store.put_file(&sb, write("/mine", b"overwritten"), file_journal("/mine")).await,
            ErrorCode::Internal,
        );
        let at = Timestamp::from_millis(0);
        let gone = store.delete_file(&sb, &path("/mine"), Precondition::None, at, file_journal("/mine")).await;
        assert_code(gone, ErrorCode::Internal);
        let (_, bytes) = store.read_file(&sa, &path("/secret"), None).await.unwrap().unwrap();
        assert_eq!(bytes, b"a's bytes");
    }
}
