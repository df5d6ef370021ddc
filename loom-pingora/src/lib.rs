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
pub mod plugin;
pub mod policy;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use handle::{Published, SnapshotHandle, StatusToCome};
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;

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
    /// Proxies in front of Loom whose `X-Forwarded-For`, `-Proto` and `-Host` are kept
    /// (0: those a client sends are replaced).
    pub trusted_hops: usize,
    /// Where global rate limits are counted (RateLimitPolicy `spec.global`); `None`: such
    /// policies are not accepted.
    pub redis: Option<policy::global::RedisSettings>,
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
            trusted_hops: 0,
            redis: None,
        }
    }
}

/// Builds a Pingora server that serves whatever is published on `handle`. Run it with
/// `run_forever()` (it owns the process and handles SIGTERM/SIGINT: `/readyz` turns 503, the
/// listeners drain for `grace_period_seconds`, then the process exits). Fails when the admin
/// address cannot be bound.
pub fn server(handle: SnapshotHandle, options: &ServeOptions) -> std::io::Result<Server> {
    let conf = ServerConf {
        threads: options.threads,
        grace_period_seconds: Some(options.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(options.grace_period_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();
    let shared = Arc::new(pipeline::Shared::new(handle.clone(), options)?);
    let metrics = shared.metrics.clone();
    let health = shared.health.clone();
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
        let admin = admin::Admin {
            handle,
            metrics,
            health,
            draining: AtomicBool::new(false),
        };
        let admin = admin::AdminService::bind(addr, admin)
            .map_err(|e| std::io::Error::new(e.kind(), format!("admin listener {addr}: {e}")))?;
        server.add_service(background_service("admin", admin));
    }
    Ok(server)
}
