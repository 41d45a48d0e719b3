//! The NATS relay (the contract's §12): every committed event of every tenant is published to
//! `{subject_prefix}.{slug}.{type}`, with the event's JSON (as `GET /v1/events` gives it) as the
//! body, into a JetStream stream, at least once and in each tenant's `seq` order.
//!
//! The outbox is the event log itself: an event is written in its change's transaction, so
//! nothing acknowledged can miss NATS. Each tenant's log has a position for this relay
//! ([`tenantry_core::service::NATS_RELAY`], kept by the store beside the events, moved and purged
//! with them), and pruning keeps every event past it, so a NATS outage of any length queues the
//! backlog and loses nothing. The position is held by one node at a time through a lease (several
//! nodes on one PostgreSQL database publish each tenant from one of them); a node that stops is
//! taken over when its lease ends, or at once by itself restarted (it holds by its lasting name).
//!
//! A round for one tenant: read the events after its position; if there are any, hold the
//! position (claimed, or renewed while it publishes), publish them **one at a time**, each
//! counting once the stream acknowledged it, and record the position at most every
//! [`SAVE_EVERY`]. One at a time because a reconnect drops what was written to the old
//! connection but not what was still queued: with several messages in flight, a later one could
//! be stored before an earlier one lost and sent again. Each message carries
//! `Nats-Msg-Id: {tenant id}-{seq}`, so one published twice (a crash before its position was
//! recorded, a lease taken over) is dropped by the stream within its duplicate window.
//!
//! Subjects go by the tenant's slug, which never changes (the API has no rename), so a subscriber
//! names a tenant's subjects as people know it; the tenant's id is in the `Tenantry-Tenant`
//! header of every message, and tells a later tenant given a purged tenant's slug apart.

use async_nats::jetstream;
use async_nats::HeaderMap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantry_core::events::{Event, EventSink};
use tenantry_core::ids::TenantId;
use tenantry_core::model::Tenant;
use tenantry_core::service::{Tenantry, NATS_RELAY};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// How the relay reaches NATS (config `[nats]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// The server(s), e.g. `nats://127.0.0.1:4222` (comma-separated for several).
    pub url: String,
    /// First token(s) of every subject (default `tenantry`).
    pub subject_prefix: String,
    /// The JetStream stream that stores the subjects; created on `{subject_prefix}.>` if it does
    /// not exist.
    pub stream: String,
    /// How long a stream created here keeps messages (the event log's retention).
    pub stream_max_age: Duration,
    /// A credentials file (`.creds`: a user JWT and its seed) the relay connects with.
    pub credentials: Option<std::path::PathBuf>,
}

pub const DEFAULT_SUBJECT_PREFIX: &str = "tenantry";
pub const DEFAULT_STREAM: &str = "TENANTRY";

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            stream: DEFAULT_STREAM.to_owned(),
            stream_max_age: Duration::from_secs(7 * 86_400),
            credentials: None,
        }
    }

    /// Refuses a prefix or stream name NATS would not take, saying why.
    pub fn check(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("[nats] url is empty".into());
        }
        let token_ok =
            |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !self.subject_prefix.split('.').all(token_ok) {
            return Err(format!(
                "[nats] subject_prefix {:?} is not dot-separated tokens of letters, digits, _ and -",
                self.subject_prefix
            ));
        }
        if !token_ok(&self.stream) {
            return Err(format!("[nats] stream {:?} is not a name of letters, digits, _ and -", self.stream));
        }
        Ok(())
    }
}

/// The subject an event of the tenant with `slug` is published to.
pub fn subject(prefix: &str, slug: &str, event_type: &str) -> String {
    format!("{prefix}.{slug}.{event_type}")
}

/// The message id JetStream drops duplicates by: the tenant's id and the event's seq.
pub fn message_id(tenant: &TenantId, seq: u64) -> String {
    format!("{tenant}-{seq}")
}

/// How long a node holds a tenant's position once it claimed or recorded it.
pub const LEASE: Duration = Duration::from_secs(30);
/// A held position is renewed when this little of its lease is left.
const RENEW_BEFORE: Duration = Duration::from_secs(10);
/// A node whose rounds of a tenant failed this many times in a row lets its lease run out and
/// stays away for one more lease, so a node that can reach NATS takes the tenant over.
const GIVE_UP_AFTER: u32 = 3;
/// How often a tenant's position is recorded at most while its events keep coming.
pub const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How often the directory is gone through for tenants due a look without an event heard of.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A tenant is looked at this often even when no event of it was heard of: events another node
/// committed unheard (it stopped before announcing them), a lease another node let run out.
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// Events read per batch, and batches per round: a tenant with a long backlog gives its slot
/// up after this many, so every tenant is published after an outage, not one after the other.
const BATCH: usize = 256;
const BATCHES_PER_ROUND: usize = 4;
/// Tenants published at once.
const CONCURRENCY: usize = 16;
/// After a failure (NATS unreachable, a stream that refuses), a tenant waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Time allowed for one message's acknowledgement (and JetStream API requests).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a stop waits for the rounds under way.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Messages published and failed rounds since start (process-wide: one relay per process in
/// production), for `/metrics` through [`RelayMetrics`].
pub static PUBLISHED: AtomicU64 = AtomicU64::new(0);
pub static FAILURES: AtomicU64 = AtomicU64::new(0);

/// The relay's numbers for `/metrics`: messages published, failed rounds, tenants held.
struct RelayMetrics(Arc<Heard>);

impl tenantry_core::service::MetricSource for RelayMetrics {
    fn metrics(&self) -> Vec<tenantry_core::store::StoreMetric> {
        let m = |name, help, counter, value| tenantry_core::store::StoreMetric { name, help, counter, value };
        vec![
            m(
                "tenantry_nats_published_total",
                "Events published to NATS (acknowledged by the stream) since start.",
                true,
                PUBLISHED.load(Ordering::Relaxed),
            ),
            m(
                "tenantry_nats_failures_total",
                "Rounds of a tenant's NATS publishing that failed (retried) since start.",
                true,
                FAILURES.load(Ordering::Relaxed),
            ),
            m(
                "tenantry_nats_tenants_held",
                "Tenants whose NATS publishing this node holds (or is claiming).",
                false,
                self.0.held().len() as u64,
            ),
        ]
    }
}

/// Where one tenant's publishing stands on this node.
#[derive(Debug, Clone)]
struct Position {
    /// The last seq published.
    published: u64,
    /// The last seq recorded in the store.
    saved: u64,
    saved_at: Instant,
    /// Until when this node holds the position (`None`: it does not).
    held_until: Option<Instant>,
    /// No round before this: after a failure, or while another node holds the position.
    not_before: Option<Instant>,
    /// When its last round ended.
    looked_at: Instant,
    /// A round of it is under way.
    running: bool,
    /// Rounds in a row that failed to publish.
    failures: u32,
}

impl Position {
    fn new(now: Instant) -> Position {
        Position {
            published: 0,
            saved: 0,
            saved_at: now,
            held_until: None,
            not_before: None,
            looked_at: now,
            running: false,
            failures: 0,
        }
    }

    /// Published past what is recorded, and due to be recorded (not while it waits).
    fn unsaved(&self, now: Instant) -> bool {
        !self.running
            && self.held_until.is_some()
            && self.published > self.saved
            && now.duration_since(self.saved_at) >= SAVE_EVERY
            && self.not_before.is_none_or(|at| at <= now)
    }

    fn holds(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|until| until > now + RENEW_BEFORE)
    }

    /// Lets go of the position on this node (another holds it, or this one stops renewing):
    /// not tried again before `until`.
    fn let_go(&mut self, until: Instant) {
        self.held_until = None;
        self.saved = self.published;
        self.not_before = Some(until);
    }
}

/// Tenants with new events, filled by the event sink; and the tenants this node holds, whose
/// events other nodes commit (on a shared database) the store reads back and tells it of too.
#[derive(Default)]
struct Heard {
    tenants: Mutex<HashSet<TenantId>>,
    held: Mutex<HashSet<TenantId>>,
    wake: Notify,
}

impl Heard {
    fn add(&self, tenants: impl IntoIterator<Item = TenantId>) {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner()).extend(tenants);
        self.wake.notify_one();
    }

    fn take(&self) -> HashSet<TenantId> {
        std::mem::take(&mut *self.tenants.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<TenantId>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Other nodes' events of held tenants are wanted ([`EventSink::follows`]); the store's own
/// check for events a stopped node never announced is not asked for (the relay looks at every
/// tenant every [`LOOK_EVERY`] itself, without a query per second over all of them).
impl EventSink for Heard {
    fn published(&self, tenant: &TenantId, _events: &[Event]) {
        self.add([tenant.clone()]);
    }

    fn follows(&self, tenant: &TenantId) -> bool {
        self.held().contains(tenant)
    }

    fn missed(&self) {
        let held: Vec<TenantId> = self.held().iter().cloned().collect();
        self.add(held);
    }

    fn missed_of(&self, tenant: &TenantId) {
        self.add([tenant.clone()]);
    }
}

/// The stream and what it publishes to.
#[derive(Clone)]
struct Publisher {
    jetstream: jetstream::Context,
    config: Arc<NatsConfig>,
    /// Whether the stream is known to exist (checked again after a failure).
    stream_ready: Arc<AtomicBool>,
}

impl Publisher {
    async fn ensure_stream(&self) -> Result<(), String> {
        if self.stream_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let config = jetstream::stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            duplicate_window: Duration::from_secs(120),
            max_age: self.config.stream_max_age,
            ..Default::default()
        };
        self.jetstream.get_or_create_stream(config).await.map_err(|e| format!("stream {}: {e}", self.config.stream))?;
        self.stream_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Publishes `events` of `tenant` in order, each once the previous one is acknowledged;
    /// returns the last seq published and the error that stopped it, if any.
    async fn publish(&self, tenant: &Tenant, events: &[Event]) -> (Option<u64>, Option<String>) {
        if let Err(e) = self.ensure_stream().await {
            return (None, Some(e));
        }
        let mut published = None;
        for e in events {
            match tokio::time::timeout(ACK_TIMEOUT, self.publish_one(tenant, e)).await {
                Ok(Ok(())) => {
                    published = Some(e.seq);
                    PUBLISHED.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(err)) => return (published, Some(err)),
                Err(_) => {
                    self.stream_ready.store(false, Ordering::Release);
                    return (published, Some(format!("no acknowledgement within {ACK_TIMEOUT:?}")));
                }
            }
        }
        (published, None)
    }

    async fn publish_one(&self, tenant: &Tenant, e: &Event) -> Result<(), String> {
        let body = serde_json::to_vec(e).map_err(|err| format!("event {} does not serialize: {err}", e.seq))?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id(&tenant.id, e.seq).as_str());
        headers.insert("Tenantry-Tenant", tenant.id.as_str());
        headers.insert("Tenantry-Seq", e.seq.to_string().as_str());
        let subject = subject(&self.config.subject_prefix, tenant.slug.as_str(), &e.kind);
        let acked = match self.jetstream.publish_with_headers(subject, headers, body.into()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if acked.is_err() {
            // Deleted or replaced meanwhile, perhaps: looked up (or created) again next time.
            self.stream_ready.store(false, Ordering::Release);
        }
        acked
    }
}

/// Connects (in the background: a NATS server that is down at start is retried, and events
/// wait in the log meanwhile) and starts the relay, which holds tenants' positions as `holder`
/// (the node's lasting name: restarted, it takes its own tenants back at once). It stops when
/// `shutdown` turns true (or its sender is dropped), after the rounds under way (at most
/// [`STOP_WAIT`]) and recording what they published.
pub async fn spawn(
    svc: Arc<Tenantry>,
    config: NatsConfig,
    holder: String,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    config.check()?;
    let mut options = async_nats::ConnectOptions::new()
        .name(concat!("tenantry/", env!("CARGO_PKG_VERSION")))
        .retry_on_initial_connect()
        .max_reconnects(None::<usize>)
        .request_timeout(Some(ACK_TIMEOUT));
    if let Some(creds) = &config.credentials {
        options = options
            .credentials_file(creds)
            .await
            .map_err(|e| format!("[nats] credentials {}: {e}", creds.display()))?;
    }
    let addrs: Vec<async_nats::ServerAddr> = config
        .url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>().map_err(|e| format!("[nats] url {u:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let client = async_nats::connect_with_options(addrs, options).await.map_err(|e| format!("NATS: {e}"))?;
    let mut jetstream = jetstream::new(client);
    jetstream.set_timeout(ACK_TIMEOUT);
    let publisher = Publisher { jetstream, config: Arc::new(config), stream_ready: Arc::new(AtomicBool::new(false)) };
    let heard = Arc::new(Heard::default());
    svc.add_event_sink(heard.clone());
    svc.add_metric_source(Arc::new(RelayMetrics(heard.clone())));
    Ok(tokio::spawn(async move {
        let mut relay = Relay {
            svc,
            publisher,
            holder,
            heard: heard.clone(),
            positions: HashMap::new(),
            running: JoinSet::new(),
            rounds: HashMap::new(),
        };
        let mut next_sweep = Instant::now();
        loop {
            if *shutdown.borrow() {
                relay.finish().await;
                return;
            }
            let mut due = heard.take();
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                due.extend(relay.sweep(now));
            }
            due.extend(relay.waited(now));
            let deferred = relay.start(due, now);
            // Tenants whose round is under way (or that found every slot taken) go again after
            // one ends; nothing wakes the loop for them before that.
            heard.tenants.lock().unwrap_or_else(|e| e.into_inner()).extend(deferred);
            let wait = relay.next_wake(now).min(next_sweep.saturating_duration_since(now));
            tokio::select! {
                Some(done) = relay.running.join_next_with_id(), if !relay.running.is_empty() => relay.done(done),
                _ = heard.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        relay.finish().await;
                        return;
                    }
                }
            }
        }
    }))
}

/// What a round hands back: the position, the error that stopped it, and whether it gave its
/// slot up with events left.
type RoundEnd = (Position, Option<String>, bool);

struct Relay {
    svc: Arc<Tenantry>,
    publisher: Publisher,
    holder: String,
    heard: Arc<Heard>,
    positions: HashMap<TenantId, Position>,
    running: JoinSet<RoundEnd>,
    /// The tenant of each round under way, by task.
    rounds: HashMap<tokio::task::Id, TenantId>,
}

impl Relay {
    /// The tenants of the directory due a look without an event heard of: new to this node, or
    /// not looked at for [`LOOK_EVERY`]. Forgets the positions of tenants gone.
    fn sweep(&mut self, now: Instant) -> Vec<TenantId> {
        let tenants: Vec<TenantId> = self.svc.relay_tenants().iter().map(|t| t.id.clone()).collect();
        let known: HashSet<&TenantId> = tenants.iter().collect();
        self.positions.retain(|id, p| p.running || known.contains(id));
        self.heard.held().retain(|id| known.contains(id));
        tenants
            .into_iter()
            .filter(|id| match self.positions.get(id) {
                None => true,
                Some(p) => !p.running && now.duration_since(p.looked_at) >= LOOK_EVERY,
            })
            .collect()
    }

    /// Tenants whose wait ended (after a failure, or for another node's lease), and those with a
    /// position published but not yet recorded.
    fn waited(&mut self, now: Instant) -> Vec<TenantId> {
        let mut due = Vec::new();
        for (id, p) in self.positions.iter_mut() {
            if p.not_before.is_some_and(|at| at <= now) {
                p.not_before = None;
                due.push(id.clone());
            } else if p.unsaved(now) {
                due.push(id.clone());
            }
        }
        due
    }

    /// When the loop must look again without being woken: the next position to record or wait
    /// to end. With every slot taken, a round's end wakes it first.
    fn next_wake(&self, now: Instant) -> Duration {
        let mut wait = SWEEP_EVERY;
        if self.running.len() >= CONCURRENCY {
            return wait;
        }
        for p in self.positions.values().filter(|p| !p.running) {
            match p.not_before {
                Some(at) if at > now => wait = wait.min(at - now),
                _ if p.held_until.is_some() && p.published > p.saved => {
                    wait = wait.min((p.saved_at + SAVE_EVERY).saturating_duration_since(now));
                }
                _ => {}
            }
        }
        wait.max(Duration::from_millis(1))
    }

    /// Starts a round for each tenant in `due` that is not in one and not waiting; returns those
    /// left for later.
    fn start(&mut self, due: HashSet<TenantId>, now: Instant) -> Vec<TenantId> {
        let mut deferred = Vec::new();
        for id in due {
            let p = self.positions.entry(id.clone()).or_insert_with(|| Position::new(now));
            if p.not_before.is_some_and(|at| at > now) {
                continue;
            }
            if p.running || self.running.len() >= CONCURRENCY {
                deferred.push(id);
                continue;
            }
            let Some(tenant) = self.svc.directory().tenant(&id) else {
                self.positions.remove(&id);
                continue;
            };
            p.running = true;
            let position = p.clone();
            // Other nodes' events of it are read back to this node from now on (the round may
            // claim it); `done` stops that if the round did not hold it.
            self.heard.held().insert(id.clone());
            let (svc, publisher, holder) = (self.svc.clone(), self.publisher.clone(), self.holder.clone());
            let task = self.running.spawn(async move { round(&svc, &publisher, &holder, &tenant, position).await });
            self.rounds.insert(task.id(), id);
        }
        deferred
    }

    fn done(&mut self, done: Result<(tokio::task::Id, RoundEnd), tokio::task::JoinError>) {
        let (task, ended) = match done {
            Ok((task, ended)) => (task, Some(ended)),
            Err(e) => (e.id(), None),
        };
        let Some(tenant) = self.rounds.remove(&task) else { return };
        let now = Instant::now();
        let Some((mut p, error, more)) = ended else {
            // A round that panicked: its tenant starts over from what the store recorded.
            tracing::error!(tenant = %tenant, "a NATS publishing round panicked (started over)");
            self.positions
                .insert(tenant.clone(), Position { not_before: Some(now + RETRY_AFTER), ..Position::new(now) });
            self.heard.held().remove(&tenant);
            return;
        };
        p.running = false;
        p.looked_at = now;
        if let Some(e) = error {
            FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(tenant = %tenant, "NATS publishing stopped after seq {} (retried): {e}", p.published);
            let retry = now + RETRY_AFTER;
            p.not_before = Some(p.not_before.map_or(retry, |at| at.max(retry)));
        } else if more {
            self.heard.add([tenant.clone()]);
        }
        if p.held_until.is_some() {
            self.heard.held().insert(tenant.clone());
        } else {
            self.heard.held().remove(&tenant);
        }
        self.positions.insert(tenant, p);
    }

    /// At shutdown: waits for the rounds under way (at most [`STOP_WAIT`]), then records every
    /// position published past what is recorded, letting go of it (its lease ends now). Positions
    /// with nothing new keep their leases until they end (or this node, restarted, resumes them).
    async fn finish(&mut self) {
        let waited = tokio::time::timeout(STOP_WAIT, async {
            while let Some(done) = self.running.join_next_with_id().await {
                self.done(done);
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                "NATS publishing rounds still under way at shutdown were stopped (published again at the next start)"
            );
            self.running.abort_all();
        }
        for (id, p) in self.positions.clone() {
            if p.held_until.is_none() || p.published <= p.saved || p.running {
                continue;
            }
            let Some(tenant) = self.svc.directory().tenant(&id) else { continue };
            if let Err(e) = self.svc.advance_relay(&tenant, NATS_RELAY, &self.holder, p.published, Duration::ZERO).await
            {
                tracing::warn!(tenant = %id, "could not record the NATS position at shutdown: {}", e.message);
            }
        }
    }
}

/// What holding a position at the start of a batch came to.
enum Hold {
    /// Held already: the lease runs on.
    Renewed,
    /// Claimed, at the store's position.
    Claimed(u64),
    /// Another node holds it, at that position, until then.
    Elsewhere(u64, Instant),
    /// Taken over by another node, or the tenant is gone.
    Lost,
}

/// The instant of a store timestamp, by this node's clock.
fn instant_of(svc: &Tenantry, at: tenantry_core::time::Timestamp) -> Instant {
    let ahead = at.millis().saturating_sub(svc.now().millis()).max(0);
    Instant::now() + Duration::from_millis(ahead as u64)
}

/// One tenant's round (see the module's doc).
async fn round(svc: &Tenantry, publisher: &Publisher, holder: &str, tenant: &Tenant, mut p: Position) -> RoundEnd {
    for _ in 0..BATCHES_PER_ROUND {
        let events = match svc.relay_events(tenant, p.published, BATCH).await {
            Ok(e) => e,
            Err(e) => return (p, Some(e.message), false),
        };
        let Some(first) = events.first() else { return save(svc, holder, tenant, p, None, false).await };
        let now = Instant::now();
        if !p.holds(now) {
            if p.failures >= GIVE_UP_AFTER {
                // Failing to publish: the lease is left to run out, and the tenant to a node
                // that can reach NATS for one more lease.
                let until = p.held_until.filter(|until| *until > now).unwrap_or(now);
                p.let_go(until + LEASE);
                return (p, None, false);
            }
            let hold = match p.held_until.filter(|until| *until > now) {
                // Held: recording what was published renews the lease.
                Some(_) => match svc.advance_relay(tenant, NATS_RELAY, holder, p.published, LEASE).await {
                    Ok(true) => Ok(Hold::Renewed),
                    Ok(false) => Ok(Hold::Lost),
                    Err(e) => Err(e),
                },
                None => match svc.claim_relay(tenant, NATS_RELAY, holder, LEASE).await {
                    Ok(Some(at)) if at.taken => Ok(Hold::Claimed(at.seq)),
                    Ok(Some(at)) => Ok(Hold::Elsewhere(at.seq, instant_of(svc, at.lease_until))),
                    Ok(None) => Ok(Hold::Lost),
                    Err(e) => Err(e),
                },
            };
            match hold {
                Ok(Hold::Renewed) => {
                    (p.saved, p.saved_at, p.held_until) = (p.published, now, Some(now + LEASE));
                }
                // From the store's position, not this node's (a claim after a lapse starts where
                // the last holder recorded): read again from there if they differ.
                Ok(Hold::Claimed(seq)) => {
                    let moved = seq != p.published;
                    (p.published, p.saved, p.saved_at, p.held_until) = (seq, seq, now, Some(now + LEASE));
                    if moved {
                        continue;
                    }
                }
                // Tried again when the other node's lease ends, from where it got.
                Ok(Hold::Elsewhere(seq, until)) => {
                    p.published = seq;
                    p.let_go(until.max(now) + Duration::from_millis(100));
                    return (p, None, false);
                }
                Ok(Hold::Lost) => {
                    p.let_go(now + LEASE);
                    return (p, None, false);
                }
                Err(e) => return (p, Some(e.message), false),
            }
        }
        if first.seq > p.published + 1 {
            tracing::warn!(
                tenant = %tenant.id,
                "events {}..{} were pruned before NATS had them (published from {})",
                p.published + 1,
                first.seq - 1,
                first.seq
            );
        }
        let full = events.len() == BATCH;
        let (published, failed) = publisher.publish(tenant, &events).await;
        if let Some(seq) = published {
            p.published = seq;
        }
        if failed.is_some() {
            p.failures += 1;
            return save(svc, holder, tenant, p, failed, false).await;
        }
        p.failures = 0;
        if !full {
            return save(svc, holder, tenant, p, None, false).await;
        }
        p = save(svc, holder, tenant, p, None, false).await.0;
        if p.held_until.is_none() {
            return (p, None, false);
        }
    }
    (p, None, true)
}

/// Records the position if it was published past what is recorded and [`SAVE_EVERY`] passed
/// since it last was; hands back the round's end.
async fn save(
    svc: &Tenantry,
    holder: &str,
    tenant: &Tenant,
    mut p: Position,
    error: Option<String>,
    more: bool,
) -> RoundEnd {
    let now = Instant::now();
    if p.held_until.is_none() || p.published <= p.saved || now.duration_since(p.saved_at) < SAVE_EVERY {
        return (p, error, more);
    }
    // A failing node records what it published but does not extend its hold (see `round`).
    let lease = match p.failures {
        0 => LEASE,
        _ => p.held_until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now)),
    };
    match svc.advance_relay(tenant, NATS_RELAY, holder, p.published, lease).await {
        Ok(true) => {
            (p.saved, p.saved_at, p.held_until) = (p.published, now, Some(now + lease));
            (p, error, more)
        }
        // Taken over after this node's lease ran out: that node goes on from where it was
        // recorded (what this one published since goes again, and the stream drops it).
        Ok(false) => {
            p.let_go(now + LEASE);
            (p, error, false)
        }
        Err(e) => (p, error.or(Some(e.message)), more),
    }
}
