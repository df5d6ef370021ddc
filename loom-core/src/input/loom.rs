//! Loom's own kinds (`gateway.loom.dev/v1alpha1`). They are parsed, validated and attached to
//! their targets with status here; their runtime behaviour lives in the data plane.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ObjectMeta;

/// `GatewayClassConfig`: how Loom provisions data-plane pods for a GatewayClass or Gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClassConfig {
    pub metadata: ObjectMeta,
    pub spec: GatewayClassConfigSpec,
}

/// `GatewayClassConfig.spec`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClassConfigSpec {
    /// Data-plane replicas (default 1).
    pub replicas: Option<i32>,
    /// Container resources, as in a Pod spec.
    #[cfg_attr(feature = "schema", schemars(schema_with = "any_object"))]
    pub resources: Option<serde_json::Value>,
    /// The Service type of the data plane (default `LoadBalancer`).
    pub service_type: Option<String>,
    /// Extra labels for provisioned objects.
    pub labels: BTreeMap<String, String>,
}

/// Which object a Loom policy applies to.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyTarget {
    pub group: String,
    /// Kind: `Gateway`, `HTTPRoute`, `GRPCRoute` or `Service`.
    pub kind: String,
    /// Name (in the policy's namespace).
    pub name: String,
    /// Optional listener or rule name.
    pub section_name: Option<String>,
}

/// `RateLimitPolicy`: local token-bucket limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitPolicy {
    pub metadata: ObjectMeta,
    pub spec: RateLimitPolicySpec,
}

/// `RateLimitPolicy.spec`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitPolicySpec {
    pub target_refs: Vec<PolicyTarget>,
    /// Requests allowed per `unit`.
    pub requests: i64,
    /// `Second`, `Minute` or `Hour`.
    pub unit: String,
    /// Extra requests allowed in a burst.
    pub burst: Option<i64>,
    /// Count per value of this request header instead of per target.
    pub key_header: Option<String>,
}

/// `CircuitBreakerPolicy`: limits towards a backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CircuitBreakerPolicy {
    pub metadata: ObjectMeta,
    pub spec: CircuitBreakerPolicySpec,
}

/// `CircuitBreakerPolicy.spec`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CircuitBreakerPolicySpec {
    /// Targets (Services or Loom Backends).
    pub target_refs: Vec<PolicyTarget>,
    /// Concurrent connections allowed.
    pub max_connections: Option<i64>,
    /// Concurrent requests allowed.
    pub max_pending_requests: Option<i64>,
    /// Consecutive 5xx before an endpoint is ejected.
    pub consecutive_errors: Option<i64>,
    /// How long an ejected endpoint stays out (Gateway API duration).
    pub ejection_time: Option<String>,
}

/// `WASMPlugin`: a WebAssembly filter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WasmPlugin {
    pub metadata: ObjectMeta,
    pub spec: WasmPluginSpec,
}

/// `WASMPlugin.spec`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WasmPluginSpec {
    pub target_refs: Vec<PolicyTarget>,
    /// Where the module is: a file path or an OCI/HTTP URL.
    pub url: String,
    /// Expected sha256 of the module.
    pub sha256: Option<String>,
    /// Configuration handed to the plugin.
    #[cfg_attr(feature = "schema", schemars(schema_with = "any_object"))]
    pub config: Option<serde_json::Value>,
    /// `Request` (default) or `Response`.
    pub phase: Option<String>,
}

/// `Backend`: static endpoints, for running without Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Backend {
    pub metadata: ObjectMeta,
    pub spec: BackendSpec,
}

/// `Backend.spec`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BackendSpec {
    /// `host:port` endpoints (`127.0.0.1:8080`, `[::1]:8080`, `echo.local:80`).
    pub endpoints: Vec<String>,
    /// `http` (default), `h2c`, `https`, `ws`, `tcp`, `udp`.
    pub protocol: Option<String>,
}

/// An object whose fields the API server keeps as they are (a CRD schema has to say so).
#[cfg(feature = "schema")]
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
