//! When a compile may run: not before every watched kind has listed once (a partial view
//! would report, say, `BackendNotFound` for a Service not listed yet), not while a newly
//! named Secret or ConfigMap is still being fetched (for at most [`REFERENCE_WAIT`]), and
//! only once changes have settled ([`Debounce`]).
//!
//! Pure: the caller passes `now`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use loom_core::input::Kind;

/// How long a compile waits for a newly named Secret or ConfigMap to be fetched (after
/// that, it compiles without it: the object may not exist, or not be readable).
pub(crate) const REFERENCE_WAIT: Duration = Duration::from_secs(3);

/// The watched kinds that have not completed their first list yet.
#[derive(Debug)]
pub(crate) struct InitialList {
    unlisted: HashSet<Kind>,
}

impl InitialList {
    pub(crate) fn new(kinds: impl IntoIterator<Item = Kind>) -> Self {
        InitialList {
            unlisted: kinds.into_iter().collect(),
        }
    }

    /// Records that `kind` completed a list; whether it was its first.
    pub(crate) fn listed(&mut self, kind: Kind) -> bool {
        self.unlisted.remove(&kind)
    }

    /// Whether every kind has listed once.
    pub(crate) fn is_complete(&self) -> bool {
        self.unlisted.is_empty()
    }
}

/// The fetch of one named Secret or ConfigMap, by its own watch.
#[derive(Debug)]
pub(crate) struct ReferenceFetch {
    named_at: Instant,
    listed: bool,
}

impl ReferenceFetch {
    /// The object was first named (and its watch started) at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        ReferenceFetch {
            named_at: now,
            listed: false,
        }
    }

    /// Its watch completed a list (whether or not the object exists).
    pub(crate) fn listed(&mut self) {
        self.listed = true;
    }

    /// Whether a compile need not wait for it any longer: it was fetched, or waited for long
    /// enough.
    pub(crate) fn is_done(&self, now: Instant) -> bool {
        self.listed || now.duration_since(self.named_at) > REFERENCE_WAIT
    }
}

/// How long a compile waits before looking again for a named Secret or ConfigMap that is
/// on its way.
pub(crate) const REFERENCE_RETRY: Duration = Duration::from_millis(20);

/// When the next compile is due. A change while idle compiles at once (leading edge: one
/// `kubectl apply` is live within milliseconds); after a compile, the next starts no sooner
/// than `min_interval`, or twice as long as that compile took if longer, after it ended. So a
/// burst of changes becomes one compile per interval, and under a flood compiling takes at
/// most about a third of the controller's time (at 5,000 routes a compile takes ~60 ms here).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Debounce {
    min_interval: Duration,
    /// The first change since the last compile.
    pending: Option<Instant>,
    /// No compile before this (the interval after the last one, or a retry).
    not_before: Option<Instant>,
}

impl Debounce {
    pub(crate) fn new(min_interval: Duration) -> Self {
        Debounce {
            min_interval,
            pending: None,
            not_before: None,
        }
    }

    /// Something changed at `now`.
    pub(crate) fn changed(&mut self, now: Instant) {
        self.pending.get_or_insert(now);
    }

    /// The compile that was due cannot run yet (a named Secret is on its way): looks again
    /// [`REFERENCE_RETRY`] after `now`.
    pub(crate) fn retry(&mut self, now: Instant) {
        let at = now + REFERENCE_RETRY;
        self.not_before = Some(self.not_before.map_or(at, |t| t.max(at)));
    }

    /// A compile that took `took` ended at `now`: nothing is waiting.
    pub(crate) fn compiled(&mut self, now: Instant, took: Duration) {
        self.pending = None;
        self.not_before = Some(now + self.min_interval.max(took * 2));
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// When the compile is due; `None` when nothing changed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.pending
            .map(|first| self.not_before.map_or(first, |t| t.max(first)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_list_is_complete_once_every_kind_listed() {
        let mut list = InitialList::new([Kind::Gateway, Kind::Service]);
        assert!(!list.is_complete());
        assert!(list.listed(Kind::Gateway));
        assert!(!list.is_complete());
        assert!(list.listed(Kind::Service));
        assert!(list.is_complete());
    }

    #[test]
    fn only_the_first_list_of_a_kind_counts_as_first() {
        let mut list = InitialList::new([Kind::Gateway]);
        assert!(list.listed(Kind::Gateway));
        assert!(!list.listed(Kind::Gateway));
        // A kind that was never waited for (a Secret, watched by reference) is not first.
        assert!(!list.listed(Kind::Secret));
    }

    #[test]
    fn no_watched_kind_means_the_initial_list_is_complete() {
        assert!(InitialList::new([]).is_complete());
    }

    #[test]
    fn a_named_reference_is_waited_for_until_listed() {
        let t0 = Instant::now();
        let mut fetch = ReferenceFetch::new(t0);
        assert!(!fetch.is_done(t0));
        assert!(!fetch.is_done(t0 + Duration::from_secs(1)));
        fetch.listed();
        assert!(fetch.is_done(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_named_reference_is_waited_for_three_seconds_at_most() {
        let t0 = Instant::now();
        let fetch = ReferenceFetch::new(t0);
        assert!(!fetch.is_done(t0 + REFERENCE_WAIT));
        assert!(fetch.is_done(t0 + REFERENCE_WAIT + Duration::from_millis(1)));
    }

    const INTERVAL: Duration = Duration::from_millis(5);

    #[test]
    fn nothing_changed_means_no_compile_is_due() {
        let debounce = Debounce::new(INTERVAL);
        assert!(!debounce.is_pending());
        assert_eq!(debounce.deadline(), None);
    }

    #[test]
    fn a_first_change_is_compiled_at_once() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(INTERVAL);
        debounce.changed(t0);
        assert_eq!(debounce.deadline(), Some(t0));
    }

    #[test]
    fn a_change_long_after_the_last_compile_is_compiled_at_once() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(INTERVAL);
        debounce.changed(t0);
        debounce.compiled(t0 + Duration::from_millis(1), Duration::from_millis(1));
        assert!(!debounce.is_pending());
        let t1 = t0 + Duration::from_secs(1);
        debounce.changed(t1);
        assert_eq!(debounce.deadline(), Some(t1));
    }

    #[test]
    fn changes_right_after_a_compile_wait_out_the_interval_together() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(INTERVAL);
        debounce.compiled(t0, Duration::from_millis(1));
        debounce.changed(t0 + Duration::from_millis(1));
        debounce.changed(t0 + Duration::from_millis(2));
        debounce.changed(t0 + Duration::from_millis(4));
        assert_eq!(debounce.deadline(), Some(t0 + INTERVAL));
    }

    #[test]
    fn a_slow_compile_is_followed_by_a_pause_twice_as_long_as_it_took() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(INTERVAL);
        let took = Duration::from_millis(80);
        debounce.compiled(t0, took);
        debounce.changed(t0 + Duration::from_millis(10));
        assert_eq!(debounce.deadline(), Some(t0 + 2 * took));
    }

    #[test]
    fn changes_that_keep_coming_are_compiled_once_per_interval() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(INTERVAL);
        let mut compiles = vec![];
        // A change every millisecond for 100 ms; each compile takes 1 ms.
        for ms in 0..100 {
            let now = t0 + Duration::from_millis(ms);
            debounce.changed(now);
            if debounce.deadline().is_some_and(|d| d <= now) {
                compiles.push(ms);
                debounce.compiled(now + Duration::from_millis(1), Duration::from_millis(1));
            }
        }
        assert_eq!(compiles.first(), Some(&0), "the first change at once");
        assert!(
            compiles.windows(2).all(|w| w[1] - w[0] == 6),
            "then one each interval after the last ended: {compiles:?}"
        );
    }

    #[test]
    fn a_retry_looks_again_shortly() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(INTERVAL);
        debounce.changed(t0);
        debounce.retry(t0);
        assert_eq!(debounce.deadline(), Some(t0 + REFERENCE_RETRY));
        assert!(debounce.is_pending());
    }
}
