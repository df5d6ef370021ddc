//! Rate limits counted in this replica. Each bucket is one GCRA state (loom-core's
//! [`gcra`](loom_core::policy::gcra)): an atomic for a bucket all requests share, or one per
//! client in a bounded table (the least recently seen client is forgotten first, so a flood
//! of keys costs bounded memory). A reload keeps every bucket whose name and limit did not
//! change.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use loom_core::policy::gcra::{self, Quota, Tat, Verdict};
use loom_core::snapshot::{ClientKey, RateLimit, Slot};
use lru::LruCache;

use crate::handle::Published;

/// One bucket's state.
#[derive(Debug)]
enum State {
    /// All requests count together.
    Shared(AtomicU64),
    /// One state per client, at most `max` clients, by a keyed hash of the client's key (a
    /// client sending 60 KB keys costs 8 bytes; the hash key is random per process, so clients
    /// cannot pick colliding keys).
    PerClient {
        clients: Mutex<LruCache<u64, Tat>>,
        hasher: std::collections::hash_map::RandomState,
        max: NonZeroUsize,
    },
}

/// A token bucket (or one per client) with its limit.
#[derive(Debug)]
pub struct Bucket {
    quota: Quota,
    state: State,
    /// Its name in the rate-limit headers (`policy/slot`) and its `RateLimit-Policy` value,
    /// made once rather than per request.
    pub name: Box<str>,
    /// `"<name>";q=<burst>;w=<seconds to refill>`.
    pub policy_header: http::HeaderValue,
}

impl Bucket {
    /// An empty bucket (full, every client's) for `quota`, one per client with `key`; `name`
    /// is how the rate-limit headers call it.
    pub fn new(quota: Quota, key: Option<&ClientKey>, name: String) -> Self {
        let state = match key {
            None => State::Shared(AtomicU64::new(0)),
            Some(k) => State::PerClient {
                // Unbounded, trimmed by hand: `LruCache::new` would allocate all `max` slots.
                clients: Mutex::new(LruCache::unbounded()),
                hasher: std::collections::hash_map::RandomState::new(),
                max: NonZeroUsize::new(k.max_keys() as usize).unwrap_or(NonZeroUsize::MIN),
            },
        };
        let policy_header = crate::pipeline::ratelimit::policy_header(&name, &quota);
        Bucket {
            quota,
            state,
            name: name.into(),
            policy_header,
        }
    }

    /// Counts one request at `now` (from `client`, for per-client buckets).
    pub fn check(&self, client: &[u8], now: Duration) -> Verdict {
        match &self.state {
            State::Shared(tat) => {
                let mut current = tat.load(Ordering::Relaxed);
                loop {
                    let (verdict, next) = gcra::check(&self.quota, Tat(current), now);
                    if !verdict.is_allowed() {
                        return verdict;
                    }
                    match tat.compare_exchange_weak(
                        current,
                        next.0,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return verdict,
                        Err(actual) => current = actual,
                    }
                }
            }
            State::PerClient {
                clients,
                hasher,
                max,
            } => {
                let client = hasher.hash_one(client);
                let mut clients = clients.lock().unwrap_or_else(|p| p.into_inner());
                let tat = clients.get(&client).copied().unwrap_or_default();
                let (verdict, next) = gcra::check(&self.quota, tat, now);
                if verdict.is_allowed() {
                    if let Some(t) = clients.get_mut(&client) {
                        *t = next;
                    } else {
                        clients.put(client, next);
                        while clients.len() > max.get() {
                            clients.pop_lru();
                        }
                    }
                }
                verdict
            }
        }
    }

    /// Clients tracked (1 for a shared bucket).
    pub fn clients(&self) -> usize {
        match &self.state {
            State::Shared(_) => 1,
            State::PerClient { clients, .. } => {
                clients.lock().unwrap_or_else(|p| p.into_inner()).len()
            }
        }
    }
}

/// The buckets of one [`RateLimit`]: `default` and one per rule (`None` for global limits,
/// which live in Redis).
#[derive(Debug)]
pub struct RouteBuckets {
    default: Option<Arc<Bucket>>,
    rules: Vec<Option<Arc<Bucket>>>,
}

impl RouteBuckets {
    /// The bucket of a slot.
    pub fn bucket(&self, slot: Slot) -> Option<&Arc<Bucket>> {
        match slot {
            Slot::Default => self.default.as_ref(),
            Slot::Rule(i) => self.rules.get(i).and_then(Option::as_ref),
        }
    }
}

/// What makes a bucket the same one across reloads.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Identity {
    name: String,
    quota: Quota,
    key: Option<ClientKey>,
}

#[derive(Default)]
struct Table {
    generation: u64,
    routes: Vec<Arc<RouteBuckets>>,
    by_identity: HashMap<Identity, Arc<Bucket>>,
}

/// Every local bucket of the published configuration.
#[derive(Default)]
pub struct RateLimiters {
    table: ArcSwap<Table>,
    rebuild: Mutex<()>,
}

impl RateLimiters {
    /// The buckets of `limit` (its [`RateLimit::id`] in `published`).
    pub fn buckets(&self, published: &Published, limit: &RateLimit) -> Option<Arc<RouteBuckets>> {
        let table = self.table.load();
        if table.generation == published.generation {
            return table.routes.get(limit.id).cloned();
        }
        drop(table);
        self.rebuilt(published).routes.get(limit.id).cloned()
    }

    /// The table for `published`, built from the current one (once, whoever asks first).
    fn rebuilt(&self, published: &Published) -> Arc<Table> {
        let _one = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.table.load_full();
        if old.generation == published.generation {
            return old;
        }
        let mut by_identity = HashMap::new();
        let mut bucket = |limit: &RateLimit, slot: Slot, quota: Option<Quota>| {
            let quota = quota?;
            if limit.global.is_some() {
                return None;
            }
            let identity = Identity {
                name: limit.bucket_name(slot),
                quota,
                key: limit.key.clone(),
            };
            let b = old.by_identity.get(&identity).cloned().unwrap_or_else(|| {
                let name = format!("{}/{slot}", limit.policy.name);
                Arc::new(Bucket::new(quota, limit.key.as_ref(), name))
            });
            by_identity.insert(identity, b.clone());
            Some(b)
        };
        let routes = published
            .snapshot
            .rate_limits
            .iter()
            .map(|l| {
                Arc::new(RouteBuckets {
                    default: bucket(l, Slot::Default, l.default),
                    rules: (0..l.rules.len())
                        .map(|i| bucket(l, Slot::Rule(i), Some(l.rules[i].quota)))
                        .collect(),
                })
            })
            .collect();
        let table = Arc::new(Table {
            generation: published.generation,
            routes,
            by_identity,
        });
        // Never replace a newer table with an older one (a request holding an old snapshot).
        if published.generation > old.generation {
            self.table.store(table.clone());
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn keyed(max_keys: u32) -> Bucket {
        Bucket::new(
            Quota::new(1, 2).unwrap(),
            Some(&ClientKey::ClientAddress { max_keys }),
            "p/default".into(),
        )
    }

    #[test]
    fn a_shared_bucket_allows_its_burst_then_limits() {
        let b = Bucket::new(Quota::new(10, 3).unwrap(), None, "p/default".into());
        let now = Duration::from_secs(100);
        let allowed = (0..10).filter(|_| b.check(b"", now).is_allowed()).count();
        assert_eq!(allowed, 3);
        assert!(b.check(b"", now + 100 * MS).is_allowed());
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let b = keyed(10);
        let now = Duration::from_secs(100);
        assert!(b.check(b"a", now).is_allowed());
        assert!(b.check(b"a", now).is_allowed());
        assert!(!b.check(b"a", now).is_allowed());
        assert!(b.check(b"b", now).is_allowed());
    }

    #[test]
    fn the_client_table_keeps_at_most_max_keys_dropping_the_least_recent() {
        let b = keyed(3);
        let now = Duration::from_secs(100);
        for k in [b"a", b"b", b"c"] {
            assert!(b.check(k, now).is_allowed());
            assert!(b.check(k, now).is_allowed());
        }
        assert!(!b.check(b"a", now).is_allowed());
        // A fourth client pushes out the least recently seen one ("b": "a" was just seen).
        assert!(b.check(b"d", now).is_allowed());
        assert_eq!(b.clients(), 3);
        assert!(
            b.check(b"b", now).is_allowed(),
            "b was forgotten: a full bucket again"
        );
        assert!(!b.check(b"a", now).is_allowed());
        for i in 0..1000u32 {
            b.check(&i.to_be_bytes(), now);
        }
        assert_eq!(b.clients(), 3);
    }
}
