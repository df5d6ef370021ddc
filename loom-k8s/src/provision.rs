//! Objects Loom creates for a Gateway: a Service per Gateway, carrying the Gateway's
//! `spec.infrastructure` labels and annotations (GatewayInfrastructurePropagation) and owned
//! by the Gateway, so it goes when the Gateway goes.
//!
//! In all-in-one mode the Service selects the controller's own pods (`selector`), which serve
//! every Gateway; without a selector it is a named, labelled port map for the Gateway.

use std::collections::BTreeMap;

use loom_core::input::{GATEWAY_GROUP, Gateway};
use serde_json::{Value, json};

/// The label every object created for a Gateway carries (Gateway API's `GatewayNameLabelKey`).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// How per-Gateway Services look.
#[derive(Clone, Debug, Default)]
pub struct Provision {
    /// Pods the Service sends traffic to (empty: no selector).
    pub selector: BTreeMap<String, String>,
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    pub service_type: String,
}

/// The Service's name: `loom-<gateway>`, made a DNS-1035 label (Gateway names may hold dots
/// and be longer than 63 characters; a hash keeps long names apart).
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

/// The server-side apply body of the Service for `gw`; `None` when the Gateway has no
/// listeners (a Service needs a port) or no uid yet.
pub fn service_for(gw: &Gateway, p: &Provision) -> Option<Value> {
    let uid = gw.metadata.uid.as_deref()?;
    let ns = gw.metadata.namespace_or_default();
    let name = &gw.metadata.name;
    let mut ports: Vec<(i32, &str)> = gw
        .spec
        .listeners
        .iter()
        .map(|l| (l.port, if l.protocol == "UDP" { "UDP" } else { "TCP" }))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        return None;
    }
    let infra = gw.spec.infrastructure.as_ref();
    let mut labels: BTreeMap<String, String> = infra.map(|i| i.labels.clone()).unwrap_or_default();
    labels.insert(GATEWAY_NAME_LABEL.into(), name.clone());
    labels.insert("app.kubernetes.io/managed-by".into(), "loom".into());
    let annotations = infra.map(|i| i.annotations.clone()).unwrap_or_default();
    let mut spec = json!({
        "type": if p.service_type.is_empty() { "ClusterIP" } else { p.service_type.as_str() },
        "ports": ports.iter().map(|(port, proto)| json!({
            "name": format!("{}-{port}", proto.to_ascii_lowercase()),
            "port": port,
            "targetPort": port,
            "protocol": proto,
        })).collect::<Vec<_>>(),
    });
    if !p.selector.is_empty() {
        spec["selector"] = json!(p.selector);
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": ns,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": format!("{GATEWAY_GROUP}/v1"),
                "kind": "Gateway",
                "name": name,
                "uid": uid,
            }],
        },
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use loom_core::input::Object;

    use super::*;

    fn gateway(yaml: &str) -> Gateway {
        let loaded = loom_core::load::load_str("gw.yaml", yaml);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        match loaded.objects.into_iter().next().map(|(_, o)| o) {
            Some(Object::Gateway(g)) => g,
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
        };
        let s = service_for(&gw, &p).unwrap();
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
        let bare = service_for(&gw, &Provision::default()).unwrap();
        assert!(bare["spec"].get("selector").is_none());
        assert_eq!(bare["spec"]["type"], "ClusterIP");
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
