//! How many client connections Loom holds at once.
//!
//! Every listener admits at most `per_listener` connections (the `--max-connections` flag, or
//! the port's ClientTrafficPolicy), and all listeners together at most what the process's
//! file-descriptor limit allows, whatever a policy says: each client connection may need a
//! second descriptor for its backend, and [`RESERVED_FDS`] stay free for the admin listener,
//! backend connection pools, DNS and files. A connection over either limit is closed as soon
//! as it is accepted, so the process never runs out of descriptors (which would stop every
//! listener, the admin one included), and a client learns at once instead of hanging.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// File descriptors never handed to client connections.
pub(crate) const RESERVED_FDS: usize = 64;

/// Connections all listeners together may hold, from `/proc/self/limits`'s "Max open files"
/// soft limit (`None`: unknown or unlimited).
pub(crate) fn process_budget(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft: usize = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((soft.saturating_sub(RESERVED_FDS) / 2).max(1))
}

/// The budget of this process (unbounded when the limit cannot be read).
pub(crate) fn this_process_budget() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| process_budget(&l))
        .unwrap_or(Semaphore::MAX_PERMITS)
}

/// The admission of one listener: its own limit and the process's.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    process: Arc<Semaphore>,
    listener: Arc<ListenerCount>,
}

/// A listener's open connections and its limit, which a publish may change while connections
/// are open (a lower limit closes none: new ones are refused until enough have ended).
#[derive(Debug)]
struct ListenerCount {
    open: AtomicUsize,
    max: AtomicUsize,
}

/// A connection's place; released when dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    _process: OwnedSemaphorePermit,
    _listener: ListenerPlace,
}

/// A connection's place in its listener's count.
#[derive(Debug)]
struct ListenerPlace(Arc<ListenerCount>);

impl Drop for ListenerPlace {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// A listener admitting at most `per_listener` connections, sharing `process`.
    pub(crate) fn new(process: Arc<Semaphore>, per_listener: usize) -> Self {
        Admission {
            process,
            listener: Arc::new(ListenerCount {
                open: AtomicUsize::new(0),
                max: AtomicUsize::new(per_listener),
            }),
        }
    }

    /// Changes the listener's limit, for connections accepted from now on.
    pub(crate) fn set_limit(&self, per_listener: usize) {
        self.listener.max.store(per_listener, Ordering::Relaxed);
    }

    /// A place for one more connection, if there is one.
    pub(crate) fn try_admit(&self) -> Option<Admitted> {
        let max = self.listener.max.load(Ordering::Relaxed);
        let open = self.listener.open.fetch_add(1, Ordering::Relaxed);
        // Taken first, so that a refusal below gives the place back.
        let listener = ListenerPlace(self.listener.clone());
        if open >= max {
            return None;
        }
        let process = self.process.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            _process: process,
            _listener: listener,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            256                  524288               files     
Max locked memory         8388608              8388608              bytes     
";

    #[test]
    fn the_budget_leaves_the_reserve_and_a_backend_descriptor_per_connection() {
        assert_eq!(process_budget(LIMITS), Some((256 - RESERVED_FDS) / 2));
    }

    #[test]
    fn an_unreadable_limit_gives_no_budget() {
        assert_eq!(
            process_budget("Max open files  unlimited  unlimited files"),
            None
        );
        assert_eq!(process_budget(""), None);
    }

    #[test]
    fn a_tiny_limit_still_admits_one() {
        assert_eq!(
            process_budget("Max open files            10                  10               files"),
            Some(1)
        );
    }

    #[test]
    fn a_listener_admits_up_to_its_limit_and_again_after_a_release() {
        let a = Admission::new(Arc::new(Semaphore::new(100)), 2);
        let first = a.try_admit().unwrap();
        let _second = a.try_admit().unwrap();
        assert!(a.try_admit().is_none());
        drop(first);
        assert!(a.try_admit().is_some());
    }

    #[test]
    fn a_new_limit_applies_to_the_next_connections_and_closes_none() {
        let a = Admission::new(Arc::new(Semaphore::new(100)), 3);
        let held: Vec<_> = (0..3).map(|_| a.try_admit().unwrap()).collect();
        a.set_limit(1);
        assert!(a.try_admit().is_none());
        drop(held);
        let _one = a.try_admit().unwrap();
        assert!(a.try_admit().is_none());
        a.set_limit(2);
        assert!(a.try_admit().is_some());
    }

    #[test]
    fn a_listener_refused_by_the_process_budget_keeps_its_places() {
        let a = Admission::new(Arc::new(Semaphore::new(0)), 1);
        assert!(a.try_admit().is_none());
        assert!(a.try_admit().is_none());
        assert_eq!(a.listener.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn listeners_share_the_process_budget() {
        let process = Arc::new(Semaphore::new(1));
        let (a, b) = (
            Admission::new(process.clone(), 10),
            Admission::new(process, 10),
        );
        let _held = a.try_admit().unwrap();
        assert!(b.try_admit().is_none());
    }
}
