//! DNS names of backend endpoints (Loom `Backend`s may name hosts), resolved without blocking
//! a worker thread and cached: an answer is used for [`TTL`]; after that the stale answer is
//! still used while one refresh runs in the background, so only the very first request to a
//! name waits for DNS. A failed lookup is remembered for [`FAILED_TTL`], so requests to a name
//! that does not resolve fail at once instead of each starting a lookup.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long an answer is used before it is refreshed.
pub(crate) const TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered.
pub(crate) const FAILED_TTL: Duration = Duration::from_secs(5);
/// How long a lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Names kept at most (a Backend rarely names many).
const MAX_NAMES: usize = 4096;

struct Answer {
    /// Empty: the lookup failed (with `error`).
    addrs: Vec<SocketAddr>,
    error: Option<String>,
    at: Instant,
    refreshing: AtomicBool,
}

/// The cache of resolved endpoint names, keyed by `host:port`.
#[derive(Default)]
pub struct Resolver {
    answers: Arc<RwLock<HashMap<String, Arc<Answer>>>>,
}

async fn lookup(name: &str) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(name))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "DNS lookup timed out"))??
            .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses"));
    }
    Ok(addrs)
}

impl Resolver {
    fn store(answers: &RwLock<HashMap<String, Arc<Answer>>>, name: String, addrs: Vec<SocketAddr>) {
        let mut answers = answers.write().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= MAX_NAMES && !answers.contains_key(&name) {
            answers.clear();
        }
        let answer = Answer {
            addrs,
            error: None,
            at: Instant::now(),
            refreshing: AtomicBool::new(false),
        };
        answers.insert(name, Arc::new(answer));
    }

    /// An address of `host:port` (`random` picks among several).
    pub(crate) async fn resolve(
        &self,
        host: &str,
        port: u16,
        random: usize,
    ) -> io::Result<SocketAddr> {
        let name = format!("{host}:{port}");
        let cached = self
            .answers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned();
        if let Some(answer) = cached.as_ref().filter(|a| a.error.is_some()) {
            if answer.at.elapsed() < FAILED_TTL {
                let error = answer.error.clone().unwrap_or_default();
                return Err(io::Error::new(io::ErrorKind::NotFound, error));
            }
        } else if let Some(answer) = cached {
            if answer.at.elapsed() > TTL && !answer.refreshing.swap(true, Ordering::AcqRel) {
                let (answers, name, stale) = (self.answers.clone(), name.clone(), answer.clone());
                tokio::spawn(async move {
                    match lookup(&name).await {
                        Ok(addrs) => Self::store(&answers, name, addrs),
                        Err(e) => {
                            tracing::warn!("DNS {name}: {e}; the last answer is used");
                            stale.refreshing.store(false, Ordering::Release);
                        }
                    }
                });
            }
            return Ok(answer.addrs[random % answer.addrs.len()]);
        }
        match lookup(&name).await {
            Ok(addrs) => {
                let addr = addrs[random % addrs.len()];
                Self::store(&self.answers, name, addrs);
                Ok(addr)
            }
            Err(e) => {
                let failed = Answer {
                    addrs: vec![],
                    error: Some(e.to_string()),
                    at: Instant::now(),
                    refreshing: AtomicBool::new(false),
                };
                let mut answers = self.answers.write().unwrap_or_else(|p| p.into_inner());
                if answers.len() < MAX_NAMES {
                    answers.insert(name, Arc::new(failed));
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_and_is_cached() {
        let r = Resolver::default();
        let addr = r.resolve("localhost", 8080, 0).await.unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 8080);
        assert!(r.answers.read().unwrap().contains_key("localhost:8080"));
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error_remembered_for_a_while() {
        let r = Resolver::default();
        assert!(r.resolve("no-such-host.invalid", 80, 0).await.is_err());
        let failed = r.answers.read().unwrap()["no-such-host.invalid:80"].clone();
        assert!(failed.addrs.is_empty() && failed.error.is_some());
        // Answered from memory.
        assert!(r.resolve("no-such-host.invalid", 80, 0).await.is_err());
    }
}
