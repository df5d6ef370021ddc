//! The admin listener: `/metrics`, `/healthz`, `/readyz` and `/config` (the active snapshot
//! and status as JSON).

use std::sync::Arc;

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
