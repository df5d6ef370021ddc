//! Request matching latency on compiled snapshots.
//!
//! * `routes/*`: one listener, one virtual host, N HTTPRoutes with one `PathPrefix` rule each;
//!   the request hits the last route in precedence order (the youngest, same prefix length).
//!   Measured through the whole decision (`Snapshot::decide`), through `PortSnapshot::find`
//!   (listener, virtual host and rule lookup only) and, for comparison, through the linear
//!   reference matcher over the same table.
//! * `hosts/1000x100`: 1,000 HTTPRoutes with one hostname each and 100 rules each; the request
//!   hits the last rule of the last hostname.
//!
//! Run with `cargo bench -p loom-core --bench matching`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method, Uri};
use loom_core::input::*;
use loom_core::route::RequestView;
use loom_core::snapshot::{Decision, GatewayName, HttpRequest};
use loom_core::{CONTROLLER_NAME, Compiled, Input, Object, compile};

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

/// A GatewayClass, a Gateway `default/gw` with one HTTP listener on port 80, and a Loom
/// Backend `default/echo` for the routes to send to.
fn base() -> Input {
    let mut input = Input::default();
    input.upsert(Object::from(GatewayClass {
        metadata: meta(None, "loom"),
        spec: GatewayClassSpec {
            controller_name: CONTROLLER_NAME.into(),
            ..Default::default()
        },
    }));
    input.upsert(Object::from(Gateway {
        metadata: meta(Some("default"), "gw"),
        spec: GatewaySpec {
            gateway_class_name: "loom".into(),
            listeners: vec![Listener {
                name: "http".into(),
                port: 80,
                protocol: "HTTP".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    }));
    input.upsert(Object::from(Backend {
        metadata: meta(Some("default"), "echo"),
        spec: BackendSpec {
            endpoints: vec!["127.0.0.1:3000".into()],
            protocol: None,
        },
    }));
    input
}

/// Route `i`: created `i` seconds after the first, so later routes lose ties.
fn route(i: usize, hostnames: Vec<String>, prefixes: impl Iterator<Item = String>) -> HttpRoute {
    let mut metadata = meta(Some("default"), &format!("route-{i:05}"));
    metadata.creation_timestamp = Some(format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        i / 3600,
        i / 60 % 60,
        i % 60
    ));
    let backend = HttpBackendRef {
        backend_ref: BackendRef {
            group: Some(LOOM_GROUP.into()),
            kind: Some("Backend".into()),
            name: "echo".into(),
            ..Default::default()
        },
        filters: vec![],
    };
    let rules = prefixes
        .map(|p| HttpRouteRule {
            matches: vec![HttpRouteMatch {
                path: Some(HttpPathMatch {
                    type_: Some("PathPrefix".into()),
                    value: Some(p),
                }),
                ..Default::default()
            }],
            backend_refs: vec![backend.clone()],
            ..Default::default()
        })
        .collect();
    HttpRoute {
        metadata,
        spec: HttpRouteSpec {
            parent_refs: vec![ParentReference {
                name: "gw".into(),
                ..Default::default()
            }],
            hostnames,
            rules,
        },
    }
}

/// `n` routes with one prefix each, `/svc-00000` … (all the same length).
// Routes go straight into the list: `Input::upsert` looks for an existing object first.
fn routes(n: usize) -> Compiled {
    let mut input = base();
    for i in 0..n {
        input
            .http_routes
            .push(route(i, vec![], std::iter::once(format!("/svc-{i:05}"))).into());
    }
    compile(&input)
}

/// `hosts` routes with one hostname and `rules` prefixes each.
fn hosts(hosts: usize, rules: usize) -> Compiled {
    let mut input = base();
    for i in 0..hosts {
        let prefixes = (0..rules).map(|j| format!("/p-{j:03}"));
        input
            .http_routes
            .push(route(i, vec![format!("host-{i:04}.example.com")], prefixes).into());
    }
    compile(&input)
}

struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Req {
    fn get(uri: &str) -> Self {
        Req {
            method: Method::GET,
            uri: uri.parse().unwrap(),
            headers: HeaderMap::new(),
        }
    }

    fn view(&self) -> HttpRequest<'_> {
        HttpRequest {
            scheme: "http",
            sni: None,
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
        }
    }
}

fn expect_forward(compiled: &Compiled, req: &Req, route: &str) {
    let gw = GatewayName::new("default", "gw");
    match compiled.snapshot.decide(&gw, 80, &req.view(), 0) {
        Decision::Forward(f) => assert_eq!(f.matched.rule.route.name, route),
        other => panic!("expected a forward to {route}, got {other:?}"),
    }
}

fn bench_routes(c: &mut Criterion) {
    let gw = GatewayName::new("default", "gw");
    let mut group = c.benchmark_group("routes");
    for n in [1usize, 100, 10_000] {
        let compiled = routes(n);
        let last = n - 1;
        let req = Req::get(&format!("http://example.com/svc-{last:05}/items/42"));
        expect_forward(&compiled, &req, &format!("route-{last:05}"));
        let port = compiled.snapshot.port(&gw, 80).unwrap();
        assert_eq!(port.http_listeners()[0].vhosts[0].http.len(), n);

        group.bench_with_input(BenchmarkId::new("decide", n), &req, |b, req| {
            b.iter(|| {
                let d = compiled.snapshot.decide(&gw, 80, black_box(&req.view()), 0);
                black_box(matches!(d, Decision::Forward(_)))
            })
        });
        group.bench_with_input(BenchmarkId::new("find", n), &req, |b, req| {
            b.iter(|| black_box(port.find(black_box(&req.view())).is_ok()))
        });
        let table = &port.http_listeners()[0].vhosts[0].http;
        let path = format!("/svc-{last:05}/items/42");
        let view = RequestView {
            method: &req.method,
            path: &path,
            query: None,
            headers: &req.headers,
        };
        group.bench_with_input(BenchmarkId::new("table_find", n), &view, |b, view| {
            b.iter(|| black_box(table.find(black_box(view)).is_some()))
        });
        group.bench_with_input(
            BenchmarkId::new("table_find_reference", n),
            &view,
            |b, view| b.iter(|| black_box(table.find_reference(black_box(view)).is_some())),
        );
    }
    group.finish();
}

fn bench_hosts(c: &mut Criterion) {
    let gw = GatewayName::new("default", "gw");
    let compiled = hosts(1_000, 100);
    let req = Req::get("http://host-0999.example.com/p-099/items/42");
    expect_forward(&compiled, &req, "route-00999");
    let port = compiled.snapshot.port(&gw, 80).unwrap();
    assert_eq!(port.http_listeners()[0].vhosts.len(), 1_000);
    // A host with no virtual host of its own: every lookup step misses.
    let miss = Req::get("http://unknown.example.com/p-099/items/42");

    let mut group = c.benchmark_group("hosts");
    group.bench_function("decide/1000x100", |b| {
        b.iter(|| {
            let d = compiled.snapshot.decide(&gw, 80, black_box(&req.view()), 0);
            black_box(matches!(d, Decision::Forward(_)))
        })
    });
    group.bench_function("find/1000x100", |b| {
        b.iter(|| black_box(port.find(black_box(&req.view())).is_ok()))
    });
    group.bench_function("find_unknown_host/1000x100", |b| {
        b.iter(|| black_box(port.find(black_box(&miss.view())).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, bench_routes, bench_hosts);
criterion_main!(benches);
