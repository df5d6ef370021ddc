//! Time budgets of a request's backend attempts (GEP-1742): `request` bounds the whole request,
//! every attempt and backoff included; `backendRequest` bounds each attempt. Pingora's timeouts
//! are per connect/read/write, so an attempt gets the smaller of the two, measured from when it
//! starts. A route that sets neither gets the data plane's defaults; one that sets them to zero
//! ("0s": disabled) gets no read or write timeout at all.

use std::time::{Duration, Instant};

use loom_core::snapshot::Timeouts;

/// The request's own timeout ran out before an attempt could start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RequestTimedOut;

/// A route timeout that is set and not zero.
fn limit(ms: Option<u64>) -> Option<Duration> {
    ms.filter(|&ms| ms > 0).map(Duration::from_millis)
}

/// What is left of the request's timeout at `now`, if it has one.
fn left(timeouts: &Timeouts, started: Instant, now: Instant) -> Option<Duration> {
    limit(timeouts.request_ms).map(|r| r.saturating_sub(now.saturating_duration_since(started)))
}

/// The time budget of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    /// The route sets no timeout: the data plane's defaults apply.
    Default,
    /// The route disables its timeouts ("0s").
    Unlimited,
    /// At most this long.
    Limit(Duration),
}

/// How long to wait before attempt number `tries` (1 is the first): the retry policy's backoff
/// before every retry, cut short by what is left of the request's timeout.
pub(crate) fn backoff(
    backoff_ms: Option<u64>,
    timeouts: &Timeouts,
    started: Instant,
    now: Instant,
    tries: u32,
) -> Option<Duration> {
    let backoff = Duration::from_millis(backoff_ms.filter(|_| tries > 1)?);
    Some(left(timeouts, started, now).map_or(backoff, |l| l.min(backoff)))
}

/// The time an attempt starting at `now` may take, or [`RequestTimedOut`] when the request's
/// timeout is already spent.
pub(crate) fn attempt_timeout(
    timeouts: &Timeouts,
    started: Instant,
    now: Instant,
) -> Result<Budget, RequestTimedOut> {
    let left = left(timeouts, started, now);
    if left.is_some_and(|l| l.is_zero()) {
        return Err(RequestTimedOut);
    }
    let attempt = limit(timeouts.backend_request_ms);
    Ok(match (attempt, left) {
        (Some(a), Some(l)) => Budget::Limit(a.min(l)),
        (Some(t), None) | (None, Some(t)) => Budget::Limit(t),
        (None, None) if timeouts.request_ms.is_none() && timeouts.backend_request_ms.is_none() => {
            Budget::Default
        }
        (None, None) => Budget::Unlimited,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timeouts(request_ms: Option<u64>, backend_request_ms: Option<u64>) -> Timeouts {
        Timeouts {
            request_ms,
            backend_request_ms,
        }
    }

    #[test]
    fn no_timeouts_give_no_budget() {
        let t0 = Instant::now();
        assert_eq!(
            attempt_timeout(&timeouts(None, None), t0, t0),
            Ok(Budget::Default)
        );
    }

    #[test]
    fn request_timeout_is_what_is_left_of_it() {
        let t0 = Instant::now();
        let t = timeouts(Some(300), None);
        assert_eq!(
            attempt_timeout(&t, t0, t0 + 100 * MS),
            Ok(Budget::Limit(200 * MS))
        );
    }

    #[test]
    fn backend_request_bounds_each_attempt() {
        let t0 = Instant::now();
        let t = timeouts(None, Some(200));
        assert_eq!(
            attempt_timeout(&t, t0, t0 + 10_000 * MS),
            Ok(Budget::Limit(200 * MS))
        );
    }

    #[test]
    fn attempt_gets_the_smaller_of_backend_request_and_what_is_left() {
        let t0 = Instant::now();
        let t = timeouts(Some(2000), Some(200));
        assert_eq!(attempt_timeout(&t, t0, t0), Ok(Budget::Limit(200 * MS)));
        assert_eq!(
            attempt_timeout(&t, t0, t0 + 1900 * MS),
            Ok(Budget::Limit(100 * MS))
        );
    }

    #[test]
    fn zero_disables_a_timeout() {
        let t0 = Instant::now();
        let late = t0 + 3_600_000 * MS;
        assert_eq!(
            attempt_timeout(&timeouts(Some(0), None), t0, late),
            Ok(Budget::Unlimited)
        );
        assert_eq!(
            attempt_timeout(&timeouts(Some(0), Some(0)), t0, late),
            Ok(Budget::Unlimited)
        );
        // The other one still bounds the attempt.
        assert_eq!(
            attempt_timeout(&timeouts(Some(0), Some(200)), t0, late),
            Ok(Budget::Limit(200 * MS))
        );
    }

    #[test]
    fn spent_request_timeout_refuses_the_attempt() {
        let t0 = Instant::now();
        let t = timeouts(Some(300), Some(200));
        assert_eq!(attempt_timeout(&t, t0, t0 + 300 * MS), Err(RequestTimedOut));
        assert_eq!(attempt_timeout(&t, t0, t0 + 900 * MS), Err(RequestTimedOut));
    }

    #[test]
    fn no_backoff_before_the_first_attempt() {
        let t0 = Instant::now();
        assert_eq!(backoff(Some(10), &timeouts(None, None), t0, t0, 1), None);
    }

    #[test]
    fn backoff_before_a_retry() {
        let t0 = Instant::now();
        assert_eq!(
            backoff(Some(10), &timeouts(None, None), t0, t0, 2),
            Some(10 * MS)
        );
        assert_eq!(backoff(None, &timeouts(None, None), t0, t0, 2), None);
    }

    #[test]
    fn backoff_is_cut_short_by_the_request_timeout() {
        let t0 = Instant::now();
        let t = timeouts(Some(300), None);
        assert_eq!(backoff(Some(500), &t, t0, t0 + 250 * MS, 2), Some(50 * MS));
    }
}
