//! BackendTLSPolicy: TLS to backends, verified against the policy's CA and hostname, or its
//! subjectAltNames (the hostname then only the SNI).

use std::io::{Read, Write};

use loom_core::input::Kind;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

use crate::backends::tls_server;
use crate::clients::{free_port, get, indent, wait_for};
use crate::harness::{Owned, publish_owned};

/// A CA (PEM) and an HTTPS backend whose certificate it signed, with these DNS and URI
/// subjectAltNames; the backend answers `tls-backend <sni>`.
fn tls_http_backend(dns: &[&str], uris: &[&str]) -> (String, u16) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
    for u in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    let cert = params.signed_by(&key, &ca).unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let port = tls_server(vec![cert.der().clone()], key_der, |s| {
        let mut buf = [0u8; 4096];
        if s.read(&mut buf).unwrap_or(0) == 0 {
            return;
        }
        let sni = s.conn.server_name().unwrap_or("-").to_owned();
        let body = format!("tls-backend {sni}");
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.flush();
        s.conn.send_close_notify();
        let _ = s.flush();
    });
    (ca.pem(), port)
}

/// Gateway `{name}` routing everything to Service `{name}` (the backend at `backend`) with a
/// BackendTLSPolicy of `hostname` and `sans` (YAML list items).
fn with_policy(name: &str, ca: &str, backend: u16, hostname: &str, sans: &str) -> (u16, Owned) {
    let port = free_port();
    let yaml = format!(
        r#"
{gateway}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: https, port: 443, targetPort: {backend}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: https, port: {backend}}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}-ca, namespace: default}}
data:
  ca.crt: |
{ca}---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {name}}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: {name}-ca}}]
    hostname: {hostname}
    subjectAltNames: [{sans}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  rules: [{{backendRefs: [{{name: {name}, port: 443}}]}}]
"#,
        gateway = crate::harness::gateway(name, port),
        ca = indent(ca).replace("      ", "    "),
    );
    let (owned, published) = publish_owned(name, &yaml);
    crate::harness::assert_healthy(&published, |k| {
        k.name == name && matches!(k.kind, Kind::HttpRoute | Kind::BackendTlsPolicy)
    });
    wait_for(|| get(port, "any.example.com", "/", "").is_ok_and(|r| r.status != 404));
    (port, owned)
}

#[test]
fn the_certificate_must_carry_the_policy_hostname() {
    let (ca, backend) = tls_http_backend(&["backend.internal"], &[]);
    let (port, _owned) = with_policy("btls-hostname", &ca, backend, "backend.internal", "");
    let r = get(port, "any.example.com", "/", "").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "tls-backend backend.internal")
    );
}

#[test]
fn a_certificate_without_the_policy_hostname_is_refused() {
    let (ca, backend) = tls_http_backend(&["other.internal"], &[]);
    let (port, _owned) = with_policy("btls-wrong-host", &ca, backend, "backend.internal", "");
    assert_eq!(get(port, "any.example.com", "/", "").unwrap().status, 502);
}

#[test]
fn a_dns_subject_alt_name_is_verified_instead_of_the_hostname_which_stays_the_sni() {
    let (ca, backend) = tls_http_backend(&["san.internal"], &[]);
    let (port, _owned) = with_policy(
        "btls-san-dns",
        &ca,
        backend,
        "sni.example.com",
        "{type: Hostname, hostname: san.internal}",
    );
    let r = get(port, "any.example.com", "/", "").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "tls-backend sni.example.com")
    );
}

#[test]
fn a_wildcard_certificate_matches_a_dns_subject_alt_name() {
    let (ca, backend) = tls_http_backend(&["*.svc.internal"], &[]);
    let (port, _owned) = with_policy(
        "btls-san-wildcard",
        &ca,
        backend,
        "sni.example.com",
        "{type: Hostname, hostname: a.svc.internal}",
    );
    assert_eq!(get(port, "any.example.com", "/", "").unwrap().status, 200);
}

#[test]
fn a_uri_subject_alt_name_is_matched_exactly() {
    let uri = "spiffe://cluster.local/ns/default/sa/backend";
    let (ca, backend) = tls_http_backend(&["unrelated.internal"], &[uri]);
    let (port, _owned) = with_policy(
        "btls-san-uri",
        &ca,
        backend,
        "sni.example.com",
        &format!("{{type: URI, uri: \"{uri}\"}}"),
    );
    assert_eq!(get(port, "any.example.com", "/", "").unwrap().status, 200);
}

#[test]
fn a_certificate_matching_none_of_the_subject_alt_names_is_refused() {
    let (ca, backend) = tls_http_backend(&["sni.example.com"], &["spiffe://x/y"]);
    let (port, _owned) = with_policy(
        "btls-san-none",
        &ca,
        backend,
        "sni.example.com",
        "{type: Hostname, hostname: san.internal}, {type: URI, uri: \"spiffe://x/z\"}",
    );
    // The certificate carries the hostname, but with subjectAltNames only they count.
    assert_eq!(get(port, "any.example.com", "/", "").unwrap().status, 502);
}

#[test]
fn a_certificate_from_another_ca_is_refused_whatever_its_names() {
    let (_, backend) = tls_http_backend(&["san.internal"], &[]);
    let (other_ca, _) = tls_http_backend(&["x"], &[]);
    let (port, _owned) = with_policy(
        "btls-san-other-ca",
        &other_ca,
        backend,
        "sni.example.com",
        "{type: Hostname, hostname: san.internal}",
    );
    assert_eq!(get(port, "any.example.com", "/", "").unwrap().status, 502);
}

#[test]
fn a_wildcard_subject_alt_name_must_be_in_the_certificate_as_written() {
    let san = "{type: Hostname, hostname: \"*.svc.internal\"}";
    let (ca, backend) = tls_http_backend(&["*.svc.internal"], &[]);
    let (port, _owned) = with_policy("btls-san-wild-ok", &ca, backend, "sni.example.com", san);
    assert_eq!(get(port, "any.example.com", "/", "").unwrap().status, 200);
    let (ca, backend) = tls_http_backend(&["a.svc.internal"], &[]);
    let (port, _owned) = with_policy("btls-san-wild-no", &ca, backend, "sni.example.com", san);
    assert_eq!(get(port, "any.example.com", "/", "").unwrap().status, 502);
}
