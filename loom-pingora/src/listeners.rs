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
use loom_core::snapshot::{GatewayName, PortSnapshot};
use pingora::apps::ServerApp;
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

use crate::handle::SnapshotHandle;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::proxy::LoomProxy;
use crate::tls;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts and stops accept loops as the published configuration changes.
pub struct ListenerManager {
    handle: SnapshotHandle,
    conf: Arc<ServerConf>,
    default_bind: IpAddr,
    metrics: Arc<Metrics>,
    mirrors: Arc<Mirrors>,
    ready: Arc<AtomicBool>,
}

#[derive(Clone, PartialEq, Eq)]
struct Wanted {
    gateway: GatewayName,
    port: u16,
    tls: Option<u64>,
}

struct Running {
    wanted: Wanted,
    stop: watch::Sender<bool>,
    acceptor: Arc<ArcSwapOption<Acceptor>>,
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
            ready,
        }
    }

    fn wanted<'p>(
        &self,
        published: &'p crate::handle::Published,
    ) -> BTreeMap<SocketAddr, (Wanted, &'p PortSnapshot)> {
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
                if p.http.is_empty() {
                    continue; // TLS passthrough, TCP and UDP listeners: not served yet
                }
                let tls = p
                    .http
                    .iter()
                    .any(|l| l.tls.is_some())
                    .then(|| tls_fingerprint(p));
                for ip in &ips {
                    let w = Wanted {
                        gateway: name.clone(),
                        port: *port,
                        tls,
                    };
                    out.insert(SocketAddr::new(*ip, *port), (w, p));
                }
            }
        }
        out
    }

    async fn reconcile(
        &self,
        running: &mut HashMap<SocketAddr, Running>,
        shutdown: &ShutdownWatch,
    ) {
        let published = self.handle.load();
        self.metrics.published(&published);
        let wanted = self.wanted(&published);
        running.retain(|addr, r| {
            let keep = wanted.get(addr).is_some_and(|(w, _)| {
                w.gateway == r.wanted.gateway && w.tls.is_some() == r.wanted.tls.is_some()
            });
            if !keep {
                log::info!(
                    "listener {addr} ({}/{}) stopped",
                    r.wanted.gateway.namespace,
                    r.wanted.gateway.name
                );
                r.stop.send_replace(true);
            }
            keep
        });
        for (addr, (w, port)) in wanted {
            if let Some(r) = running.get_mut(&addr) {
                if r.wanted.tls != w.tls {
                    match tls::settings_for_port(port) {
                        Ok(s) => r.acceptor.store(Some(Arc::new(s.build()))),
                        Err(e) => {
                            log::error!("listener {addr}: keeping the previous certificates: {e}")
                        }
                    }
                    r.wanted = w;
                }
                continue;
            }
            let acceptor = Arc::new(ArcSwapOption::empty());
            if w.tls.is_some() {
                match tls::settings_for_port(port) {
                    Ok(s) => acceptor.store(Some(Arc::new(s.build()))),
                    Err(e) => {
                        log::error!("listener {addr}: {e}");
                        continue;
                    }
                }
            }
            let listener = match bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    log::error!(
                        "listener {addr} ({}/{}): {e}",
                        w.gateway.namespace,
                        w.gateway.name
                    );
                    continue;
                }
            };
            let proxy = LoomProxy::new(
                self.handle.clone(),
                w.gateway.clone(),
                w.port,
                w.tls.is_some(),
                self.metrics.clone(),
                self.mirrors.clone(),
            );
            let mut app = HttpProxy::new(proxy, self.conf.clone());
            app.handle_init_modules();
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(accept_loop(
                listener,
                Arc::new(app),
                acceptor.clone(),
                stopped,
                shutdown.clone(),
            ));
            log::info!(
                "listener {addr} ({}/{}) started{}",
                w.gateway.namespace,
                w.gateway.name,
                if w.tls.is_some() { " with TLS" } else { "" }
            );
            running.insert(
                addr,
                Running {
                    wanted: w,
                    stop,
                    acceptor,
                },
            );
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

fn tls_fingerprint(port: &PortSnapshot) -> u64 {
    let mut h = DefaultHasher::new();
    for l in &port.http {
        l.hostname.hash(&mut h);
        if let Some(t) = &l.tls {
            for c in &t.certificates {
                c.cert_pem.hash(&mut h);
                c.key_pem.hash(&mut h);
            }
            if let Some(v) = &t.client_validation {
                v.ca_pem.hash(&mut h);
                v.allow_insecure_fallback.hash(&mut h);
            }
        }
    }
    h.finish()
}

async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    app: Arc<A>,
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
        let app = app.clone();
        let acceptor = acceptor.load_full();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut l4 = L4Stream::from(tcp);
            let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
            l4.set_socket_digest(digest);
            let stream: Stream = match acceptor {
                None => Box::new(l4),
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.tls_handshake(l4)).await
                {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => {
                        log::debug!("TLS handshake: {e}");
                        return;
                    }
                    Err(_) => return,
                },
            };
            let mut next = app.process_new(stream, &shutdown).await;
            while let Some(s) = next {
                next = app.process_new(s, &shutdown).await;
            }
        });
    }
}
