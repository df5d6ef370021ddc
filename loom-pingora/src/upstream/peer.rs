//! The connection to one backend endpoint: Pingora's `HttpPeer` with backend TLS
//! (BackendTLSPolicy), HTTP/2 for `kubernetes.io/h2c` backends and the attempt's timeout.

use std::net::SocketAddr;
use std::time::Duration;

use loom_core::snapshot::{AppProtocol, BackendTarget, Certificate};
use pingora::prelude::*;

/// Backend timeouts where a route sets none (a route's `timeouts` replace them for its
/// requests: see `pipeline::timeouts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendTimeouts {
    /// Opening a connection, TLS handshake included.
    pub connect: Duration,
    /// Waiting for the response head, and between any two reads or writes after it.
    pub read: Duration,
}

impl Default for BackendTimeouts {
    fn default() -> Self {
        BackendTimeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(60),
        }
    }
}

impl BackendTimeouts {
    /// Applies these defaults to `peer`.
    pub(crate) fn apply(&self, peer: &mut HttpPeer) {
        self.apply_connect(peer);
        peer.options.read_timeout = Some(self.read);
        peer.options.write_timeout = Some(self.read);
    }

    /// Applies the connect timeout only (a route that disables its timeouts).
    pub(crate) fn apply_connect(&self, peer: &mut HttpPeer) {
        peer.options.connection_timeout = Some(self.connect);
        peer.options.total_connection_timeout = Some(self.connect);
    }
}

/// The peer for `endpoint` of `backend`; `client_cert` is the Gateway's client certificate for
/// TLS backends.
pub(crate) fn http_peer(
    backend: &BackendTarget,
    endpoint: SocketAddr,
    client_cert: Option<&Certificate>,
) -> Result<HttpPeer> {
    let mut peer = match &backend.tls {
        None => HttpPeer::new(endpoint, false, String::new()),
        Some(tls) => {
            let mut peer = HttpPeer::new(endpoint, true, tls.hostname.clone());
            peer.options.verify_cert = true;
            peer.options.verify_hostname = true;
            let trust = super::backend_tls::trust(tls)
                .or_else(|e| Error::e_explain(InternalError, format!("{}: CA: {e}", tls.policy)))?;
            peer.options.ca = trust.ca;
            peer.group_key = trust.group;
            let sans = super::backend_tls::san_verifier(tls)
                .or_else(|e| Error::e_explain(InternalError, format!("{}: {e}", tls.policy)))?;
            if let Some((verifier, group)) = sans {
                // The hostname is only the SNI then.
                peer.options.server_cert_verifier = Some(verifier);
                peer.group_key = group;
            }
            if let Some(c) = client_cert {
                peer.client_cert_key = Some(super::backend_tls::client_cert(c).or_else(|e| {
                    Error::e_explain(InternalError, format!("client certificate: {e}"))
                })?);
            }
            peer
        }
    };
    if backend.protocol == AppProtocol::H2c {
        if backend.tls.is_some() {
            peer.options.alpn = pingora::protocols::ALPN::H2;
        } else {
            // Prior knowledge: the backend speaks HTTP/2 in cleartext.
            peer.options.set_http_version(2, 2);
        }
    }
    Ok(peer)
}

/// Bounds every connect, read and write of an attempt by `timeout`.
pub(crate) fn set_timeout(peer: &mut HttpPeer, timeout: Duration) {
    BackendTimeouts {
        connect: timeout,
        read: timeout,
    }
    .apply(peer);
}
