//! WASMPlugins: their values checked, their modules' state (which the embedding fetches and
//! reports in [`Options::plugin_modules`](super::Options)) looked up, their targets resolved,
//! and what each rule runs.
//!
//! A plugin applies to every rule it reaches (a Gateway's plugins run on every route of it, a
//! route's on each of its rules): plugins add up, unlike the traffic policies, where the most
//! specific wins. A plugin that cannot run (invalid, module pending or refused, no engine)
//! still sits on its rules, so its `failStrategy` decides: by default (`FailClose`) an
//! authentication plugin that did not load refuses requests instead of letting them through.
//! Only `plugins.enabled: false` in a GatewayClassConfig takes plugins off its Gateways.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::error::{LoomPolicyError, TargetError};
use super::lookup::{InputLookup, by_age};
use super::traffic::route_or_gateway_target;
use crate::filter::parse_duration_ms;
use crate::input::*;
use crate::snapshot::{FailStrategy, GatewayName, ModuleDigest, Plugin, PluginPhase};
use crate::status::{Condition, ConditionType, PolicyStatus, Reason, Status};

/// Time one call may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);
/// The longest `timeout` (a plugin call holds a worker thread).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(1);
/// Linear memory of one instance when `memoryLimit` is not set.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
const PAGE: u64 = 64 << 10;

/// Where a WASMPlugin's module comes from: what the embedding fetches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleSource {
    /// `spec.url` as written.
    pub url: String,
    /// `spec.sha256`, lower case.
    pub sha256: Option<String>,
    /// `imagePullPolicy: Always` (or a `:latest` tag): never taken from the on-disk cache.
    pub always_pull: bool,
    /// `imagePullSecret`: the Secret's namespace and name.
    pub pull_secret: Option<(String, String)>,
}

/// What the embedding knows of a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// Being fetched or compiled; the text says how it goes (the last failure, the next try).
    Pending(String),
    /// Fetched, verified and compiled: it runs.
    Ready(ModuleDigest),
    /// Refused for good (digest mismatch, not a module, no `on_request`/`on_response`).
    Failed(String),
}

/// The modules of every valid WASMPlugin in the input: what the embedding should fetch.
pub fn module_sources(input: &Input) -> BTreeSet<ModuleSource> {
    input
        .wasm_plugins
        .iter()
        .filter_map(|p| values(&p.spec, p.metadata.namespace_or_default()).ok())
        .map(|v| v.source)
        .collect()
}

/// A plugin's settings, checked.
#[derive(Debug)]
struct Values {
    source: ModuleSource,
    phase: PluginPhase,
    priority: i32,
    fail: FailStrategy,
    config: Arc<str>,
    timeout: Duration,
    memory_pages: u32,
}

fn phase(v: Option<&str>) -> Result<PluginPhase, LoomPolicyError> {
    match v {
        None | Some("UNSPECIFIED_PHASE") => Ok(PluginPhase::Unspecified),
        Some("AUTHN") => Ok(PluginPhase::Authn),
        Some("AUTHZ") => Ok(PluginPhase::Authz),
        Some("STATS") => Ok(PluginPhase::Stats),
        Some(other) => Err(LoomPolicyError::OneOf {
            field: "phase",
            value: other.into(),
            allowed: "AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE",
        }),
    }
}

fn fail_strategy(v: Option<&str>) -> Result<FailStrategy, LoomPolicyError> {
    match v {
        None | Some("FailClose") => Ok(FailStrategy::FailClose),
        Some("FailOpen") => Ok(FailStrategy::FailOpen),
        Some(other) => Err(LoomPolicyError::OneOf {
            field: "failStrategy",
            value: other.into(),
            allowed: "FailClose or FailOpen",
        }),
    }
}

/// `64Mi`, `512Ki`, `1Gi` or a number of bytes.
fn memory_bytes(v: &str) -> Option<u64> {
    let (digits, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn url_ok(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("oci://") {
        // registry/repository[:tag][@sha256:digest]
        return rest.contains('/') && !rest.starts_with('/');
    }
    if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        return rest.contains('/') && !rest.starts_with('/');
    }
    if let Some(rest) = url.strip_prefix("file://") {
        return rest.starts_with('/');
    }
    // A path (relative to the working directory).
    !url.contains("://") && !url.is_empty()
}

fn values(spec: &WasmPluginSpec, ns: &str) -> Result<Values, LoomPolicyError> {
    let url = spec.url.trim();
    if url.is_empty() {
        return Err(LoomPolicyError::MissingUrl);
    }
    if !url_ok(url) {
        return Err(LoomPolicyError::Url(url.into()));
    }
    let sha256 = match &spec.sha256 {
        None => None,
        Some(s) => {
            let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(LoomPolicyError::Sha256(s.clone()));
            }
            Some(hex)
        }
    };
    let always_pull = match spec.image_pull_policy.as_deref() {
        Some("Always") => true,
        // Istio's and Kubernetes' rule: a `latest` tag is pulled again.
        None | Some("IfNotPresent") => url.starts_with("oci://") && url.ends_with(":latest"),
        Some(other) => {
            return Err(LoomPolicyError::OneOf {
                field: "imagePullPolicy",
                value: other.into(),
                allowed: "IfNotPresent or Always",
            });
        }
    };
    let config = match &spec.config {
        None | Some(serde_json::Value::Null) => "{}".to_owned(),
        Some(v @ serde_json::Value::Object(_)) => v.to_string(),
        Some(_) => return Err(LoomPolicyError::ConfigNotObject),
    };
    let timeout = match &spec.timeout {
        None => DEFAULT_TIMEOUT,
        Some(v) => match parse_duration_ms(v) {
            Some(ms) if ms > 0 && Duration::from_millis(ms) <= MAX_TIMEOUT => {
                Duration::from_millis(ms)
            }
            _ => {
                return Err(LoomPolicyError::PluginTimeout(v.clone()));
            }
        },
    };
    let memory = match &spec.memory_limit {
        None => DEFAULT_MEMORY,
        Some(v) => match memory_bytes(v) {
            Some(b) if (PAGE..=4 << 30).contains(&b) => b,
            _ => return Err(LoomPolicyError::MemoryLimit(v.clone())),
        },
    };
    Ok(Values {
        source: ModuleSource {
            url: url.into(),
            sha256,
            always_pull,
            pull_secret: spec
                .image_pull_secret
                .as_ref()
                .map(|s| (ns.to_owned(), s.clone())),
        },
        phase: phase(spec.phase.as_deref())?,
        priority: spec.priority.unwrap_or(0),
        fail: fail_strategy(spec.fail_strategy.as_deref())?,
        config: config.into(),
        timeout,
        memory_pages: memory.div_ceil(PAGE) as u32,
    })
}

/// Why a valid plugin does not run (its rules get what `failStrategy` says).
#[derive(Clone, Debug, PartialEq, Eq)]
enum NotRunning {
    /// This data plane was built without a Wasm engine (or runs none).
    NoEngine,
    Pending(String),
    Failed(String),
}

/// One WASMPlugin, checked.
#[derive(Debug)]
struct Checked {
    key: ObjectKey,
    generation: i64,
    /// The plugin as rules run it (also when it cannot run: see the module docs).
    plugin: Arc<Plugin>,
    /// Why it is not valid, or why it does not run.
    invalid: Option<LoomPolicyError>,
    not_running: Option<NotRunning>,
    targets: Vec<(PolicyTarget, Result<TargetKey, TargetError>)>,
}

/// A plugin target, as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TargetKey {
    kind: Kind,
    namespace: String,
    name: String,
    section: Option<String>,
}

/// The WASMPlugins of the input and where they apply.
#[derive(Debug, Default)]
pub(crate) struct Plugins {
    checked: Vec<Checked>,
    at: HashMap<TargetKey, Vec<usize>>,
}

impl Plugins {
    /// Whether some plugin runs somewhere.
    pub(crate) fn target_any(&self) -> bool {
        !self.at.is_empty()
    }

    pub(crate) fn check(lookup: &InputLookup<'_>) -> Self {
        let mut out = Plugins::default();
        let modules = lookup.options.plugin_modules.as_ref();
        for p in by_age(&lookup.input.wasm_plugins, |p| &p.metadata) {
            let ns = p.metadata.namespace_or_default();
            let key = ObjectKey {
                kind: Kind::WasmPlugin,
                namespace: ns.into(),
                name: p.metadata.name.clone(),
            };
            let checked = values(&p.spec, ns);
            let (invalid, not_running, module, values) = match checked {
                Err(e) => {
                    let why = format!("invalid: {e}");
                    (Some(e), None, Err(why), None)
                }
                Ok(v) => {
                    let state = modules.map(|m| m.get(&v.source));
                    let (not_running, module) = match state {
                        None => (
                            Some(NotRunning::NoEngine),
                            Err("this data plane runs no WASMPlugins".to_owned()),
                        ),
                        Some(Some(ModuleState::Ready(d))) => (None, Ok(d.clone())),
                        Some(Some(ModuleState::Failed(why))) => {
                            (Some(NotRunning::Failed(why.clone())), Err(why.clone()))
                        }
                        Some(Some(ModuleState::Pending(why))) => {
                            (Some(NotRunning::Pending(why.clone())), Err(why.clone()))
                        }
                        Some(None) => {
                            let why = format!("{} is not fetched yet", v.source.url);
                            (Some(NotRunning::Pending(why.clone())), Err(why))
                        }
                    };
                    (None, not_running, module, Some(v))
                }
            };
            let plugin = match values {
                Some(v) => Plugin {
                    plugin: key.clone(),
                    phase: v.phase,
                    priority: v.priority,
                    fail: v.fail,
                    module,
                    config: v.config,
                    timeout: v.timeout,
                    memory_pages: v.memory_pages,
                },
                // An invalid plugin still holds its targets, in the first phase, failing as
                // its failStrategy says (closed, when that is what is invalid).
                None => Plugin {
                    plugin: key.clone(),
                    phase: phase(p.spec.phase.as_deref()).unwrap_or(PluginPhase::Authn),
                    priority: p.spec.priority.unwrap_or(0),
                    fail: fail_strategy(p.spec.fail_strategy.as_deref()).unwrap_or_default(),
                    module,
                    config: "{}".into(),
                    timeout: DEFAULT_TIMEOUT,
                    memory_pages: 1,
                },
            };
            let index = out.checked.len();
            let mut targets = vec![];
            for t in p.spec.targets() {
                let resolved =
                    route_or_gateway_target(lookup, ns, t, Kind::WasmPlugin).map(|kind| {
                        TargetKey {
                            kind,
                            namespace: ns.into(),
                            name: t.name.clone(),
                            section: t.section_name.clone(),
                        }
                    });
                let resolved = match resolved {
                    Ok(k)
                        if targets.iter().any(
                            |(_, r): &(PolicyTarget, Result<TargetKey, TargetError>)| {
                                r.as_ref() == Ok(&k)
                            },
                        ) =>
                    {
                        Err(TargetError::Repeated)
                    }
                    r => r,
                };
                if let Ok(k) = &resolved {
                    out.at.entry(k.clone()).or_default().push(index);
                }
                targets.push((t.clone(), resolved));
            }
            out.checked.push(Checked {
                key,
                generation: p.metadata.generation(),
                plugin: Arc::new(plugin),
                invalid,
                not_running,
                targets,
            });
        }
        out
    }

    /// Every plugin, as rules run it.
    pub(crate) fn all(&self) -> Vec<Arc<Plugin>> {
        self.checked.iter().map(|c| c.plugin.clone()).collect()
    }

    /// The plugins a rule of `route` runs on a listener of `gateway` (`listener`: its name,
    /// when a Gateway's `sectionName` can name it), unordered.
    pub(crate) fn for_rule(
        &self,
        gateway: &GatewayName,
        listener: Option<&str>,
        route: &ObjectKey,
        rule_name: Option<&str>,
    ) -> Vec<Arc<Plugin>> {
        if self.at.is_empty() {
            return vec![];
        }
        let at = |kind: Kind, ns: &str, name: &str, section: Option<&str>| TargetKey {
            kind,
            namespace: ns.into(),
            name: name.into(),
            section: section.map(Into::into),
        };
        let route_at = |section| at(route.kind, &route.namespace, &route.name, section);
        let gateway_at = |section| at(Kind::Gateway, &gateway.namespace, &gateway.name, section);
        [
            rule_name.map(|r| route_at(Some(r))),
            Some(route_at(None)),
            listener.map(|l| gateway_at(Some(l))),
            Some(gateway_at(None)),
        ]
        .into_iter()
        .flatten()
        .filter_map(|k| self.at.get(&k))
        .flatten()
        .map(|&i| self.checked[i].plugin.clone())
        .collect()
    }
}

/// Whether the GatewayClassConfig of a Gateway turns plugins off, and the engine it names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PluginSettings {
    /// `plugins.enabled: false` in this GatewayClassConfig.
    pub(crate) disabled_by: Option<String>,
    /// `plugins.runtime`, when it names another engine than Loom's.
    pub(crate) runtime: Option<String>,
}

/// The engine names that mean Loom's one engine.
const OWN_RUNTIMES: [&str; 2] = ["extism", "wasmtime"];

pub(crate) fn write_status(
    lookup: &InputLookup<'_>,
    plugins: &Plugins,
    settings: &BTreeMap<GatewayName, PluginSettings>,
    status: &mut Status,
) {
    for c in &plugins.checked {
        let mut ancestors = vec![];
        for (t, resolved) in &c.targets {
            let ns = c.key.namespace.as_str();
            let gateways = target_gateways(lookup, ns, t);
            let disabled: Vec<&str> = gateways
                .iter()
                .filter_map(|g| settings.get(g)?.disabled_by.as_deref())
                .collect();
            let runtime = gateways
                .iter()
                .filter_map(|g| settings.get(g)?.runtime.as_deref())
                .find(|r| !OWN_RUNTIMES.contains(&r.to_ascii_lowercase().as_str()));
            let (ok, reason, message) = match (&c.invalid, resolved, &c.not_running) {
                (Some(e), _, _) => (
                    false,
                    Reason::Invalid,
                    format!("{e}; {}", failing(c.plugin.fail)),
                ),
                (None, Err(e), _) => (false, e.reason(), e.to_string()),
                (None, Ok(_), _) if !gateways.is_empty() && disabled.len() == gateways.len() => (
                    false,
                    Reason::Disabled,
                    format!(
                        "plugins are disabled (plugins.enabled: false) in GatewayClassConfig {}",
                        disabled.join(", ")
                    ),
                ),
                (None, Ok(_), Some(NotRunning::NoEngine)) => (
                    false,
                    Reason::NotEnforced,
                    format!(
                        "this data plane runs no WASMPlugins (a loom built without the `wasm` \
                         feature); {}",
                        failing(c.plugin.fail)
                    ),
                ),
                (None, Ok(_), Some(NotRunning::Pending(why))) => (
                    false,
                    Reason::Pending,
                    format!("module not loaded yet: {why}; {}", failing(c.plugin.fail)),
                ),
                (None, Ok(_), Some(NotRunning::Failed(why))) => (
                    false,
                    Reason::Invalid,
                    format!("module refused: {why}; {}", failing(c.plugin.fail)),
                ),
                (None, Ok(_), None) => {
                    let p = &c.plugin;
                    let digest = p.module.as_ref().map(|d| d.0.as_str()).unwrap_or("");
                    let mut m = format!(
                        "runs module sha256:{digest} in phase {} (priority {}) with extism \
                         on wasmtime",
                        p.phase.as_str(),
                        p.priority
                    );
                    if let Some(r) = runtime {
                        m.push_str(&format!(
                            " (GatewayClassConfig plugins.runtime {r:?}: Loom has one engine, \
                             and runs the plugin with it)"
                        ));
                    }
                    if !disabled.is_empty() {
                        m.push_str(&format!(
                            "; not on Gateways whose GatewayClassConfig {} disables plugins",
                            disabled.join(", ")
                        ));
                    }
                    (true, Reason::Accepted, m)
                }
            };
            let condition =
                Condition::new(ConditionType::Accepted, ok, reason, message, c.generation);
            ancestors.push(super::status::policy_ancestor(lookup, ns, t, condition));
        }
        status.objects.insert(
            c.key.clone(),
            crate::status::ObjectStatus::Policy(Box::new(PolicyStatus { ancestors })),
        );
    }
}

fn failing(fail: FailStrategy) -> &'static str {
    match fail {
        FailStrategy::FailClose => "its routes answer 503 until it runs (failStrategy FailClose)",
        FailStrategy::FailOpen => "its routes go on without it (failStrategy FailOpen)",
    }
}

/// The Gateways a target is served by: the Gateway itself, or a route's parent Gateways.
fn target_gateways(lookup: &InputLookup<'_>, ns: &str, t: &PolicyTarget) -> Vec<GatewayName> {
    let input = lookup.input;
    let named = |m: &ObjectMeta| m.namespace_or_default() == ns && m.name == t.name;
    let parents: Vec<&ParentReference> = match t.kind.as_str() {
        "Gateway" => return vec![GatewayName::new(ns, &t.name)],
        "HTTPRoute" => input
            .http_routes
            .iter()
            .filter(|r| named(&r.metadata))
            .flat_map(|r| &r.spec.parent_refs)
            .collect(),
        "GRPCRoute" => input
            .grpc_routes
            .iter()
            .filter(|r| named(&r.metadata))
            .flat_map(|r| &r.spec.parent_refs)
            .collect(),
        _ => vec![],
    };
    let mut out: Vec<GatewayName> = parents
        .into_iter()
        .filter(|p| p.kind.as_deref().unwrap_or("Gateway") == "Gateway")
        .map(|p| GatewayName::new(p.namespace.as_deref().unwrap_or(ns), &p.name))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> WasmPluginSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn check(yaml: &str) -> Result<Values, String> {
        values(&spec(yaml), "default").map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_manifest_reads_as_written() {
        let v = check(
            "targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes}\n\
             url: oci://registry.example.com/plugins/auth:v1.0\nphase: AUTHN\n\
             config: {audience: api.example.com}\n",
        )
        .unwrap();
        assert_eq!(v.phase, PluginPhase::Authn);
        assert_eq!(v.fail, FailStrategy::FailClose);
        assert_eq!(&*v.config, r#"{"audience":"api.example.com"}"#);
        assert_eq!(v.timeout, DEFAULT_TIMEOUT);
        assert_eq!(v.memory_pages, 1024);
        assert!(!v.source.always_pull);
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let cases = [
            ("url: ''", "url is required"),
            ("url: ftp://x/y", "url \"ftp://x/y\""),
            ("url: p.wasm\nsha256: abc", "sha256 \"abc\""),
            ("url: p.wasm\nphase: AUTH", "phase: \"AUTH\""),
            ("url: p.wasm\nfailStrategy: Open", "failStrategy: \"Open\""),
            (
                "url: p.wasm\nimagePullPolicy: Never",
                "imagePullPolicy: \"Never\"",
            ),
            ("url: p.wasm\ntimeout: 2s", "timeout \"2s\""),
            ("url: p.wasm\nmemoryLimit: 1T", "memoryLimit \"1T\""),
            ("url: p.wasm\nconfig: [1]", "config must be an object"),
        ];
        for (yaml, want) in cases {
            let got = check(yaml).unwrap_err();
            assert!(got.contains(want), "{yaml}: {got}");
        }
    }

    #[test]
    fn latest_tags_and_always_pull_skip_the_cache() {
        assert!(check("url: oci://r/p:latest").unwrap().source.always_pull);
        assert!(
            check("url: oci://r/p:v1\nimagePullPolicy: Always")
                .unwrap()
                .source
                .always_pull
        );
        assert!(!check("url: oci://r/p:v1").unwrap().source.always_pull);
    }

    #[test]
    fn sizes_and_digests_are_normalized() {
        let v = check(&format!(
            "url: /p.wasm\nmemoryLimit: 100Ki\nsha256: sha256:{}\ntimeout: 20ms",
            "AB".repeat(32)
        ))
        .unwrap();
        assert_eq!(v.memory_pages, 2);
        assert_eq!(v.source.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(v.timeout, Duration::from_millis(20));
    }

    #[test]
    fn urls_of_every_kind_of_source() {
        for ok in [
            "file:///plugins/p.wasm",
            "plugins/p.wasm",
            "https://example.com/p.wasm",
            "oci://registry:5000/plugins/auth:v1",
            "oci://registry/plugins/auth@sha256:00",
        ] {
            assert!(url_ok(ok), "{ok}");
        }
        for bad in [
            "file://relative",
            "s3://b/p.wasm",
            "oci://registry",
            "https://host",
        ] {
            assert!(!url_ok(bad), "{bad}");
        }
    }
}
