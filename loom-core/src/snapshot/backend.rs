//! Backends: resolved backendRefs, their weights, and why one cannot take traffic.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::Filters;
use crate::input::ObjectKey;
use crate::status::Reason;

/// A backendRef after resolution.
#[derive(Clone, Debug)]
pub struct WeightedBackend {
    /// Relative weight.
    pub weight: u32,
    /// The backend, or why it cannot be used (its share of traffic gets 500; boxed, as
    /// most backends resolve).
    pub target: Result<Arc<BackendTarget>, Box<UnresolvedRef>>,
    /// Backend-level filters.
    pub filters: Filters,
}

/// A resolved backend: a Service port or a Loom `Backend`, with its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTarget {
    /// The Service or Backend.
    pub object: ObjectKey,
    /// The Service port (`None` for Loom Backends).
    pub port: Option<u16>,
    /// Protocol towards the backend.
    pub protocol: AppProtocol,
    /// Ready endpoints as `address:port`.
    pub endpoints: Vec<String>,
    /// TLS towards the backend (BackendTLSPolicy), if any.
    pub tls: Option<BackendTls>,
    /// Outlier detection and concurrency limits (CircuitBreakerPolicy); `None`: passive
    /// health only ([`OutlierConfig::PASSIVE`](crate::policy::outlier::OutlierConfig::PASSIVE)).
    #[serde(skip)]
    pub circuit_breaker: Option<Arc<super::CircuitBreaker>>,
}

/// How to speak to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AppProtocol {
    /// HTTP/1.1 (and WebSocket upgrades).
    Http,
    /// HTTP/2 cleartext with prior knowledge (`kubernetes.io/h2c`).
    H2c,
    /// WebSocket (`kubernetes.io/ws`).
    WebSocket,
    /// Raw TCP.
    Tcp,
    /// UDP datagrams.
    Udp,
}

/// BackendTLSPolicy settings for one backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTls {
    /// The policy.
    pub policy: ObjectKey,
    /// SNI and name to verify.
    pub hostname: String,
    /// CA bundle (PEM); empty with `system_roots`.
    #[serde(skip)]
    pub ca_pem: Vec<u8>,
    /// Trust the system roots.
    pub system_roots: bool,
    /// Names to verify instead of `hostname`.
    pub subject_alt_names: Vec<String>,
}

/// Why a backendRef cannot take traffic: its share of requests gets 500.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendRefError {
    /// Neither a core Service nor a Loom Backend.
    #[error("backendRef kind {group}/{kind} is not supported")]
    UnsupportedKind {
        /// The reference's group.
        group: String,
        /// The reference's kind.
        kind: String,
    },
    /// In another namespace, and no ReferenceGrant allows it.
    #[error("no ReferenceGrant allows {kind} {namespace}/{name}")]
    NotPermitted {
        /// `Service` or `Backend`.
        kind: String,
        /// The target's namespace.
        namespace: String,
        /// The target's name.
        name: String,
    },
    /// No such Loom Backend.
    #[error("Backend {namespace}/{name} not found")]
    BackendNotFound {
        /// The Backend's namespace.
        namespace: String,
        /// The Backend's name.
        name: String,
    },
    /// No such Service.
    #[error("Service {namespace}/{name} not found")]
    ServiceNotFound {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
    },
    /// A Service reference without `port`.
    #[error("backendRef to Service {namespace}/{name} needs a port")]
    MissingPort {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
    },
    /// The Service has no such port.
    #[error("Service {namespace}/{name} has no port {port}")]
    NoSuchPort {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// The port the reference names.
        port: i32,
    },
    /// A Loom Backend endpoint Loom cannot connect to.
    #[error("Backend {namespace}/{name}: endpoint {error}")]
    InvalidEndpoint {
        /// The Backend's namespace.
        namespace: String,
        /// The Backend's name.
        name: String,
        /// What is wrong with which endpoint.
        error: EndpointError,
    },
}

impl BackendRefError {
    /// The route's `ResolvedRefs=False` reason.
    pub fn reason(&self) -> Reason {
        match self {
            BackendRefError::UnsupportedKind { .. } => Reason::InvalidKind,
            BackendRefError::NotPermitted { .. } => Reason::RefNotPermitted,
            BackendRefError::BackendNotFound { .. }
            | BackendRefError::ServiceNotFound { .. }
            | BackendRefError::NoSuchPort { .. } => Reason::BackendNotFound,
            BackendRefError::MissingPort { .. } | BackendRefError::InvalidEndpoint { .. } => {
                Reason::UnsupportedValue
            }
        }
    }
}

/// An ExtensionRef filter Loom cannot apply. The spec says such a filter "MUST NOT be
/// skipped", so the requests it applies to get 500.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ExtensionRef {target} is not supported; matching requests get 500")]
pub struct UnsupportedExtensionRef {
    /// `group/kind name`, or `(empty)`.
    pub target: String,
}

/// A reference in a rule that does not resolve: the traffic it would take gets 500.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnresolvedRef {
    /// A backendRef.
    #[error(transparent)]
    Backend(#[from] BackendRefError),
    /// A backendRef's ExtensionRef filter.
    #[error(transparent)]
    ExtensionRef(#[from] UnsupportedExtensionRef),
}

impl UnresolvedRef {
    /// The route's `ResolvedRefs=False` reason.
    pub fn reason(&self) -> Reason {
        match self {
            UnresolvedRef::Backend(e) => e.reason(),
            UnresolvedRef::ExtensionRef(_) => Reason::InvalidKind,
        }
    }
}

/// Splitmix64: derives independent values from one random seed.
pub(super) fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(n + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Chooses an index by weight with the given random value; `None` when every weight is 0.
pub fn choose_weighted(weights: impl Iterator<Item = u32> + Clone, random: u64) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut pick = random % total;
    for (i, w) in weights.enumerate() {
        if pick < u64::from(w) {
            return Some(i);
        }
        pick -= u64::from(w);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice_is_proportional_and_skips_zero() {
        let w = [70u32, 30, 0];
        let mut counts = [0; 3];
        for r in 0..100u64 {
            counts[choose_weighted(w.iter().copied(), r).unwrap()] += 1;
        }
        assert_eq!(counts, [70, 30, 0]);
        assert_eq!(choose_weighted([0u32, 0].iter().copied(), 5), None);
        assert_eq!(choose_weighted([].iter().copied(), 5), None);
    }
}

/// Where a backend endpoint is: `ip:port`, `[ipv6]:port` or `dns-name:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// An IP address and port.
    Socket(SocketAddr),
    /// A DNS name (RFC 1123) to resolve, and a port.
    Dns {
        /// The name, as written.
        host: &'a str,
        /// The port.
        port: u16,
    },
}

/// Why an endpoint is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No `:port`.
    #[error("{0:?} has no port (write host:port)")]
    NoPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    BadPort(String),
    /// The host is neither an IP address nor a DNS name.
    #[error("{0:?}: the host must be an IP address ([ ] around IPv6) or a DNS name")]
    BadHost(String),
}

impl<'a> Endpoint<'a> {
    /// Parses `ip:port`, `[ipv6]:port` or `dns-name:port`.
    pub fn parse(s: &'a str) -> Result<Self, EndpointError> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return if addr.port() == 0 {
                Err(EndpointError::BadPort(s.into()))
            } else {
                Ok(Endpoint::Socket(addr))
            };
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(EndpointError::NoPort(s.into()));
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(EndpointError::BadPort(s.into())),
        };
        if !is_dns_name(host) {
            return Err(EndpointError::BadHost(s.into()));
        }
        Ok(Endpoint::Dns { host, port })
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and `-` (not at either end),
/// 1 to 63 characters each, 253 in all; a trailing dot is allowed; not all digits (that would
/// be a malformed IPv4 address).
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    #[test]
    fn socket_addresses_parse() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:8080"),
            Ok(Endpoint::Socket("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            Endpoint::parse("[::1]:443"),
            Ok(Endpoint::Socket("[::1]:443".parse().unwrap()))
        );
    }

    #[test]
    fn dns_names_parse() {
        assert_eq!(
            Endpoint::parse("backend.default.svc.cluster.local:80"),
            Ok(Endpoint::Dns {
                host: "backend.default.svc.cluster.local",
                port: 80
            })
        );
        assert_eq!(
            Endpoint::parse("localhost.:3000"),
            Ok(Endpoint::Dns {
                host: "localhost.",
                port: 3000
            })
        );
    }

    #[test]
    fn bad_ports_are_refused() {
        for s in [
            "127.0.0.1:99999",
            "127.0.0.1:0",
            "a.example:http",
            "a.example:",
            "a:+80",
        ] {
            assert_eq!(
                Endpoint::parse(s),
                Err(EndpointError::BadPort(s.into())),
                "{s}"
            );
        }
    }

    #[test]
    fn a_missing_port_is_refused() {
        assert_eq!(
            Endpoint::parse("not-an-address"),
            Err(EndpointError::NoPort("not-an-address".into()))
        );
    }

    #[test]
    fn bad_hosts_are_refused() {
        for s in [
            "not an address:80",
            ":80",
            "a_b.example:80",
            "-a.example:80",
            "999.1.1.1:80",
            "::1:80",
            "a..b:80",
        ] {
            assert!(
                matches!(Endpoint::parse(s), Err(EndpointError::BadHost(_))),
                "{s}: {:?}",
                Endpoint::parse(s)
            );
        }
    }
}
