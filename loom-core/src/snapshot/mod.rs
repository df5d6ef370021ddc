//! The compiled, immutable routing snapshot and the decision API.
//!
//! ```text
//! Snapshot ─ gateway (ns/name) ─ port ─┬─ listeners (TCP), one of:
//!                                      │    Http  HTTP listeners (most specific hostname first)
//!                                      │           └─ virtual hosts (exact, wildcard, any)
//!                                      │                ├─ HttpTable  (path values hashed + regex list)
//!                                      │                └─ GrpcTable
//!                                      │    Tls   HTTPS listeners (as Http) + TLS listeners
//!                                      │           (SNI → TLSRoute backends); the SNI chooses
//!                                      │    Tcp   TCP listener (oldest route's backends)
//!                                      ├─ udp: UDP listener (oldest route's backends)
//!                                      └─ client: ClientTrafficPolicy limits of connections
//! ```
//!
//! Modules: `http` (listeners, virtual hosts, rules), `tls` and `l4` (TLS settings and
//! listeners, TCP/UDP), `backend` (resolved backends and why one cannot take traffic),
//! `policy` (Loom's rate limits, circuit breakers and client limits as they apply), `plugin`
//! (WASMPlugins and their order), `decide` (the decision
//! API), `describe` (a plain-data view). Everything is re-exported here.

mod backend;
mod decide;
mod describe;
mod http;
mod l4;
mod plugin;
mod policy;
mod tls;

use std::collections::BTreeMap;

use serde::Serialize;

pub use backend::{
    AppProtocol, BackendRefError, BackendTarget, BackendTls, Endpoint, EndpointError,
    UnresolvedRef, UnsupportedExtensionRef, WeightedBackend, choose_weighted,
};
pub use decide::{Decision, Forward, HttpRequest, LocalResponse, Matched, NoRoute, Transport};
pub use describe::describe;
pub use http::{Filters, HttpListener, HttpRule, Mirror, Retry, Timeouts, VirtualHost};
pub use l4::{L4Listener, L4Rule, NoBackend};
pub use plugin::{FailStrategy, ModuleDigest, Plugin, PluginPhase, RulePlugins};
pub use policy::{
    CircuitBreaker, ClientKey, ClientSettings, GlobalLimit, Limit, RateLimit, RateLimitHeaders,
    RateLimitRule, Slot,
};
pub use tls::{Certificate, ClientValidation, ServerTls, TlsListener};

use crate::status::StatusAddress;

/// A Gateway's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GatewayName {
    /// The Gateway's namespace.
    pub namespace: String,
    /// The Gateway's name.
    pub name: String,
}

impl GatewayName {
    /// The Gateway `namespace/name`.
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
    /// Every rate limit the rules refer to, by [`RateLimit::id`] (so the data plane keeps one
    /// state per entry).
    pub rate_limits: Vec<std::sync::Arc<RateLimit>>,
    /// Every WASMPlugin the rules run (so the data plane prepares each once, before it
    /// serves the snapshot).
    pub plugins: Vec<std::sync::Arc<Plugin>>,
}

/// One Gateway.
#[derive(Clone, Debug, Default)]
pub struct GatewaySnapshot {
    /// Where to listen (from `spec.addresses` or the default).
    pub addresses: Vec<StatusAddress>,
    /// What each port serves, by port number.
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
    /// What serves UDP datagrams: a UDP listener or HTTP/3. UDP shares a port with any TCP
    /// listener.
    pub udp: Option<UdpListeners>,
    /// The limits of client connections to the port, from a ClientTrafficPolicy; `None`: the
    /// data plane's defaults.
    pub client: Option<ClientSettings>,
}

/// What serves UDP on a port. Listener conflicts leave one kind per port.
#[derive(Clone, Debug)]
pub enum UdpListeners {
    /// A UDP listener and the route that gets its datagrams.
    L4(L4Listener),
    /// HTTP/3 over QUIC: the QUIC handshake's SNI chooses a listener, most specific hostname
    /// first; served like HTTPS listeners.
    Http3(Vec<HttpListener>),
}

/// What serves TCP connections on a port. Listener conflicts leave one kind per port.
#[derive(Clone, Debug)]
pub enum PortListeners {
    /// Plain HTTP listeners, most specific hostname first.
    Http(Vec<HttpListener>),
    /// TLS: the SNI chooses a listener; each list most specific hostname first.
    Tls {
        /// HTTPS listeners: Loom terminates TLS, then routes HTTP.
        https: Vec<HttpListener>,
        /// TLS listeners: TLSRoutes, passed through or terminated.
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

    /// The HTTP/3 listeners, most specific hostname first.
    pub fn http3_listeners(&self) -> &[HttpListener] {
        match &self.udp {
            Some(UdpListeners::Http3(l)) => l,
            _ => &[],
        }
    }

    /// The UDP listener (UDPRoute).
    pub fn udp_listener(&self) -> Option<&L4Listener> {
        match &self.udp {
            Some(UdpListeners::L4(l)) => Some(l),
            _ => None,
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

impl Snapshot {
    /// The port of a Gateway.
    pub fn port(&self, gateway: &GatewayName, port: u16) -> Option<&PortSnapshot> {
        self.gateways.get(gateway)?.ports.get(&port)
    }
}
