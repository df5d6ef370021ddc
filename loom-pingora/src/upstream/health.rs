//! Backend health: outlier detection and the concurrency limits of circuit breakers.
//!
//! One mechanism for every backend: loom-core's [`Outliers`] with the backend's
//! CircuitBreakerPolicy, or [`OutlierConfig::PASSIVE`] without one (an endpoint that refuses
//! or times out a connection is left out for 5 s). EndpointSlice readiness is the active
//! part, done by Kubernetes.
//!
//! When every endpoint of a backend is ejected (possible with `maxEjectionPercent: 100`, and
//! without a policy), the choice falls back to all of them: a request that might fail is
//! better than one that surely fails.
//!
//! State is per backend (a Service port or a Loom Backend) and per endpoint; a reload keeps it
//! for the backends and endpoints that still exist.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use loom_core::input::ObjectKey;
use loom_core::policy::outlier::{EndpointOutlier, Outcome, OutlierConfig, Outliers};
use loom_core::snapshot::{BackendTarget, CircuitBreaker};
use tokio::sync::Notify;

use crate::handle::Published;
use crate::metrics::Metrics;

/// The backends of a Service or Backend object, by Service port (looked up without cloning
/// the key: this is on every request's path). Hashed with foldhash rather than SipHash: the
/// keys are configured objects, not what clients send, and SipHash of an object's key was
/// ~400 instructions per proxied request (bench/RESULTS.md, #16).
type ByObject =
    HashMap<ObjectKey, Vec<(Option<u16>, Arc<BackendHealth>)>, foldhash::fast::RandomState>;

/// Health of every backend in use.
pub struct Health {
    epoch: Instant,
    backends: RwLock<ByObject>,
    metrics: Arc<Metrics>,
}

/// One backend's outlier state and in-flight counts.
pub struct BackendHealth {
    outliers: Mutex<Outliers>,
    /// Nothing failing or ejected: successes and picks take no lock.
    quiet: AtomicBool,
    /// Endpoints in the configuration, and how many of them were ejected when last looked
    /// (for the healthy-endpoints gauge).
    endpoints: AtomicU32,
    ejected: AtomicU32,
    requests: AtomicU32,
    connections: AtomicU32,
    pending: AtomicU32,
    released: Notify,
}

/// Why a circuit breaker turned a request away (the `x-loom-overloaded` header says which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overloaded {
    /// `maxRequests` requests are in flight.
    MaxRequests,
    /// `maxConnections` are in use and `maxPendingRequests` requests already wait.
    MaxPendingRequests,
    /// A connection did not free up in time.
    PendingTimedOut,
}

impl Overloaded {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Overloaded::MaxRequests => "max-requests",
            Overloaded::MaxPendingRequests => "max-pending-requests",
            Overloaded::PendingTimedOut => "max-connections",
        }
    }
}

/// A request's share of a backend's limits, given back on drop.
pub struct Admission {
    backend: Arc<BackendHealth>,
    request: bool,
    connection: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.request {
            self.backend.requests.fetch_sub(1, Ordering::Relaxed);
        }
        if self.connection {
            self.backend.connections.fetch_sub(1, Ordering::AcqRel);
            // Every waiter tries again (one permit for `notify_one` could be lost when several
            // connections are released before the waiters look).
            self.backend.released.notify_waiters();
        }
    }
}

impl Health {
    /// No backend tracked yet; `metrics` gets the healthy-endpoint gauges and ejections.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Health {
            epoch: Instant::now(),
            backends: RwLock::default(),
            metrics,
        }
    }

    /// Time since this tracker's epoch: loom-core's algorithms take `now` as a duration.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The state of a backend, created on first use.
    pub fn backend(&self, target: &BackendTarget) -> Arc<BackendHealth> {
        let find = |all: &ByObject| {
            all.get(&target.object)?
                .iter()
                .find(|(port, _)| *port == target.port)
                .map(|(_, b)| b.clone())
        };
        if let Some(b) = find(&self.backends.read().unwrap_or_else(|p| p.into_inner())) {
            return b;
        }
        let mut all = self.backends.write().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = find(&all) {
            return b;
        }
        let b = Arc::new(BackendHealth {
            outliers: Mutex::new(Outliers::new(config(target))),
            quiet: AtomicBool::new(true),
            endpoints: AtomicU32::new(target.endpoints.len() as u32),
            ejected: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            connections: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            released: Notify::new(),
        });
        all.entry(target.object.clone())
            .or_default()
            .push((target.port, b.clone()));
        drop(all);
        self.refresh_gauge(&target.object);
        b
    }

    /// Sets the healthy-endpoints gauge of a Service or Backend: every port's endpoints that
    /// are not ejected.
    fn refresh_gauge(&self, object: &ObjectKey) {
        let all = self.backends.read().unwrap_or_else(|p| p.into_inner());
        let healthy: u32 = all.get(object).map_or(0, |ports| {
            ports
                .iter()
                .map(|(_, b)| {
                    let total = b.endpoints.load(Ordering::Relaxed);
                    total.saturating_sub(b.ejected.load(Ordering::Relaxed))
                })
                .sum()
        });
        self.metrics.backend_healthy(object, healthy as usize);
    }

    /// After a publish: forgets backends and endpoints the configuration no longer has, takes
    /// on changed policies, and sets the healthy-endpoint gauges.
    pub fn sync(&self, published: &Published) {
        let mut seen: HashMap<(&ObjectKey, Option<u16>), &BackendTarget> = HashMap::new();
        for b in backends(published) {
            seen.entry((&b.object, b.port)).or_insert(b);
        }
        let now = self.now();
        let mut all = self.backends.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|object, ports| {
            ports.retain(|(port, _)| seen.contains_key(&(object, *port)));
            !ports.is_empty()
        });
        self.metrics.reset_backends();
        let mut endpoints: HashMap<&ObjectKey, (usize, usize)> = HashMap::new();
        for ((object, port), target) in &seen {
            let state = all
                .get(*object)
                .and_then(|ports| ports.iter().find(|(p, _)| p == port));
            let ejected = match state {
                Some((_, b)) => {
                    let mut o = b.lock();
                    o.set_config(config(target));
                    o.retain(&target.endpoints);
                    b.quiet.store(o.is_quiet(), Ordering::Relaxed);
                    let ejected = o.ejected(now);
                    b.endpoints
                        .store(target.endpoints.len() as u32, Ordering::Relaxed);
                    b.ejected.store(ejected as u32, Ordering::Relaxed);
                    ejected
                }
                None => 0,
            };
            let e = endpoints.entry(object).or_default();
            e.0 += target.endpoints.len();
            e.1 += ejected;
        }
        for (object, (total, ejected)) in endpoints {
            self.metrics
                .backend_healthy(object, total.saturating_sub(ejected));
        }
    }

    /// Outlier state of every backend with something to report, for `/config`.
    pub fn describe(&self) -> serde_json::Value {
        let now = self.now();
        let all = self.backends.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<serde_json::Value> = all
            .iter()
            .flat_map(|(object, ports)| ports.iter().map(move |(port, b)| (object, port, b)))
            .filter_map(|(object, port, b)| {
                let o = b.lock();
                let endpoints: Vec<EndpointOutlier> = o.describe(now);
                (!endpoints.is_empty()).then(|| {
                    serde_json::json!({
                        "backend": object.to_string(),
                        "port": port,
                        "endpoints": endpoints,
                    })
                })
            })
            .collect();
        out.sort_by_key(|v| v.to_string());
        serde_json::Value::Array(out)
    }

    /// Records what came of a request to `endpoint` of `target`.
    pub fn record(
        &self,
        b: &BackendHealth,
        target: &BackendTarget,
        endpoint: &str,
        outcome: Outcome,
    ) {
        if outcome == Outcome::Success && b.quiet.load(Ordering::Relaxed) {
            return;
        }
        let now = self.now();
        let mut o = b.lock();
        let cfg = config(target);
        if *o.config() != cfg {
            o.set_config(cfg);
        }
        // The sweep first: ejections forgiven by now must not lengthen this one.
        for back in o.sweep(now) {
            tracing::info!("{} endpoint {back} is back", target.object);
        }
        if let Some(until) = o.record(endpoint, outcome, target.endpoints.len(), now) {
            tracing::warn!(
                "{} endpoint {endpoint} ejected for {:?} ({outcome:?})",
                target.object,
                until.saturating_sub(now)
            );
            self.metrics.backend_ejected(&target.object);
        }
        let ejected = o.ejected(now) as u32;
        b.quiet.store(o.is_quiet(), Ordering::Relaxed);
        drop(o);
        // An ejection that ended counts here too (its endpoint is usable again).
        if b.ejected.swap(ejected, Ordering::Relaxed) != ejected {
            self.refresh_gauge(&target.object);
        }
    }

    /// Picks an endpoint index: uniformly among those not ejected, or among all when every
    /// one is. `random` is any random number.
    pub fn pick(&self, b: &BackendHealth, endpoints: &[String], random: usize) -> usize {
        if endpoints.len() < 2 || b.quiet.load(Ordering::Relaxed) {
            return random % endpoints.len().max(1);
        }
        let now = self.now();
        let o = b.lock();
        let up = |e: &String| !o.is_ejected(e, now);
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

impl BackendHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outliers> {
        self.outliers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a request's share of the breaker's limits: a request slot at once (or
    /// [`Overloaded::MaxRequests`]), then a connection, waiting up to `wait` among at most
    /// `maxPendingRequests` others when all are in use.
    pub async fn admit(
        self: &Arc<Self>,
        breaker: &CircuitBreaker,
        wait: Duration,
    ) -> Result<Admission, Overloaded> {
        let mut admission = Admission {
            backend: self.clone(),
            request: false,
            connection: false,
        };
        if let Some(max) = breaker.max_requests {
            if !take(&self.requests, max) {
                return Err(Overloaded::MaxRequests);
            }
            admission.request = true;
        }
        let Some(max) = breaker.max_connections else {
            return Ok(admission);
        };
        if take(&self.connections, max) {
            admission.connection = true;
            return Ok(admission);
        }
        if !take(&self.pending, breaker.max_pending_requests.unwrap_or(0)) {
            return Err(Overloaded::MaxPendingRequests);
        }
        // Given back however the wait ends (the request may be dropped while it waits).
        let _pending = Pending(&self.pending);
        let deadline = tokio::time::Instant::now() + wait;
        let waited = loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not missed.
            released.as_mut().enable();
            if take(&self.connections, max) {
                break true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                break take(&self.connections, max);
            }
        };
        if waited {
            admission.connection = true;
            Ok(admission)
        } else {
            Err(Overloaded::PendingTimedOut)
        }
    }
}

/// A place among the requests waiting for a connection.
struct Pending<'a>(&'a AtomicU32);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds one to `counter` unless it is at `max`.
fn take(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

fn config(target: &BackendTarget) -> OutlierConfig {
    target
        .circuit_breaker
        .as_ref()
        .map_or(OutlierConfig::PASSIVE, |c| c.outlier)
}

/// Every HTTP backend of a published configuration (rules and mirrors).
fn backends(published: &Published) -> impl Iterator<Item = &BackendTarget> {
    // Rules and backends by address: routes share both (the compiler interns backends), and
    // each is looked at once. Addresses hash with foldhash: SipHash was most of this walk,
    // which runs after each publish (5,000 rules at 5,000 routes).
    let mut seen = foldhash::HashSet::default();
    let mut seen_backends = foldhash::HashSet::default();
    let mut out = vec![];
    for g in published.snapshot.gateways.values() {
        for port in g.ports.values() {
            for l in port.http_listeners().iter().chain(port.http3_listeners()) {
                for v in &l.vhosts {
                    // Every rule, in no particular order (no sort of the table).
                    let rules = v.http.values().chain(v.grpc.entries().map(|(_, r)| r));
                    for rule in rules {
                        if !seen.insert(Arc::as_ptr(rule)) {
                            continue;
                        }
                        for b in rule.backends.iter().filter_map(|b| b.target.as_ref().ok()) {
                            if seen_backends.insert(Arc::as_ptr(b)) {
                                out.push(b.as_ref());
                            }
                        }
                    }
                }
            }
        }
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loom_core::input::Kind;
    use loom_core::snapshot::AppProtocol;

    fn target(breaker: Option<CircuitBreaker>) -> BackendTarget {
        BackendTarget {
            object: ObjectKey {
                kind: Kind::Service,
                namespace: "default".into(),
                name: "web".into(),
            },
            port: Some(80),
            protocol: AppProtocol::Http,
            endpoints: vec!["a:1".into(), "b:1".into(), "c:1".into()],
            tls: None,
            circuit_breaker: breaker.map(Arc::new),
        }
    }

    fn breaker(
        max_requests: Option<u32>,
        max_connections: Option<u32>,
        pending: Option<u32>,
    ) -> CircuitBreaker {
        CircuitBreaker {
            policy: ObjectKey {
                kind: Kind::CircuitBreakerPolicy,
                namespace: "default".into(),
                name: "cb".into(),
            },
            outlier: OutlierConfig::PASSIVE,
            max_connections,
            max_pending_requests: pending,
            max_requests,
        }
    }

    #[test]
    fn without_a_policy_a_refused_endpoint_is_skipped_until_it_is_due_back() {
        let h = Health::new(Metrics::new());
        let t = target(None);
        let b = h.backend(&t);
        h.record(&b, &t, "b:1", Outcome::GatewayFailure);
        for r in 0..100 {
            assert_ne!(h.pick(&b, &t.endpoints, r), 1);
        }
        let picked: std::collections::BTreeSet<usize> =
            (0..10).map(|r| h.pick(&b, &t.endpoints, r)).collect();
        assert_eq!(picked, [0, 2].into());
        // A 5xx does not count without a policy.
        h.record(&b, &t, "a:1", Outcome::ServerError);
        assert!((0..10).any(|r| h.pick(&b, &t.endpoints, r) == 0));
    }

    #[test]
    fn with_every_endpoint_out_all_are_candidates_again() {
        let h = Health::new(Metrics::new());
        let t = target(None);
        let b = h.backend(&t);
        for e in &t.endpoints {
            h.record(&b, &t, e, Outcome::GatewayFailure);
        }
        let picked: std::collections::BTreeSet<usize> =
            (0..10).map(|r| h.pick(&b, &t.endpoints, r)).collect();
        assert_eq!(picked, [0, 1, 2].into());
    }

    #[tokio::test]
    async fn max_requests_turns_the_next_request_away_until_one_finishes() {
        let h = Health::new(Metrics::new());
        let cb = breaker(Some(2), None, None);
        let b = h.backend(&target(Some(cb.clone())));
        let one = b.admit(&cb, Duration::ZERO).await.unwrap();
        let _two = b.admit(&cb, Duration::ZERO).await.unwrap();
        assert_eq!(
            b.admit(&cb, Duration::ZERO).await.err(),
            Some(Overloaded::MaxRequests)
        );
        drop(one);
        assert!(b.admit(&cb, Duration::ZERO).await.is_ok());
    }

    #[tokio::test]
    async fn a_request_waits_for_a_connection_among_at_most_max_pending() {
        let h = Health::new(Metrics::new());
        let cb = breaker(None, Some(1), Some(1));
        let b = h.backend(&target(Some(cb.clone())));
        let held = b.admit(&cb, Duration::ZERO).await.unwrap();
        let waiter = {
            let (b, cb) = (b.clone(), cb.clone());
            tokio::spawn(async move { b.admit(&cb, Duration::from_secs(5)).await.is_ok() })
        };
        // The waiter takes the one pending place; a third request is turned away at once.
        while b.pending.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            b.admit(&cb, Duration::from_secs(5)).await.err(),
            Some(Overloaded::MaxPendingRequests)
        );
        drop(held);
        assert!(
            waiter.await.unwrap(),
            "the waiter got the released connection"
        );
    }

    #[tokio::test]
    async fn without_pending_places_a_busy_backend_answers_at_once() {
        let h = Health::new(Metrics::new());
        let cb = breaker(None, Some(1), None);
        let b = h.backend(&target(Some(cb.clone())));
        let _held = b.admit(&cb, Duration::ZERO).await.unwrap();
        assert_eq!(
            b.admit(&cb, Duration::from_secs(5)).await.err(),
            Some(Overloaded::MaxPendingRequests)
        );
    }
}
