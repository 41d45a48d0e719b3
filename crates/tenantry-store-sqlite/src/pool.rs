//! Connections: one writer thread that owns the write connection and commits writes in groups
//! (group commit: one fsync for every write queued meanwhile, each write in its own savepoint so
//! one refusal rolls back only itself), and a fixed pool of readers, which WAL lets run beside
//! the writer. Readers are used from tokio's blocking threads, or inline for tiny reads when one
//! is free without waiting.

use crate::error::sql_error;
use rusqlite::{Connection, OpenFlags};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tenantry_core::ids::TenantId;
use tenantry_core::Error;

#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// `FULL` (default): a commit is on disk when answered, even across power loss.
    /// `NORMAL`: survives a process crash, may lose the last commits on power loss.
    pub synchronous_full: bool,
    pub readers: usize,
    /// Bytes of small files kept in memory for reads (0 disables the cache).
    pub cache_bytes: usize,
    /// Dedicated tenants' databases open at once at most (least recently used closed first).
    pub max_open_dedicated: usize,
    /// A tenant's search tail is flushed into a segment once it holds this many documents
    /// ([`DEFAULT_SEARCH_FLUSH_AT`]; tests set 1, so that every write goes through segments).
    pub search_flush_at: usize,
    /// About the most term rows one step of search upkeep reads or writes
    /// ([`crate::search_upkeep::STEP_ROWS`]; tests set 2, so that a merge takes many steps with
    /// other writes between them).
    pub search_step_rows: usize,
}

/// Writes into a tenant's search tail before it is flushed into a segment (`search_upkeep`).
pub(crate) const DEFAULT_SEARCH_FLUSH_AT: usize = 1024;

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            synchronous_full: true,
            readers: 4,
            cache_bytes: 64 << 20,
            max_open_dedicated: 64,
            search_flush_at: DEFAULT_SEARCH_FLUSH_AT,
            search_step_rows: crate::search_upkeep::STEP_ROWS,
        }
    }
}

/// A write queued for the writer thread.
pub(crate) trait WriteJob: Send {
    /// Whose write this is (a hash of the tenant id), for fair grouping; `None` for upkeep.
    fn owner(&self) -> Option<u64>;
    /// Runs inside the group's transaction; `false` if it failed (its savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// After the group's commit (or its failure): answers the waiting caller.
    fn finish(self: Box<Self>, committed: Result<(), Error>);
    /// The error its work failed with, if it ran and failed.
    fn failure(&self) -> Option<&Error> {
        None
    }
}

struct Job<T, F> {
    owner: Option<u64>,
    work: Option<F>,
    result: Option<Result<T, Error>>,
    on_commit: Option<Box<dyn FnOnce() + Send>>,
    reply: tokio::sync::oneshot::Sender<Result<T, Error>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T, Error> + Send> WriteJob for Job<T, F> {
    fn owner(&self) -> Option<u64> {
        self.owner
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(Error::internal("a write panicked")));
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn failure(&self) -> Option<&Error> {
        self.result.as_ref().and_then(|r| r.as_ref().err())
    }

    fn finish(self: Box<Self>, committed: Result<(), Error>) {
        let this = *self;
        let answer = match (committed, this.result) {
            (Ok(()), Some(r)) => {
                if r.is_ok() {
                    // Runs on the writer thread, so it happens even if the caller went away.
                    if let Some(hook) = this.on_commit {
                        hook();
                    }
                }
                r
            }
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Error::internal("write job did not run")),
        };
        let _ = this.reply.send(answer);
    }
}

/// What the writer thread does besides the callers' writes, on the same connection and inside
/// their groups: in this crate, keeping the log tails (`tails`). The pool only schedules it.
pub(crate) trait WriterCompanion: Send + Sync + Sized + 'static {
    /// How long the writer waits without writes before it begins pending work.
    const IDLE_AFTER: Duration;
    /// Work is under way: the writer goes on with it while no write waits.
    fn busy(&self) -> bool;
    /// Nothing is pending: the writer may wait for writes as long as none come.
    fn at_rest(&self) -> bool;
    /// Whether work begins (or goes on) now; `idle`: the writer has nothing else to do.
    fn begin(&self, idle: bool) -> bool;
    /// The work's next step, run as the last job of a group (its pages share the group's commit).
    fn next_job(self: &Arc<Self>) -> Option<Box<dyn WriteJob>>;
    /// Runs `group` on the writer: the jobs of one group (`owners` holds the owner of each tenant
    /// write in it), or an exclusive job (no owners).
    fn around<T>(self: &Arc<Self>, owners: &[u64], group: impl FnOnce() -> T) -> T;
    /// After each commit, before any of its jobs is answered.
    fn after_commit(&self, conn: &Connection);
    /// The pool is being dropped: the writer's last chance to leave the database tidy.
    fn close(&self, conn: &Connection);
}

enum Queued {
    Grouped(Box<dyn WriteJob>),
    /// Runs alone, outside any transaction (purge's checkpoint, shutdown).
    Exclusive(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// Most writes committed together in one transaction.
const MAX_GROUP: usize = 128;
/// While more than one tenant has writes waiting, at most this many of one tenant's go into a
/// group: a tenant flooding the server cannot make every group (and so every other tenant's
/// write) wait for dozens of its own. Alone, a tenant fills whole groups.
const SHARE_WHEN_CONTENDED: usize = 8;

/// A group takes writes only while the time they are expected to hold the writer (see
/// [`WriterTime`]) keeps it within this; its first write is always taken. Quick writes (about
/// 100 µs of the writer's time for a 4 KiB PUT: 128 of them are ~12 ms) fill whole groups as
/// before; a tenant whose writes are slow (a large value of
/// many distinct words to index) commits them one group each, so a write arriving meanwhile waits
/// for one of them, not for a group of them; and while others wait too, their quick writes go in
/// groups of their own, between the slow ones.
const GROUP_TIME_US: f64 = 16_000.0;

/// How long each tenant's writes have held the writer lately: per tenant, a moving average of
/// the time one write took inside its group (savepoint included), measured by the writer.
/// Measured rather than guessed from sizes: a megabyte of one repeated word is cheap to index,
/// a megabyte of distinct words is not.
#[derive(Default)]
struct WriterTime {
    per_write_us: HashMap<u64, f64>,
    /// Set when the last group left a write out for its time: the next starts with the oldest.
    oldest_next: bool,
}

impl WriterTime {
    /// Tenants remembered; past this the memory is dropped and relearnt from the next writes.
    const KEPT: usize = 4096;

    fn expected_us(&self, owner: u64) -> f64 {
        self.per_write_us.get(&owner).copied().unwrap_or(0.0)
    }

    fn record(&mut self, owner: u64, took: std::time::Duration) {
        if self.per_write_us.len() >= Self::KEPT && !self.per_write_us.contains_key(&owner) {
            self.per_write_us.clear();
        }
        let us = took.as_secs_f64() * 1e6;
        let avg = self.per_write_us.entry(owner).or_insert(us);
        *avg = 0.75 * *avg + 0.25 * us;
    }
}

/// Picks the next group from the backlog, oldest first, within each tenant's share (of places
/// and of expected writer time). A tenant's writes keep their order: once one is left for a
/// later group, so are the tenant's writes after it. Stops at an exclusive job, so it runs after
/// everything queued before it.
///
/// When a group leaves a write out for the time it would take, the next group starts with the
/// oldest write waiting, whatever it costs: slow writes and quick ones take turns, so quick
/// writes never wait behind a queue of slow ones, and slow ones are never starved by quick ones.
fn next_group(backlog: &mut VecDeque<Queued>, time: &mut WriterTime) -> Vec<Box<dyn WriteJob>> {
    let mut owners: HashMap<u64, usize> = HashMap::new();
    for q in backlog.iter() {
        match q {
            Queued::Grouped(job) => {
                if let Some(o) = job.owner() {
                    *owners.entry(o).or_default() += 1;
                }
            }
            Queued::Exclusive(_) => break,
        }
    }
    let contended = owners.len() > 1;
    let share = if contended { SHARE_WHEN_CONTENDED } else { MAX_GROUP };
    let oldest_first = std::mem::take(&mut time.oldest_next);
    let (group, left_for_time) = take_group(backlog, time, contended, share, oldest_first);
    if !group.is_empty() || left_for_time == 0 {
        time.oldest_next = !oldest_first && left_for_time > 0;
        return group;
    }
    // Every write waiting is slow: the oldest goes.
    take_group(backlog, time, contended, share, true).0
}

/// One pass of [`next_group`]; also says how many writes were left out for their time.
fn take_group(
    backlog: &mut VecDeque<Queued>,
    time: &WriterTime,
    contended: bool,
    share: usize,
    oldest_first: bool,
) -> (Vec<Box<dyn WriteJob>>, usize) {
    // Places taken per tenant; `usize::MAX` once one of its writes was left out.
    let mut taken: HashMap<u64, usize> = HashMap::new();
    let (mut expected_us, mut left_for_time) = (0.0, 0);
    // Whether a tenant's write is in the group yet (upkeep jobs do not count: the oldest
    // tenant write keeps its turn behind them).
    let mut took_tenant_write = false;
    let mut group = Vec::new();
    let mut kept = VecDeque::with_capacity(backlog.len());
    while let Some(q) = backlog.pop_front() {
        match q {
            Queued::Grouped(job) if group.len() < MAX_GROUP => {
                let within = match job.owner() {
                    None => true,
                    Some(o) => {
                        let n = taken.entry(o).or_default();
                        let cost = time.expected_us(o);
                        let fits =
                            (!took_tenant_write && (oldest_first || !contended)) || expected_us + cost <= GROUP_TIME_US;
                        if *n != usize::MAX && !fits {
                            left_for_time += 1;
                        }
                        if *n < share && fits {
                            *n += 1;
                            expected_us += cost;
                            took_tenant_write = true;
                            true
                        } else {
                            *n = usize::MAX;
                            false
                        }
                    }
                };
                if within {
                    group.push(job);
                } else {
                    kept.push_back(Queued::Grouped(job));
                }
            }
            other => {
                kept.push_back(other);
                kept.extend(backlog.drain(..));
                break;
            }
        }
    }
    *backlog = kept;
    (group, left_for_time)
}

fn writer_loop<C: WriterCompanion>(mut conn: Connection, rx: std::sync::mpsc::Receiver<Queued>, companion: Arc<C>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut backlog: VecDeque<Queued> = VecDeque::new();
    let mut time = WriterTime::default();
    loop {
        if backlog.is_empty() {
            // Work under way goes on while nothing waits; pending work begins after a moment
            // without writes.
            let next = if companion.busy() {
                rx.try_recv().map_err(|e| match e {
                    std::sync::mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    std::sync::mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else if companion.at_rest() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(C::IDLE_AFTER)
            };
            match next {
                Ok(q) => backlog.push_back(q),
                Err(RecvTimeoutError::Timeout) => {
                    if companion.begin(true) {
                        let step = companion.next_job().into_iter().collect();
                        commit_group(&conn, &companion, step, &mut time, &mut backlog);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    companion.close(&conn);
                    return;
                }
            }
        }
        while let Ok(q) = rx.try_recv() {
            backlog.push_back(q);
        }
        if matches!(backlog.front(), Some(Queued::Exclusive(_))) {
            if let Some(Queued::Exclusive(f)) = backlog.pop_front() {
                companion.around(&[], || f(&mut conn));
                companion.after_commit(&conn);
            }
            continue;
        }
        let mut group = next_group(&mut backlog, &mut time);
        if companion.begin(false) {
            group.extend(companion.next_job());
        }
        commit_group(&conn, &companion, group, &mut time, &mut backlog);
    }
}

/// Runs a group in one transaction, tells the companion of the commit, then answers its jobs;
/// the jobs it had no time for go back to the front of the backlog, in their order.
fn commit_group<C: WriterCompanion>(
    conn: &Connection,
    companion: &Arc<C>,
    mut group: Vec<Box<dyn WriteJob>>,
    time: &mut WriterTime,
    backlog: &mut VecDeque<Queued>,
) {
    let mut later = Vec::new();
    let owners: Vec<u64> = group.iter().filter_map(|j| j.owner()).collect();
    let committed = companion.around(&owners, || run_group(conn, &mut group, &mut later, time));
    if committed.is_ok() {
        companion.after_commit(conn);
    }
    for job in group {
        job.finish(committed.clone());
    }
    for job in later.into_iter().rev() {
        backlog.push_front(Queued::Grouped(job));
    }
}

/// Runs a group's jobs in one transaction and commits. Once the group has held the writer for
/// [`GROUP_TIME_US`], the tenants' jobs not yet run are moved to `later` (upkeep still runs):
/// expectations can be wrong (a tenant not seen before, a write slower than the last ones), the
/// clock is not.
fn run_group(
    conn: &Connection,
    group: &mut Vec<Box<dyn WriteJob>>,
    later: &mut Vec<Box<dyn WriteJob>>,
    time: &mut WriterTime,
) -> Result<(), Error> {
    let began = std::time::Instant::now();
    let budget = std::time::Duration::from_secs_f64(GROUP_TIME_US / 1e6);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
    // Each job's time inside the transaction, for the writer's time shares.
    let mut ran = Vec::with_capacity(group.len());
    let mut i = 0;
    while i < group.len() {
        if i > 0 && group[i].owner().is_some() && began.elapsed() >= budget {
            later.push(group.remove(i));
            continue;
        }
        let job = &mut group[i];
        i += 1;
        let started = std::time::Instant::now();
        let step = (|| -> rusqlite::Result<()> {
            conn.execute_batch("SAVEPOINT job")?;
            if job.run(conn) {
                conn.execute_batch("RELEASE job")
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            }
        })();
        ran.push((job.owner(), started.elapsed()));
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            // On a full disk SQLite may roll back the whole transaction, savepoint included:
            // then the group failed for the job's reason, which the whole group is told.
            if let Some(full) = job.failure().filter(|f| f.code == tenantry_core::ErrorCode::StorageFull) {
                return Err(full.clone());
            }
            return Err(sql_error(e));
        }
    }
    let committing = std::time::Instant::now();
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(sql_error(e));
    }
    // The commit writes what the jobs changed: its time is shared out in proportion to theirs.
    let commit = committing.elapsed();
    let total: f64 = ran.iter().map(|(_, d)| d.as_secs_f64()).sum::<f64>().max(1e-9);
    for (owner, d) in &ran {
        if let Some(o) = owner {
            time.record(*o, *d + commit.mul_f64(d.as_secs_f64() / total));
        }
    }
    tracing::debug!(
        jobs = group.len(),
        run_us = (committing - began).as_micros() as u64,
        commit_us = commit.as_micros() as u64,
        "group committed"
    );
    Ok(())
}

/// One database file: its writer thread (which runs `C`'s work too), its readers and its
/// checkpointer.
pub(crate) struct Pool<C> {
    pub path: PathBuf,
    /// Tells the checkpoint thread to end.
    stop: Arc<AtomicBool>,
    // mpsc::Sender is Sync: callers on any thread queue without a lock.
    writer: std::sync::mpsc::Sender<Queued>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// What the writer does besides the writes.
    companion: Arc<C>,
}

impl<C> Drop for Pool<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A plain connection to a database file for the one-off work of opening.
pub(crate) fn plain(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path).map_err(sql_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql_error)?;
    Ok(conn)
}

/// A tenant's key for the writer's fair grouping (a write's owner).
pub(crate) fn owner_of(tenant: &TenantId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tenant.hash(&mut h);
    h.finish()
}

/// Runs a read on one of `pool`'s readers, on the blocking pool.
pub(crate) async fn read_on<C: WriterCompanion, T: Send + 'static>(
    pool: Arc<Pool<C>>,
    f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(move || f(&pool.reader()))
        .await
        .map_err(|e| Error::internal(format!("store task failed: {e}")))?
}

/// How often the checkpoint thread copies committed WAL frames back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs PASSIVE checkpoints beside the writer: they never block it (nor readers), and keep the
/// WAL short so the writer's safety-net checkpoint does not fire on a commit's path.
fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("background checkpoint failed (the writer's own will run): {e}");
        }
    }
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
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves no half-done transaction (rusqlite rolls back on
    // drop), so the connection is still good to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C: WriterCompanion> Pool<C> {
    /// Opens (creating if needed) the database at `path`, migrated to the current schema, with
    /// the writer's companion made by `companion` on the write connection.
    pub fn open(
        path: &Path,
        opts: &OpenOptions,
        companion: impl FnOnce(&Connection) -> Result<C, Error>,
    ) -> Result<Pool<C>, Error> {
        let mut writer = Connection::open(path).map_err(sql_error)?;
        writer.pragma_update(None, "journal_mode", "WAL").map_err(sql_error)?;
        // Checkpoints are the checkpointer thread's job (below), so the writer never stalls copying
        // the WAL back into the database mid-commit; this is only the safety net (256 MiB).
        writer.pragma_update(None, "wal_autocheckpoint", 65536).map_err(sql_error)?;
        configure(&writer, opts).map_err(sql_error)?;
        // The writer copies every page it changes into its own cache anyway, and what it touched
        // through a memory map stayed in the server's RSS (most of it, after creating 10,000
        // tenants: BENCHMARKS.md, session 10); its cache is bounded.
        writer.pragma_update(None, "mmap_size", 0).map_err(sql_error)?;
        crate::schema::migrate_file(&mut writer, path)?;
        let mut readers = Vec::new();
        for _ in 0..opts.readers.max(1) {
            let r =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(sql_error)?;
            configure(&r, opts).map_err(sql_error)?;
            readers.push(Mutex::new(r));
        }
        let companion = Arc::new(companion(&writer)?);
        let (tx, rx) = std::sync::mpsc::channel();
        let writers_companion = companion.clone();
        std::thread::Builder::new()
            .name("tenantry-writer".into())
            .spawn(move || writer_loop(writer, rx, writers_companion))
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        let checkpointer = Connection::open(path).map_err(sql_error)?;
        configure(&checkpointer, opts).map_err(sql_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("tenantry-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped))
            .map_err(|e| Error::internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Pool { path: path.to_owned(), writer: tx, readers, next_reader: AtomicUsize::new(0), stop, companion })
    }

    /// What the writer does besides the writes.
    pub fn companion(&self) -> &Arc<C> {
        &self.companion
    }

    fn enqueue(&self, q: Queued) -> Result<(), Error> {
        self.writer.send(q).map_err(|_| Error::internal("the writer thread has stopped"))
    }

    /// Queues `work` to run in the next group transaction; the answer comes after the commit.
    /// `on_commit` runs on the writer thread once the work is durable.
    /// `owner` (a hash of the tenant id) lets the writer share groups fairly between tenants.
    pub async fn write<T: Send + 'static>(
        &self,
        owner: Option<u64>,
        work: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        on_commit: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<T, Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.enqueue(Queued::Grouped(Box::new(Job { owner, work: Some(work), result: None, on_commit, reply })))?;
        answer.await.map_err(|_| Error::internal("the writer thread dropped a write"))?
    }

    /// Runs `work` alone on the write connection, outside any transaction.
    pub async fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.enqueue(Queued::Exclusive(Box::new(move |conn| {
            let _ = reply.send(work(conn));
        })))?;
        answer.await.map_err(|_| Error::internal("the writer thread dropped a write"))?
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer with nothing to do besides the writes.
    struct Alone;

    impl WriterCompanion for Alone {
        const IDLE_AFTER: Duration = Duration::from_secs(1);
        fn busy(&self) -> bool {
            false
        }
        fn at_rest(&self) -> bool {
            true
        }
        fn begin(&self, _idle: bool) -> bool {
            false
        }
        fn next_job(self: &Arc<Self>) -> Option<Box<dyn WriteJob>> {
            None
        }
        fn around<T>(self: &Arc<Self>, _owners: &[u64], group: impl FnOnce() -> T) -> T {
            group()
        }
        fn after_commit(&self, _conn: &Connection) {}
        fn close(&self, _conn: &Connection) {}
    }

    struct Probe(Option<u64>);

    impl WriteJob for Probe {
        fn owner(&self) -> Option<u64> {
            self.0
        }
        fn run(&mut self, _conn: &Connection) -> bool {
            true
        }
        fn finish(self: Box<Self>, _committed: Result<(), Error>) {}
    }

    fn backlog(owners: &[Option<u64>]) -> VecDeque<Queued> {
        owners.iter().map(|o| Queued::Grouped(Box::new(Probe(*o)))).collect()
    }

    fn owners(group: &[Box<dyn WriteJob>]) -> Vec<Option<u64>> {
        group.iter().map(|j| j.owner()).collect()
    }

    #[test]
    fn a_flooding_tenant_gets_a_share_of_each_group_while_others_wait() {
        let mut queue = backlog(&[[Some(1); 20].as_slice(), &[Some(2), None, Some(2)]].concat());
        let group = next_group(&mut queue, &mut WriterTime::default());
        let got = owners(&group);
        assert_eq!(got.iter().filter(|o| **o == Some(1)).count(), SHARE_WHEN_CONTENDED);
        assert_eq!(got.iter().filter(|o| **o == Some(2)).count(), 2);
        assert_eq!(got.iter().filter(|o| o.is_none()).count(), 1);
        assert_eq!(queue.len(), 20 - SHARE_WHEN_CONTENDED, "the rest of tenant 1 waits, in order");
        // Alone, a tenant fills whole groups.
        let mut queue = backlog(&[Some(1); 20]);
        assert_eq!(next_group(&mut queue, &mut WriterTime::default()).len(), 20);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_tenant_whose_writes_hold_the_writer_long_gets_groups_of_its_own() {
        let mut time = WriterTime::default();
        let ms = std::time::Duration::from_millis;
        time.record(1, ms(60));
        time.record(2, std::time::Duration::from_micros(300));
        // Tenant 1's slow writes first in the queue, tenant 2's quick ones behind them: the quick
        // ones go first, then slow and quick groups take turns.
        let mut queue = backlog(&[Some(1), Some(1), Some(2), Some(2), Some(1), Some(2), None, Some(2)]);
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(2), Some(2), Some(2), None, Some(2)]);
        queue.extend(backlog(&[Some(2)]));
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(1)], "then the oldest, slow as it is");
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(2)], "the quick one that came meanwhile");
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(1)], "alone, still one slow write a group");
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(1)]);
        assert!(queue.is_empty());
        // Upkeep at the front does not take the oldest slow write's turn.
        let mut queue = backlog(&[Some(2), Some(1), Some(2)]);
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(2), Some(2)]);
        queue.push_front(Queued::Grouped(Box::new(Probe(None))));
        queue.extend(backlog(&[Some(2)]));
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [None, Some(1)], "its turn, behind upkeep");
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(2)]);
        // Slow writes of two tenants, nothing quick: one at a time, oldest first.
        time.record(3, ms(60));
        let mut queue = backlog(&[Some(1), Some(3), Some(1)]);
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(1)]);
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(3)]);
        assert_eq!(owners(&next_group(&mut queue, &mut time)), [Some(1)]);
        // Quick writes: a tenant alone fills whole groups, as before.
        let mut queue = backlog(&[Some(2); 20]);
        assert_eq!(next_group(&mut queue, &mut time).len(), 20);
        // The average follows what writes take now.
        for _ in 0..40 {
            time.record(1, std::time::Duration::from_micros(100));
        }
        assert!(time.expected_us(1) < 200.0, "{}", time.expected_us(1));
    }

    /// Takes `ms` to run; says which it was.
    struct Slow(Option<u64>, u64, std::sync::mpsc::Sender<u64>);

    impl WriteJob for Slow {
        fn owner(&self) -> Option<u64> {
            self.0
        }
        fn run(&mut self, _conn: &Connection) -> bool {
            std::thread::sleep(std::time::Duration::from_millis(self.1));
            let _ = self.2.send(self.0.unwrap_or(0));
            true
        }
        fn finish(self: Box<Self>, _committed: Result<(), Error>) {}
    }

    #[test]
    fn a_group_that_took_its_time_leaves_the_tenants_jobs_it_did_not_reach_for_later() {
        let conn = Connection::open_in_memory().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut group: Vec<Box<dyn WriteJob>> = vec![
            Box::new(Slow(Some(1), 10, tx.clone())),
            Box::new(Slow(Some(2), 10, tx.clone())),
            Box::new(Slow(Some(3), 0, tx.clone())),
            Box::new(Slow(None, 0, tx.clone())),
            Box::new(Slow(Some(4), 0, tx.clone())),
        ];
        let (mut later, mut time) = (Vec::new(), WriterTime::default());
        run_group(&conn, &mut group, &mut later, &mut time).unwrap();
        drop(tx);
        let ran: Vec<u64> = rx.try_iter().collect();
        // 10 + 10 ms pass the 16 ms budget: tenants 3 and 4 wait, upkeep runs.
        assert_eq!(ran, [1, 2, 0]);
        assert_eq!(owners(&group), [Some(1), Some(2), None]);
        assert_eq!(owners(&later), [Some(3), Some(4)]);
        assert!(time.expected_us(1) >= 10_000.0 && time.expected_us(3) == 0.0);
        // The first job always runs, however long the one before took.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut group: Vec<Box<dyn WriteJob>> = vec![Box::new(Slow(Some(5), 30, tx))];
        run_group(&conn, &mut group, &mut later, &mut time).unwrap();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [5]);
    }

    #[tokio::test]
    async fn a_full_disk_refuses_the_write_as_storage_full_changes_nothing_and_writes_resume_once_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::open(&dir.path().join("db.sqlite"), &OpenOptions::default(), |_| Ok(Alone)).unwrap();
        // SQLite's own page limit answers exactly as a full disk does (SQLITE_FULL).
        let cap = |room: i64| {
            move |c: &mut Connection| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(sql_error)?;
                c.pragma_update(None, "max_page_count", pages + room).map_err(sql_error)
            }
        };
        pool.exclusive(cap(2)).await.unwrap();
        let insert = |c: &Connection| {
            c.execute("INSERT INTO file_content (tenant_id, content) VALUES ('t', zeroblob(200000))", [])
                .map_err(sql_error)
        };
        let err = pool.write(None, insert, None).await.unwrap_err();
        assert_eq!((err.code, err.code.as_str()), (tenantry_core::ErrorCode::StorageFull, "storage_full"), "{err}");
        let rows =
            |p: &Pool<Alone>| p.reader().query_row("SELECT count(*) FROM file_content", [], |r| r.get::<_, i64>(0));
        assert_eq!(rows(&pool).unwrap(), 0);
        pool.exclusive(cap(1000)).await.unwrap();
        assert_eq!(pool.write(None, insert, None).await.unwrap(), 1);
        assert_eq!(rows(&pool).unwrap(), 1);
    }

    #[test]
    fn a_group_stops_at_an_exclusive_job_so_it_runs_after_everything_before_it() {
        let mut queue = backlog(&[Some(1), Some(2)]);
        queue.push_back(Queued::Exclusive(Box::new(|_| {})));
        queue.extend(backlog(&[Some(3)]));
        assert_eq!(owners(&next_group(&mut queue, &mut WriterTime::default())), [Some(1), Some(2)]);
        assert!(matches!(queue.front(), Some(Queued::Exclusive(_))));
        assert_eq!(queue.len(), 2);
    }
}
