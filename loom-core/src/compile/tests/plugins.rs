//! WASMPlugins: the manifest users write, what each rule runs and in which order, and the
//! status that says whether the plugin runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::traffic::{APP, accepted, decide_on_edge};
use super::*;
use crate::compile::{ModuleSource, ModuleState, module_sources};
use crate::snapshot::{FailStrategy, HttpRule, ModuleDigest, PluginPhase};

/// The WASMPlugin of issue #12, verbatim (its route is `api-routes` of [`APP`]).
const ISSUE_PLUGIN: &str = r#"
apiVersion: gateway.loom.dev/v1alpha1
kind: WASMPlugin
metadata:
  name: auth-plugin
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: api-routes
  url: oci://registry.example.com/plugins/auth:v1.0
  phase: AUTHN
  config:
    audience: api.example.com
"#;

fn plugin(name: &str, target: &str, extra: &str) -> String {
    format!(
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: WASMPlugin\nmetadata: {{name: {name}}}\n\
         spec:\n  targetRef: {{group: gateway.networking.k8s.io, {target}}}\n  url: /{name}.wasm\n{extra}"
    )
}

/// Compiles with every module of the input in `state` (its digest is the module's url).
fn compiled_with(objects: &str, state: impl Fn(&ModuleSource) -> ModuleState) -> Compiled {
    let input = input(&format!("{APP}---\n{objects}"));
    let modules: BTreeMap<_, _> = module_sources(&input)
        .into_iter()
        .map(|s| {
            let st = state(&s);
            (s, st)
        })
        .collect();
    compile_with(
        &input,
        &Options {
            plugin_modules: Some(modules),
            ..Options::default()
        },
    )
}

fn ready(objects: &str) -> Compiled {
    compiled_with(objects, |s| ModuleState::Ready(ModuleDigest(s.url.clone())))
}

/// The rule Gateway `default/edge` serves `GET path` with `host` by on `port`.
fn rule_at(c: &Compiled, port: u16, host: &str, path: &str) -> Arc<HttpRule> {
    let d = decide_on_edge(c, port, host, path);
    d.matched().expect("a rule matches").rule.clone()
}

/// The plugins that rule runs, in order, with their module (or why it has none).
fn plugins_of(
    c: &Compiled,
    port: u16,
    host: &str,
    path: &str,
) -> Vec<(String, Result<String, String>)> {
    rule_at(c, port, host, path)
        .plugins
        .iter()
        .flat_map(|p| p.all())
        .map(|p| (p.plugin.name.clone(), p.module.clone().map(|d| d.0)))
        .collect()
}

#[test]
fn the_issue_plugin_runs_on_every_rule_of_its_route_once_loaded() {
    let c = ready(ISSUE_PLUGIN);
    let want = vec![(
        "auth-plugin".to_owned(),
        Ok("oci://registry.example.com/plugins/auth:v1.0".to_owned()),
    )];
    assert_eq!(plugins_of(&c, 80, "a.example", "/search"), want);
    assert_eq!(plugins_of(&c, 81, "a.example", "/api"), want);
    assert_eq!(plugins_of(&c, 80, "other.example", "/"), vec![]);
    let status = accepted(&c, Kind::WasmPlugin, "auth-plugin");
    assert_eq!(status.len(), 1);
    assert!(status[0].0, "{status:?}");
    assert!(status[0].2.contains("phase AUTHN"), "{}", status[0].2);
    let rule = rule_at(&c, 80, "a.example", "/api");
    let p = &rule.plugins.as_ref().unwrap().before_filters[0];
    assert_eq!(p.phase, PluginPhase::Authn);
    assert_eq!(&*p.config, r#"{"audience":"api.example.com"}"#);
}

#[test]
fn a_plugin_whose_module_is_not_loaded_is_pending_and_still_guards_its_route() {
    let c = compiled_with(ISSUE_PLUGIN, |_| {
        ModuleState::Pending("attempt 2 failed: connection refused; next in 2s".into())
    });
    let status = accepted(&c, Kind::WasmPlugin, "auth-plugin");
    assert_eq!((status[0].0, status[0].1), (false, Reason::Pending));
    assert!(
        status[0].2.contains("connection refused"),
        "{}",
        status[0].2
    );
    assert!(status[0].2.contains("answer 503"), "{}", status[0].2);
    let on_rule = plugins_of(&c, 80, "a.example", "/api");
    assert_eq!(on_rule.len(), 1);
    assert!(
        on_rule[0]
            .1
            .as_ref()
            .unwrap_err()
            .contains("connection refused")
    );
}

#[test]
fn a_refused_module_is_invalid_and_names_why() {
    let c = compiled_with(ISSUE_PLUGIN, |_| {
        ModuleState::Failed("sha256 is 00…, spec.sha256 says ff…".into())
    });
    let status = accepted(&c, Kind::WasmPlugin, "auth-plugin");
    assert_eq!((status[0].0, status[0].1), (false, Reason::Invalid));
    assert!(
        status[0].2.contains("module refused: sha256"),
        "{}",
        status[0].2
    );
}

#[test]
fn without_an_engine_no_plugin_is_accepted_and_fail_close_routes_refuse() {
    let c = compile(&input(&format!("{APP}---\n{ISSUE_PLUGIN}")));
    let status = accepted(&c, Kind::WasmPlugin, "auth-plugin");
    assert_eq!((status[0].0, status[0].1), (false, Reason::NotEnforced));
    assert!(
        status[0].2.contains("runs no WASMPlugins"),
        "{}",
        status[0].2
    );
    assert!(plugins_of(&c, 80, "a.example", "/api")[0].1.is_err());
}

#[test]
fn phases_and_priorities_order_the_plugins_of_gateway_route_and_rule() {
    let objects = [
        plugin("stats", "kind: Gateway, name: edge", "  phase: STATS\n"),
        plugin("late", "kind: HTTPRoute, name: api-routes", ""),
        plugin(
            "authz",
            "kind: HTTPRoute, name: api-routes, sectionName: search",
            "  phase: AUTHZ\n",
        ),
        plugin(
            "authn-low",
            "kind: Gateway, name: edge, sectionName: web",
            "  phase: AUTHN\n",
        ),
        plugin(
            "authn-high",
            "kind: HTTPRoute, name: api-routes",
            "  phase: AUTHN\n  priority: 10\n",
        ),
    ]
    .join("---\n");
    let c = ready(&objects);
    let names = |port, path| -> Vec<String> {
        plugins_of(&c, port, "a.example", path)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(
        names(80, "/search"),
        ["authn-high", "authn-low", "authz", "late", "stats"]
    );
    // Not the named rule, and not the listener `web`.
    assert_eq!(names(81, "/api"), ["authn-high", "late", "stats"]);
}

#[test]
fn an_invalid_plugin_names_its_field_and_fails_closed_on_its_targets() {
    let c = ready(&plugin(
        "bad",
        "kind: HTTPRoute, name: api-routes",
        "  phase: AUTH\n",
    ));
    let status = accepted(&c, Kind::WasmPlugin, "bad");
    assert_eq!((status[0].0, status[0].1), (false, Reason::Invalid));
    assert!(status[0].2.contains("phase: \"AUTH\""), "{}", status[0].2);
    let on_rule = plugins_of(&c, 80, "a.example", "/api");
    assert!(on_rule[0].1.as_ref().unwrap_err().starts_with("invalid: "));
}

#[test]
fn fail_open_is_carried_to_the_rule() {
    let c = ready(&plugin(
        "soft",
        "kind: HTTPRoute, name: api-routes",
        "  failStrategy: FailOpen\n",
    ));
    let rule = rule_at(&c, 80, "a.example", "/api");
    assert_eq!(
        rule.plugins.as_ref().unwrap().after_filters[0].fail,
        FailStrategy::FailOpen
    );
}

const DISABLED_CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec:
  controllerName: loom.dev/gateway-controller
  parametersRef: {group: gateway.loom.dev, kind: GatewayClassConfig, name: no-plugins, namespace: default}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: GatewayClassConfig
metadata: {name: no-plugins}
spec:
  plugins: {enabled: false}
"#;

#[test]
fn a_class_that_disables_plugins_runs_none_and_says_so() {
    let c = ready(&format!("{DISABLED_CLASS}---\n{ISSUE_PLUGIN}"));
    let status = accepted(&c, Kind::WasmPlugin, "auth-plugin");
    assert_eq!((status[0].0, status[0].1), (false, Reason::Disabled));
    assert!(
        status[0].2.contains("GatewayClassConfig no-plugins"),
        "{}",
        status[0].2
    );
    assert_eq!(plugins_of(&c, 80, "a.example", "/api"), vec![]);
}

#[test]
fn the_issue_class_config_reads_and_wazero_means_loom_s_engine() {
    let config = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec:
  controllerName: loom.dev/gateway-controller
  parametersRef: {group: gateway.loom.dev, kind: GatewayClassConfig, name: with-plugins, namespace: default}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: GatewayClassConfig
metadata: {name: with-plugins}
spec:
  deployment:
    replicas: 3
    resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: 1000m, memory: 512Mi}}
  serviceType: LoadBalancer
  plugins:
    enabled: true
    runtime: wazero
"#;
    let c = ready(&format!("{config}---\n{ISSUE_PLUGIN}"));
    let status = accepted(&c, Kind::WasmPlugin, "auth-plugin");
    assert!(status[0].0, "{status:?}");
    assert!(
        status[0].2.contains("plugins.runtime \"wazero\""),
        "{}",
        status[0].2
    );
    assert_eq!(plugins_of(&c, 80, "a.example", "/api").len(), 1);
}

#[test]
fn a_missing_target_is_target_not_found() {
    let c = ready(&plugin("lost", "kind: HTTPRoute, name: nope", ""));
    let status = accepted(&c, Kind::WasmPlugin, "lost");
    assert_eq!((status[0].0, status[0].1), (false, Reason::TargetNotFound));
}
