//! HTTP connections: the accept loop of HTTP and HTTPS ports, TLS handshakes, and the choice
//! between HTTP/1 (HTTP/2 over TLS by ALPN) and HTTP/2 with prior knowledge on cleartext ports.
//! Every connection ends up in Pingora's `ServerApp::process_new`, i.e. in the pipeline.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admission::{Admission, Admitted};
use super::buffered::Buffered;
use super::deadline::{HeadClock, HeadLimits};
use super::woken::OnWake;
use crate::pipeline::downstream::OnRequestHead;

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
    /// Deadlines for HTTP/1 request heads.
    pub(crate) head: HeadLimits,
}

/// A port's HTTP applications as they are now: a publish that changes the port's client
/// limits swaps them, and each connection takes those current when it is accepted.
pub(crate) type CurrentApps<A> = Arc<ArcSwap<Apps<A>>>;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a cleartext connection starts with the HTTP/2 preface. Peeks without consuming and
/// stops waiting as soon as the bytes so far differ from it, so a short HTTP/1.0 request is
/// never held up; gives up at `deadline` (the request head deadline). A client that sends a
/// strict prefix of the preface and stops is looked at again after 1, 2, 4 … 64 ms, not in a
/// busy loop.
async fn starts_with_h2_preface(
    tcp: &tokio::net::TcpStream,
    deadline: tokio::time::Instant,
    shutdown: &ShutdownWatch,
) -> bool {
    tokio::select! {
        preface = peek_h2_preface(tcp, deadline) => preface,
        // Shutting down: a connection that has sent nothing is HTTP/1 (closed there once it
        // has been quiet for a second).
        _ = shutting_down(shutdown) => false,
    }
}

/// Returns once shutdown has begun.
async fn shutting_down(shutdown: &ShutdownWatch) {
    let mut shutdown = shutdown.clone();
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn peek_h2_preface(tcp: &tokio::net::TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut wait = Duration::from_millis(1);
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
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + wait)).await;
        wait = (wait * 2).min(Duration::from_millis(64));
    }
}

/// Serves one HTTP connection (TLS first, when an acceptor is given) with keep-alive reuse.
pub(crate) async fn serve_http<A: HttpServerApp + Send + Sync + 'static>(
    tcp: tokio::net::TcpStream,
    apps: Arc<Apps<A>>,
    acceptor: Option<Arc<Acceptor>>,
    shutdown: ShutdownWatch,
) {
    let accepted = tokio::time::Instant::now();
    let clock = Arc::new(HeadClock::new(accepted));
    let h2c = match &apps.h2c {
        Some(h2c)
            if acceptor.is_none()
                && starts_with_h2_preface(&tcp, accepted + apps.head.head, &shutdown).await =>
        {
            Some(h2c.clone())
        }
        _ => None,
    };
    let mut l4 = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
    l4.set_socket_digest(digest);
    let l4 = Buffered::new(l4, h2c.is_none().then(|| clock.clone()));
    let stream: Stream = match acceptor {
        None => Box::new(l4),
        Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.tls_handshake(l4)).await {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => return tracing::debug!("TLS handshake: {e}"),
            Err(_) => return,
        },
    };
    match h2c {
        Some(app) => {
            app.process_new(stream, &shutdown).await;
        }
        None if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) => {
            apps.http.process_new(stream, &shutdown).await;
        }
        None => serve_http1(stream, &apps.http, apps.head, &clock, &shutdown).await,
    }
}

/// Keep-alive without a timeout of Pingora's own (`Some(0)`: "infinite"): the [`HeadClock`]
/// already bounds every wait for a request head, idle or not, and closes the connection when
/// it runs out. A Pingora keep-alive timeout on top cost a timer registration (a boxed future,
/// a clock read, a lock and a `Notify`) for every request (bench/RESULTS.md, #16).
const KEEPALIVE_WITHOUT_TIMER: u64 = 0;

/// HTTP/1's keep-alive loop (Pingora's own, `ServerApp::process_new`, with request head
/// deadlines): every wait for a request head is bounded by `limits` (see [`HeadClock`]); the
/// pipeline disarms the clock once the head is read (`OnRequestHead`).
async fn serve_http1<A: HttpServerApp + Send + Sync + 'static>(
    stream: Stream,
    app: &Arc<A>,
    limits: HeadLimits,
    clock: &Arc<HeadClock>,
    shutdown: &ShutdownWatch,
) {
    let mut session = ServerSession::new_http1(stream);
    session.set_keepalive(if *shutdown.borrow() {
        None
    } else {
        Some(KEEPALIVE_WITHOUT_TIMER)
    });
    session.set_keepalive_reuses_remaining(
        app.server_options()
            .and_then(|options| options.keepalive_request_limit),
    );
    // Requests sent before the previous response (RFC 9112 §9.3.2) are answered in order
    // instead of being dropped with the connection.
    session.set_pipelining_enabled(true);
    let on_head = {
        let clock = clock.clone();
        OnRequestHead(Arc::new(move || clock.disarm()))
    };
    // Two futures for the connection's life, polled alongside each request when they woke.
    let mut expired = OnWake::new(clock.expired(limits));
    let mut at_shutdown = OnWake::new(idle_at_shutdown(clock, shutdown));
    loop {
        session.set_connection_user_context(Some(Box::new(on_head.clone())));
        let reused = tokio::select! {
            // A request whose head was read wins over a deadline that fired meanwhile.
            biased;
            reused = app.process_new_http(session, shutdown) => reused,
            _ = &mut expired => {
                return tracing::debug!(
                    "closing a connection that sent no complete request head in time"
                );
            }
            _ = &mut at_shutdown => {
                return tracing::debug!("closing an idle keep-alive connection: shutting down");
            }
        };
        let Some((stream, settings)) = reused.map(|r| r.consume()) else {
            return;
        };
        session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
        // No keep-alive once shutting down; otherwise the clock's idle timeout bounds the
        // wait for the next request (`expired` above).
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else if session.get_keepalive().is_some() {
            session.set_keepalive(Some(KEEPALIVE_WITHOUT_TIMER));
        }
        clock.arm(tokio::time::Instant::now());
    }
}

/// How long a connection must have waited without a byte of a request before a shutdown
/// closes it: a request whose first bytes are still on their way when the drain begins, or
/// that comes on a connection accepted during the drain, is served rather than reset.
const QUIET_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// Returns once shutdown has begun and the connection has waited [`QUIET_BEFORE_CLOSE`] for a
/// request that has not started: such a connection is closed rather than kept until the
/// process exits (a load balancer might still send a request on it).
async fn idle_at_shutdown(clock: &HeadClock, shutdown: &ShutdownWatch) {
    shutting_down(shutdown).await;
    loop {
        let wait = match clock.waited_without_bytes(tokio::time::Instant::now()) {
            Some(waited) if waited >= QUIET_BEFORE_CLOSE => return,
            Some(waited) => QUIET_BEFORE_CLOSE - waited,
            None => Duration::from_millis(50),
        };
        tokio::time::sleep(wait).await;
    }
}

pub(crate) async fn accept_loop<A: HttpServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    apps: CurrentApps<A>,
    acceptor: Arc<ArcSwapOption<Acceptor>>,
    admission: Admission,
    mut stop: watch::Receiver<bool>,
    shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Some(tcp) = admit(accepted, &admission).await else {
            continue;
        };
        let (apps, acceptor, shutdown) = (apps.load_full(), acceptor.load_full(), shutdown.clone());
        tokio::spawn(async move {
            serve_http(tcp.0, apps, acceptor, shutdown).await;
            drop(tcp.1);
        });
    }
}

/// An accepted connection with its place, or `None` when it was refused (over a connection
/// limit: closed at once) or the accept failed (backs off first).
pub(crate) async fn admit(
    accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
    admission: &Admission,
) -> Option<(tokio::net::TcpStream, Admitted)> {
    match accepted {
        Ok((tcp, peer)) => {
            let Some(admitted) = admission.try_admit() else {
                tracing::debug!("{peer}: refused, over the connection limit");
                return None;
            };
            let _ = tcp.set_nodelay(true);
            Some((tcp, admitted))
        }
        Err(e) => {
            // Out of file descriptors and the like: back off instead of spinning.
            tracing::warn!("accept: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use loom_core::snapshot::GatewayName;
    use pingora::apps::HttpServerApp;
    use pingora::protocols::http::ServerSession;
    use pingora::proxy::HttpProxy;
    use pingora::server::configuration::ServerConf;

    use crate::pipeline::{LoomProxy, Shared};

    /// Pingora builds the future of a request (`process_new_http`) on the stack and copies it
    /// into its box, for every request of every connection: its size is a `memcpy` per request
    /// (14.3 KB before the patches in vendor/README.md, 2.3 % of the CPU under load).
    #[tokio::test]
    async fn a_requests_future_is_at_most_9_kib() {
        let shared = Shared::new(crate::SnapshotHandle::new(), &Default::default()).unwrap();
        let shared = Arc::new(shared);
        let proxy = LoomProxy::new(shared, GatewayName::new("default", "gateway"), 80, false);
        let app = Arc::new(HttpProxy::new(proxy, Arc::new(ServerConf::default())));
        let (_client, server) = tokio::io::duplex(64);
        let (_shutting_down, shutdown) = tokio::sync::watch::channel(false);
        let request = app.process_new_http(ServerSession::new_http1(Box::new(server)), &shutdown);
        let size = std::mem::size_of_val(&*request);
        assert!(size <= 9 * 1024, "{size} bytes");
    }
}
