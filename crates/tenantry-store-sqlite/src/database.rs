//! A database as the store uses it: a [`Pool`] whose writer keeps the log tails and counters
//! ([`Tails`]) beside the writes.

use crate::counters::{self, Counters};
use crate::pool::{read_on, OpenOptions, Pool};
use crate::tails::Tails;
use std::path::Path;
use std::sync::Arc;
use tenantry_core::ids::TenantId;
use tenantry_core::Result;

pub(crate) type Database = Pool<Tails>;

impl Database {
    /// Opens (creating if needed) the database at `path`, migrated, its tails folded.
    pub fn open_with_tails(path: &Path, opts: &OpenOptions) -> Result<Database> {
        let (flush_at, step_rows) = (opts.search_flush_at, opts.search_step_rows);
        Pool::open(path, opts, |writer| Tails::open(writer, flush_at, step_rows))
    }

    /// Which log entries are in the tails, by tenant, and the counters not folded yet.
    pub fn tails(&self) -> &Arc<Tails> {
        self.companion()
    }
}

/// The tenant's values as committed last, for a read (see `counters`' invariants): from memory if it
/// has unfolded rows, without a reader.
pub(crate) async fn read_committed(db: Arc<Database>, tenant: &TenantId) -> Result<Counters> {
    if let Some(known) = db.tails().usage(tenant) {
        return Ok(known);
    }
    let tenant = tenant.clone();
    read_on(db, move |conn| counters::stored(conn, &tenant)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_writer_folds_the_log_tails_inside_its_groups_and_when_idle() {
        use tenantry_core::ids::TenantId;
        let dir = tempfile::tempdir().unwrap();
        let pool = Database::open_with_tails(&dir.path().join("db.sqlite"), &OpenOptions::default()).unwrap();
        let tenants: Vec<TenantId> = (0..100).map(|_| TenantId::generate()).collect();
        // 80 writes of one entry for each of 100 tenants; a fold is due at 64 per tenant
        // (ROWS_PER_TENANT: 6,400) and runs inside the groups that follow, a step per group.
        assert_eq!(crate::tails::ROWS_PER_TENANT, 64);
        for n in 0..80 {
            let slice = tenants.clone();
            let draft = tenantry_core::model::AuditDraft {
                actor: "key".into(),
                action: "file.write".into(),
                target: format!("/{n}"),
                result: "ok".into(),
                request_id: "req".into(),
                ip: "::1".into(),
            };
            pool.write(
                None,
                move |c| slice.iter().try_for_each(|t| crate::audit::append_audit_tx(c, t, "slug", draft.clone())),
                None,
            )
            .await
            .unwrap();
        }
        let count = |table: &str| {
            pool.reader().query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).unwrap()
        };
        assert!(
            count("audit_tail_index") >= 6400,
            "a fold ran while writes came: {} indexed",
            count("audit_tail_index")
        );
        // Idle: the rest is folded after a second.
        for _ in 0..100 {
            if count("audit_tail_index") == 8000 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!((count("audit_tail_index"), count("audit_tail"), count("audit")), (8000, 8000, 0));
        assert!(pool.tails().is_empty());
        let seqs: Vec<i64> = pool
            .reader()
            .prepare("SELECT seq FROM audit_indexed WHERE tenant_id = ?1 ORDER BY seq")
            .unwrap()
            .query_map([tenants[7].as_str()], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_dense_tenants_writes_through_the_writer_skip_the_tails() {
        use tenantry_core::ids::TenantId;
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(Database::open_with_tails(&dir.path().join("db.sqlite"), &OpenOptions::default()).unwrap());
        let t = TenantId::generate();
        let write = |target: &str| {
            let (pool, t, draft) = (pool.clone(), t.clone(), crate::tails::tests_draft(target));
            let owner = Some(crate::pool::owner_of(&t));
            async move { pool.write(owner, move |c| crate::audit::append_audit_tx(c, &t, "slug", draft), None).await }
        };
        // Hold the writer until eight writes of the tenant wait: they make one group.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let pool = pool.clone();
            async move { pool.exclusive(move |_| held.recv().map_err(|_| tenantry_core::Error::internal("dropped"))).await }
        });
        let writes: Vec<_> = (0..8).map(|n| tokio::spawn(write(&format!("/{n}")))).collect();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        let count = |table: &str| {
            pool.reader().query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).unwrap()
        };
        assert_eq!((count("audit"), count("audit_tail")), (8, 0));
        assert!(pool.tails().is_empty());
        // A single write in its group goes to the tail, even with no other tenant writing.
        write("/alone").await.unwrap();
        assert_eq!((count("audit"), count("audit_tail")), (8, 1));
    }
}
