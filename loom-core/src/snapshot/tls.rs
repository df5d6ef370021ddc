//! TLS: the settings of terminating listeners, and TLS listeners (SNI → TLSRoute).

use std::sync::Arc;

use super::{L4Rule, PortSnapshot};
use crate::input::ObjectKey;
use crate::route::host::HostPattern;

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

/// A TLS listener: SNI → backends.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// Listener name.
    pub name: String,
    /// The listener's hostname; `None` takes any SNI.
    pub hostname: Option<HostPattern>,
    /// `Some` when Loom terminates TLS (mode Terminate).
    pub terminate: Option<ServerTls>,
    /// Routes by SNI, most specific hostname first, oldest route first.
    pub routes: Vec<(Option<HostPattern>, Arc<L4Rule>)>,
}

impl PortSnapshot {
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
