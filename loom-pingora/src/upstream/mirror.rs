//! Request mirroring: fire-and-forget copies of a request's head to a mirror backend.
//!
//! Bounded (at most [`MAX_IN_FLIGHT`] copies at once; beyond that copies are dropped and
//! counted), time-limited, and never awaited by the primary request. Bodies are not mirrored:
//! a mirrored request carries the head only, with `Content-Length: 0`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loom_core::snapshot::BackendTarget;
use pingora::http::RequestHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Copies in flight at most.
pub const MAX_IN_FLIGHT: usize = 256;
const DEADLINE: Duration = Duration::from_secs(5);

/// The mirror sender shared by all proxies.
pub struct Mirrors {
    slots: Arc<Semaphore>,
    /// Copies dropped because [`MAX_IN_FLIGHT`] were in flight.
    pub dropped: AtomicU64,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Mirrors {
    /// Sends a copy of the request head to one endpoint of the backend, in the background.
    pub fn send(
        &self,
        backend: &Arc<BackendTarget>,
        original: &RequestHeader,
        path_and_query: &str,
    ) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if backend.endpoints.is_empty() {
            return;
        }
        let endpoint = backend.endpoints[fastrand::usize(..backend.endpoints.len())].clone();
        let mut head = format!("{} {} HTTP/1.1\r\n", original.method, path_and_query);
        for (name, value) in &original.headers {
            if matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "upgrade"
            ) {
                continue;
            }
            if let Ok(v) = value.to_str() {
                head.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
        tokio::spawn(async move {
            let _permit = permit;
            let exchange = async {
                let mut stream = tokio::net::TcpStream::connect(endpoint.as_str()).await?;
                stream.write_all(head.as_bytes()).await?;
                let mut sink = [0u8; 4096];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            };
            if let Err(e) = tokio::time::timeout(DEADLINE, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "mirror deadline",
                    ))
                })
            {
                tracing::debug!("mirror to {endpoint}: {e}");
            }
        });
    }
}
