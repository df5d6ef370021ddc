//! What a run found: one [`TestReport`] per test, rendered the way `loom conformance` prints
//! it.

use std::fmt;

/// The result of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One entry per test run, in case-file order.
    pub tests: Vec<TestReport>,
}

/// One test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestReport {
    /// Upstream `ShortName`.
    pub name: String,
    /// What happened.
    pub outcome: TestOutcome,
}

/// What happened to one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestOutcome {
    /// Not run: Loom does not support these features.
    Unsupported(Vec<String>),
    /// Passes without checks: upstream returns early (`skip_if` / `run_only_if`).
    ReturnsEarly,
    /// Run: `decided` checks held, `failures` did not, `undecided` need a data plane.
    Checked {
        /// Checks decided and held.
        decided: usize,
        /// Checks decided and failed (and objects that did not load), one line each.
        failures: Vec<String>,
        /// Checks that need a data plane, one line each.
        undecided: Vec<String>,
    },
}

/// A test's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Every check was decided and held.
    Passed,
    /// A decided check failed.
    Failed,
    /// Not run, or some check could not be decided (and none failed).
    Skipped,
}

impl Verdict {
    /// `passed`, `failed` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
        }
    }

    /// The inverse of [`Verdict::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passed" => Some(Verdict::Passed),
            "failed" => Some(Verdict::Failed),
            "skipped" => Some(Verdict::Skipped),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TestOutcome {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        match self {
            TestOutcome::Unsupported(_) => Verdict::Skipped,
            TestOutcome::ReturnsEarly => Verdict::Passed,
            TestOutcome::Checked {
                failures,
                undecided,
                ..
            } => {
                if !failures.is_empty() {
                    Verdict::Failed
                } else if !undecided.is_empty() {
                    Verdict::Skipped
                } else {
                    Verdict::Passed
                }
            }
        }
    }
}

impl TestReport {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.outcome.verdict()
    }

    /// The lines `loom conformance` prints: `PASS`/`FAIL`/`SKIP` and the name, then the failed
    /// checks, or the first three undecided ones (all of them when `verbose`).
    pub fn lines(&self, verbose: bool) -> Vec<String> {
        let name = &self.name;
        match &self.outcome {
            TestOutcome::Unsupported(features) => vec![format!(
                "SKIP {name}: features not supported: {}",
                features.join(", ")
            )],
            TestOutcome::ReturnsEarly => {
                vec![format!(
                    "PASS {name} (returns early upstream: skip_if/run_only_if)"
                )]
            }
            TestOutcome::Checked {
                decided,
                failures,
                undecided,
            } => {
                let (head, details): (String, &[String]) = match self.verdict() {
                    Verdict::Failed => (
                        format!(
                            "FAIL {name} ({} failed, {decided} passed, {} undecided)",
                            failures.len(),
                            undecided.len()
                        ),
                        failures,
                    ),
                    Verdict::Skipped => (
                        format!(
                            "SKIP {name}: {decided} checks passed, {} undecided",
                            undecided.len()
                        ),
                        if verbose {
                            undecided
                        } else {
                            &undecided[..undecided.len().min(3)]
                        },
                    ),
                    Verdict::Passed => (format!("PASS {name} ({decided} checks)"), &[]),
                };
                std::iter::once(head)
                    .chain(details.iter().map(|d| format!("    {d}")))
                    .collect()
            }
        }
    }
}

impl Report {
    /// How many tests have a verdict.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.tests.iter().filter(|t| t.verdict() == verdict).count()
    }

    /// `N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.count(Verdict::Passed),
            self.count(Verdict::Failed),
            self.count(Verdict::Skipped)
        )
    }

    /// The run failed: some test failed.
    pub fn failed(&self) -> bool {
        self.count(Verdict::Failed) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(decided: usize, failures: &[&str], undecided: &[&str]) -> TestReport {
        TestReport {
            name: "T".into(),
            outcome: TestOutcome::Checked {
                decided,
                failures: failures.iter().map(|s| (*s).into()).collect(),
                undecided: undecided.iter().map(|s| (*s).into()).collect(),
            },
        }
    }

    #[test]
    fn a_failure_fails_the_test_even_with_undecided_checks() {
        assert_eq!(checked(1, &["f"], &["u"]).verdict(), Verdict::Failed);
    }

    #[test]
    fn an_undecided_check_skips_the_test() {
        assert_eq!(checked(1, &[], &["u"]).verdict(), Verdict::Skipped);
    }

    #[test]
    fn only_decided_checks_pass_the_test() {
        assert_eq!(checked(3, &[], &[]).verdict(), Verdict::Passed);
    }

    #[test]
    fn a_test_that_returns_early_upstream_passes() {
        let t = TestReport {
            name: "T".into(),
            outcome: TestOutcome::ReturnsEarly,
        };
        assert_eq!(t.verdict(), Verdict::Passed);
    }

    #[test]
    fn unsupported_features_skip_the_test() {
        let t = TestReport {
            name: "T".into(),
            outcome: TestOutcome::Unsupported(vec!["A".into(), "B".into()]),
        };
        assert_eq!(t.verdict(), Verdict::Skipped);
        assert_eq!(t.lines(false), ["SKIP T: features not supported: A, B"]);
    }

    #[test]
    fn a_skipped_test_lists_three_undecided_checks_unless_verbose() {
        let t = checked(2, &[], &["a", "b", "c", "d"]);
        assert_eq!(
            t.lines(false),
            [
                "SKIP T: 2 checks passed, 4 undecided",
                "    a",
                "    b",
                "    c"
            ]
        );
        assert_eq!(t.lines(true).len(), 5);
    }

    #[test]
    fn a_failed_test_lists_every_failure() {
        let t = checked(2, &["x", "y"], &["u"]);
        assert_eq!(
            t.lines(false),
            ["FAIL T (2 failed, 2 passed, 1 undecided)", "    x", "    y"]
        );
    }

    #[test]
    fn a_passed_test_is_one_line() {
        assert_eq!(checked(5, &[], &[]).lines(true), ["PASS T (5 checks)"]);
    }

    #[test]
    fn the_summary_counts_verdicts() {
        let r = Report {
            tests: vec![
                checked(1, &[], &[]),
                checked(1, &[], &["u"]),
                checked(1, &[], &[]),
            ],
        };
        assert_eq!(r.summary(), "2 passed, 0 failed, 1 skipped");
        assert!(!r.failed());
    }

    #[test]
    fn verdicts_round_trip_through_their_names() {
        for v in [Verdict::Passed, Verdict::Failed, Verdict::Skipped] {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verdict::parse("pass"), None);
    }
}
