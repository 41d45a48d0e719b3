//! A tenant's counters (storage bytes, files, search index size, last event seq): read by every
//! write's quota check and moved by most writes, and kept like the log tails (see `tails`).
//!
//! Kept in `tenant_usage` and updated in place by each write, a group of writes of many tenants
//! dirtied a page per write: 10,000 tenants' rows span some hundred pages, and that was most of
//! what sustained writes spread over them cost beyond one tenant's (BENCHMARKS.md, session 9).
//! So a write that changes a tenant's counters appends its new values to `usage_tail` (a group's
//! rows share the tail's last page) and keeps them in the writer connection's
//! `temp.usage_now`, which the group's next write of the tenant reads (and which rolls back with
//! the write). After the group commits, its working values move into [`Committed`] in memory,
//! where the next group's writes and every reader find them. A fold, at the settling of the log
//! tails' fold, writes the values of every tenant whose last tail row it covers back to
//! `tenant_usage`, sorted by tenant, and deletes the tail rows it covers.
//!
//! The working table holds one group's tenants only, not every tenant with tail rows: kept whole,
//! with 10,000 tenants, it was a B-tree of some 200 pages that each write searched and each
//! savepoint journalled a page of, where one tenant's writes kept finding the same one
//! (BENCHMARKS.md, session 11).
//!
//! Invariants:
//! - A tenant's current values are its latest `usage_tail` row (highest id) if it has one, else
//!   its `tenant_usage` row, else zeros. Tail ids are never reused (AUTOINCREMENT), so a new row
//!   is always the latest.
//! - On the writer, inside a group: `temp.usage_now` holds the values of the tenants the group
//!   changed, with the id of their latest row (0 for a tenant the group deleted); [`Committed`]
//!   those of every other tenant with tail rows. Nothing else writes the tail.
//! - Readers on other connections take the values committed last from [`Committed`] (filled
//!   after each commit, before its writes are answered), and only for a tenant not in it from
//!   `tenant_usage`: it leaves [`Committed`] only after a commit that wrote its values there, or
//!   deleted them, so a reader that found nothing in memory reads a snapshot that holds them.
//! - A crash leaves tail rows: when the database opens each tenant's latest is written back.

use crate::error::sql_error;
use crate::working::{drain_working, DELETED};
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::RefCell;
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

/// The group's working values; `tail_id` 0 marks a tenant whose rows the group deleted.
const TEMP: &str = "
    CREATE TEMP TABLE IF NOT EXISTS usage_now (
        tenant_id TEXT PRIMARY KEY, storage_bytes INTEGER NOT NULL, files INTEGER NOT NULL,
        last_event_seq INTEGER NOT NULL, search_docs INTEGER NOT NULL, search_words INTEGER NOT NULL,
        tail_id INTEGER NOT NULL) WITHOUT ROWID;";

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

/// The counters committed before the running group, of tenants with unfolded usage rows: the
/// writer's memory of them (`tails` keeps it, with the registry of the log tails it folds with).
pub(crate) trait CommittedUsage: Send + Sync {
    fn committed(&self, tenant: &TenantId) -> Option<Counters>;
}

thread_local! {
    /// The writer's memory while it runs a group (a thread-local for the reason `tails::in_group`
    /// gives: the writes' statements take the connection alone).
    static BEFORE_GROUP: RefCell<Option<Arc<dyn CommittedUsage>>> = const { RefCell::new(None) };
}

/// Runs `group` on the writer, its writes finding the counters committed before it in `memory`.
pub(crate) fn in_group<T>(memory: Arc<dyn CommittedUsage>, group: impl FnOnce() -> T) -> T {
    let before = BEFORE_GROUP.with(|g| g.borrow_mut().replace(memory));
    let out = group();
    BEFORE_GROUP.with(|g| *g.borrow_mut() = before);
    out
}

fn committed_before_group(tenant: &TenantId) -> Option<Counters> {
    BEFORE_GROUP.with(|g| g.borrow().as_ref().and_then(|m| m.committed(tenant)))
}

/// The tenant's current values as its write sees them, on the writer inside the write: the
/// group's own, else those committed before it (see the invariants).
pub(crate) fn now_tx(tx: &Connection, tenant: &TenantId) -> Result<Counters> {
    let working = tx
        .prepare_cached(concat!("SELECT tail_id, ", columns!(), " FROM temp.usage_now WHERE tenant_id = ?1"))
        .and_then(|mut s| {
            s.query_row([tenant.as_str()], |r| Ok((r.get::<_, i64>(0)?, Counters::from_row(r, 1)?))).optional()
        })
        .map_err(sql_error)?;
    match working {
        Some((DELETED, _)) => stored(tx, tenant),
        Some((_, values)) => Ok(values),
        None => match committed_before_group(tenant) {
            Some(values) => Ok(values),
            None => stored(tx, tenant),
        },
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
    Ok(new)
}

/// Deletes the tenant's tail rows and working values, inside the write that deletes its
/// `tenant_usage` row. Scans the tail (at most a fold's worth of rows), off the request path.
pub(crate) fn forget_tx(tx: &Connection, tenant: &TenantId) -> Result<()> {
    prepare(tx).map_err(sql_error)?;
    tx.execute("DELETE FROM usage_tail WHERE tenant_id = ?1", [tenant.as_str()]).map_err(sql_error)?;
    tx.prepare_cached(concat!(
        "INSERT OR REPLACE INTO temp.usage_now (tenant_id, ",
        columns!(),
        ", tail_id) VALUES (?1, 0, 0, 0, 0, 0, ?2)"
    ))
    .and_then(|mut s| s.execute(params![tenant.as_str(), DELETED]))
    .map_err(sql_error)?;
    Ok(())
}

/// The fold's part, inside the settling step: `due` (the tenants whose latest tail row is at
/// most `upto`, the tail's last id when the fold began, with their values: [`Committed::due`])
/// are written back, sorted by tenant, but for those the group changed before the step (newer
/// values, or deleted); the tail rows up to `upto` go.
pub(crate) fn settle(conn: &Connection, upto: i64, due: &[(String, Counters)]) -> rusqlite::Result<()> {
    let mut write = conn.prepare_cached(write_back!(concat!(
        "SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS (SELECT 1 FROM temp.usage_now WHERE tenant_id = ?1)"
    )))?;
    for (tenant, c) in due {
        write.execute(params![tenant, c.storage_bytes, c.files, c.last_event_seq, c.search_docs, c.search_words])?;
    }
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
    conn.execute_batch("DELETE FROM usage_tail; DELETE FROM temp.usage_now;")
}

/// The tail's last id (0 if empty).
pub(crate) fn last_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM usage_tail")?.query_row([], |r| r.get(0))
}

/// The values committed last of every tenant with tail rows, with the id of its latest row, for
/// readers and the writer's next groups (see the invariants).
#[derive(Default)]
pub(crate) struct Committed {
    by_tenant: HashMap<String, (Counters, i64)>,
    /// The tail's last id as of the last commit registered.
    pub last_id: i64,
    /// Up to which id the tail was folded last.
    pub folded: i64,
}

impl Committed {
    pub fn get(&self, tenant: &TenantId) -> Option<Counters> {
        self.by_tenant.get(tenant.as_str()).map(|(values, _)| *values)
    }

    /// The tenants whose latest row is at most `upto`, with their values, sorted by tenant: what
    /// a fold's settling writes back.
    pub fn due(&self, upto: i64) -> Vec<(String, Counters)> {
        let mut due: Vec<(String, Counters)> = self
            .by_tenant
            .iter()
            .filter(|(_, (_, id))| *id <= upto)
            .map(|(tenant, (values, _))| (tenant.clone(), *values))
            .collect();
        due.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        due
    }

    /// After the commit of a settling up to `upto`: the tenants written back leave (a tenant the
    /// settling's group wrote again has a later row, and stays).
    pub fn settled(&mut self, upto: i64) {
        self.by_tenant.retain(|_, (_, id)| *id > upto);
        self.folded = self.folded.max(upto);
    }

    /// Rows appended since the last fold (ids count them, near enough), and tenants with rows.
    pub fn pending(&self) -> (usize, usize) {
        ((self.last_id - self.folded).max(0) as usize, self.by_tenant.len())
    }

    /// Takes in the working values of the group just committed, and empties the working table
    /// for the next: on the writer, after each commit, before any of its writes is answered.
    pub fn register(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let select = concat!("SELECT tenant_id, tail_id, ", columns!(), " FROM temp.usage_now");
        drain_working(conn, select, "DELETE FROM temp.usage_now", |r| {
            let tenant: String = r.get(0)?;
            match r.get(1)? {
                DELETED => {
                    self.by_tenant.remove(&tenant);
                }
                id => {
                    self.by_tenant.insert(tenant, (Counters::from_row(r, 2)?, id));
                    self.last_id = self.last_id.max(id);
                }
            }
            Ok(())
        })
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
            self.commit(&[], false, work);
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
        assert_eq!((db.count("usage_tail"), db.count("tenant_usage")), (0, 2));
        assert_eq!(
            (db.tails.usage(&a), db.tails.usage(&b), db.tails.usage_rows()),
            (None, None, 0),
            "read from tenant_usage now"
        );
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
        db.group(&[], || {
            db.writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            add_tx(&db.writer, &a, values(0, 9, 0)).unwrap();
            db.writer.execute_batch("ROLLBACK").unwrap();
        });
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
        db.commit(&[&a], false, |tx| add_tx(tx, &a, values(8, 1, 0)).unwrap());
        assert!(!db.tails.is_empty());
        assert_eq!(db.tails.usage_rows(), 1);
        db.fold();
        assert!(db.tails.is_empty());
        assert_eq!((db.tails.usage_rows(), stored(&db.reader, &a).unwrap()), (0, values(8, 1, 0)));
    }

    /// The writes take a `bool`: whether the fold's next step (if one is under way) runs last in
    /// the write's group, as the writer runs it.
    #[derive(Debug, Clone)]
    enum Op {
        Add(usize, i64, i64, bool),
        Event(usize, bool),
        Refused(usize, i64),
        BeginFold,
        Step,
        Forget(usize, bool),
        Crash,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..3usize, -20..40i64, -1..3i64, any::<bool>()).prop_map(|(t, b, f, s)| Op::Add(t, b, f, s)),
            2 => (0..3usize, any::<bool>()).prop_map(|(t, s)| Op::Event(t, s)),
            1 => (0..3usize, 1..50i64).prop_map(|(t, b)| Op::Refused(t, b)),
            1 => Just(Op::BeginFold),
            2 => Just(Op::Step),
            1 => (0..3usize, any::<bool>()).prop_map(|(t, s)| Op::Forget(t, s)),
            1 => Just(Op::Crash),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever the interleaving of writes, refused writes, fold steps, deletions and
        /// crashes, every tenant's values read anywhere are exactly those of a plain model.
        #[test]
        fn counters_match_a_model_through_folds_deletions_and_crashes(ops in proptest::collection::vec(op(), 1..40)) {
            let tenants = [TenantId::generate(), TenantId::generate(), TenantId::generate()];
            let mut model = [Counters::default(); 3];
            let mut db = open();
            for op in ops {
                match op {
                    Op::Add(i, bytes, files, step) => {
                        db.commit(&[], step, |tx| add_tx(tx, &tenants[i], values(bytes, files, 0)).unwrap());
                        model[i].storage_bytes = (model[i].storage_bytes + bytes).max(0);
                        model[i].files = (model[i].files + files).max(0);
                    }
                    Op::Event(i, step) => {
                        let mut seq = 0;
                        db.commit(&[], step, |tx| seq = next_event_seq_tx(tx, &tenants[i]).unwrap());
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
                    Op::Forget(i, step) => {
                        db.commit(&[], step, |tx| {
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
