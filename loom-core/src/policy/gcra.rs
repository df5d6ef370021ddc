//! Rate limiting: a token bucket kept as one number with GCRA, the generic cell rate algorithm.
//!
//! A bucket holds `burst` requests and refills at `requests_per_second`. GCRA keeps only the
//! *theoretical arrival time* ([`Tat`]): the time at which the bucket would be full again. Each
//! allowed request pushes it one emission interval `T` later; a request at `now` is allowed
//! while that leaves it at most `τ = burst × T` ahead of `now`.
//!
//! `T` is rounded up to whole nanoseconds, so the enforced rate never exceeds the quota. It is
//! exact when `requests_per_second` divides 10⁹, and otherwise lower by less than
//! `requests_per_second / 10⁹` of itself (1 ppm at 1000 requests per second).
//!
//! All arithmetic saturates: no input panics. Times past `u64::MAX` nanoseconds (584 years after
//! the caller's epoch) are clamped to it.

use std::time::Duration;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A limit: `requests_per_second` refill, `burst` capacity. Both ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Quota {
    requests_per_second: u32,
    burst: u32,
    /// The emission interval and window in nanoseconds, made once: a check divides only to
    /// count what remains.
    #[serde(skip)]
    interval_nanos: u64,
    #[serde(skip)]
    window_nanos: u64,
}

impl Quota {
    /// A quota, or `None` when either number is 0.
    pub fn new(requests_per_second: u32, burst: u32) -> Option<Quota> {
        if requests_per_second == 0 || burst == 0 {
            return None;
        }
        let interval_nanos = NANOS_PER_SECOND.div_ceil(u64::from(requests_per_second));
        Some(Quota {
            requests_per_second,
            burst,
            interval_nanos,
            // At most 10⁹ × u32::MAX < u64::MAX.
            window_nanos: interval_nanos * u64::from(burst),
        })
    }

    /// The sustained rate.
    pub fn requests_per_second(&self) -> u32 {
        self.requests_per_second
    }

    /// How many requests a full bucket allows at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time between two requests at the sustained rate: 1 s / `requests_per_second`, rounded up
    /// to whole nanoseconds (so at least 1 ns).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    /// How long an empty bucket takes to fill up again (burst × emission interval).
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos())
    }

    fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }

    fn window_nanos(&self) -> u64 {
        self.window_nanos
    }
}

/// The one number of state a bucket holds: the theoretical arrival time (TAT), as time since the
/// caller's epoch. A new bucket starts at `Tat::default()` (zero = full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tat(
    /// Nanoseconds since the caller's epoch; a `u64` so the data plane can keep it in an
    /// `AtomicU64`.
    pub u64,
);

/// The outcome of one [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; `remaining` requests could still be sent right now; the bucket is full again
    /// after `reset`.
    Allowed {
        /// Requests still allowed at this instant.
        remaining: u32,
        /// Time until the bucket is full again.
        reset: Duration,
    },
    /// Over the limit: the next request is allowed after `retry_after` (> 0); full after `reset`.
    Limited {
        /// Time until a request would be allowed.
        retry_after: Duration,
        /// Time until the bucket is full again.
        reset: Duration,
    },
}

impl Verdict {
    /// Whether the request was allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// One request at `now` against a bucket whose state is `tat`: the verdict and the state to
/// store (unchanged when limited). Pure; the caller stores the new [`Tat`] (a CAS loop in the
/// data plane, or under a lock).
pub fn check(quota: &Quota, tat: Tat, now: Duration) -> (Verdict, Tat) {
    let interval = quota.interval_nanos();
    let window = quota.window_nanos();
    let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
    let last = tat.0;
    // Where the TAT would be after this request, and how far that is ahead of now. Past
    // u64::MAX the TAT stays there: `ahead` is then short by what was cut off, which only
    // happens 584 years after the epoch.
    let next = last.max(now).saturating_add(interval);
    let ahead = next - now;
    if ahead <= window {
        let verdict = Verdict::Allowed {
            remaining: u32::try_from((window - ahead) / interval).unwrap_or(u32::MAX),
            reset: Duration::from_nanos(next - now),
        };
        (verdict, Tat(next))
    } else {
        let verdict = Verdict::Limited {
            retry_after: Duration::from_nanos(ahead - window),
            reset: Duration::from_nanos(last.saturating_sub(now)),
        };
        (verdict, tat)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NS: Duration = Duration::from_nanos(1);

    fn quota(rps: u32, burst: u32) -> Quota {
        Quota::new(rps, burst).unwrap()
    }

    /// Runs requests at `times` against a fresh bucket; returns the times that were allowed.
    fn allowed_at(quota: &Quota, times: impl IntoIterator<Item = Duration>) -> Vec<Duration> {
        let mut tat = Tat::default();
        let mut allowed = vec![];
        for now in times {
            let (verdict, next) = check(quota, tat, now);
            tat = next;
            if verdict.is_allowed() {
                allowed.push(now);
            }
        }
        allowed
    }

    /// Sends requests at `now` until one is limited: how many were allowed, and the state after.
    fn burst_at(quota: &Quota, mut tat: Tat, now: Duration) -> (u32, Tat) {
        let mut allowed = 0;
        loop {
            let (verdict, next) = check(quota, tat, now);
            if !verdict.is_allowed() {
                return (allowed, tat);
            }
            allowed += 1;
            tat = next;
        }
    }

    #[test]
    fn quota_rejects_zero_and_reports_its_numbers() {
        assert_eq!(Quota::new(0, 1), None);
        assert_eq!(Quota::new(1, 0), None);
        let q = quota(10, 5);
        assert_eq!((q.requests_per_second(), q.burst()), (10, 5));
        assert_eq!(q.emission_interval(), Duration::from_millis(100));
        assert_eq!(q.window(), Duration::from_millis(500));
    }

    #[test]
    fn emission_interval_is_at_least_one_nanosecond() {
        assert_eq!(quota(u32::MAX, 1).emission_interval(), NS);
        assert_eq!(quota(1_000_000_000, 1).emission_interval(), NS);
    }

    #[test]
    fn emission_interval_rounds_up_so_the_rate_is_never_exceeded() {
        // Rounded down, T = 333_333_333 ns would allow 4 requests in 999_999_999 ns: more than
        // burst + rps × window = 1 + 2.999_999_997.
        let q = quota(3, 1);
        assert_eq!(q.emission_interval(), Duration::from_nanos(333_333_334));
        let early = (0..4).map(|i| Duration::from_nanos(i * 333_333_333));
        assert!(allowed_at(&q, early).len() < 4);
        let on_time = (0..4).map(|i| q.emission_interval() * i);
        assert_eq!(allowed_at(&q, on_time).len(), 4);
    }

    #[test]
    fn fresh_bucket_allows_exactly_burst_at_one_instant_then_limits() {
        let q = quota(10, 5);
        let now = Duration::from_secs(100);
        assert_eq!(allowed_at(&q, [now; 8]), [now; 5]);
    }

    #[test]
    fn one_emission_interval_later_allows_exactly_one_more() {
        let q = quota(10, 5);
        let now = Duration::from_secs(100);
        let later = now + q.emission_interval();
        let times = [[now; 6], [later; 6]].concat();
        assert_eq!(allowed_at(&q, times), [vec![now; 5], vec![later]].concat());
    }

    #[test]
    fn bucket_is_full_again_after_window() {
        let q = quota(10, 5);
        let now = Duration::from_secs(100);
        let (drained, tat) = burst_at(&q, Tat::default(), now);
        assert_eq!(drained, 5);
        assert_eq!(burst_at(&q, tat, now + q.window() - NS).0, 4);
        assert_eq!(burst_at(&q, tat, now + q.window()).0, 5);
    }

    #[test]
    fn remaining_counts_down_from_burst_minus_one_to_zero() {
        let q = quota(10, 5);
        let now = Duration::from_secs(1);
        let mut tat = Tat::default();
        let mut remaining = vec![];
        for n in 1..=5 {
            let (verdict, next) = check(&q, tat, now);
            let reset = q.emission_interval() * n;
            match verdict {
                Verdict::Allowed {
                    remaining: r,
                    reset: got,
                } if got == reset => remaining.push(r),
                other => panic!("request {n}: {other:?}"),
            }
            tat = next;
        }
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
    }

    #[test]
    fn limited_verdict_says_when_to_retry_and_when_full() {
        let q = quota(10, 5);
        let now = Duration::from_secs(1);
        let mut tat = Tat::default();
        for _ in 0..5 {
            tat = check(&q, tat, now).1;
        }
        let wait = Duration::from_millis(30);
        let (verdict, _) = check(&q, tat, now + wait);
        assert_eq!(
            verdict,
            Verdict::Limited {
                retry_after: q.emission_interval() - wait,
                reset: q.window() - wait,
            }
        );
    }

    #[test]
    fn times_past_u64_nanoseconds_do_not_panic() {
        let q = quota(1, 1);
        let (verdict, tat) = check(&q, Tat(u64::MAX), Duration::MAX);
        assert!(verdict.is_allowed());
        assert_eq!(tat, Tat(u64::MAX));
        let (verdict, _) = check(&q, Tat(u64::MAX), Duration::ZERO);
        assert!(!verdict.is_allowed());
    }

    fn arb_quota() -> impl Strategy<Value = Quota> {
        (1..=u32::MAX, 1..=u32::MAX).prop_map(|(rps, burst)| quota(rps, burst))
    }

    /// Small quotas with small request gaps, so limits are actually reached.
    fn arb_small_quota() -> impl Strategy<Value = Quota> {
        (1..=1_000u32, 1..=20u32).prop_map(|(rps, burst)| quota(rps, burst))
    }

    proptest! {
        #[test]
        fn no_input_panics_and_verdicts_are_consistent(
            q in arb_quota(),
            tat in any::<u64>(),
            now in any::<u64>(),
        ) {
            let now = Duration::from_nanos(now);
            let (verdict, next) = check(&q, Tat(tat), now);
            match verdict {
                Verdict::Allowed { remaining, reset } => {
                    prop_assert!(remaining < q.burst());
                    prop_assert!(next > Tat(tat) || next == Tat(u64::MAX));
                    prop_assert!(reset <= q.window());
                }
                Verdict::Limited { retry_after, reset } => {
                    prop_assert_eq!(next, Tat(tat));
                    prop_assert!(retry_after > Duration::ZERO);
                    prop_assert!(retry_after <= reset);
                }
            }
        }

        #[test]
        fn limited_requests_never_change_the_state(
            q in arb_quota(),
            tat in any::<u64>(),
            now in any::<u64>(),
        ) {
            let (verdict, next) = check(&q, Tat(tat), Duration::from_nanos(now));
            if !verdict.is_allowed() {
                prop_assert_eq!(next, Tat(tat));
            }
        }

        #[test]
        fn retry_after_is_exactly_the_time_until_the_next_allowed_request(
            q in arb_quota(),
            tat in any::<u64>(),
            now in any::<u64>(),
        ) {
            let now = Duration::from_nanos(now);
            if let (Verdict::Limited { retry_after, .. }, tat) = check(&q, Tat(tat), now) {
                prop_assert!(!check(&q, tat, now + retry_after - NS).0.is_allowed());
                prop_assert!(check(&q, tat, now + retry_after).0.is_allowed());
            }
        }

        #[test]
        fn steady_over_limit_traffic_gets_burst_plus_one_per_emission_interval(
            rps in 1..=1_000_000u32,
            burst in 2..=1_000u32,
            // Request spacing as a share of the emission interval (< 1: over the limit).
            spacing in 0.0..1.0f64,
            requests in 1..3_000u64,
        ) {
            // (Burst ≥ 2: with burst 1 a request that comes late wastes the refill before it, so
            // the rate falls below the quota.)
            let q = quota(rps, burst);
            let interval = q.emission_interval().as_nanos() as u64;
            let gap = ((interval as f64 * spacing) as u64).clamp(1, interval - 1);
            let t = (requests - 1) * gap;
            let times = (0..requests).map(|i| Duration::from_nanos(i * gap));
            let allowed = allowed_at(&q, times).len() as u64;
            // Exactly burst + floor(t / T), or every request when there are fewer.
            let expected = (u64::from(burst) + t / interval).min(requests);
            prop_assert_eq!(allowed, expected);
            // And T rounded up only ever lowers the rate below rps.
            let rate_bound = u128::from(burst) + u128::from(rps) * u128::from(t) / 1_000_000_000;
            prop_assert!(u128::from(allowed) <= rate_bound);
        }

        #[test]
        fn steady_over_limit_traffic_is_within_one_of_rps_t_plus_burst(
            // Rates whose emission interval is exact.
            rps in prop::sample::select(vec![1u32, 2, 4, 5, 8, 10, 20, 25, 50, 100, 125, 1000, 5000, 100_000]),
            burst in 2..=1_000u32,
            spacing in 0.0..1.0f64,
            requests in 1..3_000u64,
        ) {
            let q = quota(rps, burst);
            let interval = q.emission_interval().as_nanos() as u64;
            let gap = ((interval as f64 * spacing) as u64).clamp(1, interval - 1);
            let t = (requests - 1) * gap;
            let times = (0..requests).map(|i| Duration::from_nanos(i * gap));
            let allowed = allowed_at(&q, times).len() as f64;
            let ideal = (f64::from(rps) * t as f64 / 1e9 + f64::from(burst)).min(requests as f64);
            prop_assert!((allowed - ideal).abs() <= 1.0, "{allowed} vs {ideal}");
        }

        #[test]
        fn sustained_rate_is_never_exceeded_in_any_window(
            q in arb_small_quota(),
            // Gaps from 0 to 2 emission intervals, many of them 0 (requests at one instant).
            gaps in prop::collection::vec(prop_oneof![Just(0), 0..2_000_000_000u64], 1..200),
        ) {
            let times = gaps.iter().scan(0, |t, gap| {
                *t += gap / u64::from(q.requests_per_second());
                Some(Duration::from_nanos(*t))
            });
            let allowed = allowed_at(&q, times);
            for (i, a) in allowed.iter().enumerate() {
                for (j, b) in allowed.iter().enumerate().skip(i) {
                    // j − i + 1 allowed in [a, b]: at most burst + rps × (b − a).
                    let count = (j - i + 1) as u128;
                    let bound = u128::from(q.burst()) * 1_000_000_000
                        + u128::from(q.requests_per_second()) * (*b - *a).as_nanos();
                    prop_assert!(count * 1_000_000_000 <= bound, "{count} in [{a:?}, {b:?}]");
                }
            }
        }
    }
}
