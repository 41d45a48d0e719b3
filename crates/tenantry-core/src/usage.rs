//! Usage metering (API.md §8): per tenant and per UTC day, counted in memory on the request path
//! and flushed to the store in batches (no write per request). The current month's API calls are
//! also kept in memory per tenant, so the monthly allowance costs no database round trip.

use serde::Serialize;

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

/// One tenant's metering, kept with its other request-path state (`activity::TenantActivity`):
/// a request costs no lookup and no allocation here.
#[derive(Debug, Default)]
pub struct TenantMeter {
    /// The month the call count is for (its first millisecond) and API calls in it, flushed and
    /// pending.
    month: (i64, u64),
    /// Not yet flushed, by day number since the epoch: usually one day, held inline; the rest
    /// (around midnight, or after failed flushes) in `earlier`.
    today: Option<(i64, Counters)>,
    earlier: Vec<(i64, Counters)>,
}

impl TenantMeter {
    /// Adds `c` to the pending usage of `day` (also how a failed flush is handed back).
    pub fn add(&mut self, day: i64, c: &Counters) {
        if let Some((d, sum)) = &mut self.today {
            if *d == day {
                sum.add(c);
                return;
            }
        } else {
            self.today = Some((day, *c));
            return;
        }
        match self.earlier.iter_mut().find(|(d, _)| *d == day) {
            Some((_, sum)) => sum.add(c),
            None => self.earlier.push((day, *c)),
        }
    }

    /// Brings the count of the month `[month_start_ms, month_end_ms)` up to at least `stored`
    /// (the calls the store holds for it: every node's flushed usage) plus this node's calls not
    /// flushed yet; never lowers it. At start that seeds it; after this node may have missed
    /// other nodes' counts (its feed was down), it recovers all but what they have not flushed.
    pub fn catch_up_month(&mut self, month_start_ms: i64, month_end_ms: i64, stored: u64) {
        if month_start_ms < self.month.0 {
            return; // the month turned while the store was read: the count is of the new one
        }
        let unflushed = self.pending(month_start_ms.div_euclid(DAY_MS), month_end_ms.div_euclid(DAY_MS)).api_calls;
        if self.month.0 != month_start_ms {
            self.month = (month_start_ms, 0);
        }
        self.month.1 = self.month.1.max(stored + unflushed);
    }

    /// API calls in the month starting at `month_start_ms`.
    pub fn month_calls(&self, month_start_ms: i64) -> u64 {
        if self.month.0 == month_start_ms {
            self.month.1
        } else {
            0
        }
    }

    /// Counts one request; returns the API calls this month, before and after.
    pub fn record(&mut self, now_ms: i64, month_start_ms: i64, c: Counters) -> (u64, u64) {
        self.add(now_ms.div_euclid(DAY_MS), &c);
        if self.month.0 != month_start_ms {
            self.month = (month_start_ms, 0); // a new month begins at zero
        }
        let before = self.month.1;
        self.month.1 += c.api_calls;
        (before, self.month.1)
    }

    /// Adds `calls` other nodes metered in the month starting at `month_start_ms` (they flush
    /// their own usage; this only keeps the allowance whole across nodes).
    pub fn calls_elsewhere(&mut self, month_start_ms: i64, calls: u64) {
        if self.month.0 != month_start_ms {
            self.month = (month_start_ms, 0);
        }
        self.month.1 += calls;
    }

    /// Takes everything not yet flushed, by day. On a failed flush, hand it back with
    /// [`add`](Self::add).
    pub fn take(&mut self) -> impl Iterator<Item = (i64, Counters)> + '_ {
        self.today.take().into_iter().chain(self.earlier.drain(..))
    }

    /// Not-yet-flushed usage per day on days `[from_day, to_day)`.
    pub fn pending_by_day(&self, from_day: i64, to_day: i64) -> Vec<(i64, Counters)> {
        let all = self.today.iter().chain(self.earlier.iter());
        all.filter(|(d, _)| *d >= from_day && *d < to_day).copied().collect()
    }

    /// Not-yet-flushed usage on days `[from_day, to_day)`.
    pub fn pending(&self, from_day: i64, to_day: i64) -> Counters {
        let mut sum = Counters::default();
        for (_, c) in self.pending_by_day(from_day, to_day) {
            sum.add(&c);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catching_up_a_month_counts_the_store_and_what_is_unflushed_and_never_lowers() {
        let mut m = TenantMeter::default();
        let call = Counters { api_calls: 1, ..Default::default() };
        let (month, end) = (31 * DAY_MS, 59 * DAY_MS);
        m.catch_up_month(month, end, 40);
        assert_eq!(m.month_calls(month), 40, "seeded at start");
        m.record(month + 5, month, call);
        m.record(month + 6, month, call);
        // Not flushed yet: 2 calls of this node; the store holds 50 (others' flushes meanwhile).
        m.catch_up_month(month, end, 50);
        assert_eq!(m.month_calls(month), 52);
        // Once flushed, the store holds them: counted once.
        let _ = m.take().count();
        m.catch_up_month(month, end, 52);
        assert_eq!(m.month_calls(month), 52);
        // Heard from other nodes beyond what they flushed: kept.
        m.calls_elsewhere(month, 10);
        m.catch_up_month(month, end, 55);
        assert_eq!(m.month_calls(month), 62);
        // A new month starts from the store's count for it.
        m.catch_up_month(end, 90 * DAY_MS, 3);
        assert_eq!(m.month_calls(end), 3);
        // A catch-up of the month before (read as the month turned) leaves the new one alone.
        m.catch_up_month(month, end, 70);
        assert_eq!((m.month_calls(end), m.month_calls(month)), (3, 0));
    }

    #[test]
    fn requests_are_counted_by_day_and_month_and_taken_once() {
        let mut m = TenantMeter::default();
        let call = Counters { api_calls: 1, reads: 1, bytes_out: 10, ..Default::default() };
        assert_eq!(m.record(5 * DAY_MS + 1, 0, call), (0, 1));
        assert_eq!(m.record(5 * DAY_MS + 2, 0, call), (1, 2));
        assert_eq!(m.record(6 * DAY_MS, 0, call), (2, 3));
        assert_eq!(m.month_calls(0), 3);
        assert_eq!(m.pending(5, 6).api_calls, 2);
        assert_eq!(m.pending(6, 7).api_calls, 1);
        assert_eq!(m.pending(0, 100).bytes_out, 30);
        let batch: Vec<_> = m.take().collect();
        assert_eq!(batch.iter().map(|(d, c)| (*d, c.api_calls)).collect::<Vec<_>>(), vec![(5, 2), (6, 1)]);
        assert_eq!(m.pending(0, 100), Counters::default());
        assert_eq!(m.take().count(), 0, "taken once");
        for (d, c) in &batch {
            m.add(*d, c);
        }
        assert_eq!(
            m.pending_by_day(0, 100).iter().map(|(d, c)| (*d, c.api_calls)).collect::<Vec<_>>(),
            vec![(5, 2), (6, 1)]
        );
        // Handing back a batch while new usage arrived merges by day.
        m.record(6 * DAY_MS + 5, 0, call);
        assert_eq!(m.pending(6, 7).api_calls, 2);
        // A new month starts from zero.
        m.record(40 * DAY_MS, 31 * DAY_MS, call);
        assert_eq!(m.month_calls(31 * DAY_MS), 1);
        assert_eq!(m.month_calls(0), 0);
        m.catch_up_month(62 * DAY_MS, 93 * DAY_MS, 7);
        assert_eq!(m.month_calls(62 * DAY_MS), 7);
    }
}
