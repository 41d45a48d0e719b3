//! The live event stream (API.md §7, SSE): a hub fed by the store after each commit, and one task
//! per subscriber that first replays what the client missed from the store, then relays the hub.
//! It subscribes before replaying and skips every `seq` it has already dealt with, so a resume
//! from `Last-Event-ID` has neither gaps nor duplicates. Events of one tenant may reach the hub
//! out of order (where several nodes share the store, other nodes' come through the store's
//! feed): a batch that starts past the next `seq` makes the stream read the gap from the store.

use axum::body::Body;
use bytes::Bytes;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tenantry_core::caller::{Caller, Principal};
use tenantry_core::events::{types, Event, EventSink};
use tenantry_core::ids::TenantId;
use tenantry_core::service::Tenantry;
use tokio::sync::{broadcast, mpsc, watch};

/// Batches of committed events, per tenant, for the streams open on it.
pub struct EventHub {
    tenants: Mutex<HashMap<TenantId, broadcast::Sender<Live>>>,
    closing: watch::Sender<bool>,
    /// Open streams per tenant, each held by a [`StreamSlot`].
    open: Arc<Mutex<HashMap<TenantId, usize>>>,
}

/// One of a tenant's open streams; dropping it (when the stream ends) frees the place.
pub struct StreamSlot {
    open: Arc<Mutex<HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// What the hub passes to a tenant's streams.
#[derive(Clone)]
pub enum Live {
    /// Committed events, in `seq` order.
    Events(Arc<[Event]>),
    /// Events may have been committed that the hub was not told of: read the store.
    Check,
}

/// Batches a slow subscriber may fall behind before it re-reads from the store.
const HUB_CAPACITY: usize = 1024;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often a stream re-checks that its key and tenant are still allowed (an in-memory look-up):
/// a revocation's own event reaches the stream just before the directory forgets the key.
const RECHECK: Duration = Duration::from_secs(1);
/// Events read from the store per page while replaying.
const REPLAY_PAGE: usize = 500;

impl Default for EventHub {
    fn default() -> Self {
        EventHub { tenants: Mutex::default(), closing: watch::channel(false).0, open: Arc::default() }
    }
}

impl EventHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, broadcast::Sender<Live>>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self, tenant: &TenantId) -> broadcast::Receiver<Live> {
        self.lock().entry(tenant.clone()).or_insert_with(|| broadcast::channel(HUB_CAPACITY).0).subscribe()
    }

    /// A place for one more stream of `tenant`, or `None` when it already has `max` open: one
    /// tenant's streams cannot take every connection the server has.
    pub fn open_slot(&self, tenant: &TenantId, max: usize) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(tenant.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot { open: self.open.clone(), tenant: tenant.clone() })
    }

    /// Ends every open stream (on shutdown, so in-flight work can drain).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Open streams, for metrics.
    pub fn subscribers(&self) -> usize {
        self.lock().values().map(broadcast::Sender::receiver_count).sum()
    }
}

impl EventSink for EventHub {
    fn published(&self, tenant: &TenantId, events: &[Event]) {
        let mut tenants = self.lock();
        if let Some(tx) = tenants.get(tenant) {
            if tx.send(Live::Events(Arc::from(events))).is_err() {
                tenants.remove(tenant); // nobody listening any more
            }
        }
    }

    fn follows(&self, tenant: &TenantId) -> bool {
        self.lock().get(tenant).is_some_and(|tx| tx.receiver_count() > 0)
    }

    fn missed(&self) {
        self.lock().retain(|_, tx| tx.send(Live::Check).is_ok());
    }

    fn followed(&self) -> Vec<TenantId> {
        self.lock().iter().filter(|(_, tx)| tx.receiver_count() > 0).map(|(t, _)| t.clone()).collect()
    }

    fn missed_of(&self, tenant: &TenantId) {
        let mut tenants = self.lock();
        if tenants.get(tenant).is_some_and(|tx| tx.send(Live::Check).is_err()) {
            tenants.remove(tenant);
        }
    }
}

fn frame(e: &Event) -> Bytes {
    let data = serde_json::to_string(e).unwrap_or_default();
    Bytes::from(format!("id: {}\nevent: {}\ndata: {data}\n\n", e.seq, e.kind))
}

/// The response body of a stream: frames from the subscriber task.
struct StreamBody(mpsc::Receiver<Bytes>);

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// A response body of the chunks sent on `rx`, ending when every sender is dropped.
pub(crate) fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    Body::new(StreamBody(rx))
}

/// Whether `e` takes the stream's right away: its own key revoked (for good), or, as it happens
/// (`live`), its tenant suspended or its person removed from the tenant. A suspension replayed from the past may have been lifted since.
fn ends_access(e: &Event, caller: &Caller, live: bool) -> bool {
    match e.kind.as_str() {
        types::TENANT_SUSPENDED => live,
        types::KEY_REVOKED => match caller.principal() {
            Principal::Key(k) => e.detail.as_ref().and_then(|d| d["id"].as_str()) == Some(k.id.as_str()),
            Principal::Operator | Principal::Person(_) => false,
        },
        types::MEMBER_REMOVED if live => match caller.principal() {
            Principal::Person(p) => e.detail.as_ref().and_then(|d| d["user_id"].as_str()) == Some(p.user.id.as_str()),
            _ => false,
        },
        _ => false,
    }
}

/// Starts a stream of the caller's events with `seq > after`, holding `slot` while it is open.
/// A client that reads nothing for `stalled` while frames wait for it loses its stream.
pub fn stream(
    svc: Arc<Tenantry>,
    hub: Arc<EventHub>,
    caller: Caller,
    after: u64,
    slot: StreamSlot,
    stalled: Duration,
) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let _ = relay(&svc, &hub, &caller, after, &Sender(tx, stalled, Default::default())).await;
        drop(slot);
    });
    channel_body(rx)
}

/// The stream's side of its body: a send that waits at most its stall limit for the client.
struct Sender(mpsc::Sender<Bytes>, Duration, std::sync::atomic::AtomicBool);

/// The stream's first block: a comment, which every client skips. A block holding only `retry:`
/// is taken for an empty message by some (httpx-sse), so the reconnection delay rides on the
/// first event instead.
const OPENING: &[u8] = b": tenantry event stream\n\n";
const RETRY: &str = "retry: 2000\n";

impl Sender {
    /// Sends one event's frame, the first with the reconnection delay.
    async fn event(&self, frame: Bytes) -> Result<(), ()> {
        if self.2.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return self.send(frame).await;
        }
        let mut first = Vec::with_capacity(RETRY.len() + frame.len());
        first.extend_from_slice(RETRY.as_bytes());
        first.extend_from_slice(&frame);
        self.send(Bytes::from(first)).await
    }

    async fn send(&self, frame: Bytes) -> Result<(), ()> {
        match tokio::time::timeout(self.1, self.0.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            // Gone, or not reading: the stream ends and frees its place and connection.
            _ => Err(()),
        }
    }
    async fn closed(&self) {
        self.0.closed().await
    }
}

/// Sends replayed events from the store, `cursor` moving past each, and at the end to the
/// tenant's latest `seq` as read before the replay: every event up to there has been dealt with
/// (sent, or not the key's to see). `live`: the events are recent (a gap or a check while the
/// stream runs), so a suspension among them ends the stream as a live one would.
async fn replay(svc: &Tenantry, caller: &Caller, cursor: &mut u64, tx: &Sender, live: bool) -> Result<(), ()> {
    let latest = svc.last_event_seq(caller).await.map_err(|_| ())?;
    loop {
        let page = svc.events_after(caller, *cursor, REPLAY_PAGE).await.map_err(|_| ())?;
        for e in &page {
            let last = ends_access(e, caller, live);
            if !last && !svc.still_allowed(caller) {
                return Err(());
            }
            tx.event(frame(e)).await?;
            *cursor = e.seq;
            if last {
                return Err(());
            }
        }
        if page.len() < REPLAY_PAGE {
            *cursor = (*cursor).max(latest);
            return Ok(());
        }
    }
}

async fn relay(svc: &Tenantry, hub: &EventHub, caller: &Caller, after: u64, tx: &Sender) -> Result<(), ()> {
    let mut live = hub.subscribe(&caller.tenant().id);
    let mut closing = hub.closing.subscribe();
    let prefix = caller.prefix().cloned();
    let mut cursor = after;
    tx.send(Bytes::from_static(OPENING)).await?;
    replay(svc, caller, &mut cursor, tx, false).await?;
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    loop {
        tokio::select! {
            batch = live.recv() => match batch {
                Ok(Live::Events(events)) => {
                    if events.first().is_some_and(|e| e.seq > cursor + 1) {
                        // Events before these have not come through the hub (yet): the store
                        // has them.
                        replay(svc, caller, &mut cursor, tx, true).await?;
                    }
                    for e in events.iter() {
                        if e.seq <= cursor {
                            continue; // replayed already
                        }
                        cursor = e.seq;
                        // The event that ends the stream's right to read is its last (the
                        // directory may learn of it a moment before or after the event comes);
                        // any other is sent only while the key and tenant are still allowed:
                        // checked before sending, so a key revoked meanwhile gets nothing more.
                        let last = ends_access(e, caller, true);
                        if !last && !svc.still_allowed(caller) {
                            return Ok(());
                        }
                        if e.visible_under(prefix.as_ref()) {
                            tx.event(frame(e)).await?;
                        }
                        if last {
                            return Ok(());
                        }
                    }
                }
                // Events may have been missed, or this stream fell behind the hub: the store
                // has everything, in order.
                Ok(Live::Check) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    replay(svc, caller, &mut cursor, tx, true).await?
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = keepalive.tick() => tx.send(Bytes::from_static(b": keepalive\n\n")).await?,
            _ = recheck.tick() => {}
            _ = closing.changed() => return Ok(()),
            _ = tx.closed() => return Ok(()),
        }
        // A revoked key, or a suspended or archived tenant, ends the stream.
        if !svc.still_allowed(caller) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::caller::RequestFacts;
    use tenantry_core::path::TenantPath;
    use tenantry_core::service::ServiceConfig;
    use tenantry_core::store::Precondition;
    use tenantry_core::time::SystemClock;
    use tenantry_store_sqlite::{OpenOptions, SqliteStore};

    /// The seqs in a stream's frames (`id:` lines) as they arrive, until `n` have come.
    async fn seqs(rx: &mut mpsc::Receiver<Bytes>, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        while out.len() < n {
            let frame = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a frame").expect("open");
            let text = String::from_utf8_lossy(&frame).into_owned();
            out.extend(text.lines().filter_map(|l| l.strip_prefix("id: ")).map(|s| s.parse::<u64>().unwrap()));
        }
        out
    }

    /// Events of one tenant can reach the hub out of order (another node's come through the
    /// store's feed): here the hub, which the store does not feed, is handed the third of three
    /// committed events first, then the first two, then told to check.
    #[tokio::test]
    async fn a_batch_past_the_next_seq_makes_the_stream_read_the_gap_and_nothing_comes_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path(), OpenOptions::default()).unwrap());
        let svc = Tenantry::start(store, ServiceConfig::default(), "operator", Arc::new(SystemClock)).await.unwrap();
        let svc = Arc::new(svc);
        let facts = RequestFacts { bearer: Some("operator".into()), ..RequestFacts::default() };
        let caller = svc.authenticate(facts).await.unwrap();
        let start = svc.last_event_seq(&caller).await.unwrap();
        let hub = Arc::new(EventHub::default());
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let relayed = {
            let (svc, hub, caller) = (svc.clone(), hub.clone(), caller.clone());
            tokio::spawn(async move {
                let _ =
                    relay(&svc, &hub, &caller, start, &Sender(tx, Duration::from_secs(5), Default::default())).await;
            })
        };
        assert_eq!(&rx.recv().await.unwrap()[..], OPENING);
        // Subscribed before the opening was sent; let its first replay (of nothing) finish.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..3 {
            let path = TenantPath::parse(&format!("/f{i}")).unwrap();
            svc.put_file(&caller, path, vec![b'x'], None, Precondition::None).await.unwrap();
        }
        let events = svc.events_after(&caller, start, 10).await.unwrap();
        assert_eq!(events.len(), 3);
        let tenant = caller.tenant().id.clone();
        hub.published(&tenant, &events[2..]);
        assert_eq!(seqs(&mut rx, 3).await, vec![start + 1, start + 2, start + 3]);
        hub.published(&tenant, &events[..2]);
        let path = TenantPath::parse("/f3").unwrap();
        svc.put_file(&caller, path, vec![b'x'], None, Precondition::None).await.unwrap();
        hub.missed();
        // The late batch sends nothing again; the check reads the event the hub never had.
        assert_eq!(seqs(&mut rx, 1).await, vec![start + 4]);
        hub.close();
        relayed.await.unwrap();
    }
}
