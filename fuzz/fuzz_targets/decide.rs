//! A fixed configuration, compiled once; fuzzed requests (method, scheme, SNI, authority, path,
//! query and headers) through `Snapshot::decide`. It must never panic.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use loom_core::snapshot::{Decision, GatewayName, HttpRequest};
use loom_core::{Compiled, Input, compile, load};

/// Every kind of match and filter the decision applies.
const CONFIG: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: loom.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: loom
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: foo, port: 80, protocol: HTTP, hostname: "*.foo.example"}
  - {name: alt, port: 8080, protocol: HTTP, hostname: alt.example.com}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {name: echo, namespace: default}
spec: {endpoints: ["127.0.0.1:3000", "[::1]:3000"]}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {name: grpc, namespace: default}
spec: {endpoints: ["127.0.0.1:3001"], protocol: h2c}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}, {name: gw, sectionName: alt}]
  hostnames: [example.com, "*.example.com"]
  rules:
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{group: gateway.loom.dev, kind: Backend, name: echo}]
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-version, value: "2"}]
      queryParams: [{name: debug, value: "1"}]
      method: POST
    - path: {type: PathPrefix, value: /api/v1/}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-a, value: "1"}]
        add: [{name: x-b, value: "2"}]
        remove: [x-c]
    - type: URLRewrite
      urlRewrite: {hostname: internal.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    backendRefs:
    - {group: gateway.loom.dev, kind: Backend, name: echo, weight: 3}
    - {name: missing, port: 80, weight: 1}
    - {group: gateway.loom.dev, kind: Backend, name: echo, weight: 0}
  - matches: [{path: {type: RegularExpression, value: "/re/[a-z]+/[0-9]*"}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, path: {type: ReplaceFullPath, replaceFullPath: /moved}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /redir}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: other.example, port: 8443, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
  - matches: [{path: {type: PathPrefix, value: /rewrite}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /full}}
    backendRefs:
    - group: gateway.loom.dev
      kind: Backend
      name: echo
      filters:
      - type: URLRewrite
        urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /inner/}}
  - matches: [{path: {type: PathPrefix, value: /cors}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://*.example.com", "http://a.test"]
        allowMethods: [GET, POST]
        allowHeaders: ["*"]
        exposeHeaders: [x-e]
        allowCredentials: true
        maxAge: 60
    backendRefs: [{group: gateway.loom.dev, kind: Backend, name: echo}]
  - matches: [{path: {type: PathPrefix, value: /mirror}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {group: gateway.loom.dev, kind: Backend, name: echo}, percent: 50}
    - type: RequestMirror
      requestMirror: {backendRef: {group: gateway.loom.dev, kind: Backend, name: grpc}, fraction: {numerator: 1, denominator: 3}}
    backendRefs:
    - group: gateway.loom.dev
      kind: Backend
      name: echo
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-r, value: "1"}]}
      - type: RequestRedirect
        requestRedirect: {scheme: http, port: 80}
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {codes: [503], attempts: 2, backoff: 100ms}
  - matches: [{path: {type: PathPrefix, value: /ext}}]
    filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Thing, name: x}}]
  - backendRefs: [{group: gateway.loom.dev, kind: Backend, name: echo}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: foo, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: foo}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
      headers: [{type: RegularExpression, name: x-re, value: "a+b*"}]
    - path: {type: Exact, value: /}
    backendRefs: [{group: gateway.loom.dev, kind: Backend, name: echo}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: pkg.Svc, method: Get}}, {headers: [{name: x-tenant, value: a}]}]
    backendRefs: [{group: gateway.loom.dev, kind: Backend, name: grpc}]
"#;

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let loaded = load::load_str("decide.yaml", CONFIG);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut input = Input::default();
        for (_, object) in loaded.objects {
            input.upsert(object);
        }
        let compiled = compile(&input);
        assert_eq!(
            compiled.snapshot.gateways.len(),
            1,
            "the fuzz config must compile"
        );
        compiled
    })
}

#[derive(Arbitrary, Debug)]
enum FuzzMethod<'a> {
    Get,
    Post,
    Options,
    Head,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum FuzzHost<'a> {
    Example,
    Sub,
    Foo,
    Grpc,
    Alt,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum FuzzPath<'a> {
    Known(u8, &'a str),
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum FuzzHeaderName<'a> {
    Version,
    Re,
    Tenant,
    Origin,
    RequestMethod,
    ContentType,
    Host,
    C,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
struct Request<'a> {
    method: FuzzMethod<'a>,
    https: bool,
    sni: Option<FuzzHost<'a>>,
    /// Absolute-form (authority in the URI) or origin-form (authority in `Host`).
    absolute: bool,
    host: FuzzHost<'a>,
    port: Option<u16>,
    path: FuzzPath<'a>,
    headers: Vec<(FuzzHeaderName<'a>, &'a [u8])>,
    listener_port: bool,
    random: u64,
}

const PATHS: &[&str] = &[
    "/",
    "/exact",
    "/api",
    "/api/v1/",
    "/re/abc/12",
    "/redir",
    "/rewrite",
    "/cors",
    "/mirror",
    "/ext",
    "/pkg.Svc/Get",
    "/%2e%2e/",
    "/a/./b/../c",
];

fn host<'a>(h: &FuzzHost<'a>) -> &'a str {
    match h {
        FuzzHost::Example => "example.com",
        FuzzHost::Sub => "a.example.com",
        FuzzHost::Foo => "x.foo.example",
        FuzzHost::Grpc => "grpc.example.com",
        FuzzHost::Alt => "alt.example.com",
        FuzzHost::Other(s) => s,
    }
}

fuzz_target!(|r: Request<'_>| {
    let compiled = compiled();
    let method = match r.method {
        FuzzMethod::Get => Method::GET,
        FuzzMethod::Post => Method::POST,
        FuzzMethod::Options => Method::OPTIONS,
        FuzzMethod::Head => Method::HEAD,
        FuzzMethod::Other(m) => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => m,
            Err(_) => return,
        },
    };
    let path = match r.path {
        FuzzPath::Known(i, suffix) => format!("{}{suffix}", PATHS[usize::from(i) % PATHS.len()]),
        FuzzPath::Raw(p) => p.to_owned(),
    };
    let scheme = if r.https { "https" } else { "http" };
    let authority = match r.port {
        Some(p) => format!("{}:{p}", host(&r.host)),
        None => host(&r.host).to_owned(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &r.headers {
        let name = match name {
            FuzzHeaderName::Version => HeaderName::from_static("x-version"),
            FuzzHeaderName::Re => HeaderName::from_static("x-re"),
            FuzzHeaderName::Tenant => HeaderName::from_static("x-tenant"),
            FuzzHeaderName::Origin => http::header::ORIGIN,
            FuzzHeaderName::RequestMethod => http::header::ACCESS_CONTROL_REQUEST_METHOD,
            FuzzHeaderName::ContentType => http::header::CONTENT_TYPE,
            FuzzHeaderName::Host => http::header::HOST,
            FuzzHeaderName::C => HeaderName::from_static("x-c"),
            FuzzHeaderName::Other(n) => match HeaderName::from_bytes(n.as_bytes()) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    let uri = if r.absolute {
        format!("{scheme}://{authority}{path}")
    } else {
        if let Ok(v) = HeaderValue::from_str(&authority) {
            headers.insert(http::header::HOST, v);
        }
        path
    };
    let Ok(uri) = uri.parse::<Uri>() else { return };
    let sni = r.sni.as_ref().map(host);
    let req = HttpRequest {
        scheme,
        sni,
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    let port = if r.listener_port { 80 } else { 8080 };
    let gw = GatewayName::new("default", "gw");
    match compiled.snapshot.decide(&gw, port, &req, r.random) {
        Decision::Forward(f) => {
            // The request handed to the backend is well-formed.
            let backend_request = f.backend_request(&req);
            assert!(
                backend_request.uri().path().starts_with('/'),
                "{:?}",
                backend_request.uri()
            );
            assert!(!f.backend.endpoints.is_empty());
        }
        Decision::Redirect { location, .. } => assert!(!location.is_empty()),
        Decision::Respond(_) => {}
    }
});
