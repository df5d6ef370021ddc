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
        let mut content_length = None;
        let mut chunked = false;
        for l in lines {
            if let Some((n, v)) = l.split_once(':') {
                match n.to_ascii_lowercase().as_str() {
                    "host" => host = v.trim().to_owned(),
                    "x-test" => test = v.trim().to_owned(),
                    "content-length" => content_length = v.trim().parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    _ => {}
                }
            }
        }
        // Drain the body so the next request on this connection starts where it should.
        let mut need = |n: usize, buf: &mut Vec<u8>| {
            while buf.len() < n {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return false,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            true
        };
        if let Some(n) = content_length {
            if !need(n, &mut buf) {
                return;
            }
            buf.drain(..n);
        } else if chunked {
            loop {
                let Some(eol) = (|| loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        return Some(p);
                    }
                    if !need(buf.len() + 1, &mut buf) {
                        return None;
                    }
                })() else {
                    return;
                };
                let size = usize::from_str_radix(String::from_utf8_lossy(&buf[..eol]).trim(), 16)
                    .unwrap_or(0);
                buf.drain(..eol + 2);
                if !need(size + 2, &mut buf) {
                    return;
                }
                buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        let seen_length = content_length.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let body = format!("{name} {path} {host} {test}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {name}\r\nx-seen-content-length: {seen_length}\r\n\r\n{body}",
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

/// Sends raw bytes and returns the whole response (until the server closes or 5 s pass).
fn raw_response(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends raw bytes and returns the response status (0 when the connection closed without one).
fn raw(port: u16, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0)
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

    // Hardening: framing that invites request smuggling, oversized headers, short requests.
    // Both Content-Length and Transfer-Encoding (in any case): 400, and the connection closes.
    let both = raw_response(port, b"POST / HTTP/1.1\r\nHost: web.example.com\r\ncontent-LENGTH: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert!(both.starts_with("HTTP/1.1 400"), "{both}");
    assert!(
        both.to_ascii_lowercase().contains("connection: close"),
        "{both}"
    );
    // Chunked alone still goes through.
    let chunked = raw_response(port, b"POST / HTTP/1.1\r\nHost: web.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n");
    assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");
    assert_eq!(raw(port, b"POST /b HTTP/1.1\r\nHost: web.example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), 501);
    assert_eq!(raw(port, b"POST /b HTTP/1.1\r\nHost: web.example.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd"), 400);
    let mut big = b"GET / HTTP/1.1\r\nHost: web.example.com\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw(port, &big), 431);
    let mut many = b"GET / HTTP/1.1\r\nHost: web.example.com\r\n".to_vec();
    for i in 0..150 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(raw(port, &many), 431);
    // Shorter than the HTTP/2 preface: answered at once, not held waiting for more bytes.
    let started = Instant::now();
    assert_eq!(raw(port, b"GET / HTTP/1.0\r\n\r\n"), 404);
    assert!(started.elapsed() < Duration::from_secs(2));

    // HTTP/2 with prior knowledge (h2c) on the same cleartext port, with curl as the peer.
    let curl = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args([
            "-H",
            "Host: web.example.com",
            &format!("http://127.0.0.1:{port}/h2c"),
        ])
        .output();
    match curl {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200"),
        Err(e) => eprintln!("skipping the h2c check: curl did not run: {e}"),
    }

    // Reload under load: 1,000 publishes while clients send requests; none may fail.
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
    for i in 0..1000 {
        // Alternate between two configurations that both route /hello to `a`.
        let extra = if i % 2 == 0 {
            "  - matches: [{path: {type: Exact, value: /extra}}]\n    backendRefs: [{group: gateway.loom.dev, kind: Backend, name: b}]"
        } else {
            ""
        };
        publish(handle, &config(port, a, b, extra));
        std::thread::sleep(Duration::from_millis(1));
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
        "{failures} of {sent} requests failed during 1,000 reloads"
    );
    eprintln!("{sent} requests during 1,000 reloads, none failed");

    l4_and_tls(handle, a, b);
    retries_and_timeouts(handle, port, a, b);

    // A publish that moves the listener: the new port answers, the old one stops accepting.
    let moved = free_port();
    publish(handle, &config(moved, a, b, ""));
    wait_for(|| get(moved, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));
    wait_for(|| TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A self-signed certificate for the given names: (certificate PEM, key PEM, certificate DER).
fn certificate(names: &[&str]) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

fn tls_client(
    port: u16,
    sni: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), sni.to_owned().try_into().unwrap())
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

fn https_get(
    port: u16,
    sni: &str,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<(u16, String)> {
    let mut s = tls_client(port, sni, root)?;
    write!(
        s,
        "GET /tls HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    ))
}

/// A TCP line echo backend: replies `name: <line>` to every line.
fn tcp_echo(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
                    let _ = write!(writer, "{name}: {line}");
                    line.clear();
                }
            });
        }
    });
    port
}

/// A TLS server backend (for passthrough): answers `tls-backend` after the handshake.
fn tls_backend(cert_pem: &str, key_pem: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let _ = s.write_all(b"tls-backend\n");
                let _ = s.flush();
                let mut sink = [0u8; 64];
                let _ = s.read(&mut sink);
            });
        }
    });
    port
}

fn udp_echo() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = b"udp: ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from);
        }
    });
    port
}

fn l4_and_tls(handle: &SnapshotHandle, a: u16, b: u16) {
    let (cert, key, der) = certificate(&[
        "a.example.com",
        "b.example.com",
        "db.example.com",
        "plain.example.com",
    ]);
    let (https_port, tcp_port, tls_port) = (free_port(), free_port(), free_port());
    let udp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tcp_backend, passthrough_backend, udp_backend) =
        (tcp_echo("tcp"), tls_backend(&cert, &key), udp_echo());
    let terminate_backend = tcp_echo("terminated");
    let yaml = format!(
        r#"{base}
---
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{cert}  tls.key: |
{key}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: loom
  listeners:
  - {{name: a, port: {https_port}, protocol: HTTPS, hostname: a.example.com, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: b, port: {https_port}, protocol: HTTPS, hostname: b.example.com, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: tcp, port: {tcp_port}, protocol: TCP}}
  - {{name: udp, port: {udp_port}, protocol: UDP}}
  - {{name: pass, port: {tls_port}, protocol: TLS, hostname: db.example.com, tls: {{mode: Passthrough}}}}
  - {{name: term, port: {tls_port}, protocol: TLS, hostname: plain.example.com, tls: {{mode: Terminate, certificateRefs: [{{name: cert}}]}}}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: tcp, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{tcp_backend}"], protocol: tcp}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: passthrough, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{passthrough_backend}"], protocol: tcp}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: terminated, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{terminate_backend}"], protocol: tcp}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: udp, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{udp_backend}"], protocol: udp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: secure, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: a}}, {{name: edge, sectionName: b}}]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: a}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: tcp, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: tcp}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {{name: udp, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: udp}}]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: udp}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: pass, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: pass}}]
  hostnames: [db.example.com]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: passthrough}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: term, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: term}}]
  hostnames: [plain.example.com]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: terminated}}]}}]
"#,
        base = config(free_port(), a, b, ""),
        cert = indent(&cert),
        key = indent(&key),
    );
    publish(handle, &yaml);
    let published = handle.load();
    for (k, st) in &published.status.objects {
        if k.name == "edge" || ["secure", "tcp", "udp", "pass", "term"].contains(&k.name.as_str()) {
            assert!(
                st.is_healthy(),
                "{k}: {}",
                serde_json::to_string(st).unwrap()
            );
        }
    }

    // HTTPS: the certificate is chosen by SNI; a Host outside the SNI's listener gets 421.
    wait_for(|| {
        https_get(https_port, "a.example.com", "a.example.com", &der).is_ok_and(|(s, _)| s == 200)
    });
    let (status, body) = https_get(https_port, "b.example.com", "b.example.com", &der).unwrap();
    assert_eq!((status, body.as_str()), (200, "a /tls b.example.com "));
    assert_eq!(
        https_get(https_port, "a.example.com", "b.example.com", &der)
            .unwrap()
            .0,
        421
    );

    // TCP: bytes go to the route's backend and back.
    wait_for(|| TcpStream::connect(("127.0.0.1", tcp_port)).is_ok());
    let mut tcp = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"PING\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&tcp), &mut line).unwrap();
    assert_eq!(line, "tcp: PING\n");

    // TLS passthrough: the backend's own handshake reaches the client untouched.
    wait_for(|| TcpStream::connect(("127.0.0.1", tls_port)).is_ok());
    let mut s = tls_client(tls_port, "db.example.com", &der).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut s), &mut line).unwrap();
    assert_eq!(line, "tls-backend\n");

    // TLS terminate: Loom's handshake, plaintext to the backend.
    let mut s = tls_client(tls_port, "plain.example.com", &der).unwrap();
    s.write_all(b"HELLO\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut s), &mut line).unwrap();
    assert_eq!(line, "terminated: HELLO\n");

    // UDP: one datagram each way.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    wait_for(|| {
        client.send_to(b"hi", ("127.0.0.1", udp_port)).unwrap();
        client.recv(&mut buf).is_ok_and(|n| &buf[..n] == b"udp: hi")
    });
}

/// A backend that fails on purpose. Every path is `[/PREFIX]/ACTION/KEY/N`; requests are
/// counted per KEY. `flaky`: 500 to the first N requests, then 200 `try T`; `slow`: waits N
/// milliseconds, then 200; `count`: answers how many requests KEY has seen.
fn scripted_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let counts = counts.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let parts: Vec<&str> = path.rsplitn(4, '/').collect();
                let (status, body) = match parts.as_slice() {
                    [n, key, action, _] => {
                        let n: u64 = n.parse().unwrap_or(0);
                        let tries = {
                            let mut c = counts.lock().unwrap();
                            let t = c.entry((*key).to_owned()).or_default();
                            if *action != "count" {
                                *t += 1;
                            }
                            *t
                        };
                        match *action {
                            "flaky" => (
                                if u64::from(tries) <= n { 500 } else { 200 },
                                format!("try {tries}"),
                            ),
                            "slow" => {
                                std::thread::sleep(Duration::from_millis(n));
                                (200, "slow".to_owned())
                            }
                            "count" => (200, tries.to_string()),
                            _ => (404, String::new()),
                        }
                    }
                    _ => (404, String::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// HTTPRoute `retry` and `timeouts` against a backend that fails and stalls on purpose.
fn retries_and_timeouts(handle: &SnapshotHandle, port: u16, a: u16, b: u16) {
    let s = scripted_backend();
    let dead = free_port(); // nothing listens there
    let dead2 = free_port();
    let extra = format!(
        r#"
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: scripted, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{s}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: policies, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [policies.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /flaky}}}}]
    retry: {{codes: [500], attempts: 2, backoff: 10ms}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /slow}}}}]
    timeouts: {{request: 300ms}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /attempt}}}}]
    timeouts: {{request: 2s, backendRequest: 200ms}}
    retry: {{codes: [504], attempts: 1}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /count}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: scripted}}]
  - matches: [{{path: {{type: PathPrefix, value: /half-dead}}}}]
    retry: {{codes: [503], attempts: 40}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: half-dead}}]
  - matches: [{{path: {{type: PathPrefix, value: /no-retry}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: other-half-dead}}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: other-half-dead, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{dead2}", "127.0.0.1:{s}"]}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: half-dead, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{dead}", "127.0.0.1:{s}"]}}
"#
    );
    publish(handle, &(config(port, a, b, "") + &extra));
    let h = "policies.example.com";
    wait_for(|| get(port, h, "/slow/warmup/0", "").is_ok_and(|r| r.status == 200));
    let count = |key: &str| get(port, h, &format!("/count/{key}/0"), "").unwrap().body;

    // Two failures, two retries allowed: the third try answers.
    let r = get(port, h, "/flaky/one/2", "").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "try 3"));
    // Three failures are one too many: the last failure is passed on as it is.
    let r = get(port, h, "/flaky/two/3", "").unwrap();
    assert_eq!((r.status, r.body.as_str()), (500, "try 3"));
    assert_eq!(count("two"), "3");

    // A request timeout answers 504 when it runs out, not when the backend finally answers.
    let started = Instant::now();
    let r = get(port, h, "/slow/s1/2000", "").unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(took < Duration::from_millis(1500), "504 after {took:?}");
    assert_eq!(
        count("s1"),
        "1",
        "a timed-out request without a retry policy is not retried"
    );
    assert_eq!(get(port, h, "/slow/s2/10", "").unwrap().status, 200);

    // backendRequest bounds each attempt, and a timed-out attempt counts as a 504 for the
    // retry policy: two attempts of 200 ms, then 504.
    let started = Instant::now();
    let r = get(port, h, "/attempt/slow/s3/1000", "").unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(count("s3"), "2");
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(1000),
        "took {took:?}"
    );

    // A refused connection is retried (on a randomly chosen endpoint again): with one of two
    // endpoints dead and 40 attempts, every request gets through.
    for i in 0..20 {
        let r = get(port, h, &format!("/half-dead/slow/h{i}/0"), "").unwrap();
        assert_eq!(r.status, 200, "request {i}");
    }
    // Passive health, without retries: the first refused connection takes the dead endpoint
    // out of the choice, so at most one of 40 requests fails.
    let failed = (0..40)
        .filter(|i| {
            get(port, h, &format!("/no-retry/slow/n{i}/0"), "")
                .unwrap()
                .status
                != 200
        })
        .count();
    assert!(failed <= 1, "{failed} of 40 requests failed");
}
