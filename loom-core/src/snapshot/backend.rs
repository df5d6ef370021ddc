//! Backends: resolved backendRefs, their weights, and why one cannot take traffic.

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
    /// The backend, or why it cannot be used (its share of traffic gets 500).
    pub target: Result<Arc<BackendTarget>, UnresolvedRef>,
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
            BackendRefError::MissingPort { .. } => Reason::UnsupportedValue,
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
