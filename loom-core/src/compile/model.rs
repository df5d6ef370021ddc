//! What the passes hand each other: checked Gateways, listeners and ListenerSets, validated
//! BackendTLSPolicies, compiled routes and their attachments.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::error::*;
use super::lookup::InputLookup;
use crate::input::*;
use crate::route::host::HostPattern;
use crate::route::{GrpcMatch, HttpMatch, RouteOrder};
use crate::snapshot::*;
use crate::status::*;

/// Loom's accepted GatewayClasses: name → accepted.
pub(crate) type Classes = BTreeMap<String, bool>;

/// A listener protocol Loom serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    Https,
    /// An `HTTP` listener with a `tls` block: HTTP/3 over QUIC, on UDP at its port (Loom's
    /// file form; the API server refuses `tls` on an HTTP listener, so on Kubernetes a
    /// GatewayClassConfig's `http3.enabled` adds HTTP/3 to every HTTPS listener instead).
    Http3,
    Tls,
    Tcp,
    Udp,
}

impl Protocol {
    pub(crate) fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => return None,
        })
    }

    pub(crate) fn kinds(self) -> &'static [Kind] {
        match self {
            Protocol::Http | Protocol::Https | Protocol::Http3 => {
                &[Kind::HttpRoute, Kind::GrpcRoute]
            }
            Protocol::Tls => &[Kind::TlsRoute],
            Protocol::Tcp => &[Kind::TcpRoute],
            Protocol::Udp => &[Kind::UdpRoute],
        }
    }

    /// Whether two protocols can share a port (then only hostnames may conflict).
    pub(crate) fn shares_port_with(self, other: Protocol) -> Option<bool> {
        use Protocol::*;
        match (self, other) {
            (Udp, Udp) | (Http3, Http3) => Some(true),
            (Udp, Http3) | (Http3, Udp) => Some(false),
            (Udp | Http3, _) | (_, Udp | Http3) => None, // different transports never meet
            (Http, Http) | (Https | Tls, Https | Tls) => Some(true),
            _ => Some(false),
        }
    }
}

/// One listener of a Gateway or ListenerSet, being compiled.
pub(crate) struct CheckedListener<'a> {
    pub(crate) gateway: usize,
    pub(crate) owner: ObjectKey,
    pub(crate) spec: &'a Listener,
    pub(crate) port: u16,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) hostname: Option<HostPattern>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) not_accepted: Option<ListenerError>,
    pub(crate) unresolved: Option<ListenerRefError>,
    pub(crate) conflict: Option<Reason>,
    pub(crate) tls: Option<ServerTls>,
    pub(crate) passthrough: bool,
    /// The number of routes attached (each counted once).
    pub(crate) attached_routes: usize,
    pub(crate) generation: i64,
}

impl CheckedListener<'_> {
    /// Whether routes may attach (valid and not conflicted).
    pub(crate) fn is_accepted(&self) -> bool {
        self.not_accepted.is_none() && self.conflict.is_none()
    }

    pub(crate) fn is_programmed(&self) -> bool {
        self.is_accepted() && self.unresolved.is_none()
    }

    /// Whether routes from this namespace may attach.
    pub(crate) fn allows_namespace(&self, lookup: &InputLookup<'_>, route_ns: &str) -> bool {
        NamespacesFrom::admits(
            self.spec
                .allowed_routes
                .as_ref()
                .and_then(|a| a.namespaces.as_ref()),
            "Same",
            &self.owner.namespace,
            route_ns,
            || lookup.namespace_labels(route_ns),
        )
    }
}

/// A Gateway being compiled.
pub(crate) struct CheckedGateway<'a> {
    pub(crate) gateway: &'a Gateway,
    pub(crate) name: GatewayName,
    pub(crate) listeners: Vec<usize>,
    pub(crate) listener_sets: Vec<usize>,
    pub(crate) class_accepted: bool,
    pub(crate) not_accepted: Option<GatewayError>,
    pub(crate) not_programmed: Option<GatewayNotProgrammed>,
    pub(crate) backend_client_cert: Option<Result<Certificate, SecretRefError>>,
    pub(crate) insecure_fallback: bool,
    pub(crate) addresses: Vec<StatusAddress>,
    /// HTTPS listeners also serve HTTP/3 (GatewayClassConfig `http3.enabled`).
    pub(crate) http3: bool,
    /// GatewayClassConfig `plugins`: off, or another engine named.
    pub(crate) plugins: super::plugins::PluginSettings,
}

/// A ListenerSet being compiled.
pub(crate) struct CheckedListenerSet<'a> {
    pub(crate) set: &'a ListenerSet,
    pub(crate) key: ObjectKey,
    pub(crate) not_allowed: Option<ListenerSetNotAllowed>,
    pub(crate) listeners: Vec<usize>,
}

impl CheckedListenerSet<'_> {
    /// Accepted when allowed and at least one listener is valid: accepted, not conflicted and
    /// with every reference resolved (ListenerSetReferenceGrant expects a set whose only
    /// listener lacks its certificate grant to be `ListenersNotValid`).
    pub(crate) fn is_accepted(&self, listeners: &[CheckedListener<'_>]) -> bool {
        self.not_allowed.is_none() && self.listeners.iter().any(|&l| listeners[l].is_programmed())
    }
}

/// Every Gateway of Loom's classes, with its listeners.
pub(crate) struct Gateways<'a> {
    pub(crate) lookup: &'a InputLookup<'a>,
    pub(crate) gateways: Vec<CheckedGateway<'a>>,
    pub(crate) listeners: Vec<CheckedListener<'a>>,
    pub(crate) listener_sets: Vec<CheckedListenerSet<'a>>,
    pub(crate) by_name: HashMap<(String, String), usize>,
    pub(crate) sets_by_name: HashMap<(String, String), usize>,
}

impl Gateways<'_> {
    pub(crate) fn gateway_index(&self, ns: &str, name: &str) -> Option<usize> {
        self.by_name.get(&(ns.to_owned(), name.to_owned())).copied()
    }

    pub(crate) fn listener_set_index(&self, ns: &str, name: &str) -> Option<usize> {
        self.sets_by_name
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
    }

    pub(crate) fn gateway_accepted(&self, gw: usize) -> bool {
        let gateway = &self.gateways[gw];
        gateway.not_accepted.is_none()
            && (gateway.listeners.is_empty()
                || gateway
                    .listeners
                    .iter()
                    .any(|&l| self.listeners[l].is_accepted()))
    }
}

pub(crate) struct TlsPolicy {
    pub(crate) key: ObjectKey,
    pub(crate) generation: i64,
    pub(crate) targets: Vec<(String, Option<String>)>,
    pub(crate) validity: Result<BackendTls, BackendTlsPolicyError>,
    pub(crate) conflicted: bool,
}

/// Every BackendTLSPolicy, validated, with conflicts settled.
pub(crate) struct TlsPolicies {
    pub(crate) policies: Vec<TlsPolicy>,
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

/// A compiled HTTPRoute or GRPCRoute.
pub(crate) struct CompiledRoute {
    pub(crate) order: RouteOrder,
    pub(crate) http: Vec<CompiledRule<HttpMatch>>,
    pub(crate) grpc: Vec<CompiledRule<GrpcMatch>>,
}

pub(crate) struct CompiledRule<M> {
    pub(crate) index: usize,
    pub(crate) matches: Vec<M>,
    pub(crate) rule: Arc<HttpRule>,
}

/// A route's hostnames on one listener (`None`: any), kept with the route for the next
/// compile (an HTTP attachment borrows them, an L4 one shares them).
pub(crate) type Hostnames = Arc<[Option<HostPattern>]>;

/// An HTTPRoute or GRPCRoute on a listener, borrowed from what the compile's routes hold.
pub(crate) struct HttpAttachment<'m> {
    pub(crate) listener: usize,
    pub(crate) hostnames: &'m Hostnames,
    pub(crate) route: &'m CompiledRoute,
}

pub(crate) struct L4Attachment {
    pub(crate) listener: usize,
    pub(crate) hostnames: Hostnames,
    pub(crate) order: RouteOrder,
    pub(crate) rule: Arc<L4Rule>,
}

/// Every accepted attachment.
#[derive(Default)]
pub(crate) struct Attached<'m> {
    pub(crate) http: Vec<HttpAttachment<'m>>,
    pub(crate) l4: Vec<L4Attachment>,
    /// Services each Gateway routes to (BackendTLSPolicy ancestors).
    pub(crate) services_by_gateway: BTreeMap<usize, BTreeSet<(String, String)>>,
    /// Every Service whose EndpointSlices some route's backends were resolved from.
    pub(crate) endpoint_sources: BTreeSet<(String, String)>,
    /// The routes' statuses.
    pub(crate) statuses: super::attachment::RouteStatuses,
}

/// The parts of a route attachment reads.
pub(crate) struct RouteView<'a> {
    pub(crate) key: ObjectKey,
    pub(crate) meta: &'a ObjectMeta,
    pub(crate) parent_refs: &'a [ParentReference],
    pub(crate) hostnames: &'a [String],
}

impl<'a> RouteView<'a> {
    pub(crate) fn new(
        kind: Kind,
        meta: &'a ObjectMeta,
        parent_refs: &'a [ParentReference],
        hostnames: &'a [String],
    ) -> RouteView<'a> {
        RouteView {
            key: ObjectKey::of(kind, meta),
            meta,
            parent_refs,
            hostnames,
        }
    }
}

/// Where a route stands in the spec's tiebreak (oldest first, then namespace/name).
pub(crate) fn route_order(meta: &ObjectMeta) -> RouteOrder {
    RouteOrder {
        created: Timestamp::parse(meta.creation_timestamp.as_deref()),
        namespace: meta.namespace_or_default().into(),
        name: meta.name.as_str().into(),
        rule: 0,
        match_index: 0,
    }
}
