//! What other nodes on the same database commit and count, heard through LISTEN/NOTIFY.
//!
//! Three channels, each payload led by the sending node's name where it matters:
//! - `tenantry_directory`: a trigger (migration 1, `FEED_SQL`) notifies the tenant's id at the
//!   commit of every change to a row of `tenants` or `keys` (rare: a transaction that notifies
//!   holds a cluster-wide lock while it commits, so writes of data never do); a key's
//!   revocation also as `<tenant> <key> <revoked_at>` (first), which a node applies without
//!   reading (a node that does not know that form ignores it and re-reads on the plain one);
//!   triggers of migration 3 (`PEOPLE_SQL`) notify a tenant's id when its memberships change, and
//!   a user's id (`usr_...`) when the user or their sessions do: the node re-reads that person;
//! - `tenantry_events`: `<node> <tenant>:<seqs> ...`, the events this node committed, announced
//!   by the node itself at most every few milliseconds after their commits (`announce_events`),
//!   from its pool, outside the writes' transactions;
//! - `tenantry_activity`: `<node> <tenant>:<admitted>:<calls> ...`, what it counted per tenant
//!   (every 100 ms), so rate limits and monthly allowances hold for the cluster.
//!
//! Each node's pool connects with an application name of its own (`tenantry-<random>`), its feed
//! connection as `<that>-feed`. The feed connection, outside the pool, LISTENs on all three:
//! - a directory notice (its own node's too) goes to the followers, which re-read the tenant;
//! - other nodes' events of a tenant some sink [follows](EventSink::follows) are read back by seq
//!   from the database, once per batch of notices, and handed to those sinks;
//! - other nodes' counts go to the activity followers;
//! - when the connection is lost (or stops answering a ping), it reconnects with backoff and then
//!   tells followers and sinks that they may have missed changes (a full re-read).
//!
//! The first LISTEN is in place before [`Feed::start`] returns, so the directory a node loads
//! after opening the store misses no change. A node that dies between an event's commit and its
//! announcement leaves other nodes' streams without it until the tenant's next event, whose gap
//! they read from the store.

use crate::error::{describe, pg_error};
use crate::places::Places;
use crate::store::{begin, commit};
use crate::PgDatabase;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tenantry_core::activity::{ActivityFollower, ActivityShare};
use tenantry_core::directory::DirectoryFollower;
use tenantry_core::events::{Event, EventSink};
use tenantry_core::ids::{KeyId, TenantId, UserId};
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Notification};

pub(crate) const DIRECTORY_CHANNEL: &str = "tenantry_directory";
pub(crate) const EVENTS_CHANNEL: &str = "tenantry_events";
pub(crate) const ACTIVITY_CHANNEL: &str = "tenantry_activity";
/// Largest payload of one announcement (PostgreSQL takes up to 8000 bytes).
const MAX_PAYLOAD: usize = 7900;

/// The triggers that notify (migration 1; the keys' is replaced by migration 2).
pub(crate) const FEED_SQL: &str = r#"
CREATE FUNCTION tenantry_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM pg_notify('tenantry_directory', to_jsonb(changed) ->> TG_ARGV[0]);
    RETURN NULL;
END $$;
CREATE TRIGGER directory_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenantry_directory_changed('id');
CREATE TRIGGER directory_changed AFTER INSERT OR UPDATE OR DELETE ON keys
    FOR EACH ROW EXECUTE FUNCTION tenantry_directory_changed('tenant_id');
"#;

/// Migration 2: a key's revocation also notified as `<tenant> <key> <revoked_at>` (before the
/// plain notice, which every node re-reads on), and the latest event seqs of many tenants in
/// one statement for the straggler check ([`FEED_FUNCTIONS`]).
pub(crate) const FEED_SQL_2: &str = r#"
CREATE OR REPLACE FUNCTION tenantry_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
        PERFORM pg_notify('tenantry_directory', NEW.tenant_id || ' ' || NEW.id || ' ' || NEW.revoked_at);
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('tenantry_directory', OLD.tenant_id);
    ELSE
        PERFORM pg_notify('tenantry_directory', NEW.tenant_id);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS directory_changed ON keys;
CREATE TRIGGER directory_changed AFTER INSERT OR UPDATE OR DELETE ON keys
    FOR EACH ROW EXECUTE FUNCTION tenantry_key_changed();
CREATE FUNCTION tenantry_event_heads(tenants text[]) RETURNS TABLE (tenant_id text, last_event_seq bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT u.tenant_id, u.last_event_seq FROM tenant_usage u WHERE u.tenant_id = ANY (tenants) $$;
REVOKE EXECUTE ON FUNCTION tenantry_event_heads(text[]) FROM PUBLIC;
"#;

/// The feed's functions the server's role may execute.
pub(crate) const FEED_FUNCTIONS: &[&str] = &["tenantry_event_heads(text[])"];

/// How often the feed's connection must answer a trivial query to count as alive.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Backoff between reconnection attempts.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long a node gathers its committed events before announcing them: a notice's commit
/// takes a cluster-wide lock, so this bounds how many such commits each node makes.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(5);
/// How long reading other nodes' events back may take before the sinks are told instead to read
/// what they missed themselves (the feed must not stall behind a busy pool).
const READ_BACK_LIMIT: Duration = Duration::from_secs(2);
/// How often the tenants streamed here are checked for events no node announced, and for how
/// many checks a tenant's seq must stand still before its streams re-read it.
const STRAGGLERS_EVERY: Duration = Duration::from_secs(1);
const STILL_FOR: u32 = 6;
/// Every how many straggler checks the dedicated tenants' directory entries are re-read.
const REREAD_DEDICATED_EVERY: u64 = 30;

/// Whom the store tells about commits: the event sinks (its own commits and other nodes') and
/// the directory followers.
#[derive(Default)]
pub(crate) struct Listeners {
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    followers: RwLock<Vec<Arc<dyn DirectoryFollower>>>,
    activity: RwLock<Vec<Arc<dyn ActivityFollower>>>,
    /// This node's committed events not yet announced: seqs per tenant.
    unannounced: std::sync::Mutex<BTreeMap<TenantId, Vec<u64>>>,
    /// Per tenant, the highest seq handed to the sinks (this node's own, or heard of others).
    handed: std::sync::Mutex<HashMap<TenantId, u64>>,
    committed: tokio::sync::Notify,
}

impl Listeners {
    pub(crate) fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks.write().unwrap_or_else(|e| e.into_inner()).push(sink);
    }

    pub(crate) fn add_follower(&self, follower: Arc<dyn DirectoryFollower>) {
        self.followers.write().unwrap_or_else(|e| e.into_inner()).push(follower);
    }

    pub(crate) fn add_activity_follower(&self, follower: Arc<dyn ActivityFollower>) {
        self.activity.write().unwrap_or_else(|e| e.into_inner()).push(follower);
    }

    fn counted_elsewhere(&self, shares: &[ActivityShare]) {
        for f in self.activity.read().unwrap_or_else(|e| e.into_inner()).iter() {
            f.counted_elsewhere(shares);
        }
    }

    /// Hands this node's committed events to the sinks, and queues them to be announced.
    pub(crate) fn publish(&self, tenant: &TenantId, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        for sink in self.sinks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            sink.published(tenant, events);
        }
        self.handed_up_to(tenant, events);
        let mut unannounced = self.unannounced.lock().unwrap_or_else(|e| e.into_inner());
        unannounced.entry(tenant.clone()).or_default().extend(events.iter().map(|e| e.seq));
        self.committed.notify_one();
    }

    fn handed_up_to(&self, tenant: &TenantId, events: &[Event]) {
        let last = events.iter().map(|e| e.seq).max().unwrap_or(0);
        let mut handed = self.handed.lock().unwrap_or_else(|e| e.into_inner());
        let at = handed.entry(tenant.clone()).or_insert(0);
        *at = (*at).max(last);
    }

    fn handed(&self, tenant: &TenantId) -> Option<u64> {
        self.handed.lock().unwrap_or_else(|e| e.into_inner()).get(tenant).copied()
    }

    /// The tenants some sink follows.
    fn followed(&self) -> BTreeSet<TenantId> {
        self.sinks.read().unwrap_or_else(|e| e.into_inner()).iter().flat_map(|s| s.followed()).collect()
    }

    fn take_unannounced(&self) -> BTreeMap<TenantId, Vec<u64>> {
        std::mem::take(&mut *self.unannounced.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what could not be announced, before anything queued since.
    fn put_back(&self, mut taken: BTreeMap<TenantId, Vec<u64>>) {
        let mut unannounced = self.unannounced.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, seqs) in std::mem::take(&mut *unannounced) {
            taken.entry(tenant).or_default().extend(seqs);
        }
        *unannounced = taken;
    }

    /// The sinks that want `tenant`'s events from other nodes.
    fn following(&self, tenant: &TenantId) -> Vec<Arc<dyn EventSink>> {
        self.sinks.read().unwrap_or_else(|e| e.into_inner()).iter().filter(|s| s.follows(tenant)).cloned().collect()
    }

    fn tenant_changed(&self, tenant: &TenantId) {
        for f in self.followers.read().unwrap_or_else(|e| e.into_inner()).iter() {
            f.tenant_changed(tenant);
        }
    }

    fn key_revoked(&self, tenant: &TenantId, key: &KeyId, at: Timestamp) {
        for f in self.followers.read().unwrap_or_else(|e| e.into_inner()).iter() {
            f.key_revoked(tenant, key, at);
        }
    }

    fn person_changed(&self, user: &UserId) {
        for f in self.followers.read().unwrap_or_else(|e| e.into_inner()).iter() {
            f.person_changed(user);
        }
    }

    fn missed(&self) {
        for f in self.followers.read().unwrap_or_else(|e| e.into_inner()).iter() {
            f.resync();
        }
        self.events_missed();
    }

    fn events_missed(&self) {
        for sink in self.sinks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            sink.missed();
        }
    }
}

/// The running feed of a node: its listening task, its announcing task and the one that finds
/// events never announced; all stop when it is dropped (`PgStore::close` drops it).
pub(crate) struct Feed {
    tasks: [tokio::task::JoinHandle<()>; 3],
}

impl Drop for Feed {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Feed {
    /// Connects and LISTENs (an error if the first connection fails), then follows in a task;
    /// announces this node's events in another.
    pub(crate) async fn start(
        mut target: crate::Target,
        node: String,
        places: Arc<Places>,
        listeners: Arc<Listeners>,
    ) -> Result<Feed> {
        let (ready, started) = oneshot::channel();
        let announcer = tokio::spawn(announce_events(node.clone(), places.shared().clone(), listeners.clone()));
        let stragglers = tokio::spawn(find_stragglers(places.clone(), listeners.clone()));
        target.config.application_name(format!("{node}-feed"));
        let feed = Following { target, node, places, listeners };
        let follower = tokio::spawn(feed.run(ready));
        let tasks = [follower, announcer, stragglers];
        match started.await {
            Ok(Ok(())) => Ok(Feed { tasks }),
            Ok(Err(e)) => {
                drop(Feed { tasks });
                Err(e)
            }
            Err(_) => Err(Error::internal("the database feed stopped before it started")),
        }
    }
}

/// Finds events a node committed and never announced (it stopped in between): every
/// [`STRAGGLERS_EVERY`], the store's latest seq of every tenant a sink follows is read (one
/// statement, `tenantry_event_heads`); if a tenant's has
/// stood still for [`STILL_FOR`] checks (longer than any announcement takes, retries and read-back
/// included) and the sinks were handed less than it, they are told to re-read the tenant's events.
/// (While a tenant's seq moves, its later events reach the sinks, which read the gap before them.)
/// A tenant first followed is checked so once, whatever it was handed. A round whose read fails
/// (the database away) is skipped: the next round tries again.
async fn find_stragglers(places: Arc<Places>, listeners: Arc<Listeners>) {
    // Per followed tenant: the latest seq read, and for how many checks in a row.
    let mut seen: HashMap<TenantId, (u64, u32)> = HashMap::new();
    let mut every = tokio::time::interval(STRAGGLERS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        every.tick().await;
        ticks += 1;
        if ticks.is_multiple_of(REREAD_DEDICATED_EVERY) {
            // A dedicated tenant's key changes are announced by the node that made them, after
            // its commit (`tenants`): one that stopped in between is made up for here.
            for tenant in places.dedicated_tenants() {
                listeners.tenant_changed(&tenant);
            }
        }
        // Tenants found not where this node routed them: their routes are re-read.
        for tenant in places.take_stale() {
            listeners.tenant_changed(&tenant);
        }
        let followed = listeners.followed();
        seen.retain(|t, _| followed.contains(t));
        listeners.handed.lock().unwrap_or_else(|e| e.into_inner()).retain(|t, _| followed.contains(t));
        let heads = match tokio::time::timeout(READ_BACK_LIMIT, event_heads(&places, &followed)).await {
            Ok(Ok(heads)) => heads,
            Ok(Err(e)) => {
                // The database away: the feed's own reconnection says so, once.
                tracing::debug!("could not read the event seqs of the tenants streamed here: {}", e.message);
                continue;
            }
            Err(_) => continue,
        };
        for tenant in followed {
            // A tenant with no row (purged) has nothing to re-read.
            let Some(&latest) = heads.get(&tenant) else { continue };
            let still = match seen.get(&tenant) {
                Some((seq, checks)) if *seq == latest => checks + 1,
                _ => 1,
            };
            seen.insert(tenant.clone(), (latest, still));
            if still >= STILL_FOR && listeners.handed(&tenant).is_none_or(|h| h < latest) {
                tracing::info!("{tenant}'s events up to seq {latest} were not all announced: its streams re-read them");
                for sink in listeners.following(&tenant) {
                    sink.missed_of(&tenant);
                }
                let mut handed = listeners.handed.lock().unwrap_or_else(|e| e.into_inner());
                let at = handed.entry(tenant).or_insert(0);
                *at = (*at).max(latest);
            }
        }
    }
}

/// The latest event seq of each of `tenants`, in one statement (the owner's
/// `tenantry_event_heads`: a seq is all it reads of each).
async fn event_heads(places: &Places, tenants: &BTreeSet<TenantId>) -> Result<HashMap<TenantId, u64>> {
    let (dedicated, shared): (Vec<&TenantId>, Vec<&TenantId>) = tenants.iter().partition(|t| places.is_dedicated(t));
    let mut heads = HashMap::new();
    // The shared tenants' in one statement, each dedicated tenant's in its own database.
    let mut asks: Vec<(PgDatabase, Vec<&str>)> = Vec::new();
    if !shared.is_empty() {
        asks.push((places.shared().clone(), shared.iter().map(|t| t.as_str()).collect()));
    }
    for tenant in dedicated {
        asks.push((places.db_of(tenant).await?, vec![tenant.as_str()]));
    }
    for (db, ids) in asks {
        let conn = db.client().await?;
        let st = conn
            .prepare_cached("SELECT tenant_id, last_event_seq FROM tenantry_event_heads($1)")
            .await
            .map_err(pg_error)?;
        let rows = conn.query(&st, &[&ids]).await.map_err(pg_error)?;
        heads.extend(
            rows.iter().filter_map(|r| Some((TenantId::parse(r.get::<_, &str>(0))?, r.get::<_, i64>(1).max(0) as u64))),
        );
    }
    Ok(heads)
}

/// Announces this node's committed events to the others, gathered over [`ANNOUNCE_EVERY`]; what
/// cannot be sent (the database away) is kept for the next try.
async fn announce_events(node: String, db: PgDatabase, listeners: Arc<Listeners>) {
    loop {
        listeners.committed.notified().await;
        tokio::time::sleep(ANNOUNCE_EVERY).await;
        let taken = listeners.take_unannounced();
        if taken.is_empty() {
            continue;
        }
        let items: Vec<String> = taken.iter().map(|(tenant, seqs)| format!("{tenant}:{}", runs(seqs))).collect();
        let sent = async {
            let conn = db.client().await?;
            for payload in payloads(&node, &items) {
                conn.execute("SELECT pg_notify($1, $2)", &[&EVENTS_CHANNEL, &payload]).await.map_err(pg_error)?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = sent.await {
            tracing::warn!("could not announce this node's events to the others (trying again): {}", e.message);
            listeners.put_back(taken);
            listeners.committed.notify_one();
            tokio::time::sleep(RETRY_MAX).await;
        }
    }
}

struct Following {
    target: crate::Target,
    node: String,
    places: Arc<Places>,
    listeners: Arc<Listeners>,
}

/// One connection that LISTENs: its notifications, and the client that keeps it open.
struct Listening {
    client: tokio_postgres::Client,
    notifications: mpsc::UnboundedReceiver<Notification>,
}

impl Following {
    async fn run(self, ready: oneshot::Sender<Result<()>>) {
        let mut ready = Some(ready);
        let mut retry = RETRY_FIRST;
        loop {
            match self.listen().await {
                Ok(listening) => {
                    retry = RETRY_FIRST;
                    match ready.take() {
                        Some(ready) => {
                            let _ = ready.send(Ok(()));
                        }
                        None => {
                            tracing::info!("the database feed is back: re-reading the directory");
                            self.listeners.missed();
                        }
                    }
                    self.follow(listening).await;
                    tracing::warn!("lost the database feed of other nodes' changes; reconnecting");
                }
                Err(e) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(e));
                        return;
                    }
                    tracing::warn!("cannot reconnect the database feed yet: {}", e.message);
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    async fn listen(&self) -> Result<Listening> {
        let (client, mut connection) = self
            .target
            .config
            .connect(self.target.tls.clone())
            .await
            .map_err(|e| Error::internal(format!("cannot connect the database feed: {}", describe(&e))))?;
        let (tx, notifications) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!("the database feed's connection failed: {}", describe(&e));
                        return;
                    }
                    None => return,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {DIRECTORY_CHANNEL}; LISTEN {EVENTS_CHANNEL}; LISTEN {ACTIVITY_CHANNEL};"))
            .await
            .map_err(pg_error)?;
        Ok(Listening { client, notifications })
    }

    /// Hands on notifications until the connection ends or stops answering.
    async fn follow(&self, mut listening: Listening) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                first = listening.notifications.recv() => {
                    let Some(first) = first else { return };
                    let mut batch = vec![first];
                    while let Ok(n) = listening.notifications.try_recv() {
                        batch.push(n);
                    }
                    self.hand_on(batch).await;
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(PING_EVERY, listening.client.simple_query("")).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }

    async fn hand_on(&self, batch: Vec<Notification>) {
        let mut changed = BTreeSet::new();
        // Per tenant, the seqs other nodes wrote.
        let mut events: BTreeMap<TenantId, Vec<i64>> = BTreeMap::new();
        let mut counted = Vec::new();
        let mut revoked = Vec::new();
        let mut people = BTreeSet::new();
        for n in &batch {
            match n.channel() {
                ACTIVITY_CHANNEL => {
                    if let Some((node, shares)) = n.payload().split_once(' ') {
                        if node != self.node {
                            counted.extend(shares.split(' ').filter_map(parse_share));
                        }
                    }
                }
                DIRECTORY_CHANNEL => {
                    if let Some(user) = UserId::parse(n.payload()) {
                        people.insert(user);
                        continue;
                    }
                    let mut words = n.payload().split(' ');
                    let Some(t) = words.next().and_then(TenantId::parse) else { continue };
                    let key = words.next().and_then(KeyId::parse);
                    if let (Some(key), Some(at)) = (key, words.next().and_then(|a| a.parse::<i64>().ok())) {
                        revoked.push((t.clone(), key, Timestamp::from_millis(at)));
                    }
                    changed.insert(t);
                }
                EVENTS_CHANNEL => {
                    let Some((node, items)) = n.payload().split_once(' ') else { continue };
                    if node == self.node {
                        continue; // this node's own, handed to the sinks after their commit
                    }
                    for (tenant, seqs) in items.split(' ').filter_map(parse_events) {
                        events.entry(tenant).or_default().extend(seqs);
                    }
                }
                _ => {}
            }
        }
        // A revocation first (no read needed: it only takes a right away), then the re-reads.
        for (tenant, key, at) in &revoked {
            self.listeners.key_revoked(tenant, key, *at);
        }
        for tenant in &changed {
            self.listeners.tenant_changed(tenant);
        }
        for user in &people {
            self.listeners.person_changed(user);
        }
        if !counted.is_empty() {
            self.listeners.counted_elsewhere(&counted);
        }
        for (tenant, mut seqs) in events {
            let following = self.listeners.following(&tenant);
            if following.is_empty() {
                continue;
            }
            seqs.sort_unstable();
            seqs.dedup();
            match tokio::time::timeout(READ_BACK_LIMIT, self.read_events(&tenant, &seqs)).await {
                Ok(Ok(read)) if !read.is_empty() => {
                    following.iter().for_each(|s| s.published(&tenant, &read));
                    self.listeners.handed_up_to(&tenant, &read);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    // The sinks read the store for what they have not heard, by seq.
                    tracing::warn!("could not read another node's events of {tenant}: {}", e.message);
                    self.listeners.events_missed();
                }
                Err(_) => {
                    tracing::warn!("reading another node's events of {tenant} took too long");
                    self.listeners.events_missed();
                }
            }
        }
    }

    /// `tenant`'s events with these seqs (sorted), in order.
    async fn read_events(&self, tenant: &TenantId, seqs: &[i64]) -> Result<Vec<Event>> {
        let mut conn = self.places.db_of(tenant).await?.client().await?;
        let tx = begin(&mut conn, tenant).await?;
        let sql = format!(
            "SELECT {} FROM events WHERE tenant_id = $1 AND seq = ANY($2) ORDER BY seq",
            crate::events::EVENT_COLUMNS
        );
        let rows = tx.query(&sql, &[&tenant.as_str(), &seqs]).await.map_err(pg_error)?;
        commit(tx).await?;
        Ok(rows.iter().map(crate::events::event_from_row).collect())
    }
}

/// Seqs as runs: `3-5,9`.
fn runs(seqs: &[u64]) -> String {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        out.push(if i == j { sorted[i].to_string() } else { format!("{}-{}", sorted[i], sorted[j]) });
        i = j + 1;
    }
    out.join(",")
}

/// Most seqs one announced item may stand for (a run `a-b` is cheap to send, not to read back).
const MAX_SEQS_PER_ITEM: u64 = 100_000;

/// `<tenant>:<runs>`.
fn parse_events(item: &str) -> Option<(TenantId, Vec<i64>)> {
    let (tenant, runs) = item.split_once(':')?;
    let tenant = TenantId::parse(tenant)?;
    let mut seqs = Vec::new();
    for run in runs.split(',') {
        let (from, to) = match run.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let n = run.parse::<u64>().ok()?;
                (n, n)
            }
        };
        if to < from || to - from >= MAX_SEQS_PER_ITEM || seqs.len() as u64 + (to - from) >= MAX_SEQS_PER_ITEM {
            return None;
        }
        seqs.extend((from..=to).map(|s| s as i64));
    }
    Some((tenant, seqs))
}

/// `<tenant>:<admitted>:<calls>`.
fn parse_share(s: &str) -> Option<ActivityShare> {
    let mut parts = s.split(':');
    let tenant = TenantId::parse(parts.next()?)?;
    let admitted = parts.next()?.parse().ok()?;
    let calls = parts.next()?.parse().ok()?;
    Some(ActivityShare { tenant, admitted, calls })
}

/// The announcements of `shares` by `node`: as few payloads as fit.
pub(crate) fn announcements(node: &str, shares: &[ActivityShare]) -> Vec<String> {
    let items: Vec<String> = shares.iter().map(|s| format!("{}:{}:{}", s.tenant, s.admitted, s.calls)).collect();
    payloads(node, &items)
}

/// `node` followed by the items, space-separated, in as few payloads as fit in a notice.
fn payloads(node: &str, items: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = node.to_owned();
    for item in items {
        if current.len() + 1 + item.len() > MAX_PAYLOAD && current.len() > node.len() {
            out.push(std::mem::replace(&mut current, node.to_owned()));
        }
        current.push(' ');
        current.push_str(item);
    }
    if current.len() > node.len() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_fit_a_notification_and_parse_back() {
        let shares: Vec<ActivityShare> =
            (0..1000).map(|i| ActivityShare { tenant: TenantId::generate(), admitted: i, calls: i * 2 + 1 }).collect();
        let payloads = announcements("tenantry-0123456789abcdef", &shares);
        assert!(payloads.len() > 1 && payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut back = Vec::new();
        for p in &payloads {
            let (node, rest) = p.split_once(' ').unwrap();
            assert_eq!(node, "tenantry-0123456789abcdef");
            back.extend(rest.split(' ').map(|s| parse_share(s).unwrap()));
        }
        assert_eq!(back, shares);
        assert!(announcements("n", &[]).is_empty());
    }

    #[test]
    fn event_announcements_name_each_seq_once_and_parse_back() {
        let t = TenantId::generate();
        let item = format!("{t}:{}", runs(&[9, 3, 4, 5, 12, 4]));
        assert_eq!(item, format!("{t}:3-5,9,12"));
        assert_eq!(parse_events(&item), Some((t.clone(), vec![3, 4, 5, 9, 12])));
        for bad in ["x:1", "{t}:", "{t}:5-3", "{t}:1-200000", "{t}:a"] {
            assert_eq!(parse_events(&bad.replace("{t}", t.as_str())), None, "{bad}");
        }
    }
}
