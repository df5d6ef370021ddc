//! BackendTLSPolicy and Loom's own policies: validation, attachment and status.

use std::collections::{BTreeMap, BTreeSet};

use super::gateway::{Gateways, parses_certificates};
use super::routes::Attached;
use super::{InputLookup, by_age};
use crate::input::*;
use crate::snapshot::BackendTls;
use crate::status::*;

struct TlsPolicy {
    key: ObjectKey,
    generation: i64,
    targets: Vec<(String, Option<String>)>,
    /// `Err((accepted reason, resolved reason, message))` when invalid.
    validity: Result<BackendTls, (Reason, Reason, String)>,
    conflicted: bool,
}

/// Every BackendTLSPolicy, validated, with conflicts settled.
pub(crate) struct TlsPolicies {
    policies: Vec<TlsPolicy>,
}

impl TlsPolicies {
    /// The TLS settings for a Service port: a policy naming the port wins over one naming the
    /// whole Service. An invalid policy still applies (so traffic fails closed).
    pub(crate) fn for_service(
        &self,
        ns: &str,
        name: &str,
        port_name: Option<&str>,
    ) -> Option<BackendTls> {
        let find = |section: Option<&str>| {
            self.policies.iter().find(|p| {
                !p.conflicted
                    && p.key.namespace == ns
                    && p.targets
                        .iter()
                        .any(|(t, s)| t == name && s.as_deref() == section)
            })
        };
        let p = port_name
            .and_then(|n| find(Some(n)))
            .or_else(|| find(None))?;
        Some(match &p.validity {
            Ok(t) => t.clone(),
            Err(_) => BackendTls {
                policy: p.key.clone(),
                hostname: String::new(),
                ca_pem: vec![],
                system_roots: false,
                subject_alt_names: vec![],
            },
        })
    }
}

pub(crate) fn backend_tls_policies(lookup: &InputLookup<'_>) -> TlsPolicies {
    let mut policies: Vec<TlsPolicy> = vec![];
    for p in by_age(&lookup.input.backend_tls_policies, |p| &p.metadata) {
        let ns = p.metadata.namespace_or_default();
        let key = ObjectKey {
            kind: Kind::BackendTlsPolicy,
            namespace: ns.into(),
            name: p.metadata.name.clone(),
        };
        let targets: Vec<(String, Option<String>)> = p
            .spec
            .target_refs
            .iter()
            .filter(|t| t.group.is_empty() && t.kind == "Service")
            .map(|t| (t.name.clone(), t.section_name.clone()))
            .collect();
        let v = &p.spec.validation;
        let mut ca_pem = vec![];
        let mut failure = None;
        for r in &v.ca_certificate_refs {
            if !r.group.is_empty() || r.kind != "ConfigMap" {
                failure.get_or_insert((
                    Reason::NoValidCaCertificate,
                    Reason::InvalidKind,
                    format!(
                        "caCertificateRef kind {}/{} is not supported",
                        r.group, r.kind
                    ),
                ));
                continue;
            }
            match lookup
                .config_map(ns, &r.name)
                .and_then(|c| c.data.get("ca.crt"))
            {
                Some(pem) if parses_certificates(pem.as_bytes()) => {
                    ca_pem.extend_from_slice(pem.as_bytes())
                }
                _ => {
                    failure.get_or_insert((
                        Reason::NoValidCaCertificate,
                        Reason::InvalidCaCertificateRef,
                        format!("ConfigMap {ns}/{} has no valid ca.crt", r.name),
                    ));
                }
            }
        }
        let system_roots = v.well_known_ca_certificates.as_deref() == Some("System");
        if v.ca_certificate_refs.is_empty() && !system_roots {
            failure.get_or_insert((
                Reason::NoValidCaCertificate,
                Reason::InvalidCaCertificateRef,
                "no CA certificates configured".into(),
            ));
        }
        let validity = match failure {
            Some(f) => Err(f),
            None => Ok(BackendTls {
                policy: key.clone(),
                hostname: v.hostname.clone(),
                ca_pem,
                system_roots,
                subject_alt_names: v
                    .subject_alt_names
                    .iter()
                    .filter_map(|s| s.hostname.clone().or_else(|| s.uri.clone()))
                    .collect(),
            }),
        };
        // GEP-713: the older policy wins a target (Service + sectionName) they share.
        let conflicted = policies.iter().any(|older| {
            older.key.namespace == ns && older.targets.iter().any(|t| targets.contains(t))
        });
        policies.push(TlsPolicy {
            key,
            generation: p.metadata.generation(),
            targets,
            validity,
            conflicted,
        });
    }
    TlsPolicies { policies }
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
    attached: &Attached,
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
                (Err((accepted, resolved, m)), false) => {
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        false,
                        *accepted,
                        m.clone(),
                        g,
                    ));
                    c.set(Condition::new(
                        ConditionType::ResolvedRefs,
                        false,
                        *resolved,
                        m.clone(),
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
            ObjectStatus::Policy(PolicyStatus { ancestors }),
        );
    }
}

/// Loom's policies: the target must exist; the policy's settings must be sane.
pub(crate) fn write_loom_policy_status(
    lookup: &InputLookup<'_>,
    gws: &Gateways<'_>,
    status: &mut Status,
) {
    let input = lookup.input;
    let mut entries: BTreeMap<ObjectKey, (i64, Vec<&PolicyTarget>, Option<String>)> =
        BTreeMap::new();
    let key = |kind: Kind, m: &ObjectMeta| ObjectKey {
        kind,
        namespace: m.namespace_or_default().into(),
        name: m.name.clone(),
    };
    for p in &input.rate_limit_policies {
        let invalid = if p.spec.requests <= 0 {
            Some("requests must be positive".to_owned())
        } else if !matches!(p.spec.unit.as_str(), "Second" | "Minute" | "Hour") {
            Some(format!(
                "unit {:?} must be Second, Minute or Hour",
                p.spec.unit
            ))
        } else {
            None
        };
        entries.insert(
            key(Kind::RateLimitPolicy, &p.metadata),
            (
                p.metadata.generation(),
                p.spec.target_refs.iter().collect(),
                invalid,
            ),
        );
    }
    for p in &input.circuit_breaker_policies {
        let invalid = p
            .spec
            .ejection_time
            .as_deref()
            .filter(|t| crate::filter::parse_duration_ms(t).is_none())
            .map(|t| format!("ejectionTime {t:?} is not a duration"));
        entries.insert(
            key(Kind::CircuitBreakerPolicy, &p.metadata),
            (
                p.metadata.generation(),
                p.spec.target_refs.iter().collect(),
                invalid,
            ),
        );
    }
    for p in &input.wasm_plugins {
        let invalid = p.spec.url.is_empty().then(|| "url is required".to_owned());
        entries.insert(
            key(Kind::WasmPlugin, &p.metadata),
            (
                p.metadata.generation(),
                p.spec.target_refs.iter().collect(),
                invalid,
            ),
        );
    }
    for (k, (g, targets, invalid)) in entries {
        let mut ancestors = vec![];
        for t in targets {
            let ns = k.namespace.as_str();
            let exists =
                match (t.group.as_str(), t.kind.as_str()) {
                    (GATEWAY_GROUP, "Gateway") => gws.gateway_index(ns, &t.name).is_some(),
                    (GATEWAY_GROUP, "HTTPRoute") => input.http_routes.iter().any(|r| {
                        r.metadata.namespace_or_default() == ns && r.metadata.name == t.name
                    }),
                    (GATEWAY_GROUP, "GRPCRoute") => input.grpc_routes.iter().any(|r| {
                        r.metadata.namespace_or_default() == ns && r.metadata.name == t.name
                    }),
                    ("", "Service") => lookup.service(ns, &t.name).is_some(),
                    (LOOM_GROUP, "Backend") => lookup.backend(ns, &t.name).is_some(),
                    _ => false,
                };
            let mut c = Conditions::default();
            c.set(match (&invalid, exists) {
                (Some(m), _) => Condition::new(
                    ConditionType::Accepted,
                    false,
                    Reason::Invalid,
                    m.clone(),
                    g,
                ),
                (None, false) => Condition::new(
                    ConditionType::Accepted,
                    false,
                    Reason::TargetNotFound,
                    format!("{} {ns}/{} not found", t.kind, t.name),
                    g,
                ),
                (None, true) => Condition::new(
                    ConditionType::Accepted,
                    true,
                    Reason::Accepted,
                    "policy is attached",
                    g,
                ),
            });
            ancestors.push(PolicyAncestorStatus {
                ancestor_ref: ParentReference {
                    group: Some(t.group.clone()),
                    kind: Some(t.kind.clone()),
                    namespace: Some(ns.into()),
                    name: t.name.clone(),
                    section_name: t.section_name.clone(),
                    port: None,
                },
                controller_name: lookup.options.controller_name.clone(),
                conditions: c,
            });
        }
        status
            .objects
            .insert(k, ObjectStatus::Policy(PolicyStatus { ancestors }));
    }
}
