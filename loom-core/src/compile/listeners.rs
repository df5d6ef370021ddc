//! One listener: protocol, port, hostname, route kinds, TLS certificates and frontend client
//! validation.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::lookup::{InputLookup, group_or};
use super::model::*;
use super::references::{parses_certificates, resolve_secret};
use crate::input::*;
use crate::route::host::HostPattern;
use crate::snapshot::*;
use crate::status::*;

pub(crate) fn check_listener<'a>(
    lookup: &InputLookup<'_>,
    gateway: usize,
    owner: ObjectKey,
    gw: &Gateway,
    spec: &'a Listener,
    generation: i64,
) -> CheckedListener<'a> {
    let mut ir = CheckedListener {
        gateway,
        owner,
        spec,
        port: u16::try_from(spec.port).unwrap_or(0),
        protocol: Protocol::parse(&spec.protocol),
        hostname: None,
        kinds: vec![],
        not_accepted: None,
        unresolved: None,
        conflict: None,
        tls: None,
        passthrough: false,
        attached: BTreeSet::new(),
        generation,
    };
    let Some(protocol) = ir.protocol else {
        ir.not_accepted = Some((
            Reason::UnsupportedProtocol,
            format!("protocol {:?} is not supported", spec.protocol),
        ));
        return ir;
    };
    if ir.port == 0 {
        ir.not_accepted = Some((
            Reason::UnsupportedValue,
            format!("port {} is out of range", spec.port),
        ));
        return ir;
    }
    if let Some(h) = &spec.hostname {
        match HostPattern::parse(h) {
            Ok(p) => ir.hostname = Some(p),
            Err(e) => {
                ir.not_accepted = Some((Reason::UnsupportedValue, format!("hostname {h:?}: {e}")));
                return ir;
            }
        }
    }
    // Route kinds.
    let supported = protocol.kinds();
    match spec
        .allowed_routes
        .as_ref()
        .map(|a| &a.kinds)
        .filter(|k| !k.is_empty())
    {
        None => ir.kinds = supported.to_vec(),
        Some(kinds) => {
            let mut invalid = vec![];
            for k in kinds {
                let found = supported.iter().find(|s| {
                    s.as_str() == k.kind && group_or(&k.group, GATEWAY_GROUP) == GATEWAY_GROUP
                });
                match found {
                    Some(s) if !ir.kinds.contains(s) => ir.kinds.push(*s),
                    Some(_) => {}
                    None => {
                        invalid.push(format!("{}/{}", group_or(&k.group, GATEWAY_GROUP), k.kind))
                    }
                }
            }
            if !invalid.is_empty() {
                ir.unresolved = Some((
                    Reason::InvalidRouteKinds,
                    format!(
                        "route kinds {} are not supported on {:?} listeners",
                        invalid.join(", "),
                        spec.protocol
                    ),
                ));
            }
        }
    }
    // TLS.
    let from = (
        GATEWAY_GROUP,
        ir.owner.kind.as_str(),
        ir.owner.namespace.as_str(),
    );
    match protocol {
        Protocol::Https | Protocol::Tls => {
            let Some(tls) = &spec.tls else {
                ir.not_accepted = Some((
                    Reason::UnsupportedValue,
                    format!("{:?} listeners need tls", spec.protocol),
                ));
                return ir;
            };
            let mode = tls.mode.as_deref().unwrap_or("Terminate");
            match (protocol, mode) {
                (Protocol::Tls, "Passthrough") => {
                    ir.passthrough = true;
                    return ir;
                }
                (_, "Terminate") => {}
                (_, m) => {
                    ir.not_accepted = Some((
                        Reason::UnsupportedValue,
                        format!(
                            "tls mode {m:?} is not supported on {:?} listeners",
                            spec.protocol
                        ),
                    ));
                    return ir;
                }
            }
            let mut certificates = vec![];
            for r in &tls.certificate_refs {
                match resolve_secret(lookup, from, r) {
                    Ok(c) => certificates.push(Arc::new(c)),
                    Err((reason, m)) => {
                        let reason = if reason == Reason::RefNotPermitted {
                            reason
                        } else {
                            Reason::InvalidCertificateRef
                        };
                        ir.unresolved.get_or_insert((reason, m));
                    }
                }
            }
            if tls.certificate_refs.is_empty() {
                ir.unresolved
                    .get_or_insert((Reason::InvalidCertificateRef, "no certificateRefs".into()));
            }
            let client_validation = if protocol == Protocol::Https {
                frontend_validation(lookup, gw, &mut ir)
            } else {
                None
            };
            ir.tls = Some(ServerTls {
                certificates,
                client_validation,
            });
        }
        _ => {}
    }
    ir
}

/// Applies `spec.tls.frontend` to an HTTPS listener.
fn frontend_validation(
    lookup: &InputLookup<'_>,
    gw: &Gateway,
    ir: &mut CheckedListener<'_>,
) -> Option<ClientValidation> {
    let frontend = gw.spec.tls.as_ref()?.frontend.as_ref()?;
    let config = frontend
        .per_port
        .iter()
        .find(|p| p.port == i32::from(ir.port))
        .map(|p| &p.tls)
        .or(frontend.default.as_ref())?;
    let v = config.validation.as_ref()?;
    let gw_ns = gw.metadata.namespace_or_default();
    let mut ca_pem = vec![];
    let mut failure = None;
    for r in &v.ca_certificate_refs {
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        let group = r.group.as_deref().unwrap_or("");
        let ns = r.namespace.as_deref().unwrap_or(gw_ns);
        let res = if !group.is_empty() || !matches!(kind, "ConfigMap" | "Secret") {
            Err((
                Reason::InvalidCaCertificateKind,
                format!("caCertificateRef kind {group}/{kind} is not supported"),
            ))
        } else if !lookup.grant_allows((GATEWAY_GROUP, "Gateway", gw_ns), ("", kind, ns, &r.name)) {
            Err((
                Reason::RefNotPermitted,
                format!("no ReferenceGrant allows {kind} {ns}/{}", r.name),
            ))
        } else {
            let data = match kind {
                "ConfigMap" => lookup
                    .config_map(ns, &r.name)
                    .and_then(|c| c.data.get("ca.crt"))
                    .map(|s| s.as_bytes().to_vec()),
                _ => lookup
                    .secret(ns, &r.name)
                    .and_then(|s| s.data.get("ca.crt"))
                    .cloned(),
            };
            match data {
                Some(d) if parses_certificates(&d) => Ok(d),
                Some(_) => Err((
                    Reason::InvalidCaCertificateRef,
                    format!("{kind} {ns}/{} has no valid ca.crt", r.name),
                )),
                None => Err((
                    Reason::InvalidCaCertificateRef,
                    format!("{kind} {ns}/{} not found or has no ca.crt", r.name),
                )),
            }
        };
        match res {
            Ok(d) => ca_pem.extend_from_slice(&d),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some((reason, m)) = failure {
        ir.unresolved = Some((reason, m));
        ir.not_accepted = Some((
            Reason::NoValidCaCertificate,
            "client certificate validation has no valid CA certificate".into(),
        ));
        return None;
    }
    Some(ClientValidation {
        ca_pem,
        allow_insecure_fallback: v.mode.as_deref() == Some("AllowInsecureFallback"),
    })
}
