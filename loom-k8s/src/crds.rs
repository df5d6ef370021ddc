//! The CustomResourceDefinitions of Loom's own kinds (`gateway.loom.dev/v1alpha1`), generated
//! from the same Rust types the compiler reads, so the API server validates what Loom
//! understands. `loom crds` prints them.

use loom_core::input::LOOM_GROUP;
use loom_core::input::{
    BackendSpec, CircuitBreakerPolicySpec, ClientTrafficPolicySpec, GatewayClassConfigSpec,
    RateLimitPolicySpec, WasmPluginSpec,
};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

/// The version every Loom kind is served at.
pub const VERSION: &str = "v1alpha1";

/// The schema of `T` as a Kubernetes structural schema: OpenAPI v3, everything inline.
fn schema_of<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    let root = settings.into_generator().into_root_schema_for::<T>();
    let mut v = root.to_value();
    if let Some(m) = v.as_object_mut() {
        for k in ["$schema", "title", "$defs", "definitions", "components"] {
            m.remove(k);
        }
    }
    drop_defaults(&mut v);
    v
}

/// `#[serde(default)]` makes schemars write `default: null` and `default: {}`: the API server
/// would then store those values in every object. Absent is what Loom means. And
/// `deny_unknown_fields` writes `additionalProperties: false`, which a structural schema may
/// not have: the API server prunes unknown fields anyway, and `kubectl apply` (strict field
/// validation) refuses them.
fn drop_defaults(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("default");
            if m.get("additionalProperties") == Some(&Value::Bool(false)) {
                m.remove("additionalProperties");
            }
            for (key, value) in m.iter_mut() {
                match (key.as_str(), value) {
                    // A property that happens to be called `default` (RateLimitPolicy's) is a
                    // schema, not a default value: keep it, clean inside it.
                    ("properties", Value::Object(properties)) => {
                        properties.values_mut().for_each(drop_defaults)
                    }
                    (_, value) => drop_defaults(value),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(drop_defaults),
        _ => {}
    }
}

fn crd(kind: &str, plural: &str, description: &str, status: bool, spec: Value) -> Value {
    let mut properties = json!({ "spec": spec });
    let mut version = json!({
        "name": VERSION,
        "served": true,
        "storage": true,
    });
    if status {
        properties["status"] = json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        });
        version["subresources"] = json!({ "status": {} });
    }
    version["schema"] = json!({
        "openAPIV3Schema": {
            "type": "object",
            "description": description,
            "required": ["spec"],
            "properties": properties,
        }
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.{LOOM_GROUP}"),
            "labels": {"app.kubernetes.io/part-of": "loom"},
        },
        "spec": {
            "group": LOOM_GROUP,
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_ascii_lowercase(),
                "categories": ["loom"],
            },
            "scope": "Namespaced",
            "versions": [version],
        }
    })
}

/// Adds CEL rules (`x-kubernetes-validations`) to the object schema at `path` (property names)
/// under `spec`: mistakes `kubectl apply` refuses at once instead of a status to read later.
fn validate(spec: &mut Value, path: &[&str], rules: &[(&str, &str)]) {
    let mut node = spec;
    for p in path {
        node = &mut node["properties"][*p];
        if node.get("items").is_some() {
            node = &mut node["items"];
        }
    }
    node["x-kubernetes-validations"] = rules
        .iter()
        .map(|(rule, message)| json!({"rule": rule, "message": message}))
        .collect();
}

/// One target at least: `targetRef`, or a non-empty `targetRefs`.
const HAS_TARGET: (&str, &str) = (
    "has(self.targetRef) || (has(self.targetRefs) && size(self.targetRefs) > 0)",
    "targetRef or targetRefs is required",
);

fn rate_limit_schema() -> Value {
    let mut spec = schema_of::<RateLimitPolicySpec>();
    validate(
        &mut spec,
        &[],
        &[
            HAS_TARGET,
            (
                "has(self.default) || (has(self.rules) && size(self.rules) > 0)",
                "the policy limits nothing: it needs default, rules, or both",
            ),
            (
                "!has(self.headers) || self.headers in ['OnLimit', 'Always']",
                "headers must be OnLimit or Always",
            ),
        ],
    );
    validate(
        &mut spec,
        &["key"],
        &[
            (
                "self.type in ['ClientAddress', 'Header']",
                "key.type must be ClientAddress or Header",
            ),
            (
                "self.type != 'Header' || has(self.header)",
                "key.header is required with key.type Header",
            ),
        ],
    );
    spec
}

fn circuit_breaker_schema() -> Value {
    let mut spec = schema_of::<CircuitBreakerPolicySpec>();
    validate(
        &mut spec,
        &[],
        &[
            HAS_TARGET,
            (
                "!has(self.maxPendingRequests) || has(self.maxConnections)",
                "maxPendingRequests needs maxConnections",
            ),
        ],
    );
    spec
}

fn client_traffic_schema() -> Value {
    let mut spec = schema_of::<ClientTrafficPolicySpec>();
    validate(
        &mut spec,
        &[],
        &[
            HAS_TARGET,
            (
                "has(self.headerTimeout) || has(self.idleTimeout) || has(self.maxConnections)",
                "the policy sets nothing: it needs headerTimeout, idleTimeout or maxConnections",
            ),
        ],
    );
    spec
}

fn wasm_plugin_schema() -> Value {
    let mut spec = schema_of::<WasmPluginSpec>();
    validate(
        &mut spec,
        &[],
        &[
            HAS_TARGET,
            ("has(self.url) && size(self.url) > 0", "url is required"),
            (
                "!has(self.phase) || self.phase in ['AUTHN', 'AUTHZ', 'STATS', 'UNSPECIFIED_PHASE']",
                "phase must be AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE",
            ),
            (
                "!has(self.failStrategy) || self.failStrategy in ['FailClose', 'FailOpen']",
                "failStrategy must be FailClose or FailOpen",
            ),
            (
                "!has(self.imagePullPolicy) || self.imagePullPolicy in ['IfNotPresent', 'Always']",
                "imagePullPolicy must be IfNotPresent or Always",
            ),
            (
                "!has(self.sha256) || self.sha256.matches('^(sha256:)?[0-9a-fA-F]{64}$')",
                "sha256 must be 64 hex digits",
            ),
        ],
    );
    spec
}

/// Every CRD of Loom's kinds.
pub fn crds() -> Vec<Value> {
    vec![
        crd(
            "GatewayClassConfig",
            "gatewayclassconfigs",
            "How Loom provisions data-plane pods for a GatewayClass or Gateway (parametersRef).",
            false,
            schema_of::<GatewayClassConfigSpec>(),
        ),
        crd(
            "RateLimitPolicy",
            "ratelimitpolicies",
            "Token-bucket rate limits for the requests of routes and Gateways (per replica, or \
             shared through Redis).",
            true,
            rate_limit_schema(),
        ),
        crd(
            "CircuitBreakerPolicy",
            "circuitbreakerpolicies",
            "Outlier detection and connection and request limits towards a Service or Backend.",
            true,
            circuit_breaker_schema(),
        ),
        crd(
            "ClientTrafficPolicy",
            "clienttrafficpolicies",
            "Client connection limits (request head and idle timeouts, connections) of a \
             Gateway's ports or one listener's port, instead of the data plane's defaults.",
            true,
            client_traffic_schema(),
        ),
        crd(
            "WASMPlugin",
            "wasmplugins",
            "A WebAssembly plugin on the request path of a Gateway's routes, a route, or one \
             rule (docs/wasm-plugins.md).",
            true,
            wasm_plugin_schema(),
        ),
        crd(
            "Backend",
            "backends",
            "Static endpoints a route can name instead of a Service.",
            false,
            schema_of::<BackendSpec>(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(v: &Value, f: &mut impl FnMut(&serde_json::Map<String, Value>)) {
        match v {
            Value::Object(m) => {
                f(m);
                m.values().for_each(|x| walk(x, f));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
            _ => {}
        }
    }

    #[test]
    fn schemas_are_structural_and_follow_the_types() {
        let crds = crds();
        assert_eq!(crds.len(), 6);
        for c in &crds {
            let schema = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            // Structural: no references, no anyOf/oneOf at the top of a property, every
            // node typed unless it keeps unknown fields.
            walk(schema, &mut |m| {
                assert!(
                    !m.contains_key("$ref"),
                    "{}: $ref in {m:?}",
                    c["metadata"]["name"]
                );
                // No default values in a schema node (a `properties` map may name a field
                // `default`).
                assert!(
                    !(m.contains_key("type") && m.contains_key("default")),
                    "{}: default in {m:?}",
                    c["metadata"]["name"]
                );
                assert_ne!(
                    m.get("additionalProperties"),
                    Some(&Value::Bool(false)),
                    "{}: additionalProperties false",
                    c["metadata"]["name"]
                );
                if m.contains_key("properties") || m.contains_key("items") {
                    assert!(
                        m.contains_key("type"),
                        "{}: untyped {m:?}",
                        c["metadata"]["name"]
                    );
                }
            });
        }
        let backend = &crds[5]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let spec = &backend["properties"]["spec"]["properties"];
        assert_eq!(spec["endpoints"]["type"], "array");
        assert_eq!(spec["endpoints"]["items"]["type"], "string");
        let rl = &crds[1]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let target = &rl["properties"]["spec"]["properties"]["targetRefs"]["items"];
        assert_eq!(target["properties"]["sectionName"]["type"], "string");
        assert_eq!(
            rl["properties"]["spec"]["properties"]["targetRef"]["properties"]["name"]["type"],
            "string"
        );
        // A property named `default` survives the removal of default values.
        assert_eq!(
            rl["properties"]["spec"]["properties"]["default"]["properties"]["requestsPerSecond"]["minimum"],
            1
        );
        let rule = &rl["properties"]["spec"]["properties"]["rules"]["items"];
        assert_eq!(
            rule["properties"]["matches"]["items"]["properties"]["path"]["properties"]["type"]["type"],
            "string"
        );
        assert_eq!(
            rl["properties"]["spec"]["x-kubernetes-validations"][0]["message"],
            "targetRef or targetRefs is required"
        );
        assert_eq!(
            rl["properties"]["spec"]["properties"]["key"]["x-kubernetes-validations"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        let cb = &crds[2]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            cb["properties"]["spec"]["properties"]["consecutive5xxErrors"]["minimum"],
            1
        );
        let ctp = &crds[3]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(crds[3]["spec"]["names"]["plural"], "clienttrafficpolicies");
        let spec = &ctp["properties"]["spec"];
        assert_eq!(spec["properties"]["maxConnections"]["minimum"], 1);
        assert_eq!(spec["properties"]["idleTimeout"]["type"], "string");
        assert_eq!(
            spec["properties"]["targetRef"]["properties"]["sectionName"]["type"],
            "string"
        );
        assert_eq!(
            spec["x-kubernetes-validations"][0]["message"],
            "targetRef or targetRefs is required"
        );
        assert_eq!(
            spec["x-kubernetes-validations"].as_array().map(Vec::len),
            Some(2)
        );
        let cfg = &crds[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            cfg["properties"]["spec"]["properties"]["resources"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
    }
}
