//! Objects Loom creates for a Gateway, each owned by the Gateway (so they go when it goes) and
//! carrying its `spec.infrastructure` labels and annotations (GatewayInfrastructurePropagation):
//!
//! - all-in-one mode: a Service per Gateway in front of the controller's own pods, which serve
//!   every Gateway: an EndpointSlice Loom keeps lists them (`endpoints_from`, any namespace),
//!   or a `selector` finds them (the Gateway's namespace only); with neither, the Service is a
//!   named, labelled port map;
//! - provisioned mode ([`DataPlane`]): per Gateway a ServiceAccount, a Deployment of
//!   `loom data-plane` pods serving only that Gateway, and a Service selecting them, shaped by
//!   the GatewayClassConfig of the Gateway (`spec.infrastructure.parametersRef`) or of its
//!   class; one ClusterRoleBinding grants every data-plane ServiceAccount read access.

use std::collections::BTreeMap;

use loom_core::input::{GATEWAY_GROUP, Gateway, GatewayClassConfigSpec, Input, LOOM_GROUP};
use serde_json::{Value, json};

/// The label every object created for a Gateway carries (Gateway API's `GatewayNameLabelKey`).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The label that ties data-plane pods to their Deployment and Service.
pub const DATA_PLANE_LABEL: &str = "loom.dev/data-plane";
/// The annotation naming the controller that made a Deployment (label values cannot hold a
/// controller name's `/`), so that Loom removes only its own.
pub const CONTROLLER_ANNOTATION: &str = "loom.dev/controller-name";
/// Labels on every provisioned Deployment (the controller watches only these).
pub const DATA_PLANE_SELECTOR: &str =
    "app.kubernetes.io/managed-by=loom,app.kubernetes.io/component=data-plane";

/// How per-Gateway objects look.
#[derive(Clone, Debug, Default)]
pub struct Provision {
    /// Pods the all-in-one Service sends traffic to (empty: no selector).
    pub selector: BTreeMap<String, String>,
    /// All-in-one: the controller's own Service `(namespace, name)`, whose ready endpoints
    /// Loom copies into an EndpointSlice of each per-Gateway Service (which then has no
    /// selector: a selector only finds pods in the Service's own namespace).
    pub endpoints_from: Option<(String, String)>,
    /// `ClusterIP`, `NodePort` or `LoadBalancer` (a GatewayClassConfig may override it).
    pub service_type: String,
    /// Provisioned mode: data-plane pods per Gateway instead of the controller's own.
    pub data_plane: Option<DataPlane>,
}

/// The data-plane Deployments of provisioned mode.
#[derive(Clone, Debug)]
pub struct DataPlane {
    /// Loom's image (it runs `loom data-plane`).
    pub image: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    /// The controller name the pods pass on (which GatewayClasses are Loom's).
    pub controller_name: String,
    /// The read-only ClusterRole of data-plane pods; the ClusterRoleBinding of the same name
    /// (created with the controller's RBAC) gets every data-plane ServiceAccount as subject.
    pub cluster_role: String,
    /// The pods' admin port (/readyz is their readiness probe).
    pub admin_port: u16,
    /// `RUST_LOG` of the pods.
    pub log: String,
    /// `LOOM_LOG_FORMAT` of the pods (`text` or `json`).
    pub log_format: String,
    /// Redis for global rate limits and the timeout of one check in milliseconds
    /// (`--redis-url`, `--redis-timeout-ms` of the pods).
    pub redis: Option<(String, u64)>,
}

impl Default for DataPlane {
    fn default() -> Self {
        DataPlane {
            image: format!("ghcr.io/loom-gateway/loom:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: "IfNotPresent".into(),
            controller_name: loom_core::CONTROLLER_NAME.into(),
            cluster_role: "loom-data-plane".into(),
            admin_port: 9901,
            log: "info".into(),
            log_format: "text".into(),
            redis: None,
        }
    }
}

/// The name of everything Loom creates for a Gateway: `loom-<gateway>`, made a DNS-1035 label
/// (Gateway names may hold dots and be longer than 63 characters; a hash keeps long names
/// apart).
pub fn service_name(gateway: &str) -> String {
    let clean: String = format!("loom-{gateway}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() <= 63 {
        return clean.trim_end_matches('-').to_owned();
    }
    let hash = crate::addresses::fnv1a(gateway);
    format!("{}-{:08x}", clean[..54].trim_end_matches('-'), hash as u32)
}

/// What a GatewayClassConfig asks of a Gateway's data plane: the Gateway's own
/// (`spec.infrastructure.parametersRef`) field by field over its class's; labels merged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    /// Data-plane replicas.
    pub replicas: Option<i32>,
    /// The container's `resources` (requests, limits).
    pub resources: Option<Value>,
    /// The Service's `type`.
    pub service_type: Option<String>,
    /// Extra labels for every provisioned object.
    pub labels: BTreeMap<String, String>,
    /// HTTPS listeners also serve HTTP/3: their ports are open on UDP too.
    pub http3: Option<bool>,
}

/// The [`Shape`] for `gw`. References that do not resolve add nothing (the compiler reports
/// them as `InvalidParameters`).
pub fn shape(input: &Input, gw: &Gateway) -> Shape {
    let find = |ns: &str, name: &str| {
        input
            .gateway_class_configs
            .iter()
            .find(|c| c.metadata.namespace_or_default() == ns && c.metadata.name == name)
            .map(|c| &c.spec)
    };
    let class = input
        .gateway_classes
        .iter()
        .find(|c| c.metadata.name == gw.spec.gateway_class_name)
        .and_then(|c| c.spec.parameters_ref.as_ref())
        .filter(|p| p.group == LOOM_GROUP && p.kind == "GatewayClassConfig")
        .and_then(|p| find(p.namespace.as_deref().unwrap_or("default"), &p.name));
    let own = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
        .filter(|p| p.group == LOOM_GROUP && p.kind == "GatewayClassConfig")
        .and_then(|p| find(gw.metadata.namespace_or_default(), &p.name));
    let mut shape = Shape::default();
    for spec in [class, own].into_iter().flatten() {
        let GatewayClassConfigSpec {
            deployment,
            replicas,
            resources,
            service_type,
            labels,
            http3,
            // Read by the compiler (which plugins a Gateway's rules run), not by provisioning:
            // every data-plane pod can run plugins.
            plugins: _,
        } = spec;
        shape.http3 = http3.as_ref().and_then(|h| h.enabled).or(shape.http3);
        let deployment = deployment.as_ref();
        let replicas = deployment.and_then(|d| d.replicas).or(*replicas);
        let resources = deployment
            .and_then(|d| d.resources.clone())
            .or_else(|| resources.clone());
        shape.replicas = replicas.or(shape.replicas);
        shape.resources = resources.or(shape.resources.take());
        shape.service_type = service_type.clone().or(shape.service_type.take());
        shape.labels.extend(labels.clone());
    }
    shape
}

/// The pod selector of a Gateway's data plane.
fn data_plane_selector(gw: &Gateway) -> BTreeMap<String, String> {
    [(DATA_PLANE_LABEL.into(), service_name(&gw.metadata.name))].into()
}

/// Labels, annotations and owner every object created for `gw` carries; `None` without a uid.
fn metadata(gw: &Gateway, shape: &Shape, data_plane: bool) -> Option<Value> {
    let uid = gw.metadata.uid.as_deref()?;
    let name = &gw.metadata.name;
    let infra = gw.spec.infrastructure.as_ref();
    let mut labels = shape.labels.clone();
    labels.extend(infra.map(|i| i.labels.clone()).unwrap_or_default());
    // A label value holds at most 63 characters; a longer Gateway name is left out.
    if name.len() <= 63 {
        labels.insert(GATEWAY_NAME_LABEL.into(), name.clone());
    }
    labels.insert("app.kubernetes.io/managed-by".into(), "loom".into());
    if data_plane {
        labels.insert("app.kubernetes.io/name".into(), "loom".into());
        labels.insert("app.kubernetes.io/component".into(), "data-plane".into());
        labels.extend(data_plane_selector(gw));
    }
    let annotations = infra.map(|i| i.annotations.clone()).unwrap_or_default();
    Some(json!({
        "name": service_name(name),
        "namespace": gw.metadata.namespace_or_default(),
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": format!("{GATEWAY_GROUP}/v1"),
            "kind": "Gateway",
            "name": name,
            "uid": uid,
        }],
    }))
}

/// The listener ports of `gw`, sorted, with their protocol.
/// The ports of `gw`'s listeners with their transport: UDP for UDP listeners and HTTP/3 (an
/// HTTP listener with `tls`, or every HTTPS listener when `http3` is on), TCP for the others
/// (an HTTPS port with HTTP/3 is open on both).
fn ports(gw: &Gateway, http3: bool) -> Vec<(i32, &'static str)> {
    let mut ports: Vec<(i32, &str)> = vec![];
    for l in &gw.spec.listeners {
        match l.protocol.as_str() {
            "UDP" => ports.push((l.port, "UDP")),
            "HTTP" if l.tls.is_some() => ports.push((l.port, "UDP")),
            "HTTPS" if http3 => ports.extend([(l.port, "TCP"), (l.port, "UDP")]),
            _ => ports.push((l.port, "TCP")),
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The server-side apply body of the Service for `gw`; `None` when the Gateway has no
/// listeners (a Service needs a port) or no uid yet.
pub fn service_for(input: &Input, gw: &Gateway, p: &Provision) -> Option<Value> {
    let shape = shape(input, gw);
    let ports = ports(gw, shape.http3 == Some(true));
    if ports.is_empty() {
        return None;
    }
    let meta = metadata(gw, &shape, false)?;
    let service_type = shape
        .service_type
        .as_deref()
        .filter(|_| p.data_plane.is_some())
        .or(Some(p.service_type.as_str()).filter(|t| !t.is_empty()))
        .unwrap_or("ClusterIP");
    let mut spec = json!({
        "type": service_type,
        "ports": ports.iter().map(|(port, proto)| json!({
            "name": format!("{}-{port}", proto.to_ascii_lowercase()),
            "port": port,
            "targetPort": port,
            "protocol": proto,
        })).collect::<Vec<_>>(),
    });
    if p.data_plane.is_some() {
        spec["selector"] = json!(data_plane_selector(gw));
        // Addresses the Gateway asks for are where its Service takes traffic.
        let ips: Vec<&str> = gw
            .spec
            .addresses
            .iter()
            .filter(|a| a.type_.as_deref().is_none_or(|t| t == "IPAddress"))
            .filter_map(|a| a.value.as_deref())
            .collect();
        if !ips.is_empty() {
            spec["externalIPs"] = json!(ips);
        }
    } else if !p.selector.is_empty() && p.endpoints_from.is_none() {
        spec["selector"] = json!(p.selector);
    }
    Some(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}))
}

/// All-in-one: the EndpointSlice of `gw`'s Service, listing the ready endpoints of the
/// controller's own Service (`Provision::endpoints_from`); `None` without that setting.
pub fn endpoint_slice_for(input: &Input, gw: &Gateway, p: &Provision) -> Option<Value> {
    let (from_ns, from_name) = p.endpoints_from.as_ref()?;
    let shape = shape(input, gw);
    let ports = ports(gw, shape.http3 == Some(true));
    if ports.is_empty() {
        return None;
    }
    let mut meta = metadata(gw, &shape, false)?;
    let name = service_name(&gw.metadata.name);
    meta["labels"]["kubernetes.io/service-name"] = json!(name);
    meta["labels"]["endpointslice.kubernetes.io/managed-by"] = json!("loom.dev");
    let mut addresses: Vec<&str> = input
        .endpoint_slices
        .iter()
        .filter(|s| {
            s.metadata.namespace_or_default() == from_ns
                && s.address_type == "IPv4"
                && s.metadata.labels.get("kubernetes.io/service-name") == Some(from_name)
        })
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.ready != Some(false))
        .filter_map(|e| e.addresses.first().map(String::as_str))
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    Some(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "endpoints": addresses.iter().map(|a| json!({
            "addresses": [a],
            "conditions": {"ready": true},
        })).collect::<Vec<_>>(),
        "ports": ports.iter().map(|(port, proto)| json!({
            "name": format!("{}-{port}", proto.to_ascii_lowercase()),
            "port": port,
            "protocol": proto,
        })).collect::<Vec<_>>(),
    }))
}

/// The ServiceAccount of `gw`'s data-plane pods.
pub fn service_account_for(input: &Input, gw: &Gateway) -> Option<Value> {
    let meta = metadata(gw, &shape(input, gw), false)?;
    Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}))
}

/// The Deployment of `gw`'s data-plane pods: `loom data-plane --gateway <ns>/<name>`.
pub fn deployment_for(input: &Input, gw: &Gateway, dp: &DataPlane) -> Option<Value> {
    let shape = shape(input, gw);
    let mut meta = metadata(gw, &shape, true)?;
    let ns = gw.metadata.namespace_or_default();
    let pod_annotations = meta["annotations"].clone();
    meta["annotations"][CONTROLLER_ANNOTATION] = json!(dp.controller_name);
    let mut container_ports: Vec<Value> = ports(gw, shape.http3 == Some(true))
        .iter()
        .map(|(port, proto)| json!({"containerPort": port, "protocol": proto}))
        .collect();
    container_ports.push(json!({"name": "admin", "containerPort": dp.admin_port}));
    let mut container = json!({
        "name": "data-plane",
        "image": dp.image,
        "imagePullPolicy": dp.image_pull_policy,
        "args": [
            "data-plane",
            "--gateway", format!("{ns}/{}", gw.metadata.name),
            "--controller-name", dp.controller_name,
            "--admin", format!("0.0.0.0:{}", dp.admin_port),
        ],
        "env": [
            {"name": "RUST_LOG", "value": dp.log},
            {"name": "LOOM_LOG_FORMAT", "value": dp.log_format},
        ],
        "ports": container_ports,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": dp.admin_port},
            "periodSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": dp.admin_port},
            "periodSeconds": 10,
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        },
    });
    if let Some(r) = &shape.resources {
        container["resources"] = r.clone();
    }
    if let (Some((url, timeout_ms)), Some(args)) = (&dp.redis, container["args"].as_array_mut()) {
        args.extend([
            json!("--redis-url"),
            json!(url),
            json!("--redis-timeout-ms"),
            json!(timeout_ms.to_string()),
        ]);
    }
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": shape.replicas.unwrap_or(1),
            "selector": {"matchLabels": data_plane_selector(gw)},
            "template": {
                "metadata": {"labels": meta["labels"], "annotations": pod_annotations},
                "spec": {
                    "serviceAccountName": service_name(&gw.metadata.name),
                    "containers": [container],
                },
            },
        },
    }))
}

/// The ClusterRoleBinding that gives the data-plane ServiceAccounts of `gateways` read access.
pub fn cluster_role_binding<'a>(
    dp: &DataPlane,
    gateways: impl IntoIterator<Item = &'a Gateway>,
) -> Value {
    let mut subjects: Vec<Value> = gateways
        .into_iter()
        .map(|gw| {
            json!({
                "kind": "ServiceAccount",
                "name": service_name(&gw.metadata.name),
                "namespace": gw.metadata.namespace_or_default(),
            })
        })
        .collect();
    subjects.sort_by_key(|s| (s["namespace"].to_string(), s["name"].to_string()));
    subjects.dedup();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": dp.cluster_role},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": dp.cluster_role,
        },
        "subjects": subjects,
    })
}
#[cfg(test)]
mod tests {
    use crate::test_input as input;
    use loom_core::input::Object;

    use super::*;

    fn gateway(yaml: &str) -> Gateway {
        let loaded = loom_core::load::load_str("gw.yaml", yaml);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        match loaded.objects.into_iter().next().map(|(_, o)| o) {
            Some(Object::Gateway(g)) => std::sync::Arc::unwrap_or_clone(g),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_service_carries_infrastructure_metadata_ports_and_owner() {
        let gw = gateway(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web.example, namespace: infra, uid: 1234}
spec:
  gatewayClassName: loom
  infrastructure: {labels: {team: a}, annotations: {note: b}}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: http-other, port: 80, protocol: HTTP, hostname: x.example.com}
  - {name: dns, port: 53, protocol: UDP}
"#,
        );
        let p = Provision {
            selector: [("app".into(), "loom".into())].into(),
            service_type: "LoadBalancer".into(),
            ..Provision::default()
        };
        let s = service_for(&Input::default(), &gw, &p).unwrap();
        assert_eq!(s["metadata"]["name"], "loom-web-example");
        assert_eq!(s["metadata"]["labels"]["team"], "a");
        assert_eq!(s["metadata"]["labels"][GATEWAY_NAME_LABEL], "web.example");
        assert_eq!(s["metadata"]["annotations"]["note"], "b");
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "1234");
        assert_eq!(s["spec"]["type"], "LoadBalancer");
        assert_eq!(s["spec"]["selector"]["app"], "loom");
        let ports: Vec<String> = s["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ports, ["udp-53", "tcp-80"]);
        // No selector asked for: none written.
        let bare = service_for(&Input::default(), &gw, &Provision::default()).unwrap();
        assert!(bare["spec"].get("selector").is_none());
        assert_eq!(bare["spec"]["type"], "ClusterIP");
    }

    const PROVISIONED: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec:
  controllerName: loom.dev/gateway-controller
  parametersRef: {group: gateway.loom.dev, kind: GatewayClassConfig, name: class, namespace: loom-system}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: GatewayClassConfig
metadata: {name: class, namespace: loom-system}
spec:
  replicas: 3
  serviceType: NodePort
  resources: {requests: {cpu: 100m}}
  labels: {tier: edge, team: class}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: GatewayClassConfig
metadata: {name: small, namespace: web}
spec:
  replicas: 2
  labels: {size: small}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: web, uid: u-1}
spec:
  gatewayClassName: loom
  addresses: [{type: IPAddress, value: 192.0.2.7}]
  infrastructure:
    labels: {team: a}
    annotations: {note: b}
    parametersRef: {group: gateway.loom.dev, kind: GatewayClassConfig, name: small}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: dns, port: 53, protocol: UDP}
"#;

    #[test]
    fn a_gateways_own_config_wins_field_by_field_over_its_classs() {
        let input = input(PROVISIONED);
        let s = shape(&input, &input.gateways[0]);
        assert_eq!(s.replicas, Some(2));
        assert_eq!(s.service_type.as_deref(), Some("NodePort"));
        assert_eq!(s.resources, Some(json!({"requests": {"cpu": "100m"}})));
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("size", "small"), ("team", "class"), ("tier", "edge")]
        );
    }

    #[test]
    fn deployment_replicas_and_resources_win_over_the_flat_fields_and_http3_opens_udp() {
        let input = input(&PROVISIONED.replace(
            "spec:\n  replicas: 2\n  labels: {size: small}",
            "spec:\n  replicas: 2\n  deployment: {replicas: 4, resources: {limits: {cpu: '1'}}}\n  \
             http3: {enabled: true}\n  labels: {size: small}",
        ));
        let gw = &input.gateways[0];
        let s = shape(&input, gw);
        assert_eq!(s.replicas, Some(4));
        assert_eq!(s.resources, Some(json!({"limits": {"cpu": "1"}})));
        assert_eq!(s.http3, Some(true));
        let https = gateway(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
             metadata: {name: tls, namespace: web}\nspec:\n  gatewayClassName: loom\n  \
             listeners: [{name: https, port: 443, protocol: HTTPS}]\n",
        );
        assert_eq!(ports(&https, true), [(443, "TCP"), (443, "UDP")]);
        assert_eq!(ports(&https, false), [(443, "TCP")]);
    }

    #[test]
    fn provisioned_objects_select_the_gateways_own_pods() {
        let input = input(PROVISIONED);
        let gw = &input.gateways[0];
        let dp = DataPlane {
            image: "example.com/loom:1".into(),
            ..DataPlane::default()
        };
        let p = Provision {
            service_type: "LoadBalancer".into(),
            data_plane: Some(dp.clone()),
            ..Provision::default()
        };
        let d = deployment_for(&input, gw, &dp).unwrap();
        assert_eq!(d["metadata"]["name"], "loom-edge");
        assert_eq!(d["metadata"]["namespace"], "web");
        assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(
            d["metadata"]["annotations"][CONTROLLER_ANNOTATION],
            "loom.dev/gateway-controller"
        );
        let pod = &d["spec"]["template"];
        // Infrastructure labels win over the config's; every object carries them.
        assert_eq!(pod["metadata"]["labels"]["team"], "a");
        assert_eq!(pod["metadata"]["labels"]["tier"], "edge");
        assert_eq!(pod["metadata"]["annotations"]["note"], "b");
        assert_eq!(pod["metadata"]["labels"][GATEWAY_NAME_LABEL], "edge");
        let selector = &d["spec"]["selector"]["matchLabels"];
        assert_eq!(selector, &json!({DATA_PLANE_LABEL: "loom-edge"}));
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][k], v);
        }
        for kv in DATA_PLANE_SELECTOR.split(',') {
            let (k, v) = kv.split_once('=').unwrap();
            assert_eq!(d["metadata"]["labels"][k], v, "{k}");
        }
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], "example.com/loom:1");
        assert_eq!(
            c["args"],
            json!([
                "data-plane",
                "--gateway",
                "web/edge",
                "--controller-name",
                "loom.dev/gateway-controller",
                "--admin",
                "0.0.0.0:9901"
            ])
        );
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(pod["spec"]["serviceAccountName"], "loom-edge");

        let s = service_for(&input, gw, &p).unwrap();
        assert_eq!(s["spec"]["selector"], *selector);
        assert_eq!(
            s["spec"]["type"], "NodePort",
            "the config's type wins over the flag's"
        );
        assert_eq!(s["spec"]["externalIPs"], json!(["192.0.2.7"]));
        assert_eq!(s["metadata"]["labels"]["tier"], "edge");

        let sa = service_account_for(&input, gw).unwrap();
        assert_eq!(sa["metadata"]["name"], "loom-edge");
        let crb = cluster_role_binding(&dp, [&**gw, &**gw]);
        assert_eq!(
            crb["subjects"],
            json!([{"kind": "ServiceAccount", "name": "loom-edge", "namespace": "web"}])
        );
        assert_eq!(crb["roleRef"]["name"], "loom-data-plane");
    }

    #[test]
    fn all_in_one_services_get_the_controllers_ready_endpoints() {
        let input = input(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: app, uid: u-2}
spec:
  gatewayClassName: loom
  listeners: [{name: http, port: 80, protocol: HTTP}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: loom-abc
  namespace: loom-system
  labels: {kubernetes.io/service-name: loom}
addressType: IPv4
endpoints:
- {addresses: [10.0.0.2], conditions: {ready: true}}
- {addresses: [10.0.0.1]}
- {addresses: [10.0.0.3], conditions: {ready: false}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: other-abc
  namespace: loom-system
  labels: {kubernetes.io/service-name: other}
addressType: IPv4
endpoints: [{addresses: [10.0.0.9]}]
"#,
        );
        let gw = &input.gateways[0];
        let p = Provision {
            selector: [("app".into(), "loom".into())].into(),
            endpoints_from: Some(("loom-system".into(), "loom".into())),
            ..Provision::default()
        };
        let s = service_for(&input, gw, &p).unwrap();
        assert!(s["spec"].get("selector").is_none(), "{s}");
        let e = endpoint_slice_for(&input, gw, &p).unwrap();
        assert_eq!(e["metadata"]["name"], "loom-web");
        assert_eq!(e["metadata"]["namespace"], "app");
        assert_eq!(
            e["metadata"]["labels"]["kubernetes.io/service-name"],
            "loom-web"
        );
        let addrs: Vec<&str> = e["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["addresses"][0].as_str().unwrap())
            .collect();
        assert_eq!(addrs, ["10.0.0.1", "10.0.0.2"]);
        // Port names match the Service's, so kube-proxy pairs them.
        let names = |v: &Value, key: &str| -> Vec<String> {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].to_string())
                .collect()
        };
        assert_eq!(names(&e, "ports"), names(&s["spec"], "ports"));
        assert!(endpoint_slice_for(&input, gw, &Provision::default()).is_none());
    }

    #[test]
    fn service_names_are_dns_labels() {
        assert_eq!(service_name("gw"), "loom-gw");
        let long = "a".repeat(100);
        let n = service_name(&long);
        assert!(n.len() <= 63, "{n}");
        assert_ne!(n, service_name(&"a".repeat(101)));
        assert!(n.starts_with("loom-"));
        assert_eq!(service_name("Web_Gateway.1"), "loom-web-gateway-1");
    }
}
