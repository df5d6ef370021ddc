// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Idle connections kept for reuse, without a task per connection.
//!
//! loom patch: `pingora_pool::ConnectionPool` spawns a task for every connection released to
//! it, to notice at once when the server closes it, and hands the connection back through a
//! `tokio::sync::Mutex` and a oneshot channel. For every reused connection, that is a task
//! spawned, polled and woken, the requesting task suspended until the idle one let go, a lock,
//! a channel and a reference-counted cell: about 8 % of the CPU a proxied HTTP/1 request costs
//! under load. Here an idle connection is a value in a map. It is checked when it is taken
//! (by the caller: closed by the server, data the server should not have sent) and against its
//! idle timeout; the connections nobody takes are checked by one sweep every
//! [`SWEEP_INTERVAL`], so a connection the server closed is closed here within that interval
//! rather than at once. The sweep runs only while the pool holds connections.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How often the connections nobody took are checked (closed by their server, past their
/// idle timeout).
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Idle<S> {
    stream: S,
    /// Release order: the oldest connection is the one a full pool lets go.
    seq: u64,
    /// When it was released, if anyone asks (an idle timeout or the pool's callback).
    since: Option<Instant>,
    expires: Option<Instant>,
}

struct Inner<S> {
    /// Per group key (`Peer::reuse_hash`), oldest first: a connection is taken from the back,
    /// the most recently used, the least likely to have reached its server's idle timeout.
    by_key: HashMap<u64, VecDeque<Idle<S>>>,
    len: usize,
    seq: u64,
    /// Whether a sweep is scheduled.
    sweeping: bool,
}

/// A connection that left the pool without being reused, to be dropped by the caller (outside
/// the pool's lock), with how long it was idle when that was recorded.
pub(crate) struct Dropped<S> {
    pub(crate) stream: S,
    pub(crate) idle: Option<Duration>,
}

/// What [`IdlePool::put`] did.
pub(crate) struct Put<S> {
    /// The oldest connection, let go because the pool was full.
    pub(crate) evicted: Option<Dropped<S>>,
    /// No sweep was scheduled: the caller schedules one ([`IdlePool::sweep`] after
    /// [`SWEEP_INTERVAL`], again while it returns `true`).
    pub(crate) start_sweep: bool,
}

/// Idle connections by group key, at most `size` in all.
pub(crate) struct IdlePool<S> {
    inner: Mutex<Inner<S>>,
    size: usize,
}

impl<S> IdlePool<S> {
    pub(crate) fn new(size: usize) -> Self {
        IdlePool {
            inner: Mutex::new(Inner {
                by_key: HashMap::new(),
                len: 0,
                seq: 0,
                sweeping: false,
            }),
            size,
        }
    }

    /// Keeps `stream` for reuse under `key`; `since` is when it was released, given when it
    /// has an `idle_timeout` or someone wants to know how long it stayed idle.
    pub(crate) fn put(
        &self,
        key: u64,
        stream: S,
        since: Option<Instant>,
        idle_timeout: Option<Duration>,
    ) -> Put<S> {
        if self.size == 0 {
            return Put {
                evicted: Some(Dropped { stream, idle: None }),
                start_sweep: false,
            };
        }
        let mut inner = self.inner.lock();
        let evicted = if inner.len >= self.size {
            inner.pop_oldest(since)
        } else {
            None
        };
        inner.seq += 1;
        let idle = Idle {
            stream,
            seq: inner.seq,
            since,
            expires: since.zip(idle_timeout).map(|(s, t)| s + t),
        };
        inner.by_key.entry(key).or_default().push_back(idle);
        inner.len += 1;
        let start_sweep = !inner.sweeping;
        inner.sweeping = true;
        Put {
            evicted,
            start_sweep,
        }
    }

    /// The most recently released connection under `key` that is not past its idle timeout,
    /// and those past it, let go on the way (to be dropped outside the lock).
    pub(crate) fn take(&self, key: u64) -> (Option<S>, Vec<Dropped<S>>) {
        let mut expired = Vec::new();
        let mut inner = self.inner.lock();
        let mut now = None;
        let found = loop {
            let Some(idle) = inner.by_key.get_mut(&key).and_then(VecDeque::pop_back) else {
                break None;
            };
            inner.len -= 1;
            match idle.expires {
                Some(at) if at <= *now.get_or_insert_with(Instant::now) => {
                    expired.push(Dropped {
                        stream: idle.stream,
                        idle: idle.since.map(|s| at.saturating_duration_since(s)),
                    });
                }
                _ => break Some(idle.stream),
            }
        };
        // The key's queue stays, even empty: the connection usually comes back after its
        // request. The sweep removes empty queues.
        (found, expired)
    }

    /// Lets go of the connections past their idle timeout at `now` and those `alive` says are
    /// not (closed, or with data nobody asked for). Returns them, to be dropped outside the
    /// lock, and whether another sweep is due: `false` once the pool is empty, until the next
    /// [`put`](Self::put) asks for one.
    pub(crate) fn sweep(
        &self,
        now: Instant,
        mut alive: impl FnMut(&mut S) -> bool,
    ) -> (Vec<Dropped<S>>, bool) {
        let mut dropped = Vec::new();
        let mut inner = self.inner.lock();
        inner.by_key.retain(|_, queue| {
            let mut i = 0;
            while i < queue.len() {
                let idle = &mut queue[i];
                if idle.expires.is_some_and(|at| at <= now) || !alive(&mut idle.stream) {
                    let idle = queue.remove(i).expect("index in range");
                    dropped.push(Dropped {
                        stream: idle.stream,
                        idle: idle.since.map(|s| now.saturating_duration_since(s)),
                    });
                } else {
                    i += 1;
                }
            }
            !queue.is_empty()
        });
        inner.len -= dropped.len();
        let again = inner.len > 0;
        inner.sweeping = again;
        (dropped, again)
    }

    #[cfg(test)]
    fn take_one(&self, key: u64) -> Option<S> {
        self.take(key).0
    }

    /// How many connections are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().len
    }
}

impl<S> Inner<S> {
    /// Removes the connection released first (found among each key's oldest).
    fn pop_oldest(&mut self, now: Option<Instant>) -> Option<Dropped<S>> {
        let key = self
            .by_key
            .iter()
            .filter_map(|(key, queue)| queue.front().map(|idle| (idle.seq, *key)))
            .min()?
            .1;
        let idle = self.by_key.get_mut(&key)?.pop_front()?;
        self.len -= 1;
        Some(Dropped {
            stream: idle.stream,
            idle: idle
                .since
                .zip(now)
                .map(|(since, now)| now.saturating_duration_since(since)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connections let go, in order of their ids (a sweep visits keys in no set order).
    fn ids(dropped: &[Dropped<u32>]) -> Vec<u32> {
        let mut ids: Vec<u32> = dropped.iter().map(|d| d.stream).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_connection_is_taken_under_its_key_only() {
        let pool = IdlePool::new(8);
        assert!(pool.put(1, 10, None, None).evicted.is_none());
        assert_eq!(pool.take_one(2), None);
        assert_eq!(pool.take_one(1), Some(10));
        assert_eq!(pool.take_one(1), None);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn the_most_recently_released_connection_is_taken_first() {
        let pool = IdlePool::new(8);
        for id in [10, 11, 12] {
            pool.put(1, id, None, None);
        }
        assert_eq!(pool.take_one(1), Some(12));
        assert_eq!(pool.take_one(1), Some(11));
        pool.put(1, 13, None, None);
        assert_eq!(pool.take_one(1), Some(13));
        assert_eq!(pool.take_one(1), Some(10));
    }

    #[test]
    fn a_full_pool_lets_go_of_the_oldest_connection_of_any_key() {
        let pool = IdlePool::new(3);
        let t0 = Instant::now();
        pool.put(1, 10, Some(t0), None);
        pool.put(2, 20, Some(t0), None);
        pool.put(1, 11, Some(t0), None);
        let evicted = pool
            .put(2, 21, Some(t0 + Duration::from_secs(2)), None)
            .evicted
            .expect("the pool was full");
        assert_eq!(
            (evicted.stream, evicted.idle),
            (10, Some(Duration::from_secs(2)))
        );
        assert_eq!(pool.len(), 3);
        let evicted = pool.put(3, 30, None, None).evicted.expect("still full");
        assert_eq!(evicted.stream, 20);
        assert_eq!(pool.take_one(1), Some(11));
        assert_eq!(pool.take_one(2), Some(21));
        assert_eq!(pool.take_one(3), Some(30));
    }

    #[test]
    fn a_pool_of_size_zero_keeps_nothing() {
        let pool = IdlePool::new(0);
        let put = pool.put(1, 10, None, None);
        assert_eq!(put.evicted.map(|d| d.stream), Some(10));
        assert!(!put.start_sweep);
        assert_eq!(pool.take_one(1), None);
    }

    #[test]
    fn a_connection_past_its_idle_timeout_is_not_taken() {
        let pool = IdlePool::new(8);
        let long_ago = Instant::now() - Duration::from_secs(60);
        pool.put(1, 10, Some(Instant::now()), Some(Duration::from_secs(60)));
        pool.put(1, 11, Some(long_ago), Some(Duration::from_secs(1)));
        // 11 is the most recent, but expired: it is let go and 10 is taken.
        let (taken, expired) = pool.take(1);
        assert_eq!(taken, Some(10));
        assert_eq!(ids(&expired), vec![11]);
        assert_eq!(expired[0].idle, Some(Duration::from_secs(1)));
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn the_sweep_lets_go_of_closed_and_expired_connections_only() {
        let pool = IdlePool::new(8);
        let t0 = Instant::now();
        pool.put(1, 10, Some(t0), Some(Duration::from_secs(5)));
        pool.put(1, 11, Some(t0), None);
        pool.put(2, 20, Some(t0), None);
        pool.put(2, 21, None, Some(Duration::from_secs(1)));
        // At t0 + 6 s: 10 expired; 20 was closed by its server; 21 has no release time, so no
        // deadline.
        let (dropped, again) = pool.sweep(t0 + Duration::from_secs(6), |id| *id != 20);
        assert_eq!(ids(&dropped), vec![10, 20]);
        for d in &dropped {
            assert_eq!(d.idle, Some(Duration::from_secs(6)));
        }
        assert!(again, "11 and 21 are still kept");
        assert_eq!(pool.take_one(1), Some(11));
        assert_eq!(pool.take_one(2), Some(21));
    }

    #[test]
    fn sweeps_stop_when_the_pool_is_empty_and_the_next_put_starts_them_again() {
        let pool = IdlePool::new(8);
        assert!(pool.put(1, 10, None, None).start_sweep);
        assert!(!pool.put(1, 11, None, None).start_sweep, "one is scheduled");
        let (dropped, again) = pool.sweep(Instant::now(), |_| false);
        assert_eq!(ids(&dropped), vec![10, 11]);
        assert!(!again);
        assert!(pool.put(1, 12, None, None).start_sweep);
    }

    #[test]
    fn a_sweep_removes_the_queues_of_keys_left_empty() {
        let pool = IdlePool::new(8);
        pool.put(1, 10, None, None);
        pool.put(2, 20, None, None);
        assert_eq!(pool.take_one(1), Some(10));
        let (dropped, again) = pool.sweep(Instant::now(), |_| true);
        assert!(dropped.is_empty() && again);
        assert_eq!(pool.inner.lock().by_key.len(), 1);
    }
}
