//! Compile time: the whole `compile` (status and snapshot) for growing numbers of HTTPRoutes.
//!
//! * `routes/N`: N HTTPRoutes on one listener, one `PathPrefix` rule each, half of them with a
//!   header match, all sending to one Service with endpoints.
//! * `hosts/1000x100`: 1,000 HTTPRoutes with one hostname and 100 rules each.
//! * `recompile/routes/N`: `Compiler::compile` after one of the N routes of `routes/N` changed
//!   (its path, back and forth), the compile before having seen the others;
//!   `recompile/hosts/N`: the same with a hostname of its own for each route (one virtual
//!   host each).
//! * `recompile_staged/routes/N`: the same as `recompile/routes/N` up to the snapshot
//!   (`Compiler::compile_staged`): what a change waits for before a data plane serves it; the
//!   routes' statuses are put together after.
//! * `http_table/new/N`: building one virtual host's table of N `PathPrefix` matches.
//!
//! Run with `cargo bench -p loom-core --bench compile`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use loom_core::input::*;
use loom_core::route::path::PathMatch;
use loom_core::route::{HttpMatch, HttpPrecedence, HttpTable, RouteOrder};
use loom_core::{CONTROLLER_NAME, Compiler, Input, Object, Options, compile};

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

/// A GatewayClass, a Gateway `default/gw` with one HTTP listener on port 80, and a Service
/// `default/echo` with one EndpointSlice.
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
    input.upsert(Object::from(Service {
        metadata: meta(Some("default"), "echo"),
        spec: ServiceSpec {
            ports: vec![ServicePort {
                port: 80,
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    }));
    let mut slice = EndpointSlice {
        metadata: meta(Some("default"), "echo-1"),
        address_type: "IPv4".into(),
        endpoints: (1..=3)
            .map(|i| Endpoint {
                addresses: vec![format!("10.0.0.{i}")],
                ..Default::default()
            })
            .collect(),
        ports: vec![EndpointPort {
            port: Some(8080),
            ..Default::default()
        }],
    };
    slice
        .metadata
        .labels
        .insert("kubernetes.io/service-name".into(), "echo".into());
    input.upsert(Object::from(slice));
    input
}

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
            name: "echo".into(),
            port: Some(80),
            ..Default::default()
        },
        filters: vec![],
    };
    let headers = if i.is_multiple_of(2) {
        vec![HttpHeaderMatch {
            type_: None,
            name: "x-tenant".into(),
            value: format!("t{i}"),
        }]
    } else {
        vec![]
    };
    let rules = prefixes
        .map(|p| HttpRouteRule {
            matches: vec![HttpRouteMatch {
                path: Some(HttpPathMatch {
                    type_: Some("PathPrefix".into()),
                    value: Some(p),
                }),
                headers: headers.clone(),
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

// Routes go straight into the list: `Input::upsert` looks for an existing object first.
fn routes(n: usize) -> Input {
    let mut input = base();
    for i in 0..n {
        input
            .http_routes
            .push(route(i, vec![], std::iter::once(format!("/svc-{i:05}"))).into());
    }
    input
}

fn hosts(hosts: usize, rules: usize) -> Input {
    let mut input = base();
    for i in 0..hosts {
        let prefixes = (0..rules).map(|j| format!("/p-{j:03}"));
        input
            .http_routes
            .push(route(i, vec![format!("host-{i:04}.example.com")], prefixes).into());
    }
    input
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for n in [100usize, 1_000, 10_000] {
        let input = routes(n);
        let compiled = compile(&input);
        assert_eq!(
            compiled.status.objects.len(),
            n + 2,
            "every route has a status"
        );
        if n >= 1_000 {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(5));
        }
        group.bench_with_input(BenchmarkId::new("routes", n), &input, |b, input| {
            b.iter(|| compile(black_box(input)))
        });
    }
    let input = hosts(1_000, 100);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_with_input(BenchmarkId::new("hosts", "1000x100"), &input, |b, input| {
        b.iter(|| compile(black_box(input)))
    });
    group.finish();
}

fn bench_recompile(c: &mut Criterion) {
    let mut group = c.benchmark_group("recompile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let whole = |compiler: &mut Compiler, input: &Input, options: &Options| {
        compiler.compile(input, options)
    };
    for n in [1_000usize, 10_000] {
        recompile(&mut group, "routes", n, routes(n), changed_route(n), whole);
    }
    recompile(
        &mut group,
        "hosts",
        5_000,
        hosts(5_000, 1),
        |v| {
            let host = format!("host-{:04}.example.com", 5_000 / 2);
            route(
                5_000 / 2,
                vec![host],
                std::iter::once(format!("/changed-{v}")),
            )
        },
        whole,
    );
    group.finish();
    let mut group = c.benchmark_group("recompile_staged");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let n = 10_000;
    recompile(
        &mut group,
        "routes",
        n,
        routes(n),
        changed_route(n),
        |compiler, input, options| compiler.compile_staged(input, options).snapshot,
    );
    group.finish();
}

/// Route `n / 2` of [`routes`] with a path of version `v`.
fn changed_route(n: usize) -> impl Fn(usize) -> HttpRoute {
    move |v| route(n / 2, vec![], std::iter::once(format!("/changed-{v}")))
}

/// Compiles `input`, then benches `compile` again after each change of one route between two
/// versions (`changed(0)`, `changed(1)`).
fn recompile<T>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    mut input: Input,
    changed: impl Fn(usize) -> HttpRoute,
    compile: impl Fn(&mut Compiler, &Input, &Options) -> T,
) {
    let options = Options::default();
    let mut compiler = Compiler::new();
    let whole = compiler.compile(&input, &options);
    let versions = [0, 1].map(|v| Object::from(changed(v)));
    let mut next = 0;
    let mut change = |input: &mut Input| {
        input.upsert(versions[next].clone());
        next = 1 - next;
    };
    change(&mut input);
    let again = compiler.compile(&input, &options);
    assert_eq!(again.status.objects.len(), whole.status.objects.len());
    group.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter(|| {
            change(&mut input);
            compile(&mut compiler, &input, &options)
        })
    });
}

/// `HttpTable::new` alone (grouping by path value, sorting each group) for one virtual host with `n`
/// `PathPrefix` matches: the part of `compile` that grows with the rules of one host.
fn bench_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_table");
    for n in [100usize, 1_000, 10_000] {
        let entries = || -> Vec<(HttpMatch, HttpPrecedence, usize)> {
            (0..n)
                .map(|i| {
                    let m = HttpMatch {
                        path: PathMatch::parse(Some("PathPrefix"), Some(&format!("/svc-{i:05}")))
                            .unwrap(),
                        method: None,
                        headers: vec![],
                        query: vec![],
                    };
                    let order = RouteOrder {
                        name: format!("route-{i:05}").into(),
                        ..Default::default()
                    };
                    let p = HttpPrecedence::of(&m, order);
                    (m, p, i)
                })
                .collect()
        };
        if n >= 1_000 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("new", n), |b| {
            b.iter_batched(entries, HttpTable::new, criterion::BatchSize::LargeInput)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_compile, bench_recompile, bench_table);
criterion_main!(benches);
