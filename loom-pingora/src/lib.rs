//! # loom-pingora
//!
//! Loom's data plane: serves the snapshots that `loom-core` compiles, on Cloudflare's Pingora.
//!
//! ```text
//!  SnapshotHandle::publish(compiled) ──► ArcSwap<Published> ──► LoomProxy (per request: load once)
//!                                   └──► watch ──► ListenerManager (start/stop accept loops)
//! ```
//!
//! A reload is one atomic store; a request uses the snapshot it loaded for its whole life, so no
//! request fails because of a reload.
//!
//! Modules by role:
//!
//! ```text
//! frontend   sockets: listeners that follow the snapshot, accept loops, TLS, L4 routes
//! pipeline   the ProxyHttp phases every HTTP request goes through, whatever its frontend
//! upstream   the backend side: endpoint choice, passive health, backend TLS, mirrors
//! handle     the published snapshot (one ArcSwap) and its change notifications
//! metrics    Prometheus metrics; admin: /metrics /healthz /readyz /config
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
pub mod frontend;
pub mod handle;
pub mod metrics;
pub mod pipeline;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use handle::{Published, SnapshotHandle};
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

/// How the data plane runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where Gateways without an IPAddress in `spec.addresses` listen.
    pub default_bind: IpAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`, `/config`).
    pub admin: Option<SocketAddr>,
    /// Worker threads.
    pub threads: usize,
    /// Seconds to let requests in flight finish on SIGTERM.
    pub grace_period_seconds: u64,
    /// What a client may hold (request head and idle deadlines, connections).
    pub client: frontend::ClientLimits,
    /// Backend timeouts where a route sets none.
    pub backend: upstream::peer::BackendTimeouts,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            default_bind: IpAddr::from([0, 0, 0, 0]),
            admin: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            grace_period_seconds: 5,
            client: frontend::ClientLimits::default(),
            backend: upstream::peer::BackendTimeouts::default(),
        }
    }
}

/// Builds a Pingora server that serves whatever is published on `handle`. Run it with
/// `run_forever()` (it owns the process and handles SIGTERM/SIGINT).
pub fn server(handle: SnapshotHandle, options: &ServeOptions) -> Server {
    let conf = ServerConf {
        threads: options.threads,
        grace_period_seconds: Some(options.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(options.grace_period_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();
    let metrics = metrics::Metrics::new();
    let shared = Arc::new(pipeline::Shared {
        handle: handle.clone(),
        metrics: metrics.clone(),
        mirrors: Arc::default(),
        health: Arc::default(),
        backend: options.backend,
    });
    let manager = frontend::listeners::ListenerManager::new(
        shared,
        conf,
        options.default_bind,
        options.client,
    );
    // Loom's accept loops run on this service's runtime, so it gets the worker threads.
    let mut listeners = background_service("listeners", manager);
    listeners.threads = Some(options.threads);
    server.add_service(listeners);
    if let Some(addr) = options.admin {
        let mut admin = Service::new("admin".into(), admin::Admin { handle, metrics });
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    }
    server
}
