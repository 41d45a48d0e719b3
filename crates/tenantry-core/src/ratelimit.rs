//! Per-tenant request rate limits (API.md §8 `max_requests_per_minute`): GCRA, the generic cell
//! rate algorithm, with a burst. One timestamp of state per tenant, kept with the tenant's
//! other request-path state (`activity::TenantActivity`), no database round trip, time injected
//! so tests need no sleeping.

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests per minute (`RateLimit-Limit`).
    pub limit: u64,
    /// Requests that could be made right now (`RateLimit-Remaining`).
    pub remaining: u64,
    /// When refused: whole seconds to wait (`Retry-After`).
    pub retry_after_secs: u64,
}

/// The burst a limit allows: half a minute's requests, at least one. A person at a terminal
/// sends a dozen requests in a few seconds and then pauses (the README's quickstart is ten), and
/// a script starting up does the same; the sustained rate is still the limit.
pub fn burst_for(per_minute: u64) -> u64 {
    (per_minute / 2).max(1)
}

/// One tenant's rate state: the theoretical arrival time (TAT) of its next request.
#[derive(Debug, Default)]
pub struct RateBucket {
    /// In milliseconds.
    tat_ms: i64,
}

impl RateBucket {
    /// Counts one request against `per_minute` (the tenant's current limit: a changed tier or
    /// quota applies from the next request). GCRA: each request moves the TAT one emission
    /// interval ahead; a request is allowed while the TAT stays within the burst tolerance of now.
    pub fn check(&mut self, per_minute: u64, now_ms: i64) -> RateDecision {
        let per_minute = per_minute.max(1);
        let interval = 60_000.0 / per_minute as f64;
        let burst = burst_for(per_minute) as f64;
        let tolerance = interval * burst;
        let tat = (self.tat_ms as f64).max(now_ms as f64);
        let next = tat + interval;
        if next - now_ms as f64 > tolerance {
            let wait_ms = next - tolerance - now_ms as f64;
            return RateDecision {
                allowed: false,
                limit: per_minute,
                remaining: 0,
                retry_after_secs: (wait_ms / 1000.0).ceil().max(1.0) as u64,
            };
        }
        self.tat_ms = next.ceil() as i64;
        let remaining = ((tolerance - (next - now_ms as f64)) / interval).floor().max(0.0) as u64;
        RateDecision { allowed: true, limit: per_minute, remaining, retry_after_secs: 0 }
    }
}

impl RateBucket {
    /// Counts `admitted` requests that other nodes let through (several nodes on one database
    /// share each tenant's limit): the TAT moves an interval ahead for each, as if this node had
    /// let them through now. What they admitted beyond the limit while the news was on its way
    /// pushes the TAT past the burst tolerance, so this node then refuses until the cluster is
    /// back within the limit.
    pub fn admitted_elsewhere(&mut self, admitted: u64, per_minute: u64, now_ms: i64) {
        let interval = 60_000.0 / per_minute.max(1) as f64;
        let tat = (self.tat_ms as f64).max(now_ms as f64);
        self.tat_ms = (tat + interval * admitted as f64).ceil() as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_are_spaced_by_the_interval() {
        let mut t = RateBucket::default();
        // 60/min: interval 1 s, burst 30.
        let mut allowed = 0;
        for _ in 0..40 {
            if t.check(60, 1_000_000).allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 30);
        let refused = t.check(60, 1_000_000);
        assert_eq!((refused.allowed, refused.remaining, refused.retry_after_secs), (false, 0, 1));
        assert!(t.check(60, 1_001_000).allowed, "one interval later, one more");
        assert!(!t.check(60, 1_001_000).allowed);
        // A minute of quiet refills the burst.
        let d = t.check(60, 1_070_000);
        assert_eq!((d.allowed, d.remaining), (true, 29));
    }

    #[test]
    fn remaining_counts_down_and_buckets_are_independent() {
        let (mut a, mut b) = (RateBucket::default(), RateBucket::default());
        let seen: Vec<u64> = (0..6).map(|_| a.check(600, 5_000).remaining).collect();
        assert_eq!(seen, vec![299, 298, 297, 296, 295, 294]);
        assert_eq!(b.check(600, 5_000).remaining, 299);
    }

    #[test]
    fn requests_admitted_elsewhere_count_against_the_same_limit() {
        // 60/min: burst 30, of which another node let 20 through.
        let mut t = RateBucket::default();
        t.admitted_elsewhere(20, 60, 1_000_000);
        let allowed = (0..40).filter(|_| t.check(60, 1_000_000).allowed).count();
        assert_eq!(allowed, 10);
        // Told of more than the limit allowed (the other node had not heard of these yet): this
        // node waits until the cluster is back within it.
        t.admitted_elsewhere(5, 60, 1_000_000);
        assert!(!t.check(60, 1_005_000).allowed);
        assert!(t.check(60, 1_006_000).allowed);
    }

    #[test]
    fn a_raised_limit_applies_on_the_next_request() {
        let mut t = RateBucket::default();
        while t.check(10, 0).allowed {}
        assert!(!t.check(10, 0).allowed);
        assert!(t.check(100_000, 1).allowed);
    }
}
