//! Passive health: an endpoint that refuses or times out a connection is left out of the
//! choice for a while (EndpointSlice readiness is the active part, done by Kubernetes).
//!
//! When every endpoint of a backend is out, the choice falls back to all of them: a request
//! that might fail is better than one that surely fails.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a failed endpoint stays out.
pub const EJECT_FOR: Duration = Duration::from_secs(5);

/// Endpoints out of the choice, until when.
#[derive(Debug, Default)]
pub struct Health {
    down: RwLock<HashMap<String, Instant>>,
    /// Entries in `down` (so the common case takes no lock).
    count: AtomicUsize,
}

impl Health {
    /// Leaves `endpoint` out of the choice until `now + EJECT_FOR`.
    pub fn eject(&self, endpoint: &str, now: Instant) {
        let mut down = self.down.write().unwrap_or_else(|p| p.into_inner());
        down.retain(|_, until| *until > now);
        down.insert(endpoint.to_owned(), now + EJECT_FOR);
        self.count.store(down.len(), Ordering::Relaxed);
    }

    /// Picks an endpoint index: uniformly among those not ejected, or among all when every
    /// one is. `random` is any random number.
    pub fn pick(&self, endpoints: &[String], random: usize, now: Instant) -> usize {
        if self.count.load(Ordering::Relaxed) == 0 || endpoints.len() < 2 {
            return random % endpoints.len().max(1);
        }
        let down = self.down.read().unwrap_or_else(|p| p.into_inner());
        let up = |e: &String| down.get(e).is_none_or(|until| *until <= now);
        let healthy = endpoints.iter().filter(|e| up(e)).count();
        if healthy == 0 {
            return random % endpoints.len();
        }
        let nth = random % healthy;
        endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| up(e))
            .nth(nth)
            .map_or(0, |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps() -> Vec<String> {
        vec!["a:1".into(), "b:1".into(), "c:1".into()]
    }

    #[test]
    fn ejected_endpoints_are_skipped_until_they_are_due_back() {
        let h = Health::default();
        let e = eps();
        let t0 = Instant::now();
        h.eject("b:1", t0);
        for r in 0..100 {
            assert_ne!(h.pick(&e, r, t0), 1);
        }
        // Every healthy endpoint still gets picked.
        let picked: std::collections::BTreeSet<usize> =
            (0..10).map(|r| h.pick(&e, r, t0)).collect();
        assert_eq!(picked, [0, 2].into());
        // Back after EJECT_FOR.
        let later = t0 + EJECT_FOR + Duration::from_millis(1);
        assert!((0..10).any(|r| h.pick(&e, r, later) == 1));
    }

    #[test]
    fn with_every_endpoint_out_all_are_candidates_again() {
        let h = Health::default();
        let e = eps();
        let t0 = Instant::now();
        for x in &e {
            h.eject(x, t0);
        }
        let picked: std::collections::BTreeSet<usize> =
            (0..10).map(|r| h.pick(&e, r, t0)).collect();
        assert_eq!(picked, [0, 1, 2].into());
    }
}
