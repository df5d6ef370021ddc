//! Runs the cases of a corpus: suite setup once, then per test its manifests and steps on a
//! copy of the base cluster, compiling after every change.

use std::path::{Path, PathBuf};

use loom_core::input::{Kind, ObjectKey};
use loom_core::status::StatusAddress;
use loom_core::{Compiled, Options};
use serde_json::{Value, json};

use crate::case::{Action, Case, FeatureGate};
use crate::cluster::{CLASS, Cluster, GATEWAY_ADDRESS, USABLE_ADDRESS, ref_key};
use crate::patch::substitute;
use crate::report::{Report, TestOutcome, TestReport};
use crate::{Error, assert, programmatic, request, yaml};

/// How one check came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Fail(String),
    Undecided(String),
}

/// One test's world: the fake cluster and what the compiler made of it.
pub(crate) struct Ctx<'a> {
    pub(crate) cluster: Cluster,
    pub(crate) compiled: Compiled,
    load_errors: Vec<String>,
    options: &'a Options,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(cluster: Cluster, options: &'a Options) -> Self {
        let mut ctx = Ctx {
            cluster,
            compiled: Compiled::default(),
            load_errors: vec![],
            options,
        };
        ctx.recompile();
        ctx
    }

    pub(crate) fn recompile(&mut self) {
        let (input, errors) = self.cluster.input();
        self.load_errors.extend(errors);
        self.compiled = loom_core::compile_with(&input, self.options);
    }

    /// The compiled status of an object as JSON (`null` when it has none).
    pub(crate) fn status(&self, kind: &str, ns: &str, name: &str) -> Value {
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == kind) else {
            return Value::Null;
        };
        let key = ObjectKey {
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

/// The compiler options: every Gateway gets [`GATEWAY_ADDRESS`]; the usable static addresses
/// are that and [`USABLE_ADDRESS`].
pub(crate) fn options() -> Options {
    Options {
        default_addresses: vec![StatusAddress {
            type_: "IPAddress".into(),
            value: GATEWAY_ADDRESS.into(),
        }],
        usable_addresses: Some([USABLE_ADDRESS.to_owned(), GATEWAY_ADDRESS.to_owned()].into()),
        ..Options::default()
    }
}

/// Suite setup (SCHEMA.md 2.1): the GatewayClass under test, the base manifests and the
/// programmatic TLS objects.
fn base_cluster(corpus: &Path) -> Result<Cluster, Error> {
    let mut base = Cluster::default();
    base.apply(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": CLASS}, "spec": {"controllerName": loom_core::CONTROLLER_NAME}}),
    );
    for v in yaml::read_objects(&corpus.join("base/manifests.yaml"))? {
        base.apply(v);
    }
    for v in programmatic::objects(corpus)? {
        base.apply(v);
    }
    Ok(base)
}

/// The case files of a corpus, sorted by file name.
fn case_files(corpus: &Path) -> Result<Vec<PathBuf>, Error> {
    let dir = corpus.join("cases");
    let read_err = |source| Error::Read {
        path: dir.clone(),
        source,
    };
    let mut files = vec![];
    for entry in std::fs::read_dir(&dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one case file.
pub(crate) fn read_case(path: &Path) -> Result<Case, Error> {
    yaml::parse(path, 1, &yaml::read(path)?)
}

/// Runs every case of the corpus (or those whose name contains `only`).
pub(crate) fn run(corpus: &Path, only: Option<&str>) -> Result<Report, Error> {
    let options = options();
    let base = base_cluster(corpus)?;
    let mut tests = vec![];
    for path in case_files(corpus)? {
        let case = read_case(&path)?;
        if only.is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        let outcome = run_case(corpus, &case, &base, &options)?;
        tests.push(TestReport {
            name: case.name,
            outcome,
        });
    }
    Ok(Report { tests })
}

fn supported(feature: &str) -> bool {
    loom_core::SUPPORTED_FEATURES.contains(&feature)
}

fn all_supported(gate: &FeatureGate) -> bool {
    gate.supported_features.iter().all(|f| supported(f))
}

/// Runs one test on a copy of the base cluster.
fn run_case(
    corpus: &Path,
    case: &Case,
    base: &Cluster,
    options: &Options,
) -> Result<TestOutcome, Error> {
    let unsupported: Vec<String> = case
        .features
        .iter()
        .filter(|f| !supported(f))
        .cloned()
        .collect();
    if !unsupported.is_empty() {
        return Ok(TestOutcome::Unsupported(unsupported));
    }
    if case.skip_if.as_ref().is_some_and(all_supported)
        || case.run_only_if.as_ref().is_some_and(|g| !all_supported(g))
    {
        return Ok(TestOutcome::ReturnsEarly);
    }
    let mut cluster = base.clone();
    for m in &case.manifests {
        for v in yaml::read_objects(&corpus.join("manifests").join(m))? {
            cluster.apply(v);
        }
    }
    let mut ctx = Ctx::new(cluster, options);
    let mut checks = Checks::default();
    let mut recorded = assert::Recorded::new();
    for step in &case.steps {
        for a in &step.before {
            let o = assert::check(&ctx, a, &mut recorded);
            checks.record(format!("before {:?}", a.check.name()), o);
        }
        for act in &step.actions {
            if let Some(ms) = act
                .wait_before()
                .and_then(loom_core::filter::parse_duration_ms)
            {
                ctx.cluster
                    .tick(i64::try_from(ms / 1000).unwrap_or(i64::MAX));
            }
            apply_action(&mut ctx.cluster, act);
            ctx.recompile();
        }
        for a in &step.status {
            let o = assert::check(&ctx, a, &mut recorded);
            checks.record(format!("status {:?}", a.check.name()), o);
        }
        for rc in &step.requests {
            let label = format!(
                "request {:?}",
                rc.subtest
                    .as_deref()
                    .unwrap_or(rc.request.path.as_deref().unwrap_or(""))
            );
            let o = match request::check(&ctx, rc) {
                Outcome::Pass if rc.mirror_distribution.is_some() => {
                    Outcome::Undecided("mirror distribution needs the data plane".into())
                }
                o => o,
            };
            checks.record(label, o);
        }
        let blocks = [
            ("weighted", step.weighted.len()),
            ("websocket", step.websocket.len()),
            (
                "backend_header_consistency",
                step.backend_header_consistency.len(),
            ),
        ];
        for (block, n) in blocks {
            for _ in 0..n {
                checks
                    .undecided
                    .push(format!("{block}: needs the data plane"));
            }
        }
    }
    ctx.load_errors.sort();
    ctx.load_errors.dedup();
    checks.failures.extend(
        ctx.load_errors
            .iter()
            .map(|e| format!("object did not load: {e}")),
    );
    Ok(TestOutcome::Checked {
        decided: checks.decided,
        failures: checks.failures,
        undecided: checks.undecided,
    })
}

/// Applies one action to the cluster.
fn apply_action(cluster: &mut Cluster, act: &Action) {
    match act {
        Action::Patch { object, patch, .. } => {
            let mut patch = patch.clone();
            substitute(&mut patch, cluster);
            cluster.patch(&ref_key(object), &patch);
        }
        Action::Create { manifest, .. } => {
            let mut manifest = manifest.clone();
            substitute(&mut manifest, cluster);
            cluster.apply(manifest);
        }
        Action::Delete { object } => cluster.delete(&ref_key(object)),
        Action::PopulateEndpointSlices {
            source_pods,
            endpoint_slices,
            ..
        } => cluster.populate_endpoint_slices(source_pods, endpoint_slices),
    }
}

/// The checks of one test so far.
#[derive(Default)]
struct Checks {
    decided: usize,
    failures: Vec<String>,
    undecided: Vec<String>,
}

impl Checks {
    fn record(&mut self, label: String, o: Outcome) {
        match o {
            Outcome::Pass => self.decided += 1,
            Outcome::Fail(m) => self.failures.push(format!("{label}: {m}")),
            Outcome::Undecided(m) => self.undecided.push(format!("{label}: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: infra}
spec:
  selector: {app: backend}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: infra}
spec:
  template: {metadata: {labels: {app: backend}}}
"#;

    const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: backend, port: 8080}]}]
"#;

    fn case(name: &str, features: &str, extra: &str, expect_status: u16) -> String {
        format!(
            "name: {name}\ndescription: d\nsource: {{file: f, tag: t, commit: c}}\n\
             features: [{features}]\nmanifests: [route.yaml]\nprovisional: false\n\
             parallel: false\n{extra}steps:\n\
             - status:\n  - assert: route_condition\n    helper: h\n\
             \x20   object: {{kind: HTTPRoute, namespace: infra, name: route}}\n\
             \x20   parent: {{namespace: infra, name: gw}}\n\
             \x20   condition: {{type: Accepted, status: 'True'}}\n\
             \x20 requests:\n  - target: {{gateway: {{namespace: infra, name: gw}}, port: 80}}\n\
             \x20   request: {{protocol: HTTP, method: GET, path: /}}\n\
             \x20   expect: {{status: [{expect_status}], namespace: infra, backend: backend}}\n"
        )
    }

    /// A corpus in a fresh directory: the base above, `route.yaml`, and these cases.
    fn corpus(test: &str, cases: &[(&str, String)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("loom-conformance-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["base", "manifests", "cases"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("base/manifests.yaml"), BASE).unwrap();
        std::fs::write(
            dir.join("base/programmatic-resources.yaml"),
            "resources: []\n",
        )
        .unwrap();
        std::fs::write(dir.join("manifests/route.yaml"), ROUTE).unwrap();
        for (file, text) in cases {
            std::fs::write(dir.join("cases").join(file), text).unwrap();
        }
        dir
    }

    fn verdicts(report: &Report) -> Vec<(&str, Verdict)> {
        report
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.verdict()))
            .collect()
    }

    #[test]
    fn a_corpus_runs_case_by_case_in_file_order() {
        let dir = corpus(
            "order",
            &[
                ("b.yaml", case("Routed", "Gateway, HTTPRoute", "", 200)),
                ("a.yaml", case("Wrong", "Gateway, HTTPRoute", "", 404)),
                (
                    "c.yaml",
                    case("Future", "Gateway, HTTPRouteTeleport", "", 200),
                ),
                ("d.txt", "not a case".into()),
            ],
        );
        let report = run(&dir, None).unwrap();
        assert_eq!(
            verdicts(&report),
            [
                ("Wrong", Verdict::Failed),
                ("Routed", Verdict::Passed),
                ("Future", Verdict::Skipped),
            ]
        );
        assert_eq!(
            report.tests[2].outcome,
            TestOutcome::Unsupported(vec!["HTTPRouteTeleport".into()])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_runs_the_tests_whose_name_contains_it() {
        let dir = corpus(
            "only",
            &[
                ("a.yaml", case("Routed", "Gateway", "", 200)),
                ("b.yaml", case("Other", "Gateway", "", 200)),
            ],
        );
        let report = run(&dir, Some("Rout")).unwrap();
        assert_eq!(verdicts(&report), [("Routed", Verdict::Passed)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn skip_if_with_every_feature_supported_returns_early() {
        let gate = "skip_if: {supported_features: [Gateway], note: n}\n";
        let dir = corpus(
            "skip-if",
            &[("a.yaml", case("Early", "Gateway", gate, 404))],
        );
        let report = run(&dir, None).unwrap();
        assert_eq!(report.tests[0].outcome, TestOutcome::ReturnsEarly);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn run_only_if_with_an_unsupported_feature_returns_early() {
        let gate = "run_only_if: {supported_features: [HTTPRouteTeleport], note: n}\n";
        let dir = corpus(
            "run-only-if",
            &[("a.yaml", case("Early", "Gateway", gate, 404))],
        );
        let report = run(&dir, None).unwrap();
        assert_eq!(report.tests[0].outcome, TestOutcome::ReturnsEarly);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_case_file_with_an_unknown_key_is_an_error() {
        let bad = case("Bad", "Gateway", "colour: blue\n", 200);
        let dir = corpus("unknown-key", &[("a.yaml", bad)]);
        let err = run(&dir, None).unwrap_err();
        assert!(
            matches!(&err, Error::Yaml { path, .. } if path.ends_with("a.yaml")),
            "{err}"
        );
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_corpus_is_an_error_naming_the_file_with_the_cause_as_source() {
        let err = run(Path::new("/nonexistent/corpus"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading /nonexistent/corpus/base/manifests.yaml"
        );
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("No such file")));
    }
}
