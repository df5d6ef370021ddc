//! # loom-conformance
//!
//! The offline Gateway API conformance runner behind `loom conformance`: it runs a corpus of
//! upstream conformance tests translated to data (the layout of `shared/conformance`:
//! `cases/*.yaml`, `manifests/`, `base/`; the case schema is its `SCHEMA.md`) against
//! `loom-core`'s compiler and decision API, without sockets.
//!
//! The runner plays the API server: it applies manifests with the suite's rewrites, stamps
//! `creationTimestamp` and `generation`, creates the programmatic TLS objects (real
//! certificates from rcgen), compiles after every change and checks every status assertion and
//! every request expectation that can be decided without a data plane. A test passes when every
//! one of its checks was decided and held, fails when a decided check failed, and is skipped
//! otherwise (with the undecided checks listed). Weights, mirrors, timeouts, retries, TLS
//! handshakes, TLS traffic routed by SNI, TCP/UDP traffic and WebSockets are undecided.
//!
//! ```no_run
//! let report = loom_conformance::run(std::path::Path::new("../shared/conformance"), None)?;
//! for test in &report.tests {
//!     println!("{}", test.lines(false).join("\n"));
//! }
//! println!("{}", report.summary());
//! # Ok::<(), loom_conformance::Error>(())
//! ```
//!
//! [`Expected`] compares a run with an expected-results file (`expected.txt` in this crate,
//! checked by `tests/corpus.rs`).

pub mod case;

mod assert;
mod cluster;
mod conditions;
mod error;
mod expected;
mod patch;
mod programmatic;
mod report;
mod request;
mod runner;
mod yaml;

use std::path::Path;

pub use error::Error;
pub use expected::{Change, Comparison, Expected, ParseError};
pub use report::{Report, TestOutcome, TestReport, Verdict};

/// Runs every test of the corpus at `corpus` (only those whose name contains `only`, if
/// given). Fails only when the corpus cannot be read; failed checks are in the [`Report`].
pub fn run(corpus: &Path, only: Option<&str>) -> Result<Report, Error> {
    runner::run(corpus, only)
}

/// Reads and checks one case file against the schema.
pub fn read_case(path: &Path) -> Result<case::Case, Error> {
    runner::read_case(path)
}
