//! Noisy neighbours at the edge. Every tenant request passes [`Fairness::enter`] after it is
//! authenticated and before its handler runs; two mechanisms act there.
//!
//! - **An in-flight bound**: each tenant may have at most `max_in_flight_per_tenant` requests
//!   inside handlers at once; more wait here (without using a worker, a reader or the writer)
//!   until one of its own finishes. A tenant holding hundreds of slow requests (large uploads,
//!   heavy searches) therefore occupies a bounded share of the server. The writer shares its
//!   groups between tenants too (see tenantry-store-sqlite's `pool`).
//! - **Read pacing while congested**: cheap reads (a cached 4 KiB GET) spend almost no time in a
//!   handler, so the bound above does not limit them; a tenant flooding the server with them keeps
//!   every worker busy parsing and answering its connections, and other tenants' requests queue
//!   behind. So the server watches its own scheduler: a probe task measures how long a task that
//!   yields waits to run again (the queueing delay any new request sees). While that lag is over
//!   [`LAG_TARGET`] and more than one tenant is active, a *level* (requests per window) is set by
//!   max-min fairness: the tenants under it keep all they ask for; the ones over it are paced to
//!   it (each request waits for its slot, so a closed-loop client's connections idle instead of
//!   competing for the workers). The level falls while the lag stays high, but never below an
//!   equal share of what the server served, and rises again once the lag is back under the
//!   target; it is lifted when nobody reaches it. A tenant alone is never paced, and neither is
//!   one under [`MIN_PACED_PER_SEC`]. Waiting happens before a slot of the in-flight bound is
//!   taken, so a paced request holds nothing. Only GET and HEAD are counted and paced (see
//!   [`Fairness::enter`] for why writes are not).
//!
//! The policy ([`Pacing`]) is pure (time passed in) and unit-tested; [`Fairness`] wraps it with
//! the clock, the semaphores and the probe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantry_core::ids::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Length of a counting window.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Scheduler lag above which the server counts as congested.
pub const LAG_TARGET: Duration = Duration::from_millis(1);
/// A tenant is never paced below this rate.
pub const MIN_PACED_PER_SEC: u64 = 500;
/// While congested, the level aims at this fraction of what was served in the last window.
const DECREASE: f64 = 0.8;
/// While not congested, the level grows by this factor per window.
const INCREASE: f64 = 1.1;
/// How far ahead of its pace a tenant may run before it waits: bursts of up to half a window's
/// worth of its level go through at once, so a light tenant's bursts never wait.
const TOLERANCE: Duration = Duration::from_millis(50);
/// The longest one request is held back. Pacing shapes clients that wait for their answers (as
/// nearly all do); a client opening ever more connections instead meets the connection cap and
/// its tier's rate limit.
const MAX_WAIT: Duration = Duration::from_millis(250);
/// How often the probe samples the scheduler's lag.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// One tenant's accounting.
#[derive(Debug, Default)]
struct Share {
    this_window: u64,
    last_window: u64,
    /// Paced slot accounting (GCRA): the theoretical time of the tenant's next request, in µs.
    tat_us: u64,
}

/// The pacing policy: counts per window, the level, and each tenant's next slot.
#[derive(Debug)]
pub struct Pacing {
    window_us: u64,
    window_start_us: u64,
    /// Requests per window a tenant may make while set; `None` while nobody is paced.
    level: Option<f64>,
    shares: HashMap<TenantId, Share>,
    paced: u64,
}

impl Pacing {
    pub fn new(window: Duration) -> Pacing {
        Pacing {
            window_us: window.as_micros().max(1) as u64,
            window_start_us: 0,
            level: None,
            shares: HashMap::new(),
            paced: 0,
        }
    }

    /// The current level in requests per second (`None`: nobody is paced).
    pub fn level_per_sec(&self) -> Option<f64> {
        self.level.map(|l| l * 1e6 / self.window_us as f64)
    }

    /// Requests that were made to wait so far.
    pub fn paced(&self) -> u64 {
        self.paced
    }

    /// Counts one request of `tenant` at `now_us` and returns how long it must wait first.
    /// `lag_us` is the largest scheduler lag seen since the current window began; it is only
    /// read when a window closes.
    pub fn admit(&mut self, tenant: &TenantId, now_us: u64, lag_us: u64) -> Duration {
        if now_us >= self.window_start_us + self.window_us {
            self.close_window(now_us, lag_us);
        }
        let min_per_window = MIN_PACED_PER_SEC as f64 * self.window_us as f64 / 1e6;
        let level = self.level;
        let window_us = self.window_us;
        // Looked up before inserting: the hot path allocates no key.
        if !self.shares.contains_key(tenant) {
            self.shares.insert(tenant.clone(), Share::default());
        }
        let share = self.shares.get_mut(tenant).expect("inserted above");
        share.this_window += 1;
        let Some(level) = level else { return Duration::ZERO };
        let interval_us = (window_us as f64 / level.max(min_per_window)).max(1.0) as u64;
        let (tolerance_us, max_wait_us) = (TOLERANCE.as_micros() as u64, MAX_WAIT.as_micros() as u64);
        let slot = share.tat_us.max(now_us).min(now_us + tolerance_us + max_wait_us);
        let wait_us = slot.saturating_sub(now_us + tolerance_us);
        share.tat_us = slot + interval_us;
        if wait_us > 0 {
            self.paced += 1;
        }
        Duration::from_micros(wait_us)
    }

    fn close_window(&mut self, now_us: u64, lag_us: u64) {
        let idle_between = now_us >= self.window_start_us + 2 * self.window_us;
        let (mut active, mut total, mut busiest) = (0usize, 0u64, 0u64);
        let mut counts = Vec::new();
        self.shares.retain(|_, s| {
            s.last_window = if idle_between { 0 } else { s.this_window };
            s.this_window = 0;
            if s.last_window > 0 {
                active += 1;
                total += s.last_window;
                busiest = busiest.max(s.last_window);
                counts.push(s.last_window);
            }
            // Forget tenants that made no request for a window and are not mid-pace.
            s.last_window > 0 || s.tat_us > now_us
        });
        self.window_start_us = now_us - now_us % self.window_us;
        let congested = lag_us > LAG_TARGET.as_micros() as u64 && active >= 2;
        self.level = if congested {
            // Counts are what tenants asked for; what was served is that under the level.
            let served = match self.level {
                Some(l) => counts.iter().map(|&c| (c as f64).min(l)).sum(),
                None => total as f64,
            };
            let fair = water_level(&mut counts, served * DECREASE);
            let equal = served / active as f64;
            let next = fair.max(equal);
            Some(self.level.map_or(next, |l| l.min(next).max(equal)))
        } else {
            match self.level {
                // A tenant alone has nobody to be fair to: lifted at once. (Rising from a level
                // set among 10,000 readers took seconds, pacing a lone reader at the floor.)
                Some(l) if active >= 2 && l * INCREASE < busiest as f64 * 2.0 => Some(l * INCREASE),
                _ => None,
            }
        };
    }
}

/// Max-min fairness: the level `l` at which `sum(min(count, l)) == target` (the largest count
/// when the target covers everyone).
fn water_level(counts: &mut [u64], target: f64) -> f64 {
    counts.sort_unstable();
    let mut left = target;
    for (i, &c) in counts.iter().enumerate() {
        let even = left / (counts.len() - i) as f64;
        if (c as f64) >= even {
            return even;
        }
        left -= c as f64;
    }
    counts.last().copied().unwrap_or(0) as f64
}

struct Tenants {
    /// Per tenant: its in-flight slots, and its places (in flight or waiting for a slot).
    slots: HashMap<TenantId, (Arc<Semaphore>, Arc<Semaphore>)>,
    pacing: Pacing,
}

/// A request let in: its in-flight slot and its place, freed when dropped.
#[derive(Debug)]
pub struct Entered {
    _slot: OwnedSemaphorePermit,
    _place: OwnedSemaphorePermit,
}

/// A tenant already has [`Fairness::places`] requests in flight or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyWaiting(pub usize);

/// The in-flight bounds and the pacing of every tenant, with the scheduler probe's readings.
pub struct Fairness {
    per_tenant: usize,
    origin: Instant,
    /// One lock for both, taken once per request.
    tenants: Mutex<Tenants>,
    /// The largest lag the probe saw in the current window, in µs (reset when a window closes).
    window_lag_us: AtomicU64,
    /// The largest lag of the last closed window (for `/metrics`).
    last_lag_us: AtomicU64,
}

impl Fairness {
    pub fn new(per_tenant: usize) -> Fairness {
        Fairness {
            per_tenant: per_tenant.max(1),
            origin: Instant::now(),
            tenants: Mutex::new(Tenants { slots: HashMap::new(), pacing: Pacing::new(WINDOW) }),
            window_lag_us: AtomicU64::new(0),
            last_lag_us: AtomicU64::new(0),
        }
    }

    /// Waits for the tenant's pace (while the server is congested; reads only, see below) and
    /// then for one of its in-flight slots; the slot is freed when the permit is dropped.
    ///
    /// Writes are not paced: what a write costs is mostly the writer's time, and the writer
    /// already shares its groups between tenants, so a write flood does not delay another
    /// tenant's writes (measured: bench/fairness.sh) and pacing it would only idle the writer.
    ///
    /// A tenant may have [`places`](Self::places) requests in flight or waiting at once; beyond
    /// that a request is refused at once: each waiting request holds a connection, and one
    /// tenant must not hold every connection the server may open.
    pub async fn enter(&self, tenant: &TenantId, read: bool) -> Result<Entered, TooManyWaiting> {
        let (wait, sem, place) = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            // A place first: a request refused for want of one is not counted in the pacing.
            let places = self.places();
            let (sem, places) = match tenants.slots.get(tenant) {
                Some(pair) => pair.clone(),
                None => tenants
                    .slots
                    .entry(tenant.clone())
                    .or_insert_with(|| (Arc::new(Semaphore::new(self.per_tenant)), Arc::new(Semaphore::new(places))))
                    .clone(),
            };
            let place = places.try_acquire_owned().map_err(|_| TooManyWaiting(self.places()))?;
            let wait = if read {
                let pacing = &mut tenants.pacing;
                let before = pacing.window_start_us;
                let now_us = self.origin.elapsed().as_micros() as u64;
                let wait = pacing.admit(tenant, now_us, self.window_lag_us.load(Ordering::Relaxed));
                if pacing.window_start_us != before {
                    self.last_lag_us.store(self.window_lag_us.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                }
                wait
            } else {
                Duration::ZERO
            };
            (wait, sem, place)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // The semaphore is never closed, so acquiring cannot fail.
        let slot = sem.acquire_owned().await.expect("the in-flight semaphore is never closed");
        Ok(Entered { _slot: slot, _place: place })
    }

    /// Requests one tenant may have in flight or waiting at once: four times its in-flight
    /// bound, at least 256.
    pub fn places(&self) -> usize {
        self.per_tenant.saturating_mul(4).max(256)
    }

    /// Requests of `tenant` inside handlers now (for tests and metrics).
    pub fn in_flight(&self, tenant: &TenantId) -> usize {
        let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants.slots.get(tenant).map_or(0, |(s, _)| self.per_tenant - s.available_permits())
    }

    /// Measures the scheduler's lag for as long as the runtime runs: every few milliseconds, how
    /// long a task that yields waits to be polled again. Outside a runtime (a router built only
    /// to read its route table) there is nothing to measure and no probe.
    pub fn spawn_probe(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let this = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let start = Instant::now();
                tokio::task::yield_now().await;
                let lag = start.elapsed().as_micros() as u64;
                let Some(this) = this.upgrade() else { return };
                this.window_lag_us.fetch_max(lag, Ordering::Relaxed);
            }
        });
    }

    /// Prometheus text: the scheduler lag, the pacing level and how many requests waited.
    pub fn render(&self) -> String {
        let (level, paced) = {
            let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            (tenants.pacing.level_per_sec(), tenants.pacing.paced())
        };
        format!(
            "# HELP tenantry_scheduler_lag_seconds Largest wait of a ready task in the last {} ms window.\n\
             # TYPE tenantry_scheduler_lag_seconds gauge\ntenantry_scheduler_lag_seconds {}\n\
             # HELP tenantry_pacing_level_requests_per_second Rate the busiest tenants are paced to while the server is congested (0: nobody is paced).\n\
             # TYPE tenantry_pacing_level_requests_per_second gauge\ntenantry_pacing_level_requests_per_second {}\n\
             # HELP tenantry_paced_requests_total Requests held back to pace a tenant over its fair share.\n\
             # TYPE tenantry_paced_requests_total counter\ntenantry_paced_requests_total {paced}\n",
            WINDOW.as_millis(),
            self.last_lag_us.load(Ordering::Relaxed) as f64 / 1e6,
            level.map_or(0.0, f64::round),
        )
    }
}

/// The default bound: 16 per core, at least 32.
pub fn default_per_tenant() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(16).max(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_beyond_its_bound_waits_while_another_tenant_gets_in_at_once() {
        let f = Arc::new(Fairness::new(2));
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let p1 = f.enter(&a, true).await.unwrap();
        let _p2 = f.enter(&a, true).await.unwrap();
        assert_eq!(f.in_flight(&a), 2);
        let third = {
            let (f, a) = (f.clone(), a.clone());
            tokio::spawn(async move { f.enter(&a, true).await.unwrap() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "the third request of a waits");
        let _pb = tokio::time::timeout(std::time::Duration::from_millis(50), f.enter(&b, true))
            .await
            .expect("b gets in")
            .unwrap();
        drop(p1);
        let _p3 = tokio::time::timeout(std::time::Duration::from_secs(1), third).await.unwrap().unwrap();
        assert_eq!(f.in_flight(&a), 2);
    }

    #[tokio::test]
    async fn a_tenant_with_all_its_places_taken_is_refused_at_once_and_others_are_not() {
        let f = Arc::new(Fairness::new(2));
        let (a, b) = (TenantId::generate(), TenantId::generate());
        assert_eq!(f.places(), 256);
        let mut held = vec![f.enter(&a, false).await.unwrap(), f.enter(&a, false).await.unwrap()];
        // 254 more wait for a's two slots, each holding a place.
        let waiting: Vec<_> = (0..254)
            .map(|_| {
                let (f, a) = (f.clone(), a.clone());
                tokio::spawn(async move { f.enter(&a, false).await.map(drop) })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(f.enter(&a, false).await.unwrap_err(), TooManyWaiting(256));
        assert!(f.enter(&b, false).await.is_ok(), "another tenant has places of its own");
        held.clear();
        for w in waiting {
            tokio::time::timeout(std::time::Duration::from_secs(5), w).await.unwrap().unwrap().unwrap();
        }
        assert!(f.enter(&a, false).await.is_ok(), "places given back");
    }

    const MS: u64 = 1000;
    const CONGESTED: u64 = 5 * MS;

    /// Drives one 100 ms window: `a` and `b` requests spread evenly, all at the given lag.
    /// Returns the total wait each tenant was given.
    fn window(p: &mut Pacing, start_us: u64, a: (&TenantId, u64), b: (&TenantId, u64), lag: u64) -> (u64, u64) {
        let mut waits = (0, 0);
        for (i, (t, n)) in [a, b].into_iter().enumerate() {
            for k in 0..n {
                let w = p.admit(t, start_us + k * 100 * MS / n.max(1), lag).as_micros() as u64;
                if i == 0 {
                    waits.0 += w
                } else {
                    waits.1 += w
                }
            }
        }
        waits
    }

    #[test]
    fn nobody_is_paced_while_the_scheduler_keeps_up_or_a_tenant_is_alone() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let mut p = Pacing::new(WINDOW);
        for w in 0..20 {
            assert_eq!(window(&mut p, w * 100 * MS, (&a, 3000), (&b, 300), 100), (0, 0), "not congested");
        }
        let mut alone = Pacing::new(WINDOW);
        let c = TenantId::generate();
        for w in 0..20 {
            let waits = window(&mut alone, w * 100 * MS, (&a, 3000), (&c, 0), CONGESTED);
            assert_eq!(waits, (0, 0), "a tenant alone is never paced");
        }
        assert_eq!(alone.level_per_sec(), None);
        // Paced while congested among many, then alone: lifted in the next window, not seconds later.
        let mut after = Pacing::new(WINDOW);
        for w in 0..5 {
            window(&mut after, w * 100 * MS, (&a, 3000), (&b, 300), CONGESTED);
        }
        assert!(after.level_per_sec().is_some(), "paced while congested");
        window(&mut after, 500 * MS, (&a, 3000), (&c, 0), 100);
        // The window a was alone in closes as the next begins: no pacing from then on.
        assert_eq!(window(&mut after, 600 * MS, (&a, 3000), (&c, 0), 100), (0, 0));
        assert_eq!(after.level_per_sec(), None, "a tenant left alone is not paced");
    }

    #[test]
    fn while_congested_the_flooding_tenant_is_paced_down_to_an_equal_share_and_the_quiet_one_never() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let mut p = Pacing::new(WINDOW);
        window(&mut p, 0, (&a, 3000), (&b, 300), CONGESTED);
        let mut level = f64::MAX;
        for w in 1..30 {
            let (_, waited_b) = window(&mut p, w * 100 * MS, (&a, 3000), (&b, 300), CONGESTED);
            assert_eq!(waited_b, 0, "window {w}: b asks for less than the level and never waits");
            let now = p.level_per_sec().expect("paced while congested");
            assert!(now <= level, "the level only falls while congested: {now} after {level}");
            level = now;
        }
        // a keeps asking for 3,000 per window but is served at the level; the equal share of
        // what is served bounds the fall: the level settles at b's rate, 3,000/s.
        assert!((3000.0..3100.0).contains(&level), "settled at {level}");
        assert!(p.paced() > 0);
    }

    #[test]
    fn the_level_rises_once_the_lag_is_back_under_the_target_and_is_lifted_when_nobody_reaches_it() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let mut p = Pacing::new(WINDOW);
        for w in 0..10 {
            window(&mut p, w * 100 * MS, (&a, 3000), (&b, 300), CONGESTED);
        }
        let low = p.level_per_sec().unwrap();
        let mut w = 10;
        let mut last = low;
        while let Some(level) = p.level_per_sec() {
            assert!(level >= last, "rises while not congested");
            last = level;
            window(&mut p, w * 100 * MS, (&a, 300), (&b, 300), 0);
            w += 1;
            assert!(w < 100, "the level was never lifted");
        }
        let (wa, wb) = window(&mut p, w * 100 * MS, (&a, 3000), (&b, 300), 0);
        assert_eq!((wa, wb), (0, 0));
    }

    #[test]
    fn many_light_tenants_are_not_paced_and_the_heavy_one_keeps_what_they_leave() {
        let tenants: Vec<TenantId> = (0..50).map(|_| TenantId::generate()).collect();
        let heavy = TenantId::generate();
        let mut p = Pacing::new(WINDOW);
        let mut light_waits = 0;
        for w in 0..10u64 {
            let start = w * 100 * MS;
            for (i, t) in tenants.iter().enumerate() {
                for k in 0..10u64 {
                    light_waits += p.admit(t, start + (i as u64 * 10 + k) * 190, CONGESTED).as_micros() as u64;
                }
            }
            for k in 0..2000u64 {
                p.admit(&heavy, start + k * 50, CONGESTED);
            }
            if w == 0 {
                // 50 × 10 + 2,000 were served, 80% of it is 2,000: the heavy tenant's level is
                // what the light ones leave of that (1,500 per window), not an equal share of 51.
                p.admit(&heavy, 100 * MS, CONGESTED);
                assert_eq!(p.level_per_sec(), Some(15_000.0));
            }
        }
        assert_eq!(light_waits, 0, "tenants at 100/s, even in bursts of 10, never wait");
        assert!(p.paced() > 0);
    }

    #[test]
    fn a_paced_tenant_waits_for_its_slot_and_never_longer_than_the_cap() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let mut p = Pacing::new(WINDOW);
        window(&mut p, 0, (&a, 3000), (&b, 300), CONGESTED);
        let start = 100 * MS;
        let waits: Vec<Duration> = (0..10_000).map(|_| p.admit(&a, start, CONGESTED)).collect();
        assert_eq!(waits[0], Duration::ZERO, "the burst goes at once");
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "later requests wait longer");
        assert_eq!(*waits.last().unwrap(), MAX_WAIT);
    }

    #[test]
    fn water_level_is_max_min_fair() {
        assert_eq!(water_level(&mut [100, 10, 10], 60.0), 40.0);
        assert_eq!(water_level(&mut [100, 10, 10], 30.0), 10.0);
        assert_eq!(water_level(&mut [5, 5], 100.0), 5.0);
        assert_eq!(water_level(&mut [], 10.0), 0.0);
    }
}
