//! # loom-core
//!
//! The pure heart of Loom, a Kubernetes Gateway API implementation: Gateway API objects in,
//! one immutable routing [`Snapshot`] and the status the spec demands out. No IO, no clock, no
//! environment, no async runtime: embed it in any Rust proxy.
//!
//! ```text
//!  YAML (load) ──┐
//!                ├─► Input ──compile()──► Compiled { snapshot: Snapshot, status: Status }
//!  k8s watch ────┘                                    │                 │
//!                            data plane: decide() ◄───┘                 └──► status writer
//! ```
//!
//! ```
//! use loom_core::{compile_with, load, Options, snapshot::{GatewayName, HttpRequest, Decision}};
//!
//! let yaml = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: GatewayClass
//! metadata: {name: loom}
//! spec: {controllerName: loom.dev/gateway-controller}
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: Gateway
//! metadata: {name: gw, namespace: default}
//! spec:
//!   gatewayClassName: loom
//!   listeners: [{name: http, port: 8080, protocol: HTTP}]
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: web, namespace: default}
//! spec:
//!   parentRefs: [{name: gw}]
//!   rules: [{backendRefs: [{group: gateway.loom.dev, kind: Backend, name: echo}]}]
//! ---
//! apiVersion: gateway.loom.dev/v1alpha1
//! kind: Backend
//! metadata: {name: echo, namespace: default}
//! spec: {endpoints: ["127.0.0.1:3000"]}
//! "#;
//! let loaded = load::load_str("example.yaml", yaml);
//! assert!(loaded.errors.is_empty());
//! let mut input = loom_core::Input::default();
//! for (_, object) in loaded.objects {
//!     input.upsert(object);
//! }
//! let compiled = compile_with(&input, &Options::default());
//! let req = http::Request::get("http://example.com/hello").body(()).unwrap();
//! let request = HttpRequest { scheme: "http", sni: None, method: req.method(), uri: req.uri(), headers: req.headers() };
//! match compiled.snapshot.decide(&GatewayName::new("default", "gw"), 8080, &request, 42) {
//!     Decision::Forward(f) => assert_eq!(f.backend.endpoints, ["127.0.0.1:3000"]),
//!     other => panic!("{other:?}"),
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compile;
pub mod diagnose;
pub mod filter;
pub mod input;
pub mod load;
pub mod policy;
pub mod route;
pub mod snapshot;
pub mod status;

pub use compile::{
    CONTROLLER_NAME, Compiled, Compiler, NotServing, Options, PendingStatus, PortsNotServing,
    Staged, compile, compile_staged, compile_with,
};
pub use diagnose::{Diagnostic, diagnose};
pub use input::{Input, Object};
pub use snapshot::Snapshot;
pub use status::Status;

/// The Gateway API features (conformance feature names) Loom's compiler and decision API
/// implement. Reported in `GatewayClass.status.supportedFeatures`.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
    "ReferenceGrant",
    "TCPRoute",
    "TLSRoute",
    "TLSRouteModeMixed",
    "TLSRouteModeTerminate",
    "UDPRoute",
];
