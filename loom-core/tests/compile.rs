//! Fixture tests: every `fixtures/*.yaml` is loaded, compiled, and its status and snapshot
//! summary are compared with the committed insta snapshot (`snapshots/`).

use std::path::Path;

fn compile_fixture(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let loaded = loom_core::load::load_str(&name, &text);
    let mut input = loom_core::Input::default();
    for (_, o) in loaded.objects {
        input.upsert(o);
    }
    let options = loom_core::Options {
        default_addresses: vec![loom_core::status::StatusAddress {
            type_: "IPAddress".into(),
            value: "127.0.0.1".into(),
        }],
        ..Default::default()
    };
    let compiled = loom_core::compile_with(&input, &options);
    let again = loom_core::compile_with(&input, &options);
    assert_eq!(
        compiled.status, again.status,
        "compile must be deterministic"
    );
    let status: serde_json::Map<String, serde_json::Value> = compiled
        .status
        .objects
        .iter()
        .map(|(k, s)| (k.to_string(), serde_json::to_value(s).unwrap()))
        .collect();
    serde_json::json!({
        "loadErrors": loaded.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "status": status,
        "snapshot": loom_core::snapshot::describe(&compiled.snapshot),
    })
}

#[test]
fn fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    for path in paths {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let value = compile_fixture(&path);
        insta::with_settings!({ snapshot_suffix => name.clone(), description => "YAML -> compile -> status + snapshot" }, {
            insta::assert_yaml_snapshot!("fixture", value);
        });
    }
}
