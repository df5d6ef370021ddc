//! HTTP connections: the accept loop of HTTP and HTTPS ports, TLS handshakes, and the choice
//! between HTTP/1 (HTTP/2 over TLS by ALPN) and HTTP/2 with prior knowledge on cleartext ports.
//! Every connection ends up in Pingora's `ServerApp::process_new`, i.e. in the pipeline.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::buffered::Buffered;

/// How long a client may take to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds a TCP listener (address reuse, a backlog of 4096).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The HTTP applications of a port: HTTP/1 (and HTTP/2 over TLS, by ALPN), and for cleartext
/// ports HTTP/2 with prior knowledge.
pub(crate) struct Apps<A> {
    pub(crate) http: Arc<A>,
    pub(crate) h2c: Option<Arc<A>>,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a cleartext connection starts with the HTTP/2 preface. Peeks without consuming and
/// stops waiting as soon as the bytes so far differ from it, so a short HTTP/1.0 request is
/// never held up.
async fn starts_with_h2_preface(tcp: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // A strict prefix of the preface so far: wait for the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves one HTTP connection (TLS first, when an acceptor is given) with keep-alive reuse.
pub(crate) async fn serve_http<A: ServerApp + Send + Sync + 'static>(
    tcp: tokio::net::TcpStream,
    apps: Arc<Apps<A>>,
    acceptor: Option<Arc<Acceptor>>,
    shutdown: ShutdownWatch,
) {
    let app = match &apps.h2c {
        Some(h2c) if acceptor.is_none() && starts_with_h2_preface(&tcp).await => h2c.clone(),
        _ => apps.http.clone(),
    };
    let mut l4 = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
    l4.set_socket_digest(digest);
    let l4 = Buffered::new(l4);
    let stream: Stream = match acceptor {
        None => Box::new(l4),
        Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.tls_handshake(l4)).await {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => return log::debug!("TLS handshake: {e}"),
            Err(_) => return,
        },
    };
    let mut next = app.process_new(stream, &shutdown).await;
    while let Some(s) = next {
        next = app.process_new(s, &shutdown).await;
    }
}

pub(crate) async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    apps: Arc<Apps<A>>,
    acceptor: Arc<ArcSwapOption<Acceptor>>,
    mut stop: watch::Receiver<bool>,
    shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_http(
            tcp,
            apps.clone(),
            acceptor.load_full(),
            shutdown.clone(),
        ));
    }
}
