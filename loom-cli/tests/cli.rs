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
