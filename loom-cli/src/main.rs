//! `loom`: check, explain and conformance-test Gateway API configuration.

/// `println!` that ends the process quietly when stdout is closed (`loom explain … | head`)
/// instead of panicking; Rust ignores SIGPIPE, and no `unsafe` here restores it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// mimalloc instead of glibc's malloc (see loom-cli/Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands the memory freed since the last call back to the system; called after publishes.
/// Loading and compiling a configuration allocate several times what the result keeps (the
/// documents, the previous snapshot); mimalloc returns freed pages only after a delay and only
/// when the process allocates again, so an idle data plane would keep its peak: at 5,000
/// routes, 20 of `loom serve`'s 82 MiB of anonymous memory (bench/RESULTS.md).
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
pub(crate) fn release_freed_memory() {
    let started = std::time::Instant::now();
    // SAFETY: `mi_collect` takes no pointer and has no precondition; it frees the calling
    // thread's empty pages and, forced, purges what every thread freed (mimalloc's theap.c).
    unsafe { libmimalloc_sys::mi_collect(true) }
    tracing::debug!("freed memory handed back in {:?}", started.elapsed());
}

#[cfg(not(feature = "mimalloc"))]
pub(crate) fn release_freed_memory() {}

mod controller;
mod files;
mod logs;
mod reload;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use loom_core::snapshot::{ClientKey, Decision, GatewayName, HttpRequest};

#[derive(Parser)]
#[command(
    name = "loom",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LOOM_GIT_REV"), ")"),
    about = "Loom: a Kubernetes Gateway API implementation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr are written: `text`, or `json` (one object per line, the
    /// access log's fields as keys). `RUST_LOG` filters them (default `info`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "LOOM_LOG_FORMAT"
    )]
    log_format: logs::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Load and compile manifests, print every object: its status, or why it has none, and
    /// what is wrong with it (parentRefs to nothing, unknown fields); exit 1 if anything is not
    /// Accepted/ResolvedRefs/Programmed or a file has errors (warnings do not fail).
    Check {
        /// YAML files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also print the compiled routing snapshot (listeners, virtual hosts, rules in
        /// precedence order, backends).
        #[arg(long)]
        snapshot: bool,
        /// Compile as for a data plane started with `--redis-url` (RateLimitPolicies with
        /// `spec.global` are accepted).
        #[arg(long)]
        redis: bool,
        /// Where WASMPlugin modules are cached (check fetches and compiles each, as a data
        /// plane would, and reports whether it loads).
        #[arg(long, env = "LOOM_PLUGIN_CACHE", default_value = "/tmp/loom-plugins")]
        plugin_cache: PathBuf,
    },
    /// Show which listener, route and rule a request would use, and the request the backend
    /// would receive.
    Explain {
        /// YAML files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The request, e.g. `GET http://example.com:8080/path?q=1`.
        #[arg(long)]
        request: String,
        /// Extra request headers (`-H 'name: value'`).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The Gateway (`namespace/name`); default: the only Gateway with a listener on the port.
        #[arg(long)]
        gateway: Option<String>,
        /// Compile as for a data plane started with `--redis-url`.
        #[arg(long)]
        redis: bool,
        /// The admin address (`host:port`) of a running data plane serving these files: also
        /// say which endpoints of the chosen backend it has ejected now.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Serve Gateway API manifests: listeners follow the Gateways, and file changes are live
    /// within milliseconds (a broken change is reported and the last good configuration keeps
    /// serving).
    Serve(serve::Args),
    /// Run against Kubernetes: watch Gateway API objects, serve every Gateway of Loom's
    /// classes from this process, and write their status (when holding the Lease).
    Controller(Box<controller::Args>),
    /// Serve one Gateway from Kubernetes, read-only: the data-plane pods that
    /// `loom controller --provision` creates run this.
    DataPlane(controller::DataPlaneArgs),
    /// Print the CustomResourceDefinitions of Loom's own kinds (kubectl apply -f -).
    Crds,
    /// Run a conformance corpus (cases/*.yaml) against the compiler and decision API.
    Conformance {
        /// The corpus directory (with cases/, manifests/, base/).
        #[arg(long)]
        corpus: PathBuf,
        /// Only run tests whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Print every check of every test.
        #[arg(long)]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init(cli.log_format);
    let result = match cli.command {
        Command::Check {
            paths,
            snapshot,
            redis,
            plugin_cache,
        } => check(&paths, snapshot, &options(redis), plugin_cache),
        Command::Explain {
            paths,
            request,
            headers,
            gateway,
            redis,
            admin,
        } => explain(
            &paths,
            &request,
            &headers,
            gateway.as_deref(),
            &options(redis),
            admin.as_deref(),
        ),
        Command::Serve(args) => serve::run(args),
        Command::Controller(args) => controller::run(*args),
        Command::DataPlane(args) => controller::run_data_plane(args),
        Command::Crds => crds(),
        Command::Conformance {
            corpus,
            only,
            verbose,
        } => conformance(&corpus, only.as_deref(), verbose),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `loom conformance`: one line per test (with its failed or undecided checks), then the counts;
/// fails when a test failed.
fn conformance(corpus: &Path, only: Option<&str>, verbose: bool) -> Result<ExitCode> {
    let report = loom_conformance::run(corpus, only)?;
    for test in &report.tests {
        for line in test.lines(verbose) {
            say!("{line}");
        }
    }
    say!("{}", report.summary());
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn crds() -> Result<ExitCode> {
    for crd in loom_k8s::crds::crds() {
        say!("---");
        say!("{}", serde_saphyr::to_string(&crd)?.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// Compile options of `check` and `explain`.
fn options(redis: bool) -> loom_core::Options {
    loom_core::Options {
        global_rate_limits: redis,
        ..Default::default()
    }
}

/// How long `loom check` waits for WASMPlugin modules to load.
const CHECK_PLUGIN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn check(
    paths: &[PathBuf],
    show_snapshot: bool,
    options: &loom_core::Options,
    plugin_cache: PathBuf,
) -> Result<ExitCode> {
    use std::collections::{BTreeMap, BTreeSet};

    use loom_core::diagnose::{Diagnosis, Severity};
    use loom_core::input::ObjectKey;
    use loom_core::load::LoadError;

    let loaded = files::load_paths(paths)?;
    let mut bad = false;
    // Comment lines under each object: its unknown fields and diagnostics.
    let mut notes: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
    for e in &loaded.errors {
        eprintln!("{}: {e}", if e.is_warning() { "warning" } else { "error" });
        bad |= !e.is_warning();
        if let LoadError::UnknownField {
            kind, name, field, ..
        } = e
        {
            notes
                .entry(key_of(*kind, name))
                .or_default()
                .push(format!("warning: unknown field `{field}`: Loom ignores it"));
        }
    }
    // WASMPlugin modules are fetched and compiled as a data plane would, so their status
    // says whether they load.
    let mut options = options.clone();
    if !loaded.input.wasm_plugins.is_empty() {
        let plugins = loom_pingora::plugin::Plugins::new(plugin_cache);
        plugins.sync(&loaded.input);
        plugins.wait_settled(CHECK_PLUGIN_WAIT);
        options.plugin_modules = plugins.sync(&loaded.input);
    }
    let options = &options;
    let compiled = loom_core::compile_with(&loaded.input, options);
    let diagnosis = Diagnosis::new(&loaded.input, options);
    let diagnostics = diagnosis.diagnostics();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning);
    let at = loaded.locate(warnings.clone().map(|d| (&d.object, d.field.as_deref())));
    for (d, at) in warnings.zip(at) {
        let at = at.map(|s| format!("{s}: ")).unwrap_or_default();
        eprintln!("warning: {at}{}: {}", d.object, d.message);
    }
    for d in diagnostics {
        notes
            .entry(d.object)
            .or_default()
            .push(format!("{}: {}", d.severity, d.message));
    }
    let keys: BTreeSet<ObjectKey> = loaded
        .input
        .keys()
        .into_iter()
        .chain(compiled.status.objects.keys().cloned())
        .collect();
    for key in &keys {
        say!("---");
        say!("kind: {}", key.kind);
        say!("metadata:");
        say!("  name: {}", key.name);
        if !key.namespace.is_empty() {
            say!("  namespace: {}", key.namespace);
        }
        match compiled.status.objects.get(key) {
            Some(status) => {
                let value = serde_json::to_value(status)?;
                let yaml = serde_saphyr::to_string(&serde_json::json!({ "status": value }))?;
                say!("{}", yaml.trim_end());
                bad |= !status.is_healthy();
            }
            None => say!("# no status: {}", diagnosis.why_no_status(key)),
        }
        for n in notes.get(key).into_iter().flatten() {
            say!("# {n}");
        }
    }
    // The documents that did not load, so that every document of the input has its entry.
    for e in &loaded.errors {
        let (api_version, kind, name, why) = match e {
            LoadError::UnknownKind {
                api_version,
                kind,
                name,
                ..
            } => (
                Some(api_version.as_str()),
                kind.clone(),
                name,
                "not a kind Loom reads; skipped".to_owned(),
            ),
            LoadError::InvalidField {
                kind,
                name,
                field,
                message,
                ..
            } => (
                None,
                kind.to_string(),
                name,
                format!("not loaded: field `{field}`: {message}"),
            ),
            _ => continue,
        };
        say!("---");
        if let Some(v) = api_version {
            say!("apiVersion: {v}");
        }
        say!("kind: {kind}");
        say!("metadata:");
        match name.split_once('/') {
            Some((ns, n)) => {
                say!("  name: {n}");
                say!("  namespace: {ns}");
            }
            None => say!("  name: {name}"),
        }
        say!("# {why}");
    }
    if show_snapshot {
        say!("---");
        let snapshot = loom_core::snapshot::describe(&compiled.snapshot);
        let yaml = serde_saphyr::to_string(&serde_json::json!({ "snapshot": snapshot }))?;
        say!("{}", yaml.trim_end());
    }
    if compiled.status.objects.is_empty() {
        eprintln!(
            "warning: no object belongs to Loom (is there a GatewayClass with controllerName {}?)",
            loom_core::CONTROLLER_NAME
        );
    }
    Ok(if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The key of an object a load error names as `namespace/name` or `name`.
fn key_of(kind: loom_core::input::Kind, name: &str) -> loom_core::input::ObjectKey {
    let (namespace, name) = match name.split_once('/') {
        Some((ns, n)) => (ns.to_owned(), n.to_owned()),
        None if kind.is_namespaced() => ("default".to_owned(), name.to_owned()),
        None => (String::new(), name.to_owned()),
    };
    loom_core::input::ObjectKey {
        kind,
        namespace,
        name,
    }
}

/// The endpoints of a backend (object and port) that the data plane whose admin listener is at
/// `admin` has ejected now, from its `/config` (`outliers`): `endpoint (for N s, ejection n)`.
fn ejected_now(
    admin: &str,
    object: &loom_core::input::ObjectKey,
    port: Option<u16>,
) -> Result<Vec<String>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        s,
        "GET /config HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "{}",
        head.lines().next().unwrap_or_default()
    );
    let config: serde_json::Value = serde_json::from_str(body)?;
    let backend = object.to_string();
    let mut out = vec![];
    let outliers = config["outliers"].as_array().map_or(&[][..], Vec::as_slice);
    for b in outliers {
        if b["backend"] != backend.as_str() || b["port"].as_u64() != port.map(u64::from) {
            continue;
        }
        for e in b["endpoints"].as_array().map_or(&[][..], Vec::as_slice) {
            let left = e["ejectedForSeconds"].as_f64().unwrap_or(0.0);
            if left > 0.0 {
                out.push(format!(
                    "{} (for {left:.1} s more, ejection {})",
                    e["endpoint"].as_str().unwrap_or("?"),
                    e["ejections"]
                ));
            }
        }
    }
    Ok(out)
}

fn explain(
    paths: &[PathBuf],
    request: &str,
    headers: &[String],
    gateway: Option<&str>,
    options: &loom_core::Options,
    admin: Option<&str>,
) -> Result<ExitCode> {
    let loaded = files::load_paths(paths)?;
    for e in &loaded.errors {
        eprintln!("{}: {e}", if e.is_warning() { "warning" } else { "error" });
    }
    let compiled = loom_core::compile_with(&loaded.input, options);
    let (method, url) = request.split_once(' ').unwrap_or(("GET", request));
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()));
    if let Some(a) = uri.authority() {
        req = req.header(http::header::HOST, a.as_str());
    }
    for h in headers {
        let (n, v) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not `name: value`"))?;
        req = req.header(n.trim(), v.trim());
    }
    let req = req.body(())?;
    let gw = match gateway {
        Some(g) => {
            let (ns, name) = g.split_once('/').unwrap_or(("default", g));
            GatewayName::new(ns, name)
        }
        None => {
            let on_port: Vec<_> = compiled
                .snapshot
                .gateways
                .iter()
                .filter(|(_, g)| g.ports.contains_key(&port))
                .map(|(n, _)| n.clone())
                .collect();
            match on_port.as_slice() {
                [one] => one.clone(),
                [] => bail!("no Gateway serves port {port}"),
                many => bail!(
                    "several Gateways serve port {port} ({}); pick one with --gateway",
                    many.iter()
                        .map(|g| format!("{}/{}", g.namespace, g.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let sni = (scheme == "https").then(|| uri.host().unwrap_or(""));
    let hr = HttpRequest {
        scheme: &scheme,
        sni,
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
    };
    say!("gateway: {}/{}  port: {port}", gw.namespace, gw.name);
    let matched = |m: &loom_core::snapshot::Matched<'_>| {
        say!(
            "listener: {}  (declared by {})",
            m.listener.name,
            m.listener.owner
        );
        say!(
            "virtual host: {}",
            m.vhost
                .hostname
                .as_ref()
                .map_or("* (any host)".to_owned(), |h| h.to_string())
        );
        say!(
            "route: {}  rule: {}{}",
            m.rule.route,
            m.rule.rule_index,
            m.rule
                .rule_name
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        match (&m.limit, &m.rule.rate_limit) {
            (Some(l), _) => {
                let rl = l.rate_limit;
                say!(
                    "rate limit: {} bucket {} ({} requests/s, burst {}{}{})",
                    rl.policy,
                    l.slot,
                    l.quota.requests_per_second(),
                    l.quota.burst(),
                    match &rl.key {
                        Some(ClientKey::ClientAddress { .. }) => ", one per client address",
                        Some(ClientKey::Header { .. }) => ", one per value of the key header",
                        None => ", shared by all clients",
                    },
                    if rl.global.is_some() {
                        ", global: counted in Redis"
                    } else {
                        ", per replica"
                    }
                );
            }
            (None, Some(rl)) => say!(
                "rate limit: {} has no bucket for this request (no rule matches, no default)",
                rl.policy
            ),
            (None, None) => {}
        }
        if let Some(p) = &m.rule.plugins {
            // Plugins as they run: their phase order, and any that would not run now.
            let list: Vec<String> = p
                .all()
                .map(|p| {
                    let mut s = format!(
                        "{} {}/{}",
                        p.phase.as_str(),
                        p.plugin.namespace,
                        p.plugin.name
                    );
                    if p.priority != 0 {
                        s.push_str(&format!(" (priority {})", p.priority));
                    }
                    s
                })
                .collect();
            say!("plugins: {}", list.join(", "));
        }
        if let Some(hm) = m.http_match {
            say!(
                "matched: path {:?}, method {:?}, {} header and {} query matches",
                hm.path,
                hm.method,
                hm.headers.len(),
                hm.query.len()
            );
        }
        let Some(winner) = m.http_match else { return };
        let winner_precedence = m
            .vhost
            .http
            .entries_with_precedence()
            .find(|(om, _, _)| std::ptr::eq(*om, winner))
            .map(|(_, p, _)| p);
        let view = loom_core::route::RequestView {
            method: hr.method,
            path: hr.uri.path(),
            query: hr.uri.query(),
            headers: hr.headers,
        };
        let others: Vec<String> = m
            .vhost
            .http
            .entries_with_precedence()
            .filter(|(om, _, _)| !std::ptr::eq(*om, winner) && om.matches(&view))
            .map(|(om, p, r)| {
                let why = winner_precedence.map_or("", |w| w.deciding_step(p));
                format!(
                    "{} rule {} (path {:?}) loses on: {why}",
                    r.route, r.rule_index, om.path
                )
            })
            .collect();
        if !others.is_empty() {
            say!("also matched, lower precedence:");
            for o in others {
                say!("  - {o}");
            }
        }
    };
    match compiled.snapshot.decide(&gw, port, &hr, 0) {
        Decision::Forward(f) => {
            matched(&f.matched);
            say!(
                "decision: forward to {}{} ({:?}), endpoints {:?}",
                f.backend.object,
                f.backend
                    .port
                    .map(|p| format!(" port {p}"))
                    .unwrap_or_default(),
                f.backend.protocol,
                f.backend.endpoints
            );
            if let Some(cb) = &f.backend.circuit_breaker {
                let limit = |v: Option<u32>| v.map_or("unlimited".to_owned(), |n| n.to_string());
                say!("circuit breaker: {}: {}", cb.policy, cb.outlier_summary());
                say!(
                    "  maxConnections {}, maxPendingRequests {}, maxRequests {}",
                    limit(cb.max_connections),
                    cb.max_pending_requests.unwrap_or(0),
                    limit(cb.max_requests)
                );
            }
            // Which endpoints are out is live state: the running data plane's, when named.
            match admin {
                Some(admin) => match ejected_now(admin, &f.backend.object, f.backend.port) {
                    Ok(out) if out.is_empty() => say!("ejected now ({admin}): none"),
                    Ok(out) => say!("ejected now ({admin}): {}", out.join(", ")),
                    Err(e) => say!("ejected now: unknown, {admin}/config: {e:#}"),
                },
                None => say!(
                    "ejected now: live state; --admin ADDR asks a running data plane \
                     (its /config)"
                ),
            }
            say!("backend receives:");
            let request = f.backend_request(&hr);
            say!("  {} {}", request.method(), request.uri());
            for (n, v) in request.headers() {
                say!("  {n}: {}", v.to_str().unwrap_or("<binary>"));
            }
            for m in &f.mirrors {
                say!("mirrored to: {}", m.object);
            }
        }
        Decision::Redirect {
            status,
            location,
            matched: m,
        } => {
            matched(&m);
            say!("decision: redirect {status} Location: {location}");
        }
        Decision::Respond(r) => {
            if let Some(m) = &r.matched {
                matched(m);
            }
            say!("decision: respond {} ({})", r.status, r.reason);
            for (n, v) in &r.headers {
                say!("  {n}: {}", v.to_str().unwrap_or("<binary>"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
