//! Large file bodies kept outside the database, one file each under `DATA/blobs/<tenant id>/`.
//!
//! SQLite in WAL mode writes every byte twice (into the log, then into the database at the
//! checkpoint); for a body over [`EXTERNAL_OVER`] that doubling is the whole cost, so such a body is
//! written once, to a file of its own, and fsynced before the transaction that points at it
//! (`file_content.blob`) commits: a committed row never names a body that is not durable. Small
//! bodies stay inline, where group commit makes them cheap (a file of their own would cost a
//! create and two fsyncs each).
//!
//! Names are random, never the content's hash: each `file_content` row owns its body, so
//! replacing or deleting a file can unlink its body after the commit without counting references.
//! What can be left behind is an unreferenced body (a crash between writing it and committing, or
//! between committing a delete and the unlink); [`Blobs::sweep`] removes those when the store
//! opens. Bodies live in a per-tenant directory whatever the tenant's placement, so moving a
//! tenant between the shared database and its own moves the rows that name its bodies and never
//! the bodies themselves; purging a tenant erases its directory.

use rand::Rng;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tenantry_core::ids::TenantId;
use tenantry_core::{Error, Result};

/// Bodies larger than this are stored outside the database. Equal to the largest body the search
/// index reads (`MAX_INDEXED_BYTES`), so an indexed file is always inline.
pub(crate) const EXTERNAL_OVER: usize = 1 << 20;

/// The directory under the data dir that holds the bodies.
pub(crate) const BLOBS_DIR: &str = "blobs";

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    if matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
        tracing::error!("{what} {}: {e}: the data directory's disk is full", path.display());
        return Error::storage_full();
    }
    Error::internal(format!("{what} {}: {e}", path.display()))
}

/// Makes a directory entry durable (the entry, not the file's data: that is the file's fsync).
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("cannot sync directory", dir, e))
}

pub(crate) struct Blobs {
    root: PathBuf,
}

impl Blobs {
    pub fn new(data_dir: &Path) -> Blobs {
        Blobs { root: data_dir.join(BLOBS_DIR) }
    }

    fn dir(&self, tenant: &TenantId) -> PathBuf {
        self.root.join(tenant.as_str())
    }

    pub fn path(&self, tenant: &TenantId, name: &str) -> PathBuf {
        self.dir(tenant).join(name)
    }

    /// The tenant's directory, created (durably) if it is not there yet.
    fn ensure_dir(&self, tenant: &TenantId) -> Result<PathBuf> {
        let dir = self.dir(tenant);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, e))?;
            sync_dir(&self.root)?;
            if let Some(parent) = self.root.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(dir)
    }

    /// Writes a new body and returns its name. With `durable`, the body and its directory entry
    /// are fsynced before this returns, as they must be before a transaction that names it commits.
    pub fn write(&self, tenant: &TenantId, bytes: &[u8], durable: bool) -> Result<String> {
        let dir = self.ensure_dir(tenant)?;
        let name = format!("{:032x}", rand::thread_rng().gen::<u128>());
        let path = dir.join(&name);
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&path)?;
            f.write_all(bytes)?;
            if durable {
                f.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(io_error("cannot write", &path, e));
        }
        if durable {
            sync_dir(&dir)?;
        }
        Ok(name)
    }

    /// Writes several bodies durably and returns their names in order; if one fails, those
    /// already written are unlinked.
    pub fn write_all<'a>(&self, tenant: &TenantId, bodies: impl Iterator<Item = &'a [u8]>) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for bytes in bodies {
            match self.write(tenant, bytes, true) {
                Ok(name) => names.push(name),
                Err(e) => {
                    self.remove(tenant, &names);
                    return Err(e);
                }
            }
        }
        Ok(names)
    }

    /// Reads a body, or the `[start, end)` part of it. `Ok(None)` if it is gone: a concurrent
    /// replace or delete committed and unlinked it, and the caller reads the row again.
    pub fn read(&self, tenant: &TenantId, name: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>> {
        let path = self.path(tenant, name);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot open", &path, e)),
        };
        let read = (|| {
            let mut out = Vec::new();
            match range {
                Some((start, end)) => {
                    f.seek(SeekFrom::Start(start))?;
                    out.reserve((end - start) as usize);
                    f.take(end - start).read_to_end(&mut out)?;
                }
                None => {
                    f.read_to_end(&mut out)?;
                }
            }
            Ok(out)
        })();
        read.map(Some).map_err(|e| io_error("cannot read", &path, e))
    }

    /// The size of a body on disk, or `None` if it is missing.
    pub fn size(&self, tenant: &TenantId, name: &str) -> Option<u64> {
        std::fs::metadata(self.path(tenant, name)).ok().map(|m| m.len())
    }

    /// Unlinks bodies no row names any more. A body already gone is fine.
    pub fn remove(&self, tenant: &TenantId, names: &[String]) {
        for name in names {
            let path = self.path(tenant, name);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot unlink a file body; it is swept at the next start");
                }
            }
        }
    }

    /// Erases every body of a tenant: each is overwritten with zeros and fsynced before the
    /// directory goes, so purged bytes do not stay readable in the freed blocks.
    pub fn erase_tenant(&self, tenant: &TenantId) -> Result<()> {
        let dir = self.dir(tenant);
        if !dir.exists() {
            return Ok(());
        }
        erase_dir(&dir)?;
        sync_dir(&self.root)
    }

    /// Removes every body no database names (`referenced`) and every directory of a tenant that
    /// is not in `tenants`. Run when the store opens, before anything is served.
    pub fn sweep(&self, referenced: &HashSet<String>, tenants: &HashSet<String>) -> Result<u64> {
        let Ok(dirs) = std::fs::read_dir(&self.root) else { return Ok(0) };
        let mut removed = 0;
        for dir in dirs.flatten() {
            let path = dir.path();
            let tenant = dir.file_name().to_string_lossy().into_owned();
            if !tenants.contains(&tenant) {
                tracing::warn!(tenant, "erasing the file bodies of a tenant that no longer exists");
                erase_dir(&path)?;
                removed += 1;
                continue;
            }
            let entries = std::fs::read_dir(&path).map_err(|e| io_error("cannot list", &path, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !referenced.contains(&name) {
                    std::fs::remove_file(entry.path()).map_err(|e| io_error("cannot unlink", &entry.path(), e))?;
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::warn!(removed, "removed file bodies no row names (left by an interrupted write)");
        }
        Ok(removed)
    }
}

fn erase_dir(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("cannot list", dir, e)),
    };
    let zeros = vec![0u8; 1 << 20];
    for entry in entries.flatten() {
        let path = entry.path();
        let zeroed = (|| {
            let mut f = OpenOptions::new().write(true).open(&path)?;
            let mut left = f.metadata()?.len();
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        zeroed.map_err(|e| io_error("cannot erase", &path, e))?;
    }
    std::fs::remove_dir_all(dir).map_err(|e| io_error("cannot remove", dir, e))
}

/// Bodies a transaction stopped naming, unlinked only once it has committed (a rolled-back
/// transaction still names them).
#[derive(Clone, Default)]
pub(crate) struct Doomed(Arc<Mutex<Vec<String>>>);

impl Doomed {
    pub fn push(&self, name: Option<String>) {
        if let Some(name) = name {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(name);
        }
    }

    /// Unlinks them: call after the commit.
    pub fn unlink(&self, blobs: &Blobs, tenant: &TenantId) {
        let names = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        blobs.remove(tenant, &names);
    }
}

/// Bodies written ahead of the transaction that will name them. If that transaction's work
/// fails (it names none of them) they are unlinked at once; if its work ran but the commit failed
/// they are left for the sweep at open, since whether the commit reached the disk is not known.
pub(crate) struct Pending {
    tenant: TenantId,
    names: Vec<String>,
    ran: Arc<std::sync::atomic::AtomicBool>,
}

impl Pending {
    pub fn new(tenant: &TenantId, names: Vec<String>) -> Pending {
        Pending { tenant: tenant.clone(), names, ran: Arc::default() }
    }

    /// Set by the transaction's work once it has succeeded (the last thing it does).
    pub fn ran(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.ran.clone()
    }

    pub fn settle<T>(self, blobs: &Blobs, result: &Result<T>) {
        if result.is_err() && !self.ran.load(std::sync::atomic::Ordering::SeqCst) {
            blobs.remove(&self.tenant, &self.names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_storage_full_and_other_io_failures_stay_internal() {
        let path = Path::new("/data/blobs/t/x");
        for e in [std::io::Error::from_raw_os_error(28), std::io::ErrorKind::QuotaExceeded.into()] {
            assert_eq!(io_error("cannot write", path, e).code, tenantry_core::ErrorCode::StorageFull);
        }
        let other = io_error("cannot write", path, std::io::Error::from_raw_os_error(5));
        assert_eq!(other.code, tenantry_core::ErrorCode::Internal);
    }

    #[test]
    fn bodies_round_trip_and_ranges_and_a_missing_body_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path());
        let t = TenantId::generate();
        let bytes: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let name = blobs.write(&t, &bytes, true).unwrap();
        assert_eq!(blobs.read(&t, &name, None).unwrap().unwrap(), bytes);
        assert_eq!(blobs.read(&t, &name, Some((10, 20))).unwrap().unwrap(), bytes[10..20].to_vec());
        assert_eq!(blobs.size(&t, &name), Some(3000));
        blobs.remove(&t, std::slice::from_ref(&name));
        assert_eq!(blobs.read(&t, &name, None).unwrap(), None);
        blobs.remove(&t, &[name]); // already gone: fine
    }

    #[test]
    fn sweep_keeps_named_bodies_and_removes_the_rest_and_unknown_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path());
        let (kept, gone) = (TenantId::generate(), TenantId::generate());
        let named = blobs.write(&kept, b"named", false).unwrap();
        let stray = blobs.write(&kept, b"stray", false).unwrap();
        blobs.write(&gone, b"of a purged tenant", false).unwrap();
        let referenced: HashSet<String> = [named.clone()].into();
        let tenants: HashSet<String> = [kept.as_str().to_owned()].into();
        assert_eq!(blobs.sweep(&referenced, &tenants).unwrap(), 2);
        assert!(blobs.path(&kept, &named).exists());
        assert!(!blobs.path(&kept, &stray).exists());
        assert!(!blobs.dir(&gone).exists());
    }
}
