//! Prometheus metrics, served on the admin listener's `/metrics`. Labels are separate and
//! bounded (object names, rule indexes, status codes, standard methods; never paths or header
//! values): see docs/metrics.md.

use std::cell::RefCell;
use std::sync::Arc;

use http::Method;
use loom_core::input::{Kind, ObjectKey};
use loom_core::snapshot::HttpRule;
use loom_core::status::{ConditionType, ObjectStatus};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use thread_local::ThreadLocal;

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
    routes_per_gateway: [(Kind, IntGaugeVec); 5],
    backend_healthy: IntGaugeVec,
    backend_ejections: IntCounterVec,
    rate_limited: IntCounterVec,
    rate_limit_store_errors: IntCounterVec,
    plugin_failures: IntCounterVec,
    /// Per worker thread: the series of the last requests' label sets.
    recent: ThreadLocal<RefCell<Recent>>,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let m = Metrics {
            route_requests: IntCounterVec::new(
                Opts::new(
                    "loom_route_requests_total",
                    "Requests by route (namespace, name, kind), rule index, status code and method; \
                     requests no route matched have empty route labels",
                ),
                &["namespace", "route", "kind", "rule", "code", "method"],
            )
            .expect("metric"),
            route_latency: HistogramVec::new(
                HistogramOpts::new(
                    "loom_route_latency_seconds",
                    "Request latency by route, from the request head to the end of the response",
                )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ]),
                &["namespace", "route", "kind"],
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
                    "1 when the Gateway condition (Accepted, Programmed) is True",
                ),
                &["namespace", "name", "condition"],
            )
            .expect("metric"),
            route_count: IntGaugeVec::new(
                Opts::new("loom_route_count", "Routes Loom owns, by kind"),
                &["kind"],
            )
            .expect("metric"),
            routes_per_gateway: [
                Kind::HttpRoute,
                Kind::GrpcRoute,
                Kind::TlsRoute,
                Kind::TcpRoute,
                Kind::UdpRoute,
            ]
            .map(|kind| {
                let name = format!("loom_{}_count", kind.as_str().to_ascii_lowercase());
                let help = format!("{kind}s accepted by each Gateway");
                let gauge =
                    IntGaugeVec::new(Opts::new(name, help), &["namespace", "gateway"]).expect("metric");
                (kind, gauge)
            }),
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
            plugin_failures: IntCounterVec::new(
                Opts::new(
                    "loom_plugin_failures_total",
                    "WASMPlugin calls that gave no answer (failed: trap, time or memory \
                     budget, bad output; not_loaded: no module), by failStrategy",
                ),
                &["plugin", "reason", "fail_strategy"],
            )
            .expect("metric"),
            recent: ThreadLocal::new(),
            registry,
        };
        for c in [
            Box::new(m.route_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.route_latency.clone()),
            Box::new(m.generation.clone()),
            Box::new(m.reload_seconds.clone()),
            Box::new(m.gateway_status.clone()),
            Box::new(m.route_count.clone()),
            Box::new(m.routes_per_gateway[0].1.clone()),
            Box::new(m.routes_per_gateway[1].1.clone()),
            Box::new(m.routes_per_gateway[2].1.clone()),
            Box::new(m.routes_per_gateway[3].1.clone()),
            Box::new(m.routes_per_gateway[4].1.clone()),
            Box::new(m.backend_healthy.clone()),
            Box::new(m.backend_ejections.clone()),
            Box::new(m.rate_limited.clone()),
            Box::new(m.rate_limit_store_errors.clone()),
            Box::new(m.plugin_failures.clone()),
        ] {
            m.registry.register(c).expect("unique metric names");
        }
        Arc::new(m)
    }

    /// Records one finished request: the rule that matched (`None`: none did), its method,
    /// the status code answered (0: none) and how long it took.
    pub fn request(&self, rule: Option<&Arc<HttpRule>>, method: &Method, code: u16, seconds: f64) {
        let method = method_label(method);
        let mut recent = self.recent.get_or_default().borrow_mut();
        let series = match recent.find(rule, code, method) {
            Some(series) => series,
            None => recent.insert(RecentSeries {
                rule: rule.cloned(),
                code,
                method,
                requests: self.requests_of(rule.map(|r| &**r), code, method),
                latency: self.latency_of(rule.map(|r| &**r)),
            }),
        };
        series.requests.inc();
        series.latency.observe(seconds);
    }

    fn requests_of(&self, rule: Option<&HttpRule>, code: u16, method: &str) -> IntCounter {
        let (namespace, route, kind) = route_labels(rule);
        let index;
        let rule = match rule.map(|r| r.rule_index) {
            None => "",
            Some(i) if i < SMALL.len() => SMALL[i],
            Some(i) => {
                index = i.to_string();
                index.as_str()
            }
        };
        let mut code_buf = [0u8; 3];
        let code = status_text(code, &mut code_buf);
        self.route_requests
            .with_label_values(&[namespace, route, kind, rule, code, method])
    }

    fn latency_of(&self, rule: Option<&HttpRule>) -> Histogram {
        let (namespace, route, kind) = route_labels(rule);
        self.route_latency
            .with_label_values(&[namespace, route, kind])
    }

    /// Updates the configuration gauges after a publish.
    pub fn published(&self, p: &Published) {
        self.generation.set(p.generation as i64);
        self.reload_seconds
            .with_label_values::<&str>(&[])
            .observe(p.compile_time.as_secs_f64());
        self.gateway_status.reset();
        for (_, gauge) in &self.routes_per_gateway {
            gauge.reset();
        }
        let mut counts = std::collections::BTreeMap::new();
        // Attached routes by kind and parent Gateway, counted here and set once each (a
        // gauge's label lookup per route was half of the work after a publish at 5,000
        // routes; the health sync the other half).
        let mut attached: foldhash::HashMap<(Kind, &str, &str), i64> = Default::default();
        let status = p.status.load_full();
        for (key, status) in &status.objects {
            match status {
                ObjectStatus::Gateway(g) => {
                    for c in &g.conditions.0 {
                        if matches!(c.type_, ConditionType::Accepted | ConditionType::Programmed) {
                            self.gateway_status
                                .with_label_values(&[
                                    key.namespace.as_str(),
                                    key.name.as_str(),
                                    c.type_.as_str(),
                                ])
                                .set(i64::from(c.status));
                        }
                    }
                }
                ObjectStatus::Route(r) => {
                    *counts.entry(key.kind).or_insert(0i64) += 1;
                    for parent in &r.parents {
                        let accepted = parent
                            .conditions
                            .get(ConditionType::Accepted)
                            .is_some_and(|c| c.status);
                        let is_gateway = parent
                            .parent_ref
                            .kind
                            .as_deref()
                            .is_none_or(|k| k == "Gateway");
                        if accepted && is_gateway {
                            let ns = parent
                                .parent_ref
                                .namespace
                                .as_deref()
                                .unwrap_or(key.namespace.as_str());
                            let gateway = (key.kind, ns, parent.parent_ref.name.as_str());
                            *attached.entry(gateway).or_default() += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        for ((kind, ns, name), n) in attached {
            if let Some((_, gauge)) = self.routes_per_gateway.iter().find(|(k, _)| *k == kind) {
                gauge.with_label_values(&[ns, name]).set(n);
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

    /// Counts a WASMPlugin call that gave no answer (`not_loaded`: no module to run).
    pub fn plugin_failed(&self, plugin: &ObjectKey, not_loaded: bool, fail_open: bool) {
        let plugin = format!("{}/{}", plugin.namespace, plugin.name);
        self.plugin_failures
            .with_label_values(&[
                plugin.as_str(),
                if not_loaded { "not_loaded" } else { "failed" },
                if fail_open { "FailOpen" } else { "FailClose" },
            ])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = vec![];
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Rule indexes most routes have, as label values without an allocation.
const SMALL: [&str; 16] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
];

/// A status code as its three digits (`"0"` for none).
fn status_text(code: u16, buf: &mut [u8; 3]) -> &str {
    if !(100..=999).contains(&code) {
        return "0";
    }
    buf[0] = b'0' + (code / 100) as u8;
    buf[1] = b'0' + (code / 10 % 10) as u8;
    buf[2] = b'0' + (code % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("0")
}

/// A rule's route labels: namespace, name, kind (empty for none).
fn route_labels(rule: Option<&HttpRule>) -> (&str, &str, &str) {
    rule.map_or(("", "", ""), |r| {
        (
            r.route.namespace.as_str(),
            r.route.name.as_str(),
            r.route.kind.as_str(),
        )
    })
}

/// How many label sets a worker thread keeps the series of.
const RECENT: usize = 8;

/// The series of the label sets a worker thread recorded last: a request with the rule, code
/// and method of a recent one takes them as they are, instead of hashing up to six label
/// strings and taking the vectors' lock for each (~550 instructions per proxied request,
/// bench/RESULTS.md, #16). The rule is held, so its address is not reused while it is here.
#[derive(Default)]
struct Recent {
    series: Vec<RecentSeries>,
    /// Where the next new label set goes once all places are taken.
    next: usize,
}

struct RecentSeries {
    rule: Option<Arc<HttpRule>>,
    code: u16,
    method: &'static str,
    requests: IntCounter,
    latency: Histogram,
}

impl Recent {
    fn find(
        &mut self,
        rule: Option<&Arc<HttpRule>>,
        code: u16,
        method: &'static str,
    ) -> Option<&mut RecentSeries> {
        self.series.iter_mut().find(|s| {
            s.code == code
                && s.method == method
                && match (&s.rule, rule) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        })
    }

    fn insert(&mut self, series: RecentSeries) -> &mut RecentSeries {
        let at = if self.series.len() < RECENT {
            self.series.push(series);
            self.series.len() - 1
        } else {
            let at = self.next;
            self.series[at] = series;
            self.next = (at + 1) % RECENT;
            at
        };
        &mut self.series[at]
    }
}

/// The method as a label: the standard ones, anything else `OTHER` (label sets stay bounded).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: loom.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: loom
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: edge, namespace: infra}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: app}
spec:
  parentRefs: [{name: edge, namespace: infra}]
"#;

    fn published() -> Published {
        let loaded = loom_core::load::load_str("metrics.yaml", CONFIG);
        let mut input = loom_core::Input::default();
        for (_, o) in loaded.objects {
            input.upsert(o);
        }
        let compiled = loom_core::compile(&input);
        Published {
            generation: 1,
            snapshot: compiled.snapshot,
            status: arc_swap::ArcSwap::from_pointee(compiled.status),
            compile_time: std::time::Duration::from_millis(1),
        }
    }

    fn rendered(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn gateways_and_their_routes_are_labelled_by_namespace_and_name() {
        let m = Metrics::new();
        // Counted again at each publish, not added to the last.
        m.published(&published());
        m.published(&published());
        let text = rendered(&m);
        for line in [
            r#"loom_gateway_status{condition="Accepted",name="edge",namespace="infra"} 1"#,
            r#"loom_httproute_count{gateway="edge",namespace="infra"} 2"#,
            r#"loom_route_count{kind="HTTPRoute"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn a_request_is_counted_with_separate_route_labels() {
        let m = Metrics::new();
        let p = published();
        let rule = p.snapshot.gateways.values().next().unwrap().ports[&80].http_listeners()[0]
            .vhosts[0]
            .http
            .entries()
            .next()
            .unwrap()
            .1
            .clone();
        m.request(Some(&rule), &Method::GET, 200, 0.001);
        m.request(None, &Method::from_bytes(b"BREW").unwrap(), 404, 0.001);
        let text = rendered(&m);
        let route = rule.route.name.as_str();
        let matched = format!(
            r#"loom_route_requests_total{{code="200",kind="HTTPRoute",method="GET",namespace="app",route="{route}",rule="0"}} 1"#
        );
        let unmatched = r#"loom_route_requests_total{code="404",kind="",method="OTHER",namespace="",route="",rule=""} 1"#;
        for line in [matched.as_str(), unmatched] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn each_label_set_counts_its_own_requests_past_the_recent_ones() {
        let m = Metrics::new();
        let p = published();
        let rules: Vec<Arc<HttpRule>> =
            p.snapshot.gateways.values().next().unwrap().ports[&80].http_listeners()[0].vhosts[0]
                .http
                .entries()
                .map(|(_, r)| r.clone())
                .collect();
        assert_eq!(rules.len(), 2, "the fixture's two routes");
        // More label sets than a thread keeps, interleaved, some more than once.
        let codes: Vec<u16> = (200..200 + 3 * RECENT as u16).collect();
        for round in 0..3 {
            for code in &codes {
                for rule in &rules {
                    m.request(Some(rule), &Method::GET, *code, 0.001);
                }
                if round == 0 {
                    m.request(Some(&rules[0]), &Method::POST, *code, 0.001);
                }
            }
        }
        let text = rendered(&m);
        let count = |route: &str, code: u16, method: &str| {
            let line = format!(
                r#"loom_route_requests_total{{code="{code}",kind="HTTPRoute",method="{method}",namespace="app",route="{route}",rule="0"}} "#
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&line))
                .unwrap_or_else(|| panic!("{line} missing from\n{text}"))
                .to_owned()
        };
        for code in &codes {
            for rule in &rules {
                assert_eq!(count(rule.route.name.as_str(), *code, "GET"), "3");
            }
            assert_eq!(count(rules[0].route.name.as_str(), *code, "POST"), "1");
        }
        for rule in &rules {
            let line = format!(
                r#"loom_route_latency_seconds_count{{kind="HTTPRoute",namespace="app",route="{}"}} "#,
                rule.route.name
            );
            let expected = codes.len() * if Arc::ptr_eq(rule, &rules[0]) { 4 } else { 3 };
            assert!(
                text.lines().any(|l| l == format!("{line}{expected}")),
                "{line}{expected} missing from\n{text}"
            );
        }
    }

    #[test]
    fn status_codes_and_methods_are_bounded_labels() {
        let mut buf = [0u8; 3];
        assert_eq!(status_text(200, &mut buf), "200");
        assert_eq!(status_text(503, &mut buf), "503");
        assert_eq!(status_text(0, &mut buf), "0");
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
