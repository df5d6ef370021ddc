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

/// Changes waiting for a compile: it is due after a quiet time since the last change, or at
/// the latest a maximum delay after the first, so that a flood of changes becomes a few
/// compiles.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    /// (first change, last change) since the last compile.
    pending: Option<(Instant, Instant)>,
}

impl Debounce {
    pub(crate) fn new(quiet: Duration, max_delay: Duration) -> Self {
        Debounce {
            quiet,
            max_delay,
            pending: None,
        }
    }

    /// Something changed at `now`.
    pub(crate) fn changed(&mut self, now: Instant) {
        self.pending = Some((self.pending.map_or(now, |d| d.0), now));
    }

    /// Waits anew from `now`, as for a first change (a named Secret is on its way).
    pub(crate) fn restart(&mut self, now: Instant) {
        self.pending = Some((now, now));
    }

    /// A compile ran: nothing is waiting.
    pub(crate) fn compiled(&mut self) {
        self.pending = None;
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// When the compile is due; `None` when nothing changed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.pending
            .map(|(first, last)| (last + self.quiet).min(first + self.max_delay))
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

    const QUIET: Duration = Duration::from_millis(20);
    const MAX_DELAY: Duration = Duration::from_millis(250);

    #[test]
    fn nothing_changed_means_no_compile_is_due() {
        let debounce = Debounce::new(QUIET, MAX_DELAY);
        assert!(!debounce.is_pending());
        assert_eq!(debounce.deadline(), None);
    }

    #[test]
    fn a_change_is_compiled_after_a_quiet_time() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(QUIET, MAX_DELAY);
        debounce.changed(t0);
        assert_eq!(debounce.deadline(), Some(t0 + QUIET));
    }

    #[test]
    fn each_change_pushes_the_compile_back_by_the_quiet_time() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(QUIET, MAX_DELAY);
        debounce.changed(t0);
        debounce.changed(t0 + Duration::from_millis(15));
        assert_eq!(debounce.deadline(), Some(t0 + Duration::from_millis(35)));
    }

    #[test]
    fn changes_that_keep_coming_wait_at_most_the_maximum_delay() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(QUIET, MAX_DELAY);
        for ms in (0..=240).step_by(10) {
            debounce.changed(t0 + Duration::from_millis(ms));
        }
        assert_eq!(debounce.deadline(), Some(t0 + MAX_DELAY));
    }

    #[test]
    fn a_compile_clears_the_pending_changes() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(QUIET, MAX_DELAY);
        debounce.changed(t0);
        debounce.compiled();
        assert!(!debounce.is_pending());
        let t1 = t0 + Duration::from_secs(1);
        debounce.changed(t1);
        assert_eq!(
            debounce.deadline(),
            Some(t1 + QUIET),
            "the maximum delay starts anew"
        );
    }

    #[test]
    fn a_restart_waits_anew_as_for_a_first_change() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(QUIET, MAX_DELAY);
        debounce.changed(t0);
        let t1 = t0 + Duration::from_millis(240);
        debounce.restart(t1);
        assert_eq!(debounce.deadline(), Some(t1 + QUIET));
        debounce.changed(t1 + Duration::from_millis(240));
        assert_eq!(debounce.deadline(), Some(t1 + MAX_DELAY));
    }
}
