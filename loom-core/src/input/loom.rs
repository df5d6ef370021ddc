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
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GatewayClassConfigSpec {
    /// The data-plane Deployment: replicas and container resources.
    pub deployment: Option<DeploymentConfig>,
    /// Data-plane replicas (default 1); `deployment.replicas` wins.
    pub replicas: Option<i32>,
    /// Container resources, as in a Pod spec; `deployment.resources` wins.
    #[cfg_attr(feature = "schema", schemars(schema_with = "any_object"))]
    pub resources: Option<serde_json::Value>,
    /// The Service type of the data plane (default `LoadBalancer`).
    pub service_type: Option<String>,
    /// Extra labels for provisioned objects.
    pub labels: BTreeMap<String, String>,
    /// HTTP/3: with `enabled: true` every HTTPS listener of the Gateways this configures also
    /// serves HTTP/3 (QUIC) on UDP at its port.
    pub http3: Option<Http3Config>,
    /// WASMPlugins on the Gateways this configures.
    pub plugins: Option<PluginsConfig>,
}

/// `GatewayClassConfig.spec.plugins`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Run WASMPlugins on these Gateways (default true); `false` turns them off, and plugins
    /// that target them report `Accepted=False`, reason `Disabled`.
    pub enabled: Option<bool>,
    /// The engine. Loom has one (extism on wasmtime); `extism`, `wasmtime` and, for manifests
    /// written for other gateways, `wazero` and `v8` all name it, and the plugin's status says
    /// which engine runs it.
    pub runtime: Option<String>,
}

/// `GatewayClassConfig.spec.deployment`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Data-plane replicas (default 1).
    pub replicas: Option<i32>,
    /// Container resources, as in a Pod spec.
    #[cfg_attr(feature = "schema", schemars(schema_with = "any_object"))]
    pub resources: Option<serde_json::Value>,
}

/// `GatewayClassConfig.spec.http3`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Http3Config {
    /// Serve HTTP/3 beside HTTPS (default false).
    pub enabled: Option<bool>,
}

/// Which object a Loom policy applies to (Gateway API's
/// `LocalPolicyTargetReferenceWithSectionName`: in the policy's namespace).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PolicyTarget {
    /// `gateway.networking.k8s.io`, `""` (core) or `gateway.loom.dev`.
    pub group: String,
    /// Kind: `Gateway`, `HTTPRoute`, `GRPCRoute`, `Service` or `Backend`.
    pub kind: String,
    /// Name (in the policy's namespace).
    pub name: String,
    /// A listener of a Gateway, a named rule of a route, or a port name of a Service.
    pub section_name: Option<String>,
}

/// The targets of a policy: `targetRef` (one) and `targetRefs` (a list, as Gateway API
/// policies write it) together.
fn targets<'a>(
    one: &'a Option<PolicyTarget>,
    many: &'a [PolicyTarget],
) -> impl Iterator<Item = &'a PolicyTarget> {
    one.iter().chain(many)
}

/// `RateLimitPolicy`: token-bucket limits on the requests of routes and Gateways.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitPolicy {
    pub metadata: ObjectMeta,
    pub spec: RateLimitPolicySpec,
}

/// `RateLimitPolicy.spec`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RateLimitPolicySpec {
    /// The one target (HTTPRoute, GRPCRoute or Gateway).
    pub target_ref: Option<PolicyTarget>,
    /// Targets, as Gateway API policies list them.
    pub target_refs: Vec<PolicyTarget>,
    /// The limit for requests no rule matches; without it, such requests are not limited.
    pub default: Option<RateLimitValue>,
    /// Limits for some requests: the first rule that matches a request counts it, in its own
    /// bucket, instead of `default`.
    pub rules: Vec<RateLimitRule>,
    /// Count each client separately instead of all requests together.
    pub key: Option<RateLimitKey>,
    /// Share the limit across every replica through Redis instead of counting per replica.
    pub global: Option<GlobalRateLimit>,
    /// Which responses carry the `RateLimit-Policy` and `RateLimit` headers: `OnLimit`
    /// (default: only the 429 answers, beside `Retry-After`) or `Always` (every response of a
    /// counted request).
    pub headers: Option<String>,
}

impl RateLimitPolicySpec {
    /// `targetRef` and `targetRefs` together.
    pub fn targets(&self) -> impl Iterator<Item = &PolicyTarget> {
        targets(&self.target_ref, &self.target_refs)
    }
}

/// A token bucket: `requestsPerSecond` refill, `burst` capacity.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RateLimitValue {
    /// Requests per second, sustained (at least 1).
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub requests_per_second: u32,
    /// Requests allowed at once (default: `requestsPerSecond`).
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub burst: Option<u32>,
}

/// `RateLimitPolicy.spec.rules[]`: a limit for the requests that match.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RateLimitRule {
    /// HTTPRoute matches (path, headers, queryParams, method); any of them selects a request.
    pub matches: Vec<super::HttpRouteMatch>,
    /// Requests per second, sustained (at least 1).
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub requests_per_second: u32,
    /// Requests allowed at once (default: this rule's `requestsPerSecond`).
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub burst: Option<u32>,
}

/// `RateLimitPolicy.spec.key`: what makes two requests the same client.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RateLimitKey {
    /// `ClientAddress` (the client's IP address) or `Header` (the value of `header`).
    #[serde(rename = "type")]
    pub type_: String,
    /// The request header whose value is the key, with `type: Header`.
    pub header: Option<String>,
    /// Clients tracked at once per bucket (default 100000); the least recently seen is
    /// forgotten first.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub max_keys: Option<u32>,
}

/// `RateLimitPolicy.spec.global`: one limit for every replica, kept in Redis.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GlobalRateLimit {
    /// When Redis cannot be reached: `true` (default) lets requests through, `false`
    /// answers them 503.
    pub fail_open: Option<bool>,
}

/// `CircuitBreakerPolicy`: outlier detection and concurrency limits towards a backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CircuitBreakerPolicy {
    pub metadata: ObjectMeta,
    pub spec: CircuitBreakerPolicySpec,
}

/// `CircuitBreakerPolicy.spec`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CircuitBreakerPolicySpec {
    /// The one target (a Service, optionally one port by `sectionName`, or a Loom Backend).
    pub target_ref: Option<PolicyTarget>,
    /// Targets, as Gateway API policies list them.
    pub target_refs: Vec<PolicyTarget>,
    /// Failures in a row (5xx responses, connect failures, timeouts) that eject an endpoint
    /// (default 5).
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub consecutive_5xx_errors: Option<u32>,
    /// How often ejections are reviewed: endpoints whose time is up return, and the
    /// ejection count of endpoints that stayed healthy decays (default `10s`).
    pub interval: Option<String>,
    /// An endpoint ejected for the n-th time stays out `baseEjectionTime × n` (default `30s`).
    pub base_ejection_time: Option<String>,
    /// The longest ejection (default `300s`).
    pub max_ejection_time: Option<String>,
    /// The most of a backend's endpoints ejected at once, in percent (default 10; at least
    /// one endpoint may always be ejected).
    #[cfg_attr(feature = "schema", schemars(range(max = 100)))]
    pub max_ejection_percent: Option<u32>,
    /// Connections to the backend in use at once, per replica.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection when `maxConnections` are in use, per replica.
    pub max_pending_requests: Option<u32>,
    /// Requests to the backend in flight at once, per replica.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub max_requests: Option<u32>,
}

impl CircuitBreakerPolicySpec {
    /// `targetRef` and `targetRefs` together.
    pub fn targets(&self) -> impl Iterator<Item = &PolicyTarget> {
        targets(&self.target_ref, &self.target_refs)
    }
}

/// `ClientTrafficPolicy`: what a client connection to a Gateway's port may hold, instead of
/// the data plane's defaults (`loom serve` flags).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientTrafficPolicy {
    pub metadata: ObjectMeta,
    pub spec: ClientTrafficPolicySpec,
}

/// `ClientTrafficPolicy.spec`. Limits apply per port (a connection is accepted before its
/// Host is known): a listener's policy (`sectionName`) sets them for the listener's port, a
/// Gateway's for its other ports. A field left out keeps the data plane's default.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ClientTrafficPolicySpec {
    /// The one target: a Gateway, or one of its listeners by `sectionName`.
    pub target_ref: Option<PolicyTarget>,
    /// Targets, as Gateway API policies list them.
    pub target_refs: Vec<PolicyTarget>,
    /// Time a client has to send a whole HTTP/1 request head, counted from its first byte
    /// (for a connection's first request, from accept), e.g. `10s`.
    pub header_timeout: Option<String>,
    /// Time a keep-alive connection stays open idle (HTTP/1 between requests, HTTP/2 with no
    /// open stream); at least `1s`.
    pub idle_timeout: Option<String>,
    /// Connections one listening socket of the port holds at most; more are closed as they
    /// are accepted.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub max_connections: Option<u32>,
}

impl ClientTrafficPolicySpec {
    /// `targetRef` and `targetRefs` together.
    pub fn targets(&self) -> impl Iterator<Item = &PolicyTarget> {
        targets(&self.target_ref, &self.target_refs)
    }
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
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct WasmPluginSpec {
    /// The one target: an HTTPRoute or GRPCRoute (`sectionName`: one named rule) or a
    /// Gateway (every route on it; `sectionName`: one listener).
    pub target_ref: Option<PolicyTarget>,
    /// Targets, as Gateway API policies list them.
    pub target_refs: Vec<PolicyTarget>,
    /// Where the module is: `file:///path`, a bare path (relative to the working directory),
    /// `https://…` (or `http://…`), or `oci://registry/repository:tag` (or `@sha256:…`).
    pub url: String,
    /// The module's sha256 (64 hex digits); a module with another digest is refused.
    pub sha256: Option<String>,
    /// `IfNotPresent` (default; a `:latest` tag means `Always`) or `Always`: fetch again on
    /// every change of the plugin and every restart instead of using the local cache.
    pub image_pull_policy: Option<String>,
    /// A Secret in the plugin's namespace holding registry credentials
    /// (`kubernetes.io/dockerconfigjson`) for a private OCI registry.
    pub image_pull_secret: Option<String>,
    /// The JSON object handed to the plugin (its top-level keys, and the whole object as
    /// `loom.config`).
    #[cfg_attr(feature = "schema", schemars(schema_with = "any_object"))]
    pub config: Option<serde_json::Value>,
    /// `AUTHN`, `AUTHZ`, `STATS` or `UNSPECIFIED_PHASE` (default): AUTHN and AUTHZ run before
    /// the route's filters, unspecified after them, STATS after the backend answers.
    pub phase: Option<String>,
    /// Order within a phase: highest first (default 0; ties by namespace/name).
    pub priority: Option<i32>,
    /// `FailClose` (default: a plugin that fails, or is not loaded, answers 500/503) or
    /// `FailOpen` (the request goes on as if the plugin were not there).
    pub fail_strategy: Option<String>,
    /// Time one call of the plugin may take (default `5ms`; at most `1s`).
    pub timeout: Option<String>,
    /// Linear memory one instance may use (default `64Mi`; `Ki`, `Mi`, `Gi` or bytes).
    pub memory_limit: Option<String>,
}

impl WasmPluginSpec {
    /// `targetRef` and `targetRefs` together.
    pub fn targets(&self) -> impl Iterator<Item = &PolicyTarget> {
        targets(&self.target_ref, &self.target_refs)
    }
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
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
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
