use std::collections::{BTreeMap, HashMap};

use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use loom_core::Options;
use serde_json::json;

use super::*;
use crate::addresses::AddressPool;
use crate::controller::index::Rollout;
use crate::provision::{CONTROLLER_ANNOTATION, DataPlane};
use crate::test_input as input;

// === Service readiness ===

#[test]
fn a_gateway_is_programmed_once_its_service_has_an_address_and_a_pod_is_up() {
    let gateway = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: web}
spec:
  gatewayClassName: loom
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;
    let service = |spec: &str| {
        format!(
            "{gateway}---\napiVersion: v1\nkind: Service\n\
             metadata: {{name: loom-edge, namespace: web}}\n{spec}"
        )
    };
    let key = ("web".to_owned(), "edge".to_owned());
    let rollout = |available| {
        HashMap::from([(
            ("web".to_owned(), "loom-edge".to_owned()),
            Rollout {
                replicas: 2,
                available,
                controller: String::new(),
            },
        )])
    };
    let run = |yaml: &str, rollouts: Option<&HashMap<(String, String), Rollout>>| {
        let mut opts = Options::default();
        service_readiness(&input(yaml), rollouts, &mut opts);
        let why = opts.gateway_not_programmed.get(&key).cloned();
        let addrs: Vec<String> = opts.gateway_addresses[&key]
            .iter()
            .map(|a| format!("{} {}", a.type_, a.value))
            .collect();
        (why.map(|w| format!("{}: {w}", w.reason().as_str())), addrs)
    };
    let (why, addrs) = run(gateway, Some(&rollout(1)));
    assert_eq!(
        why.as_deref(),
        Some("AddressNotAssigned: waiting for Service web/loom-edge to be created")
    );
    assert!(addrs.is_empty());
    // A load balancer that has no address yet.
    let lb = service("spec: {type: LoadBalancer, clusterIP: 10.0.0.9}\n");
    let (why, _) = run(&lb, Some(&rollout(1)));
    assert!(
        why.unwrap()
            .starts_with("AddressNotAssigned: waiting for an address")
    );
    let lb_up = format!(
        "{lb}status: {{loadBalancer: {{ingress: [{{ip: 192.0.2.1}}, {{hostname: lb.example}}]}}}}\n"
    );
    let (why, addrs) = run(&lb_up, Some(&rollout(1)));
    assert_eq!(why, None);
    assert_eq!(addrs, ["IPAddress 192.0.2.1", "Hostname lb.example"]);
    // A ClusterIP Service: its cluster IP, once a pod is available.
    let cip = service("spec: {clusterIP: 10.0.0.9}\n");
    let (why, addrs) = run(&cip, Some(&HashMap::new()));
    assert_eq!(
        why.as_deref(),
        Some("Pending: waiting for Deployment web/loom-edge to be created")
    );
    assert_eq!(addrs, ["IPAddress 10.0.0.9"]);
    let (why, _) = run(&cip, Some(&rollout(0)));
    assert_eq!(
        why.as_deref(),
        Some(
            "Pending: waiting for a data-plane pod of Deployment web/loom-edge (0 of 2 available)"
        )
    );
    assert_eq!(run(&cip, Some(&rollout(1))).0, None);
    // All-in-one (no rollouts: the controller's pods serve): the address is enough.
    assert_eq!(
        run(&cip, None),
        (None, vec!["IPAddress 10.0.0.9".to_owned()])
    );
    assert!(run(&lb, None).0.unwrap().starts_with("AddressNotAssigned"));
}

// === Planning against an index, with a fixed `now` ===

const NOW: &str = "2026-12-04T12:00:00Z";
const EARLIER: &str = "2026-12-01T08:00:00Z";
const CONTROLLER: &str = loom_core::CONTROLLER_NAME;

fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

fn class(name: &str, controller: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": name, "resourceVersion": "1", "generation": 1},
        "spec": {"controllerName": controller},
    }))
}

fn gateway(name: &str, class: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "web", "resourceVersion": "1",
            "generation": 1, "uid": format!("uid-{name}")},
        "spec": {"gatewayClassName": class,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
    }))
}

fn route(name: &str, parent: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "web", "resourceVersion": "1",
            "generation": 1},
        "spec": {"parentRefs": [{"name": parent}]},
    }))
}

/// `o` as the API server shows it once `write` (a status or finalizer write) was applied.
fn written(mut o: DynamicObject, resource_version: &str, write: &StatusWrite) -> DynamicObject {
    o.metadata.resource_version = Some(resource_version.into());
    match &write.what {
        Write::Status(status) => o.data["status"] = status.clone(),
        Write::Finalizers(f) => {
            o.metadata.finalizers = Some(f.iter().map(|f| (*f).to_owned()).collect());
        }
        other => panic!("not a status or finalizer write: {other:?}"),
    }
    o
}

/// How a test API server serves each kind.
fn served(kinds: &[Kind]) -> HashMap<Kind, ApiResource> {
    kinds
        .iter()
        .map(|&kind| {
            let group = kind.group();
            let api_version = match group {
                "" => "v1".to_owned(),
                g => format!("{g}/v1"),
            };
            let resource = ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version,
                kind: kind.as_str().into(),
                plural: format!("{}s", kind.as_str().to_lowercase()),
            };
            (kind, resource)
        })
        .collect()
}

const KINDS: [Kind; 4] = [
    Kind::GatewayClass,
    Kind::Gateway,
    Kind::HttpRoute,
    Kind::Service,
];

fn planner(opts: ControllerOptions) -> Planner {
    Planner::new(opts, served(&KINDS))
}

fn index_of(objects: &[(Kind, DynamicObject)]) -> Index {
    let mut index = Index::new(KINDS, [], None, None);
    apply(&mut index, objects);
    index
}

fn apply(index: &mut Index, objects: &[(Kind, DynamicObject)]) {
    for (kind, o) in objects {
        index.apply(*kind, Event::Apply(o.clone()));
    }
}

/// Compiles, then plans the writes at [`NOW`].
fn plan(planner: &Planner, index: &mut Index) -> (Compiled, Vec<StatusWrite>) {
    let compiled = planner.compile(index);
    let writes = full_plan(planner, index, &compiled.status, NOW);
    (compiled, writes)
}

/// Every object's write planned afresh.
fn full_plan(planner: &Planner, index: &Index, status: &Status, now: &str) -> Vec<StatusWrite> {
    unshared(planner.writes(index, status, &mut StatusWrites::default(), now))
}

/// Planned writes, as values to compare.
fn unshared(writes: Vec<std::sync::Arc<StatusWrite>>) -> Vec<StatusWrite> {
    writes
        .into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .collect()
}

/// Each write as "Kind ns/name part".
fn summary(writes: &[StatusWrite]) -> Vec<String> {
    writes
        .iter()
        .map(|w| {
            let part = match &w.what {
                Write::Object(_) => "object".to_owned(),
                Write::Status(_) => "status".to_owned(),
                Write::Finalizers(f) => format!("finalizers {f:?}"),
                Write::Delete => "delete".to_owned(),
            };
            format!("{w} {part}")
        })
        .collect()
}

fn status_of(w: &StatusWrite) -> &Value {
    match &w.what {
        Write::Status(s) => s,
        other => panic!("not a status write: {other:?}"),
    }
}

fn gateway_key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::Gateway,
        namespace: "web".into(),
        name: name.into(),
    }
}

fn gateway_status<'a>(compiled: &'a Compiled, name: &str) -> &'a loom_core::status::GatewayStatus {
    match compiled.status.get(&gateway_key(name)) {
        Some(ObjectStatus::Gateway(s)) => s,
        other => panic!("no Gateway status: {other:?}"),
    }
}

fn programmed(compiled: &Compiled, name: &str) -> String {
    let c = gateway_status(compiled, name)
        .conditions
        .get(ConditionType::Programmed)
        .unwrap();
    format!("{} {}", c.status, c.reason.as_str())
}

fn loom_gateway() -> Vec<(Kind, DynamicObject)> {
    vec![
        (Kind::GatewayClass, class("loom", CONTROLLER)),
        (Kind::Gateway, gateway("edge", "loom")),
    ]
}

#[test]
fn new_objects_get_status_writes_in_key_order_then_the_class_finalizer() {
    let mut index = index_of(&loom_gateway());
    let (_, writes) = plan(&planner(ControllerOptions::default()), &mut index);
    assert_eq!(
        summary(&writes),
        [
            "GatewayClass loom status",
            "Gateway web/edge status",
            "GatewayClass loom finalizers [\"gateway-exists-finalizer.gateway.networking.k8s.io\"]",
        ]
    );
}

#[test]
fn a_changed_condition_is_stamped_with_now() {
    let mut index = index_of(&loom_gateway());
    let (_, writes) = plan(&planner(ControllerOptions::default()), &mut index);
    let conditions = status_of(&writes[1])["conditions"].as_array().unwrap();
    assert!(!conditions.is_empty());
    for c in conditions {
        assert_eq!(c["lastTransitionTime"], NOW, "{c}");
    }
}

#[test]
fn a_write_is_based_on_the_observed_resource_version() {
    let mut gw = gateway("edge", "loom");
    gw.metadata.resource_version = Some("42".into());
    let mut index = index_of(&[
        (Kind::GatewayClass, class("loom", CONTROLLER)),
        (Kind::Gateway, gw),
    ]);
    let (_, writes) = plan(&planner(ControllerOptions::default()), &mut index);
    assert_eq!(writes[1].base, "42");
    assert_eq!(
        (writes[1].namespace.as_str(), writes[1].name.as_str()),
        ("web", "edge")
    );
    assert_eq!(writes[1].resource.kind, "Gateway");
}

#[test]
fn objects_that_already_show_their_status_get_no_write() {
    let planner = planner(ControllerOptions::default());
    let mut index = index_of(&loom_gateway());
    let (_, writes) = plan(&planner, &mut index);
    let class_seen = written(class("loom", CONTROLLER), "2", &writes[0]);
    let class_seen = written(class_seen, "3", &writes[2]);
    apply(
        &mut index,
        &[
            (Kind::GatewayClass, class_seen),
            (
                Kind::Gateway,
                written(gateway("edge", "loom"), "2", &writes[1]),
            ),
        ],
    );
    let (_, writes) = plan(&planner, &mut index);
    assert!(writes.is_empty(), "{:?}", summary(&writes));
}

#[test]
fn a_condition_whose_status_did_not_change_keeps_its_transition_time() {
    let planner = planner(ControllerOptions::default());
    let mut index = index_of(&loom_gateway());
    let (_, writes) = plan(&planner, &mut index);
    // The Gateway shows the same conditions from earlier, for an older generation.
    let mut status = status_of(&writes[1]).clone();
    for c in status["conditions"].as_array_mut().unwrap() {
        c["lastTransitionTime"] = json!(EARLIER);
        c["observedGeneration"] = json!(0);
    }
    let mut gw = gateway("edge", "loom");
    gw.data["status"] = status;
    apply(&mut index, &[(Kind::Gateway, gw)]);
    let (_, writes) = plan(&planner, &mut index);
    let write = writes
        .iter()
        .find(|w| w.resource.kind == "Gateway")
        .unwrap();
    for c in status_of(write)["conditions"].as_array().unwrap() {
        assert_eq!(c["lastTransitionTime"], EARLIER, "{c}");
        assert_eq!(c["observedGeneration"], 1, "{c}");
    }
}

#[test]
fn a_kind_the_api_server_does_not_serve_gets_no_write() {
    let planner = Planner::new(
        ControllerOptions::default(),
        served(&[Kind::GatewayClass, Kind::Gateway]),
    );
    let mut objects = loom_gateway();
    objects.push((Kind::HttpRoute, route("r", "edge")));
    let mut index = index_of(&objects);
    let (compiled, writes) = plan(&planner, &mut index);
    let route_key = ObjectKey {
        kind: Kind::HttpRoute,
        namespace: "web".into(),
        name: "r".into(),
    };
    assert!(
        compiled.status.get(&route_key).is_some(),
        "compiled, just not written"
    );
    assert!(!summary(&writes).iter().any(|w| w.starts_with("HTTPRoute")));
}

#[test]
fn an_object_gone_from_the_cluster_gets_no_write() {
    let planner = planner(ControllerOptions::default());
    let mut index = index_of(&loom_gateway());
    let compiled = planner.compile(&mut index);
    index.apply(Kind::Gateway, Event::Delete(gateway("edge", "loom")));
    // The status of a compile from before the delete.
    let writes = full_plan(&planner, &index, &compiled.status, NOW);
    assert!(
        !summary(&writes)
            .iter()
            .any(|w| w.starts_with("Gateway web/edge"))
    );
}

#[test]
fn other_controllers_classes_and_their_gateways_get_no_write() {
    let mut index = index_of(&[
        (Kind::GatewayClass, class("theirs", "example.com/other")),
        (Kind::Gateway, gateway("edge", "theirs")),
    ]);
    let (_, writes) = plan(&planner(ControllerOptions::default()), &mut index);
    assert!(writes.is_empty(), "{:?}", summary(&writes));
}

#[test]
fn a_class_no_gateway_uses_loses_the_finalizer() {
    let mut with_finalizer = class("loom", CONTROLLER);
    with_finalizer.metadata.finalizers = Some(vec![GATEWAY_EXISTS_FINALIZER.into()]);
    with_finalizer.metadata.resource_version = Some("5".into());
    let mut index = index_of(&[(Kind::GatewayClass, with_finalizer)]);
    let (_, writes) = plan(&planner(ControllerOptions::default()), &mut index);
    let finalizers: Vec<&StatusWrite> = writes
        .iter()
        .filter(|w| matches!(w.what, Write::Finalizers(_)))
        .collect();
    assert_eq!(finalizers.len(), 1);
    assert_eq!(finalizers[0].what, Write::Finalizers(vec![]));
    assert_eq!(finalizers[0].base, "5");
}

#[test]
fn a_used_class_that_has_the_finalizer_gets_no_finalizer_write() {
    let mut with_finalizer = class("loom", CONTROLLER);
    with_finalizer.metadata.finalizers = Some(vec![GATEWAY_EXISTS_FINALIZER.into()]);
    let mut index = index_of(&[
        (Kind::GatewayClass, with_finalizer),
        (Kind::Gateway, gateway("edge", "loom")),
    ]);
    let (_, writes) = plan(&planner(ControllerOptions::default()), &mut index);
    assert!(
        !writes
            .iter()
            .any(|w| matches!(w.what, Write::Finalizers(_)))
    );
}

#[test]
fn a_route_that_stops_naming_loom_loses_only_loom_s_parent_entries() {
    let planner = planner(ControllerOptions::default());
    let mut objects = loom_gateway();
    objects.push((Kind::HttpRoute, route("r", "edge")));
    let mut index = index_of(&objects);
    let (_, writes) = plan(&planner, &mut index);
    let route_write = writes
        .iter()
        .find(|w| w.resource.kind == "HTTPRoute")
        .unwrap();
    let mut status = status_of(route_write).clone();
    let parents = status["parents"].as_array_mut().unwrap();
    assert_eq!(parents.len(), 1);
    parents.push(json!({"controllerName": "example.com/other",
        "parentRef": {"name": "theirs"}, "conditions": []}));
    // The route now names only a Gateway that does not exist.
    let mut moved = route("r", "gone");
    moved.data["status"] = status;
    apply(&mut index, &[(Kind::HttpRoute, moved)]);
    let (_, writes) = plan(&planner, &mut index);
    let route_write = writes
        .iter()
        .find(|w| w.resource.kind == "HTTPRoute")
        .unwrap();
    let parents = status_of(route_write)["parents"].as_array().unwrap();
    let controllers: Vec<&str> = parents
        .iter()
        .map(|p| p["controllerName"].as_str().unwrap())
        .collect();
    assert_eq!(controllers, ["example.com/other"]);
}

// === Planning only what changed ===

/// Compiles and plans as the controller's loop does: the status writes kept from one plan to
/// the next, only what a compile or an event changed planned again.
struct Loop {
    planner: Planner,
    writes: StatusWrites,
    status: Status,
}

impl Loop {
    fn new() -> Self {
        Loop {
            planner: planner(ControllerOptions::default()),
            writes: StatusWrites::default(),
            status: Status::default(),
        }
    }

    fn compile(&mut self, index: &mut Index) {
        let compiled = self.planner.compile(index);
        self.writes.compiled(Some(&self.status), &compiled.status);
        self.status = compiled.status;
    }

    fn plan(&mut self, index: &mut Index, now: &str) -> Vec<StatusWrite> {
        self.writes.stale(index.take_observed_changes());
        unshared(
            self.planner
                .writes(index, &self.status, &mut self.writes, now),
        )
    }

    /// Plans, and checks that planning everything afresh gives the same writes.
    fn plan_checked(&mut self, index: &mut Index) -> Vec<StatusWrite> {
        let planned = self.plan(index, NOW);
        let full = full_plan(&self.planner, index, &self.status, NOW);
        assert_eq!(summary(&planned), summary(&full));
        assert_eq!(planned, full);
        planned
    }
}

fn write_for<'a>(writes: &'a [StatusWrite], kind: &str, name: &str) -> &'a StatusWrite {
    writes
        .iter()
        .find(|w| w.resource.kind == kind && w.name == name && matches!(w.what, Write::Status(_)))
        .unwrap_or_else(|| panic!("no status write for {kind} {name}: {:?}", summary(writes)))
}

#[test]
fn planning_only_what_changed_gives_the_full_plan_at_every_step() {
    let mut run = Loop::new();
    let mut objects = loom_gateway();
    objects.extend(["a", "b"].map(|r| (Kind::HttpRoute, route(r, "edge"))));
    let mut index = index_of(&objects);
    run.compile(&mut index);
    let first = run.plan_checked(&mut index);
    assert_eq!(first.len(), 5, "{:?}", summary(&first));

    // The class, the Gateway and route a show what was written.
    let class_shown = written(
        class("loom", CONTROLLER),
        "2",
        write_for(&first, "GatewayClass", "loom"),
    );
    let shown = [
        (
            Kind::GatewayClass,
            class_shown.clone(),
            "GatewayClass",
            "loom",
        ),
        (Kind::Gateway, gateway("edge", "loom"), "Gateway", "edge"),
        (Kind::HttpRoute, route("a", "edge"), "HTTPRoute", "a"),
    ];
    for (kind, o, k, name) in shown {
        apply(
            &mut index,
            &[(kind, written(o, "2", write_for(&first, k, name)))],
        );
    }
    let writes = run.plan_checked(&mut index);
    assert_eq!(
        summary(&writes),
        [
            "HTTPRoute web/b status",
            "GatewayClass loom finalizers [\"gateway-exists-finalizer.gateway.networking.k8s.io\"]",
        ]
    );

    // A new route; route b moves to a Gateway that does not exist; the class's finalizer
    // lands; route a is deleted.
    apply(&mut index, &[(Kind::HttpRoute, route("c", "edge"))]);
    run.compile(&mut index);
    run.plan_checked(&mut index);
    apply(&mut index, &[(Kind::HttpRoute, route("b", "gone"))]);
    run.compile(&mut index);
    run.plan_checked(&mut index);
    let finalizer = &writes[1];
    apply(
        &mut index,
        &[(Kind::GatewayClass, written(class_shown, "3", finalizer))],
    );
    let writes = run.plan_checked(&mut index);
    assert!(
        !writes
            .iter()
            .any(|w| matches!(w.what, Write::Finalizers(_))),
        "{:?}",
        summary(&writes)
    );
    // Route a shows its status, route c's write is still pending: both deleted.
    for r in ["a", "c"] {
        index.apply(Kind::HttpRoute, Event::Delete(route(r, "edge")));
    }
    run.compile(&mut index);
    let writes = run.plan_checked(&mut index);
    // The Gateway's attached-route count changed; nothing for the routes that are gone.
    assert_eq!(summary(&writes), ["Gateway web/edge status"]);
}

#[test]
fn a_planned_write_keeps_its_transition_time_until_its_object_changes() {
    let mut run = Loop::new();
    let mut objects = loom_gateway();
    objects.push((Kind::HttpRoute, route("r", "edge")));
    let mut index = index_of(&objects);
    run.compile(&mut index);
    let first = run.plan(&mut index, EARLIER);
    // Nothing changed: the same writes, as the writer already applied them (planned afresh,
    // each would carry the new time and be written again).
    let again = run.plan(&mut index, NOW);
    assert_eq!(again, first);
    assert_ne!(full_plan(&run.planner, &index, &run.status, NOW), first);
    // The route shows its write: planned again, it needs none.
    let shown = written(route("r", "edge"), "2", write_for(&first, "HTTPRoute", "r"));
    apply(&mut index, &[(Kind::HttpRoute, shown)]);
    let writes = run.plan(&mut index, NOW);
    assert!(
        !summary(&writes).iter().any(|w| w.starts_with("HTTPRoute")),
        "{:?}",
        summary(&writes)
    );
}

#[test]
fn a_resync_plans_every_object_afresh() {
    let mut run = Loop::new();
    let mut index = index_of(&loom_gateway());
    run.compile(&mut index);
    let first = run.plan(&mut index, EARLIER);
    run.writes.all_stale();
    let resynced = run.plan(&mut index, NOW);
    assert_ne!(resynced, first);
    assert_eq!(resynced, full_plan(&run.planner, &index, &run.status, NOW));
}

#[test]
fn a_resync_plans_so_many_objects_at_a_time_and_ends_with_every_write() {
    let mut run = Loop::new();
    let mut objects = loom_gateway();
    for i in 0..PLAN_AT_ONCE + 10 {
        objects.push((Kind::HttpRoute, route(&format!("r{i:03}"), "edge")));
    }
    let mut index = index_of(&objects);
    run.compile(&mut index);
    // Nothing planned before: all at once.
    let first = run.plan(&mut index, EARLIER);
    assert!(!run.writes.more_to_plan());
    assert_eq!(first, full_plan(&run.planner, &index, &run.status, EARLIER));
    run.writes.all_stale();
    let partly = run.plan(&mut index, NOW);
    assert!(run.writes.more_to_plan());
    let full = full_plan(&run.planner, &index, &run.status, NOW);
    assert_ne!(partly, full);
    let resynced = run.plan(&mut index, NOW);
    assert!(!run.writes.more_to_plan());
    assert_eq!(resynced, full);
}

// === Compile: addresses ===

#[test]
fn a_gateway_reports_its_address_from_the_pool() {
    let net: Ipv4Net = "10.9.0.0/30".parse().unwrap();
    let opts = ControllerOptions {
        address_pool: Some(net),
        ..ControllerOptions::default()
    };
    let mut index = Index::new(KINDS, [], Some(AddressPool::new(net)), None);
    apply(&mut index, &loom_gateway());
    let compiled = planner(opts).compile(&mut index);
    let addresses = &gateway_status(&compiled, "edge").addresses;
    assert_eq!(addresses.len(), 1);
    assert!(addresses[0].value.starts_with("10.9.0."), "{addresses:?}");
}

#[test]
fn a_requested_address_outside_the_usable_networks_is_not_usable() {
    let opts = ControllerOptions {
        usable_networks: vec!["192.0.2.0/24".parse().unwrap()],
        ..ControllerOptions::default()
    };
    let mut inside = gateway("inside", "loom");
    inside.data["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "192.0.2.7"}]);
    let mut outside = gateway("outside", "loom");
    outside.data["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "198.51.100.7"}]);
    let mut index = index_of(&[
        (Kind::GatewayClass, class("loom", CONTROLLER)),
        (Kind::Gateway, inside),
        (Kind::Gateway, outside),
    ]);
    let compiled = planner(opts).compile(&mut index);
    assert_eq!(programmed(&compiled, "inside"), "true Programmed");
    assert_eq!(programmed(&compiled, "outside"), "false AddressNotUsable");
}

fn loom_service(cluster_ip: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "loom-edge", "namespace": "web"},
        "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80}]},
    }))
}

fn all_in_one() -> ControllerOptions {
    ControllerOptions {
        provision: Some(Provision {
            selector: BTreeMap::from([("app".into(), "loom".into())]),
            service_type: "ClusterIP".into(),
            ..Provision::default()
        }),
        ..ControllerOptions::default()
    }
}

#[test]
fn the_controller_s_own_service_is_an_endpoint_source_when_gateways_take_its_endpoints() {
    let mut opts = all_in_one();
    let own = ("loom-system".to_owned(), "loom".to_owned());
    if let Some(p) = &mut opts.provision {
        p.endpoints_from = Some(own.clone());
    }
    let mut index = index_of(&loom_gateway());
    let compiled = planner(opts).compile(&mut index);
    assert!(compiled.endpoint_sources.contains(&own));
    let compiled = planner(all_in_one()).compile(&mut index);
    assert!(!compiled.endpoint_sources.contains(&own));
}

#[test]
fn a_gateway_behind_its_own_service_reports_the_service_address_not_the_pods() {
    let mut objects = loom_gateway();
    objects.push((Kind::Service, loom_service("10.0.0.9")));
    let mut index = index_of(&objects);
    let compiled = planner(all_in_one()).compile(&mut index);
    let reported: Vec<&str> = gateway_status(&compiled, "edge")
        .addresses
        .iter()
        .map(|a| a.value.as_str())
        .collect();
    assert_eq!(reported, ["10.0.0.9"]);
    assert!(
        compiled
            .snapshot
            .gateways
            .values()
            .all(|g| g.addresses.is_empty())
    );
}

#[test]
fn a_gateway_waits_for_its_service_to_be_created() {
    let mut index = index_of(&loom_gateway());
    let compiled = planner(all_in_one()).compile(&mut index);
    assert_eq!(programmed(&compiled, "edge"), "false AddressNotAssigned");
}

// === Provisioned objects ===

#[test]
fn an_accepted_gateway_gets_its_service_applied_whole() {
    let mut objects = loom_gateway();
    objects.push((Kind::Gateway, gateway("not-ours", "theirs")));
    let mut index = index_of(&objects);
    let (_, writes) = plan(&planner(all_in_one()), &mut index);
    let objects: Vec<&StatusWrite> = writes
        .iter()
        .filter(|w| matches!(w.what, Write::Object(_)))
        .collect();
    assert_eq!(
        summary(&objects.iter().map(|w| (*w).clone()).collect::<Vec<_>>()),
        ["Service web/loom-edge object"]
    );
    assert_eq!(
        objects[0].base, "",
        "applied again only when the body changes"
    );
}

fn provisioned() -> ControllerOptions {
    ControllerOptions {
        provision: Some(Provision {
            service_type: "ClusterIP".into(),
            data_plane: Some(DataPlane::default()),
            ..Provision::default()
        }),
        ..ControllerOptions::default()
    }
}

fn data_plane(name: &str, controller: &str) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "web",
            "annotations": {CONTROLLER_ANNOTATION: controller}},
        "spec": {"replicas": 1, "selector": {}, "template": {}},
        "status": {"availableReplicas": 1},
    }))
    .unwrap()
}

#[test]
fn a_provisioned_gateway_gets_service_account_deployment_and_binding() {
    let mut index = index_of(&loom_gateway());
    let (_, writes) = plan(&planner(provisioned()), &mut index);
    let objects: Vec<StatusWrite> = writes
        .into_iter()
        .filter(|w| matches!(w.what, Write::Object(_)))
        .collect();
    assert_eq!(
        summary(&objects),
        [
            "Service web/loom-edge object",
            "ServiceAccount web/loom-edge object",
            "Deployment web/loom-edge object",
            "ClusterRoleBinding loom-data-plane object",
        ]
    );
}

#[test]
fn a_provisioned_gateway_is_pending_until_a_data_plane_pod_is_available() {
    let mut objects = loom_gateway();
    objects.push((Kind::Service, loom_service("10.0.0.9")));
    let mut index = index_of(&objects);
    let planner = planner(provisioned());
    let compiled = planner.compile(&mut index);
    assert_eq!(programmed(&compiled, "edge"), "false Pending");
    index.apply_rollout(Event::Apply(data_plane("loom-edge", CONTROLLER)));
    let compiled = planner.compile(&mut index);
    assert_eq!(programmed(&compiled, "edge"), "true Programmed");
}

#[test]
fn data_planes_of_gateways_no_longer_accepted_are_deleted_in_order() {
    let mut index = index_of(&loom_gateway());
    for name in ["loom-old-b", "loom-edge", "loom-old-a"] {
        index.apply_rollout(Event::Apply(data_plane(name, CONTROLLER)));
    }
    index.apply_rollout(Event::Apply(data_plane(
        "loom-foreign",
        "example.com/other",
    )));
    let (_, writes) = plan(&planner(provisioned()), &mut index);
    let deletes: Vec<StatusWrite> = writes
        .into_iter()
        .filter(|w| w.what == Write::Delete)
        .collect();
    assert_eq!(
        summary(&deletes),
        [
            "Deployment web/loom-old-a delete",
            "ServiceAccount web/loom-old-a delete",
            "Service web/loom-old-a delete",
            "Deployment web/loom-old-b delete",
            "ServiceAccount web/loom-old-b delete",
            "Service web/loom-old-b delete",
        ]
    );
}
