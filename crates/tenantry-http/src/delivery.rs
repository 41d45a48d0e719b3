//! Webhook delivery: the worker that drains the outbox (at least once: a row leaves the outbox
//! only after its attempt is recorded), and the resolvers that keep every connection off private
//! networks. Deliveries resolve names through [`GuardedResolver`], which drops refused addresses
//! from the answer, so the check applies to the address actually connected to, not to an
//! earlier lookup that DNS could change; literal IPs are checked before sending; redirects are
//! never followed and proxies from the environment are ignored.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_core::events::{Event, EventSink};
use tenantry_core::ids::TenantId;
use tenantry_core::service::{AttemptResult, Tenantry};
use tenantry_core::store::DueDelivery;
use tenantry_core::webhook::{self, HostResolver};
use tokio::sync::{watch, Notify};

/// The system resolver, used to vet a webhook's host at creation.
pub struct SystemResolver;

#[async_trait::async_trait]
impl HostResolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> tenantry_core::Result<Vec<std::net::IpAddr>> {
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| tenantry_core::Error::invalid_request(format!("webhook host {host} does not resolve: {e}")))?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

/// reqwest's resolver for deliveries: the system's answer minus refused addresses.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                addrs.iter().copied().filter(|a| webhook::check_address(a.ip(), allow_private).is_ok()).collect();
            if allowed.is_empty() {
                let why = match addrs.first() {
                    Some(a) => webhook::check_address(a.ip(), false).err().map(|e| e.message).unwrap_or_default(),
                    None => format!("{host} does not resolve"),
                };
                return Err(why.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

struct Wake(Arc<Notify>);

impl EventSink for Wake {
    fn published(&self, _tenant: &TenantId, _events: &[Event]) {
        self.0.notify_one();
    }
}

/// Webhook attempts since the process started, for `/metrics` (process-wide: one server per
/// process in production).
pub static ATTEMPTS_DELIVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static ATTEMPTS_FAILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Deliveries made at once, and at most this many of one tenant: a tenant whose receiver hangs
/// until the timeout holds a few slots, never the worker.
const CONCURRENCY: usize = 32;
const PER_TENANT: usize = 4;
/// Longest sleep when nothing is due (new events wake the worker earlier).
const IDLE: Duration = Duration::from_secs(5);

/// Starts the worker; it stops when `shutdown` turns true, after the attempts in flight.
pub fn spawn(svc: Arc<Tenantry>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let wake = Arc::new(Notify::new());
    svc.add_event_sink(Arc::new(Wake(wake.clone())));
    let policy = svc.webhook_policy().clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_millis(policy.timeout_ms))
        .connect_timeout(Duration::from_millis(policy.timeout_ms.min(5_000)))
        .user_agent(concat!("tenantry-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { allow_private: policy.allow_private_networks }))
        .build()
        .expect("the webhook client builds");
    tokio::spawn(async move {
        // Deliveries in flight, by (tenant, id) (ids are per database: a dedicated tenant's are its
        // own) and by tenant: a due row stays in the outbox until its attempt is recorded, so the
        // next fetch sees it again and must skip it.
        let mut in_flight: HashSet<(TenantId, u64)> = HashSet::new();
        let mut per_tenant: HashMap<TenantId, usize> = HashMap::new();
        let mut running: tokio::task::JoinSet<(u64, TenantId)> = tokio::task::JoinSet::new();
        loop {
            if *shutdown.borrow() {
                while running.join_next().await.is_some() {}
                return;
            }
            let mut started = 0;
            if running.len() < CONCURRENCY {
                let due = match svc.due_deliveries(CONCURRENCY * 4, PER_TENANT).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!("webhook outbox unreadable: {}", e.message);
                        Vec::new()
                    }
                };
                for d in due {
                    if running.len() >= CONCURRENCY {
                        break;
                    }
                    let busy = per_tenant.get(&d.tenant_id).copied().unwrap_or(0);
                    if in_flight.contains(&(d.tenant_id.clone(), d.id)) || busy >= PER_TENANT {
                        continue;
                    }
                    // Another node's worker may have found it due too: one of them claims it.
                    match svc.claim_delivery(&d).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::error!(delivery = d.id, "could not claim a webhook delivery: {}", e.message);
                            continue;
                        }
                    }
                    in_flight.insert((d.tenant_id.clone(), d.id));
                    started += 1;
                    *per_tenant.entry(d.tenant_id.clone()).or_default() += 1;
                    let (svc, client) = (svc.clone(), client.clone());
                    running.spawn(async move {
                        let result = deliver(&client, &d, svc.config().webhooks.allow_private_networks).await;
                        let report = svc.attempt_report(&d, result);
                        let counter = if report.delivered { &ATTEMPTS_DELIVERED } else { &ATTEMPTS_FAILED };
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Err(e) = svc.record_attempt(report).await {
                            tracing::error!(delivery = d.id, "could not record a webhook attempt: {}", e.message);
                        }
                        (d.id, d.tenant_id)
                    });
                }
            }
            let wait = match svc.next_delivery_at().await {
                Ok(Some(at)) => Duration::from_millis((at.millis() - svc.now().millis()).clamp(0, 5_000) as u64),
                _ => IDLE,
            };
            // With attempts in flight and nothing new startable (all slots or all tenants' shares
            // busy), wait for one to finish (or a new event) rather than polling the outbox.
            let wait = if !running.is_empty() && (started == 0 || running.len() >= CONCURRENCY) {
                IDLE
            } else {
                wait.max(Duration::from_millis(20))
            };
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    // A panicked attempt keeps its id in `in_flight` (no second delivery until a
                    // restart retries it), which is the safe side.
                    if let Ok((id, tenant)) = done {
                        in_flight.remove(&(tenant.clone(), id));
                        if let Some(n) = per_tenant.get_mut(&tenant) {
                            *n -= 1;
                            if *n == 0 {
                                per_tenant.remove(&tenant);
                            }
                        }
                    }
                }
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    })
}

async fn deliver(client: &reqwest::Client, d: &DueDelivery, allow_private: bool) -> AttemptResult {
    let started = Instant::now();
    let failed = |error: String| AttemptResult { status: None, latency_ms: 0, error: Some(error) };
    let url = match webhook::parse_target(&d.url) {
        Ok(u) => u,
        Err(e) => return failed(e.message),
    };
    if let Some(ip) = webhook::literal_address(&url) {
        if let Err(e) = webhook::check_address(ip, allow_private) {
            return failed(e.message);
        }
    }
    let body = d.body.as_bytes().to_vec();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let signature = webhook::signature(&d.secret, now as i64, &body);
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header(webhook::SIGNATURE_HEADER, signature)
        .header("tenantry-event", d.event_type.as_str())
        .header("tenantry-delivery", d.id.to_string())
        .header("tenantry-webhook-id", d.webhook_id.as_str())
        .body(body)
        .send()
        .await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match sent {
        Ok(res) => {
            let status = res.status().as_u16();
            let error = (!res.status().is_success()).then(|| format!("the receiver answered {status}"));
            AttemptResult { status: Some(status), latency_ms, error }
        }
        Err(e) => {
            // reqwest's Display omits the cause (the resolver's refusal, a refused connection).
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            AttemptResult { status: None, latency_ms, error: Some(msg) }
        }
    }
}
