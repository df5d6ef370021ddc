//! When a compile may run: not before every watched kind has listed once (a partial view
//! would report, say, `BackendNotFound` for a Service not listed yet), and not while a newly
//! named Secret or ConfigMap is still being fetched (for at most [`REFERENCE_WAIT`]).
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
}
