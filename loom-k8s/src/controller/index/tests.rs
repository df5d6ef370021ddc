use std::time::Duration;

use serde_json::json;

use super::*;
use crate::addresses::Ipv4Net;
use crate::controller::readiness::REFERENCE_WAIT;
use crate::test_input as input;

fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

fn gateway(name: &str, listener_port: u16) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "web", "resourceVersion": "1"},
        "spec": {"gatewayClassName": "loom",
            "listeners": [{"name": "http", "port": listener_port, "protocol": "HTTP"}]},
    }))
}

fn with_status(mut o: DynamicObject, resource_version: &str, status: Value) -> DynamicObject {
    o.metadata.resource_version = Some(resource_version.into());
    o.data["status"] = status;
    o
}

fn service(name: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "web"},
        "spec": {"ports": [{"port": 80}]},
    }))
}

fn route(name: &str, parent: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "web"},
        "spec": {"parentRefs": [{"name": parent}]},
    }))
}

fn secret(name: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "web"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""},
    }))
}

/// A Gateway whose HTTPS listener names the Secret `cert`.
fn gateway_naming(cert: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "web"},
        "spec": {"gatewayClassName": "loom", "listeners": [{"name": "https", "port": 443,
            "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": cert}]}}]},
    }))
}

fn deployment(name: &str, replicas: i32, available: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "web",
            "annotations": {CONTROLLER_ANNOTATION: "loom.dev/gateway-controller"}},
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": {"availableReplicas": available},
    }))
    .unwrap()
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: "web".into(),
        name: name.into(),
    }
}

/// An index of Gateways, HTTPRoutes and Services, with Secrets watched by reference.
fn index() -> Index {
    Index::new(
        [Kind::Gateway, Kind::HttpRoute, Kind::Service],
        [Kind::Secret],
        None,
        None,
    )
}

/// The names of the objects of `kind` in the input.
fn names(index: &Index, kind: Kind) -> Vec<String> {
    let mut names: Vec<String> = index
        .input()
        .objects()
        .into_iter()
        .filter(|o| o.kind() == kind)
        .map(|o| o.metadata().name.clone())
        .collect();
    names.sort();
    names
}

const COMPILE: Changed = Changed {
    compile: true,
    observed_status: false,
};
const NOTHING: Changed = Changed {
    compile: false,
    observed_status: false,
};

/// Lists `objects` of `kind` as a watch (re)start does.
fn relist(index: &mut Index, kind: Kind, objects: Vec<DynamicObject>) -> Changed {
    assert_eq!(index.apply(kind, Event::Init), NOTHING);
    for o in objects {
        assert_eq!(index.apply(kind, Event::InitApply(o)), NOTHING);
    }
    index.apply(kind, Event::InitDone)
}

// === Relist ===

#[test]
fn a_relist_hands_over_what_was_listed_at_init_done() {
    let mut relist = Relist::default();
    assert_eq!(relist.event(Event::Init), None);
    assert_eq!(relist.event(Event::InitApply(1)), None);
    assert_eq!(relist.event(Event::InitApply(2)), None);
    assert_eq!(
        relist.event(Event::InitDone),
        Some(Update::Relisted(vec![1, 2]))
    );
}

#[test]
fn a_relist_restarted_by_init_forgets_what_it_had_listed() {
    let mut relist = Relist::default();
    relist.event(Event::Init);
    relist.event(Event::InitApply(1));
    relist.event(Event::Init);
    relist.event(Event::InitApply(2));
    assert_eq!(
        relist.event(Event::InitDone),
        Some(Update::Relisted(vec![2]))
    );
}

#[test]
fn a_relist_that_lists_nothing_hands_over_nothing() {
    let mut relist = Relist::<u32>::default();
    relist.event(Event::Init);
    assert_eq!(
        relist.event(Event::InitDone),
        Some(Update::Relisted(vec![]))
    );
    // InitDone without Init (not sent by kube's watcher): an empty list too.
    assert_eq!(
        relist.event(Event::InitDone),
        Some(Update::Relisted(vec![]))
    );
}

#[test]
fn a_relist_starts_over_after_init_done() {
    let mut relist = Relist::default();
    relist.event(Event::Init);
    relist.event(Event::InitApply(1));
    relist.event(Event::InitDone);
    relist.event(Event::InitApply(2));
    assert_eq!(
        relist.event(Event::InitDone),
        Some(Update::Relisted(vec![2]))
    );
}

#[test]
fn applies_and_deletes_pass_through_a_relist() {
    let mut relist = Relist::default();
    assert_eq!(relist.event(Event::Apply(1)), Some(Update::Apply(1)));
    assert_eq!(relist.event(Event::Delete(1)), Some(Update::Delete(1)));
}

// === Applies and deletes ===

#[test]
fn an_applied_object_is_in_the_input_and_asks_for_a_compile() {
    let mut index = index();
    assert!(
        index
            .apply(Kind::Service, Event::Apply(service("a")))
            .compile
    );
    assert_eq!(names(&index, Kind::Service), ["a"]);
}

#[test]
fn applying_an_unchanged_object_again_asks_for_no_compile() {
    let mut index = index();
    index.apply(Kind::Service, Event::Apply(service("a")));
    assert_eq!(
        index.apply(Kind::Service, Event::Apply(service("a"))),
        NOTHING
    );
}

#[test]
fn a_changed_spec_asks_for_a_compile() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    let changed = index.apply(Kind::Gateway, Event::Apply(gateway("edge", 8080)));
    assert!(changed.compile);
    assert_eq!(index.input().gateways[0].spec.listeners[0].port, 8080);
}

#[test]
fn a_deleted_object_leaves_the_input() {
    let mut index = index();
    index.apply(Kind::Service, Event::Apply(service("a")));
    index.apply(Kind::Service, Event::Apply(service("b")));
    assert_eq!(
        index.apply(Kind::Service, Event::Delete(service("a"))),
        COMPILE
    );
    assert_eq!(names(&index, Kind::Service), ["b"]);
}

#[test]
fn deleting_an_object_never_seen_asks_for_no_compile() {
    let mut index = index();
    assert_eq!(
        index.apply(Kind::Service, Event::Delete(service("a"))),
        NOTHING
    );
}

#[test]
fn an_object_that_does_not_convert_is_ignored() {
    let mut index = index();
    let bad = dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "web"},
        "spec": {"listeners": [{"port": "eighty"}]},
    }));
    assert_eq!(
        index.apply(Kind::Gateway, Event::Apply(bad.clone())),
        NOTHING
    );
    assert!(index.input().gateways.is_empty());
    assert!(index.observed(&key(Kind::Gateway, "edge")).is_none());
    assert_eq!(index.apply(Kind::Gateway, Event::Delete(bad)), NOTHING);
}

#[test]
fn an_object_that_stops_converting_keeps_its_last_good_version() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    let mut bad = gateway("edge", 80);
    bad.data["spec"]["listeners"][0]["port"] = json!("eighty");
    assert_eq!(index.apply(Kind::Gateway, Event::Apply(bad)), NOTHING);
    assert_eq!(index.input().gateways[0].spec.listeners[0].port, 80);
}

// === Relists ===

#[test]
fn nothing_changes_while_a_relist_is_in_progress() {
    let mut index = index();
    index.apply(Kind::Service, Event::Apply(service("a")));
    assert_eq!(index.apply(Kind::Service, Event::Init), NOTHING);
    assert_eq!(
        index.apply(Kind::Service, Event::InitApply(service("b"))),
        NOTHING
    );
    assert_eq!(names(&index, Kind::Service), ["a"]);
}

#[test]
fn a_relist_replaces_the_objects_of_its_kind() {
    let mut index = index();
    relist(&mut index, Kind::Service, vec![service("a"), service("b")]);
    let changed = relist(&mut index, Kind::Service, vec![service("b"), service("c")]);
    assert!(changed.compile);
    assert_eq!(names(&index, Kind::Service), ["b", "c"]);
}

#[test]
fn an_object_deleted_while_the_watch_was_down_disappears_at_the_relist() {
    let mut index = index();
    index.apply(Kind::Service, Event::Apply(service("a")));
    index.apply(Kind::Service, Event::Apply(service("b")));
    let changed = relist(&mut index, Kind::Service, vec![service("b")]);
    assert_eq!(changed, COMPILE);
    assert_eq!(names(&index, Kind::Service), ["b"]);
}

#[test]
fn an_object_deleted_during_a_relist_is_not_brought_back() {
    let mut index = index();
    relist(&mut index, Kind::Service, vec![service("a"), service("b")]);
    index.apply(Kind::Service, Event::Init);
    index.apply(Kind::Service, Event::InitApply(service("b")));
    index.apply(Kind::Service, Event::InitDone);
    assert_eq!(names(&index, Kind::Service), ["b"]);
}

#[test]
fn a_relist_leaves_other_kinds_alone() {
    let mut index = index();
    index.apply(Kind::Service, Event::Apply(service("a")));
    index.apply(Kind::HttpRoute, Event::Apply(route("r", "edge")));
    relist(&mut index, Kind::Service, vec![]);
    assert!(names(&index, Kind::Service).is_empty());
    assert_eq!(names(&index, Kind::HttpRoute), ["r"]);
}

#[test]
fn a_restarted_relist_keeps_only_the_last_listing() {
    let mut index = index();
    index.apply(Kind::Service, Event::Init);
    index.apply(Kind::Service, Event::InitApply(service("a")));
    index.apply(Kind::Service, Event::Init);
    index.apply(Kind::Service, Event::InitApply(service("b")));
    index.apply(Kind::Service, Event::InitDone);
    assert_eq!(names(&index, Kind::Service), ["b"]);
}

#[test]
fn relists_of_different_kinds_interleave() {
    let mut index = index();
    index.apply(Kind::Service, Event::Init);
    index.apply(Kind::HttpRoute, Event::Init);
    index.apply(Kind::Service, Event::InitApply(service("a")));
    index.apply(Kind::HttpRoute, Event::InitApply(route("r", "edge")));
    index.apply(Kind::HttpRoute, Event::InitDone);
    assert!(names(&index, Kind::Service).is_empty());
    index.apply(Kind::Service, Event::InitDone);
    assert_eq!(names(&index, Kind::Service), ["a"]);
    assert_eq!(names(&index, Kind::HttpRoute), ["r"]);
}

#[test]
fn a_relist_of_unchanged_objects_asks_for_no_compile() {
    let mut index = index();
    relist(&mut index, Kind::Service, vec![service("a")]);
    assert_eq!(
        relist(&mut index, Kind::Service, vec![service("a")]),
        NOTHING
    );
}

#[test]
fn the_first_list_of_a_kind_asks_for_a_compile_even_when_empty() {
    let mut index = index();
    assert_eq!(relist(&mut index, Kind::Service, vec![]), COMPILE);
    assert_eq!(relist(&mut index, Kind::Service, vec![]), NOTHING);
}

#[test]
fn the_initial_list_is_complete_once_every_kind_watched_as_a_whole_listed() {
    let mut index = index();
    relist(&mut index, Kind::Service, vec![]);
    relist(&mut index, Kind::Gateway, vec![]);
    // Applies do not count as a list.
    index.apply(Kind::HttpRoute, Event::Apply(route("r", "edge")));
    assert!(!index.initial_list_complete());
    relist(&mut index, Kind::HttpRoute, vec![route("r", "edge")]);
    assert!(index.initial_list_complete());
}

#[test]
fn a_relisted_object_that_does_not_convert_is_removed() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    let mut bad = gateway("edge", 80);
    bad.data["spec"]["listeners"][0]["port"] = json!("eighty");
    // Unlike an Apply (last good version kept), a relist keeps only what converts.
    assert!(relist(&mut index, Kind::Gateway, vec![bad]).compile);
    assert!(index.input().gateways.is_empty());
}

// === Observed status ===

#[test]
fn a_new_object_with_status_is_a_status_change() {
    let mut index = index();
    let changed = index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    assert_eq!(
        changed,
        Changed {
            compile: true,
            observed_status: true
        }
    );
}

#[test]
fn a_status_only_change_is_observed_without_a_compile() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    let written = with_status(gateway("edge", 80), "2", json!({"conditions": []}));
    let changed = index.apply(Kind::Gateway, Event::Apply(written.clone()));
    assert_eq!(
        changed,
        Changed {
            compile: false,
            observed_status: true
        }
    );
    // The same status at a later resourceVersion (another field changed) is no change.
    let again = with_status(gateway("edge", 80), "3", json!({"conditions": []}));
    assert_eq!(index.apply(Kind::Gateway, Event::Apply(again)), NOTHING);
    assert_eq!(
        index
            .observed(&key(Kind::Gateway, "edge"))
            .unwrap()
            .resource_version,
        "3"
    );
}

fn slice(name: &str, service: Option<&str>, ip: &str) -> DynamicObject {
    let labels = match service {
        Some(s) => json!({"kubernetes.io/service-name": s}),
        None => json!({}),
    };
    dynamic(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "web", "labels": labels},
        "addressType": "IPv4", "endpoints": [{"addresses": [ip]}], "ports": [{"port": 8080}],
    }))
}

#[test]
fn before_a_compile_every_endpoint_slice_change_asks_for_one() {
    let mut index = index();
    let changed = index.apply(
        Kind::EndpointSlice,
        Event::Apply(slice("s", Some("other"), "10.0.0.1")),
    );
    assert_eq!(changed, COMPILE);
}

#[test]
fn slices_of_services_the_last_compile_did_not_read_ask_for_no_compile_but_are_kept() {
    let mut index = index();
    index.compiled(BTreeSet::from([("web".to_owned(), "echo".to_owned())]));
    let apply = |index: &mut Index, o| index.apply(Kind::EndpointSlice, Event::Apply(o));
    assert_eq!(
        apply(&mut index, slice("o", Some("other"), "10.0.0.1")),
        NOTHING
    );
    assert_eq!(
        names(&index, Kind::EndpointSlice),
        ["o"],
        "kept for the next compile"
    );
    assert_eq!(
        apply(&mut index, slice("n", None, "10.0.0.2")),
        NOTHING,
        "no Service"
    );
    assert_eq!(
        apply(&mut index, slice("e", Some("echo"), "10.0.0.3")),
        COMPILE
    );
    assert_eq!(
        apply(&mut index, slice("e", Some("echo"), "10.0.0.4")),
        COMPILE
    );
    // Moving a slice from a Service that is read to one that is not changes the first.
    assert_eq!(
        apply(&mut index, slice("e", Some("other"), "10.0.0.4")),
        COMPILE
    );
    assert_eq!(
        apply(&mut index, slice("e", Some("other"), "10.0.0.5")),
        NOTHING
    );
    let delete = |index: &mut Index, o| index.apply(Kind::EndpointSlice, Event::Delete(o));
    assert_eq!(
        delete(&mut index, slice("o", Some("other"), "10.0.0.1")),
        NOTHING
    );
    index.apply(
        Kind::EndpointSlice,
        Event::Apply(slice("e2", Some("echo"), "10.0.0.6")),
    );
    assert_eq!(
        delete(&mut index, slice("e2", Some("echo"), "10.0.0.6")),
        COMPILE
    );
    // Other kinds are not affected.
    assert_eq!(
        index.apply(Kind::Service, Event::Apply(service("other"))),
        COMPILE
    );
}

#[test]
fn observed_changes_name_each_object_whose_observed_state_changed_once() {
    let mut index = index();
    let taken = |index: &mut Index| {
        let mut names: Vec<String> = index
            .take_observed_changes()
            .into_iter()
            .map(|k| format!("{} {}", k.kind, k.name))
            .collect();
        names.sort();
        names
    };
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    index.apply(Kind::HttpRoute, Event::Apply(route("r", "edge")));
    index.apply(Kind::Service, Event::Apply(service("echo")));
    assert_eq!(
        taken(&mut index),
        ["Gateway edge", "HTTPRoute r"],
        "no status, no entry"
    );
    assert!(taken(&mut index).is_empty(), "taken once");
    // The same object again: nothing. Its status, or only its resourceVersion: changed.
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    assert!(taken(&mut index).is_empty());
    let shown = with_status(gateway("edge", 80), "2", json!({"conditions": []}));
    index.apply(Kind::Gateway, Event::Apply(shown));
    let moved = with_status(route("r", "edge"), "5", Value::Null);
    index.apply(Kind::HttpRoute, Event::Apply(moved));
    assert_eq!(taken(&mut index), ["Gateway edge", "HTTPRoute r"]);
    // Deleted: changed (its planned write goes).
    index.apply(Kind::HttpRoute, Event::Delete(route("r", "edge")));
    assert_eq!(taken(&mut index), ["HTTPRoute r"]);
}

#[test]
fn the_observed_status_holds_resource_version_status_and_finalizers() {
    let mut index = index();
    let mut class = dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "loom", "resourceVersion": "7",
            "finalizers": ["gateway-exists-finalizer.gateway.networking.k8s.io"]},
        "spec": {"controllerName": "loom.dev/gateway-controller"},
    }));
    class = with_status(class, "7", json!({"conditions": [{"type": "Accepted"}]}));
    index.apply(Kind::GatewayClass, Event::Apply(class));
    let key = ObjectKey {
        kind: Kind::GatewayClass,
        namespace: String::new(),
        name: "loom".into(),
    };
    assert_eq!(
        index.observed(&key),
        Some(&ObservedStatus::new(
            "7".into(),
            Some(&json!({"conditions": [{"type": "Accepted"}]})),
            vec!["gateway-exists-finalizer.gateway.networking.k8s.io".into()],
        ))
    );
    assert_eq!(
        index.observed(&key).unwrap().status(),
        Some(json!({"conditions": [{"type": "Accepted"}]}))
    );
}

#[test]
fn a_null_status_is_observed_as_none() {
    let mut index = index();
    let gw = with_status(gateway("edge", 80), "1", Value::Null);
    index.apply(Kind::Gateway, Event::Apply(gw));
    assert_eq!(
        index
            .observed(&key(Kind::Gateway, "edge"))
            .unwrap()
            .status(),
        None
    );
}

#[test]
fn kinds_without_status_are_not_observed() {
    let mut index = index();
    let changed = index.apply(Kind::Service, Event::Apply(service("a")));
    assert!(!changed.observed_status);
    assert!(index.observed(&key(Kind::Service, "a")).is_none());
    assert_eq!(index.observed_keys().count(), 0);
}

#[test]
fn a_deleted_object_is_no_longer_observed() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    index.apply(Kind::Gateway, Event::Delete(gateway("edge", 80)));
    assert!(index.observed(&key(Kind::Gateway, "edge")).is_none());
    // Nor after a relist that no longer lists it.
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    relist(&mut index, Kind::Gateway, vec![]);
    assert!(index.observed(&key(Kind::Gateway, "edge")).is_none());
}

#[test]
fn a_delete_is_not_a_status_change() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway("edge", 80)));
    assert_eq!(
        index.apply(Kind::Gateway, Event::Delete(gateway("edge", 80))),
        COMPILE
    );
}

// === Data planes (one Gateway) ===

#[test]
fn a_data_plane_keeps_its_gateway_and_the_routes_that_may_attach_to_it() {
    let input = input(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: web}
spec: {gatewayClassName: loom}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: web}
spec: {gatewayClassName: loom}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mine, namespace: web}
spec: {parentRefs: [{name: other}, {name: edge, sectionName: http}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: from-elsewhere, namespace: app}
spec: {parentRefs: [{name: edge, namespace: web}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: same-name-other-namespace, namespace: app}
spec: {parentRefs: [{name: edge}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: theirs, namespace: web}
spec: {parentRefs: [{name: other}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-listener-set, namespace: web}
spec: {parentRefs: [{kind: ListenerSet, name: extra}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
"#,
    );
    let gateway = ("web".to_owned(), "edge".to_owned());
    let kept: Vec<String> = input
        .objects()
        .into_iter()
        .filter(|o| for_gateway(o, &gateway))
        .map(|o| o.metadata().name.clone())
        .collect();
    assert_eq!(
        kept,
        ["edge", "mine", "via-listener-set", "from-elsewhere", "svc"],
        "{kept:?}"
    );
}

fn data_plane_index() -> Index {
    Index::new(
        [Kind::Gateway, Kind::HttpRoute],
        [],
        None,
        Some(("web".into(), "edge".into())),
    )
}

#[test]
fn a_data_plane_index_keeps_neither_other_gateways_nor_their_observed_status() {
    let mut index = data_plane_index();
    assert_eq!(
        index.apply(Kind::Gateway, Event::Apply(gateway("other", 80))),
        NOTHING
    );
    assert!(index.input().gateways.is_empty());
    assert!(index.observed(&key(Kind::Gateway, "other")).is_none());
}

#[test]
fn a_data_plane_index_keeps_no_observed_status_even_of_its_own_objects() {
    let mut index = data_plane_index();
    let mut gw = gateway("edge", 80);
    gw.data["status"] = json!({"conditions": [{"type": "Accepted", "status": "True"}]});
    index.apply(Kind::Gateway, Event::Apply(gw));
    index.apply(Kind::HttpRoute, Event::Apply(route("r", "edge")));
    assert_eq!(index.input().gateways.len(), 1);
    assert_eq!(names(&index, Kind::HttpRoute), ["r"]);
    assert_eq!(index.observed_keys().count(), 0);
}

#[test]
fn a_data_plane_index_drops_a_route_that_moves_to_another_gateway() {
    let mut index = data_plane_index();
    index.apply(Kind::HttpRoute, Event::Apply(route("r", "edge")));
    assert_eq!(names(&index, Kind::HttpRoute), ["r"]);
    let changed = index.apply(Kind::HttpRoute, Event::Apply(route("r", "other")));
    assert_eq!(changed, COMPILE);
    assert!(names(&index, Kind::HttpRoute).is_empty());
}

#[test]
fn a_data_plane_index_clears_its_gateways_spec_addresses() {
    let mut index = data_plane_index();
    let mut gw = gateway("edge", 80);
    gw.data["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "192.0.2.7"}]);
    index.apply(Kind::Gateway, Event::Apply(gw));
    assert!(index.input().gateways[0].spec.addresses.is_empty());
}

#[test]
fn a_relist_in_a_data_plane_index_drops_what_is_not_its_gateways() {
    let mut index = data_plane_index();
    index.apply(Kind::HttpRoute, Event::Apply(route("r", "edge")));
    relist(&mut index, Kind::HttpRoute, vec![route("r", "other")]);
    assert!(names(&index, Kind::HttpRoute).is_empty());
}

// === Rollouts (data-plane Deployments) ===

#[test]
fn a_rollout_is_kept_by_namespace_and_name() {
    let mut index = index();
    assert!(index.apply_rollout(Event::Apply(deployment("loom-edge", 2, 1))));
    assert_eq!(
        index.rollouts()[&("web".to_owned(), "loom-edge".to_owned())],
        Rollout {
            replicas: 2,
            available: 1,
            controller: "loom.dev/gateway-controller".into(),
        }
    );
}

#[test]
fn a_rollout_without_spec_replicas_or_status_counts_one_replica_none_available() {
    let mut index = index();
    let mut d = deployment("loom-edge", 2, 1);
    d.spec.as_mut().unwrap().replicas = None;
    d.status = None;
    d.metadata.annotations = None;
    index.apply_rollout(Event::Apply(d));
    assert_eq!(
        index.rollouts()[&("web".to_owned(), "loom-edge".to_owned())],
        Rollout {
            replicas: 1,
            available: 0,
            controller: String::new(),
        }
    );
}

#[test]
fn an_unchanged_rollout_is_no_change() {
    let mut index = index();
    index.apply_rollout(Event::Apply(deployment("loom-edge", 2, 1)));
    assert!(!index.apply_rollout(Event::Apply(deployment("loom-edge", 2, 1))));
    assert!(index.apply_rollout(Event::Apply(deployment("loom-edge", 2, 2))));
}

#[test]
fn a_deleted_rollout_is_gone() {
    let mut index = index();
    index.apply_rollout(Event::Apply(deployment("loom-edge", 2, 1)));
    assert!(index.apply_rollout(Event::Delete(deployment("loom-edge", 2, 1))));
    assert!(index.rollouts().is_empty());
    assert!(!index.apply_rollout(Event::Delete(deployment("loom-edge", 2, 1))));
}

#[test]
fn a_rollout_relist_replaces_every_rollout() {
    let mut index = index();
    index.apply_rollout(Event::Apply(deployment("loom-a", 1, 1)));
    index.apply_rollout(Event::Apply(deployment("loom-b", 1, 1)));
    assert!(!index.apply_rollout(Event::Init));
    assert!(!index.apply_rollout(Event::InitApply(deployment("loom-b", 1, 1))));
    assert!(!index.apply_rollout(Event::InitApply(deployment("loom-c", 1, 0))));
    assert_eq!(index.rollouts().len(), 2, "unchanged until InitDone");
    assert!(index.apply_rollout(Event::InitDone));
    let mut names: Vec<&str> = index.rollouts().keys().map(|k| k.1.as_str()).collect();
    names.sort();
    assert_eq!(names, ["loom-b", "loom-c"]);
}

#[test]
fn a_rollout_relist_of_the_same_rollouts_is_no_change() {
    let mut index = index();
    index.apply_rollout(Event::Apply(deployment("loom-a", 1, 1)));
    index.apply_rollout(Event::Init);
    index.apply_rollout(Event::InitApply(deployment("loom-a", 1, 1)));
    assert!(!index.apply_rollout(Event::InitDone));
}

// === Named Secrets and ConfigMaps ===

#[test]
fn a_newly_named_secret_gets_a_watch() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    let t0 = Instant::now();
    assert_eq!(
        index.update_references(t0),
        NamedWatchChanges {
            start: vec![key(Kind::Secret, "cert")],
            stop: vec![],
        }
    );
    // Already watched: nothing to start again.
    assert_eq!(index.update_references(t0), NamedWatchChanges::default());
}

#[test]
fn a_named_kind_the_api_server_does_not_serve_gets_no_watch() {
    let mut index = Index::new([Kind::Gateway], [], None, None);
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    assert_eq!(
        index.update_references(Instant::now()),
        NamedWatchChanges::default()
    );
    assert!(index.references_fetched(Instant::now()));
}

#[test]
fn a_secret_no_longer_named_loses_its_watch_and_leaves_the_input() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    let t0 = Instant::now();
    index.update_references(t0);
    let cert = key(Kind::Secret, "cert");
    index.apply_reference(&cert, Event::Apply(secret("cert")));
    assert_eq!(names(&index, Kind::Secret), ["cert"]);
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("other")));
    assert_eq!(
        index.update_references(t0),
        NamedWatchChanges {
            start: vec![key(Kind::Secret, "other")],
            stop: vec![cert.clone()],
        }
    );
    assert!(names(&index, Kind::Secret).is_empty());
    // Events its stopped watch still sends are ignored.
    assert!(!index.apply_reference(&cert, Event::Apply(secret("cert"))));
    assert!(names(&index, Kind::Secret).is_empty());
}

#[test]
fn a_named_secret_is_waited_for_until_its_watch_listed() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    let t0 = Instant::now();
    index.update_references(t0);
    assert!(!index.references_fetched(t0));
    let cert = key(Kind::Secret, "cert");
    assert!(!index.apply_reference(&cert, Event::Init));
    assert!(!index.apply_reference(&cert, Event::InitApply(secret("cert"))));
    assert!(!index.references_fetched(t0));
    assert!(
        names(&index, Kind::Secret).is_empty(),
        "not before InitDone"
    );
    assert!(index.apply_reference(&cert, Event::InitDone));
    assert!(index.references_fetched(t0));
    assert_eq!(names(&index, Kind::Secret), ["cert"]);
}

#[test]
fn a_named_secret_that_does_not_exist_is_waited_for_until_listed_empty() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    let t0 = Instant::now();
    index.update_references(t0);
    let cert = key(Kind::Secret, "cert");
    index.apply_reference(&cert, Event::Init);
    assert!(!index.apply_reference(&cert, Event::InitDone));
    assert!(index.references_fetched(t0));
}

#[test]
fn a_named_secret_is_waited_for_three_seconds_at_most() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    let t0 = Instant::now();
    index.update_references(t0);
    assert!(!index.references_fetched(t0 + REFERENCE_WAIT));
    assert!(index.references_fetched(t0 + REFERENCE_WAIT + Duration::from_millis(1)));
}

#[test]
fn a_secret_relist_without_it_removes_it() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    index.update_references(Instant::now());
    let cert = key(Kind::Secret, "cert");
    index.apply_reference(&cert, Event::Apply(secret("cert")));
    index.apply_reference(&cert, Event::Init);
    assert!(index.apply_reference(&cert, Event::InitDone));
    assert!(names(&index, Kind::Secret).is_empty());
}

#[test]
fn a_restarted_secret_relist_keeps_what_it_listed_last() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    index.update_references(Instant::now());
    let cert = key(Kind::Secret, "cert");
    index.apply_reference(&cert, Event::Init);
    index.apply_reference(&cert, Event::InitApply(secret("cert")));
    index.apply_reference(&cert, Event::Init);
    assert!(!index.apply_reference(&cert, Event::InitDone));
    assert!(names(&index, Kind::Secret).is_empty());
}

#[test]
fn a_deleted_secret_leaves_the_input_but_stays_watched() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway_naming("cert")));
    index.update_references(Instant::now());
    let cert = key(Kind::Secret, "cert");
    assert!(index.apply_reference(&cert, Event::Apply(secret("cert"))));
    assert!(index.apply_reference(&cert, Event::Delete(secret("cert"))));
    assert!(names(&index, Kind::Secret).is_empty());
    assert_eq!(
        index.update_references(Instant::now()),
        NamedWatchChanges::default()
    );
}

// === Address pool ===

fn pool_index(net: &str) -> Index {
    let net: Ipv4Net = net.parse().unwrap();
    Index::new([Kind::Gateway], [], Some(AddressPool::new(net)), None)
}

#[test]
fn gateways_get_pool_addresses_in_key_order() {
    let mut index = pool_index("10.0.0.0/30"); // two hosts
    for name in ["c", "a", "b"] {
        index.apply(Kind::Gateway, Event::Apply(gateway(name, 80)));
    }
    let assigned = index.assign_pool_addresses(&BTreeSet::new());
    let names: Vec<(&str, bool)> = assigned
        .iter()
        .map(|(k, ip)| (k.name.as_str(), ip.is_some()))
        .collect();
    assert_eq!(names, [("a", true), ("b", true), ("c", false)]);
}

#[test]
fn a_deleted_gateway_releases_its_pool_address() {
    let mut index = pool_index("10.0.0.0/30");
    index.apply(Kind::Gateway, Event::Apply(gateway("a", 80)));
    index.apply(Kind::Gateway, Event::Apply(gateway("b", 80)));
    let before = index.assign_pool_addresses(&BTreeSet::new());
    index.apply(Kind::Gateway, Event::Delete(gateway("a", 80)));
    index.apply(Kind::Gateway, Event::Apply(gateway("c", 80)));
    let after = index.assign_pool_addresses(&BTreeSet::new());
    assert_eq!(after[0].0.name, "b");
    assert_eq!(after[0].1, before[1].1, "b keeps its address");
    assert_eq!(after[1].0.name, "c");
    assert_eq!(after[1].1, before[0].1, "c gets the address a had");
}

#[test]
fn a_gateway_keeps_the_pool_address_its_status_shows() {
    let mut index = pool_index("10.0.0.0/24");
    let gw = with_status(
        gateway("a", 80),
        "1",
        json!({"addresses": [{"type": "IPAddress", "value": "10.0.0.77"}]}),
    );
    index.apply(Kind::Gateway, Event::Apply(gw));
    let assigned = index.assign_pool_addresses(&BTreeSet::new());
    assert_eq!(assigned[0].1, Some("10.0.0.77".parse().unwrap()));
}

#[test]
fn no_pool_assigns_nothing() {
    let mut index = index();
    index.apply(Kind::Gateway, Event::Apply(gateway("a", 80)));
    assert!(!index.has_address_pool());
    assert!(index.assign_pool_addresses(&BTreeSet::new()).is_empty());
}
