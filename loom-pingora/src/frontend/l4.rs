//! TCPRoute, TLSRoute (passthrough and terminate) and UDPRoute traffic.
//!
//! TLS ports peek at the ClientHello (without consuming it), pick the TLSRoute by SNI, and
//! either splice the bytes to the backend untouched (passthrough) or terminate TLS and splice
//! the plaintext (terminate). A port that also has HTTPS listeners hands connections whose SNI no
//! TLS listener claims to the HTTP proxy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use loom_core::snapshot::{BackendTarget, GatewayName, L4Rule};
use pingora::apps::HttpServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::server::ShutdownWatch;
use pingora::tls::TlsAcceptor;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Mutex, watch};

use super::admission::Admission;
use super::http::admit;
use super::sni::{MAX_HELLO, Peeked, parse_client_hello};
use crate::handle::SnapshotHandle;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
const UDP_IDLE: Duration = Duration::from_secs(60);
/// UDP client sessions at most per listener; beyond that new clients are dropped.
const UDP_SESSIONS: usize = 4096;

fn endpoint(backend: &BackendTarget) -> Option<&str> {
    (!backend.endpoints.is_empty())
        .then(|| backend.endpoints[fastrand::usize(..backend.endpoints.len())].as_str())
}

async fn connect(backend: &BackendTarget) -> std::io::Result<TcpStream> {
    let addr = endpoint(backend).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} has no ready endpoints", backend.object),
        )
    })?;
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// The route of a TCP listener, from the current snapshot.
fn tcp_rule(handle: &SnapshotHandle, gateway: &GatewayName, port: u16) -> Option<Arc<L4Rule>> {
    handle
        .load()
        .snapshot
        .port(gateway, port)?
        .tcp_listener()
        .map(|l| l.rule.clone())
}

/// Serves a TCP listener until `stop` fires.
pub(crate) async fn tcp_loop(
    listener: TcpListener,
    handle: SnapshotHandle,
    gateway: GatewayName,
    port: u16,
    admission: Admission,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Some((mut client, admitted)) = admit(accepted, &admission).await else {
            continue;
        };
        let Some(rule) = tcp_rule(&handle, &gateway, port) else {
            continue;
        };
        tokio::spawn(async move {
            let _admitted = admitted;
            let backend = match rule.choose(fastrand::u64(..)) {
                Ok(b) => b,
                Err(why) => return tracing::debug!("TCP {}: {why}", rule.route),
            };
            match connect(backend).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::debug!("TCP {} to {}: {e}", rule.route, backend.object),
            }
        });
    }
}

/// HTTPS listeners sharing a TLS port: their HTTP applications and TLS acceptor.
pub(crate) type HttpsOnTlsPort<A> = (super::http::CurrentApps<A>, Arc<ArcSwapOption<Acceptor>>);

/// What a TLS port needs besides the snapshot.
pub(crate) struct TlsPort<A> {
    /// Terminating TLSRoute listeners' TLS.
    pub(crate) terminate: Arc<ArcSwapOption<TlsAcceptor>>,
    /// HTTPS listeners on the same port: their proxy and TLS acceptor.
    pub(crate) https: Option<HttpsOnTlsPort<A>>,
    /// The port's connection limits.
    pub(crate) admission: Admission,
}

async fn peek_sni(stream: &TcpStream) -> Option<Peeked> {
    let mut buf = vec![0u8; 1024];
    let deadline = Instant::now() + PEEK_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        match parse_client_hello(&buf[..n]) {
            Peeked::NeedMore(want) => {
                // Make room for the whole hello, then give its remaining bytes time to arrive.
                buf.resize(want.clamp(buf.len(), MAX_HELLO), 0);
                if n < want {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            done => return Some(done),
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Serves a TLS listener port until `stop` fires.
pub(crate) async fn tls_loop<A: HttpServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    handle: SnapshotHandle,
    gateway: GatewayName,
    port: u16,
    tls: TlsPort<A>,
    mut stop: watch::Receiver<bool>,
    shutdown: ShutdownWatch,
) {
    let tls = Arc::new(tls);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Some((client, admitted)) = admit(accepted, &tls.admission).await else {
            continue;
        };
        let (handle, gateway, tls, shutdown) = (
            handle.clone(),
            gateway.clone(),
            tls.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _admitted = admitted;
            let sni = match peek_sni(&client).await {
                Some(Peeked::Hello(sni)) => sni,
                _ => return,
            };
            let published = handle.load();
            let route = published
                .snapshot
                .port(&gateway, port)
                .and_then(|p| p.tls_route(sni.as_deref()));
            match route {
                Some((listener, rule)) => {
                    let backend = match rule.choose(fastrand::u64(..)) {
                        Ok(b) => b,
                        Err(why) => return tracing::debug!("TLS {}: {why}", rule.route),
                    };
                    let mut upstream = match connect(backend).await {
                        Ok(u) => u,
                        Err(e) => {
                            return tracing::debug!(
                                "TLS {} to {}: {e}",
                                rule.route,
                                backend.object
                            );
                        }
                    };
                    let mut client = client;
                    if listener.terminate.is_some() {
                        let Some(acceptor) = tls.terminate.load_full() else {
                            return;
                        };
                        let Ok(Ok(mut plain)) =
                            tokio::time::timeout(PEEK_TIMEOUT, acceptor.accept(client)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut plain, &mut upstream).await;
                    } else {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                }
                None => {
                    // No TLSRoute claims this SNI: HTTPS listeners on the port may.
                    let Some((app, acceptor)) = &tls.https else {
                        return;
                    };
                    let Some(acceptor) = acceptor.load_full() else {
                        return;
                    };
                    super::http::serve_http(client, app.load_full(), Some(acceptor), shutdown)
                        .await;
                }
            }
        });
    }
}

/// Serves a UDP listener: one upstream socket per client address, idle sessions expire.
pub(crate) async fn udp_loop(
    socket: UdpSocket,
    handle: SnapshotHandle,
    gateway: GatewayName,
    port: u16,
    mut stop: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let sessions: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r { Ok(r) => r, Err(e) => { tracing::debug!("UDP recv: {e}"); continue } },
            _ = stop.changed() => break,
        };
        let existing = sessions.lock().await.get(&client).cloned();
        let upstream = match existing {
            Some(u) => u,
            None => {
                if sessions.lock().await.len() >= UDP_SESSIONS {
                    continue;
                }
                let published = handle.load();
                let Some(rule) = published
                    .snapshot
                    .port(&gateway, port)
                    .and_then(|p| p.udp_listener())
                    .map(|l| l.rule.clone())
                else {
                    continue;
                };
                let Ok(backend) = rule.choose(fastrand::u64(..)) else {
                    continue;
                };
                let Some(addr) = endpoint(backend) else {
                    continue;
                };
                let Ok(target) = addr.parse::<SocketAddr>() else {
                    continue;
                };
                let bind: SocketAddr = if target.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let Ok(up) = UdpSocket::bind(bind).await else {
                    continue;
                };
                if up.connect(target).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                sessions.lock().await.insert(client, up.clone());
                let (reply_to, up2, sessions2) = (socket.clone(), up.clone(), sessions.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65_536];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, up2.recv(&mut b)).await {
                        let _ = reply_to.send_to(&b[..n], client).await;
                    }
                    sessions2.lock().await.remove(&client);
                });
                up
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}
