//! A tenant's counters (storage bytes, files, search index size, last event seq): read by every
//! write's quota check and moved by most writes, and kept like the log tails (see `tails`).
//!
//! Kept in `tenant_usage` and updated in place by each write, a group of writes of many tenants
//! dirtied a page per write: 10,000 tenants' rows span some hundred pages, and that was most of
//! what sustained writes spread over them cost beyond one tenant's (BENCHMARKS.md, session 9).
//! So a write that changes a tenant's counters appends its new values to `usage_tail` (a group's
//! rows share the tail's last page) and keeps them in the writer connection's
//! `temp.usage_now`, which the next write of the tenant reads (and which rolls back with the
//! write). A fold, at the settling of the log tails' fold, writes the values of every tenant whose
//! last tail row it covers back to `tenant_usage`, sorted by tenant, and deletes the tail rows
//! it covers.
//!
//! Invariants:
//! - A tenant's current values are its latest `usage_tail` row (highest id) if it has one, else
//!   its `tenant_usage` row, else zeros. Tail ids are never reused (AUTOINCREMENT), so a new row
//!   is always the latest.
//! - On the writer, `temp.usage_now` holds the current values of every tenant with tail rows,
//!   with the id of its latest one; nothing else writes the tail.
//! - Readers on other connections take the values committed last from [`Committed`] in memory
//!   (filled after each commit, before its writes are answered, from `temp.usage_changed`), and
//!   only for a tenant not in it from `tenant_usage`: it leaves the registry only after a commit
//!   that wrote its values there, so a reader that found nothing in memory reads a snapshot that
//!   holds them.
//! - A crash leaves tail rows: when the database opens each tenant's latest is written back.

use crate::pool::{sql_error, Pool};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::Arc;
use tenantry_core::ids::TenantId;
use tenantry_core::Result;

/// A tenant's counters, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub storage_bytes: i64,
    pub files: i64,
    pub last_event_seq: i64,
    pub search_docs: i64,
    pub search_words: i64,
}

/// The counters' columns, in `Counters`' order, in every table and view that holds them (a
/// macro, so the statements are built at compile time, not on each write).
macro_rules! columns {
    () => {
        "storage_bytes, files, last_event_seq, search_docs, search_words"
    };
}

/// How a tenant's values are written back to `tenant_usage` (by `settle` and `fold_all`).
macro_rules! write_back {
    ($select:expr) => {
        concat!(
            "INSERT INTO tenant_usage (tenant_id, ",
            columns!(),
            ") ",
            $select,
            " ON CONFLICT (tenant_id) DO UPDATE SET storage_bytes = excluded.storage_bytes, files = excluded.files,
               last_event_seq = excluded.last_event_seq, search_docs = excluded.search_docs,
               search_words = excluded.search_words"
        )
    };
}

const TEMP: &str = "
    CREATE TEMP TABLE IF NOT EXISTS usage_now (
        tenant_id TEXT PRIMARY KEY, storage_bytes INTEGER NOT NULL, files INTEGER NOT NULL,
        last_event_seq INTEGER NOT NULL, search_docs INTEGER NOT NULL, search_words INTEGER NOT NULL,
        tail_id INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TEMP TABLE IF NOT EXISTS usage_changed (tenant_id TEXT PRIMARY KEY) WITHOUT ROWID;";

impl Counters {
    fn from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Counters> {
        Ok(Counters {
            storage_bytes: r.get(at)?,
            files: r.get(at + 1)?,
            last_event_seq: r.get(at + 2)?,
            search_docs: r.get(at + 3)?,
            search_words: r.get(at + 4)?,
        })
    }
}

/// Creates the writer connection's working tables (any connection that deletes a tenant's rows
/// needs them too).
pub(crate) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TEMP)
}

/// The tenant's values in `tenant_usage` (zeros if it has no row): what a reader takes when
/// [`Committed`] does not hold the tenant.
pub(crate) fn stored(conn: &Connection, tenant: &TenantId) -> Result<Counters> {
    row_of(conn, concat!("SELECT ", columns!(), " FROM tenant_usage WHERE tenant_id = ?1"), tenant)
        .map(Option::unwrap_or_default)
}

/// The one row of the tenant's values `sql` selects, if any.
fn row_of(conn: &Connection, sql: &str, tenant: &TenantId) -> Result<Option<Counters>> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row([tenant.as_str()], |r| Counters::from_row(r, 0)).optional())
        .map_err(sql_error)
}

/// The tenant's values in a read's own snapshot (`usage_all`: scans the tail, so for reads off the
/// request path that need them consistent with the rest of the snapshot: moves).
pub(crate) fn in_snapshot(conn: &Connection, tenant: &TenantId) -> Result<Counters> {
    row_of(conn, concat!("SELECT ", columns!(), " FROM usage_all WHERE tenant_id = ?1"), tenant)
        .map(Option::unwrap_or_default)
}

/// The tenant's values as committed last, for a read (see the invariants): from memory if it
/// has unfolded rows, without a reader.
pub(crate) async fn read_committed(pool: Arc<Pool>, tenant: &TenantId) -> Result<Counters> {
    if let Some(known) = pool.tails.usage(tenant) {
        return Ok(known);
    }
    let tenant = tenant.clone();
    crate::store::read_on(pool, move |conn| stored(conn, &tenant)).await
}

/// The tenant's current values as its write sees them, on the writer inside the write.
pub(crate) fn now_tx(tx: &Connection, tenant: &TenantId) -> Result<Counters> {
    match row_of(tx, concat!("SELECT ", columns!(), " FROM temp.usage_now WHERE tenant_id = ?1"), tenant)? {
        Some(c) => Ok(c),
        None => stored(tx, tenant),
    }
}

/// Moves the tenant's values by `by` (none below zero), inside its write. Values that do not
/// change write nothing (most writes move no counter but the event seq).
pub(crate) fn add_tx(tx: &Connection, tenant: &TenantId, by: Counters) -> Result<()> {
    if by != Counters::default() {
        apply_tx(tx, tenant, by)?;
    }
    Ok(())
}

/// Numbers the tenant's next event, inside the write that records it.
pub(crate) fn next_event_seq_tx(tx: &Connection, tenant: &TenantId) -> Result<i64> {
    Ok(apply_tx(tx, tenant, Counters { last_event_seq: 1, ..Counters::default() })?.last_event_seq)
}

fn apply_tx(tx: &Connection, tenant: &TenantId, by: Counters) -> Result<Counters> {
    let add = |value: i64, by: i64| value.saturating_add(by).max(0);
    let old = now_tx(tx, tenant)?;
    let new = Counters {
        storage_bytes: add(old.storage_bytes, by.storage_bytes),
        files: add(old.files, by.files),
        last_event_seq: add(old.last_event_seq, by.last_event_seq),
        search_docs: add(old.search_docs, by.search_docs),
        search_words: add(old.search_words, by.search_words),
    };
    if new == old {
        return Ok(new);
    }
    let values =
        params![tenant.as_str(), new.storage_bytes, new.files, new.last_event_seq, new.search_docs, new.search_words];
    tx.prepare_cached(concat!("INSERT INTO usage_tail (tenant_id, ", columns!(), ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))
        .and_then(|mut s| s.execute(values))
        .map_err(sql_error)?;
    // The working values are the row just appended, with its id.
    tx.prepare_cached(concat!(
        "INSERT OR REPLACE INTO temp.usage_now (tenant_id, ",
        columns!(),
        ", tail_id)
         SELECT tenant_id, ",
        columns!(),
        ", id FROM usage_tail WHERE id = ?1"
    ))
    .and_then(|mut s| s.execute([tx.last_insert_rowid()]))
    .map_err(sql_error)?;
    changed(tx, tenant).map_err(sql_error)?;
    Ok(new)
}

fn changed(tx: &Connection, tenant: &TenantId) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO temp.usage_changed (tenant_id) VALUES (?1)")?
        .execute([tenant.as_str()])?;
    Ok(())
}

/// Deletes the tenant's tail rows and working values, inside the write that deletes its
/// `tenant_usage` row. Scans the tail (at most a fold's worth of rows), off the request path.
pub(crate) fn forget_tx(tx: &Connection, tenant: &TenantId) -> Result<()> {
    prepare(tx).map_err(sql_error)?;
    tx.execute("DELETE FROM usage_tail WHERE tenant_id = ?1", [tenant.as_str()]).map_err(sql_error)?;
    tx.execute("DELETE FROM temp.usage_now WHERE tenant_id = ?1", [tenant.as_str()]).map_err(sql_error)?;
    changed(tx, tenant).map_err(sql_error)
}

/// The fold's part, inside the settling step: every tenant whose latest tail row is at most
/// `upto` (the tail's last id when the fold began) has its values written back and leaves the
/// working table; the tail rows up to `upto` go.
pub(crate) fn settle(conn: &Connection, upto: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(write_back!(concat!(
        "SELECT tenant_id, ",
        columns!(),
        " FROM temp.usage_now WHERE tail_id <= ?1 ORDER BY tenant_id"
    )))?
    .execute([upto])?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO temp.usage_changed SELECT tenant_id FROM temp.usage_now WHERE tail_id <= ?1",
    )?
    .execute([upto])?;
    conn.prepare_cached("DELETE FROM temp.usage_now WHERE tail_id <= ?1")?.execute([upto])?;
    conn.prepare_cached("DELETE FROM usage_tail WHERE id <= ?1")?.execute([upto])?;
    Ok(())
}

/// Writes every tenant's latest tail row back and empties the tail and the working tables,
/// inside the caller's transaction: when the database opens (after a crash) or closes.
pub(crate) fn fold_all(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        write_back!(concat!(
            "SELECT tenant_id, ",
            columns!(),
            " FROM (SELECT tenant_id, MAX(id), ",
            columns!(),
            " FROM usage_tail GROUP BY tenant_id) WHERE true"
        )),
        [],
    )?;
    conn.execute_batch("DELETE FROM usage_tail; DELETE FROM temp.usage_now; DELETE FROM temp.usage_changed;")
}

/// The tail's last id (0 if empty).
pub(crate) fn last_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM usage_tail")?.query_row([], |r| r.get(0))
}

/// The values committed last of every tenant with tail rows, for readers (see the invariants).
#[derive(Default)]
pub(crate) struct Committed {
    by_tenant: HashMap<String, Counters>,
    /// The tail's last id as of the last commit registered.
    pub last_id: i64,
    /// Up to which id the tail was folded last.
    pub folded: i64,
}

impl Committed {
    pub fn get(&self, tenant: &TenantId) -> Option<Counters> {
        self.by_tenant.get(tenant.as_str()).copied()
    }

    /// Rows appended since the last fold (ids count them, near enough), and tenants with rows.
    pub fn pending(&self) -> (usize, usize) {
        ((self.last_id - self.folded).max(0) as usize, self.by_tenant.len())
    }

    /// Takes in what the commit just made changed: on the writer, after each commit, before any
    /// of its writes is answered.
    pub fn register(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut s = conn.prepare_cached(concat!(
            "SELECT c.tenant_id, ",
            columns!(),
            " FROM temp.usage_changed c LEFT JOIN temp.usage_now u USING (tenant_id)"
        ))?;
        let mut rows = s.query([])?;
        let mut any = false;
        while let Some(r) = rows.next()? {
            let tenant: String = r.get(0)?;
            let values: Option<i64> = r.get(1)?;
            match values {
                Some(_) => {
                    self.by_tenant.insert(tenant, Counters::from_row(r, 1)?);
                }
                None => {
                    self.by_tenant.remove(&tenant);
                }
            }
            any = true;
        }
        drop(rows);
        if any {
            conn.prepare_cached("DELETE FROM temp.usage_changed")?.execute([])?;
            self.last_id = last_id(conn)?;
        }
        Ok(())
    }

    /// After `fold_all` (which leaves the tail empty) up to `last_id`.
    pub fn clear(&mut self, last_id: i64) {
        self.by_tenant.clear();
        self.last_id = self.last_id.max(last_id);
        self.folded = self.last_id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tails::{tests_open_at as open_at, TestDb as Db};

    fn open() -> Db {
        open_at(tempfile::tempdir().unwrap())
    }

    fn values(storage_bytes: i64, files: i64, last_event_seq: i64) -> Counters {
        Counters { storage_bytes, files, last_event_seq, search_docs: 0, search_words: 0 }
    }

    impl Db {
        /// One committed write, registered as the writer does.
        fn write(&self, work: impl FnOnce(&Connection)) {
            self.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            work(&self.writer);
            self.writer.execute_batch("COMMIT").unwrap();
            self.tails.register(&self.writer).unwrap();
        }

        fn add(&self, t: &TenantId, bytes: i64, files: i64) {
            self.write(|tx| {
                add_tx(tx, t, values(bytes, files, 0)).unwrap();
            });
        }

        /// What a reader on another connection is told.
        fn committed(&self, t: &TenantId) -> Counters {
            self.tails.usage(t).unwrap_or_else(|| stored(&self.reader, t).unwrap())
        }

        /// What a move's snapshot read of the whole tenant sees.
        fn whole(&self, t: &TenantId) -> Counters {
            in_snapshot(&self.reader, t).unwrap()
        }

        /// Tenants with working values on the writer.
        fn working(&self) -> i64 {
            self.writer.query_row("SELECT COUNT(*) FROM temp.usage_now", [], |r| r.get(0)).unwrap()
        }

        fn fold(&self) {
            assert!(self.tails.begin_fold(true));
            while self.tails.folding() {
                self.tails.step(&self.writer).unwrap();
            }
        }
    }

    #[test]
    fn writes_append_their_values_and_a_fold_writes_each_tenants_latest_back() {
        let db = open();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        db.add(&a, 10, 1);
        db.write(|tx| {
            // A write sees its own changes and the ones committed before it.
            add_tx(tx, &a, values(0, 0, 1)).unwrap();
            assert_eq!(now_tx(tx, &a).unwrap(), values(10, 1, 1));
        });
        db.add(&b, 5, 1);
        // Nothing changes: nothing is written.
        db.add(&b, 0, 0);
        assert_eq!((db.count("usage_tail"), db.count("tenant_usage")), (3, 0));
        assert_eq!((db.committed(&a), db.committed(&b)), (values(10, 1, 1), values(5, 1, 0)));
        assert_eq!(db.whole(&a), values(10, 1, 1));
        db.fold();
        assert_eq!((db.count("usage_tail"), db.working(), db.count("tenant_usage")), (0, 0, 2));
        assert_eq!((db.tails.usage(&a), db.tails.usage_rows()), (None, 0), "read from tenant_usage now");
        assert_eq!((db.committed(&a), db.committed(&b)), (values(10, 1, 1), values(5, 1, 0)));
        assert_eq!(db.whole(&b), values(5, 1, 0));
        // The next write starts from the folded values.
        db.add(&a, -4, 0);
        assert_eq!(db.committed(&a), values(6, 1, 1));
        assert_eq!(stored(&db.reader, &a).unwrap(), values(10, 1, 1), "not written back before a fold");
        assert_eq!(db.whole(&a), values(6, 1, 1));
    }

    #[test]
    fn a_tenant_written_during_a_fold_keeps_its_latest_row_and_values() {
        let db = open();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        db.add(&a, 10, 1);
        db.add(&b, 7, 1);
        assert!(db.tails.begin_fold(true));
        db.add(&a, 1, 0);
        while db.tails.folding() {
            db.tails.step(&db.writer).unwrap();
        }
        assert_eq!(db.count("usage_tail"), 1, "only a's row written after the fold began");
        assert_eq!(stored(&db.reader, &b).unwrap(), values(7, 1, 0));
        assert_eq!(stored(&db.reader, &a).unwrap(), Counters::default(), "a's latest row is still in the tail");
        assert_eq!((db.committed(&a), db.whole(&a)), (values(11, 1, 0), values(11, 1, 0)));
        db.fold();
        assert_eq!((db.count("usage_tail"), stored(&db.reader, &a).unwrap()), (0, values(11, 1, 0)));
    }

    #[test]
    fn a_rolled_back_write_leaves_no_values_behind() {
        let db = open();
        let a = TenantId::generate();
        db.add(&a, 3, 1);
        db.write(|tx| {
            tx.execute_batch("SAVEPOINT job").unwrap();
            add_tx(tx, &a, values(100, 0, 0)).unwrap();
            tx.execute_batch("ROLLBACK TO job; RELEASE job").unwrap();
            assert_eq!(now_tx(tx, &a).unwrap(), values(3, 1, 0));
        });
        assert_eq!((db.count("usage_tail"), db.committed(&a)), (1, values(3, 1, 0)));
        db.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        add_tx(&db.writer, &a, values(0, 9, 0)).unwrap();
        db.writer.execute_batch("ROLLBACK").unwrap();
        db.tails.register(&db.writer).unwrap();
        assert_eq!(db.committed(&a), values(3, 1, 0));
        db.write(|tx| assert_eq!(now_tx(tx, &a).unwrap(), values(3, 1, 0)));
    }

    #[test]
    fn values_left_in_the_tail_by_a_crash_are_written_back_at_open() {
        let db = open();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        db.add(&a, 10, 1);
        db.add(&b, 2, 1);
        db.fold();
        db.add(&a, 5, 1);
        db.add(&a, -1, 0);
        // A fold interrupted after its settling was planned: nothing of it committed.
        assert!(db.tails.begin_fold(true));
        let Db { _dir, writer, reader, tails, path } = db;
        drop((writer, reader, tails, path));
        let db = open_at(_dir);
        assert_eq!(db.count("usage_tail"), 0);
        assert_eq!(stored(&db.reader, &a).unwrap(), values(14, 2, 0));
        assert_eq!(stored(&db.reader, &b).unwrap(), values(2, 1, 0));
        assert_eq!(db.tails.usage(&a), None);
        db.write(|tx| assert_eq!(now_tx(tx, &a).unwrap(), values(14, 2, 0)));
    }

    #[test]
    fn forgetting_a_tenant_deletes_its_rows_and_values_and_nobody_elses() {
        let db = open();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        db.add(&a, 10, 1);
        db.fold();
        db.add(&a, 1, 1);
        db.add(&b, 4, 1);
        db.write(|tx| {
            forget_tx(tx, &a).unwrap();
            tx.execute("DELETE FROM tenant_usage WHERE tenant_id = ?1", [a.as_str()]).unwrap();
        });
        assert_eq!(
            (db.tails.usage(&a), db.committed(&a), db.whole(&a)),
            (None, Counters::default(), Counters::default())
        );
        assert_eq!((db.count("usage_tail"), db.committed(&b)), (1, values(4, 1, 0)));
        db.fold();
        assert_eq!(db.count("tenant_usage"), 1, "a fold brings no row of a back");
        // Coming back (a move back here) starts from what the move writes.
        db.add(&a, 2, 1);
        assert_eq!(db.committed(&a), values(2, 1, 0));
    }

    #[test]
    fn counters_alone_are_folded_when_the_writer_is_idle() {
        let db = open();
        let a = TenantId::generate();
        // A dense tenant's log entries skip the tails; its counters do not.
        crate::tails::with_dense_tenants(vec![crate::store::owner_of(&a)], || db.add(&a, 8, 1));
        assert!(!db.tails.is_empty());
        assert_eq!(db.tails.usage_rows(), 1);
        db.fold();
        assert!(db.tails.is_empty());
        assert_eq!((db.tails.usage_rows(), stored(&db.reader, &a).unwrap()), (0, values(8, 1, 0)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(usize, i64, i64),
        Event(usize),
        Refused(usize, i64),
        BeginFold,
        Step,
        Forget(usize),
        Crash,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..3usize, -20..40i64, -1..3i64).prop_map(|(t, b, f)| Op::Add(t, b, f)),
            2 => (0..3usize).prop_map(Op::Event),
            1 => (0..3usize, 1..50i64).prop_map(|(t, b)| Op::Refused(t, b)),
            1 => Just(Op::BeginFold),
            2 => Just(Op::Step),
            1 => (0..3usize).prop_map(Op::Forget),
            1 => Just(Op::Crash),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever the interleaving of writes, refused writes, fold steps, deletions and
        /// crashes, every tenant's values read anywhere are exactly those of a plain model.
        #[test]
        fn counters_match_a_model_through_folds_deletions_and_crashes(ops in proptest::collection::vec(op(), 1..40)) {
            let tenants = [TenantId::generate(), TenantId::generate(), TenantId::generate()];
            let mut model = [Counters::default(); 3];
            let mut db = open();
            for op in ops {
                match op {
                    Op::Add(i, bytes, files) => {
                        db.add(&tenants[i], bytes, files);
                        model[i].storage_bytes = (model[i].storage_bytes + bytes).max(0);
                        model[i].files = (model[i].files + files).max(0);
                    }
                    Op::Event(i) => {
                        let mut seq = 0;
                        db.write(|tx| seq = next_event_seq_tx(tx, &tenants[i]).unwrap());
                        model[i].last_event_seq += 1;
                        proptest::prop_assert_eq!(seq, model[i].last_event_seq);
                    }
                    Op::Refused(i, bytes) => db.write(|tx| {
                        tx.execute_batch("SAVEPOINT job").unwrap();
                        add_tx(tx, &tenants[i], values(bytes, 1, 0)).unwrap();
                        tx.execute_batch("ROLLBACK TO job; RELEASE job").unwrap();
                    }),
                    Op::BeginFold => {
                        db.tails.begin_fold(true);
                    }
                    Op::Step => {
                        if db.tails.folding() {
                            db.tails.step(&db.writer).unwrap();
                        }
                    }
                    Op::Forget(i) => {
                        db.write(|tx| {
                            forget_tx(tx, &tenants[i]).unwrap();
                            tx.execute("DELETE FROM tenant_usage WHERE tenant_id = ?1", [tenants[i].as_str()]).unwrap();
                        });
                        model[i] = Counters::default();
                    }
                    Op::Crash => {
                        let Db { _dir, writer, reader, tails, path } = db;
                        drop((writer, reader, tails, path));
                        db = open_at(_dir);
                    }
                }
                for (t, expected) in tenants.iter().zip(model) {
                    proptest::prop_assert_eq!(db.committed(t), expected);
                    proptest::prop_assert_eq!(db.whole(t), expected);
                }
            }
            db.write(|tx| {
                for (t, expected) in tenants.iter().zip(model) {
                    assert_eq!(now_tx(tx, t).unwrap(), expected);
                }
            });
        }
    }
}
