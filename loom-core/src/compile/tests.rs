//! Compiler tests: route status for the common failure modes, determinism, and the property
//! that `compile` never panics and writes one `status.parents` entry per distinct parentRef.

use std::collections::BTreeSet;

use http::{HeaderMap, Method, StatusCode, Uri};
use proptest::prelude::*;

use super::*;
use crate::load::load_str;
use crate::snapshot::{Decision, GatewayName, HttpRequest};
use crate::status::{ConditionType, ObjectStatus, Reason, RouteParentStatus};

mod client;
mod http3;
mod plugins;
mod reuse;
mod traffic;

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: loom.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: loom
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {namespaces: {from: All}}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: backends}
spec:
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: app}
spec:
  ports: [{port: 8080}]
"#;

fn input(extra: &str) -> Input {
    let loaded = load_str("test.yaml", &format!("{BASE}---\n{extra}"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut input = Input::default();
    for (_, object) in loaded.objects {
        input.upsert(object);
    }
    input
}

fn route_parents<'s>(
    status: &'s Status,
    namespace: &str,
    name: &str,
) -> &'s Vec<RouteParentStatus> {
    let key = ObjectKey {
        kind: Kind::HttpRoute,
        namespace: namespace.into(),
        name: name.into(),
    };
    match status.get(&key) {
        Some(ObjectStatus::Route(r)) => &r.parents,
        other => panic!("no route status for {key}: {other:?}"),
    }
}

/// `(status, reason)` of a condition.
fn condition(p: &RouteParentStatus, t: ConditionType) -> (bool, Reason) {
    let c = p
        .conditions
        .get(t)
        .unwrap_or_else(|| panic!("no {t:?} condition in {p:?}"));
    (c.status, c.reason)
}

/// What Gateway `infra/gw` decides on port 80 for `method url` with `headers`.
fn decide_on_gw<'c>(
    compiled: &'c Compiled,
    method: &Method,
    url: &str,
    headers: &HeaderMap,
) -> Decision<'c> {
    let uri: Uri = url.parse().unwrap();
    let req = HttpRequest {
        scheme: "http",
        sni: None,
        method,
        uri: &uri,
        headers,
    };
    compiled
        .snapshot
        .decide(&GatewayName::new("infra", "gw"), 80, &req, 7)
}

fn decide_status(compiled: &Compiled, path: &str) -> Result<String, StatusCode> {
    let url = format!("http://example.com{path}");
    match decide_on_gw(compiled, &Method::GET, &url, &HeaderMap::new()) {
        Decision::Forward(f) => Ok(f.backend.object.to_string()),
        Decision::Redirect { status, .. } => Err(status),
        Decision::Respond(r) => Err(r.status),
    }
}

const ROUTE_TO_MISSING_SERVICE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: nope, port: 8080}]
  - backendRefs: [{name: local, port: 8080}]
"#;

#[test]
fn missing_backend_service_is_backend_not_found_but_accepted() {
    let compiled = compile(&input(ROUTE_TO_MISSING_SERVICE));
    let parents = route_parents(&compiled.status, "app", "web");
    assert_eq!(parents.len(), 1);
    let p = &parents[0];
    assert_eq!(*p.controller_name, *CONTROLLER_NAME);
    assert_eq!(p.parent_ref.namespace.as_deref(), Some("infra"));
    assert_eq!(
        condition(p, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        condition(p, ConditionType::ResolvedRefs),
        (false, Reason::BackendNotFound)
    );
    // The broken rule answers 500; the other rule of the same route still works.
    assert_eq!(
        decide_status(&compiled, "/missing/x"),
        Err(StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(
        decide_status(&compiled, "/other"),
        Ok("Service app/local".into())
    );
}

fn slice_of(namespace: &str, service: &str, ip: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {service}-1, namespace: {namespace}, \
         labels: {{kubernetes.io/service-name: {service}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [{ip}]}}]\nports: [{{port: 8080}}]\n"
    )
}

#[test]
fn endpoint_sources_are_the_services_whose_slices_a_route_reads() {
    let compiled = compile(&input(ROUTE_TO_MISSING_SERVICE));
    // `app/nope` does not exist and `backends/svc` no route names: neither is read.
    assert_eq!(
        compiled.endpoint_sources,
        BTreeSet::from([("app".to_owned(), "local".to_owned())])
    );
}

#[test]
fn a_slice_of_a_service_no_route_reads_changes_nothing() {
    let base = compile(&input(ROUTE_TO_MISSING_SERVICE));
    let unread = slice_of("backends", "svc", "10.0.0.9");
    let with = compile(&input(&format!("{ROUTE_TO_MISSING_SERVICE}---\n{unread}")));
    assert_eq!(with.status, base.status);
    assert_eq!(
        format!("{:?}", with.snapshot),
        format!("{:?}", base.snapshot)
    );
    // One of a Service that is read does change the snapshot.
    let read = slice_of("app", "local", "10.0.0.7");
    let with = compile(&input(&format!("{ROUTE_TO_MISSING_SERVICE}---\n{read}")));
    assert_ne!(
        format!("{:?}", with.snapshot),
        format!("{:?}", base.snapshot)
    );
}

/// Two Gateways, each with a route to `app/local`, and a third route to `backends/svc` on
/// the second, which a BackendTLSPolicy targets with `app/local`.
const TWO_GATEWAYS_ONE_SERVICE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: infra}
spec:
  gatewayClassName: loom
  listeners: [{name: http, port: 81, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules: [{backendRefs: [{name: local, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: app}
spec:
  parentRefs: [{name: other, namespace: infra}]
  rules: [{backendRefs: [{name: local, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: c, namespace: app}
spec:
  parentRefs: [{name: other, namespace: infra}]
  rules: [{backendRefs: [{name: svc, namespace: backends, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-app, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]
  to: [{group: "", kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: tls, namespace: app}
spec:
  targetRefs: [{group: "", kind: Service, name: local}]
  validation: {hostname: local.example, wellKnownCACertificates: System}
"#;

#[test]
fn routes_that_read_the_same_services_make_each_of_their_gateways_an_ancestor() {
    let compiled = compile(&input(TWO_GATEWAYS_ONE_SERVICE));
    let key = ObjectKey {
        kind: Kind::BackendTlsPolicy,
        namespace: "app".into(),
        name: "tls".into(),
    };
    let Some(ObjectStatus::Policy(p)) = compiled.status.get(&key) else {
        panic!("{key}: {:?}", compiled.status.get(&key))
    };
    let ancestors: Vec<&str> = p.ancestors.iter().map(|a| &*a.ancestor_ref.name).collect();
    assert_eq!(ancestors, ["gw", "other"]);
    assert_eq!(
        compiled.endpoint_sources,
        BTreeSet::from([
            ("app".to_owned(), "local".to_owned()),
            ("backends".to_owned(), "svc".to_owned()),
        ])
    );
}

#[test]
fn a_compiled_route_and_its_status_keep_no_spare_capacity() {
    let compiled = compile(&input(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {name: one, namespace: app}\n\
         spec:\n  parentRefs: [{name: gw, namespace: infra}]\n  \
         rules: [{backendRefs: [{name: local, port: 8080}]}]\n",
    ));
    // A pushed-to empty list has room for four: per route, kept as long as it is served.
    let parents = route_parents(&compiled.status, "app", "one");
    assert_eq!((parents.len(), parents.capacity()), (1, 1));
    let port = compiled
        .snapshot
        .port(&GatewayName::new("infra", "gw"), 80)
        .unwrap();
    let route = port.http_listeners()[0]
        .vhosts
        .iter()
        .flat_map(|v| v.http.entries())
        .map(|(_, r)| r)
        .next()
        .unwrap();
    assert_eq!((route.backends.len(), route.backends.capacity()), (1, 1));
}

#[test]
fn a_backend_with_an_unusable_endpoint_is_unresolved_and_its_share_answers_500() {
    for (endpoint, why) in [
        (
            "127.0.0.1:99999",
            "the port must be a number from 1 to 65535",
        ),
        ("not-an-address", "has no port"),
        ("not an address:80", "the host must be an IP address"),
    ] {
        let compiled = compile(&input(&format!(
            r#"
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: be, namespace: app}}
spec: {{endpoints: ["127.0.0.1:8080", "{endpoint}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: app}}
spec:
  parentRefs: [{{name: gw, namespace: infra}}]
  rules: [{{backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: be}}]}}]
"#
        )));
        let p = &route_parents(&compiled.status, "app", "web")[0];
        assert_eq!(
            condition(p, ConditionType::ResolvedRefs),
            (false, Reason::UnsupportedValue),
            "{endpoint}"
        );
        let message = &p
            .conditions
            .get(ConditionType::ResolvedRefs)
            .unwrap()
            .message;
        assert!(
            message.contains(endpoint) && message.contains(why),
            "{endpoint}: {message}"
        );
        assert_eq!(
            decide_status(&compiled, "/"),
            Err(StatusCode::INTERNAL_SERVER_ERROR),
            "{endpoint}"
        );
    }
}

#[test]
fn section_name_without_listener_is_no_matching_parent() {
    let compiled = compile(&input(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs:
  - {name: gw, namespace: infra, sectionName: https}
  - {name: gw, namespace: infra, sectionName: http}
  rules: [{backendRefs: [{name: local, port: 8080}]}]
"#,
    ));
    let parents = route_parents(&compiled.status, "app", "web");
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0].parent_ref.section_name.as_deref(), Some("https"));
    assert_eq!(
        condition(&parents[0], ConditionType::Accepted),
        (false, Reason::NoMatchingParent)
    );
    assert_eq!(parents[1].parent_ref.section_name.as_deref(), Some("http"));
    assert_eq!(
        condition(&parents[1], ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        condition(&parents[1], ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    // The listener counts the route once.
    let gw = ObjectKey {
        kind: Kind::Gateway,
        namespace: "infra".into(),
        name: "gw".into(),
    };
    let Some(ObjectStatus::Gateway(g)) = compiled.status.get(&gw) else {
        panic!("no gateway status")
    };
    assert_eq!(g.listeners[0].attached_routes, 1);
}

#[test]
fn route_with_only_an_unknown_section_name_is_not_served() {
    let compiled = compile(&input(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: nope}]
  rules: [{backendRefs: [{name: local, port: 8080}]}]
"#,
    ));
    let parents = route_parents(&compiled.status, "app", "web");
    assert_eq!(
        condition(&parents[0], ConditionType::Accepted),
        (false, Reason::NoMatchingParent)
    );
    assert_eq!(decide_status(&compiled, "/"), Err(StatusCode::NOT_FOUND));
}

const CROSS_NAMESPACE_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules: [{backendRefs: [{name: svc, namespace: backends, port: 8080}]}]
"#;

#[test]
fn cross_namespace_backend_needs_a_reference_grant() {
    let compiled = compile(&input(CROSS_NAMESPACE_ROUTE));
    let p = &route_parents(&compiled.status, "app", "web")[0];
    assert_eq!(
        condition(p, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        condition(p, ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
    assert_eq!(
        decide_status(&compiled, "/"),
        Err(StatusCode::INTERNAL_SERVER_ERROR)
    );

    // A grant in the wrong namespace, or for another kind, or another name, does not help.
    for wrong in [
        "metadata: {name: g, namespace: app}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]\n  to: [{group: '', kind: Service}]",
        "metadata: {name: g, namespace: backends}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: app}]\n  to: [{group: '', kind: Service}]",
        "metadata: {name: g, namespace: backends}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]\n  to: [{group: '', kind: Service, name: other}]",
        "metadata: {name: g, namespace: backends}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: elsewhere}]\n  to: [{group: '', kind: Service}]",
    ] {
        let yaml = format!(
            "{CROSS_NAMESPACE_ROUTE}---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n{wrong}\n"
        );
        let compiled = compile(&input(&yaml));
        let p = &route_parents(&compiled.status, "app", "web")[0];
        assert_eq!(
            condition(p, ConditionType::ResolvedRefs),
            (false, Reason::RefNotPermitted),
            "{wrong}"
        );
    }

    let grant = r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-app, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]
  to: [{group: "", kind: Service, name: svc}]
"#;
    let compiled = compile(&input(&format!("{CROSS_NAMESPACE_ROUTE}{grant}")));
    let p = &route_parents(&compiled.status, "app", "web")[0];
    assert_eq!(
        condition(p, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        condition(p, ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    assert_eq!(
        decide_status(&compiled, "/"),
        Ok("Service backends/svc".into())
    );
}

const SEVERAL_ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: second, namespace: infra}
spec:
  gatewayClassName: loom
  listeners:
  - {name: a, port: 8080, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: All}}}
  - {name: b, port: 8080, protocol: HTTP, hostname: "*.example.com"}
  - {name: c, port: 8443, protocol: HTTPS}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: one, namespace: app, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw, namespace: infra}, {name: second, namespace: infra}]
  hostnames: [a.example.com, other.org]
  rules:
  - matches: [{path: {type: Exact, value: /x}}, {headers: [{name: v, value: "1"}]}]
    backendRefs: [{name: local, port: 8080}, {name: svc, namespace: backends, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: two, namespace: backends, creationTimestamp: "2023-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw, namespace: infra, port: 80}, {name: second, namespace: infra, sectionName: b}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/v[0-9]+"}}]
    filters: [{type: ExtensionRef, extensionRef: {group: x, kind: Y, name: z}}]
    backendRefs: [{name: svc, port: 8080}]
  - matches: [{path: {type: Bogus}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: three, namespace: app}
spec:
  parentRefs: [{name: missing, namespace: infra}, {name: gw, namespace: infra, sectionName: http}]
  hostnames: ["*.example.com", "bad_host"]
  rules: [{backendRefs: [{name: local, port: 9999}]}]
"#;

#[test]
fn a_gateway_assigned_its_own_address_reports_and_serves_it() {
    let ip = |v: &str| StatusAddress {
        type_: "IPAddress".into(),
        value: v.into(),
    };
    let opts = Options {
        default_addresses: vec![ip("127.0.0.1")],
        gateway_addresses: [(("infra".into(), "gw".into()), vec![ip("127.64.0.9")])].into(),
        ..Options::default()
    };
    let compiled = compile_with(&input(""), &opts);
    let key = ObjectKey {
        kind: Kind::Gateway,
        namespace: "infra".into(),
        name: "gw".into(),
    };
    let Some(ObjectStatus::Gateway(s)) = compiled.status.get(&key) else {
        panic!("no Gateway status");
    };
    assert_eq!(s.addresses, vec![ip("127.64.0.9")]);
    let served = &compiled.snapshot.gateways[&GatewayName::new("infra", "gw")];
    assert_eq!(served.addresses, vec![ip("127.64.0.9")]);
}

#[test]
fn a_gateway_whose_data_plane_is_not_ready_is_accepted_but_not_programmed() {
    let why = NotServing::Pending("waiting for a data-plane pod".to_owned());
    let opts = Options {
        gateway_not_programmed: [(("infra".into(), "gw".into()), why)].into(),
        ..Options::default()
    };
    let compiled = compile_with(&input(""), &opts);
    let key = ObjectKey {
        kind: Kind::Gateway,
        namespace: "infra".into(),
        name: "gw".into(),
    };
    let Some(ObjectStatus::Gateway(s)) = compiled.status.get(&key) else {
        panic!("no Gateway status");
    };
    assert!(s.conditions.is_true(ConditionType::Accepted));
    let programmed = s.conditions.get(ConditionType::Programmed).unwrap();
    assert!(!programmed.status);
    assert_eq!(programmed.reason, Reason::Pending);
    assert_eq!(programmed.message, "waiting for a data-plane pod");
}

#[test]
fn a_port_the_data_plane_could_not_open_leaves_its_listeners_pending() {
    let options = Options {
        ports_not_serving: [(
            ("infra".into(), "gw".into(), 80),
            "tcp 0.0.0.0:80: Address in use".into(),
        )]
        .into(),
        ..Options::default()
    };
    let compiled = compile_with(&input(ROUTE_TO_MISSING_SERVICE), &options);
    let key = ObjectKey {
        kind: Kind::Gateway,
        namespace: "infra".into(),
        name: "gw".into(),
    };
    let Some(ObjectStatus::Gateway(g)) = compiled.status.get(&key) else {
        panic!("no Gateway status");
    };
    let programmed = g.listeners[0]
        .conditions
        .get(ConditionType::Programmed)
        .unwrap();
    assert_eq!(
        (programmed.status, programmed.reason),
        (false, Reason::Pending)
    );
    assert_eq!(
        programmed.message,
        "port 80 is not open: tcp 0.0.0.0:80: Address in use"
    );
    // Without the report, the same listener is Programmed.
    let compiled = compile(&input(ROUTE_TO_MISSING_SERVICE));
    let Some(ObjectStatus::Gateway(g)) = compiled.status.get(&key) else {
        panic!("no Gateway status");
    };
    assert!(
        g.listeners[0]
            .conditions
            .get(ConditionType::Programmed)
            .unwrap()
            .status
    );
}

#[test]
fn compiling_twice_gives_the_same_status() {
    let input = input(SEVERAL_ROUTES);
    let a = compile(&input);
    let b = compile(&input);
    assert_eq!(a.status, b.status);
    assert!(
        a.status.objects.len() >= 5,
        "{:?}",
        a.status.objects.keys().collect::<Vec<_>>()
    );
}

#[test]
fn object_order_in_the_input_does_not_matter() {
    let forward = input(SEVERAL_ROUTES);
    let mut reversed = Input::default();
    for object in forward.objects().into_iter().rev() {
        reversed.upsert(object);
    }
    assert_ne!(forward.http_routes, reversed.http_routes);
    assert_eq!(compile(&forward).status, compile(&reversed).status);
}

#[test]
fn misdirected_request_check_tells_same_named_listeners_apart() {
    // A ListenerSet's listener may be named like a Gateway listener on the same port (names are
    // only unique within their owner); SNI for one and Host for the other is still a 421.
    use crate::route::host::HostPattern;
    use crate::route::{GrpcTable, HttpMatch, HttpPrecedence, HttpTable, RouteOrder};
    use crate::snapshot::{
        Filters, HttpListener, HttpRule, PortListeners, PortSnapshot, Timeouts, VirtualHost,
    };
    let host = |h: &str| Some(HostPattern::parse(h).unwrap());
    let owner = |kind: Kind, name: &str| ObjectKey {
        kind,
        namespace: "default".into(),
        name: name.into(),
    };
    let listener = |owner: ObjectKey, h: &str| {
        let rule = std::sync::Arc::new(HttpRule {
            route: owner.clone(),
            rule_index: 0,
            rule_name: None,
            filters: Filters::default(),
            backends: vec![],
            invalid: None,
            timeouts: Timeouts::default(),
            retry: None,
            rate_limit: None,
            plugins: None,
        });
        let m = HttpMatch {
            path: crate::route::path::PathMatch::Prefix("/".into()),
            method: None,
            headers: vec![],
            query: vec![],
        };
        let p = HttpPrecedence::of(&m, RouteOrder::default());
        let vhost = VirtualHost {
            hostname: host(h),
            http: HttpTable::new(vec![(m, p, rule)]),
            grpc: GrpcTable::new(vec![]),
        };
        HttpListener::new("https".into(), owner, host(h), None, vec![vhost.into()])
    };
    let port = PortSnapshot {
        port: 443,
        listeners: Some(PortListeners::Tls {
            https: vec![
                listener(owner(Kind::Gateway, "gw"), "a.example.com"),
                listener(owner(Kind::ListenerSet, "set"), "b.example.com"),
            ],
            tls: vec![],
        }),
        ..Default::default()
    };
    let headers = HeaderMap::new();
    let find = |sni: &str, uri: &str| {
        let uri: Uri = uri.parse().unwrap();
        let req = HttpRequest {
            scheme: "https",
            sni: Some(sni),
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
        };
        port.find(&req)
            .map(|m| m.listener.owner.to_string())
            .map_err(|no_route| no_route.status())
    };
    assert_eq!(
        find("b.example.com", "https://b.example.com/"),
        Ok("ListenerSet default/set".into())
    );
    assert_eq!(
        find("a.example.com", "https://a.example.com/"),
        Ok("Gateway default/gw".into())
    );
    assert_eq!(
        find("a.example.com", "https://b.example.com/"),
        Err(StatusCode::MISDIRECTED_REQUEST)
    );
    assert_eq!(
        find("b.example.com", "https://a.example.com/"),
        Err(StatusCode::MISDIRECTED_REQUEST)
    );
}

// ---------------------------------------------------------------------------------------------
// Property: compile never panics, and each distinct parentRef naming a Loom Gateway gets exactly
// one `status.parents` entry.

/// `None` most of the time, else one of the values.
fn rarely<T: Clone + std::fmt::Debug + 'static>(
    values: &[T],
) -> impl Strategy<Value = Option<T>> + use<T> {
    prop::option::weighted(0.25, prop::sample::select(values.to_vec()))
}

fn s(values: &[&'static str]) -> impl Strategy<Value = String> + use<> {
    prop::sample::select(values.to_vec()).prop_map(str::to_owned)
}

/// `common` most of the time, else one of `others`.
fn mostly(common: &'static str, others: &[&'static str]) -> impl Strategy<Value = String> + use<> {
    prop_oneof![4 => Just(common.to_owned()), 1 => s(others)]
}

fn rarely_s(values: &[&'static str]) -> impl Strategy<Value = Option<String>> + use<> {
    prop::option::weighted(0.25, s(values))
}

const GOOD_HOSTNAMES: &[&str] = &[
    "a.example.com",
    "*.example.com",
    "example.com",
    "*.a.example.com",
    "other.org",
];
const BAD_HOSTNAMES: &[&str] = &["bad_host", "1.2.3.4", "*", "", "a.*.com"];
const NAMESPACES: &[&str] = &["default", "other"];

fn hostname() -> impl Strategy<Value = String> {
    prop_oneof![6 => s(GOOD_HOSTNAMES), 1 => s(BAD_HOSTNAMES)]
}

fn arb_listener() -> impl Strategy<Value = Listener> {
    (
        s(&["http", "https", "tcp", "l"]),
        prop_oneof![6 => Just(80), 2 => Just(8080), 1 => prop::sample::select(vec![443, 0, 70000])],
        mostly("HTTP", &["HTTPS", "TLS", "TCP", "UDP", "FOO"]),
        prop::option::weighted(0.5, hostname()),
        rarely_s(&["All", "Same", "Selector", "None", "Bogus"]),
        prop::collection::vec(
            mostly("HTTPRoute", &["GRPCRoute", "TCPRoute", "Nope"]),
            0..=1,
        ),
    )
        .prop_map(|(name, port, protocol, hostname, from, kinds)| Listener {
            name,
            hostname,
            port,
            protocol,
            tls: None,
            allowed_routes: Some(AllowedRoutes {
                namespaces: Some(NamespacesFrom {
                    from,
                    selector: None,
                }),
                kinds: kinds
                    .into_iter()
                    .map(|kind| RouteGroupKind { group: None, kind })
                    .collect(),
            }),
        })
}

fn arb_parent_ref() -> impl Strategy<Value = ParentReference> {
    (
        rarely_s(&["", GATEWAY_GROUP, "example.com"]),
        rarely_s(&["Gateway", "ListenerSet", "Service"]),
        rarely_s(NAMESPACES),
        mostly("gw", &["foreign", "missing"]),
        rarely_s(&["http", "https", "tcp", "l", "nope"]),
        rarely(&[80, 8080, 443, -1]),
    )
        .prop_map(
            |(group, kind, namespace, name, section_name, port)| ParentReference {
                group,
                kind,
                namespace,
                name,
                section_name,
                port,
            },
        )
}

fn arb_match() -> impl Strategy<Value = HttpRouteMatch> {
    let path_type = prop_oneof![
        3 => prop::option::of(s(&["Exact", "PathPrefix"])),
        1 => prop::option::of(s(&["RegularExpression", "Bogus"])),
    ];
    let path_value = prop_oneof![
        4 => prop::option::of(s(&["/", "/a", "/a/", "/a/1", "/b"])),
        1 => prop::option::of(s(&["a", "//", "(", "/a/[0-9]+", "/%2f", "/a/../b"])),
    ];
    (
        prop::option::weighted(0.8, (path_type, path_value)),
        prop::collection::vec(
            (
                rarely_s(&["Exact", "RegularExpression"]),
                mostly("x", &["X", "bad name", ""]),
                mostly("1", &["["]),
            ),
            0..=1,
        ),
        prop::collection::vec(
            (
                rarely_s(&["Exact", "Nope"]),
                mostly("q", &[""]),
                mostly("1", &["("]),
            ),
            0..=1,
        ),
        rarely_s(&["GET", "bad method", ""]),
    )
        .prop_map(|(path, headers, query, method)| HttpRouteMatch {
            path: path.map(|(type_, value)| HttpPathMatch { type_, value }),
            headers: headers
                .into_iter()
                .map(|(type_, name, value)| HttpHeaderMatch { type_, name, value })
                .collect(),
            query_params: query
                .into_iter()
                .map(|(type_, name, value)| HttpHeaderMatch { type_, name, value })
                .collect(),
            method,
        })
}

fn arb_backend_ref() -> impl Strategy<Value = BackendRef> {
    (
        prop::sample::select(vec![
            (None, None),
            (None, None),
            (Some(""), Some("Service")),
            (Some(LOOM_GROUP), Some("Backend")),
            (Some("example.com"), Some("Thing")),
        ]),
        s(&["svc", "be", "missing"]),
        rarely_s(NAMESPACES),
        prop_oneof![3 => Just(Some(8080)), 1 => rarely(&[80, -1, 70000])],
        rarely(&[0, 1, 100, -5]),
    )
        .prop_map(
            |((group, kind), name, namespace, port, weight)| BackendRef {
                group: group.map(str::to_owned),
                kind: kind.map(str::to_owned),
                name,
                namespace,
                port,
                weight,
            },
        )
}

fn arb_filter() -> impl Strategy<Value = HttpRouteFilter> {
    prop_oneof![
        Just(HttpRouteFilter {
            type_: "RequestHeaderModifier".into(),
            ..Default::default()
        }),
        Just(HttpRouteFilter {
            type_: "RequestHeaderModifier".into(),
            request_header_modifier: Some(HeaderModifier {
                set: vec![HttpHeader {
                    name: "x-a".into(),
                    value: "1".into()
                }],
                add: vec![HttpHeader {
                    name: "bad name".into(),
                    value: "\n".into()
                }],
                remove: vec![],
            }),
            ..Default::default()
        }),
        Just(HttpRouteFilter {
            type_: "URLRewrite".into(),
            url_rewrite: Some(UrlRewrite {
                hostname: Some("new.example.com".into()),
                path: Some(HttpPathModifier {
                    type_: "ReplacePrefixMatch".into(),
                    replace_full_path: None,
                    replace_prefix_match: Some("/b".into()),
                }),
            }),
            ..Default::default()
        }),
        Just(HttpRouteFilter {
            type_: "RequestRedirect".into(),
            request_redirect: Some(RequestRedirect {
                scheme: Some("https".into()),
                port: Some(-3),
                status_code: Some(9999),
                ..Default::default()
            }),
            ..Default::default()
        }),
        arb_backend_ref().prop_map(|backend_ref| HttpRouteFilter {
            type_: "RequestMirror".into(),
            request_mirror: Some(RequestMirror {
                backend_ref,
                percent: None,
                fraction: Some(Fraction {
                    numerator: 3,
                    denominator: Some(0)
                }),
            }),
            ..Default::default()
        }),
        Just(HttpRouteFilter {
            type_: "ExtensionRef".into(),
            ..Default::default()
        }),
        Just(HttpRouteFilter {
            type_: "Bogus".into(),
            ..Default::default()
        }),
    ]
}

/// No filter most of the time (most of them make the rule answer 500).
fn maybe_filter() -> impl Strategy<Value = Vec<HttpRouteFilter>> {
    prop::option::weighted(0.2, arb_filter()).prop_map(|f| f.into_iter().collect())
}

fn arb_rule() -> impl Strategy<Value = HttpRouteRule> {
    (
        prop::collection::vec(arb_match(), 0..=2),
        maybe_filter(),
        prop::collection::vec((arb_backend_ref(), maybe_filter()), 0..=2),
    )
        .prop_map(|(matches, filters, backends)| HttpRouteRule {
            matches,
            filters,
            backend_refs: backends
                .into_iter()
                .map(|(backend_ref, filters)| HttpBackendRef {
                    backend_ref,
                    filters,
                })
                .collect(),
            ..Default::default()
        })
}

fn arb_route() -> impl Strategy<Value = HttpRoute> {
    (
        s(NAMESPACES),
        s(&["r0", "r1", "r2", "r3"]),
        prop::option::of(s(&[
            "2024-01-01T00:00:00Z",
            "2023-01-01T00:00:00Z",
            "garbage",
        ])),
        prop::collection::vec(arb_parent_ref(), 0..=3),
        prop::collection::vec(hostname(), 0..=2),
        prop::collection::vec(arb_rule(), 0..=3),
    )
        .prop_map(
            |(namespace, name, ts, parent_refs, hostnames, rules)| HttpRoute {
                metadata: ObjectMeta {
                    name,
                    namespace: Some(namespace),
                    creation_timestamp: ts,
                    ..Default::default()
                },
                spec: HttpRouteSpec {
                    parent_refs,
                    hostnames,
                    rules,
                },
            },
        )
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

/// A world for the random routes: a Loom Gateway `gw` in each namespace with random listeners,
/// a `foreign` Gateway of another controller's class, a Service and a Loom Backend.
fn world(listeners: Vec<Vec<Listener>>, routes: Vec<HttpRoute>) -> Input {
    let mut input = Input::default();
    let class = |name: &str, controller: &str| GatewayClass {
        metadata: meta(None, name),
        spec: GatewayClassSpec {
            controller_name: controller.into(),
            ..Default::default()
        },
    };
    input.upsert(Object::from(class("loom", CONTROLLER_NAME)));
    input.upsert(Object::from(class("theirs", "example.com/other")));
    for (&ns, listeners) in NAMESPACES.iter().zip(listeners) {
        input.upsert(Object::from(Gateway {
            metadata: meta(Some(ns), "gw"),
            spec: GatewaySpec {
                gateway_class_name: "loom".into(),
                listeners,
                ..Default::default()
            },
        }));
    }
    input.upsert(Object::from(Gateway {
        metadata: meta(Some("default"), "foreign"),
        spec: GatewaySpec {
            gateway_class_name: "theirs".into(),
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
        metadata: meta(Some("default"), "svc"),
        spec: ServiceSpec {
            ports: vec![ServicePort {
                port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    }));
    input.upsert(Object::from(Backend {
        metadata: meta(Some("other"), "be"),
        spec: BackendSpec {
            endpoints: vec!["127.0.0.1:1".into()],
            protocol: None,
        },
    }));
    for r in routes {
        input.upsert(Object::from(r));
    }
    input
}

/// The parentRefs of a route that name a Gateway of Loom's, normalised the way status writes
/// them, without duplicates.
fn expected_parents(input: &Input, route: &HttpRoute) -> BTreeSet<ParentReference> {
    let ns = route.metadata.namespace_or_default();
    route
        .spec
        .parent_refs
        .iter()
        .filter(|p| {
            p.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                && p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
        })
        .filter(|p| {
            let parent_ns = p.namespace.as_deref().unwrap_or(ns);
            input.gateways.iter().any(|g| {
                g.metadata.namespace_or_default() == parent_ns
                    && g.metadata.name == p.name
                    && g.spec.gateway_class_name == "loom"
            })
        })
        .map(|p| ParentReference {
            group: Some(GATEWAY_GROUP.into()),
            kind: Some("Gateway".into()),
            namespace: Some(p.namespace.clone().unwrap_or_else(|| ns.to_owned())),
            ..p.clone()
        })
        .collect()
}

#[test]
fn invalid_rules_are_dropped_and_reported_as_partially_invalid() {
    let compiled = compile(&input(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: partly, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ok}}]
    backendRefs: [{name: local, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: no-slash}}]
    backendRefs: [{name: local, port: 8080}]
  - filters: [{type: RequestRedirect, requestRedirect: {statusCode: 418}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - matches: [{path: {type: Exact, value: /a//b}}]
    backendRefs: [{name: local, port: 8080}]
"#,
    ));
    let partly = &route_parents(&compiled.status, "app", "partly")[0];
    assert_eq!(
        condition(partly, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        condition(partly, ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    let pi = partly
        .conditions
        .get(ConditionType::PartiallyInvalid)
        .expect("PartiallyInvalid");
    assert!(pi.status && pi.reason == Reason::UnsupportedValue);
    assert!(pi.message.starts_with("Dropped Rule 1: "), "{}", pi.message);
    assert!(
        pi.message.contains("Dropped Rule 2: redirect status 418"),
        "{}",
        pi.message
    );
    assert_eq!(
        decide_status(&compiled, "/ok"),
        Ok("Service app/local".to_owned())
    );

    let broken = &route_parents(&compiled.status, "app", "broken")[0];
    assert_eq!(
        condition(broken, ConditionType::Accepted),
        (false, Reason::UnsupportedValue)
    );
    assert!(
        broken
            .conditions
            .get(ConditionType::PartiallyInvalid)
            .is_none()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn compile_never_panics_and_reports_each_parent_once(
        listeners in prop::collection::vec(prop::collection::vec(arb_listener(), 0..=3), 2),
        routes in prop::collection::vec(arb_route(), 0..=5),
    ) {
        let input = world(listeners, routes);
        let compiled = compile(&input);

        for route in &input.http_routes {
            let key = ObjectKey {
                kind: Kind::HttpRoute,
                namespace: route.metadata.namespace_or_default().into(),
                name: route.metadata.name.clone(),
            };
            let expected = expected_parents(&input, route);
            let got: Vec<ParentReference> = match compiled.status.get(&key) {
                Some(ObjectStatus::Route(r)) => r.parents.iter().map(|p| (*p.parent_ref).clone()).collect(),
                Some(other) => panic!("{key} has a non-route status {other:?}"),
                None => vec![],
            };
            let got_set: BTreeSet<_> = got.iter().cloned().collect();
            prop_assert_eq!(got.len(), got_set.len(), "duplicate parents for {}: {:?}", key, got);
            prop_assert_eq!(&got_set, &expected, "parents of {}", key);
            if let Some(ObjectStatus::Route(r)) = compiled.status.get(&key) {
                for p in &r.parents {
                    prop_assert!(p.conditions.get(ConditionType::Accepted).is_some());
                    prop_assert!(p.conditions.get(ConditionType::ResolvedRefs).is_some());
                }
            }
        }

        // Compiling again, or with the objects listed in another order, gives the same status.
        prop_assert_eq!(&compile(&input).status, &compiled.status);
        let mut reordered = input.clone();
        reordered.http_routes.reverse();
        reordered.gateways.reverse();
        prop_assert_eq!(&compile(&reordered).status, &compiled.status);

        // Deciding on the result never panics either, and the fast matcher agrees with the
        // reference matcher on every compiled table.
        let paths = ["/", "/a", "/a/", "/a/1", "/b", "/%2e%2e/x", "/a/%41?q=1"];
        let hosts = ["a.example.com", "example.com", "x.a.example.com", "other.org", "1.2.3.4:80"];
        let headers: HeaderMap = [(http::header::HeaderName::from_static("x"), http::HeaderValue::from_static("1"))]
            .into_iter()
            .collect();
        for (name, gw) in &compiled.snapshot.gateways {
            for (port, ps) in &gw.ports {
                for host in hosts {
                    for path in paths {
                        let uri: Uri = format!("http://{host}{path}").parse().unwrap();
                        let req = HttpRequest { scheme: "http", sni: None, method: &Method::GET, uri: &uri, headers: &headers };
                        let _ = compiled.snapshot.decide(name, *port, &req, 3);
                    }
                }
                for listener in ps.http_listeners() {
                    for vhost in &listener.vhosts {
                        for path in ["/", "/a", "/a/", "/a/1", "/b"] {
                            let view = crate::route::RequestView { method: &Method::GET, path, query: Some("q=1"), headers: &headers };
                            let fast = vhost.http.find(&view).map(|(m, _)| m as *const _);
                            let reference = vhost.http.find_reference(&view).map(|(m, _)| m as *const _);
                            prop_assert_eq!(fast, reference);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_grpc_route_speaks_http2_to_its_backend_whatever_the_service_port_says() {
    // The same Service port, without appProtocol, behind an HTTPRoute and a GRPCRoute.
    let compiled = compile(&input(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [web.example.com]
  rules: [{backendRefs: [{name: local, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [rpc.example.com]
  rules: [{backendRefs: [{name: local, port: 8080}]}]
"#,
    ));
    let protocol = |host: &str, method: &Method, content_type: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        let url = format!("http://{host}/shop.Catalog/List");
        match decide_on_gw(&compiled, method, &url, &headers) {
            Decision::Forward(f) => f.backend.protocol,
            other => panic!("not forwarded: {other:?}"),
        }
    };
    assert_eq!(
        protocol("rpc.example.com", &Method::POST, "application/grpc"),
        crate::snapshot::AppProtocol::H2c
    );
    assert_eq!(
        protocol("web.example.com", &Method::GET, "text/plain"),
        crate::snapshot::AppProtocol::Http
    );
}
