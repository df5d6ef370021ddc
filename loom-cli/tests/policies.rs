//! RateLimitPolicy and CircuitBreakerPolicy end to end: `loom serve` as a process, the
//! manifests of issue #11 as users write them, real backends and raw HTTP clients. Counts are
//! checked against bounds computed from the time that really passed, never a sleep.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{
    Server, TestDir, admin_get, free_port, metric, request, serve, test_dir, wait_for, wait_ready,
};

/// The RateLimitPolicy of issue #11, verbatim.
const ISSUE_RATE_LIMIT: &str = r#"apiVersion: gateway.loom.dev/v1alpha1
kind: RateLimitPolicy
metadata:
  name: api-rate-limit
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: api-routes
  default:
    requestsPerSecond: 100
    burst: 200
  rules:
    - matches:
        - path:
            type: Exact
            value: /api/expensive
      requestsPerSecond: 10
"#;

/// The CircuitBreakerPolicy of issue #11, verbatim.
const ISSUE_CIRCUIT_BREAKER: &str = r#"apiVersion: gateway.loom.dev/v1alpha1
kind: CircuitBreakerPolicy
metadata:
  name: backend-circuit-breaker
spec:
  targetRef:
    group: ""
    kind: Service
    name: backend-service
  consecutive5xxErrors: 5
  interval: 30s
  baseEjectionTime: 30s
  maxEjectionPercent: 50
"#;

/// A backend that answers `status` (after `delay` for paths ending in `/slow`) with its name
/// as the body, and counts the requests it got.
struct Backend {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Backend {
    fn start(name: &'static str, status: u16) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let counted = counted.clone();
                std::thread::spawn(move || {
                    // Keep-alive: answer every request on the connection.
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let Ok(n) = s.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        let head = String::from_utf8_lossy(&buf[..n]);
                        if head.split(' ').nth(1).is_some_and(|p| p.ends_with("/slow")) {
                            std::thread::sleep(Duration::from_millis(1500));
                        }
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Backend { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn get(port: u16, path: &str) -> u16 {
    request(port, path, &[]).status
}

/// A Gateway on `port`, the route `api-routes` (`/api` and `/other` to Service
/// `backend-service`, whose endpoints are `endpoints`), and `extra` documents.
fn config(port: u16, endpoints: &[u16], extra: &str) -> String {
    // One EndpointSlice per endpoint: all on 127.0.0.1, each on its own port.
    let slices: String = endpoints
        .iter()
        .map(|p| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: backend-service-{p}, namespace: default, \
                 labels: {{kubernetes.io/service-name: backend-service}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: {p}}}]\n\
                 endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\n"
            )
        })
        .collect();
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: loom}}
spec: {{controllerName: loom.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: loom
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend-service, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
{slices}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api-routes, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}, {{path: {{type: PathPrefix, value: /other}}}}]
    backendRefs: [{{name: backend-service, port: 80}}]
---
{extra}"#
    )
}

/// `loom serve` on a fresh file holding `yaml`; returns once the Gateway answers.
struct Running {
    _server: Server,
    _dir: TestDir,
    port: u16,
    admin: u16,
    file: std::path::PathBuf,
}

fn run(name: &str, yaml: impl Fn(u16) -> String, extra: &[&str]) -> Running {
    let dir = test_dir(name);
    let file = dir.join("gateway.yaml");
    let port = free_port();
    std::fs::write(&file, yaml(port)).unwrap();
    let admin = free_port();
    let server = serve(&file, admin, extra);
    wait_ready(admin);
    Running {
        _server: server,
        _dir: dir,
        port,
        admin,
        file,
    }
}

fn generation(admin: u16) -> u64 {
    metric(admin, "loom_config_generation") as u64
}

/// Rewrites the file and waits until the new configuration is served.
fn reload(r: &Running, yaml: String) {
    let before = generation(r.admin);
    std::fs::write(&r.file, yaml).unwrap();
    wait_for("the reload", || generation(r.admin) > before);
}

/// Sends `path` as fast as it can for `for_how_long`; returns (allowed, limited, elapsed from
/// the first request sent to the last answer).
fn hammer(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    how_long: Duration,
) -> (u32, u32, Duration) {
    let started = Instant::now();
    let (mut ok, mut limited) = (0, 0);
    while started.elapsed() < how_long {
        match request(port, path, headers).status {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, limited, started.elapsed())
}

/// The most a GCRA bucket allows in `elapsed`: its burst, plus one request per emission
/// interval that passed, plus one for the partly elapsed interval.
fn most_allowed(burst: u32, rps: u32, elapsed: Duration) -> u32 {
    burst + (elapsed.as_secs_f64() * f64::from(rps)).ceil() as u32
}

#[test]
fn the_issue_rate_limit_gives_429_past_the_burst_of_its_rule_at_its_rate() {
    let backend = Backend::start("ok", 200);
    let r = run(
        "rate-rule",
        |port| config(port, &[backend.port], ISSUE_RATE_LIMIT),
        &[],
    );
    // The rule's bucket: burst 10 (its requestsPerSecond), 10 per second.
    let (ok, limited, elapsed) = hammer(r.port, "/api/expensive", &[], Duration::from_millis(1500));
    eprintln!(
        "measured: rule bucket (10/s, burst 10): {ok} allowed, {limited} limited in {elapsed:?}; \
         expected 10..={}",
        most_allowed(10, 10, elapsed)
    );
    assert!(limited > 0, "nothing was limited in {elapsed:?}");
    assert!(
        ok >= 10,
        "the burst of 10 was not allowed: {ok} in {elapsed:?}"
    );
    assert!(
        ok <= most_allowed(10, 10, elapsed),
        "{ok} allowed in {elapsed:?}: more than burst 10 + 10/s"
    );
    // Limited requests never reach the backend.
    assert_eq!(backend.hits(), ok as usize);
    let limited = request(r.port, "/api/expensive", &[]);
    if limited.status == 429 {
        assert_eq!(limited.header("retry-after"), Some("1"));
        assert_eq!(
            limited.header("ratelimit-policy"),
            Some("\"api-rate-limit/rules[0]\";q=10;w=1")
        );
        assert_eq!(
            limited.header("ratelimit"),
            Some("\"api-rate-limit/rules[0]\";r=0;t=1")
        );
    }
    assert!(
        metric(
            r.admin,
            "loom_rate_limited_total{policy=\"default/api-rate-limit\",route=\"default/api-routes\"}"
        ) >= 1.0
    );
}

#[test]
fn requests_no_rule_matches_use_the_default_bucket_and_its_burst() {
    let backend = Backend::start("ok", 200);
    let r = run(
        "rate-default",
        |port| config(port, &[backend.port], ISSUE_RATE_LIMIT),
        &[],
    );
    // Exhausting the rule's bucket leaves the default's alone.
    let (_, limited, _) = hammer(r.port, "/api/expensive", &[], Duration::from_millis(300));
    assert!(limited > 0);
    let started = Instant::now();
    let statuses: Vec<u16> = (0..60).map(|_| get(r.port, "/api/cheap")).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "default burst 200 limited one of 60 in {:?}: {statuses:?}",
        started.elapsed()
    );
    // By default (headers: OnLimit) an allowed response is the backend's, unchanged.
    let allowed = request(r.port, "/api/cheap", &[]);
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("ratelimit-policy"), None);
    assert_eq!(allowed.header("ratelimit"), None);
}

#[test]
fn headers_always_describes_the_bucket_on_allowed_responses() {
    let backend = Backend::start("ok", 200);
    let always = ISSUE_RATE_LIMIT.replace("spec:\n", "spec:\n  headers: Always\n");
    let r = run(
        "rate-always",
        |port| config(port, &[backend.port], &always),
        &[],
    );
    for _ in 0..60 {
        assert_eq!(get(r.port, "/api/cheap"), 200);
    }
    let allowed = request(r.port, "/api/cheap", &[]);
    assert_eq!(
        allowed.header("ratelimit-policy"),
        Some("\"api-rate-limit/default\";q=200;w=2")
    );
    let remaining: u32 = allowed
        .header("ratelimit")
        .and_then(|v| v.split(";r=").nth(1))
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.parse().ok())
        .expect("r= in RateLimit");
    assert!((139..200).contains(&remaining), "remaining {remaining}");
}

#[test]
fn an_error_answer_carries_the_rate_limit_headers_of_the_request_it_counted() {
    // Nothing listens on the endpoint: Loom answers 502 after counting the request.
    let always = ISSUE_RATE_LIMIT.replace("spec:\n", "spec:\n  headers: Always\n");
    let r = run(
        "rate-502",
        |port| config(port, &[free_port()], &always),
        &[],
    );
    let failed = request(r.port, "/api/cheap", &[]);
    assert_eq!(failed.status, 502);
    assert_eq!(
        failed.header("ratelimit-policy"),
        Some("\"api-rate-limit/default\";q=200;w=2"),
        "{:?}",
        failed.headers
    );
    assert!(failed.header("ratelimit").is_some(), "{:?}", failed.headers);
}

#[test]
fn a_limited_bucket_refills_at_its_rate() {
    let backend = Backend::start("ok", 200);
    let r = run(
        "rate-refill",
        |port| config(port, &[backend.port], ISSUE_RATE_LIMIT),
        &[],
    );
    let (_, limited, _) = hammer(r.port, "/api/expensive", &[], Duration::from_millis(300));
    assert!(limited > 0, "the burst is spent");
    // Empty now: what is allowed from here on is the refill, 10 per second.
    let (ok, _, elapsed) = hammer(r.port, "/api/expensive", &[], Duration::from_millis(2000));
    let expected = elapsed.as_secs_f64() * 10.0;
    eprintln!("measured: refill: {ok} allowed in {elapsed:?}, 10/s expects {expected:.1}");
    assert!(
        f64::from(ok) >= expected.floor() - 2.0 && ok <= most_allowed(1, 10, elapsed),
        "{ok} allowed in {elapsed:?}, refill 10/s expects about {expected:.1}"
    );
}

#[test]
fn per_client_buckets_are_isolated_and_the_client_table_is_bounded() {
    let backend = Backend::start("ok", 200);
    let policy = r#"apiVersion: gateway.loom.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: per-client, namespace: default}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes}
  default: {requestsPerSecond: 1, burst: 2}
  key: {type: Header, header: X-Client, maxKeys: 2}
"#;
    let r = run(
        "rate-keys",
        |port| config(port, &[backend.port], policy),
        &[],
    );
    let as_client = |c: &str| request(r.port, "/api/x", &[("X-Client", c)]).status;
    assert_eq!(
        [as_client("a"), as_client("a"), as_client("a")],
        [200, 200, 429]
    );
    // Another client has its own bucket.
    assert_eq!([as_client("b"), as_client("b")], [200, 200]);
    // A third client: at most two are remembered, the least recently seen ("a") goes, and
    // comes back with a full bucket.
    assert_eq!(as_client("c"), 200);
    assert_eq!(as_client("a"), 200, "a was forgotten (maxKeys 2)");
    // Many keys cost no more than maxKeys entries: the process stays up and answers.
    for i in 0..200 {
        as_client(&format!("flood-{i}"));
    }
    assert_eq!(as_client("fresh"), 200);
}

#[test]
fn a_reload_keeps_an_unchanged_bucket_and_a_changed_limit_starts_afresh() {
    let backend = Backend::start("ok", 200);
    let policy = |rps: u32| {
        format!(
            "apiVersion: gateway.loom.dev/v1alpha1\nkind: RateLimitPolicy\n\
             metadata: {{name: slow, namespace: default}}\nspec:\n  \
             targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes}}\n  \
             default: {{requestsPerSecond: {rps}, burst: 3}}\n"
        )
    };
    let r = run(
        "rate-reload",
        |port| config(port, &[backend.port], &policy(1)),
        &[],
    );
    assert_eq!(
        (0..4).map(|_| get(r.port, "/api/x")).collect::<Vec<_>>(),
        [200, 200, 200, 429]
    );
    // An unrelated change (a label on the Gateway's class): the bucket stays empty.
    let unrelated = config(r.port, &[backend.port], &policy(1)).replacen(
        "metadata: {name: loom}",
        "metadata: {name: loom, labels: {x: y}}",
        1,
    );
    reload(&r, unrelated);
    assert_eq!(get(r.port, "/api/x"), 429, "the reload refilled the bucket");
    // A changed limit: a new bucket, full.
    reload(&r, config(r.port, &[backend.port], &policy(2)));
    assert_eq!(get(r.port, "/api/x"), 200);
}

/// Sends requests until `bad` has answered `n` times; fails the test after 10 s.
fn until_hits(port: u16, bad: &Backend, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bad.hits() < n {
        assert!(
            Instant::now() < deadline,
            "the failing endpoint got only {} requests",
            bad.hits()
        );
        request(port, "/api/x", &[]);
    }
}

#[test]
fn the_issue_circuit_breaker_ejects_an_endpoint_after_five_5xx_in_a_row() {
    let bad = Backend::start("bad", 500);
    let good = Backend::start("good", 200);
    let r = run(
        "breaker-eject",
        |port| config(port, &[bad.port, good.port], ISSUE_CIRCUIT_BREAKER),
        &[],
    );
    until_hits(r.port, &bad, 5);
    // Ejected for 30 s: every request now goes to the good endpoint.
    let before = good.hits();
    for _ in 0..40 {
        let resp = request(r.port, "/api/x", &[]);
        assert_eq!((resp.status, resp.body.as_str()), (200, "good"));
    }
    assert_eq!(bad.hits(), 5, "the ejected endpoint got requests");
    assert_eq!(good.hits(), before + 40);
    let ejections =
        "loom_backend_ejections_total{namespace=\"default\",service=\"backend-service\"}";
    assert_eq!(metric(r.admin, ejections), 1.0);
    let healthy = "loom_backend_healthy{namespace=\"default\",service=\"backend-service\"}";
    assert_eq!(metric(r.admin, healthy), 1.0);
    let config = admin_get(r.admin, "/config").unwrap().1;
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let endpoints = &config["outliers"][0]["endpoints"];
    assert_eq!(endpoints[0]["endpoint"], format!("127.0.0.1:{}", bad.port));
    assert_eq!(endpoints[0]["ejections"], 1);
    let left = endpoints[0]["ejectedForSeconds"].as_f64().unwrap_or(0.0);
    eprintln!("measured: ejected at its 5th 500 in a row, {left:.1} s of 30 s left");
    assert!(left > 25.0 && left <= 30.0, "{endpoints}");
    // loom explain --admin asks the running data plane which endpoints are out.
    let explained = std::process::Command::new(env!("CARGO_BIN_EXE_loom"))
        .arg("explain")
        .arg(&r.file)
        .args([
            "--request",
            &format!("GET http://127.0.0.1:{}/api/x", r.port),
        ])
        .args(["--admin", &format!("127.0.0.1:{}", r.admin)])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&explained.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("ejected now"))
        .unwrap_or_default();
    let want = format!(
        "ejected now (127.0.0.1:{}): 127.0.0.1:{} (for ",
        r.admin, bad.port
    );
    assert!(line.starts_with(&want), "{out}");
    assert!(line.ends_with("s more, ejection 1)"), "{out}");
}

#[test]
fn an_ejected_endpoint_returns_after_its_ejection_time() {
    let bad = Backend::start("bad", 500);
    let good = Backend::start("good", 200);
    let policy = ISSUE_CIRCUIT_BREAKER.replace("baseEjectionTime: 30s", "baseEjectionTime: 1s");
    let r = run(
        "breaker-return",
        |port| config(port, &[bad.port, good.port], &policy),
        &[],
    );
    until_hits(r.port, &bad, 5);
    let ejected = Instant::now();
    until_hits(r.port, &bad, 6);
    let out = ejected.elapsed();
    eprintln!("measured: ejected for 1 s, back after {out:?}");
    assert!(
        out >= Duration::from_millis(950) && out < Duration::from_secs(5),
        "back after {out:?}, ejected for 1 s"
    );
    // The gauge of usable endpoints counts it again.
    let healthy = "loom_backend_healthy{namespace=\"default\",service=\"backend-service\"}";
    assert_eq!(metric(r.admin, healthy), 2.0);
}

#[test]
fn max_ejection_percent_bounds_how_many_endpoints_are_out() {
    let all_bad: Vec<Backend> = (0..4).map(|_| Backend::start("bad", 500)).collect();
    let ports: Vec<u16> = all_bad.iter().map(|b| b.port).collect();
    let r = run(
        "breaker-percent",
        |port| config(port, &ports, ISSUE_CIRCUIT_BREAKER),
        &[],
    );
    // Every endpoint fails; 50% of 4: two are ejected, the other two keep getting requests.
    for _ in 0..120 {
        request(r.port, "/api/x", &[]);
    }
    let hits = |b: &Backend| b.hits();
    let before: Vec<usize> = all_bad.iter().map(hits).collect();
    for _ in 0..40 {
        request(r.port, "/api/x", &[]);
    }
    let still_used = all_bad
        .iter()
        .zip(&before)
        .filter(|(b, n)| b.hits() > **n)
        .count();
    assert_eq!(still_used, 2, "hits before {before:?}");
    let ejections =
        "loom_backend_ejections_total{namespace=\"default\",service=\"backend-service\"}";
    assert_eq!(metric(r.admin, ejections), 2.0);
}

#[test]
fn an_ejection_survives_a_reload() {
    let bad = Backend::start("bad", 500);
    let good = Backend::start("good", 200);
    let yaml = |port| config(port, &[bad.port, good.port], ISSUE_CIRCUIT_BREAKER);
    let r = run("breaker-reload", yaml, &[]);
    until_hits(r.port, &bad, 5);
    let unrelated = yaml(r.port).replacen(
        "metadata: {name: loom}",
        "metadata: {name: loom, labels: {x: y}}",
        1,
    );
    reload(&r, unrelated);
    for _ in 0..20 {
        assert_eq!(request(r.port, "/api/x", &[]).body, "good");
    }
    assert_eq!(bad.hits(), 5);
}

/// Starts `n` slow requests at once; returns their (status, overloaded header).
fn concurrent_slow(port: u16, n: usize) -> Vec<(u16, Option<String>, Duration)> {
    let threads: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                // Stagger slightly so the order of arrival is the order of start.
                std::thread::sleep(Duration::from_millis(100 * i as u64));
                let started = Instant::now();
                let r = request(port, "/api/slow", &[]);
                (
                    r.status,
                    r.header("x-loom-overloaded").map(str::to_owned),
                    started.elapsed(),
                )
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn max_requests_answers_503_at_once_past_the_threshold() {
    let backend = Backend::start("ok", 200);
    let policy = r#"apiVersion: gateway.loom.dev/v1alpha1
kind: CircuitBreakerPolicy
metadata: {name: two-at-a-time, namespace: default}
spec:
  targetRef: {group: "", kind: Service, name: backend-service}
  maxRequests: 2
"#;
    let r = run(
        "breaker-max-requests",
        |port| config(port, &[backend.port], policy),
        &[],
    );
    let got = concurrent_slow(r.port, 3);
    assert_eq!((got[0].0, got[1].0), (200, 200), "{got:?}");
    assert_eq!(got[2].0, 503, "{got:?}");
    assert_eq!(got[2].1.as_deref(), Some("max-requests"));
    assert!(
        got[2].2 < Duration::from_millis(1000),
        "not at once: {got:?}"
    );
    // Once they finished, requests go through again.
    assert_eq!(get(r.port, "/api/x"), 200);
}

#[test]
fn max_connections_queues_up_to_max_pending_and_refuses_the_rest() {
    let backend = Backend::start("ok", 200);
    let policy = r#"apiVersion: gateway.loom.dev/v1alpha1
kind: CircuitBreakerPolicy
metadata: {name: one-connection, namespace: default}
spec:
  targetRef: {group: "", kind: Service, name: backend-service}
  maxConnections: 1
  maxPendingRequests: 1
"#;
    let r = run(
        "breaker-max-connections",
        |port| config(port, &[backend.port], policy),
        &[],
    );
    let got = concurrent_slow(r.port, 3);
    assert_eq!(got[0].0, 200, "{got:?}");
    // The second waited for the first's connection, then went through.
    assert_eq!(got[1].0, 200, "{got:?}");
    assert!(
        got[1].2 >= Duration::from_millis(2500),
        "it did not wait: {got:?}"
    );
    assert_eq!(
        (got[2].0, got[2].1.as_deref()),
        (503, Some("max-pending-requests")),
        "{got:?}"
    );
}

/// A `redis-server` of the test's own, on a free port; stopped on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    /// `None` (the test is skipped, loudly) when redis-server is not installed, unless
    /// `LOOM_REQUIRE_REDIS=1` (as in CI), where that fails the test.
    fn start() -> Option<Redis> {
        let mut r = Redis {
            child: None,
            port: free_port(),
        };
        if !r.restart() {
            assert!(
                std::env::var_os("LOOM_REQUIRE_REDIS").is_none_or(|v| v != "1"),
                "redis-server is required (apt-get install redis-server)"
            );
            eprintln!("*** skipped: redis-server not found (LOOM_REQUIRE_REDIS=1 makes this fail)");
            return None;
        }
        Some(r)
    }

    fn restart(&mut self) -> bool {
        let Ok(child) = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        let port = self.port;
        wait_for("redis-server", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        true
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn global_policy(fail_open: bool) -> String {
    format!(
        r#"apiVersion: gateway.loom.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: shared, namespace: default}}
spec:
  targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes}}
  default: {{requestsPerSecond: 1, burst: 10}}
  global: {{failOpen: {fail_open}}}
"#
    )
}

#[test]
fn two_replicas_share_a_global_limit_and_a_redis_outage_follows_fail_open() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let backend = Backend::start("ok", 200);
    let url = redis.url();
    let flags = ["--redis-url", url.as_str()];
    let yaml = |port| config(port, &[backend.port], &global_policy(true));
    let a = run("global-a", yaml, &flags);
    let b = run("global-b", yaml, &flags);
    let started = Instant::now();
    let mut ok = 0;
    for _ in 0..10 {
        ok += u32::from(get(a.port, "/api/x") == 200);
        ok += u32::from(get(b.port, "/api/x") == 200);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "measured: global (1/s, burst 10), two replicas: {ok} of 20 allowed in {elapsed:?}; \
         expected 10..={}",
        most_allowed(10, 1, elapsed)
    );
    assert!(
        ok >= 10 && ok <= most_allowed(10, 1, elapsed),
        "{ok} of 20 allowed across two replicas in {elapsed:?}: one bucket of 10 (+1/s)"
    );
    // Redis goes away: failOpen lets requests through, counted as errors; nothing crashes.
    redis.stop();
    let down = Instant::now();
    let statuses: Vec<u16> = (0..5).map(|_| get(a.port, "/api/x")).collect();
    eprintln!(
        "measured: Redis stopped, failOpen: {statuses:?} in {:?} for the 5 requests",
        down.elapsed()
    );
    assert_eq!(statuses, [200; 5]);
    assert!(
        metric(
            a.admin,
            "loom_rate_limit_redis_errors_total{outcome=\"allowed\",policy=\"default/shared\"}"
        ) >= 1.0
    );
    // Back: the limit holds again (the bucket was spent before the outage).
    assert!(redis.restart());
    let back = Instant::now();
    wait_for("the limit to hold again", || get(a.port, "/api/x") == 429);
    eprintln!(
        "measured: Redis restarted: limited again after {:?}",
        back.elapsed()
    );
}

#[test]
fn a_global_limit_that_fails_closed_answers_503_while_redis_is_down() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let backend = Backend::start("ok", 200);
    let url = redis.url();
    let r = run(
        "global-closed",
        |port| config(port, &[backend.port], &global_policy(false)),
        &["--redis-url", url.as_str()],
    );
    assert_eq!(get(r.port, "/api/x"), 200);
    redis.stop();
    let stopped = Instant::now();
    let down = request(r.port, "/api/x", &[]);
    eprintln!(
        "measured: Redis stopped, failOpen false: {} in {:?}",
        down.status,
        stopped.elapsed()
    );
    assert_eq!(
        (down.status, down.header("x-loom-overloaded")),
        (503, Some("rate-limit-store"))
    );
    assert_eq!(admin_get(r.admin, "/healthz").map(|(s, _)| s), Some(200));
}
