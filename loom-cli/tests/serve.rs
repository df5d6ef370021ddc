//! `loom serve` as a user runs it: a real process, a file it watches, raw HTTP clients.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Server, free_port, serve, test_dir, wait_for};

/// A backend that answers every request with `backend <path>`; a path ending in `/slow`
/// after 1.5 s.
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
                if path.ends_with("/slow") {
                    std::thread::sleep(Duration::from_millis(1500));
                }
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

#[test]
fn serves_follows_file_changes_and_keeps_the_last_good_config() {
    let dir = test_dir("follows");
    let file = dir.join("gateway.yaml");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    std::fs::write(&file, config(port, backend, "/v1")).unwrap();
    let _server = serve(&file, admin, &[]);

    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(get(port, "/v1/x").unwrap().1, "backend /v1/x");
    assert_eq!(get(port, "/v2/x").unwrap().0, 404);
    assert_eq!(get(admin, "/readyz").unwrap().0, 200);
    let metrics = get(admin, "/metrics").unwrap().1;
    assert!(
        metrics.contains(
            r#"loom_route_requests_total{code="200",kind="HTTPRoute",method="GET",namespace="default",route="app",rule="0"}"#
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
}

#[test]
fn an_emptied_file_keeps_the_last_good_configuration() {
    let dir = test_dir("emptied");
    let file = dir.join("gateway.yaml");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    std::fs::write(&file, config(port, backend, "/v1")).unwrap();
    let _server = serve(&dir, admin, &[]);
    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });

    // `: > gateway.yaml`: refused, the listener stays and so does readiness.
    std::fs::write(&file, "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(port, "/v1/x").map(|r| r.0), Some(200));
    assert_eq!(get(admin, "/readyz").map(|r| r.0), Some(200));

    // Written again: live.
    std::fs::write(&file, config(port, backend, "/v2")).unwrap();
    wait_for("the rewritten route", || {
        get(port, "/v2/x").is_some_and(|(s, _)| s == 200)
    });
}

#[test]
fn rewriting_a_file_in_two_steps_never_takes_the_listener_down() {
    let dir = test_dir("rewrites");
    let file = dir.join("gateway.yaml");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    let yaml = config(port, backend, "/v1");
    std::fs::write(&file, &yaml).unwrap();
    let _server = serve(&dir, admin, &[]);
    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                if get(port, "/v1/x").is_none_or(|(s, _)| s != 200) {
                    failed += 1;
                }
            }
            (sent, failed)
        })
    };
    // What a shell's `>` and many editors do: truncate, then write (a bounded 40 rounds,
    // each leaving the file empty for a while).
    for i in 0..40u64 {
        let f = std::fs::File::create(&file).unwrap(); // truncates
        std::thread::sleep(Duration::from_millis(5 + i % 30));
        use std::io::Write as _;
        let mut f = f;
        f.write_all(yaml.as_bytes()).unwrap();
        drop(f);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = client.join().unwrap();
    assert!(sent > 20, "only {sent} requests sent");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during 40 rewrites"
    );
}

#[test]
fn removing_every_gateway_is_refused_until_its_file_is_deleted() {
    let dir = test_dir("no-gateway");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    let yaml = config(port, backend, "/v1");
    let (class_and_gateway, rest) =
        yaml.split_at(yaml.find("---\napiVersion: gateway.loom.dev").unwrap());
    let class = &class_and_gateway[..class_and_gateway.find("---").unwrap()];
    std::fs::write(dir.join("class.yaml"), class).unwrap();
    std::fs::write(dir.join("gateway.yaml"), &class_and_gateway[class.len()..]).unwrap();
    std::fs::write(dir.join("routes.yaml"), rest).unwrap();
    let _server = serve(&dir, admin, &[]);
    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });

    // The Gateway's file keeps only a comment and a ConfigMap: no Gateway is left, refused.
    std::fs::write(
        dir.join("gateway.yaml"),
        "# no gateway here\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(port, "/v1/x").map(|r| r.0), Some(200));

    // Deleting the file is the signal: the Gateway goes, and its listener with it.
    std::fs::remove_file(dir.join("gateway.yaml")).unwrap();
    wait_for("the listener to close", || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

#[test]
fn readyz_is_503_naming_the_address_while_a_listener_cannot_bind() {
    let dir = test_dir("port-in-use");
    let occupied = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let (admin, backend) = (free_port(), backend());
    std::fs::write(dir.join("gateway.yaml"), config(port, backend, "/v1")).unwrap();
    let _server = serve(&dir, admin, &[]);
    wait_for("the admin listener", || get(admin, "/readyz").is_some());
    wait_for("readiness to name the address", || {
        get(admin, "/readyz")
            .is_some_and(|(s, body)| s == 503 && body.contains(&format!("127.0.0.1:{port}")))
    });
    drop(occupied);
    wait_for("the listener to bind", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(get(admin, "/readyz").map(|r| r.0), Some(200));
}

#[test]
fn slowloris_under_a_low_descriptor_limit_denies_no_service_past_the_head_deadline() {
    let dir = test_dir("slowloris");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    std::fs::write(dir.join("gateway.yaml"), config(port, backend, "/v1")).unwrap();
    // `loom serve` with 256 file descriptors, as the probe that found this ran it.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec '{}' serve -f '{}' --bind 127.0.0.1 --threads 1 --admin 127.0.0.1:{admin} --header-timeout-ms 1000",
            env!("CARGO_BIN_EXE_loom"),
            dir.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });

    // 300 clients that start a request head and never finish it.
    let attackers: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            let _ = s.write_all(b"GET /v1/x HTTP/1.1\r\nHost: app.example.com\r\n");
            Some(s)
        })
        .collect();
    let started = Instant::now();
    // The admin listener keeps its descriptors: readiness answers during the attack.
    assert_eq!(get(admin, "/readyz").map(|r| r.0), Some(200));
    // Within the head deadline (1 s) and a margin, a real client is served again.
    wait_for("a request during the attack", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
    let served_after = started.elapsed();
    assert!(
        served_after < Duration::from_secs(5),
        "served after {served_after:?}"
    );
    drop(attackers);
}

#[test]
fn an_admin_address_in_use_is_a_startup_error() {
    let dir = test_dir("admin-in-use");
    let occupied = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = occupied.local_addr().unwrap().port();
    std::fs::write(
        dir.join("gateway.yaml"),
        config(free_port(), backend(), "/v1"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loom"))
        .args(["serve", "-f", dir.to_str().unwrap(), "--bind", "127.0.0.1"])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("admin listener 127.0.0.1:{admin}")),
        "{stderr}"
    );
}

#[test]
fn sigterm_drains_readiness_fails_and_requests_in_flight_finish() {
    let dir = test_dir("drain");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    std::fs::write(dir.join("gateway.yaml"), config(port, backend, "/v1")).unwrap();
    // A grace period with room for a loaded machine (this binary's other tests run beside
    // it, one of them holding 500 connections): the late request must land inside it.
    let server = serve(&dir, admin, &["--grace-period", "6"]);
    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
    let in_flight = std::thread::spawn(move || get(port, "/v1/slow"));
    // A connection that has sent nothing yet.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let terminated = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Readiness fails at once, and the admin listener keeps saying so.
    wait_for("/readyz to fail", || {
        get(admin, "/readyz").is_some_and(|(s, _)| s == 503)
    });
    // The idle connection is closed (long before its 15 s head deadline).
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        matches!(idle.read(&mut [0u8; 16]), Ok(0)),
        "the idle connection stayed open"
    );
    // A request that arrives during the drain is still served, and told to close.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /v1/late HTTP/1.1\r\nHost: app.example.com\r\n\r\n").unwrap();
    let mut late = String::new();
    let _ = s.read_to_string(&mut late);
    assert!(late.starts_with("HTTP/1.1 200"), "{late}");
    assert!(
        late.to_ascii_lowercase().contains("connection: close"),
        "{late}"
    );
    // So is one whose bytes come a little after its connection (they were on their way): a
    // connection is closed as idle only after a quiet second.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    write!(s, "GET /v1/later HTTP/1.1\r\nHost: app.example.com\r\n\r\n").unwrap();
    let mut later = String::new();
    let _ = s.read_to_string(&mut later);
    assert!(later.starts_with("HTTP/1.1 200"), "{later}");
    // The request in flight when the signal came finishes.
    assert_eq!(
        in_flight.join().unwrap(),
        Some((200, "backend /v1/slow".to_owned()))
    );
    // And the process ends after the grace period.
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(terminated.elapsed() >= Duration::from_secs(6));
}

/// The ClientTrafficPolicy of issue #10, verbatim.
const STRICT_CLIENTS: &str = r#"apiVersion: gateway.loom.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: strict-clients, namespace: default}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: web}  # or targetRefs: [...]
  headerTimeout: 10s     # whole HTTP/1 request head
  idleTimeout: 30s       # keep-alive idle (HTTP/1 between requests, HTTP/2 without streams), >= 1s
  maxConnections: 500    # per listener port
"#;

#[test]
fn a_client_traffic_policy_limits_its_listeners_port_instead_of_the_flags() {
    let dir = test_dir("client-traffic");
    let (port, admin, backend) = (free_port(), free_port(), backend());
    let gateway = config(port, backend, "/v1")
        .replace("name: gw,", "name: edge,")
        .replace("name: http,", "name: web,")
        .replace("parentRefs: [{name: gw}]", "parentRefs: [{name: edge}]");
    std::fs::write(
        dir.join("gateway.yaml"),
        format!("{gateway}---\n{STRICT_CLIENTS}"),
    )
    .unwrap();
    // Enough descriptors that the process budget (half of `ulimit -n` less 64) is not what
    // refuses the 501st connection.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 4096 2>/dev/null; exec '{}' serve -f '{}' --bind 127.0.0.1 --threads 1 --admin 127.0.0.1:{admin}",
            env!("CARGO_BIN_EXE_loom"),
            dir.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    wait_for("the first route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });

    // Accepted, and /config shows the port's limits.
    let config: serde_json::Value =
        serde_json::from_str(&get(admin, "/config").unwrap().1).unwrap();
    let accepted = &config["status"]["ClientTrafficPolicy default/strict-clients"]["ancestors"][0]
        ["conditions"][0];
    assert_eq!(
        (&accepted["type"], &accepted["status"]),
        (&"Accepted".into(), &"True".into()),
        "{accepted}"
    );
    assert_eq!(
        config["snapshot"]["default/edge"]["ports"][port.to_string()]["client"],
        serde_json::json!({"policy": "ClientTrafficPolicy default/strict-clients",
            "headerTimeout": "10s", "idleTimeout": "30s", "maxConnections": 500})
    );

    // 500 clients that send nothing hold the port's 500 places (the flag's default is
    // 10,000); the 501st connection is closed at once.
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let closed = match extra.read(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "the 501st connection was admitted");

    // The silent ones are closed at the policy's header timeout (10 s; the flag's default is
    // 15 s), and the port serves again.
    let first = &mut silent[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = first.read(&mut [0u8; 1]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(9_500) && took < Duration::from_secs(14),
        "closed after {took:?}"
    );
    drop(silent);
    wait_for("a request after the silent clients", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
}

/// Runs `loom serve` on `config` with `args`, sends one request and returns the log lines
/// written until its access-log line appeared.
fn log_of_one_request(name: &str, args: &[&str]) -> (u16, Vec<String>) {
    let dir = test_dir(name);
    let (port, admin, backend) = (free_port(), free_port(), backend());
    std::fs::write(dir.join("gateway.yaml"), config(port, backend, "/v1")).unwrap();
    let log = dir.join("stderr.log");
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_loom"))
            .args(["serve", "-f", dir.join("gateway.yaml").to_str().unwrap()])
            .args(["--bind", "127.0.0.1", "--threads", "1"])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the route", || {
        get(port, "/v1/x").is_some_and(|(s, _)| s == 200)
    });
    let mut lines = vec![];
    wait_for("the access log line", || {
        lines = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.iter().any(|l| l.contains("/v1/x"))
    });
    (backend, lines)
}

#[test]
fn json_logs_are_one_object_per_line_and_the_access_log_has_a_field_per_fact() {
    let (backend, lines) = log_of_one_request("json-log", &["--log-format", "json"]);
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // Loom's own messages are there too, with level and target.
    assert!(
        objects
            .iter()
            .any(|o| o["level"] == "INFO"
                && o["target"].as_str().is_some_and(|t| t.starts_with("loom"))),
        "{lines:#?}"
    );
    let access = objects
        .iter()
        .find(|o| o["target"] == "access" && o["path"] == "/v1/x")
        .unwrap_or_else(|| panic!("no access line: {lines:#?}"));
    assert_eq!(access["method"], "GET", "{access}");
    assert_eq!(access["host"], "app.example.com", "{access}");
    assert_eq!(access["status"], 200, "{access}");
    assert_eq!(access["route_kind"], "HTTPRoute", "{access}");
    assert_eq!(access["route"], "default/app", "{access}");
    assert_eq!(access["rule"], "0", "{access}");
    assert_eq!(access["backend_kind"], "Backend", "{access}");
    assert_eq!(access["backend"], "default/app", "{access}");
    assert_eq!(
        access["endpoint"],
        format!("127.0.0.1:{backend}"),
        "{access}"
    );
    assert_eq!(access["bytes"], "backend /v1/x".len(), "{access}");
    assert!(
        access["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{access}"
    );
    assert!(access["duration_ms"].as_f64().unwrap() > 0.0, "{access}");
    assert!(access["timestamp"].is_string(), "{access}");
    assert!(access.get("error").is_none(), "{access}");
}

#[test]
fn text_logs_write_the_access_log_as_key_value_pairs() {
    let (backend, lines) = log_of_one_request("text-log", &[]);
    let access = lines
        .iter()
        .find(|l| l.contains(" access: ") && l.contains("/v1/x"))
        .unwrap_or_else(|| panic!("no access line: {lines:#?}"));
    for field in [
        "method=GET".to_owned(),
        "status=200".to_owned(),
        "route=default/app".to_owned(),
        format!("endpoint=127.0.0.1:{backend}"),
    ] {
        assert!(access.contains(&field), "{field} missing in {access}");
    }
    assert!(!lines.iter().any(|l| l.starts_with('{')), "{lines:#?}");
}
