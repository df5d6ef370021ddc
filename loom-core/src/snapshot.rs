//! The compiled, immutable routing snapshot and the decision API.
//!
//! ```text
//! Snapshot ─ gateway (ns/name) ─ port ─┬─ HTTP/HTTPS listeners (most specific hostname first)
//!                                      │     └─ virtual hosts (exact, wildcard, any)
//!                                      │          ├─ HttpTable  (matchit index + regex list)
//!                                      │          └─ GrpcTable
//!                                      ├─ TLS listeners (SNI → TLSRoute backends)
//!                                      └─ TCP / UDP listener (oldest route's backends)
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde::Serialize;

use crate::filter::{Cors, HeaderEdits, HeaderStore, Redirect, Rewrite};
use crate::input::ObjectKey;
use crate::route::host::{HostPattern, host_without_port, most_specific_first};
use crate::route::path::{BadRequestPath, PathMatch, normalize};
use crate::route::{GrpcTable, HttpMatch, HttpTable, RequestView};
use crate::status::{Reason, StatusAddress};

/// A Gateway's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GatewayName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl GatewayName {
    /// A name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        GatewayName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Everything the data plane needs, for every Gateway Loom owns.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Gateways by name.
    pub gateways: BTreeMap<GatewayName, GatewaySnapshot>,
}

/// One Gateway.
#[derive(Clone, Debug, Default)]
pub struct GatewaySnapshot {
    /// Where to listen (from `spec.addresses` or the default).
    pub addresses: Vec<StatusAddress>,
    /// Ports.
    pub ports: BTreeMap<u16, PortSnapshot>,
    /// The client certificate presented to backends that use TLS
    /// (`spec.tls.backend.clientCertificateRef`).
    pub backend_client_certificate: Option<Certificate>,
}

/// Everything on one port of one Gateway: what listens on TCP, and what on UDP.
#[derive(Clone, Debug, Default)]
pub struct PortSnapshot {
    /// The port.
    pub port: u16,
    /// What serves TCP connections; `None` when nothing does (only UDP listens here, or no
    /// route has attached to the TCP listener yet).
    pub listeners: Option<PortListeners>,
    /// The UDP listener's route. UDP shares a port with any TCP listener.
    pub udp: Option<L4Listener>,
}

/// What serves TCP connections on a port. Listener conflicts leave one kind per port.
#[derive(Clone, Debug)]
pub enum PortListeners {
    /// Plain HTTP listeners, most specific hostname first.
    Http(Vec<HttpListener>),
    /// TLS: the SNI chooses among HTTPS listeners (Loom terminates, then routes HTTP) and TLS
    /// listeners (TLSRoutes, passthrough or terminate); each list most specific hostname first.
    Tls {
        /// HTTPS listeners.
        https: Vec<HttpListener>,
        /// TLS listeners.
        tls: Vec<TlsListener>,
    },
    /// A TCP listener and the route that gets its connections.
    Tcp(L4Listener),
}

impl PortSnapshot {
    /// The HTTP or HTTPS listeners, most specific hostname first.
    pub fn http_listeners(&self) -> &[HttpListener] {
        match &self.listeners {
            Some(PortListeners::Http(http) | PortListeners::Tls { https: http, .. }) => http,
            Some(PortListeners::Tcp(_)) | None => &[],
        }
    }

    /// The TLS listeners, most specific hostname first.
    pub fn tls_listeners(&self) -> &[TlsListener] {
        match &self.listeners {
            Some(PortListeners::Tls { tls, .. }) => tls,
            Some(PortListeners::Http(_) | PortListeners::Tcp(_)) | None => &[],
        }
    }

    /// The TCP listener.
    pub fn tcp_listener(&self) -> Option<&L4Listener> {
        match &self.listeners {
            Some(PortListeners::Tcp(l)) => Some(l),
            _ => None,
        }
    }
}

/// TLS settings of a terminating listener.
#[derive(Clone, Debug, Default)]
pub struct ServerTls {
    /// Certificate chains and keys (PEM), first match by SNI.
    pub certificates: Vec<Arc<Certificate>>,
    /// Client certificate validation.
    pub client_validation: Option<ClientValidation>,
}

/// A certificate and key from a Secret.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// The Secret.
    pub secret: ObjectKey,
    /// `tls.crt` (PEM).
    pub cert_pem: Vec<u8>,
    /// `tls.key` (PEM).
    pub key_pem: Vec<u8>,
}

/// Frontend client certificate validation.
#[derive(Clone, Debug)]
pub struct ClientValidation {
    /// Trusted CA certificates (PEM).
    pub ca_pem: Vec<u8>,
    /// `AllowInsecureFallback`: ask for a certificate but accept clients without one.
    pub allow_insecure_fallback: bool,
}

/// An HTTP or HTTPS listener.
#[derive(Clone, Debug)]
pub struct HttpListener {
    /// Listener name.
    pub name: String,
    /// The Gateway or ListenerSet that declares it.
    pub owner: ObjectKey,
    /// Hostname.
    pub hostname: Option<HostPattern>,
    /// TLS (HTTPS).
    pub tls: Option<ServerTls>,
    exact: HashMap<String, usize>,
    wildcards: Vec<usize>,
    any: Option<usize>,
    /// Virtual hosts.
    pub vhosts: Vec<VirtualHost>,
}

/// The rules of one hostname (or of every hostname) on a listener.
#[derive(Clone, Debug)]
pub struct VirtualHost {
    /// `None` = any host.
    pub hostname: Option<HostPattern>,
    /// HTTPRoute rules.
    pub http: HttpTable<Arc<HttpRule>>,
    /// GRPCRoute rules.
    pub grpc: GrpcTable<Arc<HttpRule>>,
}

impl HttpListener {
    /// A listener with its virtual hosts.
    pub fn new(
        name: String,
        owner: ObjectKey,
        hostname: Option<HostPattern>,
        tls: Option<ServerTls>,
        mut vhosts: Vec<VirtualHost>,
    ) -> Self {
        vhosts.sort_by(|a, b| most_specific_first(a.hostname.as_ref(), b.hostname.as_ref()));
        let mut exact = HashMap::new();
        let mut wildcards = Vec::new();
        let mut any = None;
        for (i, v) in vhosts.iter().enumerate() {
            match &v.hostname {
                Some(HostPattern::Exact(h)) => {
                    exact.insert(h.clone(), i);
                }
                Some(HostPattern::Wildcard(_)) => wildcards.push(i),
                None => any = Some(i),
            }
        }
        HttpListener {
            name,
            owner,
            hostname,
            tls,
            exact,
            wildcards,
            any,
            vhosts,
        }
    }

    /// The virtual hosts a host may use, most specific first.
    /// `host` must be lower-case.
    pub fn vhosts_for<'s, 'h>(
        &'s self,
        host: &'h str,
    ) -> impl Iterator<Item = &'s VirtualHost> + use<'s, 'h> {
        let exact = self.exact.get(host).copied();
        let wild = self.wildcards.iter().copied().filter(move |&i| {
            self.vhosts[i]
                .hostname
                .as_ref()
                .is_some_and(|h| h.matches(host))
        });
        exact
            .into_iter()
            .chain(wild)
            .chain(self.any)
            .map(move |i| &self.vhosts[i])
    }
}

/// A compiled route rule: where matching traffic goes and what happens to it on the way.
#[derive(Clone, Debug)]
pub struct HttpRule {
    /// The route (HTTPRoute or GRPCRoute).
    pub route: ObjectKey,
    /// Rule index.
    pub rule_index: usize,
    /// Rule name, if set.
    pub rule_name: Option<String>,
    /// Rule-level filters.
    pub filters: Filters,
    /// Weighted backends.
    pub backends: Vec<WeightedBackend>,
    /// Why the whole rule answers 500 (an unresolvable filter), if it does.
    pub invalid: Option<UnsupportedExtensionRef>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retry: Option<Retry>,
}

/// Compiled filters (rule- or backend-level).
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// RequestHeaderModifier.
    pub request_headers: Option<HeaderEdits>,
    /// ResponseHeaderModifier.
    pub response_headers: Option<HeaderEdits>,
    /// RequestRedirect.
    pub redirect: Option<Redirect>,
    /// URLRewrite.
    pub rewrite: Option<Rewrite>,
    /// RequestMirror filters.
    pub mirrors: Vec<Mirror>,
    /// CORS.
    pub cors: Option<Cors>,
}

/// A mirror target and how often to mirror.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// Where mirrored requests go (an unresolvable mirror is dropped at compile time).
    pub backend: Arc<BackendTarget>,
    /// Mirror `numerator` out of every `denominator` requests.
    pub numerator: u32,
    /// See `numerator`.
    pub denominator: u32,
}

/// Timeouts in milliseconds; `None` = no timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Whole request.
    pub request_ms: Option<u64>,
    /// Each backend attempt.
    pub backend_request_ms: Option<u64>,
}

/// Retry policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Status codes to retry.
    pub codes: Vec<u16>,
    /// Maximum retries.
    pub attempts: u32,
    /// Backoff in milliseconds.
    pub backoff_ms: Option<u64>,
}

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
    /// UDP.
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

/// A TLS listener: SNI → backends.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// Listener name.
    pub name: String,
    /// Hostname.
    pub hostname: Option<HostPattern>,
    /// `Some` when Loom terminates TLS (mode Terminate).
    pub terminate: Option<ServerTls>,
    /// Routes by SNI, most specific hostname first, oldest route first.
    pub routes: Vec<(Option<HostPattern>, Arc<L4Rule>)>,
}

/// A TCP or UDP listener's route.
#[derive(Clone, Debug)]
pub struct L4Listener {
    /// Listener name.
    pub name: String,
    /// The route that gets the traffic (the oldest attached).
    pub rule: Arc<L4Rule>,
}

/// A TLS/TCP/UDP route rule.
#[derive(Clone, Debug)]
pub struct L4Rule {
    /// The route.
    pub route: ObjectKey,
    /// Weighted backends.
    pub backends: Vec<WeightedBackend>,
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

/// Why an L4 rule cannot take a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoBackend {
    /// Every backend has weight 0.
    #[error("no backend with weight > 0")]
    ZeroWeight,
    /// The backend chosen does not resolve.
    #[error(transparent)]
    Unresolved(#[from] UnresolvedRef),
}

/// Why no rule takes an HTTP request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoRoute {
    /// No listener on the port serves the host.
    #[error("no listener for host {0:?}")]
    NoListener(String),
    /// The host belongs to another listener than the one the TLS server name chose.
    #[error("host {host:?} is not served by the listener of SNI {sni:?}")]
    Misdirected {
        /// The request's host.
        host: String,
        /// The TLS server name.
        sni: String,
    },
    /// The path cannot be normalised.
    #[error(transparent)]
    BadPath(#[from] BadRequestPath),
    /// No rule matches.
    #[error("no route matched")]
    NoMatch,
}

impl NoRoute {
    /// The status the request is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            NoRoute::NoListener(_) | NoRoute::NoMatch => StatusCode::NOT_FOUND,
            NoRoute::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            NoRoute::BadPath(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub struct HttpRequest<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The TLS server name, on HTTPS.
    pub sni: Option<&'a str>,
    /// Method.
    pub method: &'a Method,
    /// Request target.
    pub uri: &'a Uri,
    /// Headers (including `host` for HTTP/1.1).
    pub headers: &'a HeaderMap,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision<'s> {
    /// Send it to a backend.
    Forward(Box<Forward<'s>>),
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: StatusCode,
        /// The `Location`.
        location: String,
        /// The rule.
        matched: Matched<'s>,
    },
    /// Answer locally.
    Respond(LocalResponse<'s>),
}

/// The listener, host and rule that won.
#[derive(Clone, Copy, Debug)]
pub struct Matched<'s> {
    /// The listener.
    pub listener: &'s HttpListener,
    /// The virtual host.
    pub vhost: &'s VirtualHost,
    /// The rule (an `Arc`, so the data plane can keep it past the decision).
    pub rule: &'s Arc<HttpRule>,
    /// The winning HTTP match (`None` for gRPC rules).
    pub http_match: Option<&'s HttpMatch>,
}

/// A local answer (404, 400, 421, 500, CORS preflight, ...).
#[derive(Debug)]
pub struct LocalResponse<'s> {
    /// Status.
    pub status: StatusCode,
    /// Headers to send.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Why (for logs and `loom explain`).
    pub reason: String,
    /// The rule, when one matched.
    pub matched: Option<Matched<'s>>,
}

/// A forwarded request. The request filters are not applied yet: the data plane applies
/// them in place ([`Forward::apply_request_headers`]) to its own header type, so nothing is
/// copied; [`Forward::backend_request`] builds the whole request for tools and tests.
#[derive(Debug)]
pub struct Forward<'s> {
    /// What matched.
    pub matched: Matched<'s>,
    /// The chosen backend.
    pub backend: &'s Arc<BackendTarget>,
    /// The chosen backendRef's index in the rule.
    pub backend_index: usize,
    /// The path and query the backend receives (normalised, then rewritten).
    pub path_and_query: String,
    /// The `Host` the backend receives, when a URLRewrite changes it.
    pub host: Option<&'s HeaderValue>,
    /// Where to send copies of the request.
    pub mirrors: Vec<&'s Arc<BackendTarget>>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retry: Option<&'s Retry>,
}

impl Forward<'_> {
    /// Applies the request header filters (rule, then backend) and the `Host` rewrite in place.
    pub fn apply_request_headers<H: HeaderStore + ?Sized>(&self, headers: &mut H) {
        self.matched
            .rule
            .apply_request_headers(self.backend_index, headers);
        if let Some(h) = self.host {
            headers.set_header(http::header::HOST, h.clone());
        }
    }

    /// The request as the backend receives it.
    pub fn backend_request(&self, req: &HttpRequest<'_>) -> http::Request<()> {
        let mut headers = req.headers.clone();
        if !headers.contains_key(http::header::HOST)
            && let Some(a) = req
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(http::header::HOST, a);
        }
        self.apply_request_headers(&mut headers);
        let mut request = http::Request::new(());
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = self
            .path_and_query
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *request.headers_mut() = headers;
        request
    }
}

impl HttpRule {
    fn filter_layers(&self, backend_index: usize) -> impl Iterator<Item = &Filters> {
        std::iter::once(&self.filters).chain(self.backends.get(backend_index).map(|b| &b.filters))
    }

    /// Applies the request header modifiers of the rule and of the chosen backendRef, in place.
    pub fn apply_request_headers<H: HeaderStore + ?Sized>(
        &self,
        backend_index: usize,
        headers: &mut H,
    ) {
        for f in self.filter_layers(backend_index) {
            if let Some(e) = &f.request_headers {
                e.apply(headers);
            }
        }
    }

    /// Applies the response header modifiers and CORS headers of the rule and of the chosen
    /// backendRef to a backend's response, in place. `origin` is the request's `Origin`.
    pub fn apply_response_headers<H: HeaderStore + ?Sized>(
        &self,
        backend_index: usize,
        origin: Option<&HeaderValue>,
        headers: &mut H,
    ) {
        for f in self.filter_layers(backend_index) {
            if let Some(e) = &f.response_headers {
                e.apply(headers);
            }
            if let Some(c) = &f.cors {
                for (n, v) in c.response_headers(origin) {
                    headers.set_header(n, v);
                }
            }
        }
    }
}

/// Splitmix64: derives independent values from one random seed.
fn mix(seed: u64, n: u64) -> u64 {
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

impl Snapshot {
    /// The port of a Gateway.
    pub fn port(&self, gateway: &GatewayName, port: u16) -> Option<&PortSnapshot> {
        self.gateways.get(gateway)?.ports.get(&port)
    }

    /// Decides what to do with an HTTP request that arrived on a Gateway's port. `random` is the
    /// only source of randomness (weighted backends, mirror percentages).
    pub fn decide<'s>(
        &'s self,
        gateway: &GatewayName,
        port: u16,
        req: &HttpRequest<'_>,
        random: u64,
    ) -> Decision<'s> {
        match self.port(gateway, port) {
            Some(p) => p.decide(req, random),
            None => respond(StatusCode::NOT_FOUND, "no listener on this port", None),
        }
    }
}

/// A local answer with no headers.
fn respond<'s>(
    status: StatusCode,
    reason: impl Into<String>,
    matched: Option<Matched<'s>>,
) -> Decision<'s> {
    Decision::Respond(LocalResponse {
        status,
        headers: vec![],
        reason: reason.into(),
        matched,
    })
}

impl PortSnapshot {
    /// The listener a host belongs to (listener isolation: the most specific hostname wins).
    pub fn listener_for(&self, host: &str) -> Option<&HttpListener> {
        self.http_listeners()
            .iter()
            .find(|l| l.hostname.as_ref().is_none_or(|h| h.matches(host)))
    }

    /// The authority of a request: `:authority`/URI authority, else the `Host` header.
    pub fn authority<'r>(req: &HttpRequest<'r>) -> Option<&'r str> {
        req.uri.authority().map(|a| a.as_str()).or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
    }

    /// Finds the listener, virtual host and rule for a request without applying anything.
    pub fn find<'s>(&'s self, req: &HttpRequest<'_>) -> Result<Matched<'s>, NoRoute> {
        self.find_normalized(req).map(|(m, _)| m)
    }

    /// [`Self::find`], also returning the normalised path it matched on.
    fn find_normalized<'s, 'r>(
        &'s self,
        req: &HttpRequest<'r>,
    ) -> Result<(Matched<'s>, Cow<'r, str>), NoRoute> {
        let authority = Self::authority(req).unwrap_or("");
        let host = host_without_port(authority);
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let Some(listener) = self.listener_for(host) else {
            return Err(NoRoute::NoListener(host.to_owned()));
        };
        if let Some(sni) = req.sni {
            // HTTPS listener isolation: the Host must belong to the listener the SNI chose.
            // Compare identities, not names: a ListenerSet's listener may share its name with
            // a Gateway listener (or another set's) on the same port.
            let by_sni = self.listener_for(sni);
            if !by_sni.is_some_and(|l| std::ptr::eq(l, listener)) {
                return Err(NoRoute::Misdirected {
                    host: host.to_owned(),
                    sni: sni.to_owned(),
                });
            }
        }
        let raw_path = req.uri.path();
        let path = normalize(raw_path)?;
        let is_grpc = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let view = RequestView {
            method: req.method,
            path: &path,
            query: req.uri.query(),
            headers: req.headers,
        };
        let mut found = None;
        for vhost in listener.vhosts_for(host) {
            if is_grpc && let Some(rule) = vhost.grpc.find(&path, req.headers) {
                found = Some(Matched {
                    listener,
                    vhost,
                    rule,
                    http_match: None,
                });
                break;
            }
            if let Some((m, rule)) = vhost.http.find(&view) {
                found = Some(Matched {
                    listener,
                    vhost,
                    rule,
                    http_match: Some(m),
                });
                break;
            }
        }
        if let Some(m) = found {
            return Ok((m, path));
        }
        Err(NoRoute::NoMatch)
    }

    /// Decides what to do with a request: see [`Snapshot::decide`].
    pub fn decide<'s>(&'s self, req: &HttpRequest<'_>, random: u64) -> Decision<'s> {
        let (matched, path) = match self.find_normalized(req) {
            Ok(found) => found,
            Err(no_route) => return respond(no_route.status(), no_route.to_string(), None),
        };
        let rule = matched.rule;
        if let Some(why) = &rule.invalid {
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                why.to_string(),
                Some(matched),
            );
        }
        if let Some(cors) = &rule.filters.cors
            && Cors::is_preflight(req.method, req.headers)
        {
            let headers = cors.preflight_headers(req.headers);
            let reason = if headers.is_empty() {
                "CORS preflight from an origin not allowed"
            } else {
                "CORS preflight"
            };
            return Decision::Respond(LocalResponse {
                status: StatusCode::OK,
                headers,
                reason: reason.into(),
                matched: Some(matched),
            });
        }
        let matched_prefix = match matched.http_match.map(|m| &m.path) {
            Some(PathMatch::Prefix(p)) => Some(p.as_str()),
            _ => None,
        };
        let redirect = |r: &Redirect| {
            let host = host_without_port(Self::authority(req).unwrap_or(""));
            let location = r.location(
                req.scheme,
                host,
                self.port,
                &path,
                req.uri.query(),
                matched_prefix,
            );
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
            Decision::Redirect {
                status,
                location,
                matched,
            }
        };
        if let Some(r) = &rule.filters.redirect {
            return redirect(r);
        }
        let Some(index) = choose_weighted(rule.backends.iter().map(|b| b.weight), mix(random, 0))
        else {
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rule has no backend with weight > 0",
                Some(matched),
            );
        };
        let chosen = &rule.backends[index];
        let backend = match &chosen.target {
            Ok(b) => b,
            Err(why) => {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    why.to_string(),
                    Some(matched),
                );
            }
        };
        if let Some(r) = &chosen.filters.redirect {
            return redirect(r);
        }
        let mut new_path = path.into_owned();
        let mut host = None;
        let mut mirrors = Vec::new();
        for (n, filters) in [&rule.filters, &chosen.filters].into_iter().enumerate() {
            if let Some(rw) = &filters.rewrite {
                host = rw.hostname.as_ref().or(host);
                if let Some(p) = &rw.path {
                    new_path = p.apply(&new_path, matched_prefix);
                }
            }
            for (i, m) in filters.mirrors.iter().enumerate() {
                let r =
                    mix(random, 1 + (n as u64) * 1000 + i as u64) % u64::from(m.denominator.max(1));
                if r < u64::from(m.numerator) {
                    mirrors.push(&m.backend);
                }
            }
        }
        if let Some(q) = req.uri.query() {
            new_path.push('?');
            new_path.push_str(q);
        }
        Decision::Forward(Box::new(Forward {
            matched,
            backend,
            backend_index: index,
            path_and_query: new_path,
            host,
            mirrors,
            timeouts: rule.timeouts,
            retry: rule.retry.as_ref(),
        }))
    }

    /// Chooses the TLS route for an SNI (passthrough and terminate listeners).
    pub fn tls_route(&self, sni: Option<&str>) -> Option<(&TlsListener, &L4Rule)> {
        let sni = sni.unwrap_or("");
        let listener = self
            .tls_listeners()
            .iter()
            .find(|l| l.hostname.as_ref().is_none_or(|h| h.matches(sni)))?;
        let rule = listener
            .routes
            .iter()
            .find(|(h, _)| h.as_ref().is_none_or(|h| h.matches(sni)))?;
        Some((listener, &rule.1))
    }
}

impl L4Rule {
    /// Chooses a backend by weight; `Err` when none can take the connection.
    pub fn choose(&self, random: u64) -> Result<&BackendTarget, NoBackend> {
        let i = choose_weighted(self.backends.iter().map(|b| b.weight), random)
            .ok_or(NoBackend::ZeroWeight)?;
        self.backends[i]
            .target
            .as_deref()
            .map_err(|e| NoBackend::Unresolved(e.clone()))
    }
}

// === Summary view ===

/// A plain-data description of a snapshot, for `loom check --snapshot`, snapshot tests and
/// debugging: every gateway, port, listener, virtual host and rule in precedence order.
pub fn describe(snapshot: &Snapshot) -> serde_json::Value {
    use serde_json::{Value, json};
    let backends = |bs: &[WeightedBackend]| -> Vec<Value> {
        bs.iter()
            .map(|b| match &b.target {
                Ok(t) => json!({"weight": b.weight, "backend": t.object.to_string(), "port": t.port,
                    "protocol": t.protocol, "endpoints": t.endpoints, "tls": t.tls.as_ref().map(|t| &t.hostname)}),
                Err(why) => json!({"weight": b.weight, "invalid": why.to_string()}),
            })
            .collect()
    };
    let rule = |r: &HttpRule| {
        let mut filters = vec![];
        let f = &r.filters;
        if f.request_headers.is_some() {
            filters.push("RequestHeaderModifier".to_owned());
        }
        if f.response_headers.is_some() {
            filters.push("ResponseHeaderModifier".to_owned());
        }
        if let Some(rd) = &f.redirect {
            filters.push(format!("RequestRedirect({})", rd.status));
        }
        if f.rewrite.is_some() {
            filters.push("URLRewrite".to_owned());
        }
        for m in &f.mirrors {
            filters.push(format!(
                "RequestMirror({} {}/{})",
                m.backend.object, m.numerator, m.denominator
            ));
        }
        if f.cors.is_some() {
            filters.push("CORS".to_owned());
        }
        json!({"route": r.route.to_string(), "rule": r.rule_index, "name": r.rule_name, "filters": filters,
            "backends": backends(&r.backends), "invalid": r.invalid.as_ref().map(ToString::to_string), "timeouts": r.timeouts, "retry": r.retry})
    };
    let mut gateways = serde_json::Map::new();
    for (name, g) in &snapshot.gateways {
        let mut ports = serde_json::Map::new();
        for (port, p) in &g.ports {
            let http: Vec<Value> = p
                .http_listeners()
                .iter()
                .map(|l| {
                    let vhosts: Vec<Value> = l
                        .vhosts
                        .iter()
                        .map(|v| {
                            let http: Vec<Value> = v
                                .http
                                .entries()
                                .map(|(m, r)| json!({"path": format!("{:?}", m.path), "method": m.method.as_ref().map(|m| m.as_str()),
                                    "headers": m.headers.len(), "query": m.query.len(), "then": rule(r)}))
                                .collect();
                            json!({"hostname": v.hostname.as_ref().map(|h| h.to_string()), "http": http, "grpcMatches": v.grpc.len()})
                        })
                        .collect();
                    json!({"listener": l.name, "hostname": l.hostname.as_ref().map(|h| h.to_string()), "tls": l.tls.is_some(), "vhosts": vhosts})
                })
                .collect();
            let tls: Vec<Value> = p
                .tls_listeners()
                .iter()
                .map(|l| json!({"listener": l.name, "terminate": l.terminate.is_some(),
                    "routes": l.routes.iter().map(|(h, r)| json!({"sni": h.as_ref().map(|h| h.to_string()), "route": r.route.to_string(), "backends": backends(&r.backends)})).collect::<Vec<_>>()}))
                .collect();
            let l4 = |l: Option<&L4Listener>| {
                l.map(|l| json!({"listener": l.name, "route": l.rule.route.to_string(), "backends": backends(&l.rule.backends)}))
            };
            ports.insert(
                port.to_string(),
                json!({"http": http, "tls": tls, "tcp": l4(p.tcp_listener()), "udp": l4(p.udp.as_ref())}),
            );
        }
        gateways.insert(
            format!("{}/{}", name.namespace, name.name),
            json!({"addresses": g.addresses, "ports": ports}),
        );
    }
    Value::Object(gateways)
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
