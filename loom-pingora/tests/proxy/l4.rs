//! TCPRoute and UDPRoute traffic.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::backends::{tcp_echo, udp_echo};
use crate::clients::{free_port, wait_for};
use crate::harness::{Owned, publish_owned};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Gateway `{name}` with one listener of `protocol` on `port`, routed by a `{route_kind}` to a
/// Backend of `backend_protocol` at `backend`; published until the result is dropped.
fn l4_gateway(
    name: &str,
    protocol: &str,
    port: u16,
    route_kind: &str,
    backend_protocol: &str,
    backend: u16,
) -> Owned {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: loom
  listeners: [{{name: l4, port: {port}, protocol: {protocol}}}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{backend}"], protocol: {backend_protocol}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: {route_kind}
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {name}, sectionName: l4}}]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}}}]}}]
"#
    );
    let (owned, published) = publish_owned(name, &yaml);
    crate::harness::assert_healthy(&published, |k| k.name == name);
    owned
}

#[test]
fn tcp_route_carries_bytes_to_the_backend_and_back() {
    let port = free_port();
    let _owned = l4_gateway("l4-tcp", "TCP", port, "TCPRoute", "tcp", tcp_echo("tcp"));
    wait_for(|| TcpStream::connect(("127.0.0.1", port)).is_ok());
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"PING\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&tcp), &mut line).unwrap();
    assert_eq!(line, "tcp: PING\n");
}

#[test]
fn udp_route_carries_a_datagram_each_way() {
    let port = free_udp_port();
    let _owned = l4_gateway("l4-udp", "UDP", port, "UDPRoute", "udp", udp_echo());
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    wait_for(|| {
        client.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        client.recv(&mut buf).is_ok_and(|n| &buf[..n] == b"udp: hi")
    });
}
