//! How long an HTTP/1 client may take to send a request head.
//!
//! Pingora restarts its read timeout on every byte and waits forever between keep-alive
//! requests, so a client that trickles a head one byte at a time, or keeps an idle connection,
//! holds a connection (and a file descriptor) as long as it likes. Loom's HTTP/1 loop arms a
//! [`HeadClock`] whenever it waits for a request head; the pipeline disarms it once the head is
//! read. While armed:
//!
//! - before the first byte of the head arrives, the connection may stay idle for `idle` (the
//!   keep-alive idle timeout; for a connection's first request, `head` from accept);
//! - once the first byte has arrived, the whole head must arrive within `head` of it.
//!
//! An expired clock closes the connection without an answer, as nginx and Envoy do for a
//! client that sent no complete request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The time limits of reading a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// From the first byte of a request head to its end; for a connection's first request,
    /// from accept.
    pub head: Duration,
    /// Between keep-alive requests.
    pub idle: Duration,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            head: Duration::from_secs(15),
            idle: Duration::from_secs(60),
        }
    }
}

/// When a wait for a request head that began at `armed_at` ends, given when its first byte
/// arrived (`None`: not yet). `first` is a connection's first request.
pub(crate) fn deadline(
    limits: HeadLimits,
    armed_at: Instant,
    first_byte: Option<Instant>,
    first: bool,
) -> Instant {
    match first_byte {
        Some(t) if !first => t + limits.head,
        // A connection's first head counts from accept, whenever its first byte came.
        _ if first => armed_at + limits.head,
        _ => armed_at + limits.idle,
    }
}

/// Shared by a connection's read side (which notes the first byte), its HTTP/1 loop (which
/// arms it and waits for it to expire) and the pipeline (which disarms it).
///
/// Arming, disarming and noting bytes are a few atomic stores: nothing is woken, no timer is
/// set per request. That works because no deadline is ever sooner than `head` after the wait
/// began (`head` ≤ `idle`), so [`HeadClock::expired`] may look again only every `head` while
/// disarmed and sleep to the deadline once it sees the clock armed: it is never late.
#[derive(Debug)]
pub(crate) struct HeadClock {
    base: Instant,
    /// Nanoseconds after `base` when it was armed, plus one; 0 when disarmed.
    armed_at: AtomicU64,
    /// Nanoseconds after `base` of the first byte since it was armed, plus one; 0: none yet.
    first_byte: AtomicU64,
    /// Armed for the connection's first request.
    first: AtomicBool,
}

impl HeadClock {
    /// A clock armed for a connection's first request, accepted at `accepted`.
    pub(crate) fn new(accepted: Instant) -> Self {
        let clock = HeadClock {
            base: accepted,
            armed_at: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            first: AtomicBool::new(true),
        };
        clock
            .armed_at
            .store(clock.encode(accepted), Ordering::Release);
        clock
    }

    fn encode(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn decode(&self, v: u64) -> Option<Instant> {
        (v > 0).then(|| self.base + Duration::from_nanos(v - 1))
    }

    /// Starts waiting at `now` for the head of a request after the first.
    pub(crate) fn arm(&self, now: Instant) {
        self.first.store(false, Ordering::Relaxed);
        self.first_byte.store(0, Ordering::Release);
        self.armed_at.store(self.encode(now), Ordering::Release);
    }

    /// The head has been read.
    pub(crate) fn disarm(&self) {
        self.armed_at.store(0, Ordering::Release);
    }

    /// Bytes arrived at `now` (called on every read: two atomic loads when nothing changes).
    pub(crate) fn saw_bytes(&self, now: impl FnOnce() -> Instant) {
        if self.armed_at.load(Ordering::Acquire) != 0
            && self.first_byte.load(Ordering::Acquire) == 0
        {
            let _ = self.first_byte.compare_exchange(
                0,
                self.encode(now()),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// How long, at `now`, it has waited for a request head of which no byte has come yet;
    /// `None` while a head is being read or handled.
    pub(crate) fn waited_without_bytes(&self, now: Instant) -> Option<Duration> {
        if self.first_byte.load(Ordering::Acquire) != 0 {
            return None;
        }
        let armed_at = self.decode(self.armed_at.load(Ordering::Acquire))?;
        Some(now.saturating_duration_since(armed_at))
    }

    /// When the current wait ends, if the clock is armed.
    fn current_deadline(&self, limits: HeadLimits) -> Option<Instant> {
        let armed_at = self.decode(self.armed_at.load(Ordering::Acquire))?;
        let first_byte = self.decode(self.first_byte.load(Ordering::Acquire));
        let first = self.first.load(Ordering::Relaxed);
        Some(deadline(limits, armed_at, first_byte, first))
    }

    /// Returns when the clock expires: armed, and past its [`deadline`]. One such future
    /// serves a connection's whole life.
    pub(crate) async fn expired(&self, limits: HeadLimits) {
        let limits = HeadLimits {
            head: limits.head,
            idle: limits.idle.max(limits.head),
        };
        loop {
            match self.current_deadline(limits) {
                Some(until) if Instant::now() >= until => return,
                Some(until) => tokio::time::sleep_until(until).await,
                // A wait that begins from now on ends no sooner than `head` from now.
                None => tokio::time::sleep(limits.head).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        head: Duration::from_secs(15),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn an_idle_keep_alive_connection_gets_the_idle_timeout() {
        let t0 = Instant::now();
        assert_eq!(deadline(LIMITS, t0, None, false), t0 + LIMITS.idle);
    }

    #[test]
    fn a_started_head_must_end_within_the_head_timeout_of_its_first_byte() {
        let t0 = Instant::now();
        let first_byte = t0 + Duration::from_secs(50);
        assert_eq!(
            deadline(LIMITS, t0, Some(first_byte), false),
            first_byte + LIMITS.head
        );
    }

    #[test]
    fn a_connections_first_head_counts_from_accept() {
        let t0 = Instant::now();
        assert_eq!(deadline(LIMITS, t0, None, true), t0 + LIMITS.head);
        let late = t0 + Duration::from_secs(10);
        assert_eq!(deadline(LIMITS, t0, Some(late), true), t0 + LIMITS.head);
    }

    #[test]
    fn only_a_wait_without_bytes_counts_as_idle() {
        let t0 = Instant::now();
        let clock = HeadClock::new(t0);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            clock.waited_without_bytes(later),
            Some(Duration::from_secs(2))
        );
        clock.saw_bytes(|| t0 + Duration::from_secs(1));
        assert_eq!(
            clock.waited_without_bytes(later),
            None,
            "a head is arriving"
        );
        clock.disarm();
        assert_eq!(
            clock.waited_without_bytes(later),
            None,
            "a request is handled"
        );
        clock.arm(later);
        assert_eq!(
            clock.waited_without_bytes(later + Duration::from_millis(300)),
            Some(Duration::from_millis(300))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_clock_expires_head_after_accept() {
        let accepted = Instant::now();
        let clock = HeadClock::new(accepted);
        clock.expired(LIMITS).await;
        assert_eq!(Instant::now() - accepted, LIMITS.head);
    }

    #[tokio::test(start_paused = true)]
    async fn an_armed_clock_expires_and_a_disarmed_one_does_not() {
        let clock = HeadClock::new(Instant::now());
        clock.disarm();
        let waiting = tokio::time::timeout(Duration::from_secs(3600), clock.expired(LIMITS));
        assert!(waiting.await.is_err(), "a disarmed clock expired");
        let armed = Instant::now();
        clock.arm(armed);
        clock.expired(LIMITS).await;
        assert_eq!(Instant::now() - armed, LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_moves_the_deadline_to_the_head_timeout() {
        let clock = HeadClock::new(Instant::now());
        clock.arm(Instant::now());
        tokio::time::sleep(Duration::from_secs(30)).await;
        let first_byte = Instant::now();
        clock.saw_bytes(Instant::now);
        clock.expired(LIMITS).await;
        assert_eq!(Instant::now() - first_byte, LIMITS.head);
    }

    #[tokio::test(start_paused = true)]
    async fn one_future_follows_the_clock_across_requests_and_is_never_late() {
        let clock = std::sync::Arc::new(HeadClock::new(Instant::now()));
        let watcher = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.expired(LIMITS).await })
        };
        // Requests come and go, the clock armed and disarmed while the future sleeps.
        for _ in 0..10 {
            clock.disarm();
            tokio::time::sleep(Duration::from_secs(7)).await;
            clock.arm(Instant::now());
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        assert!(!watcher.is_finished());
        // The last wait: its first byte now, then nothing more.
        let first_byte = Instant::now();
        clock.saw_bytes(Instant::now);
        watcher.await.unwrap();
        assert_eq!(Instant::now() - first_byte, LIMITS.head);
    }
}
