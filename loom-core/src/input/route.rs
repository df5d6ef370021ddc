//! HTTPRoute, GRPCRoute, TLSRoute, TCPRoute and UDPRoute.

use serde::{Deserialize, Serialize};

use super::{BackendRef, ObjectMeta, ParentReference};

/// `HTTPRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRoute {
    pub metadata: ObjectMeta,
    pub spec: HttpRouteSpec,
}

/// `HTTPRoute.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteSpec {
    pub parent_refs: Vec<ParentReference>,
    pub hostnames: Vec<String>,
    /// Rules; an empty list means one rule matching `/` with no backends.
    pub rules: Vec<HttpRouteRule>,
}

/// `HTTPRouteRule`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteRule {
    /// The rule's name (for metrics and status).
    pub name: Option<String>,
    /// Matches, ORed; none means `PathPrefix /`.
    pub matches: Vec<HttpRouteMatch>,
    pub filters: Vec<HttpRouteFilter>,
    pub backend_refs: Vec<HttpBackendRef>,
    /// Timeouts. This and the fields below are boxed: most rules have none, and a rule is
    /// kept for as long as its route is (112 bytes less per rule).
    pub timeouts: Option<Box<HttpRouteTimeouts>>,
    /// Retry policy.
    pub retry: Option<Box<HttpRouteRetry>>,
    /// Session persistence (read, not yet applied).
    pub session_persistence: Option<Box<serde_json::Value>>,
}

/// `HTTPRouteMatch`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteMatch {
    /// Path match (default `PathPrefix /`).
    pub path: Option<HttpPathMatch>,
    /// Header matches, ANDed.
    pub headers: Vec<HttpHeaderMatch>,
    /// Query parameter matches, ANDed.
    pub query_params: Vec<HttpHeaderMatch>,
    pub method: Option<String>,
}

/// `HTTPPathMatch`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Default `/`.
    pub value: Option<String>,
}

/// `HTTPHeaderMatch` / `HTTPQueryParamMatch` / `GRPCHeaderMatch`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeaderMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub name: String,
    pub value: String,
}

/// `HTTPRouteFilter` (also used for GRPCRoute filters and backend filters).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteFilter {
    /// The filter type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `RequestHeaderModifier`.
    pub request_header_modifier: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    pub response_header_modifier: Option<HeaderModifier>,
    /// `RequestMirror`.
    pub request_mirror: Option<RequestMirror>,
    /// `RequestRedirect`.
    pub request_redirect: Option<RequestRedirect>,
    /// `URLRewrite`.
    #[serde(rename = "urlRewrite")]
    pub url_rewrite: Option<UrlRewrite>,
    /// `CORS`.
    pub cors: Option<Cors>,
    /// `ExtensionRef`.
    pub extension_ref: Option<super::LocalObjectReference>,
}

/// `HTTPHeaderFilter`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderModifier {
    /// Overwrite.
    pub set: Vec<HttpHeader>,
    /// Append.
    pub add: Vec<HttpHeader>,
    /// Remove.
    pub remove: Vec<String>,
}

/// `HTTPHeader`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// `HTTPRequestMirrorFilter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestMirror {
    /// The mirror backend.
    pub backend_ref: BackendRef,
    /// Percentage of requests to mirror.
    pub percent: Option<i32>,
    /// Fraction of requests to mirror.
    pub fraction: Option<Fraction>,
}

/// `Fraction`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fraction {
    pub numerator: i32,
    /// Denominator (default 100).
    pub denominator: Option<i32>,
}

/// `HTTPRequestRedirectFilter`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestRedirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    /// Path modifier.
    pub path: Option<HttpPathModifier>,
    pub port: Option<i32>,
    /// 301, 302 (default), 303, 307 or 308.
    pub status_code: Option<i32>,
}

/// `HTTPURLRewriteFilter`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UrlRewrite {
    pub hostname: Option<String>,
    /// Path modifier.
    pub path: Option<HttpPathModifier>,
}

/// `HTTPPathModifier`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpPathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub type_: String,
    /// For `ReplaceFullPath`.
    pub replace_full_path: Option<String>,
    /// For `ReplacePrefixMatch`.
    pub replace_prefix_match: Option<String>,
}

/// `HTTPCORSFilter`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Cors {
    /// Allowed origins (`*`, exact, or `scheme://*.host` wildcards).
    pub allow_origins: Vec<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: Option<bool>,
    /// Allowed methods (`*` allowed).
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`*` allowed).
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    pub expose_headers: Vec<String>,
    /// Preflight cache time in seconds (default 5).
    pub max_age: Option<i32>,
}

/// `HTTPRouteTimeouts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteTimeouts {
    /// Whole request.
    pub request: Option<String>,
    /// One attempt to the backend.
    pub backend_request: Option<String>,
}

/// `HTTPRouteRetry`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteRetry {
    /// Status codes that are retried.
    pub codes: Vec<i32>,
    /// Maximum retries.
    pub attempts: Option<i32>,
    /// Backoff between attempts.
    pub backoff: Option<String>,
}

/// `HTTPBackendRef` (a backendRef with filters).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpBackendRef {
    /// The reference.
    #[serde(flatten)]
    pub backend_ref: BackendRef,
    /// Filters applied when this backend is chosen.
    pub filters: Vec<HttpRouteFilter>,
}

impl<'de> Deserialize<'de> for HttpBackendRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Not `#[serde(flatten)]`: flattening buffers the map, and errors inside it lose their
        // field path (`backendRefs[0]` instead of `backendRefs[0].port`).
        #[derive(Default, Deserialize)]
        #[serde(rename_all = "camelCase", default)]
        struct Raw {
            group: Option<String>,
            kind: Option<String>,
            name: String,
            namespace: Option<String>,
            port: Option<i32>,
            weight: Option<i32>,
            filters: Vec<HttpRouteFilter>,
        }
        let Raw {
            group,
            kind,
            name,
            namespace,
            port,
            weight,
            filters,
        } = Raw::deserialize(d)?;
        Ok(HttpBackendRef {
            backend_ref: BackendRef {
                group,
                kind,
                name,
                namespace,
                port,
                weight,
            },
            filters,
        })
    }
}

/// `GRPCRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRoute {
    pub metadata: ObjectMeta,
    pub spec: GrpcRouteSpec,
}

/// `GRPCRoute.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRouteSpec {
    pub parent_refs: Vec<ParentReference>,
    pub hostnames: Vec<String>,
    pub rules: Vec<GrpcRouteRule>,
}

/// `GRPCRouteRule`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRouteRule {
    /// The rule's name.
    pub name: Option<String>,
    /// Matches, ORed; none matches every request.
    pub matches: Vec<GrpcRouteMatch>,
    pub filters: Vec<HttpRouteFilter>,
    pub backend_refs: Vec<HttpBackendRef>,
}

/// `GRPCRouteMatch`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRouteMatch {
    /// Method match.
    pub method: Option<GrpcMethodMatch>,
    /// Header matches.
    pub headers: Vec<HttpHeaderMatch>,
}

/// `GRPCMethodMatch`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Fully-qualified service name.
    pub service: Option<String>,
    /// Method name.
    pub method: Option<String>,
}

/// `TLSRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsRoute {
    pub metadata: ObjectMeta,
    pub spec: L4RouteSpec,
}

/// `TCPRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpRoute {
    pub metadata: ObjectMeta,
    pub spec: L4RouteSpec,
}

/// `UDPRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UdpRoute {
    pub metadata: ObjectMeta,
    pub spec: L4RouteSpec,
}

/// The spec shared by TLSRoute (which also has hostnames), TCPRoute and UDPRoute.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct L4RouteSpec {
    pub parent_refs: Vec<ParentReference>,
    /// SNI hostnames (TLSRoute only).
    pub hostnames: Vec<String>,
    pub rules: Vec<L4RouteRule>,
}

/// A TLS/TCP/UDP route rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct L4RouteRule {
    /// The rule's name.
    pub name: Option<String>,
    pub backend_refs: Vec<BackendRef>,
}
