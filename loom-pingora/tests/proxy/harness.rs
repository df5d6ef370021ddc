//! The one in-process server and the configuration it serves. Every test adds its own objects
//! under a key of its own ([`publish`]); the harness publishes the union, so a test never sees
//! another's Gateway and tests run in parallel. Object names and ports must not collide: name
//! objects after the test (the `web` fixture takes a name for that).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use loom_core::input::ObjectKey;
use loom_core::status::StatusAddress;
use loom_pingora::frontend::{ClientLimits, HeadLimits};
use loom_pingora::handle::Published;
use loom_pingora::upstream::peer::BackendTimeouts;
use loom_pingora::{ServeOptions, SnapshotHandle};

/// The server's request head deadlines: short, so tests of them are quick.
pub(crate) const HEAD_LIMITS: HeadLimits = HeadLimits {
    head: Duration::from_secs(1),
    idle: Duration::from_secs(2),
};

/// The server's backend timeouts where a route sets none: short, so tests of them are quick.
pub(crate) const BACKEND_TIMEOUTS: BackendTimeouts = BackendTimeouts {
    connect: Duration::from_secs(1),
    read: Duration::from_secs(3),
};

const GATEWAY_CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: loom.dev/gateway-controller}
"#;

/// The server's handle, started on first use.
pub(crate) fn server() -> &'static SnapshotHandle {
    static HANDLE: OnceLock<SnapshotHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = SnapshotHandle::new();
        let serve = ServeOptions {
            default_bind: "127.0.0.1".parse().unwrap(),
            threads: 2,
            client: ClientLimits {
                head: HEAD_LIMITS,
                ..ClientLimits::default()
            },
            backend: BACKEND_TIMEOUTS,
            ..Default::default()
        };
        let server = loom_pingora::server(handle.clone(), &serve).unwrap();
        std::thread::spawn(move || server.run_forever());
        handle
    })
}

fn configs() -> MutexGuard<'static, BTreeMap<String, String>> {
    static CONFIGS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    CONFIGS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the objects of `key` to `yaml` (multi-document) and publishes every key's objects.
/// Returns what was published.
pub(crate) fn publish(key: &str, yaml: &str) -> std::sync::Arc<Published> {
    let mut configs = configs();
    configs.insert(key.to_owned(), yaml.to_owned());
    publish_all(&configs)
}

/// Unpublishes the objects of its key when dropped, so that every publish compiles only the
/// configurations of the tests running at the time.
pub(crate) struct Owned(String);

impl Drop for Owned {
    fn drop(&mut self) {
        unpublish(&self.0);
    }
}

/// Like [`publish`], and the objects go when the returned value is dropped.
pub(crate) fn publish_owned(key: &str, yaml: &str) -> (Owned, std::sync::Arc<Published>) {
    let published = publish(key, yaml);
    (Owned(key.to_owned()), published)
}

/// Removes the objects of `key` and publishes the rest.
pub(crate) fn unpublish(key: &str) {
    let mut configs = configs();
    configs.remove(key);
    publish_all(&configs);
}

fn publish_all(configs: &BTreeMap<String, String>) -> std::sync::Arc<Published> {
    let handle = server();
    let mut yaml = GATEWAY_CLASS.to_owned();
    for c in configs.values() {
        yaml.push_str("\n---\n");
        yaml.push_str(c);
    }
    let loaded = loom_core::load::load_str("test.yaml", &yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let input = loom_core::Input::from_objects(loaded.objects.into_iter().map(|(_, o)| o));
    let options = loom_core::Options {
        default_addresses: vec![StatusAddress {
            type_: "IPAddress".into(),
            value: "127.0.0.1".into(),
        }],
        ..Default::default()
    };
    handle.publish(loom_core::compile_with(&input, &options), Duration::ZERO);
    handle.load()
}

/// Asserts that every object of `published` that `mine` picks is healthy (Accepted,
/// ResolvedRefs, Programmed), printing the status of one that is not.
pub(crate) fn assert_healthy(published: &Published, mine: impl Fn(&ObjectKey) -> bool) {
    for (k, st) in &published.status.load().objects {
        if mine(k) {
            assert!(
                st.is_healthy(),
                "{k}: {}",
                serde_json::to_string(st).unwrap()
            );
        }
    }
}

/// Held by tests that load the machine (many requests, many publishes) and by tests that
/// measure time, so that the two never overlap.
pub(crate) fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Gateway `{name}` in `default` with one HTTP listener, `http`, on `port`.
pub(crate) fn gateway(name: &str, port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gatewayClassName: loom\n  listeners: [{{name: http, port: {port}, protocol: HTTP}}]"
    )
}

/// The `web` fixture: Gateway `{name}` with one HTTP listener on `port`, Backends `{name}-a`
/// and `{name}-b` at the given loopback ports, and HTTPRoute `{name}-web` for
/// `web.example.com`:
///
/// - `/b…`: request header `x-test: set-by-loom`, response header `x-resp: added`, no
///   `x-backend`, path rewritten to `/rewritten…`, to `b`;
/// - `/moved`: 308 to `new.example.com`;
/// - `/missing…`: a backendRef to a Service that does not exist (500);
/// - everything else to `a`;
///
/// then `extra_rule` (YAML lines of more rules, indented as rules).
pub(crate) fn web(name: &str, port: u16, a: u16, b: u16, extra_rule: &str) -> String {
    format!(
        r#"
{gateway}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-a, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{a}"]}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: {name}-b, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{b}"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}-web, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  hostnames: [web.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /b}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-test, value: set-by-loom}}]}}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{add: [{{name: x-resp, value: added}}], remove: [x-backend]}}
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}}}
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-b}}]
  - matches: [{{path: {{type: Exact, value: /moved}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {{hostname: new.example.com, statusCode: 308}}}}]
  - matches: [{{path: {{type: PathPrefix, value: /missing}}}}]
    backendRefs: [{{name: no-such-service, port: 80}}]
  - backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-a}}]
{extra_rule}
"#,
        gateway = crate::harness::gateway(name, port),
    )
}

/// A running `web` fixture: its port and backends, published and answering until dropped.
pub(crate) struct Web {
    pub(crate) port: u16,
    pub(crate) a: u16,
    pub(crate) b: u16,
    _owned: Owned,
}

/// Publishes the `web` fixture as `name` on a free port with fresh echo backends `a` and `b`,
/// and waits until it answers.
pub(crate) fn start_web(name: &str) -> Web {
    let (a, b) = (
        crate::backends::echo_backend("a"),
        crate::backends::echo_backend("b"),
    );
    let port = crate::clients::free_port();
    let (owned, _) = publish_owned(name, &web(name, port, a, b, ""));
    crate::clients::wait_for(|| {
        crate::clients::get(port, "web.example.com", "/", "").is_ok_and(|r| r.status == 200)
    });
    Web {
        port,
        a,
        b,
        _owned: owned,
    }
}
