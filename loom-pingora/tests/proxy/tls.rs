//! HTTPS (certificate by SNI, 421 for a Host outside the SNI's listener), TLS passthrough and
//! TLS terminate on one Gateway.

use std::io::Write;
use std::net::TcpStream;

use rustls::pki_types::CertificateDer;

use crate::backends::{echo_backend, tcp_echo, tls_backend};
use crate::clients::{certificate, free_port, https_get, indent, tls_client, wait_for};
use crate::harness::{Owned, publish_owned};

struct Edge {
    _owned: Owned,
    https_port: u16,
    tls_port: u16,
    root: CertificateDer<'static>,
}

/// Gateway `{name}`: HTTPS listeners for a.example.com and b.example.com on one port, routed
/// to an echo backend; a TLS port with db.example.com passed through to a TLS backend and
/// plain.example.com terminated to a TCP echo backend. Waits until HTTPS answers.
fn edge(name: &str) -> Edge {
    let (cert, key, root) = certificate(&[
        "a.example.com",
        "b.example.com",
        "db.example.com",
        "plain.example.com",
    ]);
    let (https_port, tls_port) = (free_port(), free_port());
    let (echo, passthrough_backend, terminate_backend) = (
        echo_backend("a"),
        tls_backend(&cert, &key),
        tcp_echo("terminated"),
    );
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: {name}-cert, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{cert}  tls.key: |
{key}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: loom
  listeners:
  - {{name: a, port: {https_port}, protocol: HTTPS, hostname: a.example.com, tls: {{certificateRefs: [{{name: {name}-cert}}]}}}}
  - {{name: b, port: {https_port}, protocol: HTTPS, hostname: b.example.com, tls: {{certificateRefs: [{{name: {name}-cert}}]}}}}
  - {{name: pass, port: {tls_port}, protocol: TLS, hostname: db.example.com, tls: {{mode: Passthrough}}}}
  - {{name: term, port: {tls_port}, protocol: TLS, hostname: plain.example.com, tls: {{mode: Terminate, certificateRefs: [{{name: {name}-cert}}]}}}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-echo, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{echo}"]}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-passthrough, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{passthrough_backend}"], protocol: tcp}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-terminated, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{terminate_backend}"], protocol: tcp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}-secure, namespace: default}}
spec:
  parentRefs: [{{name: {name}, sectionName: a}}, {{name: {name}, sectionName: b}}]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-echo}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: {name}-pass, namespace: default}}
spec:
  parentRefs: [{{name: {name}, sectionName: pass}}]
  hostnames: [db.example.com]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-passthrough}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: {name}-term, namespace: default}}
spec:
  parentRefs: [{{name: {name}, sectionName: term}}]
  hostnames: [plain.example.com]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-terminated}}]}}]
"#,
        cert = indent(&cert),
        key = indent(&key),
    );
    let (owned, published) = publish_owned(name, &yaml);
    crate::harness::assert_healthy(&published, |k| k.name.starts_with(name));
    wait_for(|| {
        https_get(https_port, "a.example.com", "a.example.com", &root).is_ok_and(|(s, _)| s == 200)
    });
    wait_for(|| TcpStream::connect(("127.0.0.1", tls_port)).is_ok());
    Edge {
        _owned: owned,
        https_port,
        tls_port,
        root,
    }
}

#[test]
fn https_certificate_is_chosen_by_sni() {
    let e = edge("tls-sni");
    let (status, body) =
        https_get(e.https_port, "b.example.com", "b.example.com", &e.root).unwrap();
    assert_eq!((status, body.as_str()), (200, "a /tls b.example.com "));
}

#[test]
fn https_host_outside_the_sni_listener_is_421() {
    let e = edge("tls-misdirected");
    assert_eq!(
        https_get(e.https_port, "a.example.com", "b.example.com", &e.root)
            .unwrap()
            .0,
        421
    );
}

#[test]
fn tls_passthrough_hands_the_backend_handshake_to_the_client() {
    let e = edge("tls-passthrough");
    let mut s = tls_client(e.tls_port, "db.example.com", &e.root).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut s), &mut line).unwrap();
    assert_eq!(line, "tls-backend\n");
}

#[test]
fn tls_terminate_splices_plaintext_to_the_backend() {
    let e = edge("tls-terminate");
    let mut s = tls_client(e.tls_port, "plain.example.com", &e.root).unwrap();
    s.write_all(b"HELLO\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut s), &mut line).unwrap();
    assert_eq!(line, "terminated: HELLO\n");
}
