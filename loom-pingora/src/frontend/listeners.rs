//! Listeners that follow the configuration. Pingora cannot add listeners to a running server,
//! so Loom runs its own accept loops in a background service: a publish that adds a Gateway port
//! starts one, a publish that removes it stops accepting there (open connections finish), and
//! unchanged ports are left alone. TLS settings of a port are rebuilt only when its
//! certificates or client validation change, and its client limits (ClientTrafficPolicy) are
//! swapped in place when they change: the socket stays open, connections accepted from then on
//! get the new limits.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use async_trait::async_trait;
use loom_core::snapshot::{GatewayName, PortListeners, PortSnapshot, UdpListeners};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::Acceptor;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::server::configuration::ServerConf;
use pingora::services::background::BackgroundService;
use pingora::tls::TlsAcceptor;
use tokio::sync::{Semaphore, watch};

use super::ClientLimits;
use super::admission::{self, Admission};
use super::http::{Apps, CurrentApps, accept_loop, bind};
use super::{l4, quic, tls};
use crate::handle::{ListenFailure, Listening, SnapshotHandle};
use crate::pipeline::{LoomProxy, Shared};

/// How often a socket that could not be opened is tried again.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// Starts and stops accept loops as the published configuration changes.
pub struct ListenerManager {
    handle: SnapshotHandle,
    conf: Arc<ServerConf>,
    default_bind: IpAddr,
    /// What every listener's proxy shares.
    shared: Arc<Shared>,
    /// Client limits where no ClientTrafficPolicy sets them (the flags).
    defaults: ClientLimits,
    /// Connections every listener together may hold (from the file-descriptor limit).
    process_connections: Arc<Semaphore>,
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
    /// HTTP/3 (QUIC on UDP), with the fingerprint of its TLS material.
    Http3(u64),
}

impl PortKind {
    fn same_listener(self, other: PortKind) -> bool {
        use PortKind::*;
        match (self, other) {
            (Http, Http)
            | (Https(_), Https(_))
            | (Tcp, Tcp)
            | (Udp, Udp)
            | (Http3(_), Http3(_)) => true,
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
    /// The QUIC endpoint of an HTTP/3 port (its TLS is swapped in place) and its client
    /// limits.
    quic: Option<(quinn::Endpoint, Arc<quic::Limits>)>,
    /// The client limits it applies: the defaults with the port's ClientTrafficPolicy.
    client: ClientLimits,
    /// Its connection limit (TCP sockets).
    admission: Option<Admission>,
    /// Its HTTP applications (sockets with HTTP or HTTPS listeners).
    apps: Option<CurrentApps<HttpProxy<LoomProxy>>>,
}

impl ListenerManager {
    /// A manager. Every reconcile reports the sockets it could not open to
    /// [`SnapshotHandle::listening`].
    pub fn new(
        shared: Arc<Shared>,
        conf: Arc<ServerConf>,
        default_bind: IpAddr,
        defaults: ClientLimits,
    ) -> Self {
        ListenerManager {
            handle: shared.handle.clone(),
            conf,
            default_bind,
            shared,
            defaults,
            process_connections: Arc::new(Semaphore::new(admission::this_process_budget())),
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
                match &p.udp {
                    Some(UdpListeners::L4(_)) => kinds.push((true, PortKind::Udp)),
                    Some(UdpListeners::Http3(_)) => {
                        kinds.push((true, PortKind::Http3(http3_fingerprint(p))))
                    }
                    None => {}
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

    fn proxy(&self, w: &Wanted, h2c: bool, client: &ClientLimits) -> Arc<HttpProxy<LoomProxy>> {
        let tls = matches!(
            w.kind,
            PortKind::Https(_) | PortKind::Tls { .. } | PortKind::Http3(_)
        );
        let mut proxy = LoomProxy::new(self.shared.clone(), w.gateway.clone(), w.port, tls);
        if let PortKind::Http3(_) = w.kind {
            proxy = proxy.over_quic();
        }
        let mut app = HttpProxy::new(proxy, self.conf.clone());
        let mut options = HttpServerOptions::default();
        // Only connections that already sent the HTTP/2 preface get to the h2c app (see
        // `starts_with_h2_preface`): Pingora's own check blocks on requests shorter than the
        // preface and runs again for every request of a keep-alive connection.
        options.h2c = h2c;
        options.h2_idle_timeout = Some(client.h2_idle());
        app.server_options = Some(options);
        app.handle_init_modules();
        Arc::new(app)
    }

    fn apps(&self, w: &Wanted, client: &ClientLimits) -> Apps<HttpProxy<LoomProxy>> {
        let cleartext = matches!(w.kind, PortKind::Http);
        Apps {
            http: self.proxy(w, false, client),
            h2c: cleartext.then(|| self.proxy(w, true, client)),
            head: client.head,
        }
    }

    /// A QUIC endpoint for the HTTP/3 listeners of `port`, bound to `addr`.
    fn quic_endpoint(
        addr: SocketAddr,
        port: &PortSnapshot,
        client: &ClientLimits,
    ) -> std::io::Result<quinn::Endpoint> {
        let config = tls::quic_config(port)
            .and_then(|c| quic::server_config(c, client.head.idle))
            .map_err(std::io::Error::other)?;
        quinn::Endpoint::server(config, addr)
    }

    fn current_apps(&self, w: &Wanted, client: &ClientLimits) -> CurrentApps<HttpProxy<LoomProxy>> {
        Arc::new(ArcSwap::from_pointee(self.apps(w, client)))
    }

    /// Applies new client limits to a running listener: connections accepted from now on get
    /// them; open ones keep theirs.
    fn change_client(&self, addr: SocketAddr, r: &mut Running, client: ClientLimits) {
        let Some(admission) = &r.admission else {
            // UDP: no client connections to limit.
            r.client = client;
            return;
        };
        admission.set_limit(client.max_connections_per_listener);
        if let Some(apps) = &r.apps {
            let next = if client.h2_idle() == r.client.h2_idle() {
                // The proxies depend on the idle timeout alone (HTTP/2's is one of their
                // options): keep them, and their backend connection pools.
                let now = apps.load_full();
                Apps {
                    http: now.http.clone(),
                    h2c: now.h2c.clone(),
                    head: client.head,
                }
            } else {
                self.apps(&r.wanted, &client)
            };
            apps.store(Arc::new(next));
        }
        tracing::info!(
            "listener {addr} ({}/{}): client limits now {client:?}",
            r.wanted.gateway.namespace,
            r.wanted.gateway.name
        );
        r.client = client;
    }

    /// Loads the TLS material of a port into the running listener's slots.
    fn load_tls(w: &Wanted, port: &PortSnapshot, r: &Running) -> Result<(), String> {
        if let PortKind::Http3(_) = w.kind {
            let config =
                tls::quic_config(port).and_then(|c| quic::server_config(c, r.client.head.idle))?;
            if let Some((endpoint, _)) = &r.quic {
                endpoint.set_server_config(Some(config));
            }
            return Ok(());
        }
        let https = match w.kind {
            PortKind::Https(_) | PortKind::Tls { https: Some(_), .. } => {
                Some(tls::settings_for_port(port))
            }
            _ => None,
        };
        if let Some(settings) = https {
            r.https.store(Some(Arc::new(settings?.build())));
        }
        if let PortKind::Tls { .. } = w.kind
            && let Some(c) = tls::terminate_config(port)?
        {
            r.terminate.store(Some(Arc::new(TlsAcceptor::from(c))));
        }
        Ok(())
    }

    /// Opens and closes sockets to match the published configuration; returns whether every
    /// socket it asks for is open. `retry`: a retry of sockets that could not be opened (no new
    /// publish): metrics stay as they are and failures are logged at debug level only.
    async fn reconcile(
        &self,
        running: &mut HashMap<SocketKey, Running>,
        shutdown: &ShutdownWatch,
        retry: bool,
    ) -> bool {
        let published = self.handle.load();
        if !retry {
            self.shared.metrics.published(&published);
            self.shared.health.sync(&published);
        }
        // A failure is an error the first time, and quiet while it is retried.
        let report = |message: std::fmt::Arguments<'_>| {
            if retry {
                tracing::debug!("{message}");
            } else {
                tracing::error!("{message}");
            }
        };
        let wanted = self.wanted(&published);
        let mut failed = vec![];
        running.retain(|key, r| {
            let keep = wanted.get(key).is_some_and(|(w, _)| {
                w.gateway == r.wanted.gateway && w.kind.same_listener(r.wanted.kind)
            });
            if !keep {
                tracing::info!(
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
            let client = self.defaults.with_policy(port.client.as_ref());
            let failure = |error: String| ListenFailure {
                gateway: w.gateway.clone(),
                port: w.port,
                address: addr,
                udp,
                error,
            };
            if let Some(r) = running.get_mut(&key) {
                if r.wanted.kind != w.kind {
                    match Self::load_tls(&w, port, r) {
                        Ok(()) => r.wanted = w.clone(),
                        Err(e) => {
                            report(format_args!("listener {addr}: {e}"));
                            failed.push(failure(e));
                        }
                    }
                }
                if r.client != client {
                    self.change_client(addr, r, client);
                    if let Some((_, limits)) = &r.quic {
                        // QUIC: the connection cap and head deadline at once, the idle timeout
                        // in the server configuration new connections get.
                        limits.set(client.max_connections_per_listener, client.head.head);
                        if let Err(e) = Self::load_tls(&w, port, r) {
                            report(format_args!("listener {addr}: {e}"));
                        }
                    }
                }
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let mut r = Running {
                wanted: w.clone(),
                stop,
                https: Arc::default(),
                terminate: Arc::default(),
                quic: None,
                client,
                admission: None,
                apps: None,
            };
            if let Err(e) = Self::load_tls(&w, port, &r) {
                report(format_args!("listener {addr}: {e}"));
                failed.push(failure(e));
                continue;
            }
            let bound = if let PortKind::Http3(_) = w.kind {
                Self::quic_endpoint(addr, port, &client).map(|endpoint| {
                    let limits = Arc::new(quic::Limits::new(
                        client.max_connections_per_listener,
                        client.head.head,
                    ));
                    r.quic = Some((endpoint.clone(), limits.clone()));
                    tokio::spawn(quic::quic_loop(
                        endpoint,
                        self.proxy(&w, false, &client),
                        limits,
                        stopped,
                        shutdown.clone(),
                    ));
                })
            } else if udp {
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
                let admission = Admission::new(
                    self.process_connections.clone(),
                    client.max_connections_per_listener,
                );
                r.admission = Some(admission.clone());
                bind(addr).map(|listener| match w.kind {
                    PortKind::Http | PortKind::Https(_) => {
                        let apps = self.current_apps(&w, &client);
                        r.apps = Some(apps.clone());
                        tokio::spawn(accept_loop(
                            listener,
                            apps,
                            r.https.clone(),
                            admission,
                            stopped,
                            shutdown.clone(),
                        ));
                    }
                    PortKind::Tls { https, .. } => {
                        r.apps = https.map(|_| self.current_apps(&w, &client));
                        let tls_port = l4::TlsPort {
                            terminate: r.terminate.clone(),
                            https: r.apps.clone().map(|apps| (apps, r.https.clone())),
                            admission,
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
                    PortKind::Tcp | PortKind::Udp | PortKind::Http3(_) => {
                        tokio::spawn(l4::tcp_loop(
                            listener,
                            self.handle.clone(),
                            w.gateway.clone(),
                            w.port,
                            admission,
                            stopped,
                        ));
                    }
                })
            };
            match bound {
                Ok(()) => {
                    tracing::info!(
                        "listener {addr} {:?} ({}/{}) started",
                        w.kind,
                        w.gateway.namespace,
                        w.gateway.name
                    );
                    running.insert(key, r);
                }
                Err(e) => {
                    report(format_args!(
                        "listener {addr} ({}/{}): {e}; retrying every {BIND_RETRY:?}",
                        w.gateway.namespace, w.gateway.name
                    ));
                    failed.push(failure(e.to_string()));
                }
            }
        }
        let all_bound = failed.is_empty();
        self.handle.report_listening(Listening {
            generation: published.generation,
            failed,
        });
        all_bound
    }
}

#[async_trait]
impl BackgroundService for ListenerManager {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut changes = self.handle.subscribe();
        let mut running = HashMap::new();
        let mut retry = false;
        loop {
            let all_bound = self.reconcile(&mut running, &shutdown, retry).await;
            // Sockets that could not be opened (the address in use, say) are tried again.
            let retry_later = async {
                if all_bound {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(BIND_RETRY).await;
            };
            retry = tokio::select! {
                changed = changes.changed() => if changed.is_err() { break } else { false },
                _ = retry_later => true,
                _ = shutdown.changed() => {
                    // Draining: the listeners keep accepting until the grace period ends (a
                    // load balancer may still send new connections while it learns that
                    // /readyz fails), and every request from now on is answered with
                    // `Connection: close`. The runtime's shutdown ends the accept loops.
                    tracing::info!("shutting down: draining connections until the grace period ends");
                    std::future::pending::<()>().await;
                    false
                }
            };
        }
        for r in running.values() {
            r.stop.send_replace(true);
        }
    }
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

fn http3_fingerprint(port: &PortSnapshot) -> u64 {
    let mut h = DefaultHasher::new();
    for l in port.http3_listeners() {
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
