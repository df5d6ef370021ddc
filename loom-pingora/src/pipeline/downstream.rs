//! What the pipeline knows of the connection a request came on, whatever frontend accepted it.

use std::sync::Arc;

use pingora::proxy::Session;

/// The SNI a client sent. A frontend that terminates TLS attaches it to the connection's TLS
/// digest (`SslDigest::extension`); the pipeline reads it from there and nowhere else.
#[derive(Debug)]
pub(crate) struct ClientSni(pub(crate) Option<String>);

/// A frontend's hook, handed to the pipeline as the connection's user context: called once a
/// request head has been read (HTTP/1 head deadlines stop there).
#[derive(Clone)]
pub(crate) struct OnRequestHead(pub(crate) Arc<dyn Fn() + Send + Sync>);

/// The listener side of a request: how it reached Loom.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Downstream<'a> {
    /// `https` when the connection is TLS, else `http`.
    pub(crate) scheme: &'static str,
    /// The SNI of a TLS connection.
    pub(crate) sni: Option<&'a str>,
}

impl<'a> Downstream<'a> {
    /// The connection of `session`, on a listener that is TLS or not.
    pub(crate) fn of(session: &'a Session, tls: bool) -> Self {
        let sni = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<ClientSni>())
            .and_then(|s| s.0.as_deref());
        Downstream {
            scheme: if tls { "https" } else { "http" },
            sni,
        }
    }
}
