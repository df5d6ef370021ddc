//! `loom serve`: files in, traffic out.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use loom_core::status::StatusAddress;
use loom_pingora::{ServeOptions, SnapshotHandle};

use crate::files;

/// The data plane's settings from the command line (`loom serve`, `controller`, `data-plane`).
pub(crate) fn serve_options(
    bind: IpAddr,
    admin: SocketAddr,
    threads: Option<usize>,
) -> ServeOptions {
    let mut serve = ServeOptions {
        default_bind: bind,
        admin: Some(admin),
        ..ServeOptions::default()
    };
    if let Some(t) = threads {
        serve.threads = t;
    }
    serve
}

/// What the watcher compares to notice a change: every file's path, size and mtime.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = vec![];
    for p in paths {
        let _ = files::collect(p, &mut files);
    }
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (f, len, modified)
        })
        .collect()
}

fn options(bind: IpAddr) -> loom_core::Options {
    let shown = if bind.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bind
    };
    loom_core::Options {
        default_addresses: vec![StatusAddress {
            type_: "IPAddress".into(),
            value: shown.to_string(),
        }],
        ..Default::default()
    }
}

/// Loads and compiles; `Err` lists every load error (nothing is published then).
fn load(
    paths: &[PathBuf],
    options: &loom_core::Options,
) -> Result<(loom_core::Compiled, Duration)> {
    let started = Instant::now();
    let loaded = files::load_paths(paths)?;
    let mut errors = vec![];
    for e in &loaded.errors {
        if e.is_warning() {
            log::warn!("{e}");
        } else {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    let compiled = loom_core::compile_with(&loaded.input, options);
    Ok((compiled, started.elapsed()))
}

fn report(compiled: &loom_core::Compiled) {
    for (key, status) in &compiled.status.objects {
        if !status.is_healthy() {
            log::warn!(
                "{key} is not healthy: {}",
                serde_json::to_string(status).unwrap_or_default()
            );
        }
    }
}

pub(crate) fn run(
    paths: &[PathBuf],
    bind: IpAddr,
    admin: SocketAddr,
    threads: Option<usize>,
    poll_ms: u64,
) -> Result<ExitCode> {
    let opts = options(bind);
    let (compiled, took) = load(paths, &opts)?;
    report(&compiled);
    let handle = SnapshotHandle::new();
    let generation = handle.publish(compiled, took);
    log::info!("configuration {generation} loaded in {took:?}");

    let watcher = handle.clone();
    let watched = paths.to_vec();
    std::thread::Builder::new()
        .name("loom-watch".into())
        .spawn(move || {
            let mut last = fingerprint(&watched);
            loop {
                std::thread::sleep(Duration::from_millis(poll_ms));
                let now = fingerprint(&watched);
                if now == last {
                    continue;
                }
                last = now;
                match load(&watched, &opts) {
                    Ok((compiled, took)) => {
                        report(&compiled);
                        let g = watcher.publish(compiled, took);
                        log::info!("configuration {g} loaded in {took:?}");
                    }
                    Err(e) => log::error!(
                        "configuration not changed, the last good one keeps serving:\n{e:#}"
                    ),
                }
            }
        })?;

    let serve = serve_options(bind, admin, threads);
    log::info!("admin on http://{admin}");
    loom_pingora::server(handle, &serve).run_forever()
}
