//! Runs the conformance corpus (`../shared/conformance` from the workspace root, or
//! `LOOM_CONFORMANCE_CORPUS`; a relative path is taken from the workspace root) and compares
//! every test's verdict with `expected.txt`. A test that passed and no longer passes fails this
//! test; so does any other difference, until `expected.txt` is updated:
//!
//! ```sh
//! LOOM_CONFORMANCE_BLESS=1 cargo test -p loom-conformance --test corpus
//! ```
//!
//! Without the corpus the test prints why and passes.

use std::path::{Path, PathBuf};

use loom_conformance::{Expected, Verdict};

const HEADER: &str = "\
Expected verdicts of the offline conformance runner over the Gateway API v1.6.1 corpus
(shared/conformance), checked by loom-conformance/tests/corpus.rs: one line per test.
Regenerate after a deliberate change:
  LOOM_CONFORMANCE_BLESS=1 cargo test -p loom-conformance --test corpus";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the workspace")
        .to_owned()
}

fn corpus() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("LOOM_CONFORMANCE_CORPUS") {
        Some(dir) => root.join(dir),
        None => root.join("../shared/conformance"),
    }
}

fn expected_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("expected.txt")
}

#[test]
fn the_corpus_gives_the_expected_verdicts() {
    let corpus = corpus();
    if !corpus.join("cases").is_dir() {
        println!(
            "skipped: no conformance corpus at {} (set LOOM_CONFORMANCE_CORPUS)",
            corpus.display()
        );
        return;
    }
    let report = loom_conformance::run(&corpus, None).expect("the corpus runs");
    println!("{}", report.summary());
    let actual = Expected::of(&report);
    let path = expected_file();
    if std::env::var_os("LOOM_CONFORMANCE_BLESS").is_some() {
        std::fs::write(&path, actual.render(HEADER)).expect("expected.txt is written");
        return;
    }
    let text = std::fs::read_to_string(&path).expect("expected.txt is readable");
    let expected = Expected::parse(&text).expect("expected.txt parses");
    let diff = expected.compare(&report);
    if diff.is_empty() {
        return;
    }
    let mut msg = String::new();
    for c in &diff.regressions {
        msg.push_str(&format!("REGRESSION {c}\n"));
        if let Some(t) = report.tests.iter().find(|t| t.name == c.name) {
            for line in t.lines(true).iter().skip(1) {
                msg.push_str(&format!("  {line}\n"));
            }
        }
    }
    for c in &diff.other {
        msg.push_str(&format!("changed    {c}\n"));
    }
    panic!(
        "{} regressions, {} other changes against {}:\n{msg}\
         If the changes are intended, update the file:\n  \
         LOOM_CONFORMANCE_BLESS=1 cargo test -p loom-conformance --test corpus",
        diff.regressions.len(),
        diff.other.len(),
        path.display()
    );
}

#[test]
fn no_expected_test_is_failed() {
    let text = std::fs::read_to_string(expected_file()).expect("expected.txt is readable");
    let expected = Expected::parse(&text).expect("expected.txt parses");
    let failed: Vec<_> = expected
        .tests
        .iter()
        .filter(|(_, v)| **v == Verdict::Failed)
        .map(|(n, _)| n)
        .collect();
    assert!(
        failed.is_empty(),
        "expected.txt accepts failures: {failed:?}"
    );
}
