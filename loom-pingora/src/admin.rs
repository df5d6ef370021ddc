//! The admin listener: `/metrics`, `/healthz`, `/readyz` and `/config` (the active snapshot
//! and status as JSON).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::Response;
use loom_core::snapshot::describe;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::handle::SnapshotHandle;
use crate::metrics::Metrics;

/// The admin HTTP application.
pub(crate) struct Admin {
    pub(crate) handle: SnapshotHandle,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ready: Arc<AtomicBool>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => reply(200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => reply(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.ready.load(Ordering::Acquire) => {
                reply(200, "text/plain", b"ready\n".to_vec())
            }
            "/readyz" => reply(503, "text/plain", b"no configuration served yet\n".to_vec()),
            "/config" => {
                let p = self.handle.load();
                let status: serde_json::Map<String, serde_json::Value> = p
                    .status
                    .objects
                    .iter()
                    .map(|(k, s)| (k.to_string(), serde_json::to_value(s).unwrap_or_default()))
                    .collect();
                let body = serde_json::json!({
                    "generation": p.generation,
                    "snapshot": describe(&p.snapshot),
                    "status": status,
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
