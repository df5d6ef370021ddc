//! Global rate limits: one GCRA bucket per key, shared by every replica through Redis.
//!
//! ```text
//!  check(key, rps, burst) ──► backoff gate ──► timeout(EVALSHA gcra) ──► Redis (TIME, GET, SET PX)
//!                              │ (unhealthy: fail fast, one probe per backoff period)
//!                              └──► Err(Unavailable)
//! ```
//!
//! The arithmetic is loom-core's `policy::gcra::check` (the local limiter's), in microseconds,
//! run atomically in one Lua script on Redis' own clock: replicas with skewed clocks agree, and a
//! request sees the same numbers either way.
//! Every check is bounded by [`RedisSettings::timeout`]; after a refused or broken connection,
//! or [`TIMEOUTS_TO_OPEN`] timeouts in a row (one slow reply fails only its own check), checks
//! fail at once (without touching the network) for a backoff that starts at 100 ms and doubles
//! to 2 s, and one check per backoff period probes Redis. The caller decides whether an error lets the
//! request through (failOpen) or refuses it (failClosed).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, Script, ServerErrorKind};
use tokio::sync::OnceCell;

/// GCRA in integer microseconds (exact in Lua's doubles below 2^53, i.e. for centuries).
///
/// KEYS[1]: the bucket. ARGV[1]: emission interval T. ARGV[2]: tolerance τ = burst·T.
/// Returns `{1, remaining, reset}` when allowed, `{0, retry_after, reset}` when limited. A
/// stored TAT beyond now + τ is taken as now + τ, so retry_after ≤ T and reset ≤ τ always.
const GCRA_LUA: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = now
local stored = redis.pcall('GET', KEYS[1])
if type(stored) == 'string' then
  tat = tonumber(stored) or now
  if tat ~= tat then tat = now end
end
-- Never owe more than a full bucket (a lowered burst, or a value we did not write).
if tat > now + tau then tat = now + tau end
local new_tat = math.max(tat, now) + interval
local used = new_tat - now
if used <= tau then
  local ttl = math.ceil(tau / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl))
  return {1, math.floor((tau - used) / interval), used}
end
return {0, used - tau, math.max(tat - now, 0)}
"#;

/// The first wait after a failure before a check probes Redis again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Timeouts in a row that make checks fail fast: a single slow reply (a Redis fork for a
/// snapshot, a lost packet) fails its own check, not every check for the next 100 ms.
const TIMEOUTS_TO_OPEN: u32 = 3;
/// The longest wait between probes while Redis is down.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where the shared limits live, and how long one check may take.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// The most one check may take, connecting included.
    pub timeout: Duration,
}

impl RedisSettings {
    /// The default bound on one check.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

    /// Settings for `url` with the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for RedisSettings {
    /// Shows the URL without its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Everything before the last '@' may be credentials (even unencoded ones with '/').
        let url = match (scheme(&self.url), self.url.rsplit_once('@')) {
            (_, None) => self.url.clone(),
            (Some(scheme), Some((_, host))) => format!("{scheme}://***@{host}"),
            (None, Some((_, host))) => format!("***@{host}"),
        };
        f.debug_struct("RedisSettings")
            .field("url", &url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why [`RedisSettings`] are unusable.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    /// The URL is not `redis://…` (the message never repeats the URL: it may hold a password).
    #[error("unsupported redis URL scheme {0:?}: use redis://host[:port][/db]")]
    UnsupportedScheme(String),
    /// `rediss://` asks for TLS, which this build leaves out.
    #[error("rediss:// (TLS to Redis) is not supported by this build: use redis://")]
    TlsUnsupported,
    /// The URL does not parse as a Redis URL.
    #[error("invalid redis URL: {0}")]
    InvalidUrl(String),
    /// A zero timeout would fail every check.
    #[error("the redis timeout must be greater than zero")]
    ZeroTimeout,
}

/// Why a check has no verdict; the caller applies failOpen or failClosed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobalError {
    /// Redis did not answer within the timeout.
    #[error("redis check timed out after {0:?}")]
    TimedOut(Duration),
    /// A recent check failed; this one was refused without touching the network.
    #[error("redis unavailable after a recent failure; not retried until the next probe")]
    Unavailable,
    /// No connection to Redis (refused, dropped, authentication failed, …).
    #[error("redis unreachable: {0}")]
    Unreachable(String),
    /// Redis answered with an error or an unexpected reply.
    #[error("redis script error: {0}")]
    Script(String),
}

/// What Redis decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalVerdict {
    /// The request fits in the bucket.
    Allowed {
        /// Requests that would still be allowed right now.
        remaining: u32,
        /// Until the bucket is full again.
        reset: Duration,
    },
    /// The bucket is empty; nothing was counted.
    Limited {
        /// Until one more request would be allowed.
        retry_after: Duration,
        /// Until the bucket is full again.
        reset: Duration,
    },
}

/// A handle to the shared limits; cheap to clone, shared by every listener.
#[derive(Clone)]
pub struct GlobalLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
    script: Script,
    /// `host:port` for logs (the URL may hold a password).
    target: String,
    /// Made on first use; replaced after a timeout or a READONLY reply, so a silent
    /// (blackholed) connection or one to a demoted primary is not kept forever.
    conn: RwLock<Arc<OnceCell<ConnectionManager>>>,
    healthy: AtomicBool,
    /// Timeouts since the last answer, while healthy.
    timeouts_in_a_row: AtomicU32,
    health: Mutex<Health>,
}

/// Outage bookkeeping, touched only while unhealthy or on a transition.
struct Health {
    backoff: Duration,
    next_probe: Instant,
    down_since: Instant,
}

impl std::fmt::Debug for GlobalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalLimiter")
            .field("target", &self.inner.target)
            .field("timeout", &self.inner.timeout)
            .field("healthy", &self.healthy())
            .finish()
    }
}

impl GlobalLimiter {
    /// Parses the URL; does not connect: the connection is made in the background, on first
    /// use, and re-made after failures.
    pub fn new(settings: RedisSettings) -> Result<Self, RedisConfigError> {
        if settings.timeout.is_zero() {
            return Err(RedisConfigError::ZeroTimeout);
        }
        match scheme(&settings.url)
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            Some("redis") => {}
            Some("rediss") => return Err(RedisConfigError::TlsUnsupported),
            Some(other) => return Err(RedisConfigError::UnsupportedScheme(other.to_owned())),
            None => {
                let expected = "expected redis://host[:port][/db]";
                return Err(RedisConfigError::InvalidUrl(expected.to_owned()));
            }
        }
        let client = Client::open(settings.url.as_str())
            .map_err(|e| RedisConfigError::InvalidUrl(e.to_string()))?;
        let target = client.get_connection_info().addr().to_string();
        // Our own timeout bounds every check; the library's (longer) ones only end what runs
        // on without a caller: a reconnect in the background, a reply nobody awaits any more.
        // One connect attempt per reconnect: the probes below pace the retries.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(settings.timeout.max(Duration::from_millis(500))))
            .set_number_of_retries(0);
        let now = Instant::now();
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                timeout: settings.timeout,
                script: Script::new(GCRA_LUA),
                target,
                conn: RwLock::new(Arc::new(OnceCell::new())),
                healthy: AtomicBool::new(true),
                timeouts_in_a_row: AtomicU32::new(0),
                health: Mutex::new(Health {
                    backoff: BACKOFF_MIN,
                    next_probe: now,
                    down_since: now,
                }),
            }),
        })
    }

    /// Counts one request against the bucket `key`: GCRA with `requests_per_second` refill
    /// (0 counts as 1) and `burst` capacity (0 limits everything), atomically in Redis.
    pub async fn check(
        &self,
        key: &str,
        requests_per_second: u32,
        burst: u32,
    ) -> Result<GlobalVerdict, GlobalError> {
        let probe = self.admit()?;
        let interval = interval_micros(requests_per_second);
        let tau = u64::from(burst) * interval;
        let cell = self.connection();
        let result =
            match tokio::time::timeout(self.inner.timeout, self.eval(&cell, key, interval, tau))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(GlobalError::TimedOut(self.inner.timeout)),
            };
        if matches!(result, Err(GlobalError::TimedOut(_))) {
            self.replace_connection(&cell);
        }
        self.record(&result, probe);
        result
    }

    /// Whether the last check that went to Redis got a verdict (true before the first check).
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Lets a check through, and says whether it is the probe of an outage.
    fn admit(&self) -> Result<bool, GlobalError> {
        if self.healthy() {
            return Ok(false);
        }
        let mut health = self.health();
        let now = Instant::now();
        if now < health.next_probe {
            return Err(GlobalError::Unavailable);
        }
        // Claim this period's probe: others fail fast until it reports.
        health.next_probe = now + health.backoff;
        Ok(true)
    }

    /// Updates health after a check; logs only transitions.
    fn record(&self, result: &Result<GlobalVerdict, GlobalError>, probe: bool) {
        let inner = &self.inner;
        match result {
            Ok(_) => {
                if inner.timeouts_in_a_row.load(Ordering::Relaxed) != 0 {
                    inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
                }
                if !inner.healthy.load(Ordering::Relaxed) {
                    let mut health = self.health();
                    if !inner.healthy.swap(true, Ordering::Relaxed) {
                        health.backoff = BACKOFF_MIN;
                        tracing::info!(
                            "global rate limits: redis at {} answers again after {:?}",
                            inner.target,
                            health.down_since.elapsed()
                        );
                    }
                }
            }
            Err(GlobalError::Unavailable) => {}
            Err(GlobalError::TimedOut(_))
                if !probe
                    && inner.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1
                        < TIMEOUTS_TO_OPEN =>
            {
                tracing::debug!("global rate limits: redis at {} was slow", inner.target);
            }
            Err(err) => {
                inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
                let mut health = self.health();
                let now = Instant::now();
                if inner.healthy.swap(false, Ordering::Relaxed) {
                    health.backoff = BACKOFF_MIN;
                    health.next_probe = now + BACKOFF_MIN;
                    health.down_since = now;
                    tracing::warn!(
                        "global rate limits: redis at {} failed ({err}); checks fail fast and \
                         probe again every {BACKOFF_MIN:?} to {BACKOFF_MAX:?} until it answers",
                        inner.target
                    );
                } else if probe {
                    health.backoff = (health.backoff * 2).min(BACKOFF_MAX);
                    health.next_probe = now + health.backoff;
                }
            }
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn connection(&self) -> Arc<OnceCell<ConnectionManager>> {
        let conn = self
            .inner
            .conn
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&conn)
    }

    /// Drops `stale` so the next check connects afresh (unless another check already did).
    fn replace_connection(&self, stale: &Arc<OnceCell<ConnectionManager>>) {
        let mut conn = self
            .inner
            .conn
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if Arc::ptr_eq(&conn, stale) {
            *conn = Arc::new(OnceCell::new());
        }
    }

    async fn eval(
        &self,
        cell: &Arc<OnceCell<ConnectionManager>>,
        key: &str,
        interval: u64,
        tau: u64,
    ) -> Result<GlobalVerdict, GlobalError> {
        let inner = &self.inner;
        let manager = cell
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(inner.client.clone(), inner.config.clone())
            })
            .await
            .map_err(|e| classify(&e, inner.timeout))?;
        let mut conn = manager.clone();
        let mut invocation = inner.script.key(key);
        invocation.arg(interval).arg(tau);
        let mut reply = invocation.invoke_async::<Vec<i64>>(&mut conn).await;
        // A dead connection fails at once and makes the manager reconnect: try once more on
        // the new one (still within the timeout), so a restarted Redis costs no failed check.
        if let Err(e) = &reply
            && (e.is_io_error() || e.is_unrecoverable_error())
            && !e.is_timeout()
        {
            reply = invocation.invoke_async(&mut conn).await;
        }
        let reply = reply.map_err(|e| {
            if matches!(
                e.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
            ) {
                // A replica (the primary was demoted in a failover): the address may lead to
                // the new primary if we connect again.
                self.replace_connection(cell);
            }
            classify(&e, inner.timeout)
        })?;
        verdict(&reply)
    }
}

/// The emission interval T: 1 s / `requests_per_second` in microseconds, rounded up (as the
/// local limiter does in nanoseconds) so the enforced rate never exceeds the quota; 0 counts as 1.
fn interval_micros(requests_per_second: u32) -> u64 {
    1_000_000u64.div_ceil(u64::from(requests_per_second.max(1)))
}

/// The URL's scheme, if it has a well-formed one (anything else may be part of a password).
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let well_formed = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    well_formed.then_some(scheme)
}

/// Turns the script's `{allowed, n, reset}` reply into a verdict.
fn verdict(reply: &[i64]) -> Result<GlobalVerdict, GlobalError> {
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    match *reply {
        [1, remaining, reset] => Ok(GlobalVerdict::Allowed {
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset: micros(reset),
        }),
        [0, retry_after, reset] => Ok(GlobalVerdict::Limited {
            retry_after: micros(retry_after),
            reset: micros(reset),
        }),
        _ => Err(GlobalError::Script(format!("unexpected reply {reply:?}"))),
    }
}

/// Server-side errors and odd replies are script errors; the rest means no usable connection.
fn classify(err: &RedisError, timeout: Duration) -> GlobalError {
    match err.kind() {
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType => {
            GlobalError::Script(err.to_string())
        }
        _ if err.is_timeout() => GlobalError::TimedOut(timeout),
        _ => GlobalError::Unreachable(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinSet;

    // === Redis under test ===

    /// A redis-server on a free loopback port, killed on drop.
    struct RedisServer {
        child: Option<Child>,
        port: u16,
    }

    impl RedisServer {
        /// Starts one, or returns `None` (after a loud notice) when redis-server is missing
        /// and `LOOM_REQUIRE_REDIS=1` is not set.
        fn start() -> Option<Self> {
            if !redis_server_on_path() {
                let required = std::env::var_os("LOOM_REQUIRE_REDIS").is_some_and(|v| v == "1");
                assert!(
                    !required,
                    "LOOM_REQUIRE_REDIS=1 but redis-server is not on PATH \
                     (install it: apt-get install redis-server)"
                );
                // Straight to stderr, past the test harness' capture, so the skip shows.
                let _ = writeln!(
                    std::io::stderr(),
                    "*** skipped: redis-server not found on PATH \
                     (set LOOM_REQUIRE_REDIS=1 to make this a failure) ***"
                );
                return None;
            }
            // A free port can be taken between probing and binding: try a few.
            for _ in 0..5 {
                let port = free_port();
                if let Some(child) = spawn_redis(port) {
                    return Some(Self {
                        child: Some(child),
                        port,
                    });
                }
            }
            panic!("redis-server would not start on any of 5 free ports");
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        fn addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], self.port))
        }

        /// Kills it as a crash would (SIGKILL).
        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Starts it again on the same port.
        fn restart(&mut self) {
            self.stop();
            self.child = Some(spawn_redis(self.port).expect("redis-server restarts on its port"));
        }

        /// A direct connection for looking at what the limiter stored.
        async fn raw(&self) -> redis::aio::MultiplexedConnection {
            let client = Client::open(self.url()).expect("test URL parses");
            client
                .get_multiplexed_async_connection()
                .await
                .expect("connects to test redis")
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn redis_server_on_path() -> bool {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
        })
    }

    fn free_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
        listener.local_addr().expect("has an address").port()
    }

    /// Spawns redis-server on `port` and waits until it answers PING (None if it exits).
    fn spawn_redis(port: u16) -> Option<Child> {
        let port_arg = port.to_string();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port_arg,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server spawns");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return None;
            }
            if answers_ping(port) {
                return Some(child);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn answers_ping(port: u16) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn limiter(url: &str, timeout: Duration) -> GlobalLimiter {
        GlobalLimiter::new(RedisSettings {
            url: url.to_owned(),
            timeout,
        })
        .expect("valid settings")
    }

    /// A key no other test (or earlier run on a reused port) has touched.
    fn fresh_key(name: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "loom:test:{name}:{}:{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn assert_within(what: &str, value: Duration, low: Duration, high: Duration) {
        assert!(
            low <= value && value <= high,
            "{what}: {value:?} not in [{low:?}, {high:?}]"
        );
    }

    // === Log capture (the logger is global; each test filters by its own redis address) ===

    struct Capture(Mutex<Vec<(log::Level, String)>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
            lines.push((record.level(), record.args().to_string()));
        }
        fn flush(&self) {}
    }

    fn logs() -> &'static Capture {
        static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
            let _ = log::set_logger(capture);
            log::set_max_level(log::LevelFilter::Info);
            capture
        })
    }

    fn logged(level: log::Level, containing: &str) -> usize {
        let lines = logs().0.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .filter(|(l, m)| *l == level && m.contains(containing))
            .count()
    }

    // === Settings ===

    #[test]
    fn new_parses_without_connecting_or_needing_a_runtime() {
        let limiter = limiter(
            &format!("redis://127.0.0.1:{}/3", free_port()),
            Duration::from_millis(50),
        );
        assert!(limiter.healthy(), "healthy until a check says otherwise");
    }

    #[test]
    fn new_refuses_tls_other_schemes_garbage_and_a_zero_timeout() {
        let new = |url: &str, ms| {
            GlobalLimiter::new(RedisSettings {
                url: url.into(),
                timeout: Duration::from_millis(ms),
            })
        };
        assert!(matches!(
            new("rediss://h:6380", 50),
            Err(RedisConfigError::TlsUnsupported)
        ));
        assert!(matches!(
            new("http://h:6379", 50),
            Err(RedisConfigError::UnsupportedScheme(s)) if s == "http"
        ));
        assert!(matches!(
            new("h:6379", 50),
            Err(RedisConfigError::InvalidUrl(_))
        ));
        assert!(matches!(
            new("redis://h:6379/notadb", 50),
            Err(RedisConfigError::InvalidUrl(_))
        ));
        assert!(matches!(
            new("redis://h:6379", 0),
            Err(RedisConfigError::ZeroTimeout)
        ));
        for url in [
            "redis://:s3cret@h:99999",
            "u:s3cret@h://x",
            "redis://:s3cret@0.0.0.0",
        ] {
            let err = new(url, 50)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.is_empty() && !err.contains("s3cret"), "{url}: {err}");
        }
    }

    #[test]
    fn settings_debug_hides_credentials() {
        let shown = |url: &str| format!("{:?}", RedisSettings::new(url));
        assert_eq!(
            shown("redis://user:s3cret@h:6379/2"),
            r#"RedisSettings { url: "redis://***@h:6379/2", timeout: 50ms }"#
        );
        assert!(shown("redis://h:6379").contains(r#""redis://h:6379""#));
        for url in [
            "redis://:s3c@ret@h",
            "s3cret@h",
            "redis://:s3/cret@h",
            "u:s3cret@h://x",
        ] {
            assert!(!shown(url).contains("s3c"), "{}", shown(url));
        }
    }

    #[test]
    fn the_interval_rounds_up_so_the_rate_never_exceeds_the_quota() {
        assert_eq!(interval_micros(1), 1_000_000);
        assert_eq!(interval_micros(3), 333_334);
        assert_eq!(interval_micros(1_000_000), 1);
        assert_eq!(interval_micros(u32::MAX), 1);
        assert_eq!(interval_micros(0), 1_000_000);
    }

    #[test]
    fn the_script_reply_maps_to_verdicts_and_odd_replies_are_errors() {
        assert_eq!(
            verdict(&[1, 4, 200_000]),
            Ok(GlobalVerdict::Allowed {
                remaining: 4,
                reset: Duration::from_millis(200)
            })
        );
        assert_eq!(
            verdict(&[0, 1_000, 5_000]),
            Ok(GlobalVerdict::Limited {
                retry_after: Duration::from_millis(1),
                reset: Duration::from_millis(5)
            })
        );
        assert_eq!(
            verdict(&[1, i64::MAX, -1]),
            Ok(GlobalVerdict::Allowed {
                remaining: u32::MAX,
                reset: Duration::ZERO
            })
        );
        assert!(matches!(verdict(&[2, 0, 0]), Err(GlobalError::Script(_))));
        assert!(matches!(verdict(&[]), Err(GlobalError::Script(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_listening_is_unreachable_at_once_then_unavailable_without_a_connect() {
        let limiter = limiter(
            &format!("redis://127.0.0.1:{}", free_port()),
            Duration::from_millis(50),
        );
        let started = Instant::now();
        let first = limiter.check("k", 10, 5).await;
        assert!(
            matches!(first, Err(GlobalError::Unreachable(_))),
            "{first:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "refused, not timed out"
        );
        assert_eq!(
            limiter.check("k", 10, 5).await,
            Err(GlobalError::Unavailable)
        );
        assert!(!limiter.healthy());
    }

    // === Limits (real redis-server) ===

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_at_once_is_allowed_and_the_next_waits_about_one_interval() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let limiter = limiter(&redis.url(), Duration::from_millis(500));
        let key = fresh_key("burst");
        let (rps, burst) = (1, 20);
        let interval = Duration::from_secs(1);
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..burst {
            let (limiter, key) = (limiter.clone(), key.clone());
            tasks.spawn(async move { limiter.check(&key, rps, burst).await });
        }
        let mut remaining = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("task runs") {
                Ok(GlobalVerdict::Allowed { remaining: r, .. }) => remaining.push(r),
                other => panic!("a request within the burst was refused: {other:?}"),
            }
        }
        let next = limiter.check(&key, rps, burst).await;
        let elapsed = started.elapsed();
        assert!(elapsed < interval, "setup too slow to measure: {elapsed:?}");
        remaining.sort_unstable();
        assert_eq!(
            remaining,
            (0..burst).collect::<Vec<_>>(),
            "each request used one slot"
        );
        let Ok(GlobalVerdict::Limited { retry_after, reset }) = next else {
            panic!("request burst+1 was not limited: {next:?}");
        };
        assert_within("retry_after", retry_after, interval - elapsed, interval);
        assert_within("reset", reset, interval * burst - elapsed, interval * burst);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_share_one_bucket() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let replicas = [
            limiter(&redis.url(), Duration::from_millis(500)),
            limiter(&redis.url(), Duration::from_millis(500)),
        ];
        let key = fresh_key("shared");
        let (rps, burst) = (2, 10);
        let interval = Duration::from_millis(500);
        for replica in &replicas {
            assert!(
                replica.check(&fresh_key("warm"), rps, burst).await.is_ok(),
                "connects"
            );
        }
        // Alternate: were the buckets per replica, each would allow `burst` on its own.
        let started = Instant::now();
        let mut allowed = [0u32; 2];
        for i in 0..4 * burst as usize {
            match replicas[i % 2].check(&key, rps, burst).await {
                Ok(GlobalVerdict::Allowed { .. }) => allowed[i % 2] += 1,
                Ok(GlobalVerdict::Limited { .. }) => {}
                Err(e) => panic!("check failed: {e}"),
            }
        }
        let elapsed = started.elapsed();
        let refill = u32::try_from(elapsed.as_micros() / interval.as_micros()).unwrap_or(u32::MAX);
        let total = allowed[0] + allowed[1];
        assert!(
            (burst..=burst + refill).contains(&total),
            "allowed {allowed:?} (total {total}) over both replicas; burst {burst}, \
             {refill} refilled in {elapsed:?}"
        );
        assert!(
            allowed[0] >= burst / 2 && allowed[1] >= burst / 2,
            "both replicas drew from the bucket in turn: {allowed:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_waiting_one_interval_one_more_is_allowed() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let limiter = limiter(&redis.url(), Duration::from_millis(500));
        let key = fresh_key("refill");
        let (rps, burst) = (20, 1);
        assert!(matches!(
            limiter.check(&key, rps, burst).await,
            Ok(GlobalVerdict::Allowed { .. })
        ));
        let Ok(GlobalVerdict::Limited { retry_after, .. }) = limiter.check(&key, rps, burst).await
        else {
            panic!("the second request of a burst of 1 was not limited");
        };
        assert!(retry_after <= Duration::from_millis(50), "{retry_after:?}");
        // Redis' clock (TIME, µs) and ours are the same machine's: waiting retry_after is enough.
        tokio::time::sleep(retry_after + Duration::from_millis(1)).await;
        let after = limiter.check(&key, rps, burst).await;
        assert!(
            matches!(after, Ok(GlobalVerdict::Allowed { remaining: 0, reset })
                if reset <= Duration::from_millis(50)),
            "{after:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_keys_have_independent_buckets() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let limiter = limiter(&redis.url(), Duration::from_millis(500));
        let (a, b) = (fresh_key("a"), fresh_key("b"));
        let (rps, burst) = (1, 2);
        for _ in 0..burst {
            assert!(matches!(
                limiter.check(&a, rps, burst).await,
                Ok(GlobalVerdict::Allowed { .. })
            ));
        }
        assert!(matches!(
            limiter.check(&a, rps, burst).await,
            Ok(GlobalVerdict::Limited { .. })
        ));
        assert!(matches!(
            limiter.check(&b, rps, burst).await,
            Ok(GlobalVerdict::Allowed { remaining: 1, .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bucket_expires_one_second_after_its_window() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let limiter = limiter(&redis.url(), Duration::from_millis(500));
        let mut raw = redis.raw().await;
        // (rps, burst, window + 1 s slack in ms)
        for (rps, burst, ttl_max) in [(10, 5, 1_500), (1, 100, 101_000), (1000, 1, 1_001)] {
            let key = fresh_key("ttl");
            assert!(matches!(
                limiter.check(&key, rps, burst).await,
                Ok(GlobalVerdict::Allowed { .. })
            ));
            let pttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .expect("PTTL answers");
            assert!(
                pttl > 0 && pttl <= ttl_max,
                "PTTL {pttl} for rps {rps} burst {burst}"
            );
        }
        // A limited request stores nothing, so it does not extend the key's life.
        let key = fresh_key("ttl-none");
        assert!(matches!(
            limiter.check(&key, 1, 0).await,
            Ok(GlobalVerdict::Limited { .. })
        ));
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .expect("EXISTS");
        assert_eq!(exists, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn extreme_limits_and_odd_keys_give_verdicts_not_panics() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let limiter = limiter(&redis.url(), Duration::from_millis(500));
        let cases = [
            (0, 0),
            (0, 1),
            (1, 0),
            (u32::MAX, 0),
            (u32::MAX, u32::MAX),
            (1, u32::MAX),
        ];
        for (rps, burst) in cases {
            let key = fresh_key("extreme");
            let v = limiter.check(&key, rps, burst).await;
            match (burst, v) {
                (0, Ok(GlobalVerdict::Limited { .. })) => {}
                (b, Ok(GlobalVerdict::Allowed { remaining, .. })) if b > 0 => {
                    assert_eq!(remaining, b - 1, "rps {rps} burst {b}")
                }
                (b, other) => panic!("rps {rps} burst {b}: {other:?}"),
            }
        }
        for key in ["", "ключ with spaces\r\n*1\r\n", &"x".repeat(10_000)] {
            assert!(matches!(
                limiter.check(key, 5, 5).await,
                Ok(GlobalVerdict::Allowed { .. })
            ));
        }
        // Keys someone else wrote: another type or a non-number is taken over as a fresh
        // bucket; a TAT far in the future owes one full bucket at most.
        let raw = redis.raw().await;
        let write = |args: &[&str]| {
            let (mut raw, cmd) = (raw.clone(), redis::cmd(args[0]).arg(&args[1..]).clone());
            async move { cmd.query_async::<()>(&mut raw).await.expect("test write") }
        };
        write(&["HSET", "foreign:hash", "f", "v"]).await;
        for (key, value) in [
            ("foreign:nan", "nan"),
            ("foreign:text", "x"),
            ("foreign:-inf", "-inf"),
        ] {
            write(&["SET", key, value]).await;
            let v = limiter.check(key, 1, 3).await;
            assert!(
                matches!(v, Ok(GlobalVerdict::Allowed { remaining: 2, .. })),
                "{key}: {v:?}"
            );
        }
        let v = limiter.check("foreign:hash", 1, 3).await;
        assert!(
            matches!(v, Ok(GlobalVerdict::Allowed { remaining: 2, .. })),
            "hash: {v:?}"
        );
        for (key, value) in [("foreign:inf", "inf"), ("foreign:huge", "1e300")] {
            write(&["SET", key, value]).await;
            assert_eq!(
                limiter.check(key, 1, 3).await,
                Ok(GlobalVerdict::Limited {
                    retry_after: Duration::from_secs(1),
                    reset: Duration::from_secs(3)
                }),
                "{key}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_latency_on_loopback_is_well_under_the_timeout() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let timeout = RedisSettings::DEFAULT_TIMEOUT;
        let limiter = limiter(&redis.url(), timeout);
        let key = fresh_key("latency");
        let _ = limiter.check(&key, 1_000_000, 1_000_000).await; // connect, load the script
        let mut took = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let started = Instant::now();
            let v = limiter.check(&key, 1_000_000, 1_000_000).await;
            took.push(started.elapsed());
            assert!(v.is_ok(), "{v:?}");
        }
        took.sort_unstable();
        let (p50, p99, max) = (
            took[took.len() / 2],
            took[took.len() * 99 / 100],
            took[took.len() - 1],
        );
        eprintln!("check latency on loopback: p50 {p50:?}, p99 {p99:?}, max {max:?}");
        assert!(
            p50 < timeout / 10 && p99 < timeout,
            "p50 {p50:?}, p99 {p99:?}"
        );
    }

    // === Failures ===

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_redis_fails_within_the_timeout_then_fast_and_recovers_after_restart() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        logs();
        let target = format!("127.0.0.1:{}", redis.port);
        let timeout = Duration::from_millis(50);
        let limiter = limiter(&redis.url(), timeout);
        let key = fresh_key("outage");
        assert!(limiter.check(&key, 1000, 1000).await.is_ok());

        redis.stop();
        let started = Instant::now();
        let first = limiter.check(&key, 1000, 1000).await;
        let (detect, outage) = (started.elapsed(), started);
        assert!(first.is_err(), "{first:?}");
        assert!(
            detect <= timeout + Duration::from_millis(50),
            "first failure took {detect:?}"
        );
        assert!(!limiter.healthy());

        let started = Instant::now();
        let mut touched_network = 0;
        for _ in 0..100 {
            match limiter.check(&key, 1000, 1000).await {
                Err(GlobalError::Unavailable) => {}
                Err(_) => touched_network += 1,
                Ok(v) => panic!("redis is down but got {v:?}"),
            }
        }
        let hundred = started.elapsed();
        eprintln!(
            "stopped redis: first error after {detect:?} ({first:?}); 100 more checks took \
             {hundred:?}, {touched_network} of them probes"
        );
        assert!(hundred < timeout * 100 / 20, "100 checks took {hundred:?}");
        if outage.elapsed() < BACKOFF_MIN {
            assert_eq!(touched_network, 0, "no probe before {BACKOFF_MIN:?}");
        }

        // Probes back off: 100 ms after the failure, then 200, 400, … between probes (times
        // are when each check started, so they are lower bounds that load cannot break).
        let mut probes = Vec::new();
        while outage.elapsed() < Duration::from_secs(1) {
            let at = outage.elapsed();
            match limiter.check(&key, 1000, 1000).await {
                Err(GlobalError::Unavailable) => {}
                Err(_) => probes.push(at),
                Ok(v) => panic!("redis is down but got {v:?}"),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eprintln!("stopped redis: probes at {probes:?} after the first failure");
        assert!(probes.len() >= 2, "probes at {probes:?}");
        let mut previous = Duration::ZERO;
        for (i, at) in probes.iter().enumerate() {
            assert!(
                *at - previous >= BACKOFF_MIN * (1 << i),
                "probes at {probes:?}"
            );
            previous = *at;
        }

        redis.restart();
        let started = Instant::now();
        let recovered = loop {
            if limiter.check(&key, 1000, 1000).await.is_ok() {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "no recovery after restart"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        eprintln!("stopped redis: checks succeed {recovered:?} after the restart");
        assert!(limiter.healthy());
        assert_eq!(
            logged(log::Level::Warn, &target),
            1,
            "one warning per outage"
        );
        assert_eq!(
            logged(log::Level::Info, &target),
            1,
            "one notice on recovery"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_restarted_between_checks_costs_no_failed_check() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let limiter = limiter(&redis.url(), Duration::from_millis(50));
        let key = fresh_key("restart");
        assert!(limiter.check(&key, 1000, 1000).await.is_ok());
        // The connection dies and the script cache is empty: reconnect, reload, answer.
        redis.restart();
        let v = limiter.check(&key, 1000, 1000).await;
        assert!(v.is_ok(), "{v:?}");
        assert!(limiter.healthy());
    }

    /// Accepts connections and never answers.
    async fn blackhole() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("has an address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blackholed_redis_times_out_after_the_timeout() {
        let addr = blackhole().await;
        let timeout = Duration::from_millis(50);
        let limiter = limiter(&format!("redis://{addr}"), timeout);
        // While healthy it takes TIMEOUTS_TO_OPEN timeouts in a row to fail fast; once failing
        // fast, one timed-out probe keeps it so.
        for (round, timeouts) in [(0, TIMEOUTS_TO_OPEN), (1, 1)] {
            for _ in 0..timeouts {
                let started = Instant::now();
                let v = limiter.check("k", 10, 10).await;
                let took = started.elapsed();
                eprintln!("blackholed redis, round {round}: {v:?} after {took:?}");
                assert_eq!(v, Err(GlobalError::TimedOut(timeout)));
                assert_within(
                    "time to fail",
                    took,
                    timeout,
                    timeout + Duration::from_millis(50),
                );
            }
            assert_eq!(
                limiter.check("k", 10, 10).await,
                Err(GlobalError::Unavailable)
            );
            assert!(!limiter.healthy());
            tokio::time::sleep(BACKOFF_MIN * 2).await;
        }
    }

    /// A TCP proxy standing in for a Service in front of Redis: it can freeze the connections
    /// it has (bytes dropped, sockets kept: an old address that silently eats packets) and
    /// send new ones elsewhere (a failover).
    struct Proxy {
        addr: SocketAddr,
        state: Arc<Mutex<ProxyState>>,
    }

    struct ProxyState {
        upstream: SocketAddr,
        next_id: u64,
        frozen_below: u64,
    }

    impl Proxy {
        async fn start(upstream: SocketAddr) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binds");
            let addr = listener.local_addr().expect("has an address");
            let state = Arc::new(Mutex::new(ProxyState {
                upstream,
                next_id: 0,
                frozen_below: 0,
            }));
            let shared = Arc::clone(&state);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (id, upstream) = {
                        let mut state = shared.lock().expect("proxy state");
                        state.next_id += 1;
                        (state.next_id, state.upstream)
                    };
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    for (mut from, mut to) in [
                        (
                            Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                            Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                        ),
                        (Box::new(sr), Box::new(cw)),
                    ] {
                        let shared = Arc::clone(&shared);
                        tokio::spawn(async move {
                            let mut buf = [0u8; 4096];
                            while let Ok(n @ 1..) = from.read(&mut buf).await {
                                let frozen = id < shared.lock().expect("proxy state").frozen_below;
                                if !frozen && to.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                            // Keep the other half open: silence, not a reset.
                            std::future::pending::<()>().await;
                        });
                    }
                }
            });
            Self { addr, state }
        }

        fn url(&self) -> String {
            format!("redis://{}", self.addr)
        }

        fn freeze_open_connections(&self) {
            let mut state = self.state.lock().expect("proxy state");
            state.frozen_below = state.next_id + 1;
        }

        fn point_to(&self, upstream: SocketAddr) {
            self.state.lock().expect("proxy state").upstream = upstream;
        }
    }

    async fn until_ok(limiter: &GlobalLimiter, key: &str, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            if limiter.check(key, 1000, 1000).await.is_ok() {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(6), "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_gone_silent_is_replaced_after_a_timeout() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let proxy = Proxy::start(redis.addr()).await;
        let timeout = Duration::from_millis(50);
        let limiter = limiter(&proxy.url(), timeout);
        let key = fresh_key("silent");
        assert!(limiter.check(&key, 1000, 1000).await.is_ok());

        proxy.freeze_open_connections();
        let started = Instant::now();
        assert_eq!(
            limiter.check(&key, 1000, 1000).await,
            Err(GlobalError::TimedOut(timeout))
        );
        assert_within(
            "time to fail",
            started.elapsed(),
            timeout,
            timeout + Duration::from_millis(50),
        );
        // One slow reply fails its own check only: the next one goes to Redis at once (on a
        // new connection, not the frozen one) instead of failing fast for a backoff.
        assert!(limiter.healthy(), "one timeout made every check fail fast");
        let next = limiter.check(&key, 1000, 1000).await;
        assert_ne!(
            next,
            Err(GlobalError::Unavailable),
            "failing fast after one timeout"
        );
        let took = until_ok(&limiter, &key, "still stuck on the frozen connection").await;
        eprintln!("silent connection: replaced and answering {took:?} after the timeout");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_to_a_demoted_primary_is_replaced() {
        let (Some(old), Some(new)) = (RedisServer::start(), RedisServer::start()) else {
            return;
        };
        let proxy = Proxy::start(old.addr()).await;
        let limiter = limiter(&proxy.url(), Duration::from_millis(50));
        let key = fresh_key("failover");
        assert!(limiter.check(&key, 1000, 1000).await.is_ok());

        // Failover: the old primary follows the new one, and the address now leads there.
        let port = new.port.to_string();
        let mut raw = old.raw().await;
        let () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(&port)
            .query_async(&mut raw)
            .await
            .expect("REPLICAOF");
        proxy.point_to(new.addr());
        let v = limiter.check(&key, 1000, 1000).await;
        assert!(
            matches!(&v, Err(GlobalError::Script(m)) if m.contains("read only replica")),
            "{v:?}"
        );
        let took = until_ok(&limiter, &key, "still writing to the replica").await;
        eprintln!("failover: writing to the new primary {took:?} after READONLY");
    }
}
