//! The admin listener: `/metrics`, `/healthz`, `/readyz` and `/config` (the active snapshot
//! and status as JSON, and the outlier state of backends).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::Response;
use loom_core::snapshot::describe;
use pingora::apps::ServerApp;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::handle::SnapshotHandle;
use crate::metrics::Metrics;
use crate::upstream::health::Health;

/// The admin HTTP application.
pub(crate) struct Admin {
    pub(crate) handle: SnapshotHandle,
    pub(crate) metrics: Arc<Metrics>,
    /// Outlier state, shown in `/config`.
    pub(crate) health: Arc<Health>,
    /// Set once shutdown began: /readyz answers 503 from then on.
    pub(crate) draining: AtomicBool,
}

/// The admin listener: its own accept loop, so that it keeps answering (/readyz with 503)
/// through the whole shutdown grace period instead of closing when shutdown begins, as a
/// Pingora listening service would.
pub(crate) struct AdminService {
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    admin: Arc<Admin>,
}

impl AdminService {
    /// Binds `addr` now, so that an admin address in use is an error at startup.
    pub(crate) fn bind(addr: SocketAddr, admin: Admin) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(AdminService {
            listener: std::sync::Mutex::new(Some(listener)),
            admin: Arc::new(admin),
        })
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.listener.lock().ok().and_then(|mut l| l.take());
        let Some(listener) = taken.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) else {
            return tracing::error!("admin listener: could not start");
        };
        // Admin connections never see the shutdown: they are answered until the end.
        let (_keep, never) = tokio::sync::watch::channel(false);
        let mut draining = false;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed(), if !draining => {
                    draining = true;
                    self.admin.draining.store(true, Ordering::Release);
                    continue;
                }
            };
            match accepted {
                Ok((tcp, _)) => {
                    let (admin, never) = (self.admin.clone(), never.clone());
                    tokio::spawn(async move {
                        let stream: Stream = Box::new(L4Stream::from(tcp));
                        admin.process_new(stream, &never).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("admin accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

impl Admin {
    /// 200 once the published configuration is served: every listener it asks for is open.
    fn readyz(&self) -> Response<Vec<u8>> {
        if self.draining.load(Ordering::Acquire) {
            return reply(503, "text/plain", b"draining: shutting down\n".to_vec());
        }
        let generation = self.handle.load().generation;
        let listening = self.handle.listening().borrow().clone();
        if listening.all_bound(generation) {
            return reply(200, "text/plain", b"ready\n".to_vec());
        }
        let mut why = if generation == 0 {
            "no configuration served yet\n".to_owned()
        } else if listening.generation != generation {
            format!("configuration {generation} is being applied\n")
        } else {
            String::new()
        };
        for f in &listening.failed {
            why.push_str(&format!(
                "listener {}/{} port {} not open: {f}\n",
                f.gateway.namespace, f.gateway.name, f.port
            ));
        }
        reply(503, "text/plain", why.into_bytes())
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => reply(200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => reply(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => self.readyz(),
            "/config" => {
                let p = self.handle.load();
                let status: serde_json::Map<String, serde_json::Value> = (p.status.load())
                    .objects
                    .iter()
                    .map(|(k, s)| (k.to_string(), serde_json::to_value(s).unwrap_or_default()))
                    .collect();
                let body = serde_json::json!({
                    "generation": p.generation,
                    "snapshot": describe(&p.snapshot),
                    "status": status,
                    "outliers": self.health.describe(),
                });
                reply(
                    200,
                    "application/json",
                    serde_json::to_vec_pretty(&body).unwrap_or_default(),
                )
            }
            _ => reply(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
