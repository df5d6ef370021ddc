//! backendRefs: Services and Loom Backends, ReferenceGrants, endpoints, BackendTLSPolicies.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::lookup::{InputLookup, group_or};
use super::model::*;
use super::traffic::TrafficPolicies;

use crate::input::*;
use crate::snapshot::*;

pub(crate) fn resolve_backend(
    lookup: &InputLookup<'_>,
    policies: &TlsPolicies,
    traffic: &TrafficPolicies,
    route: &RouteView<'_>,
    b: &BackendRef,
    // The protocol the route's kind dictates, whatever the Service port says: TCP or UDP for
    // L4 routes, HTTP/2 for GRPCRoute.
    forced: Option<AppProtocol>,
    services: &mut BTreeSet<(String, String)>,
) -> Result<Arc<BackendTarget>, BackendRefError> {
    let group = group_or(&b.group, "");
    let kind = b.kind.as_deref().unwrap_or("Service");
    let ns = b.namespace.as_deref().unwrap_or(&route.key.namespace);
    let is_service = group.is_empty() && kind == "Service";
    let is_backend = group == LOOM_GROUP && kind == "Backend";
    if !is_service && !is_backend {
        return Err(BackendRefError::UnsupportedKind {
            group: group.into(),
            kind: kind.into(),
        });
    }
    let from = (
        GATEWAY_GROUP,
        route.key.kind.as_str(),
        route.key.namespace.as_str(),
    );
    if !lookup.grant_allows(from, (group, kind, ns, &b.name)) {
        return Err(BackendRefError::NotPermitted {
            kind: kind.into(),
            namespace: ns.into(),
            name: b.name.clone(),
        });
    }
    if is_backend {
        let Some(be) = lookup.backend(ns, &b.name) else {
            return Err(BackendRefError::BackendNotFound {
                namespace: ns.into(),
                name: b.name.clone(),
            });
        };
        if let Some(error) = be
            .spec
            .endpoints
            .iter()
            .find_map(|e| crate::snapshot::Endpoint::parse(e).err())
        {
            return Err(BackendRefError::InvalidEndpoint {
                namespace: ns.into(),
                name: b.name.clone(),
                error,
            });
        }
        let protocol = match (forced, be.spec.protocol.as_deref()) {
            (Some(p), _) => p,
            (None, Some("h2c")) => AppProtocol::H2c,
            (None, Some("ws")) => AppProtocol::WebSocket,
            _ => AppProtocol::Http,
        };
        return Ok(Arc::new(BackendTarget {
            object: ObjectKey {
                kind: Kind::Backend,
                namespace: ns.into(),
                name: b.name.clone(),
            },
            port: None,
            protocol,
            endpoints: be.spec.endpoints.clone(),
            tls: None,
            circuit_breaker: traffic.circuit_breaker(Kind::Backend, ns, &b.name, None),
        }));
    }
    let Some(svc) = lookup.service(ns, &b.name) else {
        return Err(BackendRefError::ServiceNotFound {
            namespace: ns.into(),
            name: b.name.clone(),
        });
    };
    let Some(port) = b.port else {
        return Err(BackendRefError::MissingPort {
            namespace: ns.into(),
            name: b.name.clone(),
        });
    };
    let Some(sp) = svc.spec.ports.iter().find(|p| p.port == port) else {
        return Err(BackendRefError::NoSuchPort {
            namespace: ns.into(),
            name: b.name.clone(),
            port,
        });
    };
    services.insert((ns.into(), b.name.clone()));
    let protocol = forced.unwrap_or(match sp.app_protocol.as_deref() {
        Some("kubernetes.io/h2c") => AppProtocol::H2c,
        Some("kubernetes.io/ws") => AppProtocol::WebSocket,
        _ => AppProtocol::Http,
    });
    let mut endpoints = vec![];
    for slice in lookup.endpoint_slices(ns, &b.name) {
        let Some(ep_port) = slice
            .ports
            .iter()
            .find(|p| p.name == sp.name || (slice.ports.len() == 1 && sp.name.is_none()))
        else {
            continue;
        };
        let Some(ep_port) = ep_port.port else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.ready == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                endpoints.push(if a.contains(':') {
                    format!("[{a}]:{ep_port}")
                } else {
                    format!("{a}:{ep_port}")
                });
            }
        }
    }
    endpoints.sort();
    endpoints.dedup();
    let tls = policies.for_service(ns, &b.name, sp.name.as_deref());
    Ok(Arc::new(BackendTarget {
        object: ObjectKey {
            kind: Kind::Service,
            namespace: ns.into(),
            name: b.name.clone(),
        },
        port: u16::try_from(port).ok(),
        protocol,
        endpoints,
        tls,
        circuit_breaker: traffic.circuit_breaker(Kind::Service, ns, &b.name, sp.name.as_deref()),
    }))
}
