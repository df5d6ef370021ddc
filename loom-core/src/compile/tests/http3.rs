//! HTTP/3 listeners: Loom's file form (an HTTP listener with `tls`) and the Kubernetes form
//! (GatewayClassConfig `http3.enabled`), their status and what the snapshot serves on UDP.

use super::*;

/// A self-signed certificate for app.example.com (P-256), valid for a century.
const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: gateway-tls, namespace: infra}
type: kubernetes.io/tls
data:
  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJwekNDQVUyZ0F3SUJBZ0lVRUpBWWJEREE4YUxaSXF1QmpFa25tdldob0pvd0NnWUlLb1pJemowRUF3SXcKR2pFWU1CWUdBMVVFQXd3UFlYQndMbVY0WVcxd2JHVXVZMjl0TUNBWERUSTJNVEl3TkRJeE5UTTBPRm9ZRHpJeApNall4TVRFd01qRTFNelE0V2pBYU1SZ3dGZ1lEVlFRRERBOWhjSEF1WlhoaGJYQnNaUzVqYjIwd1dUQVRCZ2NxCmhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBUWoweUxuNUprMG4zUHZQbDRVNDlRbkJKcEpEdnEzWVRzaVRKdk4Kc0pKY3Q0VDFNUk5pY1dvUjhieDNtOFZLTXBNTEJHT0JpV0NGWUx6Tm93U0t3YlVRbzI4d2JUQWRCZ05WSFE0RQpGZ1FVaUlObFIwZlJaWllabGFMSkt3K2lQNzVKQlY0d0h3WURWUjBqQkJnd0ZvQVVpSU5sUjBmUlpaWVpsYUxKCkt3K2lQNzVKQlY0d0R3WURWUjBUQVFIL0JBVXdBd0VCL3pBYUJnTlZIUkVFRXpBUmdnOWhjSEF1WlhoaGJYQnMKWlM1amIyMHdDZ1lJS29aSXpqMEVBd0lEU0FBd1JRSWdXZmJnNS9wdTZOMFdEYWxXUy9PZTFOZG9CVWZ3dm1POQp0bWRDZTRWTTBNQUNJUUNIWjlLc2Z2c3Zya0ptSWE2L05qbG5iVFhGWXdqdHZVNU5BL2xOd3VsSk1BPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JR0hBZ0VBTUJNR0J5cUdTTTQ5QWdFR0NDcUdTTTQ5QXdFSEJHMHdhd0lCQVFRZzRIMThtM3VjMDFmbmdIVm0KeUdCajFBcml6VDdoM01obTZwbFBSdXlwZlhxaFJBTkNBQVFqMHlMbjVKazBuM1B2UGw0VTQ5UW5CSnBKRHZxMwpZVHNpVEp2TnNKSmN0NFQxTVJOaWNXb1I4YngzbThWS01wTUxCR09CaVdDRllMek5vd1NLd2JVUQotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==
";

/// The Gateway of issue #14, in the test fixture's namespace.
const ISSUE_GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: loom-gateway
  namespace: infra
spec:
  gatewayClassName: loom
  listeners:
    - name: http
      protocol: HTTP
      port: 80
    - name: https
      protocol: HTTPS
      port: 443
      tls:
        mode: Terminate
        certificateRefs:
          - name: gateway-tls
            kind: Secret
    - name: http3
      protocol: HTTP
      port: 443
      tls:
        mode: Terminate
        certificateRefs:
          - name: gateway-tls
"#;

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: infra}
spec:
  parentRefs: [{name: loom-gateway}]
  rules: [{backendRefs: [{name: svc, namespace: backends, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: web, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}]
  to: [{group: "", kind: Service}]
"#;

fn compiled(extra: &str) -> Compiled {
    compile(&input(&format!("{SECRET}---\n{ROUTE}---\n{extra}")))
}

fn listener<'s>(c: &'s Compiled, name: &str) -> &'s crate::status::ListenerStatus {
    let key = ObjectKey {
        kind: Kind::Gateway,
        namespace: "infra".into(),
        name: "loom-gateway".into(),
    };
    let Some(ObjectStatus::Gateway(g)) = c.status.get(&key) else {
        panic!("no Gateway status");
    };
    g.listeners.iter().find(|l| l.name == name).unwrap()
}

fn port(c: &Compiled, port: u16) -> &crate::snapshot::PortSnapshot {
    c.snapshot
        .port(&GatewayName::new("infra", "loom-gateway"), port)
        .unwrap()
}

#[test]
fn an_http_listener_with_tls_is_http3_beside_https_programmed_with_its_routes() {
    let c = compiled(ISSUE_GATEWAY);
    let l = listener(&c, "http3");
    for t in [ConditionType::Accepted, ConditionType::Programmed] {
        assert!(l.conditions.get(t).unwrap().status, "{t:?}: {l:?}");
    }
    assert!(!l.conditions.get(ConditionType::Conflicted).unwrap().status);
    assert_eq!(l.attached_routes, 1);
    let p = port(&c, 443);
    assert_eq!(p.http_listeners().len(), 1, "HTTPS on TCP");
    assert_eq!(p.http3_listeners().len(), 1, "HTTP/3 on UDP");
    assert_eq!(p.http3_listeners()[0].name, "http3");
    assert!(p.http3_listeners()[0].tls.is_some());
    assert!(port(&c, 80).http3_listeners().is_empty());
}

#[test]
fn the_file_form_says_what_to_write_on_kubernetes() {
    let c = compiled(ISSUE_GATEWAY);
    let message = &listener(&c, "http3")
        .conditions
        .get(ConditionType::Accepted)
        .unwrap()
        .message;
    assert!(
        message.contains("HTTP/3 (QUIC) on UDP port 443"),
        "{message}"
    );
    assert!(message.contains("http3: {enabled: true}"), "{message}");
}

#[test]
fn requests_over_quic_use_the_http3_listeners() {
    let c = compiled(ISSUE_GATEWAY);
    let uri: Uri = "/".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, "app.example.com".parse().unwrap());
    let req = HttpRequest {
        scheme: "https",
        sni: Some("app.example.com"),
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
    };
    let over = |t| match port(&c, 443).decide_over(t, &req, 0) {
        Decision::Forward(f) => f.matched.listener.name.clone(),
        _ => panic!("forwarded"),
    };
    assert_eq!(over(crate::snapshot::Transport::Quic), "http3");
    assert_eq!(over(crate::snapshot::Transport::Tcp), "https");
}

#[test]
fn http3_and_a_udp_listener_conflict_on_a_port() {
    let c = compiled(&ISSUE_GATEWAY.replace(
        "    - name: http\n      protocol: HTTP\n      port: 80\n",
        "    - name: dns\n      protocol: UDP\n      port: 443\n",
    ));
    let conflicted = |name| {
        listener(&c, name)
            .conditions
            .get(ConditionType::Conflicted)
            .unwrap()
            .status
    };
    assert!(conflicted("http3") || conflicted("dns"));
    assert!(!(conflicted("http3") && conflicted("dns")));
}

#[test]
fn a_gateway_class_config_adds_http3_to_every_https_listener() {
    let without_http3 = ISSUE_GATEWAY.split("    - name: http3").next().unwrap();
    let config = "apiVersion: gateway.loom.dev/v1alpha1
kind: GatewayClassConfig
metadata: {name: quic, namespace: infra}
spec: {http3: {enabled: true}}
";
    let own = format!(
        "{config}---\n{}  infrastructure:\n    parametersRef: {{group: gateway.loom.dev, kind: GatewayClassConfig, name: quic}}\n",
        without_http3
    );
    let c = compiled(&own);
    let p = port(&c, 443);
    assert_eq!(p.http3_listeners().len(), 1);
    assert_eq!(p.http3_listeners()[0].name, "https");
    // Without it, no HTTP/3.
    let c = compiled(without_http3);
    assert!(port(&c, 443).http3_listeners().is_empty());
    // Off in the Gateway's own config: none.
    let c = compiled(&own.replace("{http3: {enabled: true}}", "{http3: {enabled: false}}"));
    assert!(port(&c, 443).http3_listeners().is_empty());
}
