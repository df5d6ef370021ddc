//! Requests go where loom-core decides.

use crate::clients::get;
use crate::harness::start_web;
use std::time::Duration;

#[test]
fn routes_by_host_to_the_catch_all_rule_with_path_and_query_intact() {
    let web = start_web("routing-catch-all");
    let r = get(web.port, "web.example.com", "/hello?q=1", "").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "a /hello?q=1 web.example.com ")
    );
}

#[test]
fn unknown_host_is_404() {
    let web = start_web("routing-unknown-host");
    assert_eq!(
        get(web.port, "other.example.com", "/", "").unwrap().status,
        404
    );
}

#[test]
fn malformed_percent_escape_is_400() {
    let web = start_web("routing-bad-escape");
    assert_eq!(
        get(web.port, "web.example.com", "/%zz", "").unwrap().status,
        400
    );
}

#[test]
fn the_backend_learns_the_client_address_scheme_and_host_and_not_what_the_client_claims() {
    let web = start_web("routing-forwarded");
    let r = get(
        web.port,
        "web.example.com",
        "/",
        "X-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Host: evil.example.com\r\n",
    )
    .unwrap();
    assert_eq!(
        r.header("x-seen-forwarded"),
        Some("127.0.0.1|http|web.example.com")
    );
}

#[test]
fn hop_by_hop_headers_stay_on_the_client_connection() {
    let web = start_web("routing-hop-by-hop");
    let hop_by_hop = "Connection: close, X-Private\r\nKeep-Alive: timeout=5\r\n\
        Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\n\
        Proxy-Authorization: Basic dXNlcjpwdw==\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n";
    for extra in ["", hop_by_hop] {
        let r = get(
            web.port,
            "web.example.com",
            "/",
            &format!("X-Kept: yes\r\n{extra}"),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{extra}");
        let seen: Vec<&str> = r.header("x-seen-headers").unwrap().split(',').collect();
        assert!(seen.contains(&"x-kept"), "{seen:?}");
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "proxy-authorization",
            "http2-settings",
        ] {
            assert!(!seen.contains(&name), "{name} was forwarded: {seen:?}");
        }
    }
}

/// Gateway `{name}` routing `/` to a Loom Backend with these endpoints.
fn backend_endpoints(name: &str, endpoints: &str) -> (u16, crate::harness::Owned) {
    let port = crate::clients::free_port();
    let yaml = format!(
        r#"
{gateway}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}, namespace: default}}
spec: {{endpoints: [{endpoints}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}}}]}}]
"#,
        gateway = crate::harness::gateway(name, port),
    );
    let (owned, _) = crate::harness::publish_owned(name, &yaml);
    crate::clients::wait_for(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    (port, owned)
}

#[test]
fn an_endpoint_named_by_dns_is_resolved_and_served() {
    use std::net::ToSocketAddrs;
    // The echo backend listens on 127.0.0.1 only.
    if ("localhost", 80)
        .to_socket_addrs()
        .is_ok_and(|mut a| a.any(|a| !a.ip().is_loopback() || a.is_ipv6()))
    {
        return eprintln!("skipped: localhost resolves to more than 127.0.0.1 here");
    }
    let echo = crate::backends::echo_backend("dns");
    let (port, _owned) =
        backend_endpoints("routing-dns-endpoint", &format!("\"localhost:{echo}\""));
    let r = get(port, "web.example.com", "/by-name", "").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "dns /by-name web.example.com ")
    );
}

#[test]
fn a_backend_connection_is_kept_alive_and_reused_by_the_next_requests() {
    let (echo, accepted) = crate::backends::counting_echo_backend("reuse");
    let (port, _owned) =
        backend_endpoints("routing-backend-reuse", &format!("\"127.0.0.1:{echo}\""));
    for i in 0..5 {
        // Each client connection closes after its response; the backend's stays pooled (its
        // release may trail the response by a moment, hence the pause).
        std::thread::sleep(Duration::from_millis(20));
        let r = get(port, "web.example.com", &format!("/{i}"), "").unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("reuse /{i} web.example.com ").as_str())
        );
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn a_backend_connection_its_server_closed_while_idle_is_closed_and_not_reused() {
    // Closed once the connection is in the proxy's pool (a FIN that comes with the response
    // makes the proxy drop the connection instead of pooling it).
    let (backend, closed) = crate::backends::closing_backend(Duration::from_millis(300));
    let (port, _owned) = backend_endpoints(
        "routing-backend-closed",
        &format!("\"127.0.0.1:{backend}\""),
    );
    let r = get(port, "web.example.com", "/first", "").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "closing"));
    // The pooled connection's server closed it: the proxy closes its side within a sweep of
    // its idle connections (one a second), not when the next request happens to come.
    let after = closed
        .recv_timeout(Duration::from_secs(15))
        .expect("the backend reports on its first connection");
    let after = after.expect("the proxy did not close the connection its backend closed");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    // The next request goes over a new connection, not the closed one (a 502).
    let r = get(port, "web.example.com", "/second", "").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "closing"));
}

#[test]
fn a_backend_connection_closed_while_idle_is_not_reused_by_the_next_request() {
    let (backend, closed) = crate::backends::closing_backend(Duration::from_millis(50));
    let (port, _owned) = backend_endpoints(
        "routing-backend-closed-reuse",
        &format!("\"127.0.0.1:{backend}\""),
    );
    // Requests 150 ms apart, all before the first sweep of the idle connections (a second
    // after the first one was pooled): each takes its predecessor's connection from the pool,
    // finds it closed by the backend, and connects again.
    for i in 0..5 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        let r = get(port, "web.example.com", &format!("/{i}"), "").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "closing"), "request {i}");
    }
    for i in 0..5 {
        let after = closed
            .recv_timeout(Duration::from_secs(15))
            .expect("a report");
        assert!(
            after.is_some(),
            "connection {i} was not closed by the proxy"
        );
    }
}

#[test]
fn unusable_endpoints_answer_500_and_never_panic() {
    for (i, endpoint) in ["127.0.0.1:99999", "not-an-address", "bad host:80"]
        .iter()
        .enumerate()
    {
        let (port, _owned) = backend_endpoints(
            &format!("routing-bad-endpoint-{i}"),
            &format!("\"{endpoint}\""),
        );
        for _ in 0..3 {
            let r = get(port, "web.example.com", "/", "").unwrap();
            assert_eq!(r.status, 500, "{endpoint}");
        }
    }
}
