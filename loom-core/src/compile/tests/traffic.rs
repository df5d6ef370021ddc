//! RateLimitPolicy and CircuitBreakerPolicy: the manifests users write, what applies where,
//! and the status each target gets.

use super::*;
use crate::snapshot::{ClientKey, Slot};

/// A Gateway with two listeners, the route of the issue (`api-routes`, one named rule) on
/// both, another route, and the Service of the circuit breaker.
pub(super) const APP: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: loom
  listeners:
  - {name: web, port: 80, protocol: HTTP}
  - {name: alt, port: 81, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api-routes, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - name: search
    matches: [{path: {type: PathPrefix, value: /search}}]
    backendRefs: [{name: backend-service, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: backend-service, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: web}]
  hostnames: [other.example]
  rules:
  - backendRefs: [{name: backend-service, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: backend-service, namespace: default}
spec:
  ports: [{name: http, port: 80}]
"#;

/// The RateLimitPolicy of issue #11, verbatim.
const ISSUE_RATE_LIMIT: &str = r#"
apiVersion: gateway.loom.dev/v1alpha1
kind: RateLimitPolicy
metadata:
  name: api-rate-limit
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: api-routes
  default:
    requestsPerSecond: 100
    burst: 200
  rules:
    - matches:
        - path:
            type: Exact
            value: /api/expensive
      requestsPerSecond: 10
"#;

/// The CircuitBreakerPolicy of issue #11, verbatim.
const ISSUE_CIRCUIT_BREAKER: &str = r#"
apiVersion: gateway.loom.dev/v1alpha1
kind: CircuitBreakerPolicy
metadata:
  name: backend-circuit-breaker
spec:
  targetRef:
    group: ""
    kind: Service
    name: backend-service
  consecutive5xxErrors: 5
  interval: 30s
  baseEjectionTime: 30s
  maxEjectionPercent: 50
"#;

fn compiled(policies: &str) -> Compiled {
    compile(&input(&format!("{APP}---\n{policies}")))
}

/// `(status, reason, message)` of the Accepted condition of each ancestor of a policy.
pub(super) fn accepted(c: &Compiled, kind: Kind, name: &str) -> Vec<(bool, Reason, String)> {
    let key = ObjectKey {
        kind,
        namespace: "default".into(),
        name: name.into(),
    };
    let Some(ObjectStatus::Policy(p)) = c.status.get(&key) else {
        panic!("no status for {key}");
    };
    p.ancestors
        .iter()
        .map(|a| {
            let c = a.conditions.get(ConditionType::Accepted).unwrap();
            (c.status, c.reason, c.message.to_string())
        })
        .collect()
}

/// What Gateway `default/edge` decides on `port` for `GET path` with `host`.
pub(super) fn decide_on_edge<'c>(
    c: &'c Compiled,
    port: u16,
    host: &str,
    path: &str,
) -> Decision<'c> {
    let uri: Uri = path.parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, host.parse().unwrap());
    let req = HttpRequest {
        scheme: "http",
        sni: None,
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
    };
    c.snapshot
        .decide(&GatewayName::new("default", "edge"), port, &req, 0)
}

/// The policy, slot and rate a request to `port` with `host` and `path` is counted in.
fn limit_of(c: &Compiled, port: u16, host: &str, path: &str) -> Option<(String, Slot, u32, u32)> {
    let d = decide_on_edge(c, port, host, path);
    let m = d.matched().expect("a rule matches");
    m.limit.map(|l| {
        (
            l.rate_limit.policy.name.clone(),
            l.slot,
            l.quota.requests_per_second(),
            l.quota.burst(),
        )
    })
}

fn limit(name: &str, target: &str, rps: u32) -> String {
    format!(
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  targetRef: {target}\n  default: {{requestsPerSecond: {rps}}}\n---\n"
    )
}

#[test]
fn the_issue_rate_limit_is_accepted_and_applies_its_rule_and_default() {
    let c = compiled(ISSUE_RATE_LIMIT);
    assert_eq!(
        accepted(&c, Kind::RateLimitPolicy, "api-rate-limit"),
        [(
            true,
            Reason::Accepted,
            "enforced on HTTPRoute api-routes: requests over the limit get 429".into()
        )]
    );
    let at = |path| limit_of(&c, 80, "any.example", path);
    assert_eq!(
        at("/api/expensive"),
        Some(("api-rate-limit".into(), Slot::Rule(0), 10, 10))
    );
    assert_eq!(
        at("/api/cheap"),
        Some(("api-rate-limit".into(), Slot::Default, 100, 200))
    );
    assert_eq!(limit_of(&c, 80, "other.example", "/"), None);
}

#[test]
fn one_route_on_two_listeners_shares_one_limit() {
    let c = compiled(ISSUE_RATE_LIMIT);
    assert_eq!(c.snapshot.rate_limits.len(), 1);
    let rule = |port| {
        c.snapshot
            .port(&GatewayName::new("default", "edge"), port)
            .unwrap()
            .http_listeners()[0]
            .vhosts
            .iter()
            .flat_map(|v| v.http.entries())
            .find_map(|(_, r)| r.rate_limit.clone())
            .unwrap()
    };
    assert!(std::sync::Arc::ptr_eq(&rule(80), &rule(81)));
}

#[test]
fn the_most_specific_policy_wins_rule_route_listener_gateway() {
    let route = "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes";
    let gateway = "{group: gateway.networking.k8s.io, kind: Gateway, name: edge";
    let c = compiled(&format!(
        "{}{}{}{}",
        limit("on-gateway", &format!("{gateway}}}"), 1),
        limit("on-listener", &format!("{gateway}, sectionName: alt}}"), 2),
        limit("on-route", &format!("{route}}}"), 3),
        limit("on-rule", &format!("{route}, sectionName: search}}"), 4),
    ));
    let name = |port, host, path| limit_of(&c, port, host, path).map(|l| l.0);
    assert_eq!(name(80, "a.example", "/search").as_deref(), Some("on-rule"));
    assert_eq!(name(80, "a.example", "/api").as_deref(), Some("on-route"));
    assert_eq!(name(81, "a.example", "/api").as_deref(), Some("on-route"));
    assert_eq!(
        name(80, "other.example", "/").as_deref(),
        Some("on-gateway")
    );
    for policy in ["on-gateway", "on-listener", "on-route", "on-rule"] {
        assert!(
            accepted(&c, Kind::RateLimitPolicy, policy)[0].0,
            "{policy} is accepted"
        );
    }
}

#[test]
fn a_listener_policy_covers_the_routes_of_that_listener_only() {
    let c = compiled(&limit(
        "on-listener",
        "{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: alt}",
        2,
    ));
    let name = |port| limit_of(&c, port, "a.example", "/api").map(|l| l.0);
    assert_eq!(name(81).as_deref(), Some("on-listener"));
    assert_eq!(name(80), None);
}

#[test]
fn of_two_policies_on_one_target_the_older_wins_and_the_other_is_conflicted() {
    let target = "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes}";
    let older = limit("older", target, 1).replace(
        "metadata: {name: older}",
        "metadata: {name: older, creationTimestamp: '2026-01-01T00:00:00Z'}",
    );
    let newer = limit("newer", target, 2).replace(
        "metadata: {name: newer}",
        "metadata: {name: newer, creationTimestamp: '2026-02-01T00:00:00Z'}",
    );
    let c = compiled(&format!("{newer}{older}"));
    assert_eq!(
        limit_of(&c, 80, "a.example", "/api")
            .map(|l| l.0)
            .as_deref(),
        Some("older")
    );
    let (status, reason, message) = accepted(&c, Kind::RateLimitPolicy, "newer").remove(0);
    assert_eq!((status, reason), (false, Reason::Conflicted));
    assert!(
        message.contains("RateLimitPolicy default/older"),
        "{message}"
    );
    assert!(accepted(&c, Kind::RateLimitPolicy, "older")[0].0);
}

#[test]
fn a_missing_target_or_section_is_target_not_found() {
    let c = compiled(&format!(
        "{}{}",
        limit(
            "no-route",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: nope}",
            1
        ),
        limit(
            "no-rule",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes, sectionName: nope}",
            1
        ),
    ));
    for (policy, what) in [
        ("no-route", "HTTPRoute default/nope not found"),
        (
            "no-rule",
            "HTTPRoute default/api-routes section \"nope\" not found",
        ),
    ] {
        assert_eq!(
            accepted(&c, Kind::RateLimitPolicy, policy),
            [(false, Reason::TargetNotFound, what.into())]
        );
    }
}

#[test]
fn a_rate_limit_on_a_service_is_invalid() {
    let c = compiled(&limit(
        "on-service",
        "{group: '', kind: Service, name: backend-service}",
        1,
    ));
    let (status, reason, message) = accepted(&c, Kind::RateLimitPolicy, "on-service").remove(0);
    assert_eq!((status, reason), (false, Reason::Invalid));
    assert!(message.contains("cannot target Service"), "{message}");
}

#[test]
fn invalid_values_name_the_field_and_limit_nothing() {
    let c = compiled(&limit(
        "zero",
        "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes}",
        0,
    ));
    assert_eq!(
        accepted(&c, Kind::RateLimitPolicy, "zero"),
        [(
            false,
            Reason::Invalid,
            "default.requestsPerSecond must be at least 1".into()
        )]
    );
    assert_eq!(limit_of(&c, 80, "a.example", "/api"), None);
}

#[test]
fn a_global_limit_without_redis_is_not_accepted() {
    let policy = format!("{ISSUE_RATE_LIMIT}  global: {{failOpen: false}}\n");
    let c = compiled(&policy);
    let (status, reason, message) = accepted(&c, Kind::RateLimitPolicy, "api-rate-limit").remove(0);
    assert_eq!((status, reason), (false, Reason::Invalid));
    assert!(message.contains("--redis-url"), "{message}");
    let with_redis = compile_with(
        &input(&format!("{APP}---\n{policy}")),
        &Options {
            global_rate_limits: true,
            ..Options::default()
        },
    );
    assert!(accepted(&with_redis, Kind::RateLimitPolicy, "api-rate-limit")[0].0);
}

#[test]
fn a_client_key_reaches_the_snapshot() {
    let c = compiled(&format!(
        "{ISSUE_RATE_LIMIT}  key: {{type: ClientAddress, maxKeys: 5}}\n"
    ));
    let rl = &c.snapshot.rate_limits[0];
    assert_eq!(rl.key, Some(ClientKey::ClientAddress { max_keys: 5 }));
}

#[test]
fn the_issue_circuit_breaker_is_accepted_and_its_service_carries_it() {
    let c = compiled(ISSUE_CIRCUIT_BREAKER);
    assert_eq!(
        accepted(&c, Kind::CircuitBreakerPolicy, "backend-circuit-breaker"),
        [(
            true,
            Reason::Accepted,
            "enforced on Service backend-service: failing endpoints are ejected".into()
        )]
    );
    let Decision::Forward(f) = decide_on_edge(&c, 80, "a.example", "/api") else {
        panic!("forwarded");
    };
    let cb = f
        .backend
        .circuit_breaker
        .as_ref()
        .expect("a circuit breaker");
    assert_eq!(cb.policy.name, "backend-circuit-breaker");
    assert_eq!(cb.outlier.consecutive_errors, 5);
    assert_eq!(cb.outlier.max_ejection_percent, 50);
}

#[test]
fn a_port_policy_wins_over_a_service_policy_and_a_wrong_port_is_not_found() {
    let breaker = |name: &str, section: &str| {
        format!(
            "apiVersion: gateway.loom.dev/v1alpha1\nkind: CircuitBreakerPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  targetRefs: [{{group: '', kind: Service, name: backend-service{section}}}]\n---\n"
        )
    };
    let c = compiled(&format!(
        "{}{}{}",
        breaker("whole", ""),
        breaker("port", ", sectionName: http"),
        breaker("wrong-port", ", sectionName: grpc"),
    ));
    let target = c
        .snapshot
        .port(&GatewayName::new("default", "edge"), 80)
        .unwrap()
        .http_listeners()[0]
        .vhosts
        .iter()
        .flat_map(|v| v.http.entries())
        .find_map(|(_, r)| r.backends[0].target.clone().ok())
        .unwrap();
    assert_eq!(target.circuit_breaker.as_ref().unwrap().policy.name, "port");
    assert_eq!(
        accepted(&c, Kind::CircuitBreakerPolicy, "wrong-port")[0].1,
        Reason::TargetNotFound
    );
}

#[test]
fn unknown_fields_in_loom_policies_are_load_errors_with_line_and_field() {
    let loaded = load_str(
        "policies.yaml",
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: CircuitBreakerPolicy\n\
         metadata: {name: cb}\nspec:\n  targetRef: {kind: Service, name: s}\n  consecutiveErrors: 5\n",
    );
    assert_eq!(loaded.objects.len(), 0);
    let e = loaded.errors[0].to_string();
    assert!(e.starts_with("policies.yaml:"), "{e}");
    assert!(e.contains("consecutiveErrors"), "{e}");
}
