//! Status: Gateways, listeners, ListenerSets, BackendTLSPolicies and Loom's policies.

use std::collections::BTreeSet;

use super::lookup::InputLookup;
use super::model::*;
use super::traffic::TrafficPolicies;
use crate::input::*;
use crate::snapshot::GatewayName;
use crate::status::*;

impl CheckedListener<'_> {
    /// `not_serving`: why the data plane has not opened the listener's port, if it has not.
    fn status(&self, not_serving: Option<&str>) -> ListenerStatus {
        let g = self.generation;
        let mut c = Conditions::default();
        let conflict = self.conflict;
        c.set(match (&self.not_accepted, conflict) {
            (Some(e), _) => {
                Condition::new(ConditionType::Accepted, false, e.reason(), e.to_string(), g)
            }
            (None, Some(r)) => Condition::new(
                ConditionType::Accepted,
                false,
                r,
                "listener conflicts with an earlier one",
                g,
            ),
            (None, None) if self.protocol == Some(Protocol::Http3) => Condition::new(
                ConditionType::Accepted,
                true,
                Reason::Accepted,
                format!(
                    "listener is valid: HTTP/3 (QUIC) on UDP port {}. Loom's file form: on \
                     Kubernetes the API server refuses tls on an HTTP listener, so set \
                     `http3: {{enabled: true}}` in a GatewayClassConfig (the class's \
                     parametersRef, or the Gateway's spec.infrastructure.parametersRef) and \
                     every HTTPS listener serves HTTP/3 too",
                    self.port
                ),
                g,
            ),
            (None, None) => Condition::new(
                ConditionType::Accepted,
                true,
                Reason::Accepted,
                "listener is valid",
                g,
            ),
        });
        c.set(match &self.unresolved {
            Some(e) => Condition::new(
                ConditionType::ResolvedRefs,
                false,
                e.reason(),
                e.to_string(),
                g,
            ),
            None => Condition::new(
                ConditionType::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "all references resolved",
                g,
            ),
        });
        c.set(match conflict {
            Some(r) => Condition::new(
                ConditionType::Conflicted,
                true,
                r,
                "listener conflicts with an earlier one",
                g,
            ),
            None => Condition::new(
                ConditionType::Conflicted,
                false,
                Reason::NoConflicts,
                "no conflicts",
                g,
            ),
        });
        c.set(
            if let (true, Some(why)) = (self.is_programmed(), not_serving) {
                Condition::new(
                    ConditionType::Programmed,
                    false,
                    Reason::Pending,
                    format!("port {} is not open: {why}", self.port),
                    g,
                )
            } else if self.is_programmed() {
                Condition::new(
                    ConditionType::Programmed,
                    true,
                    Reason::Programmed,
                    "listener is serving",
                    g,
                )
            } else {
                let r = conflict.unwrap_or(Reason::Invalid);
                Condition::new(
                    ConditionType::Programmed,
                    false,
                    r,
                    "listener is not serving",
                    g,
                )
            },
        );
        ListenerStatus {
            name: self.spec.name.clone(),
            supported_kinds: self
                .kinds
                .iter()
                .map(|k| RouteGroupKind {
                    group: Some(GATEWAY_GROUP.into()),
                    kind: k.as_str().into(),
                })
                .collect(),
            attached_routes: i32::try_from(self.attached_routes).unwrap_or(i32::MAX),
            conditions: c,
        }
    }
}

impl Gateways<'_> {
    /// Why the data plane has not opened `port` of `gateway` (Options::ports_not_serving).
    fn not_serving(&self, gateway: &GatewayName, port: u16) -> Option<&str> {
        self.lookup
            .options
            .ports_not_serving
            .get(&(gateway.namespace.clone(), gateway.name.clone(), port))
            .map(String::as_str)
    }

    pub(crate) fn write_status(&self, status: &mut Status) {
        for (gi, gw) in self.gateways.iter().enumerate() {
            let g = gw.gateway.metadata.generation();
            let mut c = Conditions::default();
            let own: Vec<&CheckedListener<'_>> =
                gw.listeners.iter().map(|&l| &self.listeners[l]).collect();
            let valid = own.iter().filter(|l| l.is_accepted()).count();
            let accepted = self.gateway_accepted(gi);
            c.set(match (&gw.not_accepted, valid, own.len()) {
                (Some(e), _, _) => {
                    Condition::new(ConditionType::Accepted, false, e.reason(), e.to_string(), g)
                }
                (None, 0, n) if n > 0 => Condition::new(
                    ConditionType::Accepted,
                    false,
                    Reason::ListenersNotValid,
                    "no listener is valid",
                    g,
                ),
                (None, v, n) if v < n => Condition::new(
                    ConditionType::Accepted,
                    true,
                    Reason::ListenersNotValid,
                    "some listeners are not valid",
                    g,
                ),
                _ => Condition::new(
                    ConditionType::Accepted,
                    true,
                    Reason::Accepted,
                    "Gateway is valid",
                    g,
                ),
            });
            c.set(match (&gw.not_programmed, accepted) {
                (_, false) => Condition::new(
                    ConditionType::Programmed,
                    false,
                    Reason::Invalid,
                    "Gateway is not accepted",
                    g,
                ),
                (Some(e), true) => Condition::new(
                    ConditionType::Programmed,
                    false,
                    e.reason(),
                    e.to_string(),
                    g,
                ),
                (None, true) => Condition::new(
                    ConditionType::Programmed,
                    true,
                    Reason::Programmed,
                    "Gateway is serving",
                    g,
                ),
            });
            if let Some(res) = &gw.backend_client_cert {
                c.set(match res {
                    Ok(_) => Condition::new(
                        ConditionType::ResolvedRefs,
                        true,
                        Reason::ResolvedRefs,
                        "backend client certificate resolved",
                        g,
                    ),
                    Err(e) => Condition::new(
                        ConditionType::ResolvedRefs,
                        false,
                        e.client_certificate_reason(),
                        e.to_string(),
                        g,
                    ),
                });
            }
            if gw.insecure_fallback {
                c.set(Condition::new(
                    ConditionType::InsecureFrontendValidationMode,
                    true,
                    Reason::ConfigurationChanged,
                    "AllowInsecureFallback accepts clients without a valid certificate",
                    g,
                ));
            }
            let attached_listener_sets = gw
                .listener_sets
                .iter()
                .filter(|&&s| self.listener_sets[s].is_accepted(&self.listeners))
                .count() as i32;
            status.objects.insert(
                ObjectKey {
                    kind: Kind::Gateway,
                    namespace: gw.name.namespace.clone(),
                    name: gw.name.name.clone(),
                },
                ObjectStatus::Gateway(Box::new(GatewayStatus {
                    addresses: gw.addresses.clone(),
                    conditions: c,
                    listeners: own
                        .iter()
                        .map(|l| l.status(self.not_serving(&gw.name, l.port)))
                        .collect(),
                    attached_listener_sets,
                })),
            );
        }
        for set in &self.listener_sets {
            let g = set.set.metadata.generation();
            let mut c = Conditions::default();
            let accepted = set.is_accepted(&self.listeners);
            match &set.not_allowed {
                Some(e) => {
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        false,
                        e.reason(),
                        e.to_string(),
                        g,
                    ));
                    c.set(Condition::new(
                        ConditionType::Programmed,
                        false,
                        e.reason(),
                        e.to_string(),
                        g,
                    ));
                }
                None if !accepted => {
                    let m = "no listener is valid";
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        false,
                        Reason::ListenersNotValid,
                        m,
                        g,
                    ));
                    c.set(Condition::new(
                        ConditionType::Programmed,
                        false,
                        Reason::ListenersNotValid,
                        m,
                        g,
                    ));
                }
                None => {
                    let all_valid = set
                        .listeners
                        .iter()
                        .all(|&l| self.listeners[l].is_programmed());
                    let (r, m) = if all_valid {
                        (Reason::Accepted, "ListenerSet is attached")
                    } else {
                        (Reason::ListenersNotValid, "some listeners are not valid")
                    };
                    c.set(Condition::new(ConditionType::Accepted, true, r, m, g));
                    c.set(Condition::new(
                        ConditionType::Programmed,
                        true,
                        Reason::Programmed,
                        "ListenerSet is serving",
                        g,
                    ));
                }
            }
            status.objects.insert(
                set.key.clone(),
                ObjectStatus::ListenerSet(Box::new(ListenerSetStatus {
                    conditions: c,
                    listeners: set
                        .listeners
                        .iter()
                        .map(|&l| {
                            let l = &self.listeners[l];
                            l.status(self.not_serving(&self.gateways[l.gateway].name, l.port))
                        })
                        .collect(),
                })),
            );
        }
    }
}

fn gateway_ref(gws: &Gateways<'_>, gw: usize) -> ParentReference {
    let g = &gws.gateways[gw].name;
    ParentReference {
        group: Some(GATEWAY_GROUP.into()),
        kind: Some("Gateway".into()),
        namespace: Some(g.namespace.clone()),
        name: g.name.clone(),
        section_name: None,
        port: None,
    }
}

pub(crate) fn write_backend_tls_status(
    lookup: &InputLookup<'_>,
    policies: &TlsPolicies,
    attached: &Attached<'_>,
    gws: &Gateways<'_>,
    status: &mut Status,
) {
    for p in &policies.policies {
        let g = p.generation;
        let mut ancestors = vec![];
        let gateways: BTreeSet<usize> = attached
            .services_by_gateway
            .iter()
            .filter(|(_, svcs)| {
                p.targets
                    .iter()
                    .any(|(t, _)| svcs.contains(&(p.key.namespace.clone(), t.clone())))
            })
            .map(|(gw, _)| *gw)
            .collect();
        for gw in gateways {
            let mut c = Conditions::default();
            match (&p.validity, p.conflicted) {
                (_, true) => {
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        false,
                        Reason::Conflicted,
                        "an older policy targets the same Service",
                        g,
                    ));
                }
                (Ok(_), false) => {
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        true,
                        Reason::Accepted,
                        "policy is applied",
                        g,
                    ));
                    c.set(Condition::new(
                        ConditionType::ResolvedRefs,
                        true,
                        Reason::ResolvedRefs,
                        "all references resolved",
                        g,
                    ));
                }
                (Err(e), false) => {
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        false,
                        e.accepted_reason(),
                        e.to_string(),
                        g,
                    ));
                    c.set(Condition::new(
                        ConditionType::ResolvedRefs,
                        false,
                        e.resolved_reason(),
                        e.to_string(),
                        g,
                    ));
                }
            }
            ancestors.push(PolicyAncestorStatus {
                ancestor_ref: gateway_ref(gws, gw),
                controller_name: lookup.options.controller_name.clone(),
                conditions: c,
            });
        }
        status.objects.insert(
            p.key.clone(),
            ObjectStatus::Policy(Box::new(PolicyStatus { ancestors })),
        );
    }
}

/// RateLimitPolicies, CircuitBreakerPolicies and ClientTrafficPolicies: one ancestor per
/// target, `Accepted=True` only where the data plane enforces the policy.
pub(crate) fn write_traffic_policy_status(
    lookup: &InputLookup<'_>,
    traffic: &TrafficPolicies,
    status: &mut Status,
) {
    let rate_limits = traffic.rate_limits.iter().map(|p| {
        (
            &p.key,
            p.generation,
            p.value.as_ref().err(),
            &p.targets,
            "requests over the limit get 429",
        )
    });
    let breakers = traffic.breakers.iter().map(|p| {
        (
            &p.key,
            p.generation,
            p.value.as_ref().err(),
            &p.targets,
            "failing endpoints are ejected",
        )
    });
    let clients = traffic.clients.iter().map(|p| {
        (
            &p.key,
            p.generation,
            p.value.as_ref().err(),
            &p.targets,
            "client connections to its ports get these limits",
        )
    });
    for (key, g, invalid, targets, effect) in rate_limits.chain(breakers).chain(clients) {
        let ancestors = targets
            .iter()
            .map(|t| {
                let condition = match (invalid, &t.outcome) {
                    (Some(e), _) => Condition::new(
                        ConditionType::Accepted,
                        false,
                        Reason::Invalid,
                        e.to_string(),
                        g,
                    ),
                    (None, Err(e)) => {
                        Condition::new(ConditionType::Accepted, false, e.reason(), e.to_string(), g)
                    }
                    (None, Ok(())) => {
                        let section = match (t.target.kind.as_str(), &t.target.section_name) {
                            (_, None) => String::new(),
                            ("Gateway", Some(s)) => format!(" listener {s}"),
                            ("Service", Some(s)) => format!(" port {s}"),
                            (_, Some(s)) => format!(" rule {s}"),
                        };
                        Condition::new(
                            ConditionType::Accepted,
                            true,
                            Reason::Accepted,
                            format!(
                                "enforced on {} {}{section}: {effect}",
                                t.target.kind, t.target.name
                            ),
                            g,
                        )
                    }
                };
                policy_ancestor(lookup, &key.namespace, &t.target, condition)
            })
            .collect();
        status.objects.insert(
            key.clone(),
            ObjectStatus::Policy(Box::new(PolicyStatus { ancestors })),
        );
    }
}

pub(crate) fn policy_ancestor(
    lookup: &InputLookup<'_>,
    ns: &str,
    t: &PolicyTarget,
    condition: Condition,
) -> PolicyAncestorStatus {
    let mut conditions = Conditions::default();
    conditions.set(condition);
    PolicyAncestorStatus {
        ancestor_ref: ParentReference {
            group: Some(t.group.clone()),
            kind: Some(t.kind.clone()),
            namespace: Some(ns.into()),
            name: t.name.clone(),
            section_name: t.section_name.clone(),
            port: None,
        },
        controller_name: lookup.options.controller_name.clone(),
        conditions,
    }
}
