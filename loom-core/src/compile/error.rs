//! Why an object, or a part of one, is not accepted, not resolved or not programmed. Each error
//! knows the status [`Reason`] it is reported with; its `Display` is the condition's message.

use crate::input::{Kind, LOOM_GROUP, ObjectKey};
use crate::route::header::InvalidMatch;
use crate::route::host::InvalidHostname;
use crate::route::path::InvalidPath;
use crate::status::Reason;

/// Why a Gateway's data plane is not serving yet, as the embedding knows it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotServing {
    /// No address is assigned yet (`AddressNotAssigned`); the message says what is awaited.
    #[error("{0}")]
    AddressNotAssigned(String),
    /// The data plane is not ready yet (`Pending`); the message says what is awaited.
    #[error("{0}")]
    Pending(String),
}

impl NotServing {
    /// The `Programmed=False` reason.
    pub fn reason(&self) -> Reason {
        match self {
            NotServing::AddressNotAssigned(_) => Reason::AddressNotAssigned,
            NotServing::Pending(_) => Reason::Pending,
        }
    }
}

/// Why a GatewayClass's `parametersRef` is invalid (`Accepted=False`, `InvalidParameters`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClassParametersError {
    #[error("parametersRef must be a {LOOM_GROUP} GatewayClassConfig, not {group}/{kind}")]
    NotAClassConfig { group: String, kind: String },
    #[error("GatewayClassConfig {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
}

impl ClassParametersError {
    pub(crate) fn reason(&self) -> Reason {
        Reason::InvalidParameters
    }
}

/// Why a Gateway is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GatewayError {
    #[error("the GatewayClass is not accepted")]
    ClassNotAccepted,
    #[error(
        "infrastructure.parametersRef {group}/{kind} {name} does not name a GatewayClassConfig"
    )]
    InfrastructureParameters {
        group: String,
        kind: String,
        name: String,
    },
    #[error("address type {0:?} is not supported")]
    AddressType(String),
    #[error("{0:?} is not an IP address")]
    NotAnIpAddress(String),
}

impl GatewayError {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            GatewayError::ClassNotAccepted => Reason::Invalid,
            GatewayError::InfrastructureParameters { .. } => Reason::InvalidParameters,
            GatewayError::AddressType(_) | GatewayError::NotAnIpAddress(_) => {
                Reason::UnsupportedAddress
            }
        }
    }
}

/// Why an accepted Gateway is not programmed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GatewayNotProgrammed {
    #[error("no {0} address to assign")]
    NoAddress(String),
    #[error("address {0} cannot be served")]
    AddressNotUsable(String),
    /// What the embedding reports ([`Options::gateway_not_programmed`](super::Options)).
    #[error(transparent)]
    NotServing(#[from] NotServing),
}

impl GatewayNotProgrammed {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            GatewayNotProgrammed::NoAddress(_) | GatewayNotProgrammed::AddressNotUsable(_) => {
                Reason::AddressNotUsable
            }
            GatewayNotProgrammed::NotServing(n) => n.reason(),
        }
    }
}

/// Why a certificate reference does not resolve to a usable `kubernetes.io/tls` Secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretRefError {
    #[error("certificate reference {group}/{kind} is not a Secret")]
    NotASecret { group: String, kind: String },
    #[error("no ReferenceGrant allows Secret {namespace}/{name}")]
    NotPermitted { namespace: String, name: String },
    #[error("Secret {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no tls.crt and tls.key")]
    MissingKeys { namespace: String, name: String },
    #[error("Secret {namespace}/{name} does not hold a PEM certificate and key")]
    NotPem { namespace: String, name: String },
}

impl SecretRefError {
    /// The reason for a listener's certificate (`ResolvedRefs=False`).
    pub(crate) fn certificate_reason(&self) -> Reason {
        self.reason_or(Reason::InvalidCertificateRef)
    }

    /// The reason for a Gateway's backend client certificate (`ResolvedRefs=False`).
    pub(crate) fn client_certificate_reason(&self) -> Reason {
        self.reason_or(Reason::InvalidClientCertificateRef)
    }

    fn reason_or(&self, invalid: Reason) -> Reason {
        match self {
            SecretRefError::NotPermitted { .. } => Reason::RefNotPermitted,
            _ => invalid,
        }
    }
}

/// Why a listener's `caCertificateRef` (frontend client validation) does not resolve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CaRefError {
    #[error("caCertificateRef kind {group}/{kind} is not supported")]
    UnsupportedKind { group: String, kind: String },
    #[error("no ReferenceGrant allows {kind} {namespace}/{name}")]
    NotPermitted {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} has no valid ca.crt")]
    Invalid {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} not found or has no ca.crt")]
    Missing {
        kind: String,
        namespace: String,
        name: String,
    },
}

impl CaRefError {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            CaRefError::UnsupportedKind { .. } => Reason::InvalidCaCertificateKind,
            CaRefError::NotPermitted { .. } => Reason::RefNotPermitted,
            CaRefError::Invalid { .. } | CaRefError::Missing { .. } => {
                Reason::InvalidCaCertificateRef
            }
        }
    }
}

/// Why a listener is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ListenerError {
    #[error("protocol {0:?} is not supported")]
    UnsupportedProtocol(String),
    #[error("port {0} is out of range")]
    PortOutOfRange(i32),
    #[error("hostname {hostname:?}: {error}")]
    Hostname {
        hostname: String,
        error: InvalidHostname,
    },
    #[error("{0:?} listeners need tls")]
    MissingTls(String),
    #[error("tls mode {mode:?} is not supported on {protocol:?} listeners")]
    UnsupportedTlsMode { mode: String, protocol: String },
    #[error("client certificate validation has no valid CA certificate")]
    NoValidCaCertificate,
}

impl ListenerError {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            ListenerError::UnsupportedProtocol(_) => Reason::UnsupportedProtocol,
            ListenerError::NoValidCaCertificate => Reason::NoValidCaCertificate,
            ListenerError::PortOutOfRange(_)
            | ListenerError::Hostname { .. }
            | ListenerError::MissingTls(_)
            | ListenerError::UnsupportedTlsMode { .. } => Reason::UnsupportedValue,
        }
    }
}

/// Why a listener's references do not resolve (`ResolvedRefs=False`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ListenerRefError {
    #[error("route kinds {kinds} are not supported on {protocol:?} listeners")]
    InvalidRouteKinds { kinds: String, protocol: String },
    #[error(transparent)]
    Certificate(SecretRefError),
    #[error("no certificateRefs")]
    NoCertificateRefs,
    #[error(transparent)]
    CaCertificate(CaRefError),
}

impl ListenerRefError {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            ListenerRefError::InvalidRouteKinds { .. } => Reason::InvalidRouteKinds,
            ListenerRefError::Certificate(e) => e.certificate_reason(),
            ListenerRefError::NoCertificateRefs => Reason::InvalidCertificateRef,
            ListenerRefError::CaCertificate(e) => e.reason(),
        }
    }
}

/// Why a ListenerSet is not allowed to attach to its Gateway (`NotAllowed`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the Gateway's allowedListeners (from: {from}) does not admit this ListenerSet")]
pub(crate) struct ListenerSetNotAllowed {
    pub(crate) from: String,
}

impl ListenerSetNotAllowed {
    pub(crate) fn reason(&self) -> Reason {
        Reason::NotAllowed
    }
}

/// Why a BackendTLSPolicy is invalid: `Accepted=False` and `ResolvedRefs=False`, each with its
/// own reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BackendTlsPolicyError {
    #[error("caCertificateRef kind {group}/{kind} is not supported")]
    UnsupportedCaKind { group: String, kind: String },
    #[error("ConfigMap {namespace}/{name} has no valid ca.crt")]
    InvalidCa { namespace: String, name: String },
    #[error("no CA certificates configured")]
    NoCaCertificates,
}

impl BackendTlsPolicyError {
    pub(crate) fn accepted_reason(&self) -> Reason {
        Reason::NoValidCaCertificate
    }

    pub(crate) fn resolved_reason(&self) -> Reason {
        match self {
            BackendTlsPolicyError::UnsupportedCaKind { .. } => Reason::InvalidKind,
            BackendTlsPolicyError::InvalidCa { .. } | BackendTlsPolicyError::NoCaCertificates => {
                Reason::InvalidCaCertificateRef
            }
        }
    }
}

/// Why one of Loom's policies (RateLimitPolicy, CircuitBreakerPolicy, ClientTrafficPolicy,
/// WASMPlugin) is invalid (`Accepted=False`, `Invalid`): the field and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LoomPolicyError {
    #[error("{field} must be at least 1")]
    AtLeastOne { field: String },
    #[error("{field}: {value:?} is not a positive duration")]
    Duration { field: String, value: String },
    #[error("{field}: {value:?} is shorter than 1s")]
    UnderOneSecond { field: String, value: String },
    #[error("the policy sets nothing: it needs headerTimeout, idleTimeout or maxConnections")]
    SetsNothing,
    #[error("{field}: {value} is more than 100")]
    Percent { field: String, value: u32 },
    #[error("maxEjectionTime is shorter than baseEjectionTime")]
    MaxBelowBase,
    #[error("maxPendingRequests needs maxConnections (requests wait for a connection)")]
    PendingWithoutConnections,
    #[error("the policy limits nothing: it needs `default`, `rules`, or both")]
    LimitsNothing,
    #[error("{field}: {why}")]
    Match { field: String, why: String },
    #[error("key.type {0:?} must be ClientAddress or Header")]
    KeyType(String),
    #[error("headers {0:?} must be OnLimit or Always")]
    Headers(String),
    #[error("key.header is required with key.type Header")]
    KeyHeaderMissing,
    #[error("key.header is only for key.type Header")]
    KeyHeaderWithAddress,
    #[error("key.header {0:?} is not a valid header name")]
    KeyHeaderName(String),
    #[error(
        "spec.global shares the limit through Redis, and this data plane has none: run it with \
         --redis-url (loom serve, loom controller) or remove spec.global"
    )]
    NoRedis,
    #[error("url is required")]
    MissingUrl,
    #[error("{field}: {value:?} must be {allowed}")]
    OneOf {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error(
        "url {0:?} must be file:///path, a path, https://host/path, http://host/path or \
         oci://registry/repository[:tag|@digest]"
    )]
    Url(String),
    #[error("sha256 {0:?} must be 64 hex digits (optionally after \"sha256:\")")]
    Sha256(String),
    #[error("config must be an object")]
    ConfigNotObject,
    #[error("timeout {0:?} must be a duration from 1ms to 1s")]
    PluginTimeout(String),
    #[error("memoryLimit {0:?} must be from 64Ki to 4Gi (Ki, Mi, Gi or bytes)")]
    MemoryLimit(String),
}

/// Why a policy does not apply to one of its targets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("{policy} cannot target {kind} (group {group:?})")]
    Kind {
        policy: Kind,
        group: String,
        kind: String,
    },
    #[error("{kind} {namespace}/{name}{} not found", .section.as_ref().map(|s| format!(" section {s:?}")).unwrap_or_default())]
    NotFound {
        kind: Kind,
        namespace: String,
        name: String,
        section: Option<String>,
    },
    #[error("{winner} is older and targets the same object")]
    Conflicted { winner: ObjectKey },
    #[error("the policy names this target twice; the first is used")]
    Repeated,
    #[error(
        "listeners {listener:?} and {other:?} share port {port}, and {winner} (on {other:?}) is \
         older: it sets the port's client limits (a connection is accepted before its Host is \
         known, so limits apply per port)"
    )]
    SharedPort {
        port: i32,
        listener: String,
        other: String,
        winner: ObjectKey,
    },
}

impl TargetError {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            TargetError::Kind { .. } | TargetError::Repeated => Reason::Invalid,
            TargetError::NotFound { .. } => Reason::TargetNotFound,
            TargetError::Conflicted { .. } | TargetError::SharedPort { .. } => Reason::Conflicted,
        }
    }
}

/// Why a route rule is dropped (`PartiallyInvalid`, or `Accepted=False` when no rule is left).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidRule {
    #[error(transparent)]
    Path(#[from] InvalidPath),
    #[error(transparent)]
    Match(#[from] InvalidMatch),
    #[error("{filter} filter without its {field} field")]
    MissingFilterField { filter: String, field: String },
    #[error("filter type {0:?} is not supported")]
    UnsupportedFilter(String),
    #[error("redirect status {0} is not supported")]
    RedirectStatus(i32),
    #[error("redirect scheme {0:?} is not supported")]
    RedirectScheme(String),
    #[error("redirect port {0} is out of range")]
    RedirectPort(i32),
    #[error("invalid rewrite hostname {0:?}")]
    RewriteHostname(String),
    #[error("unsupported path modifier {0:?}")]
    PathModifier(String),
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid header value {0:?}")]
    HeaderValue(String),
}

/// A dropped rule, as the `PartiallyInvalid` message lists it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
// Spec: "The message for this condition MUST start with the prefix "Dropped Rule"".
#[error("Dropped Rule {index}: {why}")]
pub(crate) struct DroppedRule {
    pub(crate) index: usize,
    pub(crate) why: InvalidRule,
}

/// Why a route is not attached to a parent (`Accepted=False`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotAttached {
    #[error("hostname {hostname:?}: {error}")]
    Hostname {
        hostname: String,
        error: InvalidHostname,
    },
    #[error("{}; no valid rule is left", join(.0))]
    NoValidRule(Vec<DroppedRule>),
    #[error("no listener named {0:?}")]
    NoListenerNamed(String),
    #[error("no listener on port {0}")]
    NoListenerOnPort(i32),
    #[error("the parent has no listeners")]
    NoListeners,
    #[error("no listener hostname intersects the route's hostnames")]
    NoMatchingHostname,
    #[error("no listener admits {kind} from namespace {namespace}")]
    NotAllowedByListeners { kind: Kind, namespace: String },
}

impl NotAttached {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            NotAttached::Hostname { .. } | NotAttached::NoValidRule(_) => Reason::UnsupportedValue,
            NotAttached::NoListenerNamed(_)
            | NotAttached::NoListenerOnPort(_)
            | NotAttached::NoListeners => Reason::NoMatchingParent,
            NotAttached::NoMatchingHostname => Reason::NoMatchingListenerHostname,
            NotAttached::NotAllowedByListeners { .. } => Reason::NotAllowedByListeners,
        }
    }
}

/// The dropped rules, as one message.
pub(crate) fn join(dropped: &[DroppedRule]) -> String {
    dropped
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_error(namespace: &str) -> SecretRefError {
        SecretRefError::NotFound {
            namespace: namespace.into(),
            name: "cert".into(),
        }
    }

    #[test]
    fn a_secret_reference_error_has_the_reason_of_where_it_is_used() {
        let not_permitted = SecretRefError::NotPermitted {
            namespace: "other".into(),
            name: "cert".into(),
        };
        assert_eq!(not_permitted.certificate_reason(), Reason::RefNotPermitted);
        assert_eq!(
            not_permitted.client_certificate_reason(),
            Reason::RefNotPermitted
        );
        let not_a_secret = SecretRefError::NotASecret {
            group: "".into(),
            kind: "ConfigMap".into(),
        };
        assert_eq!(
            not_a_secret.certificate_reason(),
            Reason::InvalidCertificateRef
        );
        assert_eq!(
            not_a_secret.client_certificate_reason(),
            Reason::InvalidClientCertificateRef
        );
        let listener = ListenerRefError::Certificate(secret_error("infra"));
        assert_eq!(listener.reason(), Reason::InvalidCertificateRef);
        assert_eq!(listener.to_string(), "Secret infra/cert not found");
    }

    #[test]
    fn a_route_with_every_rule_dropped_lists_them_all() {
        let dropped = vec![
            DroppedRule {
                index: 0,
                why: InvalidRule::RedirectStatus(404),
            },
            DroppedRule {
                index: 2,
                why: InvalidRule::UnsupportedFilter("Magic".into()),
            },
        ];
        assert_eq!(
            join(&dropped),
            "Dropped Rule 0: redirect status 404 is not supported; \
             Dropped Rule 2: filter type \"Magic\" is not supported"
        );
        let e = NotAttached::NoValidRule(dropped);
        assert_eq!(e.reason(), Reason::UnsupportedValue);
        assert!(e.to_string().ends_with("; no valid rule is left"), "{e}");
    }

    #[test]
    fn errors_carry_the_reasons_the_spec_names() {
        assert_eq!(
            NotAttached::NoListenerOnPort(81).reason(),
            Reason::NoMatchingParent
        );
        assert_eq!(
            NotAttached::NoMatchingHostname.reason(),
            Reason::NoMatchingListenerHostname
        );
        assert_eq!(
            ListenerError::UnsupportedProtocol("SCTP".into()).to_string(),
            "protocol \"SCTP\" is not supported"
        );
        assert_eq!(
            ListenerError::NoValidCaCertificate.reason(),
            Reason::NoValidCaCertificate
        );
        assert_eq!(GatewayError::ClassNotAccepted.reason(), Reason::Invalid);
        assert_eq!(
            GatewayNotProgrammed::from(NotServing::Pending("waiting".into())).reason(),
            Reason::Pending
        );
        let kind = BackendTlsPolicyError::UnsupportedCaKind {
            group: "".into(),
            kind: "Secret".into(),
        };
        assert_eq!(
            (kind.accepted_reason(), kind.resolved_reason()),
            (Reason::NoValidCaCertificate, Reason::InvalidKind)
        );
        assert_eq!(
            ClassParametersError::NotAClassConfig {
                group: "example.com".into(),
                kind: "Config".into()
            }
            .to_string(),
            "parametersRef must be a gateway.loom.dev GatewayClassConfig, not example.com/Config"
        );
    }
}
