//! Diagnostics: dangling parentRefs with the closest match and the fix, notes on parents Loom
//! does not serve, and why objects have no status.

use super::*;
use crate::load::load_str;

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: loom.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: loom-gateway, namespace: loom-system}
spec:
  gatewayClassName: loom
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
  - {name: open, port: 8081, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: closed, namespace: loom-system}
spec:
  gatewayClassName: loom
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: default}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;

fn input(extra: &str) -> Input {
    let loaded = load_str("test.yaml", &format!("{BASE}---\n{extra}"));
    assert!(
        loaded.errors.iter().all(|e| e.is_warning()),
        "{:?}",
        loaded.errors
    );
    Input::from_objects(loaded.objects.into_iter().map(|(_, o)| o))
}

fn diagnostics(extra: &str) -> Vec<(Option<String>, Severity, String)> {
    diagnose(&input(extra), &Options::default())
        .into_iter()
        .map(|d| (d.field, d.severity, d.message))
        .collect()
}

fn route(parent_refs: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, \
         namespace: default}}\nspec:\n  parentRefs: {parent_refs}\n"
    )
}

#[test]
fn a_parent_in_another_namespace_is_suggested_with_the_fix() {
    let d = diagnostics(&route("[{name: closed}]"));
    assert_eq!(
        d,
        [(
            Some("spec.parentRefs[0]".into()),
            Severity::Warning,
            "parentRefs[0] names Gateway default/closed, which does not exist; did you mean \
             loom-system/closed? add \"namespace: loom-system\" to the parentRef, and allow \
             routes from namespace \"default\" on its listener \"http\" \
             (allowedRoutes.namespaces.from: All or Selector)"
                .into()
        )]
    );
}

#[test]
fn the_allowed_routes_hint_is_left_out_when_a_listener_admits_the_namespace() {
    let d = diagnostics(&route(
        "[{name: web-route-first, namespace: x}, {name: loom-gateway}]",
    ));
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        d[1].2,
        "parentRefs[1] names Gateway default/loom-gateway, which does not exist; did you mean \
         loom-system/loom-gateway? add \"namespace: loom-system\" to the parentRef"
    );
    // Nothing close to the first: the Gateways there are are listed instead.
    assert_eq!(
        d[0].2,
        "parentRefs[0] names Gateway x/web-route-first, which does not exist; the Gateways in \
         the input are loom-system/loom-gateway, loom-system/closed, default/theirs"
    );
}

#[test]
fn the_section_name_narrows_the_listeners_the_hint_names() {
    let d = diagnostics(&route("[{name: loom-gateway, sectionName: http}]"));
    assert!(
        d[0].2.ends_with(
            "add \"namespace: loom-system\" to the parentRef, and allow routes from namespace \
             \"default\" on its listener \"http\" (allowedRoutes.namespaces.from: All or \
             Selector)"
        ),
        "{d:?}"
    );
    let d = diagnostics(&route("[{name: loom-gateway, sectionName: nope}]"));
    assert!(
        d[0].2
            .ends_with("; note that it has no listener named nope"),
        "{d:?}"
    );
}

#[test]
fn a_typo_in_the_name_is_suggested_in_the_same_namespace_first() {
    let extra = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: \
                 edge, namespace: default}\nspec:\n  gatewayClassName: loom\n  listeners: \
                 [{name: http, port: 80, protocol: HTTP}]\n---\n";
    let d = diagnostics(&format!("{extra}{}", route("[{name: edg}]")));
    assert_eq!(
        d[0].2,
        "parentRefs[0] names Gateway default/edg, which does not exist; did you mean \
         default/edge? set \"name: edge\" in the parentRef"
    );
    // A wrong explicit namespace and a typo together.
    let d = diagnostics(&route("[{name: loom-gatway, namespace: loom}]"));
    assert!(
        d[0].2.contains(
            "did you mean loom-system/loom-gateway? set \"name: loom-gateway\" in the \
             parentRef, and set \"namespace: loom-system\" in the parentRef"
        ),
        "{d:?}"
    );
}

#[test]
fn a_route_kind_no_listener_takes_is_noted() {
    let tls = "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: \
               t, namespace: default}\nspec:\n  parentRefs: [{name: closed}]\n";
    let d = diagnostics(tls);
    assert!(
        d[0].2.ends_with(
            "did you mean loom-system/closed? add \"namespace: loom-system\" to the parentRef; \
             note that none of its listeners takes TLSRoutes (http is HTTP, tcp is TCP)"
        ),
        "{d:?}"
    );
    let tcp = tls.replace("TLSRoute", "TCPRoute");
    let d = diagnostics(&tcp);
    assert!(
        d[0].2
            .ends_with("on its listener \"tcp\" (allowedRoutes.namespaces.from: All or Selector)"),
        "{d:?}"
    );
}

#[test]
fn a_listener_set_of_that_name_is_suggested_for_a_gateway_ref() {
    let set = "apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: \
               extra, namespace: default}\nspec:\n  parentRef: {name: loom-gateway, \
               namespace: loom-system}\n  listeners: [{name: x, port: 8090, protocol: HTTP}]\n---\n";
    let d = diagnostics(&format!("{set}{}", route("[{name: extra}]")));
    let route_d: Vec<_> = d
        .iter()
        .filter(|x| x.0.as_deref() == Some("spec.parentRefs[0]"))
        .collect();
    assert_eq!(
        route_d[0].2,
        "parentRefs[0] names Gateway default/extra, which does not exist; did you mean \
         ListenerSet default/extra? set \"kind: ListenerSet\" in the parentRef"
    );
}

#[test]
fn parents_loom_does_not_serve_are_notes() {
    let d = diagnostics(&route(
        "[{name: theirs}, {group: \"\", kind: Service, name: mesh}]",
    ));
    assert_eq!(
        d,
        [
            (
                Some("spec.parentRefs[0]".into()),
                Severity::Note,
                "parentRefs[0] names Gateway default/theirs, which Loom does not serve: its \
                 GatewayClass other belongs to controller example.com/other, not Loom \
                 (loom.dev/gateway-controller)"
                    .into()
            ),
            (
                Some("spec.parentRefs[1]".into()),
                Severity::Note,
                "parentRefs[1] names Service default/mesh (core): Loom attaches routes to \
                 Gateways and ListenerSets only"
                    .into()
            ),
        ]
    );
}

#[test]
fn valid_configurations_have_no_diagnostics() {
    let ok = route("[{name: loom-gateway, namespace: loom-system, sectionName: open}]");
    assert_eq!(diagnostics(&ok), []);
}

#[test]
fn gateways_of_a_missing_class_and_dangling_listener_set_parents_are_warnings() {
    let extra = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, \
                 namespace: default}\nspec:\n  gatewayClassName: lom\n  listeners: []\n---\n\
                 apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: \
                 s, namespace: apps}\nspec:\n  parentRef: {name: closed}\n  listeners: []\n";
    let d = diagnostics(extra);
    assert_eq!(
        d,
        [
            (
                Some("spec.gatewayClassName".into()),
                Severity::Warning,
                "gatewayClassName lom names no GatewayClass in the input; did you mean loom?"
                    .into()
            ),
            (
                Some("spec.parentRef".into()),
                Severity::Warning,
                "parentRef names Gateway apps/closed, which does not exist; did you mean \
                 loom-system/closed? add \"namespace: loom-system\" to the parentRef, and allow \
                 ListenerSets from namespace \"apps\" on the Gateway \
                 (spec.allowedListeners.namespaces.from: All or Selector)"
                    .into()
            ),
        ]
    );
}

#[test]
fn every_object_without_status_is_explained() {
    let extra = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
---
apiVersion: v1
kind: Service
metadata: {name: lonely, namespace: default}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: default}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: loom-system}]
  to: [{group: "", kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: loom-gateway}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orphan, namespace: default}
spec: {}
"#;
    let input = input(extra);
    let options = Options::default();
    let d = Diagnosis::new(&input, &options);
    let why = |kind, ns: &str, name: &str| {
        d.why_no_status(&ObjectKey {
            kind,
            namespace: ns.into(),
            name: name.into(),
        })
    };
    assert_eq!(
        why(Kind::GatewayClass, "", "other"),
        "its controllerName example.com/other is not Loom's (loom.dev/gateway-controller): \
         Loom leaves this class to its controller"
    );
    assert_eq!(
        why(Kind::Gateway, "default", "theirs"),
        "its GatewayClass other belongs to controller example.com/other, not Loom \
         (loom.dev/gateway-controller)"
    );
    assert_eq!(
        why(Kind::HttpRoute, "default", "web"),
        "attached to no Gateway or ListenerSet Loom serves (see below)"
    );
    assert_eq!(
        why(Kind::HttpRoute, "default", "orphan"),
        "it has no parentRefs, so it is attached to no Gateway"
    );
    assert_eq!(
        why(Kind::Service, "default", "web"),
        "Loom reads Services as backends and writes no status for them; this one is a backend \
         of HTTPRoute default/web"
    );
    assert!(
        why(Kind::Service, "default", "lonely")
            .ends_with("no route in the input refers to this one")
    );
    assert!(
        why(Kind::EndpointSlice, "default", "web-1")
            .starts_with("endpoints of Service default/web")
    );
    assert!(why(Kind::Secret, "default", "s").ends_with("nothing in the input refers to this one"));
    assert_eq!(
        why(Kind::ReferenceGrant, "default", "g"),
        "ReferenceGrants have no status; this one lets HTTPRoutes in namespace loom-system \
         refer to any Service in namespace default"
    );
}

#[test]
fn edit_distance_counts_edits() {
    assert_eq!(edit_distance("loom-gateway", "loom-gateway"), 0);
    assert_eq!(edit_distance("loom-gatway", "loom-gateway"), 1);
    assert_eq!(edit_distance("egde", "edge"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert!(near("loom-gateway", 3));
    assert!(!near("gw", 2));
    assert!(
        !near("client-validation-invalid", 6),
        "not client-validation-default"
    );
}
