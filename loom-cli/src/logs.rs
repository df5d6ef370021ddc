//! Logs: Loom's `tracing` events and the `log` records of Pingora and other crates (bridged),
//! filtered by `RUST_LOG` (`info` when unset), written to stderr as text or, with
//! `--log-format json`, as one JSON object per line. The access log is the target `access`:
//! `RUST_LOG=info,access=off` turns it off.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `time level target: message key=value…`, for people.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, then the event's fields),
    /// for log collectors.
    Json,
}

/// Installs the process's logger.
// The binary, not loom-core: the filter comes from `RUST_LOG`, as its users expect.
#[allow(clippy::disallowed_methods)]
pub(crate) fn init(format: LogFormat) {
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new("info"), Some((spec, e))),
        },
        _ => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` also routes `log` records into tracing (the "tracing-log" feature); it only
    // fails when a logger is already installed, which would then keep working.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Some((spec, e)) = bad {
        tracing::warn!("RUST_LOG={spec:?} is not a filter ({e}); logging at info");
    }
}
