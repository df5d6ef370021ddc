//! Expected results: one line per test (`NAME passed|failed|skipped`), so that a test that
//! passed before and no longer passes fails CI, and a file that no longer describes the run is
//! noticed.

use std::collections::BTreeMap;
use std::fmt;

use crate::report::{Report, Verdict};

/// Expected verdicts by test name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// The verdicts.
    pub tests: BTreeMap<String, Verdict>,
}

/// A line of an expected-results file that is not `NAME VERDICT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected `NAME passed|failed|skipped`, got {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The line.
    pub text: String,
}

impl Expected {
    /// Parses the file: `#` starts a comment, blank lines are ignored.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut tests = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = || ParseError {
                line: i + 1,
                text: raw.into(),
            };
            let mut words = line.split_whitespace();
            let (Some(name), Some(verdict), None) = (words.next(), words.next(), words.next())
            else {
                return Err(err());
            };
            let verdict = Verdict::parse(verdict).ok_or_else(err)?;
            if tests.insert(name.to_owned(), verdict).is_some() {
                return Err(err());
            }
        }
        Ok(Expected { tests })
    }

    /// The verdicts of a run, as [`Expected`].
    pub fn of(report: &Report) -> Self {
        Expected {
            tests: report
                .tests
                .iter()
                .map(|t| (t.name.clone(), t.verdict()))
                .collect(),
        }
    }

    /// The file for a run: a header of `#` comments, then one line per test, sorted by name.
    pub fn render(&self, header: &str) -> String {
        let mut out: String = header.lines().map(|l| format!("# {l}\n")).collect();
        for (name, verdict) in &self.tests {
            out.push_str(&format!("{name} {verdict}\n"));
        }
        out
    }

    /// How a run differs from these expectations.
    pub fn compare(&self, report: &Report) -> Comparison {
        let actual = Expected::of(report);
        let mut c = Comparison::default();
        let names: std::collections::BTreeSet<&String> =
            self.tests.keys().chain(actual.tests.keys()).collect();
        for name in names {
            let (e, a) = (
                self.tests.get(name).copied(),
                actual.tests.get(name).copied(),
            );
            if e == a {
                continue;
            }
            let change = Change {
                name: name.clone(),
                expected: e,
                actual: a,
            };
            if change.is_regression() {
                c.regressions.push(change);
            } else {
                c.other.push(change);
            }
        }
        c
    }
}

/// One test whose verdict is not the expected one (`None`: not in the file, or not run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The test.
    pub name: String,
    /// What the file says.
    pub expected: Option<Verdict>,
    /// What the run found.
    pub actual: Option<Verdict>,
}

impl Change {
    /// A test expected to pass that did not (or was not run), or a test expected to be skipped
    /// that failed.
    pub fn is_regression(&self) -> bool {
        match (self.expected, self.actual) {
            (Some(Verdict::Passed), a) => a != Some(Verdict::Passed),
            (_, Some(Verdict::Failed)) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<Verdict>| v.map_or("absent", Verdict::as_str);
        write!(
            f,
            "{}: expected {}, now {}",
            self.name,
            show(self.expected),
            show(self.actual)
        )
    }
}

/// The differences between a run and the expectations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Tests that got worse.
    pub regressions: Vec<Change>,
    /// Other differences: improvements, new tests, tests no longer in the corpus.
    pub other: Vec<Change>,
}

impl Comparison {
    /// The run matches the expectations exactly.
    pub fn is_empty(&self) -> bool {
        self.regressions.is_empty() && self.other.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{TestOutcome, TestReport};

    fn report(tests: &[(&str, Verdict)]) -> Report {
        Report {
            tests: tests
                .iter()
                .map(|(name, v)| TestReport {
                    name: (*name).into(),
                    outcome: match v {
                        Verdict::Passed => TestOutcome::ReturnsEarly,
                        Verdict::Skipped => TestOutcome::Unsupported(vec!["X".into()]),
                        Verdict::Failed => TestOutcome::Checked {
                            decided: 0,
                            failures: vec!["f".into()],
                            undecided: vec![],
                        },
                    },
                })
                .collect(),
        }
    }

    fn expected(text: &str) -> Expected {
        Expected::parse(text).unwrap()
    }

    #[test]
    fn parse_skips_comments_and_blank_lines() {
        let e = expected("# header\n\nA passed\nB skipped # why\n");
        assert_eq!(e.tests.len(), 2);
        assert_eq!(e.tests["B"], Verdict::Skipped);
    }

    #[test]
    fn parse_rejects_an_unknown_verdict() {
        assert_eq!(
            Expected::parse("A pass\n"),
            Err(ParseError {
                line: 1,
                text: "A pass".into()
            })
        );
    }

    #[test]
    fn parse_rejects_a_test_listed_twice() {
        assert!(Expected::parse("A passed\nA skipped\n").is_err());
    }

    #[test]
    fn parse_rejects_extra_words() {
        assert!(Expected::parse("A passed now\n").is_err());
    }

    #[test]
    fn render_parses_back() {
        let e = Expected::of(&report(&[("B", Verdict::Skipped), ("A", Verdict::Passed)]));
        let text = e.render("first\nsecond");
        assert!(text.starts_with("# first\n# second\nA passed\nB skipped\n"));
        assert_eq!(Expected::parse(&text).unwrap(), e);
    }

    #[test]
    fn the_same_verdicts_compare_empty() {
        let r = report(&[("A", Verdict::Passed), ("B", Verdict::Skipped)]);
        assert!(Expected::of(&r).compare(&r).is_empty());
    }

    #[test]
    fn a_passed_test_that_is_skipped_now_is_a_regression() {
        let c = expected("A passed\n").compare(&report(&[("A", Verdict::Skipped)]));
        assert_eq!(c.regressions.len(), 1);
        assert_eq!(
            c.regressions[0].to_string(),
            "A: expected passed, now skipped"
        );
    }

    #[test]
    fn a_passed_test_that_is_gone_is_a_regression() {
        let c = expected("A passed\n").compare(&report(&[]));
        assert_eq!(
            c.regressions[0].to_string(),
            "A: expected passed, now absent"
        );
    }

    #[test]
    fn a_skipped_test_that_fails_now_is_a_regression() {
        let c = expected("A skipped\n").compare(&report(&[("A", Verdict::Failed)]));
        assert_eq!(c.regressions.len(), 1);
    }

    #[test]
    fn a_new_failing_test_is_a_regression() {
        let c = expected("").compare(&report(&[("A", Verdict::Failed)]));
        assert_eq!(c.regressions.len(), 1);
    }

    #[test]
    fn an_improvement_is_a_difference_but_no_regression() {
        let c = expected("A skipped\nB failed\n")
            .compare(&report(&[("A", Verdict::Passed), ("B", Verdict::Skipped)]));
        assert!(c.regressions.is_empty());
        assert_eq!(c.other.len(), 2);
    }

    #[test]
    fn a_new_test_that_passes_is_a_difference_but_no_regression() {
        let c = expected("").compare(&report(&[("A", Verdict::Passed)]));
        assert!(c.regressions.is_empty());
        assert_eq!(c.other[0].to_string(), "A: expected absent, now passed");
    }
}
