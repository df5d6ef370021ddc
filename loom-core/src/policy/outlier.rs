//! Outlier detection per backend, Envoy's consecutive-errors model: an endpoint that fails
//! `consecutive_errors` times in a row is ejected (left out of load balancing) for a while, longer
//! each time it is ejected again, and forgiven one ejection for each interval it stays in.
//!
//! The caller keeps one [`Outliers`] per backend, [`record`](Outliers::record)s every response or
//! failure, asks [`is_ejected`](Outliers::is_ejected) when picking an endpoint, and calls
//! [`sweep`](Outliers::sweep) at least every [`interval`](OutlierConfig::interval).

use std::collections::BTreeMap;
use std::time::Duration;

/// How a backend's endpoints are ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct OutlierConfig {
    /// Failures in a row that eject an endpoint (≥ 1; 0 counts as 1).
    pub consecutive_errors: u32,
    /// Whether 5xx responses count as failures (connect failures and timeouts always do). When
    /// they do not, a 5xx is a response like any other and ends a run of failures.
    pub count_5xx: bool,
    /// An ejection lasts `base_ejection_time × n`, n = how many times this endpoint has been
    /// ejected (this one included), capped at `max_ejection_time` (but never below base).
    pub base_ejection_time: Duration,
    /// The cap on one ejection's duration.
    pub max_ejection_time: Duration,
    /// The sweep period. An endpoint that stays un-ejected for a whole interval has n decreased
    /// by one (never below 0).
    pub interval: Duration,
    /// At most this share (0..=100) of the backend's endpoints are ejected at once; when > 0, at
    /// least one may be (as Envoy does).
    pub max_ejection_percent: u8,
}

impl OutlierConfig {
    /// What applies with no CircuitBreakerPolicy: an endpoint that refuses or times out a
    /// connection is left out for 5 s (consecutive_errors 1, count_5xx false, base 5 s, max
    /// 300 s, interval 10 s, max_ejection_percent 100).
    pub const PASSIVE: OutlierConfig = OutlierConfig {
        consecutive_errors: 1,
        count_5xx: false,
        base_ejection_time: Duration::from_secs(5),
        max_ejection_time: Duration::from_secs(300),
        interval: Duration::from_secs(10),
        max_ejection_percent: 100,
    };

    /// How long the `n`-th ejection lasts.
    fn ejection_time(&self, n: u32) -> Duration {
        let cap = self.max_ejection_time.max(self.base_ejection_time);
        self.base_ejection_time.saturating_mul(n).min(cap)
    }

    /// How many of `endpoints` may be ejected at once.
    fn max_ejected(&self, endpoints: usize) -> usize {
        let percent = usize::from(self.max_ejection_percent.min(100));
        (endpoints.saturating_mul(percent) / 100).max(usize::from(percent > 0))
    }
}

impl Default for OutlierConfig {
    /// [`OutlierConfig::PASSIVE`].
    fn default() -> Self {
        OutlierConfig::PASSIVE
    }
}

/// What came of one request to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response that is not a 5xx.
    Success,
    /// A 5xx response.
    ServerError,
    /// The connection was refused or timed out, or the response timed out.
    GatewayFailure,
}

/// Ejection state of one backend's endpoints, keyed by endpoint (`"address:port"`).
///
/// Only endpoints with something to remember (failures, ejections) are tracked, so a healthy
/// backend holds an empty map and [`is_quiet`](Outliers::is_quiet).
#[derive(Clone, Debug, Default)]
pub struct Outliers {
    config: OutlierConfig,
    endpoints: BTreeMap<String, EndpointState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct EndpointState {
    /// Failures in a row.
    failures: u32,
    /// n: ejections not yet forgiven.
    ejections: u32,
    /// Set while ejected, and after that until the sweep that returns the endpoint.
    ejected_until: Option<Duration>,
    /// Start of the un-ejected time not yet counted toward forgiving an ejection.
    healthy_since: Duration,
}

impl EndpointState {
    fn is_ejected(&self, now: Duration) -> bool {
        self.ejected_until.is_some_and(|until| until > now)
    }

    fn is_quiet(&self) -> bool {
        self.failures == 0 && self.ejections == 0 && self.ejected_until.is_none()
    }
}

/// One endpoint's outlier state, for `/config` (camelCase, times in seconds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOutlier {
    /// `"address:port"`.
    pub endpoint: String,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Times ejected, less those forgiven (n).
    pub ejections: u32,
    /// The time left of its ejection, if it is ejected.
    #[serde(rename = "ejectedForSeconds", serialize_with = "seconds")]
    pub ejected_for: Option<Duration>,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Outliers {
    /// No endpoint tracked yet.
    pub fn new(config: OutlierConfig) -> Self {
        Outliers {
            config,
            endpoints: BTreeMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// A new configuration (a reload): the state (counters, ejections, n) is kept.
    pub fn set_config(&mut self, config: OutlierConfig) {
        self.config = config;
    }

    /// Forgets endpoints not in `endpoints` (they left the backend).
    pub fn retain(&mut self, endpoints: &[String]) {
        self.endpoints
            .retain(|endpoint, _| endpoints.contains(endpoint));
    }

    /// Records a response or failure from `endpoint`; `endpoints` is how many the backend has now
    /// (for `max_ejection_percent`). Returns `Some(until)` when this ejected it. Outcomes of
    /// requests to an endpoint that is ejected (requests in flight) are ignored.
    pub fn record(
        &mut self,
        endpoint: &str,
        outcome: Outcome,
        endpoints: usize,
        now: Duration,
    ) -> Option<Duration> {
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::ServerError => self.config.count_5xx,
            Outcome::GatewayFailure => true,
        };
        if !failed {
            if let Some(state) = self.endpoints.get_mut(endpoint) {
                state.failures = 0;
                if state.is_quiet() {
                    self.endpoints.remove(endpoint);
                }
            }
            return None;
        }
        if !self.endpoints.contains_key(endpoint) {
            self.endpoints
                .insert(endpoint.to_owned(), EndpointState::default());
        }
        let state = self.endpoints.get_mut(endpoint)?;
        if state.is_ejected(now) {
            return None;
        }
        state.failures = state.failures.saturating_add(1);
        if state.failures < self.config.consecutive_errors.max(1) {
            return None;
        }
        // Over the threshold: eject if there is room, else keep counting.
        if self.ejected(now) >= self.config.max_ejected(endpoints) {
            return None;
        }
        let state = self.endpoints.get_mut(endpoint)?;
        state.failures = 0;
        state.ejections = state.ejections.saturating_add(1);
        let until = now.saturating_add(self.config.ejection_time(state.ejections));
        state.ejected_until = Some(until);
        Some(until)
    }

    /// Ends the ejections that are over and forgives one ejection (n − 1) per whole interval an
    /// endpoint has stayed in, counted from when its last ejection ended: the result does not
    /// depend on how often this runs. Call it at least every `interval`; it only walks tracked
    /// endpoints. Returns the endpoints that came back.
    pub fn sweep(&mut self, now: Duration) -> Vec<String> {
        let interval = self.config.interval.max(Duration::from_nanos(1));
        let mut returned = vec![];
        self.endpoints.retain(|endpoint, state| {
            if let Some(until) = state.ejected_until {
                if until > now {
                    return true;
                }
                state.ejected_until = None;
                state.healthy_since = until;
                returned.push(endpoint.clone());
            }
            if state.ejections > 0 {
                let healthy = now.saturating_sub(state.healthy_since);
                let intervals = healthy.as_nanos() / interval.as_nanos();
                let forgiven = u32::try_from(intervals)
                    .unwrap_or(u32::MAX)
                    .min(state.ejections);
                state.ejections -= forgiven;
                state.healthy_since = state
                    .healthy_since
                    .saturating_add(interval.saturating_mul(forgiven));
            }
            !state.is_quiet()
        });
        returned
    }

    /// Whether the endpoint is ejected at `now`. An ejection whose time is over counts as not
    /// ejected even before the sweep.
    pub fn is_ejected(&self, endpoint: &str, now: Duration) -> bool {
        self.endpoints
            .get(endpoint)
            .is_some_and(|state| state.is_ejected(now))
    }

    /// How many endpoints are ejected at `now`.
    pub fn ejected(&self, now: Duration) -> usize {
        self.endpoints
            .values()
            .filter(|state| state.is_ejected(now))
            .count()
    }

    /// Whether no endpoint is tracked as failing or ejected, so that recording a success would
    /// change nothing (the data plane can skip the lock).
    pub fn is_quiet(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// A plain-data view of the tracked endpoints, for `/config`.
    pub fn describe(&self, now: Duration) -> Vec<EndpointOutlier> {
        self.endpoints
            .iter()
            .map(|(endpoint, state)| EndpointOutlier {
                endpoint: endpoint.clone(),
                consecutive_failures: state.failures,
                ejections: state.ejections,
                ejected_for: state
                    .ejected_until
                    .and_then(|until| until.checked_sub(now))
                    .filter(|left| !left.is_zero()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const A: &str = "10.0.0.1:80";
    const B: &str = "10.0.0.2:80";
    const NS: Duration = Duration::from_nanos(1);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn config(consecutive_errors: u32) -> OutlierConfig {
        OutlierConfig {
            consecutive_errors,
            count_5xx: true,
            base_ejection_time: secs(30),
            max_ejection_time: secs(100),
            interval: secs(10),
            max_ejection_percent: 100,
        }
    }

    /// Records `n` failures of `endpoint` at `now` (one endpoint in the backend); returns the
    /// last result.
    fn fail(o: &mut Outliers, endpoint: &str, n: u32, now: Duration) -> Option<Duration> {
        let mut last = None;
        for _ in 0..n {
            last = o.record(endpoint, Outcome::GatewayFailure, 1, now);
        }
        last
    }

    #[test]
    fn passive_config_ejects_on_one_connect_failure_for_five_seconds() {
        let mut o = Outliers::default();
        assert_eq!(o.config(), &OutlierConfig::PASSIVE);
        assert_eq!(o.record(A, Outcome::ServerError, 1, secs(1)), None);
        assert_eq!(fail(&mut o, A, 1, secs(1)), Some(secs(6)));
    }

    #[test]
    fn ejects_after_exactly_n_consecutive_failures_and_not_n_minus_1() {
        let mut o = Outliers::new(config(3));
        assert_eq!(fail(&mut o, A, 2, secs(1)), None);
        assert!(!o.is_ejected(A, secs(1)));
        assert_eq!(fail(&mut o, A, 1, secs(1)), Some(secs(31)));
        assert!(o.is_ejected(A, secs(1)));
        assert_eq!(o.ejected(secs(1)), 1);
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let mut o = Outliers::new(config(3));
        fail(&mut o, A, 2, secs(1));
        o.record(A, Outcome::Success, 1, secs(1));
        assert!(o.is_quiet());
        assert_eq!(fail(&mut o, A, 2, secs(1)), None);
        assert_eq!(fail(&mut o, A, 1, secs(1)), Some(secs(31)));
    }

    #[test]
    fn server_errors_count_only_with_count_5xx() {
        let mut o = Outliers::new(OutlierConfig {
            count_5xx: false,
            ..config(2)
        });
        for _ in 0..5 {
            assert_eq!(o.record(A, Outcome::ServerError, 1, secs(1)), None);
        }
        assert!(o.is_quiet());
        // A 5xx that does not count is a response: it ends a run of gateway failures.
        fail(&mut o, A, 1, secs(1));
        o.record(A, Outcome::ServerError, 1, secs(1));
        assert_eq!(fail(&mut o, A, 1, secs(1)), None);

        let mut o = Outliers::new(config(2));
        o.record(A, Outcome::ServerError, 1, secs(1));
        assert_eq!(
            o.record(A, Outcome::ServerError, 1, secs(1)),
            Some(secs(31))
        );
    }

    #[test]
    fn ejection_time_grows_base_times_n_and_caps_at_max() {
        let mut o = Outliers::new(config(1));
        let mut now = secs(0);
        let mut lasted = vec![];
        for _ in 0..5 {
            let until = fail(&mut o, A, 1, now).unwrap();
            lasted.push((until - now).as_secs());
            // Back right away: no interval passes, so nothing is forgiven.
            now = until;
            assert_eq!(o.sweep(now), [A]);
        }
        assert_eq!(lasted, [30, 60, 90, 100, 100]);
    }

    #[test]
    fn max_ejection_time_below_base_means_base() {
        let mut o = Outliers::new(OutlierConfig {
            max_ejection_time: secs(1),
            ..config(1)
        });
        assert_eq!(fail(&mut o, A, 1, secs(0)), Some(secs(30)));
    }

    #[test]
    fn each_healthy_interval_forgives_one_ejection() {
        let mut o = Outliers::new(config(1));
        assert_eq!(fail(&mut o, A, 1, secs(0)), Some(secs(30)));
        assert_eq!(o.sweep(secs(30)), [A]);
        assert_eq!(fail(&mut o, A, 1, secs(30)), Some(secs(90))); // n = 2
        o.sweep(secs(90));
        // One whole interval healthy: n 2 → 1, so the next ejection is n = 2 again, not 3.
        o.sweep(secs(100) - NS);
        assert_eq!(o.describe(secs(100))[0].ejections, 2);
        o.sweep(secs(100));
        assert_eq!(o.describe(secs(100))[0].ejections, 1);
        assert_eq!(fail(&mut o, A, 1, secs(100)), Some(secs(160)));
        // Two more intervals after that ejection: n 2 → 0, and the endpoint is forgotten.
        assert_eq!(o.sweep(secs(175)), [A]);
        assert_eq!(o.describe(secs(175))[0].ejections, 1);
        o.sweep(secs(180));
        assert!(o.is_quiet());
    }

    #[test]
    fn forgiveness_does_not_depend_on_how_often_sweep_runs() {
        let run = |sweeps: &[u64]| {
            let mut o = Outliers::new(config(1));
            let mut now = secs(0);
            for _ in 0..3 {
                now = fail(&mut o, A, 1, now).unwrap();
                o.sweep(now);
            }
            // Ejections ended at 30, 90, 180: n = 3 from 180.
            for &s in sweeps {
                o.sweep(secs(s));
            }
            o.describe(secs(0)).first().map(|e| e.ejections)
        };
        assert_eq!(run(&[205]), Some(1));
        assert_eq!(run(&[181, 189, 190, 199, 200, 205]), Some(1));
        assert_eq!(run(&[210]), None);
    }

    #[test]
    fn at_most_max_ejection_percent_are_out_at_once() {
        let endpoints = ["a:1", "b:1", "c:1", "d:1"];
        let mut o = Outliers::new(OutlierConfig {
            max_ejection_percent: 50,
            ..config(1)
        });
        let ejected: Vec<bool> = endpoints
            .iter()
            .map(|e| o.record(e, Outcome::GatewayFailure, 4, secs(0)).is_some())
            .collect();
        assert_eq!(ejected, [true, true, false, false]);
        assert_eq!(o.ejected(secs(0)), 2);
        // "c" keeps counting; once room exists, its next failure ejects it.
        o.sweep(secs(30));
        assert_eq!(o.describe(secs(30))[2].consecutive_failures, 1);
        assert!(
            o.record("c:1", Outcome::GatewayFailure, 4, secs(30))
                .is_some()
        );
    }

    #[test]
    fn one_endpoint_at_fifty_percent_may_still_be_ejected() {
        let mut o = Outliers::new(OutlierConfig {
            max_ejection_percent: 50,
            ..config(1)
        });
        assert!(fail(&mut o, A, 1, secs(0)).is_some());
    }

    #[test]
    fn zero_percent_never_ejects() {
        let mut o = Outliers::new(OutlierConfig {
            max_ejection_percent: 0,
            ..config(1)
        });
        assert_eq!(fail(&mut o, A, 10, secs(0)), None);
        assert_eq!(o.ejected(secs(0)), 0);
    }

    #[test]
    fn an_ejected_endpoint_returns_after_its_time() {
        let mut o = Outliers::new(config(1));
        let until = fail(&mut o, A, 1, secs(5)).unwrap();
        assert!(o.is_ejected(A, until - NS));
        assert!(!o.is_ejected(A, until));
        assert_eq!(o.ejected(until), 0);
        assert!(o.sweep(until - NS).is_empty());
        assert_eq!(o.sweep(until), [A]);
        assert!(o.sweep(until).is_empty());
    }

    #[test]
    fn failures_while_ejected_neither_extend_nor_count() {
        let mut o = Outliers::new(config(2));
        let until = fail(&mut o, A, 2, secs(0)).unwrap();
        assert_eq!(fail(&mut o, A, 5, secs(10)), None);
        let described = &o.describe(secs(10))[0];
        assert_eq!(described.consecutive_failures, 0);
        assert_eq!(described.ejections, 1);
        assert_eq!(described.ejected_for, Some(until - secs(10)));
    }

    #[test]
    fn set_config_keeps_state() {
        let mut o = Outliers::new(config(3));
        o.record(A, Outcome::GatewayFailure, 2, secs(0));
        fail(&mut o, B, 3, secs(0));
        o.set_config(config(2));
        assert_eq!(o.config(), &config(2));
        assert!(o.is_ejected(B, secs(1)));
        assert!(o.record(A, Outcome::GatewayFailure, 2, secs(1)).is_some());
    }

    #[test]
    fn retain_forgets_endpoints_that_left() {
        let mut o = Outliers::new(config(3));
        fail(&mut o, A, 1, secs(0));
        fail(&mut o, B, 3, secs(0));
        o.retain(&[A.to_owned()]);
        assert!(!o.is_ejected(B, secs(0)));
        let left: Vec<String> = o
            .describe(secs(0))
            .into_iter()
            .map(|e| e.endpoint)
            .collect();
        assert_eq!(left, [A]);
        o.retain(&[]);
        assert!(o.is_quiet());
    }

    #[test]
    fn describe_shows_counts_and_time_left() {
        let mut o = Outliers::new(config(2));
        fail(&mut o, A, 1, secs(0));
        fail(&mut o, B, 2, secs(0));
        let json = serde_json::to_value(o.describe(secs(10))).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"endpoint": A, "consecutiveFailures": 1, "ejections": 0, "ejectedForSeconds": null},
                {"endpoint": B, "consecutiveFailures": 0, "ejections": 1,
                 "ejectedForSeconds": 20.0},
            ])
        );
        assert_eq!(o.describe(secs(30))[1].ejected_for, None);
    }

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Success),
            Just(Outcome::ServerError),
            Just(Outcome::GatewayFailure),
        ]
    }

    /// Any duration, up to `Duration::MAX`, often small.
    fn arb_duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0..60_000u64).prop_map(Duration::from_millis),
            any::<(u64, u32)>().prop_map(|(s, n)| Duration::new(s, n % 1_000_000_000)),
            Just(Duration::MAX),
        ]
    }

    fn arb_config() -> impl Strategy<Value = OutlierConfig> {
        (
            0..5u32,
            any::<bool>(),
            arb_duration(),
            arb_duration(),
            arb_duration(),
            any::<u8>(),
        )
            .prop_map(
                |(errors, count_5xx, base, max, interval, percent)| OutlierConfig {
                    consecutive_errors: errors,
                    count_5xx,
                    base_ejection_time: base,
                    max_ejection_time: max,
                    interval,
                    max_ejection_percent: percent,
                },
            )
    }

    #[derive(Clone, Debug)]
    enum Op {
        Record(usize, Outcome),
        Sweep,
        Retain(Vec<bool>),
        SetConfig(OutlierConfig),
    }

    fn arb_op(endpoints: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..endpoints, arb_outcome()).prop_map(|(e, o)| Op::Record(e, o)),
            2 => Just(Op::Sweep),
            1 => prop::collection::vec(any::<bool>(), endpoints).prop_map(Op::Retain),
            1 => arb_config().prop_map(Op::SetConfig),
        ]
    }

    /// Every tracked endpoint has something to remember.
    fn nothing_quiet_is_kept(o: &Outliers) -> bool {
        o.endpoints.values().all(|state| !state.is_quiet())
    }

    proptest! {
        #[test]
        fn ejected_never_exceeds_the_cap(
            config in arb_config(),
            endpoints in 1..8usize,
            steps in prop::collection::vec(
                // None: a sweep.
                (prop::option::weighted(0.8, 0..8usize), arb_outcome(), 0..20_000u64),
                1..300,
            ),
        ) {
            let names: Vec<String> = (0..endpoints).map(|i| format!("10.0.0.{i}:80")).collect();
            let cap = config.max_ejected(endpoints);
            let mut o = Outliers::new(config);
            let mut now = Duration::ZERO;
            for (endpoint, outcome, advance) in steps {
                now += Duration::from_millis(advance);
                match endpoint {
                    Some(i) => {
                        let name = &names[i % endpoints];
                        if let Some(until) = o.record(name, outcome, endpoints, now) {
                            prop_assert!(until >= now);
                            prop_assert_eq!(o.is_ejected(name, now), until > now);
                        }
                    }
                    None => {
                        for back in o.sweep(now) {
                            prop_assert!(!o.is_ejected(&back, now));
                        }
                    }
                }
                prop_assert!(o.ejected(now) <= cap, "{} > {}", o.ejected(now), cap);
                prop_assert!(nothing_quiet_is_kept(&o));
            }
        }

        #[test]
        fn no_input_panics(
            config in arb_config(),
            endpoints in 1..6usize,
            steps in prop::collection::vec((arb_op(6), arb_duration()), 1..100),
        ) {
            let names: Vec<String> = (0..endpoints).map(|i| format!("10.0.0.{i}:80")).collect();
            let mut o = Outliers::new(config);
            for (op, now) in steps {
                match op {
                    Op::Record(i, outcome) => {
                        o.record(&names[i % endpoints], outcome, endpoints, now);
                    }
                    Op::Sweep => {
                        o.sweep(now);
                    }
                    Op::Retain(keep) => {
                        let kept: Vec<String> = names
                            .iter()
                            .zip(keep.iter().chain(std::iter::repeat(&true)))
                            .filter(|(_, keep)| **keep)
                            .map(|(name, _)| name.clone())
                            .collect();
                        o.retain(&kept);
                        prop_assert!(o.endpoints.keys().all(|k| kept.contains(k)));
                    }
                    Op::SetConfig(config) => o.set_config(config),
                }
                prop_assert!(o.ejected(now) <= o.endpoints.len());
                prop_assert_eq!(o.is_quiet(), o.describe(now).is_empty());
                prop_assert!(nothing_quiet_is_kept(&o));
            }
        }
    }
}
