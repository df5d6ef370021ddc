//! Which API resources Loom watches, found by discovery, and the one place where
//! Kubernetes objects become `loom_core::input` objects.

use kube::api::{ApiResource, DynamicObject};
use kube::discovery::{Discovery, Scope};
use loom_core::input::{Kind, Object};

/// A kind Loom watches, as the API server serves it.
#[derive(Clone, Debug)]
pub struct Watched {
    pub kind: Kind,
    /// Group, version, plural as served (the most stable version).
    pub resource: ApiResource,
}

/// What discovery found, and which kinds the cluster does not serve (CRDs not installed).
#[derive(Debug, Default)]
pub struct Discovered {
    /// Kinds to watch.
    pub watched: Vec<Watched>,
    /// Kinds the cluster does not serve.
    pub missing: Vec<Kind>,
}

/// Finds every kind of [`Kind::ALL`] the API server serves.
pub async fn discover(client: kube::Client) -> kube::Result<Discovered> {
    let groups: Vec<&str> = Kind::ALL.iter().map(|k| k.group()).collect();
    let discovery = Discovery::new(client).filter(&groups).run().await?;
    let mut out = Discovered::default();
    for kind in Kind::ALL {
        let found = discovery.get(kind.group()).and_then(|g| {
            g.resources_by_stability()
                .into_iter()
                .find(|(ar, _)| ar.kind == kind.as_str())
        });
        match found {
            Some((resource, caps)) => {
                debug_assert_eq!(caps.scope == Scope::Namespaced, kind.is_namespaced());
                out.watched.push(Watched { kind, resource })
            }
            None => out.missing.push(kind),
        }
    }
    Ok(out)
}

/// Converts an object from the API into Loom's input model, without its annotations: Loom
/// reads none, and `kubectl apply` leaves a copy of the whole object in one of them
/// (`kubectl.kubernetes.io/last-applied-configuration`), which every object kept would carry.
/// Only a Gateway keeps its uid (what Loom creates for a Gateway is owned by it).
pub fn to_object(kind: Kind, object: &DynamicObject) -> Result<Object, String> {
    let mut value = serde_json::to_value(object).map_err(|e| format!("{kind}: {e}"))?;
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("annotations");
        if kind != Kind::Gateway {
            meta.remove("uid");
        }
    }
    drop_nulls(&mut value);
    loom_core::load::from_value(kind, value)
}

/// The API writes absent optional fields as `null` in places (an EndpointSlice without
/// endpoints has `"endpoints": null`); to Loom's model, null means absent.
fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The object's `status`, if any.
pub fn status_of(object: &DynamicObject) -> Option<&serde_json::Value> {
    object.data.get("status").filter(|s| !s.is_null())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn api_objects_convert_to_loom_objects() {
        let gw: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra", "generation": 3,
                "resourceVersion": "42", "uid": "u", "managedFields": [],
                "creationTimestamp": "2026-11-27T07:00:00Z"},
            "spec": {"gatewayClassName": "loom",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
            "status": {"conditions": []}
        }))
        .unwrap();
        let Object::Gateway(g) = to_object(Kind::Gateway, &gw).unwrap() else {
            panic!("not a Gateway");
        };
        assert_eq!(g.metadata.generation, Some(3));
        assert_eq!(
            g.metadata.uid.as_deref(),
            Some("u"),
            "a Gateway keeps its uid"
        );
        assert_eq!(g.spec.listeners[0].port, 80);
        assert!(status_of(&gw).is_some());
        let bad: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw"}, "spec": {"listeners": [{"port": "eighty"}]}
        }))
        .unwrap();
        let e = to_object(Kind::Gateway, &bad).unwrap_err();
        assert!(e.contains("spec.listeners[0].port"), "{e}");
        // An EndpointSlice whose Service has no ready pods yet.
        let empty: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "s", "namespace": "ns",
                "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4", "endpoints": null, "ports": null
        }))
        .unwrap();
        assert!(to_object(Kind::EndpointSlice, &empty).is_ok());
    }

    #[test]
    fn annotations_and_uids_but_a_gateways_are_not_kept() {
        let applied = json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "web"},
            "spec": {"parentRefs": [{"name": "gw"}]},
        });
        let route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "web", "labels": {"app": "web"}, "uid": "u",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": applied.to_string(),
                }},
            "spec": {"parentRefs": [{"name": "gw"}]},
        }))
        .unwrap();
        let Object::HttpRoute(r) = to_object(Kind::HttpRoute, &route).unwrap() else {
            panic!("not an HTTPRoute");
        };
        assert!(r.metadata.annotations.is_empty());
        assert_eq!(r.metadata.uid, None, "only a Gateway's uid is read");
        assert_eq!(r.metadata.labels["app"], "web", "labels are kept");
    }
}
