//! What the tests that run `loom serve` as a process share: free ports, the process, a
//! directory of its own, waiting with a deadline.

#![allow(dead_code)] // each test binary uses its own part

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on (now).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ok` every 20 ms until it holds; fails the test after 20 s.
pub(crate) fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
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
        .stderr(Stdio::null())
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

/// A directory of its own for one test.
pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loom-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
