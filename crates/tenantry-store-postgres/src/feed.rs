//! What other nodes on the same database commit, heard through LISTEN/NOTIFY.
//!
//! Triggers (migration 1, `FEED_SQL`) notify at commit: `tenantry_directory` with the tenant's id
//! for every row of `tenants` or `keys` inserted, updated or deleted; `tenantry_events` with
//! `<application_name> <tenant id> <seq>` for every event written. Each node's pool connects with
//! an application name of its own (`tenantry-<random>`), so the feed can tell its own events
//! (already handed to the sinks after the commit) from other nodes'. Nodes also tell each other
//! what they counted per tenant (`announce`, on `tenantry_activity`: `<node> <tenant>:<admitted>:
//! <calls> ...`), so rate limits and monthly allowances hold for the cluster.
//!
//! One connection per node, outside the pool, LISTENs on both channels:
//! - a directory notification (its own node's too) goes to the followers, which re-read the tenant;
//! - other nodes' events of a tenant some sink [follows](EventSink::follows) are read back
//!   from the database, once per batch of notifications, and handed to those sinks;
//! - other nodes' counts go to the activity followers;
//! - when the connection is lost (or stops answering), it reconnects with backoff and then tells
//!   followers and sinks that they may have missed changes (a full re-read).
//!
//! The first LISTEN is in place before [`Feed::start`] returns, so the directory a node loads
//! after opening the store misses no change.

use crate::error::{describe, pg_error};
use crate::store::{begin, commit};
use crate::PgDatabase;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tenantry_core::activity::{ActivityFollower, ActivityShare};
use tenantry_core::directory::DirectoryFollower;
use tenantry_core::events::{Event, EventSink};
use tenantry_core::ids::TenantId;
use tenantry_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Notification};

pub(crate) const DIRECTORY_CHANNEL: &str = "tenantry_directory";
pub(crate) const EVENTS_CHANNEL: &str = "tenantry_events";
pub(crate) const ACTIVITY_CHANNEL: &str = "tenantry_activity";
/// Largest payload of one announcement (PostgreSQL takes up to 8000 bytes).
const MAX_PAYLOAD: usize = 7900;

/// The triggers that notify (part of migration 1).
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
CREATE FUNCTION tenantry_event_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantry_events',
        current_setting('application_name') || ' ' || NEW.tenant_id || ' ' || NEW.seq);
    RETURN NULL;
END $$;
CREATE TRIGGER event_written AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION tenantry_event_written();
"#;

/// How often the feed's connection must answer a trivial query to count as alive.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Backoff between reconnection attempts.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Events read back per query.
const EVENT_PAGE: i64 = 1000;

/// Whom the store tells about commits: the event sinks (its own commits and other nodes') and
/// the directory followers.
#[derive(Default)]
pub(crate) struct Listeners {
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    followers: RwLock<Vec<Arc<dyn DirectoryFollower>>>,
    activity: RwLock<Vec<Arc<dyn ActivityFollower>>>,
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

    pub(crate) fn publish(&self, tenant: &TenantId, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        for sink in self.sinks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            sink.published(tenant, events);
        }
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

/// The running feed of a node; stops when dropped.
pub(crate) struct Feed {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Connects and LISTENs (an error if the first connection fails), then follows in a task.
    pub(crate) async fn start(
        config: tokio_postgres::Config,
        node: String,
        db: PgDatabase,
        listeners: Arc<Listeners>,
    ) -> Result<Feed> {
        let (ready, started) = oneshot::channel();
        let feed = Following { config, node, db, listeners };
        let task = tokio::spawn(feed.run(ready));
        match started.await {
            Ok(Ok(())) => Ok(Feed { task }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::internal("the database feed stopped before it started")),
        }
    }
}

struct Following {
    config: tokio_postgres::Config,
    node: String,
    db: PgDatabase,
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
            .config
            .connect(tokio_postgres::NoTls)
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
        // Per tenant, the range of seqs other nodes wrote.
        let mut events: BTreeMap<TenantId, (i64, i64)> = BTreeMap::new();
        let mut counted = Vec::new();
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
                    if let Some(t) = TenantId::parse(n.payload()) {
                        changed.insert(t);
                    }
                }
                EVENTS_CHANNEL => {
                    let mut parts = n.payload().split(' ');
                    let (Some(node), Some(tenant), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
                        continue;
                    };
                    let (Some(tenant), Ok(seq)) = (TenantId::parse(tenant), seq.parse::<i64>()) else { continue };
                    if node == self.node {
                        continue; // this node's own, published after its commit
                    }
                    let range = events.entry(tenant).or_insert((seq, seq));
                    *range = (range.0.min(seq), range.1.max(seq));
                }
                _ => {}
            }
        }
        for tenant in &changed {
            self.listeners.tenant_changed(tenant);
        }
        if !counted.is_empty() {
            self.listeners.counted_elsewhere(&counted);
        }
        for (tenant, (from, to)) in events {
            let following = self.listeners.following(&tenant);
            if following.is_empty() {
                continue;
            }
            match self.read_events(&tenant, from, to).await {
                Ok(read) if !read.is_empty() => following.iter().for_each(|s| s.published(&tenant, &read)),
                Ok(_) => {}
                Err(e) => {
                    // The sinks read the store for what they have not heard, by seq.
                    tracing::warn!("could not read another node's events of {tenant}: {}", e.message);
                    self.listeners.events_missed();
                }
            }
        }
    }

    /// `tenant`'s events with seq in `from..=to`, in order.
    async fn read_events(&self, tenant: &TenantId, from: i64, to: i64) -> Result<Vec<Event>> {
        let mut conn = self.db.client().await?;
        let tx = begin(&mut conn, tenant).await?;
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let sql = format!(
                "SELECT {} FROM events WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                crate::events::EVENT_COLUMNS
            );
            let rows = tx.query(&sql, &[&tenant.as_str(), &next, &to, &EVENT_PAGE]).await.map_err(pg_error)?;
            let full = rows.len() as i64 == EVENT_PAGE;
            out.extend(rows.iter().map(crate::events::event_from_row));
            match out.last() {
                Some(last) if full => next = last.seq as i64 + 1,
                _ => break,
            }
        }
        commit(tx).await?;
        Ok(out)
    }
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
    let mut out = Vec::new();
    let mut current = node.to_owned();
    for s in shares {
        let item = format!(" {}:{}:{}", s.tenant, s.admitted, s.calls);
        if current.len() + item.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut current, node.to_owned()));
        }
        current.push_str(&item);
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
}
