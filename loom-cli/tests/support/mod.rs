//! What the tests that run `loom serve` as a process share: free ports, the process, a
//! directory of its own, waiting with a deadline.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing uses (now), over TCP and UDP alike: an HTTPS listener's port is
/// also its HTTP/3 (UDP) port, and the ephemeral UDP port of a client elsewhere (a QUIC
/// client in another test) can be a TCP port the system hands out as free.
pub(crate) fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `ok` every 20 ms until it holds; fails the test after 20 s.
pub(crate) fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_within(what, Duration::from_secs(20), ok);
}

/// Polls `ok` every 20 ms until it holds; fails the test after `limit`.
pub(crate) fn wait_within(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `loom serve`, killed on drop.
pub(crate) struct Server(pub(crate) Child);

/// `loom serve -f path` on loopback with one worker thread, its admin listener on `admin`.
pub(crate) fn serve(path: &std::path::Path, admin: u16, extra: &[&str]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_loom"))
        .args([
            "serve",
            "-f",
            path.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
            "--threads",
            "1",
        ])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("LOOM_TEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    Server(child)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory of its own for one test, removed when the test is done with it.
pub(crate) fn test_dir(name: &str) -> TestDir {
    let dir = std::env::temp_dir().join(format!("loom-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TestDir(dir)
}

/// See [`test_dir`]. Kept when `LOOM_TEST_KEEP` is set, to look at after a failure.
pub(crate) struct TestDir(std::path::PathBuf);

impl std::ops::Deref for TestDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("LOOM_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `GET path` on the admin listener: status and body.
pub(crate) fn admin_get(admin: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_owned()))
}

/// The value of the `/metrics` line on `admin` that starts with `prefix` (0 when absent).
pub(crate) fn metric(admin: u16, prefix: &str) -> f64 {
    admin_get(admin, "/metrics")
        .map(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        })
        .unwrap_or(0.0)
}

/// Waits until `loom serve` on `admin` is ready: its configuration published and every
/// listener it asks for open.
pub(crate) fn wait_ready(admin: u16) {
    wait_for("readiness", || {
        admin_get(admin, "/readyz").is_some_and(|(s, _)| s == 200)
    });
}

/// A response: status, headers (lower-case names), body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One `GET` (Host `app.example.com`) on a connection of its own.
pub(crate) fn request(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    try_request(port, path, headers).expect("connect")
}

/// The status of `GET path` on `port`, if something listens there.
pub(crate) fn status(port: u16, path: &str) -> Option<u16> {
    try_request(port, path, &[]).map(|r| r.status)
}

/// [`request`], `None` when nothing listens on `port`.
pub(crate) fn try_request(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}
