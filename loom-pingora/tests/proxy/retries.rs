//! HTTPRoute `retry` and `timeouts`, and passive health, against a backend that fails and
//! stalls on purpose.

use std::time::{Duration, Instant};

use crate::backends::scripted_backend;
use crate::clients::{Response, free_port, get, wait_for};
use crate::harness::{Owned, exclusive, publish_owned};

const HOST: &str = "policies.example.com";

/// Gateway `{name}` on its own port with HTTPRoute `{name}` for `policies.example.com`, routing
/// to a fresh scripted backend (see [`scripted_backend`]): `/flaky` retries 500 twice with a
/// 10 ms backoff; `/slow` has a 300 ms request timeout; `/attempt` a 2 s request and 200 ms
/// backendRequest timeout and retries a 504 once; `/count` has no policy; `/half-dead` goes to
/// one dead and one live endpoint and retries 503 40 times; `/no-retry` the same without
/// retries.
struct Policies {
    port: u16,
    _owned: Owned,
}

impl Policies {
    fn start(name: &str) -> Self {
        let s = scripted_backend();
        let (port, dead, dead2) = (free_port(), free_port(), free_port());
        let yaml = format!(
            r#"
{gateway}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-scripted, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{s}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  hostnames: [{HOST}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /flaky}}}}]
    retry: {{codes: [500], attempts: 2, backoff: 10ms}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /slow}}}}]
    timeouts: {{request: 300ms}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /attempt}}}}]
    timeouts: {{request: 2s, backendRequest: 200ms}}
    retry: {{codes: [504], attempts: 1}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /count}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /half-dead}}}}]
    retry: {{codes: [503], attempts: 40}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-half-dead}}]
  - matches: [{{path: {{type: PathPrefix, value: /no-retry}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-other-half-dead}}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-other-half-dead, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{dead2}", "127.0.0.1:{s}"]}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-half-dead, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{dead}", "127.0.0.1:{s}"]}}
"#,
            gateway = crate::harness::gateway(name, port),
        );
        let (owned, _) = publish_owned(name, &yaml);
        wait_for(|| get(port, HOST, "/slow/warmup/0", "").is_ok_and(|r| r.status == 200));
        Policies {
            port,
            _owned: owned,
        }
    }

    fn get(&self, path: &str) -> Response {
        get(self.port, HOST, path, "").unwrap()
    }

    /// How many requests the scripted backend has seen for `key`.
    fn count(&self, key: &str) -> String {
        self.get(&format!("/count/{key}/0")).body
    }
}

#[test]
fn failures_are_retried_until_one_succeeds() {
    let p = Policies::start("retries-succeed");
    // Two failures, two retries allowed: the third try answers.
    let r = p.get("/flaky/one/2");
    assert_eq!((r.status, r.body.as_str()), (200, "try 3"));
}

#[test]
fn the_last_failure_is_passed_on_when_attempts_run_out() {
    let p = Policies::start("retries-exhausted");
    // Three failures are one too many: the last failure is passed on as it is.
    let r = p.get("/flaky/two/3");
    assert_eq!((r.status, r.body.as_str()), (500, "try 3"));
    assert_eq!(p.count("two"), "3");
}

#[test]
fn request_timeout_answers_504_when_it_runs_out() {
    let p = Policies::start("timeouts-request");
    let _quiet = exclusive();
    // A request timeout answers 504 when it runs out, not when the backend finally answers.
    let started = Instant::now();
    let r = p.get("/slow/s1/2000");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(took < Duration::from_millis(1500), "504 after {took:?}");
    assert_eq!(
        p.count("s1"),
        "1",
        "a timed-out request without a retry policy is not retried"
    );
    assert_eq!(p.get("/slow/s2/10").status, 200);
}

#[test]
fn backend_request_timeout_bounds_each_attempt_and_counts_as_504_for_retries() {
    let p = Policies::start("timeouts-attempt");
    let _quiet = exclusive();
    // backendRequest bounds each attempt, and a timed-out attempt counts as a 504 for the
    // retry policy: two attempts of 200 ms, then 504.
    let started = Instant::now();
    let r = p.get("/attempt/slow/s3/1000");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(p.count("s3"), "2");
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(1000),
        "took {took:?}"
    );
}

#[test]
fn refused_connections_are_retried_on_another_endpoint() {
    let p = Policies::start("retries-refused");
    // A refused connection is retried (on a randomly chosen endpoint again): with one of two
    // endpoints dead and 40 attempts, every request gets through.
    for i in 0..20 {
        let r = p.get(&format!("/half-dead/slow/h{i}/0"));
        assert_eq!(r.status, 200, "request {i}");
    }
}

#[test]
fn passive_health_leaves_a_refusing_endpoint_out_after_one_failure() {
    let p = Policies::start("health-passive");
    // Passive health, without retries: the first refused connection takes the dead endpoint
    // out of the choice, so at most one of 40 requests fails.
    let failed = (0..40)
        .filter(|i| p.get(&format!("/no-retry/slow/n{i}/0")).status != 200)
        .count();
    assert!(failed <= 1, "{failed} of 40 requests failed");
}

/// A backend that accepts connections and never answers.
fn silent_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// A backend whose accept queue is full, so connecting to it hangs (SYNs are dropped).
/// The returned value holds the queue full until dropped.
fn unreachable_backend() -> (u16, impl Sized) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Fill the queue: connections nobody accepts.
    let fill: Vec<std::net::TcpStream> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(
                &format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_millis(200),
            )
            .ok()
        })
        .collect();
    drop(_entered);
    (port, (rt, listener, fill))
}

/// Gateway `{name}` whose catch-all rule (no route timeouts) goes to a backend at `backend`.
fn without_route_timeouts(name: &str, backend: u16) -> (u16, Owned) {
    let port = free_port();
    let (owned, _) = publish_owned(name, &crate::harness::web(name, port, backend, backend, ""));
    wait_for(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    (port, owned)
}

#[test]
fn a_backend_that_never_answers_gets_504_after_the_default_read_timeout() {
    let (port, _owned) = without_route_timeouts("defaults-silent", silent_backend());
    let _quiet = exclusive();
    let started = Instant::now();
    let r = get(port, "web.example.com", "/", "").unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    let read = crate::harness::BACKEND_TIMEOUTS.read;
    assert!(
        took >= read && took < read + Duration::from_secs(2),
        "504 after {took:?}"
    );
}

#[test]
fn a_backend_that_never_accepts_gets_an_error_after_the_default_connect_timeout() {
    let (backend, _queue) = unreachable_backend();
    let (port, _owned) = without_route_timeouts("defaults-unreachable", backend);
    let _quiet = exclusive();
    let started = Instant::now();
    let r = get(port, "web.example.com", "/", "").unwrap();
    let took = started.elapsed();
    assert!(matches!(r.status, 502 | 504), "{}", r.status);
    let connect = crate::harness::BACKEND_TIMEOUTS.connect;
    // The connect timeout, not the read timeout (2 s), ended it.
    assert!(
        took >= connect - Duration::from_millis(100) && took < connect + Duration::from_millis(900),
        "answered {} after {took:?}",
        r.status
    );
}
