//! Frontends: the sockets Loom listens on and what arrives there. Every HTTP connection is
//! handed to the pipeline (Pingora's `ServerApp::process_new`); TCP, TLS passthrough and UDP
//! traffic is spliced to backends here.
//!
//! ```text
//! listeners  ListenerManager: follows the published snapshot, binds and stops sockets
//! http       accept loop of HTTP/HTTPS ports, TLS handshake, h2c detection → pipeline
//! tls        rustls configurations per port (certificates by SNI, client validation)
//! l4         TCP, TLS (passthrough / terminate, SNI routing) and UDP loops
//! quic       HTTP/3: QUIC connections, each request stream a custom session → pipeline
//! sni        the ClientHello parser behind TLS routing
//! buffered   write coalescing for the client socket
//! deadline   request head and keep-alive idle deadlines for HTTP/1
//! admission  connection limits per listener and per process (file descriptors)
//! ```

mod admission;
mod buffered;
pub mod deadline;
mod http;
mod l4;
pub mod listeners;
mod quic;
pub mod sni;
pub(crate) mod tls;

use std::time::Duration;

pub use deadline::HeadLimits;

/// What a client may hold: time to send request heads, idle keep-alive time, connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// HTTP/1 request head and keep-alive idle deadlines (the idle one is also HTTP/2's idle
    /// timeout: a connection with no open stream for that long is closed).
    pub head: HeadLimits,
    /// Connections one listener holds at most; more are closed as they are accepted. All
    /// listeners together also stay within the process's file-descriptor limit.
    pub max_connections_per_listener: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            head: HeadLimits::default(),
            max_connections_per_listener: 10_000,
        }
    }
}

impl ClientLimits {
    /// HTTP/2's idle timeout.
    pub(crate) fn h2_idle(&self) -> Duration {
        self.head.idle
    }
}
