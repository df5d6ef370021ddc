//! Loom's traffic policies: RateLimitPolicies on routes and Gateways, CircuitBreakerPolicies
//! on Services and Backends, ClientTrafficPolicies on Gateways and listeners. Their values are
//! checked (an invalid one is `Accepted=False`, reason `Invalid`, naming the field); a target
//! two policies share goes to the older one (GEP-713), the other is `Conflicted` there; then
//! the most specific policy applies to each route rule (rule > route > listener > Gateway), to
//! each backend (Service port > Service) and to each Gateway port (listener > Gateway; of two
//! listeners sharing a port, the older policy sets it and the other is `Conflicted`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::error::{LoomPolicyError, TargetError};
use super::lookup::{InputLookup, by_age};
use super::matches::compile_http_matches;
use crate::filter::parse_duration_ms;
use crate::input::*;
use crate::policy::gcra::Quota;
use crate::policy::outlier::OutlierConfig;
use crate::snapshot::{
    CircuitBreaker, ClientKey, ClientSettings, GatewayName, GlobalLimit, RateLimit,
    RateLimitHeaders, RateLimitRule,
};

/// Clients tracked per bucket when `key.maxKeys` is not set.
pub(crate) const DEFAULT_MAX_KEYS: u32 = 100_000;

/// What a policy can target, as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TargetKey {
    kind: Kind,
    namespace: String,
    name: String,
    section: Option<String>,
}

/// One target of one policy, and what became of it.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) target: PolicyTarget,
    /// `Ok`: the policy applies there.
    pub(crate) outcome: Result<(), TargetError>,
}

/// A checked policy of either kind.
#[derive(Debug)]
pub(crate) struct Checked<T> {
    pub(crate) key: ObjectKey,
    pub(crate) generation: i64,
    pub(crate) value: Result<T, LoomPolicyError>,
    pub(crate) targets: Vec<Target>,
}

/// A RateLimitPolicy's limits, not yet tied to a route.
#[derive(Debug)]
pub(crate) struct Limits {
    default: Option<Quota>,
    rules: Vec<(Vec<crate::route::HttpMatch>, Quota)>,
    key: Option<ClientKey>,
    global: Option<GlobalLimit>,
    headers: RateLimitHeaders,
}

/// Every traffic policy, checked, and which one holds each target.
#[derive(Debug, Default)]
pub(crate) struct TrafficPolicies {
    pub(crate) rate_limits: Vec<Checked<Limits>>,
    pub(crate) breakers: Vec<Checked<Arc<CircuitBreaker>>>,
    pub(crate) clients: Vec<Checked<ClientSettings>>,
    rate_limit_at: HashMap<TargetKey, usize>,
    breaker_at: HashMap<TargetKey, usize>,
    client_at: HashMap<TargetKey, usize>,
    /// The listener policy that sets a Gateway port's client limits, by Gateway namespace,
    /// name and port.
    client_port_at: HashMap<(String, String, i32), PortClaim>,
}

/// The ClientTrafficPolicy of a listener that holds the listener's port.
#[derive(Debug)]
struct PortClaim {
    /// Index in `clients`.
    index: usize,
    listener: String,
    policy: ObjectKey,
}

/// The rate limits of a snapshot being assembled: one per (policy, route), shared by every
/// listener that serves the route, numbered in order.
#[derive(Default)]
pub(crate) struct RateLimitTable {
    by_route: HashMap<(usize, ObjectKey), Arc<RateLimit>>,
    pub(crate) all: Vec<Arc<RateLimit>>,
}

impl TrafficPolicies {
    pub(crate) fn check(lookup: &InputLookup<'_>) -> Self {
        let mut out = TrafficPolicies::default();
        for p in by_age(&lookup.input.rate_limit_policies, |p| &p.metadata) {
            let key = ObjectKey::of(Kind::RateLimitPolicy, &p.metadata);
            let value = rate_limit_values(&p.spec, lookup.options.global_rate_limits);
            let index = out.rate_limits.len();
            let targets = p
                .spec
                .targets()
                .map(|t| Target {
                    target: t.clone(),
                    outcome: claim(
                        lookup,
                        &key,
                        t,
                        value.is_ok(),
                        index,
                        &mut out.rate_limit_at,
                        &out.rate_limits,
                        rate_limit_target,
                    ),
                })
                .collect();
            out.rate_limits.push(Checked {
                key,
                generation: p.metadata.generation(),
                value,
                targets,
            });
        }
        for p in by_age(&lookup.input.circuit_breaker_policies, |p| &p.metadata) {
            let key = ObjectKey::of(Kind::CircuitBreakerPolicy, &p.metadata);
            let value = circuit_breaker_values(&p.spec).map(|mut b| {
                b.policy = key.clone();
                Arc::new(b)
            });
            let index = out.breakers.len();
            let targets = p
                .spec
                .targets()
                .map(|t| Target {
                    target: t.clone(),
                    outcome: claim(
                        lookup,
                        &key,
                        t,
                        value.is_ok(),
                        index,
                        &mut out.breaker_at,
                        &out.breakers,
                        breaker_target,
                    ),
                })
                .collect();
            out.breakers.push(Checked {
                key,
                generation: p.metadata.generation(),
                value,
                targets,
            });
        }
        for p in by_age(&lookup.input.client_traffic_policies, |p| &p.metadata) {
            let key = ObjectKey::of(Kind::ClientTrafficPolicy, &p.metadata);
            let value = client_values(&p.spec).map(|mut c| {
                c.policy = key.clone();
                c
            });
            let index = out.clients.len();
            let targets = p
                .spec
                .targets()
                .map(|t| Target {
                    target: t.clone(),
                    outcome: claim(
                        lookup,
                        &key,
                        t,
                        value.is_ok(),
                        index,
                        &mut out.client_at,
                        &out.clients,
                        client_target,
                    ),
                })
                .collect();
            out.clients.push(Checked {
                key,
                generation: p.metadata.generation(),
                value,
                targets,
            });
        }
        out.claim_ports(lookup);
        out
    }

    /// Gives each Gateway port its listener policy: limits apply per port (a connection is
    /// accepted before its Host is known), so of the policies of listeners sharing a port the
    /// oldest sets them, and the others are `Conflicted` there.
    fn claim_ports(&mut self, lookup: &InputLookup<'_>) {
        for (index, policy) in self.clients.iter_mut().enumerate() {
            if policy.value.is_err() {
                continue;
            }
            let ns = &policy.key.namespace;
            for t in &mut policy.targets {
                let (Ok(()), Some(section)) = (&t.outcome, &t.target.section_name) else {
                    continue;
                };
                let Some(port) = lookup
                    .input
                    .gateways
                    .iter()
                    .find(|g| {
                        g.metadata.namespace_or_default() == ns && g.metadata.name == t.target.name
                    })
                    .and_then(|g| g.spec.listeners.iter().find(|l| l.name == *section))
                    .map(|l| l.port)
                else {
                    continue;
                };
                let at = (ns.clone(), t.target.name.clone(), port);
                match self.client_port_at.get(&at) {
                    // Two listeners of this policy on one port: the port is its already.
                    Some(claim) if claim.index == index => {}
                    Some(claim) => {
                        t.outcome = Err(TargetError::SharedPort {
                            port,
                            listener: section.clone(),
                            other: claim.listener.clone(),
                            winner: claim.policy.clone(),
                        });
                    }
                    None => {
                        let claim = PortClaim {
                            index,
                            listener: section.clone(),
                            policy: policy.key.clone(),
                        };
                        self.client_port_at.insert(at, claim);
                    }
                }
            }
        }
    }

    /// The client limits of a Gateway's port: its listener policy's, else the Gateway's.
    pub(crate) fn client_settings(
        &self,
        gateway: &GatewayName,
        port: u16,
    ) -> Option<ClientSettings> {
        if self.client_at.is_empty() {
            return None;
        }
        let at = (
            gateway.namespace.clone(),
            gateway.name.clone(),
            i32::from(port),
        );
        let index = match self.client_port_at.get(&at) {
            Some(claim) => claim.index,
            None => *self.client_at.get(&TargetKey {
                kind: Kind::Gateway,
                namespace: gateway.namespace.clone(),
                name: gateway.name.clone(),
                section: None,
            })?,
        };
        self.clients[index].value.as_ref().ok().cloned()
    }

    /// The rate limit for a rule of `route` served on a listener of `gateway`, if any: the
    /// most specific policy (rule > route > listener > Gateway). `listener` is `None` for a
    /// ListenerSet's listener (a Gateway's `sectionName` names only its own listeners).
    /// Whether some rate limit applies somewhere.
    pub(crate) fn limit_any(&self) -> bool {
        !self.rate_limit_at.is_empty()
    }

    pub(crate) fn rate_limit(
        &self,
        table: &mut RateLimitTable,
        gateway: &GatewayName,
        listener: Option<&str>,
        route: &ObjectKey,
        rule_name: Option<&str>,
    ) -> Option<Arc<RateLimit>> {
        if self.rate_limit_at.is_empty() {
            return None;
        }
        let at = |kind: Kind, ns: &str, name: &str, section: Option<&str>| TargetKey {
            kind,
            namespace: ns.into(),
            name: name.into(),
            section: section.map(Into::into),
        };
        let route_at = |section| at(route.kind, &route.namespace, &route.name, section);
        let gateway_at = |section| at(Kind::Gateway, &gateway.namespace, &gateway.name, section);
        let candidates = [
            rule_name.map(|r| route_at(Some(r))),
            Some(route_at(None)),
            listener.map(|l| gateway_at(Some(l))),
            Some(gateway_at(None)),
        ];
        let index = candidates
            .into_iter()
            .flatten()
            .find_map(|k| self.rate_limit_at.get(&k).copied())?;
        let policy = &self.rate_limits[index];
        let limits = policy.value.as_ref().ok()?;
        let id = table.all.len();
        let entry = table
            .by_route
            .entry((index, route.clone()))
            .or_insert_with(|| {
                Arc::new(RateLimit {
                    id,
                    policy: policy.key.clone(),
                    route: route.clone(),
                    default: limits.default,
                    rules: limits
                        .rules
                        .iter()
                        .map(|(matches, quota)| RateLimitRule {
                            matches: matches.clone(),
                            quota: *quota,
                        })
                        .collect(),
                    key: limits.key.clone(),
                    global: limits.global,
                    headers: limits.headers,
                })
            });
        if entry.id == id {
            table.all.push(entry.clone());
        }
        Some(entry.clone())
    }

    /// The circuit breaker of a backend: a Loom Backend, or a Service port (`port_name`, the
    /// Service port's name, for a policy whose `sectionName` names it).
    pub(crate) fn circuit_breaker(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        port_name: Option<&str>,
    ) -> Option<Arc<CircuitBreaker>> {
        if self.breaker_at.is_empty() {
            return None;
        }
        let at = |section: Option<&str>| TargetKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            section: section.map(Into::into),
        };
        let index = port_name
            .and_then(|p| self.breaker_at.get(&at(Some(p))))
            .or_else(|| self.breaker_at.get(&at(None)))?;
        self.breakers[*index].value.as_ref().ok().cloned()
    }
}

/// Resolves one target of a policy and, when the policy is valid and the target free, claims
/// it (policies come oldest first, so the older one wins a shared target).
#[allow(clippy::too_many_arguments)]
fn claim<T>(
    lookup: &InputLookup<'_>,
    policy: &ObjectKey,
    t: &PolicyTarget,
    valid: bool,
    index: usize,
    claimed: &mut HashMap<TargetKey, usize>,
    older: &[Checked<T>],
    resolve: fn(&InputLookup<'_>, &str, &PolicyTarget) -> Result<Kind, TargetError>,
) -> Result<(), TargetError> {
    let kind = resolve(lookup, &policy.namespace, t)?;
    let key = TargetKey {
        kind,
        namespace: policy.namespace.clone(),
        name: t.name.clone(),
        section: t.section_name.clone(),
    };
    match claimed.get(&key) {
        // The same target twice in one policy (`targetRef` and `targetRefs`, say).
        Some(&winner) if winner == index => return Err(TargetError::Repeated),
        Some(&winner) => {
            return Err(TargetError::Conflicted {
                winner: older[winner].key.clone(),
            });
        }
        None => {}
    }
    if valid {
        claimed.insert(key, index);
    }
    Ok(())
}

/// A RateLimitPolicy target: a Gateway (or one of its listeners), an HTTPRoute or GRPCRoute
/// (or one named rule).
fn rate_limit_target(
    lookup: &InputLookup<'_>,
    ns: &str,
    t: &PolicyTarget,
) -> Result<Kind, TargetError> {
    route_or_gateway_target(lookup, ns, t, Kind::RateLimitPolicy)
}

/// A target of a `policy` that applies to routes: a Gateway (or one of its listeners), an
/// HTTPRoute or GRPCRoute (or one named rule).
pub(crate) fn route_or_gateway_target(
    lookup: &InputLookup<'_>,
    ns: &str,
    t: &PolicyTarget,
    policy: Kind,
) -> Result<Kind, TargetError> {
    let section = t.section_name.as_deref();
    let found = |kind: Kind, sections: Option<Vec<Option<&str>>>| match sections {
        None => Err(TargetError::NotFound {
            kind,
            namespace: ns.into(),
            name: t.name.clone(),
            section: None,
        }),
        Some(names) if section.is_some_and(|s| !names.contains(&Some(s))) => {
            Err(TargetError::NotFound {
                kind,
                namespace: ns.into(),
                name: t.name.clone(),
                section: t.section_name.clone(),
            })
        }
        Some(_) => Ok(kind),
    };
    let input = lookup.input;
    let named = |m: &ObjectMeta| m.namespace_or_default() == ns && m.name == t.name;
    match (t.group.as_str(), t.kind.as_str()) {
        (GATEWAY_GROUP, "Gateway") => gateway_target(lookup, ns, t),
        (GATEWAY_GROUP, "HTTPRoute") => found(
            Kind::HttpRoute,
            input
                .http_routes
                .iter()
                .find(|r| named(&r.metadata))
                .map(|r| r.spec.rules.iter().map(|r| r.name.as_deref()).collect()),
        ),
        (GATEWAY_GROUP, "GRPCRoute") => found(
            Kind::GrpcRoute,
            input
                .grpc_routes
                .iter()
                .find(|r| named(&r.metadata))
                .map(|r| r.spec.rules.iter().map(|r| r.name.as_deref()).collect()),
        ),
        (group, kind) => Err(TargetError::Kind {
            policy,
            group: group.into(),
            kind: kind.into(),
        }),
    }
}

/// A Gateway, or one of its own listeners by `sectionName` (not a ListenerSet's).
fn gateway_target(
    lookup: &InputLookup<'_>,
    ns: &str,
    t: &PolicyTarget,
) -> Result<Kind, TargetError> {
    let not_found = |section: Option<String>| TargetError::NotFound {
        kind: Kind::Gateway,
        namespace: ns.into(),
        name: t.name.clone(),
        section,
    };
    let gateway = lookup
        .input
        .gateways
        .iter()
        .find(|g| g.metadata.namespace_or_default() == ns && g.metadata.name == t.name)
        .ok_or_else(|| not_found(None))?;
    match &t.section_name {
        Some(s) if !gateway.spec.listeners.iter().any(|l| l.name == *s) => {
            Err(not_found(Some(s.clone())))
        }
        _ => Ok(Kind::Gateway),
    }
}

/// A ClientTrafficPolicy target: a Gateway or one of its listeners.
fn client_target(
    lookup: &InputLookup<'_>,
    ns: &str,
    t: &PolicyTarget,
) -> Result<Kind, TargetError> {
    match (t.group.as_str(), t.kind.as_str()) {
        (GATEWAY_GROUP, "Gateway") => gateway_target(lookup, ns, t),
        (group, kind) => Err(TargetError::Kind {
            policy: Kind::ClientTrafficPolicy,
            group: group.into(),
            kind: kind.into(),
        }),
    }
}

/// A CircuitBreakerPolicy target: a Service (or one port by name) or a Loom Backend.
fn breaker_target(
    lookup: &InputLookup<'_>,
    ns: &str,
    t: &PolicyTarget,
) -> Result<Kind, TargetError> {
    let not_found = |kind: Kind, section: Option<String>| TargetError::NotFound {
        kind,
        namespace: ns.into(),
        name: t.name.clone(),
        section,
    };
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Service") => {
            let svc = lookup
                .service(ns, &t.name)
                .ok_or_else(|| not_found(Kind::Service, None))?;
            match &t.section_name {
                Some(s) if !svc.spec.ports.iter().any(|p| p.name.as_ref() == Some(s)) => {
                    Err(not_found(Kind::Service, Some(s.clone())))
                }
                _ => Ok(Kind::Service),
            }
        }
        (LOOM_GROUP, "Backend") => {
            lookup
                .backend(ns, &t.name)
                .ok_or_else(|| not_found(Kind::Backend, None))?;
            match &t.section_name {
                Some(s) => Err(not_found(Kind::Backend, Some(s.clone()))),
                None => Ok(Kind::Backend),
            }
        }
        (group, kind) => Err(TargetError::Kind {
            policy: Kind::CircuitBreakerPolicy,
            group: group.into(),
            kind: kind.into(),
        }),
    }
}

fn quota(field: &str, rps: u32, burst: Option<u32>) -> Result<Quota, LoomPolicyError> {
    let at_least_one = |f: String| LoomPolicyError::AtLeastOne { field: f };
    if rps == 0 {
        return Err(at_least_one(format!("{field}.requestsPerSecond")));
    }
    if burst == Some(0) {
        return Err(at_least_one(format!("{field}.burst")));
    }
    Quota::new(rps, burst.unwrap_or(rps)).ok_or_else(|| at_least_one(field.into()))
}

/// A RateLimitPolicy's values, or the first that is wrong.
pub(crate) fn rate_limit_values(
    spec: &RateLimitPolicySpec,
    global_available: bool,
) -> Result<Limits, LoomPolicyError> {
    if spec.default.is_none() && spec.rules.is_empty() {
        return Err(LoomPolicyError::LimitsNothing);
    }
    let default = spec
        .default
        .as_ref()
        .map(|d| quota("default", d.requests_per_second, d.burst))
        .transpose()?;
    let mut rules = vec![];
    for (i, r) in spec.rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        let q = quota(&field, r.requests_per_second, r.burst)?;
        let matches = compile_http_matches(&r.matches).map_err(|why| LoomPolicyError::Match {
            field: format!("{field}.matches"),
            why: why.to_string(),
        })?;
        rules.push((matches, q));
    }
    let key = match &spec.key {
        None => None,
        Some(k) => {
            let max_keys = match k.max_keys {
                Some(0) => {
                    return Err(LoomPolicyError::AtLeastOne {
                        field: "key.maxKeys".into(),
                    });
                }
                Some(n) => n,
                None => DEFAULT_MAX_KEYS,
            };
            match (k.type_.as_str(), &k.header) {
                ("ClientAddress", None) => Some(ClientKey::ClientAddress { max_keys }),
                ("ClientAddress", Some(_)) => return Err(LoomPolicyError::KeyHeaderWithAddress),
                ("Header", Some(h)) => Some(ClientKey::Header {
                    name: HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| LoomPolicyError::KeyHeaderName(h.clone()))?,
                    max_keys,
                }),
                ("Header", None) => return Err(LoomPolicyError::KeyHeaderMissing),
                (other, _) => return Err(LoomPolicyError::KeyType(other.into())),
            }
        }
    };
    let global = match &spec.global {
        Some(_) if !global_available => return Err(LoomPolicyError::NoRedis),
        Some(g) => Some(GlobalLimit {
            fail_open: g.fail_open.unwrap_or(true),
        }),
        None => None,
    };
    let headers = match spec.headers.as_deref() {
        None | Some("OnLimit") => RateLimitHeaders::OnLimit,
        Some("Always") => RateLimitHeaders::Always,
        Some(other) => return Err(LoomPolicyError::Headers(other.into())),
    };
    Ok(Limits {
        default,
        rules,
        key,
        global,
        headers,
    })
}

/// A CircuitBreakerPolicy's values (its `policy` key left empty), or the first that is wrong.
pub(crate) fn circuit_breaker_values(
    spec: &CircuitBreakerPolicySpec,
) -> Result<CircuitBreaker, LoomPolicyError> {
    let duration = |field: &str, value: &Option<String>, default: u64| match value {
        None => Ok(Duration::from_secs(default)),
        Some(v) => match parse_duration_ms(v) {
            Some(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(LoomPolicyError::Duration {
                field: field.into(),
                value: v.clone(),
            }),
        },
    };
    let consecutive_errors = match spec.consecutive_5xx_errors {
        Some(0) => {
            return Err(LoomPolicyError::AtLeastOne {
                field: "consecutive5xxErrors".into(),
            });
        }
        n => n.unwrap_or(5),
    };
    let percent = spec.max_ejection_percent.unwrap_or(10);
    let max_ejection_percent =
        u8::try_from(percent)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or(LoomPolicyError::Percent {
                field: "maxEjectionPercent".into(),
                value: percent,
            })?;
    let base_ejection_time = duration("baseEjectionTime", &spec.base_ejection_time, 30)?;
    let max_ejection_time = duration("maxEjectionTime", &spec.max_ejection_time, 300)?;
    if max_ejection_time < base_ejection_time {
        return Err(LoomPolicyError::MaxBelowBase);
    }
    for (field, v) in [
        ("maxConnections", spec.max_connections),
        ("maxRequests", spec.max_requests),
    ] {
        if v == Some(0) {
            return Err(LoomPolicyError::AtLeastOne {
                field: field.into(),
            });
        }
    }
    if spec.max_pending_requests.is_some() && spec.max_connections.is_none() {
        return Err(LoomPolicyError::PendingWithoutConnections);
    }
    Ok(CircuitBreaker {
        policy: ObjectKey {
            kind: Kind::CircuitBreakerPolicy,
            namespace: String::new(),
            name: String::new(),
        },
        outlier: OutlierConfig {
            consecutive_errors,
            count_5xx: true,
            base_ejection_time,
            max_ejection_time,
            interval: duration("interval", &spec.interval, 10)?,
            max_ejection_percent,
        },
        max_connections: spec.max_connections,
        max_pending_requests: spec.max_pending_requests,
        max_requests: spec.max_requests,
    })
}

/// A ClientTrafficPolicy's values (its `policy` key left empty), or the first that is wrong.
pub(crate) fn client_values(
    spec: &ClientTrafficPolicySpec,
) -> Result<ClientSettings, LoomPolicyError> {
    let duration = |field: &str, value: &Option<String>, at_least: Duration| {
        let Some(v) = value else {
            return Ok(None);
        };
        match parse_duration_ms(v).map(Duration::from_millis) {
            Some(d) if d >= at_least && !d.is_zero() => Ok(Some(d)),
            Some(d) if !d.is_zero() => Err(LoomPolicyError::UnderOneSecond {
                field: field.into(),
                value: v.clone(),
            }),
            _ => Err(LoomPolicyError::Duration {
                field: field.into(),
                value: v.clone(),
            }),
        }
    };
    if spec.header_timeout.is_none()
        && spec.idle_timeout.is_none()
        && spec.max_connections.is_none()
    {
        return Err(LoomPolicyError::SetsNothing);
    }
    let header_timeout = duration("headerTimeout", &spec.header_timeout, Duration::ZERO)?;
    // The data plane keeps HTTP/1 connections alive in whole seconds.
    let idle_timeout = duration("idleTimeout", &spec.idle_timeout, Duration::from_secs(1))?;
    if spec.max_connections == Some(0) {
        return Err(LoomPolicyError::AtLeastOne {
            field: "maxConnections".into(),
        });
    }
    Ok(ClientSettings {
        policy: ObjectKey {
            kind: Kind::ClientTrafficPolicy,
            namespace: String::new(),
            name: String::new(),
        },
        header_timeout,
        idle_timeout,
        max_connections: spec.max_connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(yaml: &str) -> Result<Limits, String> {
        let spec: RateLimitPolicySpec = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        rate_limit_values(&spec, false).map_err(|e| e.to_string())
    }

    fn breaker(yaml: &str) -> Result<CircuitBreaker, String> {
        let spec: CircuitBreakerPolicySpec =
            serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        circuit_breaker_values(&spec).map_err(|e| e.to_string())
    }

    #[test]
    fn burst_defaults_to_the_rate_of_its_own_limit() {
        let l = limit(
            "default: {requestsPerSecond: 100, burst: 200}\n\
             rules: [{matches: [{path: {type: Exact, value: /x}}], requestsPerSecond: 10}]",
        )
        .unwrap();
        assert_eq!(l.default, Quota::new(100, 200));
        assert_eq!(l.rules[0].1, Quota::new(10, 10).unwrap());
    }

    #[test]
    fn a_zero_rate_names_its_field() {
        assert_eq!(
            limit("rules: [{requestsPerSecond: 0}]").unwrap_err(),
            "rules[0].requestsPerSecond must be at least 1"
        );
        assert_eq!(
            limit("default: {requestsPerSecond: 5, burst: 0}").unwrap_err(),
            "default.burst must be at least 1"
        );
    }

    #[test]
    fn a_policy_without_default_or_rules_is_invalid() {
        assert!(limit("{}").unwrap_err().contains("limits nothing"));
    }

    #[test]
    fn a_bad_rule_match_names_the_rule() {
        let e = limit(
            "rules: [{matches: [{path: {type: RegularExpression, value: '('}}], requestsPerSecond: 1}]",
        )
        .unwrap_err();
        assert!(e.starts_with("rules[0].matches: "), "{e}");
    }

    #[test]
    fn keys_are_a_client_address_or_a_named_header() {
        let key = |k: &str| {
            limit(&format!("default: {{requestsPerSecond: 1}}\nkey: {k}")).map(|l| l.key.unwrap())
        };
        assert_eq!(
            key("{type: ClientAddress}").unwrap(),
            ClientKey::ClientAddress {
                max_keys: DEFAULT_MAX_KEYS
            }
        );
        assert_eq!(
            key("{type: Header, header: X-Api-Key, maxKeys: 10}").unwrap(),
            ClientKey::Header {
                name: HeaderName::from_static("x-api-key"),
                max_keys: 10
            }
        );
        assert!(key("{type: Header}").unwrap_err().contains("key.header"));
        assert!(key("{type: Cookie}").unwrap_err().contains("Cookie"));
        assert!(key("{type: Header, header: 'a b'}").is_err());
    }

    #[test]
    fn rate_limit_headers_go_on_429s_unless_always_is_asked() {
        let headers =
            |h: &str| limit(&format!("default: {{requestsPerSecond: 1}}{h}")).map(|l| l.headers);
        assert_eq!(headers("").unwrap(), RateLimitHeaders::OnLimit);
        assert_eq!(
            headers("\nheaders: OnLimit").unwrap(),
            RateLimitHeaders::OnLimit
        );
        assert_eq!(
            headers("\nheaders: Always").unwrap(),
            RateLimitHeaders::Always
        );
        let e = headers("\nheaders: always").unwrap_err();
        assert!(e.contains("\"always\" must be OnLimit or Always"), "{e}");
    }

    #[test]
    fn global_limits_need_redis() {
        let spec: RateLimitPolicySpec =
            serde_saphyr::from_str("default: {requestsPerSecond: 1}\nglobal: {}").unwrap();
        assert_eq!(
            rate_limit_values(&spec, false).unwrap_err(),
            LoomPolicyError::NoRedis
        );
        let l = rate_limit_values(&spec, true).unwrap();
        assert_eq!(l.global, Some(GlobalLimit { fail_open: true }));
    }

    #[test]
    fn the_issue_circuit_breaker_reads_as_written() {
        let b = breaker(
            "consecutive5xxErrors: 5\ninterval: 30s\nbaseEjectionTime: 30s\nmaxEjectionPercent: 50",
        )
        .unwrap();
        assert_eq!(b.outlier.consecutive_errors, 5);
        assert_eq!(b.outlier.interval, Duration::from_secs(30));
        assert_eq!(b.outlier.base_ejection_time, Duration::from_secs(30));
        assert_eq!(b.outlier.max_ejection_time, Duration::from_secs(300));
        assert_eq!(b.outlier.max_ejection_percent, 50);
        assert!(b.outlier.count_5xx);
    }

    #[test]
    fn circuit_breaker_values_are_checked_field_by_field() {
        assert_eq!(
            breaker("interval: soon").unwrap_err(),
            "interval: \"soon\" is not a positive duration"
        );
        assert_eq!(
            breaker("baseEjectionTime: 0s").unwrap_err(),
            "baseEjectionTime: \"0s\" is not a positive duration"
        );
        assert_eq!(
            breaker("maxEjectionPercent: 101").unwrap_err(),
            "maxEjectionPercent: 101 is more than 100"
        );
        assert_eq!(
            breaker("consecutive5xxErrors: 0").unwrap_err(),
            "consecutive5xxErrors must be at least 1"
        );
        assert!(
            breaker("baseEjectionTime: 60s\nmaxEjectionTime: 30s")
                .unwrap_err()
                .contains("maxEjectionTime")
        );
        assert!(
            breaker("maxPendingRequests: 3")
                .unwrap_err()
                .contains("maxConnections")
        );
    }

    #[test]
    fn a_target_named_twice_in_one_policy_is_invalid_the_second_time() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
            metadata: {name: web}\nspec: {}\n---\n\
            apiVersion: gateway.loom.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: twice}\n\
            spec:\n  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}\n  \
            targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]\n  \
            default: {requestsPerSecond: 1}\n";
        let loaded = crate::load::load_str("t.yaml", yaml);
        let mut input = Input::default();
        for (_, o) in loaded.objects {
            input.upsert(o);
        }
        let options = crate::Options::default();
        let lookup = InputLookup::new(&input, &options);
        let policies = TrafficPolicies::check(&lookup);
        let targets = &policies.rate_limits[0].targets;
        assert_eq!(targets[0].outcome, Ok(()));
        assert_eq!(targets[1].outcome, Err(TargetError::Repeated));
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = serde_saphyr::from_str::<CircuitBreakerPolicySpec>("consecutiveErrors: 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("consecutiveErrors"), "{e}");
        let e = serde_saphyr::from_str::<RateLimitPolicySpec>("default: {rps: 5}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rps"), "{e}");
    }
}
