//! Listeners that follow the configuration. Pingora cannot add listeners to a running server,
//! so Loom runs its own accept loops in a background service: a publish that adds a Gateway port
//! starts one, a publish that removes it stops accepting there (open connections finish), and
//! unchanged ports are left alone. TLS settings of a port are rebuilt only when its
//! certificates or client validation change.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use loom_core::snapshot::{GatewayName, PortListeners, PortSnapshot};
use pingora::apps::{HttpServerOptions, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::GetSocketDigest;
use pingora::protocols::SocketDigest;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::server::configuration::ServerConf;
use pingora::services::background::BackgroundService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::buffered::Buffered;
use crate::handle::SnapshotHandle;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::proxy::LoomProxy;
use crate::{l4, tls};
use pingora::tls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts and stops accept loops as the published configuration changes.
pub struct ListenerManager {
    handle: SnapshotHandle,
    conf: Arc<ServerConf>,
    default_bind: IpAddr,
    metrics: Arc<Metrics>,
    mirrors: Arc<Mirrors>,
    /// Passive health, shared by every HTTP listener.
    health: Arc<crate::health::Health>,
    ready: Arc<AtomicBool>,
}

/// What a socket serves. A change of kind restarts the listener; a change of TLS material
/// (the fingerprints) swaps acceptors in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortKind {
    Http,
    Https(u64),
    /// TLS listeners (SNI routing), optionally with HTTPS listeners on the same port.
    Tls {
        terminate: u64,
        https: Option<u64>,
    },
    Tcp,
    Udp,
}

impl PortKind {
    fn same_listener(self, other: PortKind) -> bool {
        use PortKind::*;
        match (self, other) {
            (Http, Http) | (Https(_), Https(_)) | (Tcp, Tcp) | (Udp, Udp) => true,
            (Tls { https: a, .. }, Tls { https: b, .. }) => a.is_some() == b.is_some(),
            _ => false,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Wanted {
    gateway: GatewayName,
    port: u16,
    kind: PortKind,
}

/// A listening socket: the address and whether it is UDP.
type SocketKey = (SocketAddr, bool);

struct Running {
    wanted: Wanted,
    stop: watch::Sender<bool>,
    /// HTTPS listeners' TLS (pingora acceptor).
    https: Arc<ArcSwapOption<Acceptor>>,
    /// Terminating TLSRoute listeners' TLS.
    terminate: Arc<ArcSwapOption<TlsAcceptor>>,
}

impl ListenerManager {
    /// A manager; `ready` turns true once the first configuration's listeners are bound.
    pub fn new(
        handle: SnapshotHandle,
        conf: Arc<ServerConf>,
        default_bind: IpAddr,
        metrics: Arc<Metrics>,
        mirrors: Arc<Mirrors>,
        ready: Arc<AtomicBool>,
    ) -> Self {
        ListenerManager {
            handle,
            conf,
            default_bind,
            metrics,
            mirrors,
            health: Arc::default(),
            ready,
        }
    }

    fn wanted<'p>(
        &self,
        published: &'p crate::handle::Published,
    ) -> BTreeMap<SocketKey, (Wanted, &'p PortSnapshot)> {
        let mut out = BTreeMap::new();
        for (name, g) in &published.snapshot.gateways {
            let mut ips: Vec<IpAddr> = g
                .addresses
                .iter()
                .filter(|a| a.type_ == "IPAddress")
                .filter_map(|a| a.value.parse().ok())
                .collect();
            if ips.is_empty() {
                ips.push(self.default_bind);
            }
            for (port, p) in &g.ports {
                let mut kinds = vec![];
                match &p.listeners {
                    Some(PortListeners::Tls { https, tls }) => {
                        let https = (!https.is_empty()).then(|| https_fingerprint(p));
                        kinds.push((
                            false,
                            match https {
                                Some(f) if tls.is_empty() => PortKind::Https(f),
                                https => PortKind::Tls {
                                    terminate: terminate_fingerprint(p),
                                    https,
                                },
                            },
                        ));
                    }
                    Some(PortListeners::Http(_)) => kinds.push((false, PortKind::Http)),
                    Some(PortListeners::Tcp(_)) => kinds.push((false, PortKind::Tcp)),
                    None => {}
                }
                if p.udp.is_some() {
                    kinds.push((true, PortKind::Udp));
                }
                for ip in &ips {
                    for (udp, kind) in &kinds {
                        let w = Wanted {
                            gateway: name.clone(),
                            port: *port,
                            kind: *kind,
                        };
                        out.insert((SocketAddr::new(*ip, *port), *udp), (w, p));
                    }
                }
            }
        }
        out
    }

    fn proxy(&self, w: &Wanted, h2c: bool) -> Arc<HttpProxy<LoomProxy>> {
        let tls = matches!(w.kind, PortKind::Https(_) | PortKind::Tls { .. });
        let proxy = LoomProxy::new(
            self.handle.clone(),
            w.gateway.clone(),
            w.port,
            tls,
            self.metrics.clone(),
            self.mirrors.clone(),
            self.health.clone(),
        );
        let mut app = HttpProxy::new(proxy, self.conf.clone());
        if h2c {
            // Only connections that already sent the HTTP/2 preface get here (see
            // `starts_with_h2_preface`): Pingora's own check blocks on requests shorter than
            // the preface and runs again for every request of a keep-alive connection.
            let mut options = HttpServerOptions::default();
            options.h2c = true;
            app.server_options = Some(options);
        }
        app.handle_init_modules();
        Arc::new(app)
    }

    fn apps(&self, w: &Wanted) -> Apps<HttpProxy<LoomProxy>> {
        let cleartext = matches!(w.kind, PortKind::Http);
        Apps {
            http: self.proxy(w, false),
            h2c: cleartext.then(|| self.proxy(w, true)),
        }
    }

    /// Loads the TLS material of a port into the running listener's slots.
    fn load_tls(addr: SocketAddr, w: &Wanted, port: &PortSnapshot, r: &Running) -> bool {
        let https = match w.kind {
            PortKind::Https(_) | PortKind::Tls { https: Some(_), .. } => {
                Some(tls::settings_for_port(port))
            }
            _ => None,
        };
        match https {
            Some(Ok(s)) => r.https.store(Some(Arc::new(s.build()))),
            Some(Err(e)) => {
                log::error!("listener {addr}: {e}");
                return false;
            }
            None => {}
        }
        if let PortKind::Tls { .. } = w.kind {
            match tls::terminate_config(port) {
                Ok(Some(c)) => r.terminate.store(Some(Arc::new(TlsAcceptor::from(c)))),
                Ok(None) => {}
                Err(e) => {
                    log::error!("listener {addr}: {e}");
                    return false;
                }
            }
        }
        true
    }

    async fn reconcile(&self, running: &mut HashMap<SocketKey, Running>, shutdown: &ShutdownWatch) {
        let published = self.handle.load();
        self.metrics.published(&published);
        let wanted = self.wanted(&published);
        running.retain(|key, r| {
            let keep = wanted.get(key).is_some_and(|(w, _)| {
                w.gateway == r.wanted.gateway && w.kind.same_listener(r.wanted.kind)
            });
            if !keep {
                log::info!(
                    "listener {:?} ({}/{}) stopped",
                    key,
                    r.wanted.gateway.namespace,
                    r.wanted.gateway.name
                );
                r.stop.send_replace(true);
            }
            keep
        });
        for (key, (w, port)) in wanted {
            let (addr, udp) = key;
            if let Some(r) = running.get_mut(&key) {
                if r.wanted.kind != w.kind && Self::load_tls(addr, &w, port, r) {
                    r.wanted = w;
                }
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let r = Running {
                wanted: w.clone(),
                stop,
                https: Arc::default(),
                terminate: Arc::default(),
            };
            if !Self::load_tls(addr, &w, port, &r) {
                continue;
            }
            let bound = if udp {
                tokio::net::UdpSocket::bind(addr).await.map(|s| {
                    tokio::spawn(l4::udp_loop(
                        s,
                        self.handle.clone(),
                        w.gateway.clone(),
                        w.port,
                        stopped,
                    ));
                })
            } else {
                bind(addr).map(|listener| match w.kind {
                    PortKind::Http | PortKind::Https(_) => {
                        tokio::spawn(accept_loop(
                            listener,
                            Arc::new(self.apps(&w)),
                            r.https.clone(),
                            stopped,
                            shutdown.clone(),
                        ));
                    }
                    PortKind::Tls { https, .. } => {
                        let tls_port = l4::TlsPort {
                            terminate: r.terminate.clone(),
                            https: https.map(|_| (Arc::new(self.apps(&w)), r.https.clone())),
                        };
                        let (h, g, p) = (self.handle.clone(), w.gateway.clone(), w.port);
                        tokio::spawn(l4::tls_loop(
                            listener,
                            h,
                            g,
                            p,
                            tls_port,
                            stopped,
                            shutdown.clone(),
                        ));
                    }
                    PortKind::Tcp | PortKind::Udp => {
                        tokio::spawn(l4::tcp_loop(
                            listener,
                            self.handle.clone(),
                            w.gateway.clone(),
                            w.port,
                            stopped,
                        ));
                    }
                })
            };
            match bound {
                Ok(()) => {
                    log::info!(
                        "listener {addr} {:?} ({}/{}) started",
                        w.kind,
                        w.gateway.namespace,
                        w.gateway.name
                    );
                    running.insert(key, r);
                }
                Err(e) => log::error!(
                    "listener {addr} ({}/{}): {e}",
                    w.gateway.namespace,
                    w.gateway.name
                ),
            }
        }
        if published.generation > 0 {
            self.ready.store(true, Ordering::Release);
        }
    }
}

#[async_trait]
impl BackgroundService for ListenerManager {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut changes = self.handle.subscribe();
        let mut running = HashMap::new();
        loop {
            self.reconcile(&mut running, &shutdown).await;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for r in running.values() {
            r.stop.send_replace(true);
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn https_fingerprint(port: &PortSnapshot) -> u64 {
    let mut h = DefaultHasher::new();
    for l in port.http_listeners() {
        l.hostname.hash(&mut h);
        if let Some(t) = &l.tls {
            hash_tls(t, &mut h);
        }
    }
    h.finish()
}

fn terminate_fingerprint(port: &PortSnapshot) -> u64 {
    let mut h = DefaultHasher::new();
    for l in port.tls_listeners() {
        l.hostname.hash(&mut h);
        if let Some(t) = &l.terminate {
            hash_tls(t, &mut h);
        }
    }
    h.finish()
}

fn hash_tls(t: &loom_core::snapshot::ServerTls, h: &mut DefaultHasher) {
    for c in &t.certificates {
        c.cert_pem.hash(h);
        c.key_pem.hash(h);
    }
    if let Some(v) = &t.client_validation {
        v.ca_pem.hash(h);
        v.allow_insecure_fallback.hash(h);
    }
}

/// The HTTP applications of a port: HTTP/1 (and HTTP/2 over TLS, by ALPN), and for cleartext
/// ports HTTP/2 with prior knowledge.
pub(crate) struct Apps<A> {
    http: Arc<A>,
    h2c: Option<Arc<A>>,
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

async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
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
