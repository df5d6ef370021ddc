//! A fake API server: the objects of one test, applied the way the API server and the suite's
//! applier would (rewrites, `generation`, `creationTimestamp`), and read back as compiler input.

use std::collections::BTreeMap;

use loom_core::Input;
use loom_core::input::Kind;
use serde_json::{Value, json};

use crate::case::{ObjectRef, SourcePods};
use crate::patch::merge_patch;

/// The GatewayClass under test.
pub(crate) const CLASS: &str = "loom";
/// The address every Gateway gets in its status.
pub(crate) const GATEWAY_ADDRESS: &str = "127.0.0.1";
/// `{USABLE_ADDRESS}` of `GatewayStaticAddresses`.
pub(crate) const USABLE_ADDRESS: &str = "127.0.0.1";
/// `{UNUSABLE_ADDRESS}` of `GatewayStaticAddresses`.
pub(crate) const UNUSABLE_ADDRESS: &str = "192.0.2.1";

/// `(kind, namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub(crate) type Key = (String, String, String);

fn cluster_scoped(kind: &str) -> bool {
    matches!(kind, "GatewayClass" | "Namespace")
}

/// The key of an object (namespace `default` when it has none).
pub(crate) fn key_of(v: &Value) -> Key {
    let kind = v["kind"].as_str().unwrap_or("").to_owned();
    let ns = if cluster_scoped(&kind) {
        String::new()
    } else {
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned()
    };
    let name = v["metadata"]["name"].as_str().unwrap_or("").to_owned();
    (kind, ns, name)
}

/// The key a case's object reference names (namespace `default` when it has none).
pub(crate) fn ref_key(o: &ObjectRef) -> Key {
    let ns = if cluster_scoped(&o.kind) {
        String::new()
    } else {
        o.namespace.clone().unwrap_or_else(|| "default".into())
    };
    (o.kind.clone(), ns, o.name.clone())
}

/// The applier's rewrites (SCHEMA.md 2.3): the GatewayClass under test, its controller name,
/// and the static address pools of a Gateway's `spec.addresses`.
pub(crate) fn rewrite(v: &mut Value) {
    match v["kind"].as_str() {
        Some("Gateway") => {
            v["spec"]["gatewayClassName"] = json!(CLASS);
            if let Some(addrs) = v["spec"]["addresses"].as_array().cloned() {
                let has = |p: &str| addrs.iter().any(|a| a["value"] == p);
                let mut out: Vec<Value> = addrs
                    .iter()
                    .filter(|a| a["type"] == "test/fake-invalid-type")
                    .cloned()
                    .collect();
                if has("PLACEHOLDER_UNUSABLE_ADDRS") {
                    out.push(json!({"type": "IPAddress", "value": UNUSABLE_ADDRESS}));
                }
                if has("PLACEHOLDER_USABLE_ADDRS") {
                    out.push(json!({"type": "IPAddress", "value": USABLE_ADDRESS}));
                }
                if has("PLACEHOLDER_USABLE_ADDRS")
                    || has("PLACEHOLDER_UNUSABLE_ADDRS")
                    || !out.is_empty()
                {
                    v["spec"]["addresses"] = json!(out);
                }
            }
        }
        Some("GatewayClass") => v["spec"]["controllerName"] = json!(loom_core::CONTROLLER_NAME),
        _ => {}
    }
}

/// What a change of bumps `generation`: everything but `metadata` and `status`.
fn spec_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

/// RFC 3339 (UTC, seconds) of `secs` since the Unix epoch.
pub(crate) fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil from days (Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The objects of the fake cluster and its clock (seconds since 2026-01-01T00:00:00Z).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cluster {
    objects: BTreeMap<Key, Value>,
    clock: i64,
}

impl Cluster {
    /// Advances the clock.
    pub(crate) fn tick(&mut self, secs: i64) {
        self.clock += secs;
    }

    fn timestamp(&self) -> String {
        rfc3339(1_767_225_600 + self.clock)
    }

    /// Creates or updates an object, one second after the previous change: a new object gets
    /// generation 1 and the current time; an update keeps the creation time and bumps the
    /// generation when anything but metadata and status changed.
    pub(crate) fn apply(&mut self, mut v: Value) {
        rewrite(&mut v);
        let key = key_of(&v);
        self.tick(1);
        match self.objects.get(&key) {
            Some(old) => {
                let mut generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if spec_of(old) != spec_of(&v) {
                    generation += 1;
                }
                v["metadata"]["generation"] = json!(generation);
                v["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            }
            None => {
                v["metadata"]["generation"] = json!(1);
                v["metadata"]["creationTimestamp"] = json!(self.timestamp());
            }
        }
        self.objects.insert(key, v);
    }

    /// Merge-patches an existing object; a missing object is left missing.
    pub(crate) fn patch(&mut self, key: &Key, patch: &Value) {
        let Some(mut v) = self.objects.get(key).cloned() else {
            return;
        };
        merge_patch(&mut v, patch);
        self.apply(v);
    }

    /// Deletes an object.
    pub(crate) fn delete(&mut self, key: &Key) {
        self.objects.remove(key);
    }

    /// An object.
    pub(crate) fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// The objects of a kind in a namespace, by name.
    pub(crate) fn of_kind<'a>(
        &'a self,
        kind: &'a str,
        ns: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects
            .iter()
            .filter(move |(k, _)| k.0 == kind && k.1 == ns)
    }

    /// `metadata.generation` (0 for a missing object).
    pub(crate) fn generation(&self, key: &Key) -> i64 {
        self.objects
            .get(key)
            .and_then(|v| v["metadata"]["generation"].as_i64())
            .unwrap_or(0)
    }

    /// The objects as compiler input, and the objects that did not deserialize.
    pub(crate) fn input(&self) -> (Input, Vec<String>) {
        let mut objects = vec![];
        let mut errors = vec![];
        for v in self.objects.values() {
            let (Some(api), Some(kind)) = (v["apiVersion"].as_str(), v["kind"].as_str()) else {
                continue;
            };
            let Some(kind) = Kind::from_api(api, kind) else {
                continue;
            };
            match loom_core::load::from_value(kind, v.clone()) {
                Ok(o) => objects.push(o),
                Err(e) => errors.push(format!(
                    "{}/{}: {e}",
                    v["metadata"]["namespace"].as_str().unwrap_or(""),
                    v["metadata"]["name"]
                )),
            }
        }
        (Input::from_objects(objects), errors)
    }

    /// `populate_endpoint_slices`: one endpoint per pod IP of the slice's address family; a
    /// slice that would get none is left unchanged.
    pub(crate) fn populate_endpoint_slices(&mut self, pods: &SourcePods, slices: &[String]) {
        let ns = &pods.namespace;
        let replicas = self
            .objects
            .get(&("Deployment".into(), ns.clone(), pods.deployment.clone()))
            .map_or(1, replicas);
        let ips = pod_ips(&pods.deployment, replicas);
        for slice in slices {
            let key = ("EndpointSlice".to_owned(), ns.clone(), slice.clone());
            let Some(mut v) = self.objects.get(&key).cloned() else {
                continue;
            };
            let v6 = v["addressType"] == "IPv6";
            let endpoints: Vec<Value> = ips
                .iter()
                .filter(|ip| ip.contains(':') == v6)
                .map(
                    |ip| json!({"addresses": [ip], "conditions": {"ready": true, "serving": true}}),
                )
                .collect();
            if !endpoints.is_empty() {
                v["endpoints"] = json!(endpoints);
                self.apply(v);
            }
        }
    }
}

/// A Deployment's `spec.replicas` (default 1).
pub(crate) fn replicas(deployment: &Value) -> u64 {
    deployment["spec"]["replicas"].as_u64().unwrap_or(1)
}

/// The pod IPs the runner pretends a Deployment's pods have: one IPv4 and one IPv6 address per
/// replica, derived from the Deployment's name.
pub(crate) fn pod_ips(deployment: &str, replicas: u64) -> Vec<String> {
    let h = deployment
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 250;
    (0..replicas)
        .flat_map(|i| {
            [
                format!("10.244.{h}.{}", i + 2),
                format!("fd00:10:244:{h}::{:x}", i + 2),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(ns: Option<&str>) -> Value {
        let mut v = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r"}, "spec": {"rules": []}});
        if let Some(ns) = ns {
            v["metadata"]["namespace"] = json!(ns);
        }
        v
    }

    #[test]
    fn key_of_defaults_the_namespace() {
        assert_eq!(
            key_of(&route(None)),
            ("HTTPRoute".into(), "default".into(), "r".into())
        );
        assert_eq!(
            key_of(&route(Some("x"))),
            ("HTTPRoute".into(), "x".into(), "r".into())
        );
    }

    #[test]
    fn key_of_a_cluster_scoped_kind_has_no_namespace() {
        let v = json!({"kind": "GatewayClass", "metadata": {"name": "c", "namespace": "x"}});
        assert_eq!(
            key_of(&v),
            ("GatewayClass".into(), String::new(), "c".into())
        );
        let v = json!({"kind": "Namespace", "metadata": {"name": "n"}});
        assert_eq!(key_of(&v), ("Namespace".into(), String::new(), "n".into()));
    }

    #[test]
    fn ref_key_agrees_with_key_of() {
        let o = ObjectRef {
            kind: "HTTPRoute".into(),
            namespace: None,
            name: "r".into(),
            api_version: None,
        };
        assert_eq!(ref_key(&o), key_of(&route(None)));
        let o = ObjectRef {
            kind: "GatewayClass".into(),
            namespace: Some("ignored".into()),
            name: "c".into(),
            api_version: None,
        };
        assert_eq!(
            ref_key(&o),
            ("GatewayClass".into(), String::new(), "c".into())
        );
    }

    #[test]
    fn rewrite_sets_the_class_of_a_gateway() {
        let mut v =
            json!({"kind": "Gateway", "spec": {"gatewayClassName": "{GATEWAY_CLASS_NAME}"}});
        rewrite(&mut v);
        assert_eq!(v["spec"]["gatewayClassName"], CLASS);
    }

    #[test]
    fn rewrite_sets_the_controller_name_of_a_gateway_class() {
        let mut v = json!({"kind": "GatewayClass",
            "spec": {"controllerName": "{GATEWAY_CONTROLLER_NAME}"}});
        rewrite(&mut v);
        assert_eq!(v["spec"]["controllerName"], loom_core::CONTROLLER_NAME);
    }

    #[test]
    fn rewrite_replaces_address_placeholders_with_the_pools() {
        let mut v = json!({"kind": "Gateway", "spec": {"addresses": [
            {"value": "PLACEHOLDER_USABLE_ADDRS"},
            {"type": "test/fake-invalid-type", "value": "1.2.3.4"},
            {"type": "IPAddress", "value": "PLACEHOLDER_UNUSABLE_ADDRS"},
            {"type": "IPAddress", "value": "10.0.0.1"},
        ]}});
        rewrite(&mut v);
        assert_eq!(
            v["spec"]["addresses"],
            json!([
                {"type": "test/fake-invalid-type", "value": "1.2.3.4"},
                {"type": "IPAddress", "value": UNUSABLE_ADDRESS},
                {"type": "IPAddress", "value": USABLE_ADDRESS},
            ])
        );
    }

    #[test]
    fn rewrite_keeps_addresses_without_placeholders_or_fake_types() {
        let addrs = json!([{"type": "IPAddress", "value": "10.0.0.1"}]);
        let mut v = json!({"kind": "Gateway", "spec": {"addresses": addrs.clone()}});
        rewrite(&mut v);
        assert_eq!(v["spec"]["addresses"], addrs);
    }

    #[test]
    fn rewrite_leaves_other_kinds_alone() {
        let mut v = route(Some("x"));
        let before = v.clone();
        rewrite(&mut v);
        assert_eq!(v, before);
    }

    #[test]
    fn apply_stamps_generation_one_and_the_creation_time() {
        let mut c = Cluster::default();
        c.apply(route(Some("x")));
        let v = c.get(&key_of(&route(Some("x")))).unwrap();
        assert_eq!(v["metadata"]["generation"], 1);
        assert_eq!(v["metadata"]["creationTimestamp"], "2026-01-01T00:00:01Z");
    }

    #[test]
    fn apply_bumps_the_generation_only_when_the_spec_changes() {
        let mut c = Cluster::default();
        let key = key_of(&route(Some("x")));
        c.apply(route(Some("x")));
        let mut labelled = route(Some("x"));
        labelled["metadata"]["labels"] = json!({"a": "b"});
        c.apply(labelled);
        assert_eq!(c.generation(&key), 1);
        let mut changed = route(Some("x"));
        changed["spec"]["hostnames"] = json!(["a.example"]);
        c.apply(changed);
        assert_eq!(c.generation(&key), 2);
        let v = c.get(&key).unwrap();
        assert_eq!(v["metadata"]["creationTimestamp"], "2026-01-01T00:00:01Z");
    }

    #[test]
    fn patch_of_a_missing_object_creates_nothing() {
        let mut c = Cluster::default();
        let key = key_of(&route(Some("x")));
        c.patch(&key, &json!({"spec": {"a": 1}}));
        assert!(c.get(&key).is_none());
    }

    #[test]
    fn patch_merges_and_bumps_the_generation() {
        let mut c = Cluster::default();
        let key = key_of(&route(Some("x")));
        c.apply(route(Some("x")));
        c.patch(&key, &json!({"spec": {"hostnames": ["a.example"]}}));
        assert_eq!(c.generation(&key), 2);
        assert_eq!(c.get(&key).unwrap()["spec"]["rules"], json!([]));
    }

    #[test]
    fn generation_of_a_missing_object_is_zero() {
        assert_eq!(Cluster::default().generation(&key_of(&route(None))), 0);
    }

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_723), "2000-02-29T01:02:03Z");
    }

    #[test]
    fn pod_ips_gives_one_v4_and_one_v6_address_per_replica() {
        let ips = pod_ips("infra-backend-v1", 2);
        assert_eq!(ips.len(), 4);
        assert_eq!(ips.iter().filter(|ip| ip.contains(':')).count(), 2);
        assert_eq!(ips, pod_ips("infra-backend-v1", 2));
    }

    #[test]
    fn populate_endpoint_slices_fills_each_slice_with_its_family() {
        let mut c = Cluster::default();
        for (name, family) in [("s-ip4", "IPv4"), ("s-ip6", "IPv6")] {
            c.apply(
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": "ns"}, "addressType": family}),
            );
        }
        let pods = SourcePods {
            namespace: "ns".into(),
            deployment: "d".into(),
        };
        c.populate_endpoint_slices(&pods, &["s-ip4".into(), "s-ip6".into(), "absent".into()]);
        let addr = |slice: &str| {
            c.get(&("EndpointSlice".into(), "ns".into(), slice.into()))
                .unwrap()["endpoints"][0]["addresses"][0]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(!addr("s-ip4").contains(':'));
        assert!(addr("s-ip6").contains(':'));
    }
}
