//! HTTP/2 with prior knowledge (h2c) on the same cleartext port, with curl as the peer.

use crate::harness::start_web;

#[test]
fn h2_prior_knowledge_is_served_on_the_cleartext_port() {
    let web = start_web("h2c");
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
            &format!("http://127.0.0.1:{}/h2c", web.port),
        ])
        .output();
    match curl {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200"),
        Err(e) => eprintln!("skipping the h2c check: curl did not run: {e}"),
    }
}
