//! WASMPlugins end to end: `loom serve` as a process, the plugins of `examples/wasm` built
//! from source with Go (GOOS=wasip1), a backend that echoes the request head it got, and raw
//! HTTP clients. Without Go these tests are skipped, loudly, unless `LOOM_REQUIRE_GO=1` (CI).

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use support::{
    Response, Server, TestDir, admin_get, free_port, metric, request, serve, status, test_dir,
    wait_for, wait_within,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// How long a module may take to load: a Go module is compiled twice when it loads (its
/// initialization checked under a fuel budget, then the code calls run), by a debug build's
/// host on a machine that may be busy with other tests.
const COMPILE: Duration = Duration::from_secs(120);

/// Runs a script of the repository with bash; its standard output.
fn bash(script: &str) -> String {
    let out = Command::new("bash")
        .arg(script)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The plugins of examples/wasm, built once per test binary; `None` (skip) without Go.
fn plugins() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let go = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
            if !go {
                assert!(
                    std::env::var_os("LOOM_REQUIRE_GO").is_none_or(|v| v != "1"),
                    "go is required to build the example plugins"
                );
                eprintln!("*** skipped: WASMPlugin tests (go not found; LOOM_REQUIRE_GO=1 makes this fail)");
                return None;
            }
            bash("examples/wasm/build.sh");
            Some(root().join("examples/wasm"))
        })
        .as_deref()
}

/// A backend that answers 200 with the request head it received as the body (so tests see
/// the headers plugins set), and `x-backend: yes`.
fn echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16384];
                loop {
                    let Ok(n) = s.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nx-backend: yes\r\ncontent-length: {}\r\n\r\n{head}",
                        head.len()
                    );
                    if s.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A Gateway on `port` with routes `api` (`/api`, rules `open` and `/api/guarded` named
/// `guarded`) and `plain` (`/plain`), both to the echo backend on `backend`; then `plugins`.
fn config(port: u16, backend: u16, plugins: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: loom}}
spec: {{controllerName: loom.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: loom
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api-routes, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - name: guarded
    matches: [{{path: {{type: PathPrefix, value: /api/guarded}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: echo}}]
  - name: open
    matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: echo}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: plain, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /plain}}}}]
    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: echo}}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: echo, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{backend}"]}}
---
{plugins}"#
    )
}

/// The time budget of the plugins in tests that are about neither the budget nor the issue's
/// manifest as written: the 5 ms default is wall-clock time, which a call can overrun on a CI
/// machine whose two cores are busy with the other test binaries (the plugin then fails
/// closed: a 500).
const BUDGET: &str = "1s";

/// [`BUDGET`] as a `spec` line.
fn budget() -> String {
    format!("  timeout: {BUDGET}\n")
}

/// The WASMPlugin of issue #12 as users write it, with the auth plugin built here as a file
/// (the OCI form is tested in `oci_*`).
fn auth_plugin(dir: &Path, audience: &str) -> String {
    format!(
        r#"apiVersion: gateway.loom.dev/v1alpha1
kind: WASMPlugin
metadata:
  name: auth-plugin
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: api-routes
  url: file://{}/auth/plugin.wasm
  phase: AUTHN
  config:
    audience: {audience}
    secret: test-secret
"#,
        dir.display()
    )
}

/// `spec.targetRef` lines for [`plugin`]: the route `api-routes`, its rules `guarded` and
/// `open`, the route `plain`, the Gateway.
const API_ROUTES: &str =
    "  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes}\n";
const GUARDED: &str = "  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes, sectionName: guarded}\n";
const OPEN: &str = "  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-routes, sectionName: open}\n";
const PLAIN: &str =
    "  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: plain}\n";
const GATEWAY: &str = "  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n";

/// A plugin from examples/wasm (`name` is its directory) with `spec` lines added.
fn plugin(dir: &Path, name: &str, module: &str, spec: &str) -> String {
    let timeout = if spec.contains("timeout:") {
        String::new()
    } else {
        budget()
    };
    format!(
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: WASMPlugin\nmetadata: {{name: {name}}}\n\
         spec:\n  url: {}/{module}/plugin.wasm\n{spec}{timeout}",
        dir.display()
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// An HS256 JWT with these claims, signed with `secret`.
fn jwt(claims: &str, secret: &str) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.as_bytes())
    );
    let sig = hmac_sha256(secret.as_bytes(), signed.as_bytes());
    format!("{signed}.{}", b64(&sig))
}

/// The wall clock, as the plugin reads `exp` against it (WASI's clock).
#[allow(clippy::disallowed_methods)] // the workspace bans the clock for loom-core's sake
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `loom serve` on `yaml` (written to a test directory), once the route answers.
struct Running {
    _server: Server,
    dir: TestDir,
    port: u16,
    admin: u16,
}

impl Running {
    /// Serves `yaml`, once every plugin's module has loaded or been refused (`loom serve`
    /// waits 10 s at most; a loaded machine may take longer to compile).
    fn start(name: &str, yaml: impl Fn(u16) -> String) -> Running {
        let loom = Running::start_pending(name, yaml);
        let settled = || -> Option<bool> {
            let (_, body) = admin_get(loom.admin, "/config")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let status = v["status"].as_object()?;
            Some(
                status
                    .iter()
                    .filter(|(k, _)| k.starts_with("WASMPlugin "))
                    .flat_map(|(_, s)| s["ancestors"].as_array().cloned().unwrap_or_default())
                    .flat_map(|a| a["conditions"].as_array().cloned().unwrap_or_default())
                    .all(|c| c["reason"] != "Pending"),
            )
        };
        wait_within("the plugins' modules", COMPILE, || settled() == Some(true));
        loom
    }

    /// Serves `yaml` as soon as it answers, plugins loaded or not.
    fn start_pending(name: &str, yaml: impl Fn(u16) -> String) -> Running {
        let dir = test_dir(name);
        let port = free_port();
        let admin = free_port();
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml(port)).unwrap();
        let cache = std::env::temp_dir().join("loom-test-plugin-cache");
        let server = serve(&path, admin, &["--plugin-cache", cache.to_str().unwrap()]);
        // Served once it answers (with its plugins loaded: `loom serve` waits for them first).
        wait_for("the route", || status(port, "/plain").is_some());
        Running {
            _server: server,
            dir,
            port,
            admin,
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.port, path, headers)
    }

    fn rewrite(&self, yaml: String) {
        let path = self.dir.join("config.yaml");
        let tmp = self.dir.join("config.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// The Accepted condition of a WASMPlugin (status, reason, message) from `/config`.
    fn accepted(&self, name: &str) -> Option<(String, String, String)> {
        let (_, body) = admin_get(self.admin, "/config")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let o = &v["status"][format!("WASMPlugin default/{name}")];
        let c = o["ancestors"][0]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Accepted")?
            .clone();
        Some((
            c["status"].as_str()?.to_owned(),
            c["reason"].as_str()?.to_owned(),
            c["message"].as_str()?.to_owned(),
        ))
    }
}

#[test]
fn the_auth_plugin_admits_good_tokens_and_answers_401_to_the_rest() {
    let Some(dir) = plugins() else { return };
    let backend = echo_backend();
    let loom = Running::start("auth", |port| {
        config(port, backend, &auth_plugin(dir, "api.example.com"))
    });
    let auth = |token: &str| format!("Bearer {token}");
    let good = jwt(r#"{"sub":"alice","aud":"api.example.com"}"#, "test-secret");
    let ok = loom.get("/api/items", &[("authorization", &auth(&good))]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("x-auth-subject: alice"), "{}", ok.body);

    let none = loom.get("/api/items", &[]);
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some(r#"Bearer realm="api.example.com""#)
    );
    assert_eq!(none.header("x-backend"), None, "the backend was not asked");

    let cases = [
        (
            "wrong audience",
            jwt(r#"{"sub":"a","aud":"other.example.com"}"#, "test-secret"),
        ),
        (
            "bad signature",
            jwt(r#"{"sub":"a","aud":"api.example.com"}"#, "not-the-secret"),
        ),
        (
            "token expired",
            jwt(
                &format!(
                    r#"{{"sub":"a","aud":"api.example.com","exp":{}}}"#,
                    now() - 60
                ),
                "test-secret",
            ),
        ),
        ("malformed token", "abc".to_owned()),
    ];
    for (why, token) in cases {
        let r = loom.get("/api/items", &[("authorization", &auth(&token))]);
        assert_eq!(r.status, 401, "{why}");
        let challenge = r.header("www-authenticate").unwrap_or("");
        assert!(
            challenge.contains(&format!(r#"error_description="{why}""#)),
            "{why}: {challenge}"
        );
    }
    // `exp` in the future, `aud` as a list.
    let later = jwt(
        &format!(
            r#"{{"sub":"bob","aud":["x","api.example.com"],"exp":{}}}"#,
            now() + 600
        ),
        "test-secret",
    );
    let r = loom.get("/api/items", &[("authorization", &auth(&later))]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("x-auth-subject: bob"));
    // Routes the plugin does not target pay nothing and are not guarded.
    assert_eq!(loom.get("/plain", &[]).status, 200);
    let (status, reason, message) = loom.accepted("auth-plugin").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Accepted"),
        "{message}"
    );
}

#[test]
fn a_config_change_applies_without_a_restart() {
    let Some(dir) = plugins() else { return };
    let backend = echo_backend();
    // The issue's manifest with a budget: this test is about the reload.
    let auth = |audience| format!("{}{}", auth_plugin(dir, audience), budget());
    let loom = Running::start("config-change", |port| config(port, backend, &auth("one")));
    let for_one = format!("Bearer {}", jwt(r#"{"aud":"one"}"#, "test-secret"));
    let for_two = format!("Bearer {}", jwt(r#"{"aud":"two"}"#, "test-secret"));
    let r = loom.get("/api", &[("authorization", &for_one)]);
    assert_eq!(
        r.status,
        200,
        "x-loom-plugin: {:?}",
        r.header("x-loom-plugin")
    );
    assert_eq!(loom.get("/api", &[("authorization", &for_two)]).status, 401);
    loom.rewrite(config(loom.port, backend, &auth("two")));
    wait_for("the new audience", || {
        loom.get("/api", &[("authorization", &for_two)]).status == 200
    });
    assert_eq!(loom.get("/api", &[("authorization", &for_one)]).status, 401);
}

#[test]
fn phases_then_priorities_order_plugins_and_the_response_side_runs_in_reverse() {
    let Some(dir) = plugins() else { return };
    let backend = echo_backend();
    let plugins = [
        plugin(
            dir,
            "tag-late",
            "testdata/tag",
            &format!("{API_ROUTES}  config: {{tag: late}}\n"),
        ),
        plugin(
            dir,
            "tag-authz",
            "testdata/tag",
            &format!("{GUARDED}  phase: AUTHZ\n  config: {{tag: authz}}\n"),
        ),
        plugin(
            dir,
            "tag-authn-low",
            "testdata/tag",
            &format!("{GATEWAY}  phase: AUTHN\n  priority: -1\n  config: {{tag: authn-low}}\n"),
        ),
        plugin(
            dir,
            "tag-authn-high",
            "testdata/tag",
            &format!("{API_ROUTES}  phase: AUTHN\n  priority: 5\n  config: {{tag: authn-high}}\n"),
        ),
    ]
    .join("---\n");
    let loom = Running::start("order", |port| config(port, backend, &plugins));
    let r = loom.get("/api/guarded/x", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("x-plugin-order: authn-high,authn-low,authz,late"),
        "{}",
        r.body
    );
    assert_eq!(
        r.header("x-plugin-response-order"),
        Some("late,authz,authn-low,authn-high")
    );
    // The other rule: no AUTHZ plugin (it targets `guarded`).
    let r = loom.get("/api/open", &[]);
    assert!(
        r.body.contains("x-plugin-order: authn-high,authn-low,late"),
        "{}",
        r.body
    );
    // The Gateway's plugin reaches every route on it.
    let r = loom.get("/plain", &[]);
    assert!(r.body.contains("x-plugin-order: authn-low"), "{}", r.body);
}

#[test]
fn a_failing_plugin_fails_closed_by_default_and_is_skipped_with_fail_open() {
    let Some(dir) = plugins() else { return };
    let backend = echo_backend();
    let plugins = [
        plugin(dir, "trap-closed", "testdata/trap", GUARDED),
        plugin(
            dir,
            "trap-open",
            "testdata/trap",
            &format!("{OPEN}  failStrategy: FailOpen\n"),
        ),
        plugin(
            dir,
            "trap-response",
            "testdata/tag",
            &format!("{PLAIN}  config: {{tag: t, trap: response}}\n"),
        ),
    ]
    .join("---\n");
    let loom = Running::start("trap", |port| config(port, backend, &plugins));
    let r = loom.get("/api/guarded", &[]);
    assert_eq!(r.status, 500);
    assert_eq!(
        r.header("x-loom-plugin"),
        Some("default/trap-closed; failed")
    );
    assert_eq!(r.header("x-backend"), None);
    let r = loom.get("/api/open", &[]);
    assert_eq!(r.status, 200, "FailOpen skips the plugin");
    assert_eq!(r.header("x-backend"), Some("yes"));
    let failures = |plugin: &str, strategy: &str| {
        metric(
            loom.admin,
            &format!(
                "loom_plugin_failures_total{{fail_strategy=\"{strategy}\",plugin=\"default/{plugin}\",reason=\"failed\"}}"
            ),
        )
    };
    assert_eq!(failures("trap-closed", "FailClose"), 1.0);
    assert_eq!(failures("trap-open", "FailOpen"), 1.0);
    // A plugin that fails on the response side: the response becomes a 500.
    let before = failures("trap-response", "FailClose");
    let r = loom.get("/plain", &[]);
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-plugin-response-order"), None);
    assert_eq!(failures("trap-response", "FailClose"), before + 1.0);
}

#[test]
fn a_plugin_that_never_returns_is_stopped_at_its_budget_and_the_gateway_stays_responsive() {
    let Some(dir) = plugins() else { return };
    let backend = echo_backend();
    let plugins = [
        plugin(
            dir,
            "spin-closed",
            "testdata/spin",
            &format!("{GUARDED}  timeout: 50ms\n"),
        ),
        plugin(
            dir,
            "spin-open",
            "testdata/spin",
            &format!("{OPEN}  timeout: 50ms\n  failStrategy: FailOpen\n"),
        ),
    ]
    .join("---\n");
    let loom = Running::start("spin", |port| config(port, backend, &plugins));
    for _ in 0..3 {
        let started = Instant::now();
        let r = loom.get("/api/guarded", &[]);
        let took = started.elapsed();
        assert_eq!(r.status, 500);
        // 50 ms of budget; a debug build, the timer thread's tick and a fresh instance add
        // some, never seconds.
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
        assert!(took >= Duration::from_millis(50), "answered after {took:?}");
        let started = Instant::now();
        let r = loom.get("/api/open", &[]);
        assert_eq!(r.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
        // Routes without plugins answer as ever.
        assert_eq!(loom.get("/plain", &[]).status, 200);
    }
}

#[test]
fn a_module_whose_sha256_differs_is_refused_and_its_route_fails_closed() {
    let Some(dir) = plugins() else { return };
    let backend = echo_backend();
    let wrong = "0".repeat(64);
    let spec = format!("{API_ROUTES}  sha256: {wrong}\n");
    let loom = Running::start("sha256", |port| {
        config(port, backend, &plugin(dir, "pinned", "headers", &spec))
    });
    let (status, reason, message) = loom.accepted("pinned").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        message.contains(&format!("spec.sha256 says {wrong}")),
        "{message}"
    );
    let r = loom.get("/api", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("x-loom-plugin"),
        Some("default/pinned; not loaded")
    );
    // With the right digest it runs.
    let module = std::fs::read(dir.join("headers/plugin.wasm")).unwrap();
    let right: String = Sha256::digest(&module)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    loom.rewrite(config(
        loom.port,
        backend,
        &plugin(dir, "pinned", "headers", &spec.replace(&wrong, &right)),
    ));
    wait_within("the pinned plugin", COMPILE, || {
        loom.get("/api", &[]).status == 200
    });
    assert_eq!(loom.accepted("pinned").unwrap().0, "True");
}

#[test]
fn a_stats_plugin_sees_the_response_and_its_latency() {
    let Some(dir) = plugins() else { return };
    let backend = echo_backend();
    let spec = format!("{PLAIN}  phase: STATS\n  config: {{response: {{x-seen: stats}}}}\n");
    let loom = Running::start("stats", |port| {
        config(port, backend, &plugin(dir, "stats", "headers", &spec))
    });
    let r = loom.get("/plain", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen"), Some("stats"));
    let timing = r.header("server-timing").unwrap_or("");
    let ms: f64 = timing
        .strip_prefix("gateway;dur=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("server-timing {timing:?}"));
    assert!(ms > 0.0 && ms < 10_000.0, "{ms}");
    // STATS runs after the backend: the request the backend saw has no header from it.
    assert!(!r.body.contains("x-seen"));
}

/// The OCI tools of `ci/oci/tools` (registry, oras, htpasswd), built once; `None` without Go.
fn oci_tools() -> Option<&'static OciTools> {
    static TOOLS: OnceLock<Option<OciTools>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            plugins()?;
            let text = bash("ci/oci/tools");
            let path = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}=")))
                    .map(PathBuf::from)
                    .unwrap_or_else(|| panic!("ci/oci/tools printed no {name}: {text}"))
            };
            Some(OciTools {
                registry: path("registry"),
                oras: path("oras"),
                htpasswd: path("htpasswd"),
            })
        })
        .as_ref()
}

struct OciTools {
    registry: PathBuf,
    oras: PathBuf,
    htpasswd: PathBuf,
}

/// A CNCF distribution registry on a loopback port, storing in `dir`; with `user`, it asks
/// for basic auth. Killed on drop.
struct Registry {
    _process: Server,
    address: String,
    auth: Option<(String, String)>,
}

impl Registry {
    fn start(tools: &OciTools, dir: &Path, port: u16, user: Option<(&str, &str)>) -> Registry {
        let mut config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n\
             http: {{addr: '127.0.0.1:{port}'}}\n",
            dir.join("storage").display()
        );
        if let Some((u, p)) = user {
            let out = Command::new(&tools.htpasswd).args([u, p]).output().unwrap();
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: loom-test, path: {}}}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("registry.yaml"), config).unwrap();
        let child = Command::new(&tools.registry)
            .arg("serve")
            .arg(dir.join("registry.yaml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        wait_for("the registry", || {
            std::net::TcpStream::connect(&address).is_ok()
        });
        Registry {
            _process: Server(child),
            address,
            auth: user.map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    /// `oras push` of `file` (in `dir`) as a layer of `media_type` to `repository:tag`;
    /// returns the manifest's digest.
    fn push(
        &self,
        tools: &OciTools,
        dir: &Path,
        reference: &str,
        file: &str,
        media_type: &str,
    ) -> String {
        let target = format!("{}/{reference}", self.address);
        let mut push = Command::new(&tools.oras);
        push.args(["push", "--plain-http", "--disable-path-validation"])
            .arg(&target)
            .arg(format!("{file}:{media_type}"))
            .current_dir(dir);
        if let Some((u, p)) = &self.auth {
            push.args(["-u", u, "-p", p]);
        }
        let out = push.output().unwrap();
        assert!(
            out.status.success(),
            "oras push {API_ROUTES}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("Digest: "))
            .unwrap_or_else(|| panic!("oras printed no digest: {text}"))
            .trim()
            .to_owned()
    }
}

/// `plugin.wasm` in a tar+gzip layer, as the Istio/solo "compat" images carry it.
fn compat_layer(module: &Path, dir: &Path) -> &'static str {
    std::fs::copy(module, dir.join("plugin.wasm")).unwrap();
    let status = Command::new("tar")
        .args(["-czf", "plugin.tar.gz", "plugin.wasm"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
    "plugin.tar.gz"
}

fn oci_auth_plugin(name: &str, url: &str, extra: &str) -> String {
    format!(
        "apiVersion: gateway.loom.dev/v1alpha1\nkind: WASMPlugin\nmetadata: {{name: {name}}}\n\
         spec:\n{API_ROUTES}  url: {url}\n  phase: AUTHN\n  config: {{audience: api.example.com, secret: test-secret}}\n{extra}"
    )
}

#[test]
fn oci_the_issue_manifest_pulls_both_layouts_by_tag_and_by_digest() {
    let (Some(dir), Some(tools)) = (plugins(), oci_tools()) else {
        return;
    };
    let work = test_dir("oci-layouts");
    let registry = Registry::start(tools, &work, free_port(), None);
    std::fs::copy(dir.join("auth/plugin.wasm"), work.join("auth.wasm")).unwrap();
    // The CNCF Wasm artifact: the module itself, an application/wasm layer.
    registry.push(
        tools,
        &work,
        "plugins/auth:v1.0",
        "auth.wasm",
        "application/wasm",
    );
    // The compat layout, pulled by digest.
    let layer = compat_layer(&dir.join("auth/plugin.wasm"), &work);
    let digest = registry.push(
        tools,
        &work,
        "plugins/auth-compat:v1",
        layer,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let good = format!(
        "Bearer {}",
        jwt(r#"{"aud":"api.example.com"}"#, "test-secret")
    );
    for url in [
        format!("oci://{}/plugins/auth:v1.0", registry.address),
        format!("oci://{}/plugins/auth-compat@{digest}", registry.address),
    ] {
        let backend = echo_backend();
        let cache = work.join(format!("cache-{}", url.len()));
        let dir = test_dir("oci-serve");
        let port = free_port();
        let admin = free_port();
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            config(port, backend, &oci_auth_plugin("auth-plugin", &url, "")),
        )
        .unwrap();
        let _loom = serve(&path, admin, &["--plugin-cache", cache.to_str().unwrap()]);
        wait_for("the route", || status(port, "/plain") == Some(200));
        wait_within("the module", COMPILE, || status(port, "/api") != Some(503));
        assert_eq!(request(port, "/api", &[]).status, 401, "{url}");
        assert_eq!(
            request(port, "/api", &[("authorization", &good)]).status,
            200,
            "{url}"
        );
    }
}

#[test]
fn oci_a_private_registry_needs_the_pull_secret() {
    let (Some(dir), Some(tools)) = (plugins(), oci_tools()) else {
        return;
    };
    let work = test_dir("oci-private-registry");
    let registry = Registry::start(tools, &work, free_port(), Some(("loom", "s3cret")));
    std::fs::copy(dir.join("auth/plugin.wasm"), work.join("auth.wasm")).unwrap();
    registry.push(
        tools,
        &work,
        "plugins/auth:v1",
        "auth.wasm",
        "application/wasm",
    );
    let url = format!("oci://{}/plugins/auth:v1", registry.address);
    let auth = base64::engine::general_purpose::STANDARD.encode("loom:s3cret");
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: registry-creds, namespace: default}}\n\
         type: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}'\n",
        registry.address
    );
    let backend = echo_backend();
    let loom = Running::start_pending("oci-private", |port| {
        config(
            port,
            backend,
            &oci_auth_plugin("anonymous", &url, &budget()),
        )
    });
    // Without credentials: pending, retried, saying why.
    wait_for("the pull to fail", || {
        loom.accepted("anonymous").is_some_and(|(_, reason, m)| {
            reason == "Pending" && m.contains("the registry wants credentials: set imagePullSecret")
        })
    });
    assert_eq!(loom.get("/api", &[]).status, 503);
    loom.rewrite(config(
        loom.port,
        backend,
        &format!(
            "{secret}---\n{}",
            oci_auth_plugin(
                "anonymous",
                &url,
                &format!("{}  imagePullSecret: registry-creds\n", budget())
            )
        ),
    ));
    wait_within("the pull with the secret", COMPILE, || {
        loom.get("/api", &[]).status == 401
    });
    assert_eq!(loom.accepted("anonymous").unwrap().0, "True");
}

#[test]
fn oci_a_registry_that_is_down_is_retried_and_if_not_present_starts_from_the_cache() {
    let (Some(dir), Some(tools)) = (plugins(), oci_tools()) else {
        return;
    };
    let work = test_dir("oci-retry");
    let port = free_port();
    let url = format!("oci://127.0.0.1:{port}/plugins/auth:v1");
    let cache = work.join("cache");
    let backend = echo_backend();
    let serve_dir = test_dir("oci-retry-serve");
    let (gw, admin) = (free_port(), free_port());
    let path = serve_dir.join("config.yaml");
    std::fs::write(
        &path,
        config(
            gw,
            backend,
            &oci_auth_plugin("auth-plugin", &url, &budget()),
        ),
    )
    .unwrap();
    let loom = serve(&path, admin, &["--plugin-cache", cache.to_str().unwrap()]);
    wait_for("the route", || status(gw, "/plain") == Some(200));
    // No registry yet: FailClose answers 503 while the pull is retried.
    assert_eq!(request(gw, "/api", &[]).status, 503);
    let registry = Registry::start(tools, &work, port, None);
    std::fs::copy(dir.join("auth/plugin.wasm"), work.join("auth.wasm")).unwrap();
    registry.push(
        tools,
        &work,
        "plugins/auth:v1",
        "auth.wasm",
        "application/wasm",
    );
    let pushed = Instant::now();
    wait_within("a retry to pull it", COMPILE, || {
        request(gw, "/api", &[]).status == 401
    });
    // Backoff doubles from 1 s up to 60 s; within ~20 s of starting, a retry is at most 16 s
    // away.
    eprintln!(
        "measured: the module loaded {:?} after it was pushed",
        pushed.elapsed()
    );
    drop(loom);
    drop(registry);
    // The registry is gone; IfNotPresent takes the cached module.
    let admin = free_port();
    let _loom = serve(&path, admin, &["--plugin-cache", cache.to_str().unwrap()]);
    wait_for("the route", || status(gw, "/plain") == Some(200));
    assert_eq!(request(gw, "/api", &[]).status, 401);
}
