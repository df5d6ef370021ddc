//! One listener: protocol, port, hostname, route kinds, TLS certificates and frontend client
//! validation.

use std::sync::Arc;

use super::error::{ListenerError, ListenerRefError};
use super::lookup::{InputLookup, group_or};
use super::model::*;
use super::references::{resolve_ca_certificate, resolve_secret};
use crate::input::*;
use crate::route::host::HostPattern;
use crate::snapshot::*;
use crate::status::Reason;

pub(crate) fn check_listener<'a>(
    lookup: &InputLookup<'_>,
    gateway: usize,
    owner: ObjectKey,
    gw: &Gateway,
    spec: &'a Listener,
    generation: i64,
) -> CheckedListener<'a> {
    let mut listener = CheckedListener {
        gateway,
        owner,
        spec,
        port: u16::try_from(spec.port).unwrap_or(0),
        protocol: Protocol::parse(&spec.protocol).map(|p| match (p, &spec.tls) {
            (Protocol::Http, Some(_)) => Protocol::Http3,
            (p, _) => p,
        }),
        hostname: None,
        kinds: vec![],
        not_accepted: None,
        unresolved: None,
        conflict: None,
        tls: None,
        passthrough: false,
        attached_routes: 0,
        generation,
    };
    let Some(protocol) = listener.protocol else {
        listener.not_accepted = Some(ListenerError::UnsupportedProtocol(spec.protocol.clone()));
        return listener;
    };
    if listener.port == 0 {
        listener.not_accepted = Some(ListenerError::PortOutOfRange(spec.port));
        return listener;
    }
    if let Some(h) = &spec.hostname {
        match HostPattern::parse(h) {
            Ok(p) => listener.hostname = Some(p),
            Err(e) => {
                listener.not_accepted = Some(ListenerError::Hostname {
                    hostname: h.clone(),
                    error: e,
                });
                return listener;
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
        None => listener.kinds = supported.to_vec(),
        Some(kinds) => {
            let mut invalid = vec![];
            for k in kinds {
                let found = supported.iter().find(|s| {
                    s.as_str() == k.kind && group_or(&k.group, GATEWAY_GROUP) == GATEWAY_GROUP
                });
                match found {
                    Some(s) if !listener.kinds.contains(s) => listener.kinds.push(*s),
                    Some(_) => {}
                    None => {
                        invalid.push(format!("{}/{}", group_or(&k.group, GATEWAY_GROUP), k.kind))
                    }
                }
            }
            if !invalid.is_empty() {
                listener.unresolved = Some(ListenerRefError::InvalidRouteKinds {
                    kinds: invalid.join(", "),
                    protocol: spec.protocol.clone(),
                });
            }
        }
    }
    // TLS.
    let from = (
        GATEWAY_GROUP,
        listener.owner.kind.as_str(),
        listener.owner.namespace.as_str(),
    );
    match protocol {
        Protocol::Https | Protocol::Http3 | Protocol::Tls => {
            let Some(tls) = &spec.tls else {
                listener.not_accepted = Some(ListenerError::MissingTls(spec.protocol.clone()));
                return listener;
            };
            let mode = tls.mode.as_deref().unwrap_or("Terminate");
            match (protocol, mode) {
                (Protocol::Tls, "Passthrough") => {
                    listener.passthrough = true;
                    return listener;
                }
                (_, "Terminate") => {}
                (_, m) => {
                    listener.not_accepted = Some(ListenerError::UnsupportedTlsMode {
                        mode: m.into(),
                        protocol: spec.protocol.clone(),
                    });
                    return listener;
                }
            }
            let mut certificates = vec![];
            for r in &tls.certificate_refs {
                match resolve_secret(lookup, from, r) {
                    Ok(c) => certificates.push(Arc::new(c)),
                    Err(e) => {
                        listener
                            .unresolved
                            .get_or_insert(ListenerRefError::Certificate(e));
                    }
                }
            }
            if tls.certificate_refs.is_empty() {
                listener
                    .unresolved
                    .get_or_insert(ListenerRefError::NoCertificateRefs);
            }
            let client_validation = if matches!(protocol, Protocol::Https | Protocol::Http3) {
                frontend_validation(lookup, gw, &mut listener)
            } else {
                None
            };
            listener.tls = Some(ServerTls {
                certificates,
                client_validation,
            });
        }
        _ => {}
    }
    listener
}

/// Applies `spec.tls.frontend` to an HTTPS listener.
fn frontend_validation(
    lookup: &InputLookup<'_>,
    gw: &Gateway,
    listener: &mut CheckedListener<'_>,
) -> Option<ClientValidation> {
    let frontend = gw.spec.tls.as_ref()?.frontend.as_ref()?;
    let config = frontend
        .per_port
        .iter()
        .find(|p| p.port == i32::from(listener.port))
        .map(|p| &p.tls)
        .or(frontend.default.as_ref())?;
    let v = config.validation.as_ref()?;
    let gw_ns = gw.metadata.namespace_or_default();
    let mut ca_pem = vec![];
    let mut failure = None;
    for r in &v.ca_certificate_refs {
        match resolve_ca_certificate(lookup, gw_ns, r) {
            Ok(d) => ca_pem.extend_from_slice(&d),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        listener.unresolved = Some(ListenerRefError::CaCertificate(e));
        listener.not_accepted = Some(ListenerError::NoValidCaCertificate);
        return None;
    }
    Some(ClientValidation {
        ca_pem,
        allow_insecure_fallback: v.mode.as_deref() == Some("AllowInsecureFallback"),
    })
}

/// What a listener claims on its Gateway: a port, for a protocol, for a hostname.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortClaim<'l> {
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    pub(crate) hostname: Option<&'l HostPattern>,
}

impl PortClaim<'_> {
    /// How this claim clashes with the ones kept before it on its port: a protocol that
    /// cannot share the port, TCP with TCP included (`ProtocolConflict`), or the same hostname,
    /// or for UDP any earlier UDP listener (`HostnameConflict`). TCP and UDP never meet; HTTP/3
    /// is on UDP (it shares a port with HTTPS, and not with a UDP listener).
    pub(crate) fn conflict(&self, earlier: &[PortClaim<'_>]) -> Option<Reason> {
        earlier
            .iter()
            .filter(|k| k.port == self.port)
            .find_map(|k| match self.protocol.shares_port_with(k.protocol) {
                None => None,
                Some(false) => Some(Reason::ProtocolConflict),
                Some(true) => {
                    let host_matters = !matches!(self.protocol, Protocol::Tcp | Protocol::Udp);
                    (!host_matters || k.hostname == self.hostname)
                        .then_some(Reason::HostnameConflict)
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(port: u16, protocol: Protocol, hostname: Option<&HostPattern>) -> PortClaim<'_> {
        PortClaim {
            port,
            protocol,
            hostname,
        }
    }

    #[test]
    fn listeners_on_one_port_conflict_by_protocol_then_hostname() {
        let a = HostPattern::parse("a.example.com").unwrap();
        let b = HostPattern::parse("b.example.com").unwrap();
        let kept = [
            claim(443, Protocol::Https, Some(&a)),
            claim(80, Protocol::Http, None),
        ];
        // TLS passthrough and HTTPS share a port; only a hostname may clash.
        assert_eq!(claim(443, Protocol::Tls, Some(&b)).conflict(&kept), None);
        assert_eq!(
            claim(443, Protocol::Tls, Some(&a)).conflict(&kept),
            Some(Reason::HostnameConflict)
        );
        assert_eq!(
            claim(443, Protocol::Http, Some(&b)).conflict(&kept),
            Some(Reason::ProtocolConflict)
        );
        assert_eq!(
            claim(80, Protocol::Http, None).conflict(&kept),
            Some(Reason::HostnameConflict)
        );
        assert_eq!(claim(8080, Protocol::Http, None).conflict(&kept), None);
    }

    #[test]
    fn udp_shares_a_port_with_tcp_but_each_takes_it_alone() {
        let kept = [claim(53, Protocol::Tcp, None)];
        assert_eq!(claim(53, Protocol::Udp, None).conflict(&kept), None);
        let kept = [
            claim(53, Protocol::Tcp, None),
            claim(53, Protocol::Udp, None),
        ];
        assert_eq!(
            claim(53, Protocol::Udp, None).conflict(&kept),
            Some(Reason::HostnameConflict)
        );
        // Two TCP listeners never share a port (`shares_port_with` says no).
        assert_eq!(
            claim(53, Protocol::Tcp, None).conflict(&kept),
            Some(Reason::ProtocolConflict)
        );
    }

    #[test]
    fn http3_shares_a_port_with_https_and_other_http3_listeners_but_not_with_udp() {
        let a = HostPattern::parse("a.example.com").unwrap();
        let b = HostPattern::parse("b.example.com").unwrap();
        let kept = [claim(443, Protocol::Https, Some(&a))];
        assert_eq!(claim(443, Protocol::Http3, Some(&a)).conflict(&kept), None);
        let kept = [claim(443, Protocol::Http3, Some(&a))];
        assert_eq!(claim(443, Protocol::Http3, Some(&b)).conflict(&kept), None);
        assert_eq!(
            claim(443, Protocol::Http3, Some(&a)).conflict(&kept),
            Some(Reason::HostnameConflict)
        );
        assert_eq!(
            claim(443, Protocol::Udp, None).conflict(&kept),
            Some(Reason::ProtocolConflict)
        );
        assert_eq!(claim(443, Protocol::Tcp, None).conflict(&kept), None);
    }
}
