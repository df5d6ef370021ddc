//! `loom serve` as a user runs it: a real process, a file it watches, raw HTTP clients.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend that answers every request with `backend <path>`.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let body = format!("backend {path}");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    ))
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(port: u16, backend: u16, path: &str) -> String {
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
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: app, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{backend}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{matches: [{{path: {{type: PathPrefix, value: {path}}}}}], backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: app}}]}}]
"#
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serves_follows_file_changes_and_keeps_the_last_good_config() {
    let dir = std::env::temp_dir().join(format!("loom-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    std::fs::write(&file, config(port, backend, "/v1")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_loom"))
        .args([
            "serve",
            "-f",
            file.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
            "--threads",
            "1",
        ])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);

    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(get(port, "/v1/x").unwrap().1, "backend /v1/x");
    assert_eq!(get(port, "/v2/x").unwrap().0, 404);
    assert_eq!(get(admin, "/readyz").unwrap().0, 200);
    let metrics = get(admin, "/metrics").unwrap().1;
    assert!(
        metrics.contains(
            r#"loom_route_requests_total{code="200",route="HTTPRoute default/app",rule="0"}"#
        ),
        "{metrics}"
    );

    // A change is live without a restart.
    std::fs::write(&file, config(port, backend, "/v2")).unwrap();
    wait_for("the changed route", || {
        get(port, "/v2/x").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(get(port, "/v1/x").unwrap().0, 404);

    // A broken file changes nothing: the last good configuration keeps serving.
    std::fs::write(
        &file,
        config(port, backend, "/v3").replace("port: ", "port: ["),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(port, "/v2/x").unwrap().0, 200);
    assert_eq!(get(port, "/v3/x").unwrap().0, 404);
    let config = get(admin, "/config").unwrap().1;
    assert!(config.contains(r#""generation": 2"#), "{config}");
    let _ = std::fs::remove_dir_all(&dir);
}
