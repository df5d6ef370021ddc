//! GatewayClass, Gateway and ListenerSet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LabelSelector, LocalObjectReference, ObjectMeta, ObjectReference, ParentReference};

/// `GatewayClass` (cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClass {
    pub metadata: ObjectMeta,
    pub spec: GatewayClassSpec,
}

/// `GatewayClass.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClassSpec {
    /// The controller that owns the class; Loom's is [`crate::CONTROLLER_NAME`].
    pub controller_name: String,
    /// Optional reference to a `GatewayClassConfig`.
    pub parameters_ref: Option<ParametersReference>,
    /// Free text.
    pub description: Option<String>,
}

/// `ParametersReference` (GatewayClass) — namespace is set for namespaced kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParametersReference {
    /// The group.
    pub group: String,
    /// The kind.
    pub kind: String,
    /// The name.
    pub name: String,
    /// The namespace, for namespaced kinds.
    pub namespace: Option<String>,
}

/// `Gateway`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Gateway {
    pub metadata: ObjectMeta,
    pub spec: GatewaySpec,
}

/// `Gateway.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    /// The class.
    pub gateway_class_name: String,
    pub listeners: Vec<Listener>,
    /// Requested addresses.
    pub addresses: Vec<GatewaySpecAddress>,
    /// Infrastructure labels/annotations and parameters.
    pub infrastructure: Option<GatewayInfrastructure>,
    /// Which ListenerSets may attach.
    pub allowed_listeners: Option<AllowedListeners>,
    /// Gateway-wide TLS: frontend client validation and the backend client certificate.
    pub tls: Option<GatewayTlsConfig>,
}

/// A `spec.addresses` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpecAddress {
    /// `IPAddress` (default), `Hostname`, `NamedAddress` or a domain-prefixed type.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The value; may be empty (GatewayAddressEmpty).
    pub value: Option<String>,
}

/// `spec.infrastructure`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayInfrastructure {
    /// Labels for generated resources.
    pub labels: BTreeMap<String, String>,
    /// Annotations for generated resources.
    pub annotations: BTreeMap<String, String>,
    /// A local reference to implementation parameters (a `GatewayClassConfig`).
    pub parameters_ref: Option<LocalObjectReference>,
}

/// `spec.allowedListeners`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AllowedListeners {
    /// Namespaces ListenerSets may come from.
    pub namespaces: Option<NamespacesFrom>,
}

/// `{from, selector}` as used by `allowedRoutes.namespaces` and `allowedListeners.namespaces`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NamespacesFrom {
    /// `All`, `Same`, `Selector` or `None`.
    pub from: Option<String>,
    /// Used with `Selector`.
    pub selector: Option<LabelSelector>,
}

impl NamespacesFrom {
    /// Whether `{from, selector}` admits an object from namespace `ns` to a parent in
    /// `parent_ns`. `default_from` is `from`'s default (`Same` for `allowedRoutes`, `None` for
    /// `allowedListeners`); `labels` gives `ns`'s labels for a selector.
    pub fn admits(
        this: Option<&NamespacesFrom>,
        default_from: &str,
        parent_ns: &str,
        ns: &str,
        labels: impl FnOnce() -> BTreeMap<String, String>,
    ) -> bool {
        match this.and_then(|f| f.from.as_deref()).unwrap_or(default_from) {
            "All" => true,
            "Same" => ns == parent_ns,
            "Selector" => this
                .and_then(|f| f.selector.as_ref())
                .is_some_and(|s| s.matches(&labels())),
            _ => false,
        }
    }
}

/// `spec.tls` of a Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayTlsConfig {
    /// TLS towards backends.
    pub backend: Option<GatewayBackendTls>,
    /// Client certificate validation on HTTPS listeners.
    pub frontend: Option<FrontendTlsConfig>,
}

/// `spec.tls.backend`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayBackendTls {
    /// The client certificate the Gateway presents to TLS backends.
    pub client_certificate_ref: Option<ObjectReference>,
}

/// `spec.tls.frontend`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FrontendTlsConfig {
    /// Applies to every HTTPS listener without a per-port entry.
    pub default: Option<TlsConfig>,
    /// Per-port overrides.
    pub per_port: Vec<TlsPortConfig>,
}

/// A `perPort` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsPortConfig {
    /// The port.
    pub port: i32,
    /// Its TLS settings.
    pub tls: TlsConfig,
}

/// `TLSConfig` (frontend).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsConfig {
    /// Client certificate validation.
    pub validation: Option<FrontendTlsValidation>,
}

/// `FrontendTLSValidation`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FrontendTlsValidation {
    /// CA bundles (ConfigMaps with `ca.crt`, or Secrets).
    pub ca_certificate_refs: Vec<ObjectReference>,
    /// `AllowValidOnly` (default) or `AllowInsecureFallback`.
    pub mode: Option<String>,
}

/// A Gateway `Listener` (also a ListenerSet `ListenerEntry`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Listener {
    /// Unique within its Gateway or ListenerSet.
    pub name: String,
    /// Optional hostname (may be a `*.` wildcard).
    pub hostname: Option<String>,
    /// The port.
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP` or a domain-prefixed protocol.
    pub protocol: String,
    /// TLS settings.
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `GatewayTLSConfig` of a listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListenerTls {
    /// `Terminate` (default) or `Passthrough`.
    pub mode: Option<String>,
    /// Certificates (Secrets of type `kubernetes.io/tls`).
    pub certificate_refs: Vec<ObjectReference>,
    /// Implementation options.
    pub options: BTreeMap<String, String>,
}

/// `AllowedRoutes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AllowedRoutes {
    /// Namespaces routes may come from (default `Same`).
    pub namespaces: Option<NamespacesFrom>,
    /// Route kinds (default: every kind the protocol supports).
    pub kinds: Vec<RouteGroupKind>,
}

/// `RouteGroupKind`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteGroupKind {
    /// Defaults to `gateway.networking.k8s.io`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind.
    pub kind: String,
}

/// `ListenerSet` (experimental `XListenerSet`, standard from v1.5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListenerSet {
    pub metadata: ObjectMeta,
    pub spec: ListenerSetSpec,
}

/// `ListenerSet.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListenerSetSpec {
    /// The Gateway the listeners join.
    pub parent_ref: ParentReference,
    /// The listeners.
    pub listeners: Vec<Listener>,
}
