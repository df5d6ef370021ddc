//! Runs the `loom` binary the way a user does.

use std::process::Command;

fn loom(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loom"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run loom");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loom-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_example() {
    let (code, out, _) = loom(&["check", "examples/quickstart.yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains("kind: HTTPRoute"));
    assert!(out.contains("reason: ResolvedRefs"));
}

#[test]
fn check_accepts_the_client_traffic_example() {
    let (code, out, err) = loom(&["check", "examples/client-traffic.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("kind: ClientTrafficPolicy").count(), 2, "{out}");
    assert!(
        out.contains("client connections to its ports get these limits"),
        "{out}"
    );
}

#[test]
fn check_names_file_line_and_field_of_a_bad_value() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart.yaml"
    ))
    .unwrap();
    let broken = example.replace("port: 8080", "port: eighty");
    let path = temp_file("broken.yaml", &broken);
    let (code, _, err) = loom(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let line = broken
        .lines()
        .position(|l| l.contains("port: eighty"))
        .unwrap()
        + 1;
    let expected =
        format!("broken.yaml:{line}: Gateway default/web: field `spec.listeners[0].port`");
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn check_fails_on_unresolved_references() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart.yaml"
    ))
    .unwrap();
    let path = temp_file(
        "missing.yaml",
        &example.replace("name: api-canary}", "name: nowhere}"),
    );
    let (code, out, _) = loom(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("reason: BackendNotFound"), "{out}");
}

#[test]
fn explain_shows_the_winning_rule_and_the_backend_request() {
    let (code, out, _) = loom(&[
        "explain",
        "examples/quickstart.yaml",
        "--request",
        "GET http://shop.example.com:8080/api/items?x=1",
        "-H",
        "x-canary: yes",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("rule: 0 (canary)"), "{out}");
    assert!(out.contains("HTTPRoute default/shop rule 1"), "{out}");
    assert!(out.contains("GET /api/items?x=1"), "{out}");
    let (_, out, _) = loom(&[
        "explain",
        "examples/quickstart.yaml",
        "--request",
        "GET http://shop.example.com:8080/old",
    ]);
    assert!(
        out.contains("redirect 301 Moved Permanently Location: http://shop.example.com:8080/new"),
        "{out}"
    );
    let (_, out, _) = loom(&[
        "explain",
        "examples/quickstart.yaml",
        "--request",
        "GET http://elsewhere.org:8080/",
    ]);
    assert!(out.contains("respond 404"), "{out}");
}

#[test]
fn a_closed_stdout_ends_output_quietly() {
    // `loom check --snapshot … | head -1`: the reader goes away after the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_loom"))
        .args(["check", "--snapshot"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/quickstart.yaml"
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before Loom writes anything
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// The newcomer's paste: Gateways in loom-system, routes in default whose parentRefs leave out
/// the namespace. Every object is named in the output, with its status or why it has none, and
/// every dangling parentRef is explained with the Gateway meant and the fix.
#[test]
fn check_explains_the_newcomers_paste() {
    let file = "loom-cli/tests/newcomer.yaml";
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/newcomer.yaml"))
        .unwrap();
    let (code, out, err) = loom(&["check", file]);
    assert_eq!(code, 0, "dangling parentRefs are warnings\n{out}{err}");
    let loaded = loom_core::load::load_str(file, &text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.objects.len(), 22);
    let documents: Vec<&str> = out.split("---\n").collect();
    let mut dangling = 0;
    for (_, object) in &loaded.objects {
        let key = object.key();
        let mut header = format!("kind: {}\nmetadata:\n  name: {}\n", key.kind, key.name);
        if !key.namespace.is_empty() {
            header.push_str(&format!("  namespace: {}\n", key.namespace));
        }
        let doc = documents
            .iter()
            .find(|d| d.starts_with(&header))
            .unwrap_or_else(|| panic!("{key} is not in the output:\n{out}"));
        assert!(
            doc.contains("\nstatus:\n") || doc.contains("\n# no status: "),
            "{key} has neither a status nor why not:\n{doc}"
        );
        let Some(parent_refs) = object.parent_refs() else {
            continue;
        };
        if key.namespace != "default" {
            assert!(doc.contains("reason: Accepted"), "{doc}");
            continue;
        }
        let gateway = &parent_refs[0].name;
        let start = text
            .find(&format!(
                "kind: {}\nmetadata:\n  name: {}\n",
                key.kind, key.name
            ))
            .unwrap();
        let at = start
            + text[start..]
                .find(&format!("  - name: {gateway}\n"))
                .unwrap();
        let line = text[..at].matches('\n').count() + 1;
        let explained = format!(
            "parentRefs[0] names Gateway default/{gateway}, which does not exist; did you mean \
             loom-system/{gateway}? add \"namespace: loom-system\" to the parentRef, and allow \
             routes from namespace \"default\" on its listener"
        );
        assert!(
            doc.contains("# no status: attached to no Gateway or ListenerSet Loom serves"),
            "{doc}"
        );
        assert!(doc.contains(&format!("# warning: {explained}")), "{doc}");
        let warning = format!("warning: {file}:{line}: {key}: {explained}");
        assert!(err.contains(&warning), "no `{warning}` in:\n{err}");
        dangling += 1;
    }
    assert_eq!(
        dangling, 8,
        "five HTTPRoutes, a GRPCRoute, a TCPRoute and a TLSRoute"
    );
}

#[test]
fn check_warns_of_unknown_fields_with_file_line_and_path() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart.yaml"
    ))
    .unwrap();
    // A typo, and fields Loom does not model but Gateway API has (no warnings for those).
    let typo = example
        .replace(
            "    hostname: \"*.example.com\"\n",
            "    hostname: \"*.example.com\"\n    allowedRoute: {namespaces: {from: All}}\n",
        )
        .replace(
            "  hostnames: [\"shop.example.com\"]\n",
            "  hostnames: [\"shop.example.com\"]\n  useDefaultGateways: All\n",
        )
        .replace(
            "  name: shop\n",
            "  name: shop\n  annotations: {note: fine}\n  resourceVersion: \"7\"\n",
        )
        + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo, namespace: default}\n";
    let path = temp_file("typo.yaml", &typo);
    let (code, out, err) = loom(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "unknown fields are warnings\n{out}{err}");
    let line = typo
        .lines()
        .position(|l| l.contains("allowedRoute:"))
        .unwrap()
        + 1;
    let expected = format!(
        "warning: {}:{line}: Gateway default/web: unknown field `spec.listeners[0].allowedRoute`",
        path.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert_eq!(err.matches("unknown field").count(), 1, "{err}");
    assert!(
        out.contains("# warning: unknown field `spec.listeners[0].allowedRoute`: Loom ignores it"),
        "{out}"
    );
    // The Deployment Loom does not read is listed too.
    assert!(
        out.contains(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: echo\n  namespace: \
             default\n# not a kind Loom reads; skipped"
        ),
        "{out}"
    );
}
