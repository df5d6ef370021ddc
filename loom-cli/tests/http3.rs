//! HTTP/3 end to end: `loom serve` as a process with the Gateway of issue #14 (its listeners
//! verbatim, on free ports), aioquic as the client (tests/h3client.py; a QUIC and HTTP/3
//! implementation nobody here wrote), real backends. Every request goes through the same
//! pipeline as HTTP/1 and HTTP/2: filters, redirects, 404, 421, bodies both ways, many streams
//! on one connection (more than the stream limit), a head over 64 KiB, certificates by SNI,
//! reloads under an open connection, rate limits and metrics, Alt-Svc on HTTPS.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};
use support::{Server, TestDir, free_port, metric, serve, test_dir, wait_for, wait_ready};

/// A CA and a certificate it signed for each name.
struct Pki {
    ca_pem: String,
    certs: Vec<(String, String, String)>,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "loom test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let certs = names
        .iter()
        .map(|n| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![n.to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (n.to_string(), cert.pem(), key.serialize_pem())
        })
        .collect();
    Pki {
        ca_pem: ca_cert.pem(),
        certs,
    }
}

fn secret(name: &str, cert: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: loom-system}}\n\
         type: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}\n---\n",
        b64(cert),
        b64(key)
    )
}

/// The Gateway of issue #14, verbatim but for its ports.
fn issue_gateway(http: u16, https: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: loom-gateway
  namespace: loom-system
spec:
  gatewayClassName: loom
  listeners:
    - name: http
      protocol: HTTP
      port: {http}
    - name: https
      protocol: HTTPS
      port: {https}
      tls:
        mode: Terminate
        certificateRefs:
          - name: gateway-tls
            kind: Secret
    - name: http3
      protocol: HTTP
      port: {https}
      tls:
        mode: Terminate
        certificateRefs:
          - name: gateway-tls
---
"#
    )
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
    metadata: {name: loom}\nspec: {controllerName: loom.dev/gateway-controller}\n---\n";

/// Routes of the tests: `/` and `/big` to the backend with a header filter, `/old` a redirect.
fn routes(backend: u16, extra_rule: &str) -> String {
    format!(
        r#"apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: app, namespace: loom-system}}
spec: {{endpoints: ["127.0.0.1:{backend}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: loom-system}}
spec:
  parentRefs: [{{name: loom-gateway}}]
  hostnames: [app.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /app}}}}]
    filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-via, value: loom}}]}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: app}}]
  - matches: [{{path: {{type: Exact, value: /old}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {{path: {{type: ReplaceFullPath, replaceFullPath: /new}}, statusCode: 301}}}}]
{extra_rule}"#
    )
}

/// A backend: `/app/big` answers 10 MB, anything else `size=<request body bytes> path=<path>`.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if s.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if s.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if s.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = if path == "/app/big" {
                        vec![b'b'; 10 * 1024 * 1024]
                    } else {
                        format!("size={length} path={path}").into_bytes()
                    };
                    let out = s.get_mut();
                    let head =
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", reply.len());
                    if out
                        .write_all(head.as_bytes())
                        .and_then(|_| out.write_all(&reply))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// aioquic connected to `port` with `server_name` as SNI, trusting `ca`.
struct H3Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl H3Client {
    /// `None` (the test is skipped, loudly) when aioquic is missing, unless
    /// `LOOM_REQUIRE_AIOQUIC=1` (as in CI).
    fn connect(port: u16, server_name: &str, ca: &std::path::Path) -> Option<H3Client> {
        let present = Command::new("python3")
            .args(["-c", "import aioquic"])
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            assert!(
                std::env::var_os("LOOM_REQUIRE_AIOQUIC").is_none_or(|v| v != "1"),
                "aioquic is required (pip install aioquic)"
            );
            eprintln!(
                "*** skipped: aioquic not installed (LOOM_REQUIRE_AIOQUIC=1 makes this fail)"
            );
            return None;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h3client.py");
        let mut child = Command::new("python3")
            .args([script, "127.0.0.1", &port.to_string()])
            .args(["--server-name", server_name, "--ca", ca.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Some(H3Client {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends a request (see h3client.py) and returns the `parallel` answers.
    fn send(&mut self, request: Value) -> Vec<Value> {
        let n = request["parallel"].as_u64().unwrap_or(1);
        // A client that could not connect has printed its error and exited.
        let _ = writeln!(self.stdin, "{request}");
        (0..n)
            .map(|_| {
                let mut line = String::new();
                let _ = self.stdout.read_line(&mut line);
                serde_json::from_str(&line).unwrap_or(json!({"error": line}))
            })
            .collect()
    }

    fn get(&mut self, path: &str) -> Value {
        self.send(json!({"path": path})).remove(0)
    }
}

impl Drop for H3Client {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    _server: Server,
    dir: TestDir,
    admin: u16,
    https: u16,
    ca: std::path::PathBuf,
    backend: u16,
}

fn setup(name: &str, config: impl Fn(&Pki, u16, u16, u16) -> String) -> Setup {
    let dir = test_dir(name);
    let pki = pki(&["app.example.com", "other.example.com"]);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (http, https, admin) = (free_port(), free_port(), free_port());
    let backend = backend();
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, config(&pki, http, https, backend)).unwrap();
    let server = serve(&file, admin, &[]);
    wait_ready(admin);
    Setup {
        _server: server,
        dir,
        admin,
        https,
        ca,
        backend,
    }
}

/// The issue's Gateway with `gateway-tls` for app.example.com and the test routes.
fn issue_config(pki: &Pki, http: u16, https: u16, backend: u16) -> String {
    let (_, cert, key) = &pki.certs[0];
    format!(
        "{CLASS}{}{}{}",
        secret("gateway-tls", cert, key),
        issue_gateway(http, https),
        routes(backend, "")
    )
}

#[test]
fn the_issue_gateway_serves_http3_through_the_pipeline() {
    let s = setup("h3-pipeline", issue_config);
    let Some(mut c) = H3Client::connect(s.https, "app.example.com", &s.ca) else {
        return;
    };
    let ok = c.get("/app/hello");
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["body"], "size=0 path=/app/hello");
    assert_eq!(ok["headers"]["x-via"], "loom", "the route's filter");
    let posted = c
        .send(json!({"method": "POST", "path": "/app/upload", "body_size": 300_000}))
        .remove(0);
    assert_eq!(posted["body"], "size=300000 path=/app/upload", "{posted}");
    let moved = c.get("/old");
    assert_eq!(moved["status"], 301);
    assert_eq!(
        moved["headers"]["location"],
        format!("https://app.example.com:{}/new", s.https)
    );
    assert_eq!(c.get("/nothing-here")["status"], 404);
    // A host the listener does not serve: 404 (HTTP/3 has no listener for it).
    let other = c
        .send(json!({"path": "/app/x", "authority": "nope.example.com"}))
        .remove(0);
    assert_eq!(other["status"], 404, "{other}");
}

#[test]
fn rate_limits_and_metrics_apply_to_http3_requests_as_to_any_other() {
    // A RateLimitPolicy on the route: 1 request/s, burst 2.
    let s = setup("h3-policies", |pki, http, https, backend| {
        format!(
            "{}---\n\
             apiVersion: gateway.loom.dev/v1alpha1\n\
             kind: RateLimitPolicy\n\
             metadata: {{name: h3-limit, namespace: loom-system}}\n\
             spec:\n  \
               targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app}}\n  \
               default: {{requestsPerSecond: 1, burst: 2}}\n",
            issue_config(pki, http, https, backend)
        )
    });
    let Some(mut c) = H3Client::connect(s.https, "app.example.com", &s.ca) else {
        return;
    };
    let started = std::time::Instant::now();
    let answers: Vec<Value> = (0..10).map(|_| c.get("/app/counted")).collect();
    let elapsed = started.elapsed();
    let allowed = answers.iter().filter(|a| a["status"] == 200).count();
    let limited: Vec<&Value> = answers.iter().filter(|a| a["status"] == 429).collect();
    assert_eq!(allowed + limited.len(), 10, "{answers:?}");
    let most = 2 + elapsed.as_secs_f64().ceil() as usize;
    assert!(
        (2..=most).contains(&allowed),
        "{allowed} of 10 allowed in {elapsed:?}: burst 2 + 1/s allows 2..={most}"
    );
    for a in &limited {
        assert_eq!(a["headers"]["retry-after"], "1", "{a}");
        assert_eq!(
            a["headers"]["ratelimit-policy"], "\"h3-limit/default\";q=2;w=2",
            "{a}"
        );
    }
    // Counted by the same metrics as HTTP/1 and HTTP/2 (in the logging phase, after the
    // answer: wait for the last one).
    let expected = [
        (
            r#"loom_rate_limited_total{policy="loom-system/h3-limit",route="loom-system/app"}"#,
            limited.len(),
        ),
        (
            r#"loom_route_requests_total{code="200",kind="HTTPRoute",method="GET",namespace="loom-system",route="app",rule="0"}"#,
            allowed,
        ),
    ];
    wait_for("the HTTP/3 requests in /metrics", || {
        expected
            .iter()
            .all(|(prefix, n)| metric(s.admin, prefix) == *n as f64)
    });
}

#[test]
fn large_responses_and_many_streams_share_one_connection() {
    let s = setup("h3-streams", issue_config);
    let Some(mut c) = H3Client::connect(s.https, "app.example.com", &s.ca) else {
        return;
    };
    let big = c.get("/app/big");
    assert_eq!(big["status"], 200);
    assert_eq!(big["body_size"], 10 * 1024 * 1024);
    let many = c.send(json!({"path": "/app/many", "parallel": 50}));
    assert_eq!(many.len(), 50);
    assert!(
        many.iter()
            .all(|r| r["status"] == 200 && r["body"] == "size=0 path=/app/many"),
        "{many:?}"
    );
}

#[test]
fn streams_beyond_the_limit_wait_for_credit_and_a_head_over_64_kib_is_refused() {
    let s = setup("h3-limits", issue_config);
    let Some(mut c) = H3Client::connect(s.https, "app.example.com", &s.ca) else {
        return;
    };
    // 150 requests at once against 100 streams per connection: the client waits for stream
    // credit, and every request is answered.
    let many = c.send(json!({"path": "/app/credit", "parallel": 150}));
    let answered = many.iter().filter(|r| r["status"] == 200).count();
    assert_eq!(
        answered,
        150,
        "{:?}",
        many.iter().find(|r| r["status"] != 200)
    );
    // A request head over 64 KiB (as on HTTP/1 and HTTP/2) is answered 431 and never reaches
    // the backend: 100 fields of 800 bytes (aioquic refuses to encode one value that long).
    let fields: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("x-big-{i}"), json!("a".repeat(800))))
        .collect();
    let big = c
        .send(json!({"path": "/app/big-head", "headers": fields}))
        .remove(0);
    assert_eq!(big["status"], 431, "{big}");
    // The connection is still good.
    assert_eq!(c.get("/app/after")["status"], 200);
}

#[test]
fn certificates_are_chosen_by_sni_and_a_host_of_another_listener_is_misdirected() {
    let config = |pki: &Pki, http: u16, https: u16, backend: u16| {
        let (_, a_cert, a_key) = &pki.certs[0];
        let (_, b_cert, b_key) = &pki.certs[1];
        format!(
            "{CLASS}{}{}\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: loom-gateway, namespace: loom-system}}
spec:
  gatewayClassName: loom
  listeners:
  - {{name: plain, protocol: HTTP, port: {http}}}
  - {{name: app, protocol: HTTP, port: {https}, hostname: app.example.com, tls: {{certificateRefs: [{{name: app-tls}}]}}}}
  - {{name: other, protocol: HTTP, port: {https}, hostname: other.example.com, tls: {{certificateRefs: [{{name: other-tls}}]}}}}
---
{}",
            secret("app-tls", a_cert, a_key),
            secret("other-tls", b_cert, b_key),
            routes(backend, "")
        )
    };
    let s = setup("h3-sni", config);
    // The client verifies the certificate against its SNI: both names connect.
    let Some(mut other) = H3Client::connect(s.https, "other.example.com", &s.ca) else {
        return;
    };
    // other.example.com's listener has no route for it: 404, not another listener's route.
    assert_eq!(other.get("/app/x")["status"], 404);
    // A host of another listener on the connection of this SNI: 421.
    let misdirected = other
        .send(json!({"path": "/app/x", "authority": "app.example.com"}))
        .remove(0);
    assert_eq!(misdirected["status"], 421, "{misdirected}");
    let mut app = H3Client::connect(s.https, "app.example.com", &s.ca).unwrap();
    assert_eq!(app.get("/app/x")["status"], 200);
}

#[test]
fn a_reload_under_an_open_connection_applies_to_its_next_request() {
    let s = setup("h3-reload", issue_config);
    let Some(mut c) = H3Client::connect(s.https, "app.example.com", &s.ca) else {
        return;
    };
    assert_eq!(c.get("/added")["status"], 404);
    let extra = "  - matches: [{path: {type: Exact, value: /added}}]\n    \
                 backendRefs: [{group: gateway.loom.dev, kind: Backend, name: app}]\n";
    let file = s.dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let new = text.replace(&routes(s.backend, ""), &routes(s.backend, extra));
    assert_ne!(new, text);
    std::fs::write(&file, new).unwrap();
    wait_for("the new route over the open connection", || {
        c.get("/added")["status"] == 200
    });
}

fn alt_svc(port: u16, ca: &std::path::Path) -> Option<String> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--cacert",
            ca.to_str().unwrap(),
        ])
        .args(["--resolve", &format!("app.example.com:{port}:127.0.0.1")])
        .arg(format!("https://app.example.com:{port}/app/x"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("alt-svc: ").map(|v| v.trim().to_owned()))
}

#[test]
fn https_responses_carry_alt_svc_exactly_when_http3_is_on() {
    let s = setup("h3-alt-svc", issue_config);
    assert_eq!(
        alt_svc(s.https, &s.ca),
        Some(format!("h3=\":{}\"; ma=86400", s.https))
    );
    let without = setup("h3-no-alt-svc", |pki, http, https, backend| {
        issue_config(pki, http, https, backend).replace(
            "    - name: http3\n      protocol: HTTP\n",
            "    - name: http3\n      protocol: HTTP\n      hostname: unused.example.com\n",
        )
    });
    // HTTP/3 on the port, but for another hostname: no Alt-Svc for this one. Nor without it:
    assert_eq!(alt_svc(without.https, &without.ca), None);
    let none = setup("h3-none", |pki, http, https, backend| {
        let config = issue_config(pki, http, https, backend);
        let start = config.find("    - name: http3").unwrap();
        let end = config[start..].find("---").unwrap() + start;
        format!("{}{}", &config[..start], &config[end..])
    });
    assert_eq!(alt_svc(none.https, &none.ca), None);
}

#[test]
fn the_kubernetes_form_adds_http3_to_every_https_listener() {
    let config = |pki: &Pki, http: u16, https: u16, backend: u16| {
        let (_, cert, key) = &pki.certs[0];
        let gateway = issue_gateway(http, https);
        let start = gateway.find("    - name: http3").unwrap();
        let end = gateway[start..].find("---").unwrap() + start;
        let gateway = format!(
            "{}  infrastructure:\n    parametersRef: {{group: gateway.loom.dev, kind: GatewayClassConfig, name: quic}}\n{}",
            &gateway[..start],
            &gateway[end..]
        );
        format!(
            "{CLASS}apiVersion: gateway.loom.dev/v1alpha1\nkind: GatewayClassConfig\n\
             metadata: {{name: quic, namespace: loom-system}}\nspec: {{http3: {{enabled: true}}}}\n---\n\
             {}{gateway}{}",
            secret("gateway-tls", cert, key),
            routes(backend, "")
        )
    };
    let s = setup("h3-k8s-form", config);
    let Some(mut c) = H3Client::connect(s.https, "app.example.com", &s.ca) else {
        return;
    };
    assert_eq!(c.get("/app/k8s")["body"], "size=0 path=/app/k8s");
    assert!(alt_svc(s.https, &s.ca).is_some());
}

#[test]
fn a_changed_certificate_is_served_to_new_connections() {
    let s = setup("h3-cert-swap", issue_config);
    let Some(mut before) = H3Client::connect(s.https, "app.example.com", &s.ca) else {
        return;
    };
    assert_eq!(before.get("/app/x")["status"], 200);
    // The same name from another CA: after the reload only clients trusting the new CA get in.
    let renewed = pki(&["app.example.com"]);
    let new_ca = s.dir.join("new-ca.pem");
    std::fs::write(&new_ca, &renewed.ca_pem).unwrap();
    let file = s.dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let old = text.split("---\n").nth(1).unwrap().to_owned() + "---\n";
    let (_, cert, key) = &renewed.certs[0];
    std::fs::write(&file, text.replace(&old, &secret("gateway-tls", cert, key))).unwrap();
    wait_for("the new certificate", || {
        H3Client::connect(s.https, "app.example.com", &new_ca)
            .is_some_and(|mut c| c.get("/app/x")["status"] == 200)
    });
    let mut old_trust = H3Client::connect(s.https, "app.example.com", &s.ca).unwrap();
    assert!(
        old_trust.get("/app/x")["error"].is_string(),
        "the old CA no longer verifies"
    );
}
