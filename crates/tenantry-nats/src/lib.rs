//! The NATS relay (API.md §12): every committed event of every tenant is published to
//! `{subject_prefix}.{slug}.{type}`, with the event's JSON (as `GET /v1/events` gives it) as the
//! body, at least once and in each tenant's `seq` order.
//!
//! The outbox is the event log itself: an event is written in its change's transaction, so
//! nothing acknowledged can miss NATS. Each tenant's log has a position for this relay
//! ([`tenantry_core::service::NATS_RELAY`], kept by the store beside the events, moved and purged
//! with them), and pruning keeps every event past it, so a NATS outage of any length queues the
//! backlog and loses nothing. The position is held by one node at a time through a lease (several
//! nodes on one PostgreSQL database publish each tenant from one of them, in order); a node that
//! stops is taken over when its lease ends.
//!
//! A round for one tenant: claim the position (kept in memory while the lease lasts), read the
//! events after it, publish them in order, then record the new position. With a JetStream
//! stream (the default), each message carries `Nats-Msg-Id: {tenant id}-{seq}` and counts as
//! published once the stream acknowledges it, so a message published twice (a crash before the
//! position was recorded, a lease taken over) is dropped by the stream within its duplicate
//! window. Without one, a message counts as published once the server has it (flushed): core
//! NATS subscribers present at that moment get it. Positions are recorded at most every
//! [`SAVE_EVERY`] per tenant (and at shutdown), not per message: a crash republishes at most
//! that much, which the stream drops as duplicates.
//!
//! Subjects go by the tenant's slug, which never changes (the API has no rename), so a subscriber
//! can name a tenant's subjects as people know it; the tenant's id is in the `Tenantry-Tenant`
//! header of every message, and is what tells a later tenant given a purged tenant's slug apart.

use async_nats::jetstream;
use async_nats::HeaderMap;
use std::collections::{HashMap, HashSet};
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
    /// The JetStream stream that stores the subjects, created on `{subject_prefix}.>` if it does
    /// not exist; `None`: core NATS publishing only (no stream, no acknowledgement by storage).
    pub stream: Option<String>,
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
            stream: Some(DEFAULT_STREAM.to_owned()),
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
        if let Some(stream) = &self.stream {
            if !token_ok(stream) {
                return Err(format!("[nats] stream {stream:?} is not a name of letters, digits, _ and -"));
            }
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
/// A held position is claimed again (renewing the lease) when this little of it is left.
const RENEW_BEFORE: Duration = Duration::from_secs(10);
/// How often a tenant's position is recorded at most while its events keep coming.
pub const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How often the directory is gone through for tenants this node has not looked at: new ones,
/// those another node held (whose lease may have ended), those whose publishing failed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A tenant this node holds is looked at this often even when no event of it was heard of.
const LOOK_EVERY: Duration = Duration::from_secs(10);
/// Events read and published per batch.
const BATCH: usize = 256;
/// Tenants published at once.
const CONCURRENCY: usize = 16;
/// After a failure (NATS unreachable, a stream that refuses), a tenant waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Time allowed for a stream's acknowledgement (and JetStream API requests).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages published and failures since start, for `/metrics`.
pub static PUBLISHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
        }
    }

    fn unsaved(&self, now: Instant) -> bool {
        !self.running && self.published > self.saved && now.duration_since(self.saved_at) >= SAVE_EVERY
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

impl EventSink for Heard {
    fn published(&self, tenant: &TenantId, _events: &[Event]) {
        self.add([tenant.clone()]);
    }

    fn follows(&self, tenant: &TenantId) -> bool {
        self.held().contains(tenant)
    }

    fn followed(&self) -> Vec<TenantId> {
        self.held().iter().cloned().collect()
    }

    fn missed(&self) {
        let held = self.followed();
        self.add(held);
    }

    fn missed_of(&self, tenant: &TenantId) {
        self.add([tenant.clone()]);
    }
}

/// The connection and what it publishes to.
#[derive(Clone)]
struct Publisher {
    client: async_nats::Client,
    jetstream: Option<jetstream::Context>,
    config: Arc<NatsConfig>,
    /// Whether the stream is known to exist (checked again after a failure).
    stream_ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Publisher {
    async fn ensure_stream(&self) -> Result<(), String> {
        let (Some(js), Some(name)) = (&self.jetstream, &self.config.stream) else { return Ok(()) };
        if self.stream_ready.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let config = jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        js.get_or_create_stream(config).await.map_err(|e| format!("stream {name}: {e}"))?;
        self.stream_ready.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Publishes `events` of `tenant` in order; returns the last seq published (acknowledged by
    /// the stream, or flushed to the server), and the error that stopped it, if any.
    async fn publish(&self, tenant: &Tenant, events: &[Event]) -> (Option<u64>, Option<String>) {
        if let Err(e) = self.ensure_stream().await {
            return (None, Some(e));
        }
        let mut sent = Vec::with_capacity(events.len());
        let mut failed = None;
        for e in events {
            let body = match serde_json::to_vec(e) {
                Ok(b) => bytes::Bytes::from(b),
                Err(err) => {
                    failed = Some(format!("event {} does not serialize: {err}", e.seq));
                    break;
                }
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", message_id(&tenant.id, e.seq).as_str());
            headers.insert("Tenantry-Tenant", tenant.id.as_str());
            headers.insert("Tenantry-Seq", e.seq.to_string().as_str());
            let subject = subject(&self.config.subject_prefix, tenant.slug.as_str(), &e.kind);
            let outcome = match &self.jetstream {
                Some(js) => js.publish_with_headers(subject, headers, body).await.map(Some).map_err(|e| e.to_string()),
                None => self
                    .client
                    .publish_with_headers(subject, headers, body)
                    .await
                    .map(|_| None)
                    .map_err(|e| e.to_string()),
            };
            match outcome {
                Ok(ack) => sent.push((e.seq, ack)),
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        let mut published = None;
        if self.jetstream.is_none() {
            if let Err(e) = self.client.flush().await {
                return (None, Some(e.to_string()));
            }
            published = sent.last().map(|(seq, _)| *seq);
        } else {
            // In order: a later acknowledgement does not count past an earlier failure.
            for (seq, ack) in sent {
                match ack.expect("a JetStream publish has an acknowledgement").await {
                    Ok(_) => published = Some(seq),
                    Err(e) => {
                        self.stream_ready.store(false, std::sync::atomic::Ordering::Release);
                        failed.get_or_insert(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(last) = published {
            let n = events.iter().take_while(|e| e.seq <= last).count() as u64;
            PUBLISHED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        (published, failed)
    }
}

/// Connects (in the background: a NATS server that is down at start is retried, and events
/// wait in the log meanwhile) and starts the relay, which holds tenants' positions as `holder`
/// (the node's lasting name: restarted, it takes its own tenants back at once). It stops when
/// `shutdown` turns true, after recording every position published and letting go of them.
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
    let jetstream = config.stream.as_ref().map(|_| {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(ACK_TIMEOUT);
        js
    });
    let publisher = Publisher {
        client,
        jetstream,
        config: Arc::new(config),
        stream_ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let heard = Arc::new(Heard::default());
    svc.add_event_sink(heard.clone());
    Ok(tokio::spawn(async move {
        let mut relay =
            Relay { svc, publisher, holder, heard: heard.clone(), positions: HashMap::new(), running: JoinSet::new() };
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
            // Positions published but not recorded yet, once SAVE_EVERY has passed.
            due.extend(relay.positions.iter().filter(|(_, p)| p.unsaved(now)).map(|(id, _)| id.clone()));
            let deferred = relay.start(due, now);
            // Tenants whose round is under way (or that found every slot taken) go again after
            // one ends; nothing wakes the loop for them before that.
            heard.tenants.lock().unwrap_or_else(|e| e.into_inner()).extend(deferred);
            let wait = relay.next_wake(now).min(next_sweep.saturating_duration_since(now));
            tokio::select! {
                Some(done) = relay.running.join_next(), if !relay.running.is_empty() => relay.done(done),
                _ = heard.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }))
}

struct Relay {
    svc: Arc<Tenantry>,
    publisher: Publisher,
    holder: String,
    heard: Arc<Heard>,
    positions: HashMap<TenantId, Position>,
    running: JoinSet<(TenantId, Position, Option<String>)>,
}

impl Relay {
    /// The tenants of the directory due a look without an event heard of: new to this node, held
    /// but not looked at for [`LOOK_EVERY`], or no longer waiting (after a failure, or for
    /// another node's lease). Forgets the positions of tenants gone.
    fn sweep(&mut self, now: Instant) -> Vec<TenantId> {
        let tenants: Vec<TenantId> = self.svc.relay_tenants().iter().map(|t| t.id.clone()).collect();
        let known: HashSet<&TenantId> = tenants.iter().collect();
        self.positions.retain(|id, _| known.contains(id));
        self.heard.held().retain(|id| known.contains(id));
        tenants
            .into_iter()
            .filter(|id| match self.positions.get(id) {
                None => true,
                Some(p) if p.running => false,
                Some(p) if p.held_until.is_some() => now.duration_since(p.looked_at) >= LOOK_EVERY,
                Some(p) => p.not_before.is_none_or(|at| at <= now),
            })
            .collect()
    }

    /// When the loop must look again without being woken: the next unsaved position or retry.
    fn next_wake(&self, now: Instant) -> Duration {
        let mut wait = SWEEP_EVERY;
        for p in self.positions.values().filter(|p| !p.running) {
            if p.published > p.saved {
                wait = wait.min((p.saved_at + SAVE_EVERY).saturating_duration_since(now));
            }
            if let Some(at) = p.not_before {
                wait = wait.min(at.saturating_duration_since(now));
            }
        }
        wait.max(Duration::from_millis(5))
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
            let (svc, publisher, holder) = (self.svc.clone(), self.publisher.clone(), self.holder.clone());
            self.running.spawn(async move {
                let (position, error) = round(&svc, &publisher, &holder, &tenant, position).await;
                (tenant.id.clone(), position, error)
            });
        }
        deferred
    }

    fn done(&mut self, done: Result<(TenantId, Position, Option<String>), tokio::task::JoinError>) {
        let Ok((tenant, mut p, error)) = done else { return };
        let now = Instant::now();
        p.running = false;
        p.looked_at = now;
        if let Some(e) = error {
            FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(tenant = %tenant, "NATS publishing stopped after seq {} (retried): {e}", p.published);
            p.not_before = Some(now + RETRY_AFTER);
        }
        if p.held_until.is_some() {
            self.heard.held().insert(tenant.clone());
        } else {
            self.heard.held().remove(&tenant);
        }
        self.positions.insert(tenant, p);
    }

    /// At shutdown: waits for the rounds under way, then records every position published and
    /// lets go of it (its lease ends now), so another node takes the tenant over at once.
    async fn finish(&mut self) {
        while let Some(done) = self.running.join_next().await {
            self.done(done);
        }
        for (id, p) in self.positions.clone() {
            if p.held_until.is_none() {
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

/// One tenant's round: claims (or renews) its position, publishes what follows it, records it.
/// Returns the position (not held when another node holds it, or the tenant is gone: it is not
/// tried again before that node's lease could end) and the error that stopped the round, if any.
async fn round(
    svc: &Tenantry,
    publisher: &Publisher,
    holder: &str,
    tenant: &Tenant,
    mut p: Position,
) -> (Position, Option<String>) {
    let mut error = None;
    loop {
        let now = Instant::now();
        if p.held_until.is_none_or(|until| until <= now + RENEW_BEFORE) {
            let held = if p.held_until.is_some() {
                // Renewed while held: recording what was published renews the lease.
                svc.advance_relay(tenant, NATS_RELAY, holder, p.published, LEASE)
                    .await
                    .map(|ok| ok.then_some(p.published))
            } else {
                svc.claim_relay(tenant, NATS_RELAY, holder, LEASE).await
            };
            match held {
                // What the store says was published: a claim after a lapse starts where the last
                // holder recorded (what this node published since goes again, and the stream
                // drops it as a duplicate).
                Ok(Some(seq)) => {
                    (p.published, p.saved, p.saved_at, p.held_until) = (seq, seq, now, Some(now + LEASE));
                }
                Ok(None) => {
                    p.held_until = None;
                    p.not_before = Some(now + LEASE);
                    return (p, None);
                }
                Err(e) => {
                    p.held_until = None;
                    return (p, Some(e.message));
                }
            }
        }
        let events = match svc.relay_events(tenant, p.published, BATCH).await {
            Ok(e) => e,
            Err(e) => {
                error = Some(e.message);
                break;
            }
        };
        if events.is_empty() {
            break;
        }
        let full = events.len() == BATCH;
        let (published, failed) = publisher.publish(tenant, &events).await;
        if let Some(seq) = published {
            p.published = seq;
        }
        if failed.is_some() {
            error = failed;
            break;
        }
        if !full {
            break;
        }
    }
    if p.published > p.saved && Instant::now().duration_since(p.saved_at) >= SAVE_EVERY {
        let published = p.published;
        match svc.advance_relay(tenant, NATS_RELAY, holder, published, LEASE).await {
            Ok(true) => {
                p.saved = published;
                p.saved_at = Instant::now();
                p.held_until = Some(Instant::now() + LEASE);
            }
            // Taken over after this node's lease ran out: that node goes on from where it was
            // recorded.
            Ok(false) => {
                p.held_until = None;
                p.not_before = Some(Instant::now() + LEASE);
            }
            Err(e) => {
                error.get_or_insert(e.message);
            }
        }
    }
    (p, error)
}
