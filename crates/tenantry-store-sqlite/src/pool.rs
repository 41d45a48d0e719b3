//! Connections: one writer behind a mutex (SQLite allows one writer; short transactions keep the
//! wait short) and a fixed pool of readers, which WAL lets run beside the writer. All use happens
//! on tokio's blocking threads, so the std mutexes here never block the async runtime.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use tenantry_core::Error;

#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// `FULL` (default): a commit is on disk when answered, even across power loss.
    /// `NORMAL`: survives a process crash, may lose the last commits on power loss.
    pub synchronous_full: bool,
    pub readers: usize,
    /// Bytes of small files kept in memory for reads (0 disables the cache).
    pub cache_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { synchronous_full: true, readers: 4, cache_bytes: 64 << 20 }
    }
}

pub(crate) struct Pool {
    pub path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

pub(crate) fn sql_error(e: rusqlite::Error) -> Error {
    Error::internal(format!("sqlite: {e}"))
}

fn configure(conn: &Connection, opts: &OpenOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", if opts.synchronous_full { "FULL" } else { "NORMAL" })?;
    // Purged tenants' bytes are overwritten, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "cache_size", -8192)?;
    // Reads come straight from the OS page cache instead of being copied into each connection's
    // own cache: with many tenants the hot set is larger than one connection's cache.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves no half-done transaction (rusqlite rolls back on
    // drop), so the connection is still good to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// Opens (creating if needed) the database at `path`, migrated to the current schema.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Pool, Error> {
        let mut writer = Connection::open(path).map_err(sql_error)?;
        writer.pragma_update(None, "journal_mode", "WAL").map_err(sql_error)?;
        configure(&writer, opts).map_err(sql_error)?;
        crate::schema::migrate(&mut writer).map_err(|e| match e {
            crate::schema::MigrateError::Newer { found } => Error::internal(format!(
                "{} has schema version {found}, newer than this tenantry binary knows ({}): run a newer tenantry",
                path.display(),
                crate::schema::SCHEMA_VERSION
            )),
            crate::schema::MigrateError::Sql(e) => sql_error(e),
        })?;
        let mut readers = Vec::new();
        for _ in 0..opts.readers.max(1) {
            let r =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(sql_error)?;
            configure(&r, opts).map_err(sql_error)?;
            readers.push(Mutex::new(r));
        }
        Ok(Pool { path: path.to_owned(), writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) })
    }

    pub fn writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.writer)
    }

    /// A free reader, without waiting: for reads done inline on an async worker thread, which
    /// must never block on a lock.
    pub fn try_reader(&self) -> Option<MutexGuard<'_, Connection>> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| self.readers[(start + i) % n].try_lock().ok())
    }

    /// A free reader if there is one, else waits on the next in turn.
    pub fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(guard) = self.readers[(start + i) % n].try_lock() {
                return guard;
            }
        }
        lock(&self.readers[start % n])
    }
}
