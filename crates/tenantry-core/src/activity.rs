//! What the request path counts per tenant: its rate-limit state, its metered usage not yet
//! flushed (with the month's API calls), and its requests since start (for the busiest-tenants
//! metrics). One allocation per tenant, held by the tenant's [`Directory`](crate::directory)
//! entry and reached from a key in the same lookup that authenticates it: with 10,000 tenants
//! every separate per-tenant map was another likely cache miss on each request.

use crate::ids::TenantId;
use crate::ratelimit::{RateBucket, RateDecision};
use crate::usage::{Counters, TenantMeter};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What one node counted for a tenant since it last told the others (several nodes on one
/// database share each tenant's rate limit and monthly allowance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityShare {
    pub tenant: TenantId,
    /// Requests its rate limit let through.
    pub admitted: u64,
    /// API calls it metered.
    pub calls: u64,
}

/// Told what other nodes sharing the store counted. Called from the store's own task: it must
/// not block.
pub trait ActivityFollower: Send + Sync {
    fn counted_elsewhere(&self, shares: &[ActivityShare]);
}

#[derive(Debug, Default)]
pub struct TenantActivity {
    /// Rate and meter under one lock: a request takes it two or three times, uncontended but
    /// for the tenant's own concurrent requests.
    counted: Mutex<Counted>,
    requests: AtomicU64,
    /// Set by the first request refused by the rate limit, cleared by the next one let through.
    limited_run: AtomicBool,
    /// Requests let through and calls metered here, not yet told to other nodes.
    admitted_unshared: AtomicU64,
    calls_unshared: AtomicU64,
}

#[derive(Debug, Default)]
struct Counted {
    rate: RateBucket,
    meter: TenantMeter,
}

impl TenantActivity {
    fn counted(&self) -> std::sync::MutexGuard<'_, Counted> {
        self.counted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request against `per_minute` (see [`RateBucket::check`]).
    pub fn admit(&self, per_minute: u64, now_ms: i64) -> RateDecision {
        let decision = self.counted().rate.check(per_minute, now_ms);
        if decision.allowed {
            self.end_limited_run();
            self.admitted_unshared.fetch_add(1, Ordering::Relaxed);
        }
        decision
    }

    /// Takes what was let through and metered here since the last take: (admitted, calls).
    pub fn take_unshared(&self) -> (u64, u64) {
        (self.admitted_unshared.swap(0, Ordering::Relaxed), self.calls_unshared.swap(0, Ordering::Relaxed))
    }

    /// Hands back what [`take_unshared`](Self::take_unshared) took when it could not be told.
    pub fn restore_unshared(&self, admitted: u64, calls: u64) {
        self.admitted_unshared.fetch_add(admitted, Ordering::Relaxed);
        self.calls_unshared.fetch_add(calls, Ordering::Relaxed);
    }

    /// Counts what other nodes let through (against `per_minute`, if the tenant has a rate
    /// limit) and metered in the month starting at `month_start_ms`.
    pub fn counted_elsewhere(&self, share: &ActivityShare, per_minute: Option<u64>, now_ms: i64, month_start_ms: i64) {
        let mut counted = self.counted();
        if let Some(per_minute) = per_minute {
            counted.rate.admitted_elsewhere(share.admitted, per_minute, now_ms);
        }
        counted.meter.calls_elsewhere(month_start_ms, share.calls);
    }

    /// A request was let through: a run of rate-limited ones, if any, is over.
    pub fn end_limited_run(&self) {
        if self.limited_run.load(Ordering::Relaxed) {
            self.limited_run.store(false, Ordering::Relaxed);
        }
    }

    /// Whether a rate-limited request is the first of a run of them (since a request was last
    /// let through); marks the run begun.
    pub fn first_limited_in_run(&self) -> bool {
        !self.limited_run.swap(true, Ordering::Relaxed)
    }

    /// Meters one request; returns the month's API calls before and after it.
    pub fn record(&self, now_ms: i64, month_start_ms: i64, c: Counters) -> (u64, u64) {
        self.calls_unshared.fetch_add(c.api_calls, Ordering::Relaxed);
        self.counted().meter.record(now_ms, month_start_ms, c)
    }

    /// API calls in the month starting at `month_start_ms`.
    pub fn month_calls(&self, month_start_ms: i64) -> u64 {
        self.counted().meter.month_calls(month_start_ms)
    }

    /// Brings the month's call count up to what the store holds (see
    /// [`TenantMeter::catch_up_month`](crate::usage::TenantMeter::catch_up_month)).
    pub fn catch_up_month(&self, month_start_ms: i64, month_end_ms: i64, stored: u64) {
        self.counted().meter.catch_up_month(month_start_ms, month_end_ms, stored);
    }

    /// Takes the usage not yet flushed, by day.
    pub fn take_pending(&self) -> Vec<(i64, Counters)> {
        self.counted().meter.take().collect()
    }

    /// Hands back usage a flush could not write.
    pub fn restore_pending(&self, day: i64, c: &Counters) {
        self.counted().meter.add(day, c);
    }

    /// Not-yet-flushed usage per day on days `[from_day, to_day)`.
    pub fn pending_by_day(&self, from_day: i64, to_day: i64) -> Vec<(i64, Counters)> {
        self.counted().meter.pending_by_day(from_day, to_day)
    }

    /// Counts a request that named this tenant, answered or refused (for `/metrics`).
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted by [`count_request`](Self::count_request) since start.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}
