//! Frontends: the sockets Loom listens on and what arrives there. Every HTTP connection is
//! handed to the pipeline (Pingora's `ServerApp::process_new`); TCP, TLS passthrough and UDP
//! traffic is spliced to backends here.
//!
//! ```text
//! listeners  ListenerManager: follows the published snapshot, binds and stops sockets
//! http       accept loop of HTTP/HTTPS ports, TLS handshake, h2c detection → pipeline
//! tls        rustls configurations per port (certificates by SNI, client validation)
//! l4         TCP, TLS (passthrough / terminate, SNI routing) and UDP loops
//! sni        the ClientHello parser behind TLS routing
//! buffered   write coalescing for the client socket
//! ```

mod buffered;
mod http;
mod l4;
pub mod listeners;
pub mod sni;
pub(crate) mod tls;
