//! The case files (`cases/*.yaml`) as types: tests, steps, assertions, actions and request
//! cases (the corpus' `SCHEMA.md`, sections 1 to 9).
//!
//! Keys the schema does not define are errors. Kubernetes objects and patch bodies stay
//! [`serde_json::Value`]: they are schemaless data the runner merges and rewrites.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One upstream conformance test.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Upstream `ShortName`.
    pub name: String,
    /// Upstream `Description`.
    pub description: String,
    /// The Go file it was translated from.
    pub source: Source,
    /// Features the implementation must support for the test to run.
    pub features: Vec<String>,
    /// Files in `manifests/`, applied in this order.
    pub manifests: Vec<String>,
    /// Upstream `Provisional`.
    pub provisional: bool,
    /// Upstream `Parallel`.
    pub parallel: bool,
    /// The test returns early (passes) if all these features are supported.
    #[serde(default)]
    pub skip_if: Option<FeatureGate>,
    /// The test returns early (passes) unless all these features are supported.
    #[serde(default)]
    pub run_only_if: Option<FeatureGate>,
    /// Inputs the suite supplies (placeholder keys).
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// Executed in order.
    pub steps: Vec<Step>,
    /// Free text.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Where a case comes from upstream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Go file relative to the upstream repository root.
    pub file: String,
    /// Upstream tag.
    pub tag: String,
    /// Upstream commit.
    pub commit: String,
}

/// `skip_if` / `run_only_if`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureGate {
    /// The features.
    pub supported_features: Vec<String>,
    /// Why.
    #[serde(default)]
    pub note: String,
}

/// One step: `before` → `actions` → `status` → `requests` → `weighted` → `websocket` →
/// `backend_header_consistency`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Upstream subtest name or a label.
    #[serde(default)]
    pub name: Option<String>,
    /// Runs concurrently with the next step upstream.
    #[serde(default)]
    pub parallel_with_next: bool,
    /// Checked before the actions.
    #[serde(default)]
    pub before: Vec<Assertion>,
    /// Mutations.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Checked after the actions.
    #[serde(default)]
    pub status: Vec<Assertion>,
    /// Traffic checks.
    #[serde(default)]
    pub requests: Vec<RequestCase>,
    /// Weight-distribution checks.
    #[serde(default)]
    pub weighted: Vec<Weighted>,
    /// WebSocket checks.
    #[serde(default)]
    pub websocket: Vec<WebSocket>,
    /// Repeated-request header/pod consistency checks.
    #[serde(default)]
    pub backend_header_consistency: Vec<BackendHeaderConsistency>,
}

// === Objects and conditions ===

/// `{kind, namespace?, name}`: an object of the fake cluster.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// Kind.
    pub kind: String,
    /// Absent for cluster-scoped objects.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// On some actions.
    #[serde(default)]
    pub api_version: Option<String>,
}

/// `{namespace, name}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamespacedName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// An expected condition: `status` is `"True"`, `"False"` or `any`; no `reason` = any reason.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `any`.
    pub status: String,
    /// Any reason when absent.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Condition {
    /// A condition of any reason.
    pub fn new(type_: &str, status: &str) -> Self {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: None,
        }
    }
}

/// `listeners: all` or a list of listener names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerSelection {
    /// Every listener in the status.
    All,
    /// These listeners, each of which must be present.
    Named(Vec<String>),
}

impl<'de> Deserialize<'de> for ListenerSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Keyword(String),
            Named(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Keyword(k) if k == "all" => Ok(ListenerSelection::All),
            Raw::Keyword(k) => Err(serde::de::Error::custom(format!(
                "listeners: expected `all` or a list of names, got {k:?}"
            ))),
            Raw::Named(names) => Ok(ListenerSelection::Named(names)),
        }
    }
}

/// An expected listener status.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// `[]` = the actual list must be empty; otherwise each must be present.
    pub supported_kinds: Vec<GroupKind>,
    /// Must be equal.
    pub attached_routes: i64,
    /// Subset match.
    pub conditions: Vec<Condition>,
}

/// `{group?, kind}`; no group = `gateway.networking.k8s.io`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupKind {
    /// API group.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}

/// An expected entry of a route's `status.parents`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteParent {
    /// The parent.
    pub parent_ref: ParentRef,
    /// `{GATEWAY_CONTROLLER_NAME}`.
    pub controller_name: String,
    /// Subset match.
    pub conditions: Vec<Condition>,
}

/// An expected parentRef.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentRef {
    /// Must be present and equal.
    pub group: String,
    /// Must be present and equal.
    pub kind: String,
    /// Compared as `namespace_required` says.
    pub namespace: String,
    /// Must be equal.
    pub name: String,
    /// Informational (not compared).
    #[serde(default)]
    pub section_name: Option<String>,
}

// === Assertions ===

/// A `before` or `status` assertion: the check, and fields common to every kind. (Unknown keys
/// reach the flattened [`Check`], whose variants reject them.)
#[derive(Clone, Debug, Deserialize)]
pub struct Assertion {
    /// What is checked (keyed by `assert`).
    #[serde(flatten)]
    pub check: Check,
    /// The object whose status is checked (every kind except `namespaces_ready`).
    #[serde(default)]
    pub object: Option<ObjectRef>,
    /// Upstream subtest name (informational).
    #[serde(default)]
    pub subtest: Option<String>,
    /// Upstream helper (informational).
    pub helper: String,
    /// The composite helper it was expanded from (informational).
    #[serde(default)]
    pub from: Option<String>,
    /// The rule in words, where the kind needs more than its fields.
    #[serde(default)]
    pub rule: Option<String>,
}

/// The assertion kinds (SCHEMA.md 4.2).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "assert", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// Every Gateway of these namespaces is Accepted and Programmed.
    NamespacesReady {
        /// The namespaces.
        namespaces: Vec<String>,
    },
    /// Conditions current and a typed status address.
    GatewayAddress {
        /// Informational: already resolved into the requests' ports.
        #[serde(default)]
        port_from_listener: Option<String>,
    },
    /// Gateway conditions current.
    GatewayLatestConditions {},
    /// Gateway conditions current and each listed condition found.
    GatewayConditions {
        /// The conditions.
        conditions: Vec<Condition>,
    },
    /// Exactly these listener statuses.
    GatewayListeners {
        /// The listeners.
        listeners: Vec<ListenerStatus>,
    },
    /// The selected listeners have all these conditions.
    ListenerConditions {
        /// Which listeners.
        listeners: ListenerSelection,
        /// The conditions.
        conditions: Vec<Condition>,
    },
    /// No listener, or one with no attached route.
    GatewayZeroRoutes {},
    /// `status.attachedListenerSets`.
    GatewayAttachedListenerSets {
        /// The count.
        count: i64,
    },
    /// `GatewayStaticAddresses`: the status addresses.
    GatewayStatusAddresses {
        /// `len(status.addresses)`.
        count: i64,
        /// Values that must be present.
        #[serde(default)]
        contains: Vec<String>,
        /// Values that must be absent.
        #[serde(default)]
        not_contains: Vec<String>,
        /// Address types by value (informational).
        #[serde(default)]
        type_of: BTreeMap<String, String>,
    },
    /// The number of spec addresses after the applier's rewrite.
    SpecAddressCount {
        /// The count.
        count: i64,
    },
    /// Generated infrastructure carries the Gateway's labels and annotations.
    InfrastructureMetadataPropagated {
        /// Selects the generated objects.
        label_selector: String,
        /// Where they are.
        namespace: String,
        /// Which kinds.
        resource_kinds: Vec<String>,
        /// Labels they must carry.
        labels_superset: BTreeMap<String, String>,
        /// Annotations they must carry.
        annotations_superset: BTreeMap<String, String>,
    },
    /// GatewayClass conditions current and each listed condition found.
    GatewayClassConditions {
        /// The conditions.
        conditions: Vec<Condition>,
    },
    /// GatewayClass conditions current.
    GatewayClassLatestConditions {},
    /// Each expected parent is among the route's `status.parents`.
    RouteParents {
        /// parentRef.namespace must be present and equal.
        namespace_required: bool,
        /// Every actual parent's conditions must be current.
        observed_generation_must_be_current: bool,
        /// The parents.
        parents: Vec<RouteParent>,
    },
    /// Some parent entry for `parent` has `condition`.
    RouteCondition {
        /// The parent.
        parent: NamespacedName,
        /// The condition.
        condition: Condition,
    },
    /// No parent accepted the route.
    RouteNoAcceptedParents {},
    /// Every parent's conditions are current.
    RouteLatestConditions {},
    /// ListenerSet conditions current and each listed condition found.
    ListenerSetConditions {
        /// The conditions.
        conditions: Vec<Condition>,
    },
    /// ListenerSet conditions current.
    ListenerSetLatestConditions {},
    /// Exactly these ListenerSet listener statuses.
    ListenerSetListeners {
        /// The listeners.
        listeners: Vec<ListenerStatus>,
    },
    /// The selected ListenerSet listeners have all these conditions.
    ListenerSetListenerConditions {
        /// Which listeners.
        listeners: ListenerSelection,
        /// The conditions.
        conditions: Vec<Condition>,
    },
    /// The policy's ancestor has `condition`.
    PolicyAncestorCondition {
        /// The ancestor.
        ancestor: NamespacedName,
        /// The condition.
        condition: Condition,
    },
    /// Every ancestor's conditions are current.
    PolicyLatestConditions {},
    /// Remember the object's generation.
    RecordGeneration {},
    /// The generation differs from the one remembered.
    GenerationChanged {},
}

impl Check {
    /// The `assert` key.
    pub fn name(&self) -> &'static str {
        match self {
            Check::NamespacesReady { .. } => "namespaces_ready",
            Check::GatewayAddress { .. } => "gateway_address",
            Check::GatewayLatestConditions {} => "gateway_latest_conditions",
            Check::GatewayConditions { .. } => "gateway_conditions",
            Check::GatewayListeners { .. } => "gateway_listeners",
            Check::ListenerConditions { .. } => "listener_conditions",
            Check::GatewayZeroRoutes {} => "gateway_zero_routes",
            Check::GatewayAttachedListenerSets { .. } => "gateway_attached_listener_sets",
            Check::GatewayStatusAddresses { .. } => "gateway_status_addresses",
            Check::SpecAddressCount { .. } => "spec_address_count",
            Check::InfrastructureMetadataPropagated { .. } => "infrastructure_metadata_propagated",
            Check::GatewayClassConditions { .. } => "gateway_class_conditions",
            Check::GatewayClassLatestConditions {} => "gateway_class_latest_conditions",
            Check::RouteParents { .. } => "route_parents",
            Check::RouteCondition { .. } => "route_condition",
            Check::RouteNoAcceptedParents {} => "route_no_accepted_parents",
            Check::RouteLatestConditions {} => "route_latest_conditions",
            Check::ListenerSetConditions { .. } => "listener_set_conditions",
            Check::ListenerSetLatestConditions {} => "listener_set_latest_conditions",
            Check::ListenerSetListeners { .. } => "listener_set_listeners",
            Check::ListenerSetListenerConditions { .. } => "listener_set_listener_conditions",
            Check::PolicyAncestorCondition { .. } => "policy_ancestor_condition",
            Check::PolicyLatestConditions {} => "policy_latest_conditions",
            Check::RecordGeneration {} => "record_generation",
            Check::GenerationChanged {} => "generation_changed",
        }
    }
}

// === Actions ===

/// A mutation (SCHEMA.md 5).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// An RFC 7386 merge patch of an existing object.
    Patch {
        /// The object.
        object: ObjectRef,
        /// Always `merge`.
        patch_type: PatchType,
        /// The patch body (may hold placeholders).
        patch: Value,
        /// What it does.
        #[serde(default)]
        description: Option<String>,
        /// Sleep this long first (a duration string).
        #[serde(default)]
        wait_before: Option<String>,
    },
    /// Create a complete object.
    Create {
        /// The object.
        object: ObjectRef,
        /// The object (may hold placeholders).
        manifest: Value,
        /// What it does.
        #[serde(default)]
        description: Option<String>,
        /// Sleep this long first (a duration string).
        #[serde(default)]
        wait_before: Option<String>,
    },
    /// Delete an object.
    Delete {
        /// The object.
        object: ObjectRef,
    },
    /// Fill EndpointSlices with the pod IPs of a Deployment.
    PopulateEndpointSlices {
        /// The Deployment whose pods are listed.
        source_pods: SourcePods,
        /// The slices.
        endpoint_slices: Vec<String>,
        /// The rule in words.
        rule: String,
    },
}

impl Action {
    /// `wait_before`, if any.
    pub fn wait_before(&self) -> Option<&str> {
        match self {
            Action::Patch { wait_before, .. } | Action::Create { wait_before, .. } => {
                wait_before.as_deref()
            }
            Action::Delete { .. } | Action::PopulateEndpointSlices { .. } => None,
        }
    }
}

/// `patch_type`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PatchType {
    /// RFC 7386 JSON merge patch.
    Merge,
}

/// `source_pods` of `populate_endpoint_slices`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePods {
    /// Namespace.
    pub namespace: String,
    /// Deployment name.
    pub deployment: String,
}

// === Requests ===

/// A traffic check (SCHEMA.md 6).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCase {
    /// Upstream subtest name.
    #[serde(default)]
    pub subtest: Option<String>,
    /// Upstream helper (informational).
    #[serde(default)]
    pub helper: Option<String>,
    /// How the request is driven.
    #[serde(default)]
    pub mode: Mode,
    /// Overrides the retry budget.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Where to send it.
    pub target: Target,
    /// What to send.
    pub request: Request,
    /// What must come back.
    pub expect: Expect,
    /// `mode: sample`: the number of exchanges.
    #[serde(default)]
    pub samples: Option<u32>,
    /// Percentage-mirror check after the case passed.
    #[serde(default)]
    pub mirror_distribution: Option<MirrorDistribution>,
}

/// `mode` (SCHEMA.md 6.2).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Must pass consistently.
    #[default]
    Consistent,
    /// Must consistently not be 200.
    Failure,
    /// The round trip must fail.
    RequestError,
    /// The TLS dial must be rejected.
    ConnectionRejected,
    /// Sequential sampled exchanges.
    Sample,
}

impl Mode {
    /// The key as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Consistent => "consistent",
            Mode::Failure => "failure",
            Mode::RequestError => "request_error",
            Mode::ConnectionRejected => "connection_rejected",
            Mode::Sample => "sample",
        }
    }
}

/// `target`: a Gateway's address and a port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The Gateway.
    pub gateway: NamespacedName,
    /// The listener the port was taken from (informational).
    #[serde(default)]
    pub listener: Option<String>,
    /// The port.
    pub port: u16,
}

/// `request.protocol`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Protocol {
    /// HTTP/1.1 cleartext.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/2 cleartext with prior knowledge.
    H2cPriorKnowledge,
    /// gRPC, plaintext HTTP/2.
    Grpc,
    /// The TCP line protocol over TLS.
    Tls,
    /// The TCP line protocol.
    Tcp,
    /// One UDP datagram.
    Udp,
    /// A DNS question over UDP.
    Dns,
}

impl Protocol {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::H2 => "H2",
            Protocol::H2cPriorKnowledge => "H2C_PRIOR_KNOWLEDGE",
            Protocol::Grpc => "GRPC",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Dns => "DNS",
        }
    }

    /// HTTP, HTTPS, H2 or H2C: requests the HTTP decision answers.
    pub fn is_http_family(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Https | Protocol::H2 | Protocol::H2cPriorKnowledge
        )
    }

    /// HTTPS or H2: HTTP over TLS from the client.
    pub fn is_https(self) -> bool {
        matches!(self, Protocol::Https | Protocol::H2)
    }
}

/// `request` (SCHEMA.md 7); `protocol` says which fields apply.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The protocol.
    pub protocol: Protocol,
    /// HTTP family: the method.
    #[serde(default)]
    pub method: Option<String>,
    /// HTTP family: the request target.
    #[serde(default)]
    pub path: Option<String>,
    /// HTTP family: Host / `:authority`; absent = the gateway address.
    #[serde(default)]
    pub host: Option<String>,
    /// HTTP family: extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP family: the body.
    #[serde(default)]
    pub body: Option<String>,
    /// HTTP family: do not follow 3xx.
    #[serde(default)]
    pub unfollow_redirects: bool,
    /// HTTPS, H2 and TLS: the client's TLS settings.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// HTTP family: response headers the echo backend adds.
    #[serde(default)]
    pub echo_set_response_headers: BTreeMap<String, String>,
    /// HTTP family: add a `gateway-api-conformance-request-id` query parameter.
    #[serde(default)]
    pub add_request_id: bool,
    /// HTTP family: `{uuid}` in the path is a new UUID per attempt.
    #[serde(default)]
    pub fresh_uuid_per_attempt: bool,
    /// GRPC: the echo method.
    #[serde(default)]
    pub rpc_method: Option<String>,
    /// GRPC: the gRPC path.
    #[serde(default)]
    pub full_method: Option<String>,
    /// GRPC: `:authority`.
    #[serde(default)]
    pub authority: Option<String>,
    /// GRPC: request metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// TLS and TCP: the line-protocol steps.
    #[serde(default)]
    pub dialogue: Vec<String>,
    /// TCP: only connect.
    #[serde(default)]
    pub connect_only: bool,
    /// TCP: deadline of one exchange.
    #[serde(default)]
    pub per_request_timeout: Option<String>,
    /// UDP: the datagram.
    #[serde(default)]
    pub payload: Option<String>,
    /// UDP: deadline for the reply.
    #[serde(default)]
    pub read_timeout: Option<String>,
    /// DNS: the question.
    #[serde(default)]
    pub query: Option<DnsQuery>,
}

/// The client side of TLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// SNI.
    pub server_name: String,
    /// The only trusted root; absent = system roots.
    #[serde(default)]
    pub trust: Option<KeyRef>,
    /// Presented if the server asks.
    #[serde(default)]
    pub client_certificate: Option<ClientCertificate>,
    /// Minimum TLS version.
    #[serde(default)]
    pub min_version: Option<String>,
}

/// A PEM under `key` of a Secret or ConfigMap.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Data key.
    pub key: String,
    /// The rule in words.
    #[serde(default)]
    pub rule: Option<String>,
}

/// A client certificate from a Secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// `Secret`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `[tls.crt, tls.key]`.
    pub keys: Vec<String>,
}

/// A DNS question.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsQuery {
    /// The name.
    pub name: String,
    /// The record type.
    #[serde(rename = "type")]
    pub type_: String,
}

/// `expect` (SCHEMA.md 8); `request.protocol` and `mode` say which fields apply.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// HTTP: acceptable status codes.
    #[serde(default)]
    pub status: Vec<u16>,
    /// HTTP `failure` mode: status codes that must not come back.
    #[serde(default)]
    pub not_status: Vec<u16>,
    /// Prefix of the answering pod's name.
    #[serde(default)]
    pub backend: Option<String>,
    /// The namespace the backend reports.
    #[serde(default)]
    pub namespace: Option<String>,
    /// HTTP: what the backend must have received.
    #[serde(default)]
    pub request_seen: Option<RequestSeen>,
    /// HTTP: response headers with exactly these values.
    #[serde(default)]
    pub response_headers: BTreeMap<String, String>,
    /// HTTP: response headers with one of these values.
    #[serde(default)]
    pub response_header_values: BTreeMap<String, Vec<String>>,
    /// HTTP: compare header values without spaces.
    #[serde(default)]
    pub ignore_whitespace: bool,
    /// HTTP: response headers that must not exist.
    #[serde(default)]
    pub absent_response_headers: Vec<String>,
    /// HTTP: the response protocol.
    #[serde(default)]
    pub protocol: Option<String>,
    /// HTTP: the redirect.
    #[serde(default)]
    pub redirect: Option<Redirect>,
    /// HTTP: mirror backends that must log the request.
    #[serde(default)]
    pub mirrored_to: Vec<NamespacedName>,
    /// HTTPS `request_error` mode.
    #[serde(default)]
    pub request_error: bool,
    /// HTTPS `request_error` mode: the server asked for a client certificate.
    #[serde(default)]
    pub client_certificate_requested: bool,
    /// GRPC: the status name.
    #[serde(default)]
    pub grpc_code: Option<String>,
    /// TLS/TCP: the backend terminated TLS.
    #[serde(default)]
    pub backend_is_tls: Option<bool>,
    /// TLS: the SNI the backend saw.
    #[serde(default)]
    pub backend_tls_server_name: Option<String>,
    /// TCP `connect_only`.
    #[serde(default)]
    pub connects: bool,
    /// TLS `connection_rejected` mode.
    #[serde(default)]
    pub connection_rejected: bool,
    /// UDP/DNS: any reply counts.
    #[serde(default)]
    pub any_response: bool,
    /// UDP: the service that answered.
    #[serde(default)]
    pub service: Option<String>,
    /// TCP `sample`: every pod name starts with this.
    #[serde(default)]
    pub every_pod_has_prefix: Option<String>,
    /// TCP `sample`: no pod name starts with this.
    #[serde(default)]
    pub no_pod_has_prefix: Option<String>,
    /// UDP `sample`: every answer comes from this backend.
    #[serde(default)]
    pub every_backend_name: Option<String>,
}

/// `expect.request_seen`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSeen {
    /// Compared only if given.
    #[serde(default)]
    pub host: Option<String>,
    /// Default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Always compared.
    #[serde(default)]
    pub path: Option<String>,
    /// Headers with these values (joined with `,`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers that must not exist.
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// The echoed `httpPort`.
    #[serde(default)]
    pub http_port: Option<String>,
    /// The SNI the backend received.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// A certificate the backend must have received.
    #[serde(default)]
    pub tls_client_certificate: Option<KeyRef>,
}

/// `expect.redirect`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// Absent = the request's scheme.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Absent = anything.
    #[serde(default)]
    pub host: Option<String>,
    /// Absent = the scheme's default or none.
    #[serde(default)]
    pub port: Option<String>,
    /// Absent = the request path.
    #[serde(default)]
    pub path: Option<String>,
}

/// `mirror_distribution` (SCHEMA.md 9.2).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorDistribution {
    /// The mirror.
    pub mirror_backend: NamespacedName,
    /// Percentage mirrored.
    pub percent: f64,
    /// Requests per attempt.
    pub requests: u32,
    /// In flight at most.
    pub concurrency: u32,
    /// Attempts.
    pub attempts: u32,
    /// Pause between attempts.
    pub sleep_between_attempts_s: u32,
    /// Tolerance in standard deviations.
    pub tolerance_stddevs: f64,
    /// Expected mirrored count.
    pub expected_mirrored: f64,
    /// Accepted count range.
    pub accept_range: [f64; 2],
    /// A new request id per attempt.
    pub per_attempt_request_id: bool,
}

// === Blocks that need a data plane ===

/// `weighted` (SCHEMA.md 9.1).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weighted {
    /// Upstream subtest name.
    pub subtest: String,
    /// Upstream helper.
    #[serde(default)]
    pub helper: Option<String>,
    /// Where to send.
    pub target: Target,
    /// What to send.
    pub request: Request,
    /// What each response must be.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Random header/metadata added to requests.
    #[serde(default)]
    pub entropy: Option<Entropy>,
    /// Requests per attempt.
    pub requests: u32,
    /// In flight at most.
    pub concurrency: u32,
    /// Allowed deviation from the weights.
    pub tolerance: f64,
    /// Attempts.
    pub max_attempts: u32,
    /// Expected share per backend.
    pub backends: BTreeMap<String, f64>,
}

/// `weighted.entropy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entropy {
    /// HTTP header name.
    #[serde(default)]
    pub header: Option<String>,
    /// gRPC metadata name.
    #[serde(default)]
    pub metadata: Option<String>,
    /// How often it is added.
    pub probability: f64,
    /// What the value is.
    pub value: String,
}

/// `websocket` (SCHEMA.md 9.3).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocket {
    /// Upstream subtest name.
    pub subtest: String,
    /// Where to dial.
    pub target: Target,
    /// The URL.
    pub url: String,
    /// Subprotocol (`''` = none).
    pub subprotocol: String,
    /// `Origin`.
    pub origin: String,
    /// Messages sent and expected back.
    pub exchanges: Vec<WebSocketExchange>,
    /// `eventually`.
    pub consistency: String,
}

/// One WebSocket message and its echo.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketExchange {
    /// A text frame.
    #[serde(default)]
    pub send_text: Option<String>,
    /// The text expected back.
    #[serde(default)]
    pub expect_text: Option<String>,
    /// A binary frame.
    #[serde(default)]
    pub send_binary: Option<Vec<u8>>,
    /// The bytes expected back.
    #[serde(default)]
    pub expect_binary: Option<Vec<u8>>,
}

/// `backend_header_consistency` (SCHEMA.md 9.4).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendHeaderConsistency {
    /// Where to send.
    pub target: Target,
    /// What to send.
    pub request: Request,
    /// How often.
    pub count: u32,
    /// The echoed header that names the pod.
    pub header: String,
    /// The rule in words.
    pub rule: String,
    /// Stop at the first mismatch.
    pub fail_fast: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(yaml: &str) -> Result<Assertion, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn an_assertion_is_keyed_by_its_kind() {
        let a = assertion(
            "assert: route_condition\nhelper: h\n\
             object: {kind: HTTPRoute, namespace: ns, name: r}\n\
             parent: {namespace: ns, name: gw}\n\
             condition: {type: ResolvedRefs, status: 'True', reason: ResolvedRefs}\n",
        )
        .unwrap();
        assert_eq!(a.check.name(), "route_condition");
        assert_eq!(a.object.unwrap().name, "r");
        let Check::RouteCondition { condition, .. } = a.check else {
            panic!("{:?}", a.check);
        };
        assert_eq!(condition.reason.as_deref(), Some("ResolvedRefs"));
    }

    #[test]
    fn an_unknown_field_of_an_assertion_is_an_error() {
        let e = assertion("assert: gateway_zero_routes\nhelper: h\ncount: 1\n").unwrap_err();
        assert!(e.contains("unknown field `count`"), "{e}");
    }

    #[test]
    fn an_unknown_assertion_kind_is_an_error() {
        let e = assertion("assert: gateway_is_fast\nhelper: h\n").unwrap_err();
        assert!(e.contains("gateway_is_fast"), "{e}");
    }

    #[test]
    fn listeners_all_selects_every_listener() {
        let a = assertion(
            "assert: listener_conditions\nhelper: h\nlisteners: all\n\
             conditions: [{type: Accepted, status: 'True'}]\n",
        )
        .unwrap();
        let Check::ListenerConditions { listeners, .. } = a.check else {
            panic!();
        };
        assert_eq!(listeners, ListenerSelection::All);
    }

    #[test]
    fn listeners_as_a_list_names_them() {
        let a = assertion(
            "assert: listener_conditions\nhelper: h\nlisteners: [a, b]\nconditions: []\n",
        )
        .unwrap();
        let Check::ListenerConditions { listeners, .. } = a.check else {
            panic!();
        };
        assert_eq!(
            listeners,
            ListenerSelection::Named(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn listeners_as_another_word_is_an_error() {
        let e =
            assertion("assert: listener_conditions\nhelper: h\nlisteners: some\nconditions: []\n")
                .unwrap_err();
        assert!(e.contains("expected `all`"), "{e}");
    }

    #[test]
    fn an_action_is_keyed_by_its_op() {
        let a: Action = serde_saphyr::from_str(
            "op: patch\nobject: {kind: Gateway, namespace: ns, name: gw}\npatch_type: merge\n\
             patch: {spec: {listeners: []}}\nwait_before: 1s\n",
        )
        .unwrap();
        assert_eq!(a.wait_before(), Some("1s"));
        let Action::Patch { patch, .. } = a else {
            panic!();
        };
        assert_eq!(patch, serde_json::json!({"spec": {"listeners": []}}));
    }

    #[test]
    fn a_request_case_defaults_to_consistent_mode() {
        let rc: RequestCase = serde_saphyr::from_str(
            "target: {gateway: {namespace: ns, name: gw}, port: 80}\n\
             request: {protocol: H2C_PRIOR_KNOWLEDGE, method: GET, path: /}\n\
             expect: {status: [200]}\n",
        )
        .unwrap();
        assert_eq!(rc.mode, Mode::Consistent);
        assert_eq!(rc.request.protocol, Protocol::H2cPriorKnowledge);
        assert!(rc.request.protocol.is_http_family());
        assert!(!rc.request.protocol.is_https());
    }

    #[test]
    fn an_unknown_expectation_is_an_error() {
        let e = serde_saphyr::from_str::<RequestCase>(
            "target: {gateway: {namespace: ns, name: gw}, port: 80}\n\
             request: {protocol: HTTP, method: GET, path: /}\n\
             expect: {status: [200], stauts: [404]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `stauts`"), "{e}");
    }
}
