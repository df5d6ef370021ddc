//! The core Kubernetes objects the compiler reads: Namespace, Service, EndpointSlice, Secret,
//! ConfigMap. Only the fields that matter for routing are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::ObjectMeta;

/// `Namespace` (only its labels matter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Namespace {
    pub metadata: ObjectMeta,
}

/// `Service`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    /// Status (the load balancer's addresses, for Services Loom provisions).
    pub status: ServiceStatus,
}

/// `Service.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceStatus {
    /// `status.loadBalancer`.
    pub load_balancer: LoadBalancerStatus,
}

/// `Service.status.loadBalancer`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerStatus {
    /// Where the load balancer takes traffic.
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One `status.loadBalancer.ingress` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerIngress {
    /// An IP address.
    pub ip: Option<String>,
    /// A DNS name.
    pub hostname: Option<String>,
}

/// `Service.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub ports: Vec<ServicePort>,
    /// Pod selector.
    pub selector: BTreeMap<String, String>,
    /// The cluster IP (`None` for headless).
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// For `ExternalName` services.
    pub external_name: Option<String>,
}

/// `ServicePort`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    pub name: Option<String>,
    /// `TCP` (default), `UDP`, `SCTP`.
    pub protocol: Option<String>,
    pub port: i32,
    /// Target port (number or name).
    pub target_port: Option<serde_json::Value>,
    /// `kubernetes.io/h2c`, `kubernetes.io/ws`, `kubernetes.io/wss`, ...
    pub app_protocol: Option<String>,
}

/// `EndpointSlice` (discovery.k8s.io/v1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlice {
    /// Metadata; the `kubernetes.io/service-name` label names the Service.
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

/// An EndpointSlice endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Endpoint {
    pub addresses: Vec<String>,
    pub conditions: EndpointConditions,
}

/// `EndpointConditions`; absent means ready.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

/// An EndpointSlice port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointPort {
    /// Matches the Service port name.
    pub name: Option<String>,
    /// The port on the endpoints.
    pub port: Option<i32>,
    pub protocol: Option<String>,
    /// App protocol.
    pub app_protocol: Option<String>,
}

/// `Secret`. `data` is base64 in YAML and raw bytes here; `stringData` is merged into it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub metadata: ObjectMeta,
    /// e.g. `kubernetes.io/tls`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Decoded data.
    #[serde(skip)]
    pub data: BTreeMap<String, Vec<u8>>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", default)]
        #[derive(Default)]
        struct Raw {
            metadata: ObjectMeta,
            #[serde(rename = "type")]
            type_: Option<String>,
            data: BTreeMap<String, String>,
            string_data: BTreeMap<String, String>,
        }
        let raw = Raw::deserialize(d)?;
        let mut data = BTreeMap::new();
        for (k, v) in raw.data {
            let cleaned: String = v.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(cleaned.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("data.{k}: invalid base64: {e}")))?;
            data.insert(k, bytes);
        }
        for (k, v) in raw.string_data {
            data.insert(k, v.into_bytes());
        }
        Ok(Secret {
            metadata: raw.metadata,
            type_: raw.type_,
            data,
        })
    }
}

/// `ConfigMap`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMap {
    pub metadata: ObjectMeta,
    pub data: BTreeMap<String, String>,
}
