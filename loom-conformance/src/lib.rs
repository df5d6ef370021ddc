//! `loom conformance`: runs a corpus of Gateway API conformance cases (the layout of
//! `shared/conformance`: `cases/*.yaml`, `manifests/`, `base/`) against the compiler and the
//! decision API, without sockets.
//!
//! The runner plays the API server: it applies manifests with the suite's rewrites, stamps
//! `creationTimestamp` and `generation`, creates the programmatic TLS objects (real
//! certificates from rcgen), compiles after every change and checks every status assertion and
//! every request expectation that can be decided without a data plane. A test passes when every
//! one of its checks was decided and held, fails when a decided check failed, and is skipped
//! otherwise (with the undecided checks listed).

/// `println!` that ends the process quietly when stdout is closed.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use http::{HeaderMap, HeaderName, HeaderValue};
use loom_core::input::Kind;
use loom_core::snapshot::{Decision, GatewayName, HttpRequest};
use loom_core::status::StatusAddress;
use loom_core::{Compiled, Input, Options};
use serde_json::{Value, json};

const CLASS: &str = "loom";
const GATEWAY_ADDRESS: &str = "127.0.0.1";
const USABLE_ADDRESS: &str = "127.0.0.1";
const UNUSABLE_ADDRESS: &str = "192.0.2.1";

type Key = (String, String, String);

#[derive(Clone, Default)]
struct Cluster {
    objects: BTreeMap<Key, Value>,
    clock: i64,
}

fn key_of(v: &Value) -> Key {
    let kind = v["kind"].as_str().unwrap_or("").to_owned();
    let cluster_scoped = matches!(kind.as_str(), "GatewayClass" | "Namespace");
    let ns = if cluster_scoped {
        String::new()
    } else {
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned()
    };
    (
        kind,
        ns,
        v["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    )
}

fn rewrite(v: &mut Value) {
    match v["kind"].as_str() {
        Some("Gateway") => {
            v["spec"]["gatewayClassName"] = json!(CLASS);
            if let Some(addrs) = v["spec"]["addresses"].as_array().cloned() {
                let has = |p: &str| addrs.iter().any(|a| a["value"] == p);
                let mut out: Vec<Value> = addrs
                    .iter()
                    .filter(|a| a["type"] == "test/fake-invalid-type")
                    .cloned()
                    .collect();
                if has("PLACEHOLDER_UNUSABLE_ADDRS") {
                    out.push(json!({"type": "IPAddress", "value": UNUSABLE_ADDRESS}));
                }
                if has("PLACEHOLDER_USABLE_ADDRS") {
                    out.push(json!({"type": "IPAddress", "value": USABLE_ADDRESS}));
                }
                if has("PLACEHOLDER_USABLE_ADDRS")
                    || has("PLACEHOLDER_UNUSABLE_ADDRS")
                    || !out.is_empty()
                {
                    v["spec"]["addresses"] = json!(out);
                }
            }
        }
        Some("GatewayClass") => v["spec"]["controllerName"] = json!(loom_core::CONTROLLER_NAME),
        _ => {}
    }
}

fn spec_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

impl Cluster {
    fn tick(&mut self, secs: i64) {
        self.clock += secs;
    }

    fn timestamp(&self) -> String {
        let s = 1_767_225_600 + self.clock; // 2026-01-01T00:00:00Z
        let (days, rem) = (s / 86_400, s % 86_400);
        // civil from days (Hinnant)
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    fn apply(&mut self, mut v: Value) {
        rewrite(&mut v);
        let key = key_of(&v);
        self.tick(1);
        match self.objects.get(&key) {
            Some(old) => {
                let mut generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if spec_of(old) != spec_of(&v) {
                    generation += 1;
                }
                v["metadata"]["generation"] = json!(generation);
                v["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            }
            None => {
                v["metadata"]["generation"] = json!(1);
                v["metadata"]["creationTimestamp"] = json!(self.timestamp());
            }
        }
        self.objects.insert(key, v);
    }

    fn patch(&mut self, key: &Key, patch: &Value) {
        let Some(mut v) = self.objects.get(key).cloned() else {
            return;
        };
        merge_patch(&mut v, patch);
        self.apply(v);
    }

    /// The objects as compiler input, and the objects that did not deserialize.
    fn input(&self) -> (Input, Vec<String>) {
        let mut objects = vec![];
        let mut errors = vec![];
        for v in self.objects.values() {
            let (Some(api), Some(kind)) = (v["apiVersion"].as_str(), v["kind"].as_str()) else {
                continue;
            };
            let Some(kind) = Kind::from_api(api, kind) else {
                continue;
            };
            match loom_core::load::from_value(kind, v.clone()) {
                Ok(o) => objects.push(o),
                Err(e) => errors.push(format!(
                    "{}/{}: {e}",
                    v["metadata"]["namespace"].as_str().unwrap_or(""),
                    v["metadata"]["name"]
                )),
            }
        }
        (Input::from_objects(objects), errors)
    }

    fn generation(&self, key: &Key) -> i64 {
        self.objects
            .get(key)
            .and_then(|v| v["metadata"]["generation"].as_i64())
            .unwrap_or(0)
    }
}

/// Replaces the corpus' run-time placeholders in an action body: whole address entries
/// (`'{USABLE_ADDRESS}'`) and `{copy of <Kind> <ns>/<name> data['<key>']}`.
fn substitute(v: &mut Value, cluster: &Cluster) {
    match v {
        Value::String(s) if s == "{USABLE_ADDRESS}" => {
            *v = json!({"type": "IPAddress", "value": USABLE_ADDRESS})
        }
        Value::String(s) if s == "{UNUSABLE_ADDRESS}" => {
            *v = json!({"type": "IPAddress", "value": UNUSABLE_ADDRESS})
        }
        Value::String(s) if s.starts_with("{copy of ") => {
            let inner = s.trim_start_matches("{copy of ").trim_end_matches('}');
            let mut parts = inner.splitn(3, ' ');
            let (kind, nn, field) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let (ns, name) = nn.split_once('/').unwrap_or(("", nn));
            let data_key = field.trim_start_matches("data['").trim_end_matches("']");
            if let Some(obj) =
                cluster
                    .objects
                    .get(&(kind.to_owned(), ns.to_owned(), name.to_owned()))
            {
                *v = obj["data"][data_key].clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, cluster)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, cluster)),
        _ => {}
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch.as_object() {
        Some(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        None => *target = patch.clone(),
    }
}

fn read_yaml_docs(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = vec![];
    for doc in loom_core::load::split_documents(&text) {
        let v: Value = serde_saphyr::from_str(doc.text)
            .with_context(|| format!("{}:{}", path.display(), doc.first_line))?;
        if v.is_object() {
            out.push(v);
        }
    }
    Ok(out)
}

fn programmatic(corpus: &Path) -> Result<Vec<Value>> {
    let spec = read_yaml_docs(&corpus.join("base/programmatic-resources.yaml"))?;
    let Some(spec) = spec.first() else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for r in spec["resources"].as_array().into_iter().flatten() {
        let hosts: Vec<String> = r["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_owned))
            .collect();
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        for h in &hosts {
            let h = h.as_str();
            let san = match h.parse::<std::net::IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_)
                    if h.trim_start_matches("*.").split('.').all(|l| {
                        !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    }) =>
                {
                    rcgen::SanType::DnsName(h.try_into()?)
                }
                Err(_) => rcgen::SanType::URI(h.try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        if r["type"] == "ca" {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key)?;
        let (ns, name) = (r["namespace"].clone(), r["name"].clone());
        let meta = json!({"name": name, "namespace": ns});
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        out.push(match r["kind"].as_str() {
            Some("ConfigMap") => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {"ca.crt": cert.pem(), "key.crt": key.serialize_pem()}}),
            _ => json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/tls",
                "data": {"tls.crt": b64(&cert.pem()), "tls.key": b64(&key.serialize_pem())}}),
        });
    }
    Ok(out)
}

enum Outcome {
    Pass,
    Fail(String),
    Undecided(String),
}

struct Ctx<'a> {
    cluster: Cluster,
    load_errors: Vec<String>,
    compiled: Compiled,
    options: &'a Options,
}

impl Ctx<'_> {
    fn recompile(&mut self) {
        let (input, errors) = self.cluster.input();
        self.load_errors.extend(errors);
        self.compiled = loom_core::compile_with(&input, self.options);
    }

    fn status(&self, kind: &str, ns: &str, name: &str) -> Value {
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == kind) else {
            return Value::Null;
        };
        let key = loom_core::input::ObjectKey {
            kind,
            namespace: if kind.is_namespaced() {
                ns.into()
            } else {
                String::new()
            },
            name: name.into(),
        };
        self.compiled
            .status
            .get(&key)
            .map_or(Value::Null, |s| serde_json::to_value(s).unwrap_or_default())
    }
}

fn obj_key(o: &Value) -> Key {
    let kind = o["kind"].as_str().unwrap_or("").to_owned();
    let ns = if matches!(kind.as_str(), "GatewayClass" | "Namespace") {
        String::new()
    } else {
        o["namespace"].as_str().unwrap_or("default").to_owned()
    };
    (kind, ns, o["name"].as_str().unwrap_or("").to_owned())
}

fn cond_matches(actual: &Value, expected: &Value) -> bool {
    actual.as_array().is_some_and(|list| {
        list.iter().any(|c| {
            c["type"] == expected["type"]
                && (expected["status"] == "any" || c["status"] == expected["status"])
                && (expected["reason"].is_null() || c["reason"] == expected["reason"])
        })
    })
}

fn all_conds(actual: &Value, expected: &Value) -> Result<(), String> {
    for e in expected.as_array().into_iter().flatten() {
        if !cond_matches(actual, e) {
            return Err(format!("missing condition {e} in {actual}"));
        }
    }
    Ok(())
}

fn current(conds: &Value, generation: i64) -> bool {
    conds.as_array().is_some_and(|l| {
        l.iter()
            .all(|c| c["observedGeneration"].as_i64() == Some(generation))
    })
}

fn listener_checks(actual: &Value, expected: &Value) -> Result<(), String> {
    let actual = actual.as_array().cloned().unwrap_or_default();
    let expected = expected.as_array().cloned().unwrap_or_default();
    if actual.len() != expected.len() {
        return Err(format!(
            "{} listener statuses, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    for e in &expected {
        let Some(a) = actual.iter().find(|a| a["name"] == e["name"]) else {
            return Err(format!("no status for listener {}", e["name"]));
        };
        let ek = e["supported_kinds"].as_array().cloned().unwrap_or_default();
        let ak = a["supportedKinds"].as_array().cloned().unwrap_or_default();
        if ek.is_empty() && !ak.is_empty() {
            return Err(format!(
                "listener {}: supportedKinds {ak:?}, expected none",
                e["name"]
            ));
        }
        let group = |v: &Value| {
            v["group"]
                .as_str()
                .filter(|g| !g.is_empty())
                .unwrap_or("gateway.networking.k8s.io")
                .to_owned()
        };
        for k in &ek {
            if !ak
                .iter()
                .any(|a| a["kind"] == k["kind"] && group(a) == group(k))
            {
                return Err(format!(
                    "listener {}: supportedKinds {ak:?} lacks {k}",
                    e["name"]
                ));
            }
        }
        if a["attachedRoutes"] != e["attached_routes"] {
            return Err(format!(
                "listener {}: attachedRoutes {} expected {}",
                e["name"], a["attachedRoutes"], e["attached_routes"]
            ));
        }
        all_conds(&a["conditions"], &e["conditions"])
            .map_err(|m| format!("listener {}: {m}", e["name"]))?;
    }
    Ok(())
}

fn check_assert(ctx: &mut Ctx<'_>, a: &Value, recorded: &mut BTreeMap<Key, i64>) -> Outcome {
    let o = &a["object"];
    let key = obj_key(o);
    let (kind, ns, name) = (&key.0, &key.1, &key.2);
    let st = ctx.status(kind, ns, name);
    let generation = ctx.cluster.generation(&key);
    let res: Result<(), String> = match a["assert"].as_str().unwrap_or("") {
        "namespaces_ready" => {
            let mut r = Ok(());
            for ns in a["namespaces"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                for (k, v) in ctx
                    .cluster
                    .objects
                    .iter()
                    .filter(|(k, _)| k.0 == "Gateway" && k.1 == ns)
                {
                    if v["metadata"]["annotations"]["gateway-api/skip-this-for-readiness"] == "true"
                    {
                        continue;
                    }
                    let s = ctx.status("Gateway", &k.1, &k.2);
                    let g = ctx.cluster.generation(k);
                    let ok = current(&s["conditions"], g)
                        && cond_matches(
                            &s["conditions"],
                            &json!({"type": "Accepted", "status": "True"}),
                        )
                        && cond_matches(
                            &s["conditions"],
                            &json!({"type": "Programmed", "status": "True"}),
                        );
                    if !ok {
                        r = Err(format!(
                            "Gateway {}/{} not ready: {}",
                            k.1, k.2, s["conditions"]
                        ));
                    }
                }
            }
            r
        }
        "gateway_address" => {
            if !current(&st["conditions"], generation) {
                Err("conditions not current".into())
            } else if !st["addresses"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a["type"].is_string()))
            {
                Err(format!("no typed address in {}", st["addresses"]))
            } else {
                Ok(())
            }
        }
        "gateway_latest_conditions"
        | "gateway_class_latest_conditions"
        | "listener_set_latest_conditions" => {
            if st["conditions"].as_array().is_some_and(|l| !l.is_empty())
                && current(&st["conditions"], generation)
            {
                Ok(())
            } else {
                Err(format!("conditions not current: {}", st["conditions"]))
            }
        }
        "gateway_conditions" | "gateway_class_conditions" | "listener_set_conditions" => {
            if !current(&st["conditions"], generation) {
                Err(format!("conditions not current: {}", st["conditions"]))
            } else {
                all_conds(&st["conditions"], &a["conditions"])
            }
        }
        "gateway_listeners" | "listener_set_listeners" => {
            if !current(&st["conditions"], generation) {
                Err("conditions not current".into())
            } else {
                listener_checks(&st["listeners"], &a["listeners"])
            }
        }
        "listener_conditions" | "listener_set_listener_conditions" => {
            let ls = st["listeners"].as_array().cloned().unwrap_or_default();
            let mut r = Ok(());
            if a["assert"] == "listener_set_listener_conditions"
                && !current(&st["conditions"], generation)
            {
                r = Err("ListenerSet conditions not current".into());
            }
            let targets: Vec<Value> = match a["listeners"].as_array() {
                Some(names) => names
                    .iter()
                    .map(|n| {
                        ls.iter()
                            .find(|l| &l["name"] == n)
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect(),
                None => ls.clone(),
            };
            for l in targets {
                if l.is_null() {
                    r = Err("listener missing".into());
                } else if let Err(m) = all_conds(&l["conditions"], &a["conditions"]) {
                    r = Err(format!("listener {}: {m}", l["name"]));
                }
            }
            r
        }
        "gateway_zero_routes" => {
            let ls = st["listeners"].as_array().cloned().unwrap_or_default();
            if current(&st["conditions"], generation)
                && (ls.is_empty() || (ls.len() == 1 && ls[0]["attachedRoutes"] == 0))
            {
                Ok(())
            } else {
                Err(format!("listeners {ls:?}"))
            }
        }
        "gateway_attached_listener_sets" => {
            let n = st["attachedListenerSets"].as_i64().unwrap_or(0);
            if current(&st["conditions"], generation) && Some(n) == a["count"].as_i64() {
                Ok(())
            } else {
                Err(format!("attachedListenerSets {n}"))
            }
        }
        "gateway_status_addresses" => {
            let addrs = st["addresses"].as_array().cloned().unwrap_or_default();
            let value = |s: &str| match s {
                "{USABLE_ADDRESS}.value" => USABLE_ADDRESS.to_owned(),
                "{UNUSABLE_ADDRESS}.value" => UNUSABLE_ADDRESS.to_owned(),
                o => o.to_owned(),
            };
            let has = |v: &str| addrs.iter().any(|x| x["value"] == v);
            if Some(addrs.len() as i64) != a["count"].as_i64() {
                Err(format!(
                    "{} status addresses, expected {}",
                    addrs.len(),
                    a["count"]
                ))
            } else if a["contains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|c| !has(&value(c)))
            {
                Err(format!("addresses {addrs:?} lack an expected value"))
            } else if a["not_contains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|c| has(&value(c)))
            {
                Err(format!("addresses {addrs:?} contain an unexpected value"))
            } else {
                Ok(())
            }
        }
        "spec_address_count" => {
            let n = ctx
                .cluster
                .objects
                .get(&key)
                .and_then(|v| v["spec"]["addresses"].as_array().map(Vec::len))
                .unwrap_or(0);
            if Some(n as i64) == a["count"].as_i64() {
                Ok(())
            } else {
                Err(format!("spec has {n} addresses"))
            }
        }
        "infrastructure_metadata_propagated" => {
            return Outcome::Undecided("needs provisioned infrastructure (Kubernetes)".into());
        }
        "route_parents" => {
            let parents = st["parents"].as_array().cloned().unwrap_or_default();
            let mut r = Ok(());
            if a["observed_generation_must_be_current"] == true
                && !parents
                    .iter()
                    .all(|p| current(&p["conditions"], generation))
            {
                r = Err("parent conditions not current".into());
            }
            for e in a["parents"].as_array().into_iter().flatten() {
                let ep = &e["parent_ref"];
                let found = parents.iter().any(|p| {
                    let pr = &p["parentRef"];
                    p["controllerName"] == loom_core::CONTROLLER_NAME
                        && pr["group"] == ep["group"]
                        && pr["kind"] == ep["kind"]
                        && pr["name"] == ep["name"]
                        && (if a["namespace_required"] == true {
                            pr["namespace"] == ep["namespace"]
                        } else {
                            pr["namespace"].is_null() || pr["namespace"] == ep["namespace"]
                        })
                        && all_conds(&p["conditions"], &e["conditions"]).is_ok()
                });
                if !found {
                    r = Err(format!("no parent matches {e}; actual {parents:?}"));
                }
            }
            r
        }
        "route_condition" => {
            let parents = st["parents"].as_array().cloned().unwrap_or_default();
            let p = &a["parent"];
            if !parents
                .iter()
                .all(|x| current(&x["conditions"], generation))
            {
                Err("conditions not current".into())
            } else if parents.iter().any(|x| {
                x["parentRef"]["name"] == p["name"]
                    && (x["parentRef"]["namespace"].is_null()
                        || x["parentRef"]["namespace"] == p["namespace"])
                    && cond_matches(&x["conditions"], &a["condition"])
            }) {
                Ok(())
            } else {
                Err(format!(
                    "no parent with {}; actual {parents:?}",
                    a["condition"]
                ))
            }
        }
        "route_no_accepted_parents" => {
            let parents = st["parents"].as_array().cloned().unwrap_or_default();
            if parents.is_empty()
                || (parents.len() == 1
                    && current(&parents[0]["conditions"], generation)
                    && cond_matches(
                        &parents[0]["conditions"],
                        &json!({"type": "Accepted", "status": "False"}),
                    ))
            {
                Ok(())
            } else {
                Err(format!("parents {parents:?}"))
            }
        }
        "route_latest_conditions" => {
            let parents = st["parents"].as_array().cloned().unwrap_or_default();
            if parents
                .iter()
                .all(|p| current(&p["conditions"], generation))
            {
                Ok(())
            } else {
                Err("not current".into())
            }
        }
        "policy_ancestor_condition" => {
            let mut r = Err(format!(
                "no ancestor {} with {}: {}",
                a["ancestor"], a["condition"], st["ancestors"]
            ));
            for anc in st["ancestors"].as_array().into_iter().flatten() {
                if !current(&anc["conditions"], generation) {
                    r = Err("ancestor conditions not current".into());
                    break;
                }
                let ar = &anc["ancestorRef"];
                if ar["name"] == a["ancestor"]["name"]
                    && (ar["namespace"].is_null() || ar["namespace"] == a["ancestor"]["namespace"])
                    && cond_matches(&anc["conditions"], &a["condition"])
                {
                    r = Ok(());
                    break;
                }
            }
            r
        }
        "policy_latest_conditions" => {
            if st["ancestors"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|x| current(&x["conditions"], generation))
            {
                Ok(())
            } else {
                Err("not current".into())
            }
        }
        "record_generation" => {
            recorded.insert(key.clone(), generation);
            Ok(())
        }
        "generation_changed" => {
            if recorded.get(&key).is_some_and(|g| *g != generation) {
                Ok(())
            } else {
                Err("generation did not change".into())
            }
        }
        other => {
            return Outcome::Undecided(format!(
                "assertion kind {other} is not implemented by this runner"
            ));
        }
    };
    match res {
        Ok(()) => Outcome::Pass,
        Err(m) => Outcome::Fail(format!(
            "{} {}/{}/{}: {m}",
            a["assert"].as_str().unwrap_or(""),
            kind,
            ns,
            name
        )),
    }
}

struct Observed {
    status: u16,
    headers: HeaderMap,
    echo: Option<Echo>,
    location: Option<String>,
}

struct Echo {
    path: String,
    host: String,
    method: String,
    headers: HeaderMap,
    namespace: String,
    pod: String,
}

/// The pod IPs the runner pretends a Deployment's pods have: one IPv4 and one IPv6 address per
/// replica, derived from the Deployment's name.
fn pod_ips(deployment: &str, replicas: u64) -> Vec<String> {
    let h = deployment
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 250;
    (0..replicas)
        .flat_map(|i| {
            [
                format!("10.244.{h}.{}", i + 2),
                format!("fd00:10:244:{h}::{:x}", i + 2),
            ]
        })
        .collect()
}

/// Applies `populate_endpoint_slices`: one endpoint per pod IP of the slice's family.
fn populate_endpoint_slices(cluster: &mut Cluster, act: &Value) {
    let ns = act["source_pods"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let deployment = act["source_pods"]["deployment"].as_str().unwrap_or("");
    let replicas = cluster
        .objects
        .get(&("Deployment".into(), ns.clone(), deployment.into()))
        .map_or(1, |d| d["spec"]["replicas"].as_u64().unwrap_or(1));
    let ips = pod_ips(deployment, replicas);
    for slice in act["endpoint_slices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let key = ("EndpointSlice".to_owned(), ns.clone(), slice.to_owned());
        let Some(mut v) = cluster.objects.get(&key).cloned() else {
            continue;
        };
        let v6 = v["addressType"] == "IPv6";
        let endpoints: Vec<Value> = ips
            .iter()
            .filter(|ip| ip.contains(':') == v6)
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true, "serving": true}}))
            .collect();
        if !endpoints.is_empty() {
            v["endpoints"] = json!(endpoints);
            cluster.apply(v);
        }
    }
}

/// The name of a pod that answers for a backend: found through the Service's selector, or,
/// for a Service without one, through the pod IPs in its EndpointSlices.
fn pod_prefix(ctx: &Ctx<'_>, ns: &str, service: &str, endpoints: &[String]) -> Option<String> {
    let svc = ctx
        .cluster
        .objects
        .get(&("Service".into(), ns.into(), service.into()))?;
    let Some(selector) = svc["spec"]["selector"].as_object() else {
        let mut deployments = ctx
            .cluster
            .objects
            .iter()
            .filter(|(k, _)| k.0 == "Deployment" && k.1 == ns);
        return deployments
            .find(|(k, d)| {
                let ips = pod_ips(&k.2, d["spec"]["replicas"].as_u64().unwrap_or(1));
                endpoints.iter().any(|e| {
                    let addr = e.rsplit_once(':').map_or(e.as_str(), |(a, _)| a);
                    ips.iter().any(|ip| addr.trim_matches(['[', ']']) == ip)
                })
            })
            .map(|(k, _)| format!("{}-5f7d9c8b6d-x2x9q", k.2));
    };
    ctx.cluster
        .objects
        .iter()
        .filter(|(k, _)| k.0 == "Deployment" && k.1 == ns)
        .find(|(_, d)| {
            selector
                .iter()
                .all(|(l, v)| &d["spec"]["template"]["metadata"]["labels"][l] == v)
        })
        .map(|(k, _)| format!("{}-5f7d9c8b6d-x2x9q", k.2))
}

fn check_request(ctx: &Ctx<'_>, rc: &Value) -> Outcome {
    let req = &rc["request"];
    let expect = &rc["expect"];
    let protocol = req["protocol"].as_str().unwrap_or("HTTP");
    let mode = rc["mode"].as_str().unwrap_or("consistent");
    if !matches!(
        protocol,
        "HTTP" | "HTTPS" | "H2" | "H2C_PRIOR_KNOWLEDGE" | "GRPC"
    ) {
        return Outcome::Undecided(format!("{protocol} traffic needs the data plane"));
    }
    if matches!(mode, "request_error" | "connection_rejected" | "sample") {
        return Outcome::Undecided(format!("{mode} mode needs a real TLS/TCP exchange"));
    }
    if !req["tls"]["client_certificate"].is_null() {
        return Outcome::Undecided("client certificates need a real TLS handshake".into());
    }
    let target = &rc["target"];
    let gw = GatewayName::new(
        target["gateway"]["namespace"].as_str().unwrap_or(""),
        target["gateway"]["name"].as_str().unwrap_or(""),
    );
    let port = target["port"].as_u64().unwrap_or(80) as u16;
    let tls = matches!(protocol, "HTTPS" | "H2");
    let scheme = if tls { "https" } else { "http" };
    let mut path = req["path"].as_str().unwrap_or("/").to_owned();
    if req["fresh_uuid_per_attempt"] == true {
        path = path.replace("{uuid}", "0b7e5d3c-1f2a-4c6b-9d8e-7a6b5c4d3e2f");
    }
    let mut seen_path_override = None;
    if req["add_request_id"] == true {
        let sep = if path.contains('?') { '&' } else { '?' };
        path = format!(
            "{path}{sep}gateway-api-conformance-request-id=5c0ffee0-0000-4000-8000-000000000001"
        );
        seen_path_override = Some(path.clone());
    }
    if path.contains("delay=") || path.starts_with("/retry/") {
        return Outcome::Undecided("backend delays and retries need the data plane".into());
    }
    let host = match req["host"].as_str() {
        Some(h) => h.to_owned(),
        None if (port == 80 && !tls) || (port == 443 && tls) => GATEWAY_ADDRESS.to_owned(),
        None => format!("{GATEWAY_ADDRESS}:{port}"),
    };
    let method = req["method"]
        .as_str()
        .unwrap_or(if protocol == "GRPC" { "POST" } else { "GET" });
    let grpc_path = req["full_method"].as_str().map(str::to_owned);
    let mut builder = http::Request::builder()
        .method(if protocol == "GRPC" { "POST" } else { method })
        .uri(grpc_path.as_deref().unwrap_or(&path))
        .header(
            http::header::HOST,
            req["authority"].as_str().unwrap_or(&host),
        );
    if protocol == "GRPC" {
        builder = builder.header(http::header::CONTENT_TYPE, "application/grpc");
    }
    let mut echo_set = vec![];
    for (k, v) in req["echo_set_response_headers"]
        .as_object()
        .into_iter()
        .flatten()
    {
        echo_set.push(format!("{k}:{}", v.as_str().unwrap_or("")));
    }
    if protocol != "GRPC" {
        builder = builder.header("X-Echo-Set-Header", echo_set.join(","));
    }
    for (k, v) in req["headers"]
        .as_object()
        .into_iter()
        .chain(req["metadata"].as_object())
        .flatten()
    {
        builder = builder.header(k.as_str(), v.as_str().unwrap_or(""));
    }
    let Ok(request) = builder.body(()) else {
        return Outcome::Fail("could not build the request".into());
    };
    let sni = req["tls"]["server_name"].as_str();
    let hr = HttpRequest {
        scheme,
        sni,
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
    };
    let mut undecided = vec![];
    let seen = &expect["request_seen"];
    if !seen["tls_server_name"].is_null() || !seen["tls_client_certificate"].is_null() {
        undecided.push(
            "the TLS server name and client certificate seen by the backend need the data plane",
        );
    }
    let observed = match ctx.compiled.snapshot.decide(&gw, port, &hr, 7) {
        Decision::Forward(f) => {
            if f.backend.tls.is_some() {
                return Outcome::Undecided(
                    "TLS to the backend (BackendTLSPolicy) needs the data plane".into(),
                );
            }
            if !f.mirrors.is_empty() || !expect["mirrored_to"].is_null() {
                undecided
                    .push("mirrored requests are observed at the mirror backend by the data plane");
            }
            let (ns, name) = (&f.backend.object.namespace, &f.backend.object.name);
            let pod = pod_prefix(ctx, ns, name, &f.backend.endpoints).unwrap_or_default();
            let fr = &f.backend_request(&hr);
            let mut headers = HeaderMap::new();
            let fpath = fr.uri().to_string();
            let mut status = 200;
            if let Some(code) = fpath
                .strip_prefix("/status/")
                .and_then(|c| c.parse::<u16>().ok())
            {
                status = code;
            }
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(set) = fr
                .headers()
                .get("x-echo-set-header")
                .and_then(|v| v.to_str().ok())
            {
                for pair in set.split(',').filter(|p| !p.is_empty()) {
                    if let Some((n, v)) = pair.split_once(':')
                        && let (Ok(n), Ok(v)) = (
                            HeaderName::from_bytes(n.as_bytes()),
                            HeaderValue::from_str(v),
                        )
                    {
                        headers.append(n, v);
                    }
                }
            }
            f.matched.rule.apply_response_headers(
                f.backend_index,
                hr.headers.get(http::header::ORIGIN),
                &mut headers,
            );
            let mut echo_headers = fr.headers().clone();
            echo_headers.remove(http::header::HOST);
            Observed {
                status,
                headers,
                location: None,
                echo: Some(Echo {
                    path: fpath,
                    host: fr
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                    method: fr.method().to_string(),
                    headers: echo_headers,
                    namespace: ns.clone(),
                    pod,
                }),
            }
        }
        Decision::Redirect {
            status, location, ..
        } => Observed {
            status: status.as_u16(),
            headers: HeaderMap::new(),
            echo: None,
            location: Some(location),
        },
        Decision::Respond(r) => {
            let mut headers = HeaderMap::new();
            for (n, v) in r.headers {
                headers.insert(n, v);
            }
            Observed {
                status: r.status.as_u16(),
                headers,
                echo: None,
                location: None,
            }
        }
    };
    let result = if protocol == "GRPC" {
        check_grpc(expect, &observed, grpc_path.as_deref().unwrap_or(""))
    } else if mode == "failure" {
        if observed.status == 200 || observed.status == 408 || observed.status == 504 {
            Err(format!("status {}", observed.status))
        } else {
            Ok(())
        }
    } else {
        check_http(
            expect,
            req,
            &observed,
            &path,
            seen_path_override.as_deref(),
            method,
            scheme,
        )
    };
    match (result, undecided.first()) {
        (Err(m), _) => Outcome::Fail(m),
        (Ok(()), Some(u)) => Outcome::Undecided((*u).into()),
        (Ok(()), None) => Outcome::Pass,
    }
}

fn check_grpc(expect: &Value, o: &Observed, full_method: &str) -> Result<(), String> {
    let code = match (o.status, &o.echo) {
        (200, Some(_)) => "OK",
        (404, _) => "Unimplemented",
        _ => "Unavailable",
    };
    if expect["grpc_code"].as_str() != Some(code) {
        return Err(format!(
            "gRPC code {code}, expected {}",
            expect["grpc_code"]
        ));
    }
    if let (Some(e), "OK") = (&o.echo, code) {
        if e.path != full_method {
            return Err(format!(
                "backend saw method {}, expected {full_method}",
                e.path
            ));
        }
        if let Some(ns) = expect["namespace"].as_str()
            && ns != e.namespace
        {
            return Err(format!("namespace {}, expected {ns}", e.namespace));
        }
        if let Some(b) = expect["backend"].as_str()
            && !e.pod.starts_with(b)
        {
            return Err(format!("pod {}, expected prefix {b}", e.pod));
        }
    }
    Ok(())
}

fn joined(h: &HeaderMap, name: &str) -> Option<String> {
    let vals: Vec<_> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!vals.is_empty()).then(|| vals.join(","))
}

fn check_http(
    expect: &Value,
    req: &Value,
    o: &Observed,
    path: &str,
    seen_path: Option<&str>,
    method: &str,
    scheme: &str,
) -> Result<(), String> {
    let statuses: Vec<u64> = expect["status"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let s = u64::from(o.status);
    if (s == 408 || s == 504) && statuses.iter().any(|c| *c == 408 || *c == 504) {
        return Ok(());
    }
    if !statuses.contains(&s) {
        return Err(format!("status {s}, expected {statuses:?}"));
    }
    if s == 200 || s == 204 {
        let empty = HeaderMap::new();
        let echo_headers = o.echo.as_ref().map_or(&empty, |e| &e.headers);
        let seen = &expect["request_seen"];
        let (exp_path, exp_method) = if seen.is_null() {
            (seen_path.unwrap_or(path).to_owned(), method.to_owned())
        } else {
            (
                seen_path
                    .map(str::to_owned)
                    .unwrap_or_else(|| seen["path"].as_str().unwrap_or("").to_owned()),
                seen["method"].as_str().unwrap_or("GET").to_owned(),
            )
        };
        let (echo_path, echo_host, echo_method, echo_ns, echo_pod) = match &o.echo {
            Some(e) => (
                e.path.as_str(),
                e.host.as_str(),
                e.method.as_str(),
                e.namespace.as_str(),
                e.pod.as_str(),
            ),
            None => ("", "", method, "", ""),
        };
        let exp_host = if seen.is_null() {
            req["host"].as_str()
        } else {
            seen["host"].as_str()
        };
        if let Some(h) = exp_host
            && h != echo_host
        {
            return Err(format!("backend saw host {echo_host:?}, expected {h:?}"));
        }
        if exp_path != echo_path {
            return Err(format!(
                "backend saw path {echo_path:?}, expected {exp_path:?}"
            ));
        }
        if exp_method != echo_method {
            return Err(format!(
                "backend saw method {echo_method}, expected {exp_method}"
            ));
        }
        if expect["namespace"].as_str().unwrap_or("") != echo_ns {
            return Err(format!(
                "namespace {echo_ns:?}, expected {:?}",
                expect["namespace"]
            ));
        }
        let exp_headers = if seen.is_null() {
            &req["headers"]
        } else {
            &seen["headers"]
        };
        for (n, v) in exp_headers.as_object().into_iter().flatten() {
            if joined(echo_headers, n).as_deref() != v.as_str() {
                return Err(format!(
                    "backend saw header {n}: {:?}, expected {v}",
                    joined(echo_headers, n)
                ));
            }
        }
        let ws = |s: &str| {
            if expect["ignore_whitespace"] == true {
                s.replace(' ', "")
            } else {
                s.to_owned()
            }
        };
        for (n, vals) in expect["response_header_values"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let actual = joined(&o.headers, n).map(|a| ws(&a));
            if !vals
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| actual.as_deref() == v.as_str().map(ws).as_deref())
            {
                return Err(format!(
                    "response header {n}: {actual:?}, expected one of {vals}"
                ));
            }
        }
        for (n, v) in expect["response_headers"].as_object().into_iter().flatten() {
            let actual = joined(&o.headers, n).map(|a| ws(&a));
            if actual.as_deref() != v.as_str().map(ws).as_deref() {
                return Err(format!("response header {n}: {actual:?}, expected {v}"));
            }
        }
        for n in expect["absent_response_headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if o.headers.contains_key(n) {
                return Err(format!("response header {n} should be absent"));
            }
        }
        for n in seen["absent_headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if echo_headers.contains_key(n) {
                return Err(format!("backend saw header {n}, which should be absent"));
            }
        }
        if let Some(b) = expect["backend"].as_str()
            && !echo_pod.starts_with(b)
        {
            return Err(format!(
                "answered by pod {echo_pod:?}, expected prefix {b:?}"
            ));
        }
    } else if matches!(s, 300..=305 | 307 | 308) && !expect["redirect"].is_null() {
        let r = &expect["redirect"];
        let loc = o.location.as_deref().unwrap_or("");
        let uri: http::Uri = loc.parse().map_err(|_| format!("bad Location {loc:?}"))?;
        let lscheme = uri.scheme_str().unwrap_or(scheme);
        if let Some(h) = r["host"].as_str()
            && uri.host() != Some(h)
        {
            return Err(format!("Location host {:?}, expected {h}", uri.host()));
        }
        let lport = uri.port_u16().map(|p| p.to_string()).unwrap_or_default();
        match r["port"].as_str() {
            Some(p) if p != lport => {
                return Err(format!("Location port {lport:?}, expected {p:?}"));
            }
            None if (lscheme == "http" && !matches!(lport.as_str(), "" | "80"))
                || (lscheme == "https" && !matches!(lport.as_str(), "" | "443")) =>
            {
                return Err(format!("Location port {lport:?} for {lscheme}"));
            }
            _ => {}
        }
        if r["scheme"].as_str().unwrap_or(scheme) != lscheme {
            return Err(format!(
                "Location scheme {lscheme}, expected {}",
                r["scheme"].as_str().unwrap_or(scheme)
            ));
        }
        let exp_path = r["path"].as_str().map_or_else(
            || path.split('?').next().unwrap_or("").to_owned(),
            str::to_owned,
        );
        if uri.path() != exp_path {
            return Err(format!("Location path {}, expected {exp_path}", uri.path()));
        }
    }
    Ok(())
}

/// Runs the corpus and prints one line per test and a summary.
pub fn run(corpus: &Path, only: Option<&str>, verbose: bool) -> Result<ExitCode> {
    let options = Options {
        default_addresses: vec![StatusAddress {
            type_: "IPAddress".into(),
            value: GATEWAY_ADDRESS.into(),
        }],
        usable_addresses: Some([USABLE_ADDRESS.to_owned(), GATEWAY_ADDRESS.to_owned()].into()),
        ..Options::default()
    };
    let mut base = Cluster::default();
    base.apply(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": CLASS},
        "spec": {"controllerName": loom_core::CONTROLLER_NAME}}));
    for v in read_yaml_docs(&corpus.join("base/manifests.yaml"))? {
        base.apply(v);
    }
    for v in programmatic(corpus)? {
        base.apply(v);
    }
    let mut cases: Vec<_> = std::fs::read_dir(corpus.join("cases"))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|e| e.path())
        .collect();
    cases.sort();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for path in cases {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let case = read_yaml_docs(&path)?
            .into_iter()
            .next()
            .unwrap_or_default();
        let name = case["name"].as_str().unwrap_or("?").to_owned();
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let unsupported: Vec<&str> = case["features"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|f| !loom_core::SUPPORTED_FEATURES.contains(f))
            .collect();
        if !unsupported.is_empty() {
            say!(
                "SKIP {name}: features not supported: {}",
                unsupported.join(", ")
            );
            skipped += 1;
            continue;
        }
        let supported = |list: &Value| {
            list["supported_features"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .all(|f| loom_core::SUPPORTED_FEATURES.contains(&f))
        };
        if (!case["skip_if"].is_null() && supported(&case["skip_if"]))
            || (!case["run_only_if"].is_null() && !supported(&case["run_only_if"]))
        {
            say!("PASS {name} (returns early upstream: skip_if/run_only_if)");
            passed += 1;
            continue;
        }
        let mut ctx = Ctx {
            cluster: base.clone(),
            load_errors: vec![],
            compiled: Compiled::default(),
            options: &options,
        };
        for m in case["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            for v in read_yaml_docs(&corpus.join("manifests").join(m))? {
                ctx.cluster.apply(v);
            }
        }
        ctx.recompile();
        let mut failures = vec![];
        let mut undecided = vec![];
        let mut decided = 0;
        let mut recorded = BTreeMap::new();
        for step in case["steps"].as_array().into_iter().flatten() {
            let mut record = |label: String,
                              o: Outcome,
                              failures: &mut Vec<String>,
                              undecided: &mut Vec<String>| match o {
                Outcome::Pass => decided += 1,
                Outcome::Fail(m) => failures.push(format!("{label}: {m}")),
                Outcome::Undecided(m) => undecided.push(format!("{label}: {m}")),
            };
            for a in step["before"].as_array().into_iter().flatten() {
                let o = check_assert(&mut ctx, a, &mut recorded);
                record(
                    format!("before {}", a["assert"]),
                    o,
                    &mut failures,
                    &mut undecided,
                );
            }
            for act in step["actions"].as_array().into_iter().flatten() {
                if let Some(secs) = act["wait_before"]
                    .as_str()
                    .and_then(loom_core::filter::parse_duration_ms)
                {
                    ctx.cluster.tick((secs / 1000) as i64);
                }
                match act["op"].as_str().unwrap_or("") {
                    "patch" => {
                        let mut patch = act["patch"].clone();
                        substitute(&mut patch, &ctx.cluster);
                        ctx.cluster.patch(&obj_key(&act["object"]), &patch);
                    }
                    "create" => {
                        let mut manifest = act["manifest"].clone();
                        substitute(&mut manifest, &ctx.cluster);
                        ctx.cluster.apply(manifest);
                    }
                    "delete" => {
                        ctx.cluster.objects.remove(&obj_key(&act["object"]));
                    }
                    "populate_endpoint_slices" => populate_endpoint_slices(&mut ctx.cluster, act),
                    other => {
                        undecided.push(format!("action {other} is not implemented by this runner"))
                    }
                }
                ctx.recompile();
            }
            for a in step["status"].as_array().into_iter().flatten() {
                let o = check_assert(&mut ctx, a, &mut recorded);
                record(
                    format!("status {}", a["assert"]),
                    o,
                    &mut failures,
                    &mut undecided,
                );
            }
            for rc in step["requests"].as_array().into_iter().flatten() {
                let label = format!(
                    "request {:?}",
                    rc["subtest"]
                        .as_str()
                        .unwrap_or(rc["request"]["path"].as_str().unwrap_or(""))
                );
                let o = check_request(&ctx, rc);
                let o = match o {
                    Outcome::Pass if !rc["mirror_distribution"].is_null() => {
                        Outcome::Undecided("mirror distribution needs the data plane".into())
                    }
                    o => o,
                };
                record(label, o, &mut failures, &mut undecided);
            }
            for block in ["weighted", "websocket", "backend_header_consistency"] {
                for _ in step[block].as_array().into_iter().flatten() {
                    undecided.push(format!("{block}: needs the data plane"));
                }
            }
        }
        ctx.load_errors.sort();
        ctx.load_errors.dedup();
        failures.extend(
            ctx.load_errors
                .iter()
                .map(|e| format!("object did not load: {e}")),
        );
        if !failures.is_empty() {
            failed += 1;
            say!(
                "FAIL {name} ({} failed, {decided} passed, {} undecided)",
                failures.len(),
                undecided.len()
            );
            for f in &failures {
                say!("    {f}");
            }
        } else if !undecided.is_empty() {
            skipped += 1;
            say!(
                "SKIP {name}: {decided} checks passed, {} undecided",
                undecided.len()
            );
            for u in undecided.iter().take(if verbose { usize::MAX } else { 3 }) {
                say!("    {u}");
            }
        } else {
            passed += 1;
            say!("PASS {name} ({decided} checks)");
        }
    }
    say!("{passed} passed, {failed} failed, {skipped} skipped");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
