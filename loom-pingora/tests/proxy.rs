//! The data plane over real sockets: a Pingora server in this process, echo backends on
//! loopback, plain HTTP/1.1 clients. One test function, because a process has one server and
//! one published configuration.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use loom_core::status::StatusAddress;
use loom_pingora::{ServeOptions, SnapshotHandle};

/// An HTTP/1.1 echo backend: answers every request with `name path host x-test-header`.
fn echo_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_echo(stream, name));
        }
    });
    port
}

fn serve_echo(mut stream: TcpStream, name: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut lines = head.lines();
        let path = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let mut host = String::new();
        let mut test = String::new();
        for l in lines {
            if let Some((n, v)) = l.split_once(':') {
                match n.to_ascii_lowercase().as_str() {
                    "host" => host = v.trim().to_owned(),
                    "x-test" => test = v.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let body = format!("{name} {path} {host} {test}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {name}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn get(port: u16, host: &str, path: &str, extra: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16, a: u16, b: u16, extra_rule: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
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
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: a, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{a}"]}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: b, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{b}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [web.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /b}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-test, value: set-by-loom}}]}}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{add: [{{name: x-resp, value: added}}], remove: [x-backend]}}
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: b}}]
  - matches: [{{path: {{type: Exact, value: /moved}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {{hostname: new.example.com, statusCode: 308}}}}]
  - matches: [{{path: {{type: PathPrefix, value: /missing}}}}]
    backendRefs: [{{name: no-such-service, port: 80}}]
  - backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: a}}]
{extra_rule}
"#
    )
}

fn publish(handle: &SnapshotHandle, yaml: &str) {
    let loaded = loom_core::load::load_str("test.yaml", yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let input = loom_core::Input::from_objects(loaded.objects.into_iter().map(|(_, o)| o));
    let options = loom_core::Options {
        default_addresses: vec![StatusAddress {
            type_: "IPAddress".into(),
            value: "127.0.0.1".into(),
        }],
        ..Default::default()
    };
    handle.publish(loom_core::compile_with(&input, &options), Duration::ZERO);
}

fn wait_for(mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn server() -> &'static SnapshotHandle {
    static HANDLE: OnceLock<SnapshotHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = SnapshotHandle::new();
        let serve = ServeOptions {
            default_bind: "127.0.0.1".parse().unwrap(),
            threads: 2,
            ..Default::default()
        };
        let server = loom_pingora::server(handle.clone(), &serve);
        std::thread::spawn(move || server.run_forever());
        handle
    })
}

#[test]
fn serves_routes_filters_and_reloads_without_failures() {
    let handle = server();
    let (a, b) = (echo_backend("a"), echo_backend("b"));
    let port = free_port();
    publish(handle, &config(port, a, b, ""));
    wait_for(|| get(port, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));

    // Routing, request and response filters, rewrites.
    let r = get(port, "web.example.com", "/hello?q=1", "").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "a /hello?q=1 web.example.com ")
    );
    let r = get(port, "web.example.com", "/b/x", "X-Test: from-client\r\n").unwrap();
    assert_eq!(r.body, "b /rewritten/x web.example.com set-by-loom");
    assert_eq!(r.header("x-resp"), Some("added"));
    assert_eq!(r.header("x-backend"), None);
    // Local answers.
    let r = get(port, "web.example.com", "/moved", "").unwrap();
    // Spec: without a scheme or port in the filter, the Location keeps the listener's port.
    let location = format!("http://new.example.com:{port}/moved");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some(location.as_str()))
    );
    assert_eq!(
        get(port, "web.example.com", "/missing", "").unwrap().status,
        500
    );
    assert_eq!(get(port, "other.example.com", "/", "").unwrap().status, 404);
    assert_eq!(
        get(port, "web.example.com", "/%zz", "").unwrap().status,
        400
    );

    // Reload under load: 200 publishes while clients send requests; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok =
                        get(port, "web.example.com", "/hello", "").is_ok_and(|r| r.status == 200);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for i in 0..200 {
        // Alternate between two configurations that both route /hello to `a`.
        let extra = if i % 2 == 0 {
            "  - matches: [{path: {type: Exact, value: /extra}}]\n    backendRefs: [{group: gateway.loom.dev, kind: Backend, name: b}]"
        } else {
            ""
        };
        publish(handle, &config(port, a, b, extra));
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (sent, failures) = (
        sent.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert!(
        sent > 100,
        "only {sent} requests were sent during the reloads"
    );
    assert_eq!(
        failures, 0,
        "{failures} of {sent} requests failed during 200 reloads"
    );

    // A publish that moves the listener: the new port answers, the old one stops accepting.
    let moved = free_port();
    publish(handle, &config(moved, a, b, ""));
    wait_for(|| get(moved, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));
    wait_for(|| TcpStream::connect(("127.0.0.1", port)).is_err());
}
