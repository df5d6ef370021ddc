//! Prometheus metrics, served on the admin listener's `/metrics`.

use std::sync::Arc;

use loom_core::input::{Kind, ObjectKey};
use loom_core::status::{ConditionType, ObjectStatus};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::handle::Published;

/// Every metric Loom exports.
pub struct Metrics {
    registry: Registry,
    route_requests: IntCounterVec,
    route_latency: HistogramVec,
    generation: IntGauge,
    reload_seconds: HistogramVec,
    gateway_status: IntGaugeVec,
    route_count: IntGaugeVec,
    backend_healthy: IntGaugeVec,
    backend_ejections: IntCounterVec,
    rate_limited: IntCounterVec,
    rate_limit_store_errors: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let m = Metrics {
            route_requests: IntCounterVec::new(
                Opts::new(
                    "loom_route_requests_total",
                    "Requests by route, rule and status code",
                ),
                &["route", "rule", "code"],
            )
            .expect("metric"),
            route_latency: HistogramVec::new(
                HistogramOpts::new("loom_route_latency_seconds", "Request latency by route")
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ]),
                &["route"],
            )
            .expect("metric"),
            generation: IntGauge::new(
                "loom_config_generation",
                "Generation of the configuration being served",
            )
            .expect("metric"),
            reload_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "loom_reload_duration_seconds",
                    "Time to load and compile a configuration",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
                &[],
            )
            .expect("metric"),
            gateway_status: IntGaugeVec::new(
                Opts::new(
                    "loom_gateway_status",
                    "1 when the Gateway condition is True",
                ),
                &["gateway", "condition"],
            )
            .expect("metric"),
            route_count: IntGaugeVec::new(
                Opts::new("loom_route_count", "Routes Loom owns, by kind"),
                &["kind"],
            )
            .expect("metric"),
            backend_healthy: IntGaugeVec::new(
                Opts::new(
                    "loom_backend_healthy",
                    "Usable endpoints of each backend in use: ready, and not ejected",
                ),
                &["namespace", "service"],
            )
            .expect("metric"),
            backend_ejections: IntCounterVec::new(
                Opts::new(
                    "loom_backend_ejections_total",
                    "Endpoints ejected by outlier detection",
                ),
                &["namespace", "service"],
            )
            .expect("metric"),
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "loom_rate_limited_total",
                    "Requests answered 429 by a RateLimitPolicy",
                ),
                &["policy", "route"],
            )
            .expect("metric"),
            rate_limit_store_errors: IntCounterVec::new(
                Opts::new(
                    "loom_rate_limit_redis_errors_total",
                    "Global rate-limit checks that could not reach Redis, by what was done \
                     (allowed: failOpen, refused: 503)",
                ),
                &["policy", "outcome"],
            )
            .expect("metric"),
            registry,
        };
        for c in [
            Box::new(m.route_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.route_latency.clone()),
            Box::new(m.generation.clone()),
            Box::new(m.reload_seconds.clone()),
            Box::new(m.gateway_status.clone()),
            Box::new(m.route_count.clone()),
            Box::new(m.backend_healthy.clone()),
            Box::new(m.backend_ejections.clone()),
            Box::new(m.rate_limited.clone()),
            Box::new(m.rate_limit_store_errors.clone()),
        ] {
            m.registry.register(c).expect("unique metric names");
        }
        Arc::new(m)
    }

    /// Records one finished request.
    pub fn request(&self, route: &str, rule: &str, code: u16, seconds: f64) {
        let code = code.to_string();
        self.route_requests
            .with_label_values(&[route, rule, code.as_str()])
            .inc();
        self.route_latency
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// Updates the configuration gauges after a publish.
    pub fn published(&self, p: &Published) {
        self.generation.set(p.generation as i64);
        self.reload_seconds
            .with_label_values::<&str>(&[])
            .observe(p.compile_time.as_secs_f64());
        self.gateway_status.reset();
        let mut counts = std::collections::BTreeMap::new();
        for (key, status) in &p.status.objects {
            match status {
                ObjectStatus::Gateway(g) => {
                    for c in &g.conditions.0 {
                        if matches!(c.type_, ConditionType::Accepted | ConditionType::Programmed) {
                            let name = format!("{}/{}", key.namespace, key.name);
                            self.gateway_status
                                .with_label_values(&[name.as_str(), c.type_.as_str()])
                                .set(i64::from(c.status));
                        }
                    }
                }
                ObjectStatus::Route(_) => *counts.entry(key.kind).or_insert(0i64) += 1,
                _ => {}
            }
        }
        for kind in [
            Kind::HttpRoute,
            Kind::GrpcRoute,
            Kind::TlsRoute,
            Kind::TcpRoute,
            Kind::UdpRoute,
        ] {
            self.route_count
                .with_label_values(&[kind.as_str()])
                .set(counts.get(&kind).copied().unwrap_or(0));
        }
    }

    /// Sets the usable endpoints of a backend.
    pub fn backend_healthy(&self, backend: &ObjectKey, endpoints: usize) {
        self.backend_healthy
            .with_label_values(&[backend.namespace.as_str(), backend.name.as_str()])
            .set(endpoints as i64);
    }

    /// Forgets every backend gauge (before they are set again after a publish).
    pub fn reset_backends(&self) {
        self.backend_healthy.reset();
    }

    /// Counts an ejection.
    pub fn backend_ejected(&self, backend: &ObjectKey) {
        self.backend_ejections
            .with_label_values(&[backend.namespace.as_str(), backend.name.as_str()])
            .inc();
    }

    /// Counts a request a RateLimitPolicy turned away.
    pub fn rate_limited(&self, policy: &ObjectKey, route: &ObjectKey) {
        let policy = format!("{}/{}", policy.namespace, policy.name);
        let route = format!("{}/{}", route.namespace, route.name);
        self.rate_limited
            .with_label_values(&[policy.as_str(), route.as_str()])
            .inc();
    }

    /// Counts a global check that could not reach Redis; `allowed`: the request went on.
    pub fn rate_limit_store_error(&self, policy: &ObjectKey, allowed: bool) {
        let policy = format!("{}/{}", policy.namespace, policy.name);
        let outcome = if allowed { "allowed" } else { "refused" };
        self.rate_limit_store_errors
            .with_label_values(&[policy.as_str(), outcome])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = vec![];
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
