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
//! woken      a future polled only when its own waker fired (the connection's deadlines)
//!
//! Client limits (ClientLimits) are the flags' defaults, overridden per port by the snapshot's
//! ClientTrafficPolicy settings; a publish that changes them applies to connections accepted
//! from then on, without closing the listening socket.
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
mod woken;

use std::time::Duration;

pub use deadline::HeadLimits;
use loom_core::snapshot::ClientSettings;

/// What a client may hold: time to send request heads, idle keep-alive time, connections. The
/// process's defaults come from flags; a port's ClientTrafficPolicy overrides them there
/// ([`ClientLimits::with_policy`]).
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
    /// These limits (the defaults, from flags) with what a port's ClientTrafficPolicy sets
    /// instead; what it leaves out stays.
    pub fn with_policy(self, policy: Option<&ClientSettings>) -> ClientLimits {
        let Some(p) = policy else {
            return self;
        };
        ClientLimits {
            head: HeadLimits {
                head: p.header_timeout.unwrap_or(self.head.head),
                idle: p.idle_timeout.unwrap_or(self.head.idle),
            },
            max_connections_per_listener: p
                .max_connections
                .map_or(self.max_connections_per_listener, |n| n as usize),
        }
    }

    /// HTTP/2's idle timeout.
    pub(crate) fn h2_idle(&self) -> Duration {
        self.head.idle
    }
}

#[cfg(test)]
mod tests {
    use loom_core::input::{Kind, ObjectKey};

    use super::*;

    #[test]
    fn a_policy_replaces_the_defaults_it_sets_and_keeps_the_others() {
        let defaults = ClientLimits::default();
        assert_eq!(defaults.with_policy(None), defaults);
        let policy = ClientSettings {
            policy: ObjectKey {
                kind: Kind::ClientTrafficPolicy,
                namespace: "default".into(),
                name: "strict".into(),
            },
            header_timeout: None,
            idle_timeout: Some(Duration::from_secs(5)),
            max_connections: Some(2),
        };
        let limits = defaults.with_policy(Some(&policy));
        assert_eq!(limits.head.head, defaults.head.head);
        assert_eq!(limits.head.idle, Duration::from_secs(5));
        assert_eq!(limits.h2_idle(), Duration::from_secs(5));
        assert_eq!(limits.max_connections_per_listener, 2);
    }
}
