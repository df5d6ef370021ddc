//! The runner's errors: a corpus that cannot be read. A check that fails is not an error; it is
//! a result ([`crate::Verdict`]). Causes are returned by `source()`, not repeated in the
//! message (print the chain, e.g. anyhow's `{:#}`).

use std::path::PathBuf;

/// Why a corpus could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A YAML document did not parse, or a case file does not follow the schema.
    #[error("{}:{line}: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The first line of the document.
        line: u64,
        /// The parser's message (with the line and column inside the document).
        message: String,
    },
    /// The programmatic TLS objects could not be generated.
    #[error("generating the test certificates")]
    Certificate(#[from] rcgen::Error),
}
