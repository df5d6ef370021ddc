//! `Compiler`: what it takes again from the last compile, and that its result is always the
//! one a whole compile gives.

use std::sync::Arc;

use super::*;
use crate::status::RouteStatus;

const TWO_ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules: [{matches: [{path: {type: PathPrefix, value: /a}}], backendRefs: [{name: local, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules: [{matches: [{path: {type: PathPrefix, value: /b}}], backendRefs: [{name: local, port: 8080}]}]
"#;

/// The key of HTTPRoute `app/name`.
fn route_key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::HttpRoute,
        namespace: "app".into(),
        name: name.into(),
    }
}

fn route_status(compiled: &Compiled, name: &str) -> Arc<RouteStatus> {
    let key = route_key(name);
    match compiled.status.get(&key) {
        Some(ObjectStatus::Route(r)) => r.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

/// Route `b` of [`TWO_ROUTES`] with another path.
fn b_elsewhere() -> Object {
    let mut changed = input(TWO_ROUTES);
    let Some(Object::HttpRoute(mut b)) = changed.remove(&route_key("b")) else {
        panic!("no route b")
    };
    Arc::make_mut(&mut b).spec.rules[0].matches[0].path = Some(HttpPathMatch {
        type_: Some("PathPrefix".into()),
        value: Some("/elsewhere".into()),
    });
    Object::HttpRoute(b)
}

/// The snapshot as text, but for each listener's map of exact hostnames to virtual hosts (a
/// `HashMap`, whose order differs from one map to the next; the virtual hosts are listed).
fn snapshot_text(s: &crate::Snapshot) -> String {
    let text = format!("{s:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("exact: {") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("the map closes");
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out
}

fn assert_same(reused: &Compiled, whole: &Compiled) {
    assert_eq!(reused.status, whole.status);
    assert_eq!(
        snapshot_text(&reused.snapshot),
        snapshot_text(&whole.snapshot)
    );
    assert_eq!(reused.endpoint_sources, whole.endpoint_sources);
}

#[test]
fn a_route_whose_object_and_world_are_unchanged_is_taken_from_the_last_compile() {
    let mut input = input(TWO_ROUTES);
    let mut compiler = Compiler::new();
    let options = Options::default();
    let first = compiler.compile(&input, &options);
    input.upsert(b_elsewhere());
    let second = compiler.compile(&input, &options);
    assert!(Arc::ptr_eq(
        &route_status(&first, "a"),
        &route_status(&second, "a")
    ));
    assert!(!Arc::ptr_eq(
        &route_status(&first, "b"),
        &route_status(&second, "b")
    ));
    assert_same(&second, &compile_with(&input, &options));
    assert_eq!(
        decide_status(&second, "/elsewhere"),
        decide_status(&first, "/b")
    );
}

#[test]
fn a_staged_compile_gives_the_snapshot_first_and_then_the_status_a_whole_compile_gives() {
    let mut input = input(TWO_ROUTES);
    let mut compiler = Compiler::new();
    let options = Options::default();
    let _ = compiler.compile(&input, &options);
    input.upsert(b_elsewhere());
    let whole = compile_with(&input, &options);
    let crate::Staged {
        snapshot,
        status,
        endpoint_sources,
    } = compiler.compile_staged(&input, &options);
    assert_eq!(snapshot_text(&snapshot), snapshot_text(&whole.snapshot));
    assert_eq!(endpoint_sources, whole.endpoint_sources);
    let status = status.finish();
    assert!(matches!(
        status.get(&route_key("b")),
        Some(ObjectStatus::Route(_))
    ));
    assert_eq!(status, whole.status);
}

/// The virtual hosts of the Gateway's one listener, by hostname.
fn vhosts(compiled: &Compiled) -> Vec<(String, Arc<crate::snapshot::VirtualHost>)> {
    let gw = crate::snapshot::GatewayName::new("infra", "gw");
    compiled.snapshot.gateways[&gw].ports[&80].http_listeners()[0]
        .vhosts
        .iter()
        .map(|v| (format!("{:?}", v.hostname), v.clone()))
        .collect()
}

#[test]
fn a_virtual_host_whose_rules_are_unchanged_is_taken_from_the_last_compile() {
    let with_hosts = TWO_ROUTES.replace(
        "  parentRefs: [{name: gw, namespace: infra}]\n  rules: [{matches: [{path: {type: PathPrefix, value: /a}}]",
        "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{matches: [{path: {type: PathPrefix, value: /a}}]",
    );
    assert_ne!(with_hosts, TWO_ROUTES);
    let mut input = input(&with_hosts);
    let mut compiler = Compiler::new();
    let options = Options::default();
    let first = vhosts(&compiler.compile(&input, &options));
    input.upsert(b_elsewhere());
    let second = compiler.compile(&input, &options);
    let second_vhosts = vhosts(&second);
    assert_eq!(first.len(), 2);
    for ((host, before), (_, after)) in first.iter().zip(&second_vhosts) {
        // `a` (its own hostname) is the same; `b` (any hostname) was built again.
        assert_eq!(
            Arc::ptr_eq(before, after),
            host.contains("a.example.com"),
            "{host}"
        );
    }
    assert_same(&second, &compile_with(&input, &options));
}

#[test]
fn an_equal_object_upserted_again_stays_the_same_object() {
    let mut input = input(TWO_ROUTES);
    let before = input.http_routes[0].clone();
    let again = Object::from(HttpRoute::clone(&before));
    assert_eq!(input.upsert(again.clone()), Some(again));
    assert!(Arc::ptr_eq(&before, &input.http_routes[0]));
    // So the compiler takes every route again.
    let mut compiler = Compiler::new();
    let first = compiler.compile(&input, &Options::default());
    let second = compiler.compile(&input, &Options::default());
    for name in ["a", "b"] {
        assert!(Arc::ptr_eq(
            &route_status(&first, name),
            &route_status(&second, name)
        ));
    }
}

#[test]
fn a_change_to_an_object_that_is_not_a_route_compiles_every_route_again() {
    let mut input = input(TWO_ROUTES);
    let mut compiler = Compiler::new();
    let options = Options::default();
    let first = compiler.compile(&input, &options);
    // The Service both routes send to loses its port: both lose their backend.
    let mut local = Service::clone(&input.services[1]);
    assert_eq!(local.metadata.name, "local");
    local.spec.ports[0].port = 9090;
    input.upsert(Object::from(local));
    let second = compiler.compile(&input, &options);
    for name in ["a", "b"] {
        assert!(!Arc::ptr_eq(
            &route_status(&first, name),
            &route_status(&second, name)
        ));
    }
    assert_ne!(first.status, second.status);
    assert_same(&second, &compile_with(&input, &options));
}

#[test]
fn other_options_compile_every_route_again() {
    let input = input(TWO_ROUTES);
    let mut compiler = Compiler::new();
    let first = compiler.compile(&input, &Options::default());
    let other = Options {
        global_rate_limits: true,
        ..Options::default()
    };
    let second = compiler.compile(&input, &other);
    assert!(!Arc::ptr_eq(
        &route_status(&first, "a"),
        &route_status(&second, "a")
    ));
    assert_same(&second, &compile_with(&input, &other));
}

/// One change to the random world of `compile_never_panics_and_reports_each_parent_once`.
#[derive(Clone, Debug)]
enum Step {
    /// A new route, or a new version of one (same namespace and name).
    Upsert(Box<HttpRoute>),
    /// A route upserted again unchanged (the object stays).
    Again(prop::sample::Index),
    Remove(prop::sample::Index),
    /// A Gateway's listeners change.
    Listeners(usize, Vec<Listener>),
    /// The Service changes its port.
    ServicePort(i32),
    /// The Gateways listen on other addresses (options change).
    Address(String),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => arb_route().prop_map(|r| Step::Upsert(Box::new(r))),
        3 => any::<prop::sample::Index>().prop_map(Step::Again),
        2 => any::<prop::sample::Index>().prop_map(Step::Remove),
        1 => (0..NAMESPACES.len(), prop::collection::vec(arb_listener(), 0..=3))
            .prop_map(|(gw, l)| Step::Listeners(gw, l)),
        1 => prop::sample::select(vec![8080, 9090]).prop_map(Step::ServicePort),
        1 => s(&["10.0.0.1", "10.0.0.2"]).prop_map(Step::Address),
    ]
}

fn apply(input: &mut Input, options: &mut Options, step: Step) {
    match step {
        Step::Upsert(r) => {
            input.upsert(Object::from(*r));
        }
        Step::Again(i) if !input.http_routes.is_empty() => {
            let r = &input.http_routes[i.index(input.http_routes.len())];
            input.upsert(Object::from(HttpRoute::clone(r)));
        }
        Step::Remove(i) if !input.http_routes.is_empty() => {
            let r = &input.http_routes[i.index(input.http_routes.len())];
            let key = Object::from(HttpRoute::clone(r)).key();
            input.remove(&key);
        }
        Step::Again(_) | Step::Remove(_) => {}
        Step::Listeners(gw, listeners) => {
            let ns = NAMESPACES[gw];
            let g = input
                .gateways
                .iter()
                .find(|g| g.metadata.namespace.as_deref() == Some(ns))
                .expect("a gateway per namespace");
            let mut g = Gateway::clone(g);
            g.spec.listeners = listeners;
            input.upsert(Object::from(g));
        }
        Step::ServicePort(port) => {
            let mut svc = Service::clone(&input.services[0]);
            svc.spec.ports[0].port = port;
            input.upsert(Object::from(svc));
        }
        Step::Address(a) => {
            options.default_addresses = vec![crate::status::StatusAddress {
                type_: "IPAddress".into(),
                value: a,
            }];
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn compiling_again_gives_what_a_whole_compile_gives_after_every_change(
        listeners in prop::collection::vec(prop::collection::vec(arb_listener(), 0..=3), 2),
        routes in prop::collection::vec(arb_route(), 0..=5),
        steps in prop::collection::vec(arb_step(), 1..=12),
    ) {
        let mut input = world(listeners, routes);
        let mut options = Options::default();
        let mut compiler = Compiler::new();
        let _ = compiler.compile(&input, &options);
        for step in steps {
            apply(&mut input, &mut options, step);
            let reused = compiler.compile(&input, &options);
            let whole = compile_with(&input, &options);
            prop_assert_eq!(&reused.status, &whole.status);
            prop_assert_eq!(snapshot_text(&reused.snapshot), snapshot_text(&whole.snapshot));
            prop_assert_eq!(&reused.endpoint_sources, &whole.endpoint_sources);
        }
    }
}

#[test]
fn routes_that_name_the_same_parent_share_its_parent_ref_and_controller_name_in_status() {
    let input = input(TWO_ROUTES);
    let mut compiler = Compiler::new();
    let compiled = compiler.compile(&input, &Options::default());
    let (a, b) = (route_status(&compiled, "a"), route_status(&compiled, "b"));
    let (a, b) = (&a.parents[0], &b.parents[0]);
    assert_eq!(a.parent_ref.namespace.as_deref(), Some("infra"));
    assert!(Arc::ptr_eq(&a.parent_ref, &b.parent_ref));
    assert!(Arc::ptr_eq(&a.controller_name, &b.controller_name));
    // A route changed later gets the copy the memo keeps.
    let mut input = input;
    input.upsert(b_elsewhere());
    let again = compiler.compile(&input, &Options::default());
    let b = route_status(&again, "b");
    assert!(Arc::ptr_eq(&a.parent_ref, &b.parents[0].parent_ref));
}
