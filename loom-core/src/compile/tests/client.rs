//! ClientTrafficPolicy: the manifest users write, which policy sets each port's client limits
//! (listener > Gateway, the older of two listeners sharing a port), and the status each target
//! gets.

use std::time::Duration;

use super::*;
use crate::snapshot::ClientSettings;

/// Gateway `edge`: listeners `web` and `api` share port 80 (by hostname), `alt` has port 81.
const EDGE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: loom
  listeners:
  - {name: web, port: 80, protocol: HTTP, hostname: web.example}
  - {name: api, port: 80, protocol: HTTP, hostname: api.example}
  - {name: alt, port: 81, protocol: HTTP}
"#;

/// The manifest of issue #10, verbatim.
const STRICT_CLIENTS: &str = r#"
apiVersion: gateway.loom.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: strict-clients, namespace: default}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: web}  # or targetRefs: [...]
  headerTimeout: 10s     # whole HTTP/1 request head
  idleTimeout: 30s       # keep-alive idle (HTTP/1 between requests, HTTP/2 without streams), >= 1s
  maxConnections: 500    # per listener port
"#;

fn compiled(policies: &str) -> Compiled {
    compile(&input(&format!("{EDGE}---\n{policies}")))
}

/// A ClientTrafficPolicy `name` created on day `day` of 2026, on `target` (a flow mapping),
/// with `fields` (YAML lines of the spec, indented by two).
fn policy(name: &str, day: u32, target: &str, fields: &str) -> String {
    format!(
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {{name: {name}, namespace: default, creationTimestamp: '2026-01-{day:02}T00:00:00Z'}}\n\
         spec:\n  targetRef: {target}\n{fields}---\n"
    )
}

const GATEWAY: &str = "{group: gateway.networking.k8s.io, kind: Gateway, name: edge}";

fn listener(name: &str) -> String {
    format!("{{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: {name}}}")
}

/// `(status, reason, message)` of the Accepted condition of each ancestor of a policy.
fn accepted(c: &Compiled, name: &str) -> Vec<(bool, Reason, String)> {
    let key = ObjectKey {
        kind: Kind::ClientTrafficPolicy,
        namespace: "default".into(),
        name: name.into(),
    };
    let Some(ObjectStatus::Policy(p)) = c.status.get(&key) else {
        panic!("no status for {key}");
    };
    p.ancestors
        .iter()
        .map(|a| {
            let c = a.conditions.get(ConditionType::Accepted).unwrap();
            (c.status, c.reason, c.message.to_string())
        })
        .collect()
}

fn client(c: &Compiled, port: u16) -> Option<&ClientSettings> {
    c.snapshot
        .port(&GatewayName::new("default", "edge"), port)
        .expect("the port is served")
        .client
        .as_ref()
}

/// The name of the policy that sets a port's client limits.
fn policy_of(c: &Compiled, port: u16) -> Option<&str> {
    client(c, port).map(|s| s.policy.name.as_str())
}

#[test]
fn the_issue_manifest_is_accepted_and_sets_the_limits_of_its_listeners_port() {
    let c = compiled(STRICT_CLIENTS);
    assert_eq!(
        accepted(&c, "strict-clients"),
        [(
            true,
            Reason::Accepted,
            "enforced on Gateway edge listener web: client connections to its ports get these limits".into()
        )]
    );
    let Some(ObjectStatus::Policy(p)) = c.status.get(&ObjectKey {
        kind: Kind::ClientTrafficPolicy,
        namespace: "default".into(),
        name: "strict-clients".into(),
    }) else {
        panic!("no policy status");
    };
    let ancestor = &p.ancestors[0].ancestor_ref;
    assert_eq!(
        (ancestor.kind.as_deref(), ancestor.name.as_str()),
        (Some("Gateway"), "edge")
    );
    assert_eq!(ancestor.section_name.as_deref(), Some("web"));
    let settings = client(&c, 80).expect("port 80 has client limits");
    assert_eq!(
        settings.policy.to_string(),
        "ClientTrafficPolicy default/strict-clients"
    );
    assert_eq!(settings.header_timeout, Some(Duration::from_secs(10)));
    assert_eq!(settings.idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(settings.max_connections, Some(500));
    // Listener `api` shares port 80, so its connections get the same limits; port 81 keeps the
    // data plane's defaults.
    assert_eq!(client(&c, 81), None);
}

#[test]
fn fields_a_policy_leaves_out_are_left_to_the_data_plane() {
    let c = compiled(&policy("idle-only", 1, GATEWAY, "  idleTimeout: 1500ms\n"));
    let settings = client(&c, 81).unwrap();
    assert_eq!(settings.idle_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(settings.header_timeout, None);
    assert_eq!(settings.max_connections, None);
}

#[test]
fn a_listener_policy_wins_its_port_over_the_gateways() {
    let c = compiled(&format!(
        "{}{}",
        policy("whole-gateway", 1, GATEWAY, "  maxConnections: 100\n"),
        policy("alt-only", 2, &listener("alt"), "  idleTimeout: 5s\n"),
    ));
    assert_eq!(policy_of(&c, 80), Some("whole-gateway"));
    assert_eq!(client(&c, 80).unwrap().max_connections, Some(100));
    assert_eq!(policy_of(&c, 81), Some("alt-only"));
    // The listener policy replaces the Gateway's on its port: what it leaves out is the
    // data plane's default, not the Gateway policy's value.
    assert_eq!(client(&c, 81).unwrap().max_connections, None);
    assert!(accepted(&c, "whole-gateway")[0].0);
    assert!(accepted(&c, "alt-only")[0].0);
}

#[test]
fn of_two_listeners_sharing_a_port_the_older_policy_sets_it_and_the_other_is_conflicted() {
    let c = compiled(&format!(
        "{}{}",
        policy("on-api", 5, &listener("api"), "  maxConnections: 2\n"),
        policy("on-web", 3, &listener("web"), "  maxConnections: 1\n"),
    ));
    assert_eq!(policy_of(&c, 80), Some("on-web"));
    assert!(accepted(&c, "on-web")[0].0);
    let (status, reason, message) = accepted(&c, "on-api").remove(0);
    assert_eq!((status, reason), (false, Reason::Conflicted));
    assert!(
        message.contains("listeners \"api\" and \"web\" share port 80")
            && message.contains("ClientTrafficPolicy default/on-web"),
        "{message}"
    );
}

#[test]
fn of_two_policies_on_one_target_the_older_wins_and_the_other_is_conflicted() {
    let c = compiled(&format!(
        "{}{}",
        policy("newer", 9, GATEWAY, "  maxConnections: 2\n"),
        policy("older", 1, GATEWAY, "  maxConnections: 1\n"),
    ));
    assert_eq!(policy_of(&c, 81), Some("older"));
    let (status, reason, message) = accepted(&c, "newer").remove(0);
    assert_eq!((status, reason), (false, Reason::Conflicted));
    assert!(
        message.contains("ClientTrafficPolicy default/older"),
        "{message}"
    );
}

#[test]
fn invalid_values_name_the_field_and_set_nothing() {
    for (fields, why) in [
        (
            "  idleTimeout: 500ms\n",
            "idleTimeout: \"500ms\" is shorter than 1s",
        ),
        (
            "  headerTimeout: soon\n",
            "headerTimeout: \"soon\" is not a positive duration",
        ),
        (
            "  headerTimeout: 0s\n",
            "headerTimeout: \"0s\" is not a positive duration",
        ),
        ("  maxConnections: 0\n", "maxConnections must be at least 1"),
        (
            "",
            "the policy sets nothing: it needs headerTimeout, idleTimeout or maxConnections",
        ),
    ] {
        let c = compiled(&policy("bad", 1, GATEWAY, fields));
        assert_eq!(
            accepted(&c, "bad"),
            [(false, Reason::Invalid, why.into())],
            "{fields:?}"
        );
        assert_eq!(client(&c, 80), None, "{fields:?}");
    }
}

#[test]
fn an_invalid_older_policy_does_not_hold_its_target() {
    let c = compiled(&format!(
        "{}{}",
        policy("broken", 1, GATEWAY, "  maxConnections: 0\n"),
        policy("good", 2, GATEWAY, "  maxConnections: 7\n"),
    ));
    assert_eq!(policy_of(&c, 80), Some("good"));
    assert!(accepted(&c, "good")[0].0);
}

#[test]
fn a_missing_gateway_or_listener_is_target_not_found_and_other_kinds_are_invalid() {
    let c = compiled(&format!(
        "{}{}{}",
        policy(
            "no-gateway",
            1,
            "{group: gateway.networking.k8s.io, kind: Gateway, name: nope}",
            "  maxConnections: 1\n"
        ),
        policy("no-listener", 1, &listener("nope"), "  maxConnections: 1\n"),
        policy(
            "on-route",
            1,
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}",
            "  maxConnections: 1\n"
        ),
    ));
    assert_eq!(
        accepted(&c, "no-gateway"),
        [(
            false,
            Reason::TargetNotFound,
            "Gateway default/nope not found".into()
        )]
    );
    assert_eq!(
        accepted(&c, "no-listener"),
        [(
            false,
            Reason::TargetNotFound,
            "Gateway default/edge section \"nope\" not found".into()
        )]
    );
    let (status, reason, message) = accepted(&c, "on-route").remove(0);
    assert_eq!((status, reason), (false, Reason::Invalid));
    assert!(
        message.contains("ClientTrafficPolicy cannot target HTTPRoute"),
        "{message}"
    );
    assert_eq!(client(&c, 80), None);
}

#[test]
fn target_refs_give_one_ancestor_each() {
    let c = compiled(&format!(
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {{name: both, namespace: default}}\n\
         spec:\n  targetRefs: [{}, {}]\n  maxConnections: 3\n",
        listener("alt"),
        listener("nope"),
    ));
    let ancestors = accepted(&c, "both");
    assert_eq!(ancestors.len(), 2);
    assert!(ancestors[0].0);
    assert_eq!(ancestors[1].1, Reason::TargetNotFound);
    assert_eq!(policy_of(&c, 81), Some("both"));
}

#[test]
fn the_snapshot_description_shows_a_ports_client_limits() {
    let c = compiled(STRICT_CLIENTS);
    let described = crate::snapshot::describe(&c.snapshot);
    let ports = &described["default/edge"]["ports"];
    assert_eq!(
        ports["80"]["client"],
        serde_json::json!({"policy": "ClientTrafficPolicy default/strict-clients",
            "headerTimeout": "10s", "idleTimeout": "30s", "maxConnections": 500})
    );
    assert!(ports["81"].get("client").is_none());
}

#[test]
fn unknown_fields_are_load_errors_with_file_line_and_field() {
    let loaded = load_str(
        "clients.yaml",
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {name: c}\nspec:\n  targetRef: {kind: Gateway, name: edge}\n  idleTimeoutMs: 5\n",
    );
    assert_eq!(loaded.objects.len(), 0);
    let e = loaded.errors[0].to_string();
    assert!(e.starts_with("clients.yaml:"), "{e}");
    assert!(e.contains("idleTimeoutMs"), "{e}");
}
