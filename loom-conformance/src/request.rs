//! Request cases (SCHEMA.md 6 to 8) through the decision API: what the data plane would do
//! with the request, and what the echo backend would answer. Requests whose outcome depends on
//! sockets (TLS handshakes, L4 traffic, timing, mirrors observed) are undecided, and so are
//! requests to a port with TLS listeners that the data plane routes by SNI, not by HTTP.

use http::{HeaderMap, HeaderName, HeaderValue};
use loom_core::snapshot::{Decision, GatewayName, HttpRequest, PortSnapshot};

use crate::case::{Expect, Mode, Protocol, Request, RequestCase};
use crate::cluster::{GATEWAY_ADDRESS, pod_ips, replicas};
use crate::runner::{Ctx, Outcome};

/// What came back.
struct Observed {
    status: u16,
    headers: HeaderMap,
    echo: Option<Echo>,
    location: Option<String>,
}

/// What the echo backend reports it received.
struct Echo {
    path: String,
    host: String,
    method: String,
    headers: HeaderMap,
    namespace: String,
    pod: String,
}

/// Why the data plane, not the HTTP decision, answers a request on this port: TLS listeners
/// (TLSRoutes, passthrough or terminate) take a port's connections by SNI before HTTPS does,
/// and a cleartext request to such a port is not HTTP to it at all. `None` when the HTTP
/// decision answers the request as the data plane would.
fn decided_by_sni(port: &PortSnapshot, https: bool, sni: Option<&str>) -> Option<String> {
    if port.tls_listeners().is_empty() {
        return None;
    }
    if !https {
        return Some("cleartext traffic to a TLS listener's port needs the data plane".into());
    }
    if let Some((listener, rule)) = port.tls_route(sni) {
        return Some(format!(
            "TLS for SNI {:?} goes to {} (listener {}) by SNI in the data plane",
            sni.unwrap_or(""),
            rule.route,
            listener.name
        ));
    }
    if port.http_listeners().iter().all(|l| l.tls.is_none()) {
        return Some(format!(
            "TLS for SNI {:?} matches no TLSRoute and no HTTPS listener: the data plane closes \
             the connection",
            sni.unwrap_or("")
        ));
    }
    None
}

/// Checks one request case.
pub(crate) fn check(ctx: &Ctx<'_>, rc: &RequestCase) -> Outcome {
    let req = &rc.request;
    let expect = &rc.expect;
    let protocol = req.protocol;
    if !(protocol.is_http_family() || protocol == Protocol::Grpc) {
        return Outcome::Undecided(format!(
            "{} traffic needs the data plane",
            protocol.as_str()
        ));
    }
    if matches!(
        rc.mode,
        Mode::RequestError | Mode::ConnectionRejected | Mode::Sample
    ) {
        return Outcome::Undecided(format!(
            "{} mode needs a real TLS/TCP exchange",
            rc.mode.as_str()
        ));
    }
    if req
        .tls
        .as_ref()
        .is_some_and(|t| t.client_certificate.is_some())
    {
        return Outcome::Undecided("client certificates need a real TLS handshake".into());
    }
    let gw = GatewayName::new(&rc.target.gateway.namespace, &rc.target.gateway.name);
    let port = rc.target.port;
    let tls = protocol.is_https();
    let scheme = if tls { "https" } else { "http" };
    let mut path = req.path.clone().unwrap_or_else(|| "/".into());
    if req.fresh_uuid_per_attempt {
        path = path.replace("{uuid}", "0b7e5d3c-1f2a-4c6b-9d8e-7a6b5c4d3e2f");
    }
    let mut seen_path_override = None;
    if req.add_request_id {
        let sep = if path.contains('?') { '&' } else { '?' };
        path = format!(
            "{path}{sep}gateway-api-conformance-request-id=5c0ffee0-0000-4000-8000-000000000001"
        );
        seen_path_override = Some(path.clone());
    }
    if path.contains("delay=") || path.starts_with("/retry/") {
        return Outcome::Undecided("backend delays and retries need the data plane".into());
    }
    let sni = req.tls.as_ref().map(|t| t.server_name.as_str());
    if let Some(why) = ctx
        .compiled
        .snapshot
        .port(&gw, port)
        .and_then(|p| decided_by_sni(p, tls, sni))
    {
        return Outcome::Undecided(why);
    }
    let host = match &req.host {
        Some(h) => h.clone(),
        None if (port == 80 && !tls) || (port == 443 && tls) => GATEWAY_ADDRESS.to_owned(),
        None => format!("{GATEWAY_ADDRESS}:{port}"),
    };
    let grpc = protocol == Protocol::Grpc;
    let method = req
        .method
        .as_deref()
        .unwrap_or(if grpc { "POST" } else { "GET" });
    let grpc_path = req.full_method.as_deref();
    let mut builder = http::Request::builder()
        .method(if grpc { "POST" } else { method })
        .uri(grpc_path.unwrap_or(&path))
        .header(
            http::header::HOST,
            req.authority.as_deref().unwrap_or(&host),
        );
    if grpc {
        builder = builder.header(http::header::CONTENT_TYPE, "application/grpc");
    } else {
        let echo_set: Vec<String> = req
            .echo_set_response_headers
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        builder = builder.header("X-Echo-Set-Header", echo_set.join(","));
    }
    for (k, v) in req.headers.iter().chain(&req.metadata) {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let Ok(request) = builder.body(()) else {
        return Outcome::Fail("could not build the request".into());
    };
    let hr = HttpRequest {
        scheme,
        sni,
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
    };
    let mut undecided = vec![];
    if expect
        .request_seen
        .as_ref()
        .is_some_and(|s| s.tls_server_name.is_some() || s.tls_client_certificate.is_some())
    {
        undecided.push(
            "the TLS server name and client certificate seen by the backend need the data plane",
        );
    }
    let observed = match ctx.compiled.snapshot.decide(&gw, port, &hr, 7) {
        Decision::Forward(f) => {
            if f.backend.tls.is_some() {
                return Outcome::Undecided(
                    "TLS to the backend (BackendTLSPolicy) needs the data plane".into(),
                );
            }
            if !f.mirrors.is_empty() || !expect.mirrored_to.is_empty() {
                undecided
                    .push("mirrored requests are observed at the mirror backend by the data plane");
            }
            let (ns, name) = (&f.backend.object.namespace, &f.backend.object.name);
            let pod = pod_prefix(ctx, ns, name, &f.backend.endpoints).unwrap_or_default();
            let fr = &f.backend_request(&hr);
            let fpath = fr.uri().to_string();
            let status = fpath
                .strip_prefix("/status/")
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(200);
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(set) = fr
                .headers()
                .get("x-echo-set-header")
                .and_then(|v| v.to_str().ok())
            {
                append_echo_set(&mut headers, set);
            }
            f.matched.rule.apply_response_headers(
                f.backend_index,
                hr.headers.get(http::header::ORIGIN),
                &mut headers,
            );
            let mut echo_headers = fr.headers().clone();
            echo_headers.remove(http::header::HOST);
            Observed {
                status,
                headers,
                location: None,
                echo: Some(Echo {
                    path: fpath,
                    host: fr
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                    method: fr.method().to_string(),
                    headers: echo_headers,
                    namespace: ns.clone(),
                    pod,
                }),
            }
        }
        Decision::Redirect {
            status, location, ..
        } => Observed {
            status: status.as_u16(),
            headers: HeaderMap::new(),
            echo: None,
            location: Some(location),
        },
        Decision::Respond(r) => {
            let mut headers = HeaderMap::new();
            for (n, v) in r.headers {
                headers.insert(n, v);
            }
            Observed {
                status: r.status.as_u16(),
                headers,
                echo: None,
                location: None,
            }
        }
    };
    let result = if grpc {
        check_grpc(expect, &observed, grpc_path.unwrap_or(""))
    } else if rc.mode == Mode::Failure {
        if matches!(observed.status, 200 | 408 | 504) {
            Err(format!("status {}", observed.status))
        } else {
            Ok(())
        }
    } else {
        let sent = Sent {
            request: req,
            path: &path,
            seen_path: seen_path_override.as_deref(),
            method,
            scheme,
        };
        check_http(expect, &sent, &observed)
    };
    match (result, undecided.first()) {
        (Err(m), _) => Outcome::Fail(m),
        (Ok(()), Some(u)) => Outcome::Undecided((*u).into()),
        (Ok(()), None) => Outcome::Pass,
    }
}

/// `X-Echo-Set-Header: name:value,name:value`: the headers the echo backend adds to its
/// response (malformed pairs are dropped).
fn append_echo_set(headers: &mut HeaderMap, set: &str) {
    for pair in set.split(',').filter(|p| !p.is_empty()) {
        if let Some((n, v)) = pair.split_once(':')
            && let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v),
            )
        {
            headers.append(n, v);
        }
    }
}

/// The name of a pod that answers for a backend: found through the Service's selector, or,
/// for a Service without one, through the pod IPs in its EndpointSlices.
fn pod_prefix(ctx: &Ctx<'_>, ns: &str, service: &str, endpoints: &[String]) -> Option<String> {
    let svc = ctx
        .cluster
        .get(&("Service".into(), ns.into(), service.into()))?;
    let pod_of = |name: &str| format!("{name}-5f7d9c8b6d-x2x9q");
    let Some(selector) = svc["spec"]["selector"].as_object() else {
        return ctx
            .cluster
            .of_kind("Deployment", ns)
            .find(|(k, d)| {
                let ips = pod_ips(&k.2, replicas(d));
                endpoints.iter().any(|e| {
                    let addr = e.rsplit_once(':').map_or(e.as_str(), |(a, _)| a);
                    ips.iter().any(|ip| addr.trim_matches(['[', ']']) == ip)
                })
            })
            .map(|(k, _)| pod_of(&k.2));
    };
    ctx.cluster
        .of_kind("Deployment", ns)
        .find(|(_, d)| {
            selector
                .iter()
                .all(|(l, v)| &d["spec"]["template"]["metadata"]["labels"][l] == v)
        })
        .map(|(k, _)| pod_of(&k.2))
}

/// SCHEMA.md 8.2.
fn check_grpc(expect: &Expect, o: &Observed, full_method: &str) -> Result<(), String> {
    let code = match (o.status, &o.echo) {
        (200, Some(_)) => "OK",
        (404, _) => "Unimplemented",
        _ => "Unavailable",
    };
    if expect.grpc_code.as_deref() != Some(code) {
        return Err(format!("gRPC code {code}, expected {:?}", expect.grpc_code));
    }
    if let (Some(e), "OK") = (&o.echo, code) {
        if e.path != full_method {
            return Err(format!(
                "backend saw method {}, expected {full_method}",
                e.path
            ));
        }
        if let Some(ns) = &expect.namespace
            && *ns != e.namespace
        {
            return Err(format!("namespace {}, expected {ns}", e.namespace));
        }
        if let Some(b) = &expect.backend
            && !e.pod.starts_with(b.as_str())
        {
            return Err(format!("pod {}, expected prefix {b}", e.pod));
        }
    }
    Ok(())
}

/// All values of a header, joined with `,`.
fn joined(h: &HeaderMap, name: &str) -> Option<String> {
    let vals: Vec<_> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!vals.is_empty()).then(|| vals.join(","))
}

/// The request as sent.
struct Sent<'a> {
    request: &'a Request,
    /// The path sent (after `{uuid}` and the request id).
    path: &'a str,
    /// The path the backend must see when a request id was added.
    seen_path: Option<&'a str>,
    method: &'a str,
    scheme: &'a str,
}

/// SCHEMA.md 8.1 (upstream `CompareRoundTrip`).
fn check_http(expect: &Expect, sent: &Sent<'_>, o: &Observed) -> Result<(), String> {
    let s = o.status;
    if (s == 408 || s == 504) && expect.status.iter().any(|c| *c == 408 || *c == 504) {
        return Ok(());
    }
    if !expect.status.contains(&s) {
        return Err(format!("status {s}, expected {:?}", expect.status));
    }
    if s == 200 || s == 204 {
        check_echo(expect, sent, o)
    } else if matches!(s, 300..=305 | 307 | 308)
        && let Some(r) = &expect.redirect
    {
        check_redirect(r, sent, o)
    } else {
        Ok(())
    }
}

/// Step 3 of SCHEMA.md 8.1: what the echo backend saw, and the response headers.
fn check_echo(expect: &Expect, sent: &Sent<'_>, o: &Observed) -> Result<(), String> {
    let empty = HeaderMap::new();
    let echo_headers = o.echo.as_ref().map_or(&empty, |e| &e.headers);
    let seen = expect.request_seen.as_ref();
    let exp_path = match (sent.seen_path, seen) {
        (Some(p), _) => p.to_owned(),
        (None, None) => sent.path.to_owned(),
        (None, Some(seen)) => seen.path.clone().unwrap_or_default(),
    };
    let exp_method = seen.map_or(sent.method, |s| s.method.as_deref().unwrap_or("GET"));
    let (echo_path, echo_host, echo_method, echo_ns, echo_pod) = match &o.echo {
        Some(e) => (
            e.path.as_str(),
            e.host.as_str(),
            e.method.as_str(),
            e.namespace.as_str(),
            e.pod.as_str(),
        ),
        None => ("", "", sent.method, "", ""),
    };
    let exp_host = match seen {
        None => sent.request.host.as_deref(),
        Some(s) => s.host.as_deref(),
    };
    if let Some(h) = exp_host
        && h != echo_host
    {
        return Err(format!("backend saw host {echo_host:?}, expected {h:?}"));
    }
    if exp_path != echo_path {
        return Err(format!(
            "backend saw path {echo_path:?}, expected {exp_path:?}"
        ));
    }
    if exp_method != echo_method {
        return Err(format!(
            "backend saw method {echo_method}, expected {exp_method}"
        ));
    }
    let exp_ns = expect.namespace.as_deref().unwrap_or("");
    if exp_ns != echo_ns {
        return Err(format!("namespace {echo_ns:?}, expected {exp_ns:?}"));
    }
    let exp_headers = seen.map_or(&sent.request.headers, |s| &s.headers);
    for (n, v) in exp_headers {
        let actual = joined(echo_headers, n);
        if actual.as_deref() != Some(v.as_str()) {
            return Err(format!(
                "backend saw header {n}: {actual:?}, expected {v:?}"
            ));
        }
    }
    let ws = |s: &str| {
        if expect.ignore_whitespace {
            s.replace(' ', "")
        } else {
            s.to_owned()
        }
    };
    for (n, vals) in &expect.response_header_values {
        let actual = joined(&o.headers, n).map(|a| ws(&a));
        if !vals
            .iter()
            .any(|v| actual.as_deref() == Some(ws(v).as_str()))
        {
            return Err(format!(
                "response header {n}: {actual:?}, expected one of {vals:?}"
            ));
        }
    }
    for (n, v) in &expect.response_headers {
        let actual = joined(&o.headers, n).map(|a| ws(&a));
        if actual.as_deref() != Some(ws(v).as_str()) {
            return Err(format!("response header {n}: {actual:?}, expected {v:?}"));
        }
    }
    if let Some(n) = expect
        .absent_response_headers
        .iter()
        .find(|n| o.headers.contains_key(n.as_str()))
    {
        return Err(format!("response header {n} should be absent"));
    }
    if let Some(n) = seen
        .into_iter()
        .flat_map(|s| &s.absent_headers)
        .find(|n| echo_headers.contains_key(n.as_str()))
    {
        return Err(format!("backend saw header {n}, which should be absent"));
    }
    if let Some(b) = &expect.backend
        && !echo_pod.starts_with(b.as_str())
    {
        return Err(format!(
            "answered by pod {echo_pod:?}, expected prefix {b:?}"
        ));
    }
    Ok(())
}

/// Step 4 of SCHEMA.md 8.1: the Location of a redirect.
fn check_redirect(r: &crate::case::Redirect, sent: &Sent<'_>, o: &Observed) -> Result<(), String> {
    let loc = o.location.as_deref().unwrap_or("");
    let uri: http::Uri = loc.parse().map_err(|_| format!("bad Location {loc:?}"))?;
    let lscheme = uri.scheme_str().unwrap_or(sent.scheme);
    if let Some(h) = &r.host
        && uri.host() != Some(h.as_str())
    {
        return Err(format!("Location host {:?}, expected {h}", uri.host()));
    }
    let lport = uri.port_u16().map(|p| p.to_string()).unwrap_or_default();
    match &r.port {
        Some(p) if *p != lport => {
            return Err(format!("Location port {lport:?}, expected {p:?}"));
        }
        None if (lscheme == "http" && !matches!(lport.as_str(), "" | "80"))
            || (lscheme == "https" && !matches!(lport.as_str(), "" | "443")) =>
        {
            return Err(format!("Location port {lport:?} for {lscheme}"));
        }
        _ => {}
    }
    let exp_scheme = r.scheme.as_deref().unwrap_or(sent.scheme);
    if exp_scheme != lscheme {
        return Err(format!("Location scheme {lscheme}, expected {exp_scheme}"));
    }
    let exp_path = r
        .path
        .clone()
        .unwrap_or_else(|| sent.path.split('?').next().unwrap_or("").to_owned());
    if uri.path() != exp_path {
        return Err(format!("Location path {}, expected {exp_path}", uri.path()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::cluster::Cluster;
    use crate::runner::options;

    const WORLD: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: x}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: loom
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: passthrough
    port: 443
    protocol: TLS
    hostname: tls.example.com
    tls: {mode: Passthrough}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: web.example.com
    tls: {certificateRefs: [{name: cert}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: ns}
spec:
  selector: {app: backend}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: ns}
spec:
  template: {metadata: {labels: {app: backend}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: tls, namespace: ns}
spec:
  parentRefs: [{name: gw, sectionName: passthrough}]
  hostnames: [tls.example.com]
  rules: [{backendRefs: [{name: backend, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: backend, port: 8080}]}]
"#;

    fn with_world(f: impl FnOnce(&Ctx<'_>)) {
        let mut cluster = Cluster::default();
        for doc in loom_core::load::split_documents(WORLD) {
            let v: Value = serde_saphyr::from_str(doc.text).unwrap();
            cluster.apply(v);
        }
        cluster.apply(crate::programmatic::tls_secret(
            "ns",
            "cert",
            &["web.example.com"],
        ));
        let options = options();
        let ctx = Ctx::new(cluster, &options);
        f(&ctx);
    }

    fn case(yaml: &str) -> RequestCase {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn https(sni: &str, port: u16) -> RequestCase {
        case(&format!(
            "target: {{gateway: {{namespace: ns, name: gw}}, port: {port}}}\n\
             request: {{protocol: HTTPS, method: GET, host: {sni}, path: /, \
             tls: {{server_name: {sni}}}}}\n\
             expect: {{status: [200], namespace: ns, backend: backend}}\n"
        ))
    }

    fn undecided(o: &Outcome) -> &str {
        match o {
            Outcome::Undecided(why) => why,
            other => panic!("decided: {other:?}"),
        }
    }

    #[test]
    fn tls_for_a_tls_route_sni_is_undecided_not_an_http_404() {
        with_world(|ctx| {
            let o = check(ctx, &https("tls.example.com", 443));
            assert!(undecided(&o).contains("by SNI"), "{o:?}");
        });
    }

    #[test]
    fn https_for_an_https_listener_next_to_a_tls_route_is_decided() {
        with_world(|ctx| {
            assert_eq!(check(ctx, &https("web.example.com", 443)), Outcome::Pass);
        });
    }

    #[test]
    fn cleartext_to_a_tls_listener_port_is_undecided() {
        with_world(|ctx| {
            let rc = case(
                "target: {gateway: {namespace: ns, name: gw}, port: 443}\n\
                 request: {protocol: HTTP, method: GET, host: tls.example.com, path: /}\n\
                 expect: {status: [404]}\n",
            );
            assert!(undecided(&check(ctx, &rc)).contains("cleartext"));
        });
    }

    #[test]
    fn http_on_a_port_without_tls_listeners_is_decided() {
        with_world(|ctx| {
            let rc = case(
                "target: {gateway: {namespace: ns, name: gw}, port: 80}\n\
                 request: {protocol: HTTP, method: GET, path: /}\n\
                 expect: {status: [200], namespace: ns, backend: backend}\n",
            );
            assert_eq!(check(ctx, &rc), Outcome::Pass);
        });
    }

    #[test]
    fn a_wrong_expectation_fails() {
        with_world(|ctx| {
            let rc = case(
                "target: {gateway: {namespace: ns, name: gw}, port: 80}\n\
                 request: {protocol: HTTP, method: GET, path: /}\n\
                 expect: {status: [404]}\n",
            );
            assert_eq!(
                check(ctx, &rc),
                Outcome::Fail("status 200, expected [404]".into())
            );
        });
    }

    #[test]
    fn tcp_traffic_is_undecided() {
        with_world(|ctx| {
            let rc = case(
                "target: {gateway: {namespace: ns, name: gw}, port: 80}\n\
                 request: {protocol: TCP, connect_only: true}\n\
                 expect: {connects: true}\n",
            );
            assert!(undecided(&check(ctx, &rc)).starts_with("TCP traffic"));
        });
    }

    #[test]
    fn echo_set_header_pairs_become_response_headers() {
        let mut h = HeaderMap::new();
        append_echo_set(&mut h, "X-A:1,bad,X-B:two,,X-A:3");
        assert_eq!(joined(&h, "x-a").as_deref(), Some("1,3"));
        assert_eq!(joined(&h, "x-b").as_deref(), Some("two"));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn joined_is_none_for_a_missing_header() {
        assert_eq!(joined(&HeaderMap::new(), "x-a"), None);
    }
}
