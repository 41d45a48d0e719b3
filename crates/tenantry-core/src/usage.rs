//! Usage metering (API.md §8): per tenant and per UTC day, counted in memory on the request path
//! and flushed to the store in batches (no write per request). The current month's API calls are
//! also kept in memory per tenant, so the monthly allowance costs no database round trip.

use crate::ids::TenantId;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

pub const DAY_MS: i64 = 86_400_000;

/// Counted request usage of one tenant over some period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counters {
    pub api_calls: u64,
    pub reads: u64,
    pub writes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub searches: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.api_calls += o.api_calls;
        self.reads += o.reads;
        self.writes += o.writes;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.searches += o.searches;
    }
}

/// One tenant's metering: a single map entry, so a request costs one lookup and no allocation
/// once its tenant has been seen (with 10,000 tenants each lookup is a likely cache miss).
#[derive(Default)]
struct TenantMeter {
    /// The month the call count is for (its first millisecond) and API calls in it, flushed and
    /// pending.
    month: (i64, u64),
    /// Not yet flushed, by day number since the epoch (usually one day; two around midnight).
    pending: Vec<(i64, Counters)>,
}

impl TenantMeter {
    fn add(&mut self, day: i64, c: &Counters) {
        match self.pending.iter_mut().find(|(d, _)| *d == day) {
            Some((_, sum)) => sum.add(c),
            None => self.pending.push((day, *c)),
        }
    }
}

#[derive(Default)]
pub struct Meter {
    tenants: Mutex<HashMap<TenantId, TenantMeter>>,
}

impl Meter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, TenantMeter>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seeds the month's call counts from the store at start (`month_start_ms` names the month).
    pub fn seed_month(&self, month_start_ms: i64, calls: Vec<(TenantId, u64)>) {
        let mut tenants = self.lock();
        for (t, n) in calls {
            tenants.entry(t).or_default().month = (month_start_ms, n);
        }
    }

    /// API calls of `tenant` in the month starting at `month_start_ms`.
    pub fn month_calls(&self, tenant: &TenantId, month_start_ms: i64) -> u64 {
        match self.lock().get(tenant) {
            Some(TenantMeter { month: (m, n), .. }) if *m == month_start_ms => *n,
            _ => 0,
        }
    }

    /// Counts one request; returns the tenant's API calls this month, before and after.
    pub fn record(&self, tenant: &TenantId, now_ms: i64, month_start_ms: i64, c: Counters) -> (u64, u64) {
        let mut tenants = self.lock();
        let meter = match tenants.get_mut(tenant) {
            Some(m) => m,
            None => tenants.entry(tenant.clone()).or_default(),
        };
        meter.add(now_ms.div_euclid(DAY_MS), &c);
        if meter.month.0 != month_start_ms {
            meter.month = (month_start_ms, 0); // a new month begins at zero
        }
        let before = meter.month.1;
        meter.month.1 += c.api_calls;
        (before, meter.month.1)
    }

    /// Takes everything not yet flushed. On a failed flush, hand it back with [`restore`](Self::restore).
    pub fn take(&self) -> Vec<(TenantId, i64, Counters)> {
        let mut out = Vec::new();
        for (t, m) in self.lock().iter_mut() {
            out.extend(m.pending.drain(..).map(|(d, c)| (t.clone(), d, c)));
        }
        out
    }

    pub fn restore(&self, batch: Vec<(TenantId, i64, Counters)>) {
        let mut tenants = self.lock();
        for (t, d, c) in batch {
            tenants.entry(t).or_default().add(d, &c);
        }
    }

    /// Not-yet-flushed usage of `tenant` per day on days `[from_day, to_day)`.
    pub fn pending_by_day(&self, tenant: &TenantId, from_day: i64, to_day: i64) -> Vec<(i64, Counters)> {
        let tenants = self.lock();
        let pending = tenants.get(tenant).map(|m| m.pending.as_slice()).unwrap_or_default();
        pending.iter().filter(|(d, _)| *d >= from_day && *d < to_day).copied().collect()
    }

    /// Not-yet-flushed usage of `tenant` on days `[from_day, to_day)`.
    pub fn pending(&self, tenant: &TenantId, from_day: i64, to_day: i64) -> Counters {
        let mut sum = Counters::default();
        for (_, c) in self.pending_by_day(tenant, from_day, to_day) {
            sum.add(&c);
        }
        sum
    }

    pub fn forget(&self, tenant: &TenantId) {
        self.lock().remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_day_and_month_and_taken_once() {
        let m = Meter::default();
        let t = TenantId::generate();
        let call = Counters { api_calls: 1, reads: 1, bytes_out: 10, ..Default::default() };
        m.record(&t, 5 * DAY_MS + 1, 0, call);
        m.record(&t, 5 * DAY_MS + 2, 0, call);
        m.record(&t, 6 * DAY_MS, 0, call);
        assert_eq!(m.month_calls(&t, 0), 3);
        assert_eq!(m.pending(&t, 5, 6).api_calls, 2);
        assert_eq!(m.pending(&t, 0, 100).bytes_out, 30);
        let batch = m.take();
        assert_eq!(batch.len(), 2);
        assert_eq!(m.pending(&t, 0, 100), Counters::default());
        m.restore(batch);
        assert_eq!(m.pending(&t, 0, 100).api_calls, 3);
        // A new month starts from zero.
        m.record(&t, 40 * DAY_MS, 31 * DAY_MS, call);
        assert_eq!(m.month_calls(&t, 31 * DAY_MS), 1);
        assert_eq!(m.month_calls(&t, 0), 0);
    }
}
