//! `loom serve`: files in, traffic out.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use loom_core::status::StatusAddress;
use loom_pingora::frontend::{ClientLimits, HeadLimits};
use loom_pingora::{ServeOptions, SnapshotHandle};

use crate::files;
use crate::reload::{self, Files};

/// The data plane's flags shared by `loom serve`, `controller` and `data-plane`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DataPlaneFlags {
    /// Milliseconds a client has to send a whole request head (HTTP/1), counted from its first
    /// byte, or for a connection's first request from accept. Slower clients are disconnected.
    #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// Milliseconds an idle keep-alive connection (HTTP/1 between requests, HTTP/2 with no
    /// open stream) stays open (at least 1000).
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1000..))]
    idle_timeout_ms: u64,
    /// Connections each listener holds at most; more are closed as they are accepted. All
    /// listeners together also stay within the file-descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    max_connections: usize,
    /// Seconds to let requests in flight finish on SIGTERM (on Kubernetes, keep it below the
    /// pod's terminationGracePeriodSeconds).
    #[arg(long, default_value_t = 5)]
    grace_period: u64,
    /// Proxies in front of Loom whose X-Forwarded-For/-Proto/-Host headers are kept (the
    /// client's address is appended); with 0, what a client sends in them is replaced.
    #[arg(long, default_value_t = 0)]
    trusted_hops: usize,
    /// Redis that holds global rate limits (RateLimitPolicy `spec.global`), shared by every
    /// replica: `redis://host:port[/db]`. Without it such policies are not accepted.
    #[arg(long)]
    pub(crate) redis_url: Option<String>,
    /// Milliseconds one global rate-limit check may take before the policy's failure mode
    /// (`failOpen`) decides.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) redis_timeout_ms: u64,
    /// Where WASMPlugin modules are cached: downloads by content (`modules/sha256/`), tags
    /// resolved (`refs/`), compiled code (`compiled/`). Keep it across restarts to start
    /// without the network (imagePullPolicy IfNotPresent).
    #[arg(long, env = "LOOM_PLUGIN_CACHE", default_value = "/tmp/loom-plugins")]
    pub(crate) plugin_cache: PathBuf,
}

impl DataPlaneFlags {
    /// The data plane's WASMPlugins, cached where the flags say.
    pub(crate) fn plugins(&self) -> loom_pingora::plugin::Plugins {
        loom_pingora::plugin::Plugins::new(self.plugin_cache.clone())
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a number of at least 1")),
    }
}

/// The data plane's settings from the command line (`loom serve`, `controller`, `data-plane`).
pub(crate) fn serve_options(
    bind: IpAddr,
    admin: SocketAddr,
    threads: Option<usize>,
    flags: &DataPlaneFlags,
) -> ServeOptions {
    let mut serve = ServeOptions {
        default_bind: bind,
        admin: Some(admin),
        grace_period_seconds: flags.grace_period,
        trusted_hops: flags.trusted_hops,
        redis: flags
            .redis_url
            .clone()
            .map(|url| loom_pingora::policy::global::RedisSettings {
                url,
                timeout: Duration::from_millis(flags.redis_timeout_ms),
            }),
        client: ClientLimits {
            head: HeadLimits {
                head: Duration::from_millis(flags.header_timeout_ms),
                idle: Duration::from_millis(flags.idle_timeout_ms),
            },
            max_connections_per_listener: flags.max_connections,
        },
        ..ServeOptions::default()
    };
    if let Some(t) = threads {
        serve.threads = t;
    }
    serve
}

/// What the watcher compares to notice a change: every file's path, size and mtime.
fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
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

fn options(bind: IpAddr, flags: &DataPlaneFlags) -> loom_core::Options {
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
        global_rate_limits: flags.redis_url.is_some(),
        ..Default::default()
    }
}

/// A load that may be published: the objects, what each file held, and their compiled form.
struct Load {
    input: loom_core::Input,
    compiled: loom_core::Compiled,
    files: Files,
    took: Duration,
}

/// What one load leaves for the next: the documents (an unchanged one is not parsed again) and
/// what the compile did (an unchanged route is not compiled again).
#[derive(Default)]
struct Again {
    reloader: loom_core::load::Reloader,
    compiler: loom_core::Compiler,
}

/// Loads and compiles; `Err` lists every load error (nothing is published then). The
/// WASMPlugin modules the objects name start fetching, and compile sees their state. Objects
/// equal to one of `served` are taken from it, for the compiler to see them unchanged.
fn load(
    paths: &[PathBuf],
    options: &mut loom_core::Options,
    again: &mut Again,
    served: &loom_core::Input,
    plugins: &loom_pingora::plugin::Plugins,
) -> Result<Load> {
    let started = Instant::now();
    let mut loaded = files::load_paths_again(paths, &mut again.reloader)?;
    let mut errors = vec![];
    for e in &loaded.errors {
        if e.is_warning() {
            tracing::warn!("{e}");
        } else {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    loaded.input.share_unchanged(served);
    options.plugin_modules = plugins.sync(&loaded.input);
    let compiled = again.compiler.compile(&loaded.input, options);
    let diagnostics = loom_core::diagnose(&loaded.input, options);
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == loom_core::diagnose::Severity::Warning);
    let at = loaded.locate(warnings.clone().map(|d| (&d.object, d.field.as_deref())));
    for (d, at) in warnings.zip(at) {
        let at = at.map(|s| format!("{s}: ")).unwrap_or_default();
        tracing::warn!("{at}{}: {}", d.object, d.message);
    }
    Ok(Load {
        input: loaded.input,
        compiled,
        files: loaded.files,
        took: started.elapsed(),
    })
}

fn report(compiled: &loom_core::Compiled) {
    for (key, status) in &compiled.status.objects {
        if !status.is_healthy() {
            tracing::warn!(
                "{key} is not healthy: {}",
                serde_json::to_string(status).unwrap_or_default()
            );
        }
    }
}

/// `loom serve`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// YAML files or directories.
    #[arg(short = 'f', long = "file", required = true)]
    paths: Vec<PathBuf>,
    /// Where Gateways without an IPAddress in spec.addresses listen.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// The admin listener (/metrics, /healthz, /readyz, /config).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// How often to look at the files without an inotify event (and at the listeners'
    /// status), in milliseconds. With inotify (Linux) a change is seen at once; the files are
    /// compared in full at least every second.
    #[arg(long, default_value_t = 25)]
    poll_ms: u64,
    /// A change is read once the files have not changed for this many milliseconds, so a
    /// file caught half written never goes live.
    #[arg(long, default_value_t = 50)]
    settle_ms: u64,
    /// Accept a configuration that empties a file or removes every Gateway. Without it such
    /// a change is refused (the last good configuration keeps serving): delete the files
    /// whose objects should go instead.
    #[arg(long)]
    allow_empty: bool,
    #[command(flatten)]
    data_plane: DataPlaneFlags,
}

/// Waits for the files to stop changing: returns their fingerprint when two looks `settle`
/// apart agree, or after [`SETTLE_AT_MOST`] whatever it is then, so that the watcher gets back
/// to its other work (listener status). What is read is used only if the files did not change
/// while it was read, so a file that never stops changing is never read half written.
fn settled(paths: &[PathBuf], mut seen: Fingerprint, settle: Duration) -> Fingerprint {
    let started = Instant::now();
    loop {
        std::thread::sleep(settle);
        let again = fingerprint(paths);
        if again == seen || started.elapsed() >= SETTLE_AT_MOST {
            return again;
        }
        seen = again;
    }
}

/// The longest the first configuration waits for its WASMPlugins' modules.
const PLUGIN_WAIT: Duration = Duration::from_secs(10);

/// The longest a change waits for the files to settle.
const SETTLE_AT_MOST: Duration = Duration::from_secs(2);

/// How long a closed write or a rename waits for another change before it is read.
const WRITTEN_SETTLE: Duration = Duration::from_millis(2);

/// With inotify, how often the files are still compared in full (a missed event, a file
/// system without inotify such as some network mounts).
const FULL_LOOK: Duration = Duration::from_secs(1);

/// What woke the watcher, from the most to the least certain that the files are whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    /// A file was renamed into place (how editors and `kubectl`-style tools replace a file):
    /// atomic, so read at once.
    Replaced,
    /// A file was closed after writing: whole, read after a short settle that joins a
    /// script's quick successive writes.
    Written,
    /// Something changed (a write in progress, maybe): read once settled.
    Changed,
}

/// inotify events (the `notify` crate) for the files and directories `loom serve` reads. A
/// file is watched through its directory, so an editor that replaces it (rename over) and a
/// file that is deleted and created again are seen too.
struct FileEvents {
    _watcher: notify::RecommendedWatcher,
    events: std::sync::mpsc::Receiver<Wake>,
}

impl FileEvents {
    /// `None` (polling only) when the watches cannot be set up.
    fn watch(paths: &[PathBuf]) -> Option<FileEvents> {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
        use notify::{RecursiveMode, Watcher};
        let (tx, events) = std::sync::mpsc::channel();
        let served = paths.to_vec();
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            let Ok(e) = e else { return };
            // Only events about what is served: a temporary file written beside it (the
            // first step of a rename-over) must not wake the watcher as a change in progress.
            if !e.paths.iter().any(|p| concerns(&served, p)) {
                return;
            }
            let wake = match e.kind {
                EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                    if e.paths.last().is_some_and(|p| concerns(&served, p)) =>
                {
                    Wake::Replaced
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => Wake::Written,
                EventKind::Access(_) => return,
                _ => Wake::Changed,
            };
            let _ = tx.send(wake);
        })
        .map_err(|e| tracing::warn!("no inotify, polling for file changes: {e}"))
        .ok()?;
        for p in paths {
            let (target, mode) = if p.is_dir() {
                (p.as_path(), RecursiveMode::Recursive)
            } else {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                (
                    dir.unwrap_or(std::path::Path::new(".")),
                    RecursiveMode::NonRecursive,
                )
            };
            if let Err(e) = watcher.watch(target, mode) {
                tracing::warn!(
                    "no inotify on {}, polling for its changes: {e}",
                    target.display()
                );
                return None;
            }
        }
        Some(FileEvents {
            _watcher: watcher,
            events,
        })
    }

    /// The next wake within `tick` (`None`: none came); queued events are taken together, the
    /// least certain among them winning.
    fn next(&self, tick: Duration) -> Option<Wake> {
        let mut wake = self.events.recv_timeout(tick).ok()?;
        while let Ok(w) = self.events.try_recv() {
            wake = wake.max(w);
        }
        Some(wake)
    }
}

/// Whether a change at `path` can change what `loom serve` reads from `served`: the file
/// itself, or under a served directory a `.yaml`/`.yml` file or a directory. A served file
/// that is a symbolic link changes with whatever its directory's entries point to (a
/// Kubernetes ConfigMap volume swaps its `..data` link), so any change beside it counts.
fn concerns(served: &[PathBuf], path: &std::path::Path) -> bool {
    served.iter().any(|s| {
        if s.is_dir() {
            // Events name absolute paths; a served path may be relative.
            let under =
                path.starts_with(s) || std::fs::canonicalize(s).is_ok_and(|s| path.starts_with(s));
            under && (path.extension().is_none_or(|e| e == "yaml" || e == "yml") || path.is_dir())
        } else {
            path.file_name() == s.file_name() || s.is_symlink()
        }
    })
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// When to hand freed memory back to the system ([`crate::release_freed_memory`]): right
/// after a publish (what loading and compiling freed), and once more a second later (the
/// replaced configuration, freed when the listeners and the last requests let go of it).
struct Release(Option<Instant>);

impl Release {
    const AGAIN: Duration = Duration::from_secs(1);

    fn after_publish() -> Self {
        Release(Some(Instant::now() + Self::AGAIN))
    }

    fn published(&mut self) {
        crate::release_freed_memory();
        *self = Self::after_publish();
    }

    fn tick(&mut self) {
        if self.0.is_some_and(|at| at <= Instant::now()) {
            self.0 = None;
            crate::release_freed_memory();
        }
    }
}

/// Follows the files: every settled change is loaded, judged and published. Also follows what
/// the listeners report: a port that cannot be opened (or is open again) is compiled into the
/// status of its listeners (`Programmed=False`, `Pending`).
fn watch(
    handle: SnapshotHandle,
    args: Args,
    mut opts: loom_core::Options,
    mut again: Again,
    (mut served, mut input): (Files, loom_core::Input),
) {
    let (poll, settle) = (
        Duration::from_millis(args.poll_ms),
        Duration::from_millis(args.settle_ms),
    );
    let mut listening = handle.listening();
    let mut modules = handle.plugins().changes();
    let mut last = fingerprint(&args.paths);
    let events = FileEvents::watch(&args.paths);
    let mut compared = Instant::now();
    // The first configuration was published before this loop.
    let mut release = Release::after_publish();
    loop {
        // An inotify event, or the tick (listener status; a full comparison every
        // `FULL_LOOK`, every tick without inotify).
        let wake = events.as_ref().map_or_else(
            || {
                std::thread::sleep(poll);
                Some(Wake::Changed)
            },
            |e| e.next(poll),
        );
        release.tick();
        if listening.has_changed().unwrap_or(false) {
            let not_serving = listening.borrow_and_update().ports_not_serving();
            if not_serving != opts.ports_not_serving {
                opts.ports_not_serving = not_serving;
                let started = Instant::now();
                let compiled = again.compiler.compile(&input, &opts);
                report(&compiled);
                let g = handle.publish(compiled, started.elapsed());
                release.published();
                tracing::info!("configuration {g}: listener status follows the open ports");
            }
        }
        if modules.has_changed().unwrap_or(false) {
            modules.borrow_and_update();
            opts.plugin_modules = handle.plugins().sync(&input);
            let started = Instant::now();
            let compiled = again.compiler.compile(&input, &opts);
            report(&compiled);
            let g = handle.publish(compiled, started.elapsed());
            release.published();
            tracing::info!("configuration {g}: WASMPlugin modules changed state");
        }
        let wake = match wake {
            Some(w) => w,
            None if compared.elapsed() >= FULL_LOOK => Wake::Changed,
            None => continue,
        };
        compared = Instant::now();
        let now = fingerprint(&args.paths);
        if now == last {
            continue;
        }
        // A writer that closed the file, or a rename over it: the content is whole; a short
        // settle still joins a script's quick successive writes. Anything else may be a write
        // in progress: wait the full settle time.
        let now = match wake {
            Wake::Replaced => now,
            Wake::Written => settled(&args.paths, now, settle.min(WRITTEN_SETTLE)),
            Wake::Changed => settled(&args.paths, now, settle),
        };
        let result = load(&args.paths, &mut opts, &mut again, &input, handle.plugins());
        if fingerprint(&args.paths) != now {
            // Changed while it was read: read it again once it settles.
            continue;
        }
        last = now;
        let load = match result {
            Ok(load) => load,
            Err(e) => {
                tracing::error!(
                    "configuration not changed, the last good one keeps serving:\n{e:#}"
                );
                continue;
            }
        };
        if let Err(refused) = reload::judge(&served, &load.files, args.allow_empty) {
            tracing::error!(
                "configuration not changed, the last good one keeps serving: {refused}"
            );
            continue;
        }
        report(&load.compiled);
        let g = handle.publish(load.compiled, load.took);
        (served, input) = (load.files, load.input);
        release.published();
        tracing::info!("configuration {g} loaded in {:?}", load.took);
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let mut opts = options(args.bind, &args.data_plane);
    let mut again = Again::default();
    let handle = SnapshotHandle::with_plugins(args.data_plane.plugins());
    let Load {
        input,
        mut compiled,
        files,
        mut took,
    } = load(
        &args.paths,
        &mut opts,
        &mut again,
        &loom_core::Input::default(),
        handle.plugins(),
    )?;
    // The first configuration waits (a little) for its plugins' modules, so that the data
    // plane turns ready with them running rather than answering 503 for them.
    if opts.plugin_modules.as_ref().is_some_and(|m| !m.is_empty()) {
        if !handle.plugins().wait_settled(PLUGIN_WAIT) {
            tracing::warn!(
                "WASMPlugin modules still loading after {PLUGIN_WAIT:?}; serving without them \
                 meanwhile (see their status)"
            );
        }
        let started = Instant::now();
        opts.plugin_modules = handle.plugins().sync(&input);
        compiled = again.compiler.compile(&input, &opts);
        took += started.elapsed();
    }
    report(&compiled);
    let generation = handle.publish(compiled, took);
    crate::release_freed_memory();
    tracing::info!("configuration {generation} loaded in {took:?}");

    let serve = serve_options(args.bind, args.admin, args.threads, &args.data_plane);
    let admin = args.admin;
    let watcher = handle.clone();
    std::thread::Builder::new()
        .name("loom-watch".into())
        .spawn(move || watch(watcher, args, opts, again, (files, input)))?;

    tracing::info!("admin on http://{admin}");
    loom_pingora::server(handle, &serve)?.run_forever()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_served_file_concerns_the_watcher_and_its_neighbours_do_not() {
        let served = [PathBuf::from("conf/gateway.yaml")];
        assert!(concerns(&served, Path::new("/abs/conf/gateway.yaml")));
        assert!(!concerns(&served, Path::new("/abs/conf/gateway.yaml.tmp")));
        assert!(!concerns(&served, Path::new("/abs/conf/.gateway.yaml.swp")));
    }

    #[test]
    fn a_served_symbolic_link_is_concerned_by_changes_beside_it() {
        // A ConfigMap volume: gateway.yaml -> ..data/gateway.yaml, ..data -> ..2026_12_05…
        let dir = std::env::temp_dir().join(format!("loom-concerns-link-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("..v1")).unwrap();
        std::fs::write(dir.join("..v1/gateway.yaml"), "").unwrap();
        std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/gateway.yaml", dir.join("gateway.yaml")).unwrap();
        let served = [dir.join("gateway.yaml")];
        assert!(concerns(&served, &dir.join("..data")));
        assert!(concerns(&served, &dir.join("..data_tmp")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn under_a_served_directory_yaml_files_and_directories_concern_the_watcher() {
        let dir = std::env::temp_dir().join(format!("loom-concerns-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.d")).unwrap();
        let served = [dir.clone()];
        assert!(concerns(&served, &dir.join("routes.yaml")));
        assert!(concerns(&served, &dir.join("more/routes.yml")));
        assert!(concerns(&served, &dir.join("newdir")));
        assert!(concerns(&served, &dir.join("sub.d")));
        assert!(!concerns(&served, &dir.join("routes.yaml.tmp")));
        assert!(!concerns(&served, Path::new("/elsewhere/routes.yaml")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_least_certain_of_queued_wakes_wins() {
        assert_eq!(Wake::Replaced.max(Wake::Written), Wake::Written);
        assert_eq!(Wake::Written.max(Wake::Changed), Wake::Changed);
    }
}
