//! ClientTrafficPolicy: a port's client limits from a policy instead of the server's defaults
//! (the harness's short head and idle deadlines, 10,000 connections), changed by a publish
//! without closing the listening socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use loom_pingora::handle::Published;

use crate::backends::echo_backend;
use crate::clients::{free_port, get, wait_for};
use crate::harness::{HEAD_LIMITS, exclusive, publish, publish_owned, server, start_web, web};
use crate::reload::listening_socket;

/// A ClientTrafficPolicy `{name}-clients` on listener `section` of Gateway `name`, with
/// `fields` (flow-mapping entries of the spec).
fn policy(name: &str, section: &str, fields: &str) -> String {
    format!(
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {{name: {name}-clients, namespace: default}}\n\
         spec: {{targetRef: {{group: gateway.networking.k8s.io, kind: Gateway, name: {name}, \
         sectionName: {section}}}, {fields}}}\n"
    )
}

/// Gateway `name` with listener `limited` on port `limited` and `open` on port `open`, both
/// routing `web.example.com` to an echo backend at `backend`, and a ClientTrafficPolicy on
/// `limited` with `fields`.
fn two_ports(name: &str, limited: u16, open: u16, backend: u16, fields: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: loom
  listeners:
  - {{name: limited, port: {limited}, protocol: HTTP}}
  - {{name: open, port: {open}, protocol: HTTP}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-a, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{backend}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}-web, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  hostnames: [web.example.com]
  rules:
  - backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-a}}]
---
{policy}"#,
        policy = policy(name, "limited", fields),
    )
}

/// Waits until the listeners have been reconciled with `published` (or a later publish).
fn wait_applied(published: &Published) {
    wait_for(|| server().listening().borrow().generation >= published.generation);
}

/// A keep-alive connection that got its answer and stays open; `None` when Loom closed it
/// without one (refused).
fn held(port: u16) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /held HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"a /held web.example.com ") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(s)
}

/// Whether a connection to `port` is closed without an answer.
fn refused(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The write may already fail: the connection is closed as soon as it is accepted.
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n");
    matches!(s.read(&mut [0u8; 1]), Ok(0) | Err(_))
}

/// A connection held on `port` once one is admitted (the place of a connection that just
/// closed may take a moment to free).
fn hold(port: u16) -> TcpStream {
    let mut held_one = None;
    wait_for(|| {
        held_one = held(port);
        held_one.is_some()
    });
    held_one.unwrap()
}

#[test]
fn an_idle_timeout_from_a_policy_closes_idle_connections_sooner_than_the_default() {
    let name = "client-policy-idle";
    let w = start_web(name);
    let socket = listening_socket(w.port).expect("a listening socket");
    // Published while the listener runs: the next connection gets the policy's idle timeout.
    let published = publish(
        name,
        &format!(
            "{}\n---\n{}",
            web(name, w.port, w.a, w.b, ""),
            policy(name, "http", "idleTimeout: 1s")
        ),
    );
    let mine = format!("{name}-clients");
    crate::harness::assert_healthy(&published, |k| k.name == mine);
    wait_applied(&published);
    let _quiet = exclusive();
    let mut s = TcpStream::connect(("127.0.0.1", w.port)).unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        .unwrap();
    let (took, got) = crate::hardening::until_closed(&mut s);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        took >= Duration::from_millis(900) && took < HEAD_LIMITS.idle - Duration::from_millis(200),
        "closed after {took:?}, the server's default being {:?}",
        HEAD_LIMITS.idle
    );
    assert_eq!(listening_socket(w.port), Some(socket));
}

#[test]
fn max_connections_one_refuses_a_second_connection_on_its_port_only() {
    let name = "client-policy-max";
    let (limited, open, backend) = (free_port(), free_port(), echo_backend("a"));
    // A long idle timeout: held connections stay open for the whole test.
    let (_owned, published) = publish_owned(
        name,
        &two_ports(
            name,
            limited,
            open,
            backend,
            "maxConnections: 1, idleTimeout: 30s",
        ),
    );
    crate::harness::assert_healthy(&published, |k| k.name.starts_with(name));
    wait_for(|| get(open, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));
    let first = hold(limited);
    assert!(refused(limited), "a second connection was admitted");
    // The other port of the same Gateway keeps the default limit.
    let others: Vec<TcpStream> = (0..3).map(|_| held(open).expect("admitted")).collect();
    drop(others);
    // The place is free again once the first connection ends.
    drop(first);
    let _again = hold(limited);
}

#[test]
fn a_republished_policy_applies_to_the_next_connection_on_the_same_socket() {
    let name = "client-policy-republish";
    let (limited, open, backend) = (free_port(), free_port(), echo_backend("a"));
    let (_owned, _) = publish_owned(
        name,
        &two_ports(
            name,
            limited,
            open,
            backend,
            "maxConnections: 1, idleTimeout: 30s",
        ),
    );
    wait_for(|| get(open, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));
    let socket = listening_socket(limited).expect("a listening socket");
    let first = hold(limited);
    assert!(refused(limited));
    let published = publish(
        name,
        &two_ports(
            name,
            limited,
            open,
            backend,
            "maxConnections: 2, idleTimeout: 30s",
        ),
    );
    wait_applied(&published);
    // The first connection is still open, and a second one is admitted now; a third is not.
    let second = held(limited).expect("the raised limit admits a second connection");
    assert!(refused(limited), "a third connection was admitted");
    assert_eq!(listening_socket(limited), Some(socket));
    drop((first, second));
}
