//! Every example in `examples/` runs as its header says, so that none can rot: `loom check`
//! accepts it (no errors, no warnings, every route attached and Accepted), then its plugins
//! are built (the `# Plugins:` line, a command run with bash; before `loom check`), its backends
//! (the `# Backends:` line: the echo backend, `examples/backend/echo.go`) and `loom serve`
//! (the `# Serve:` line, verbatim) are started, and every command of its `# Try:` section is
//! run with bash from the repository root, as a user would paste it, with `loom` on the PATH.
//! Each `>` line under a command must be a line of what it prints (stdout and stderr), in
//! order; `...` in one stands for any text and `N±M` for a number from N-M to N+M, and
//! whitespace runs count as one space. A `!` line is text (any case) that no line of the
//! output contains. The notation is described for users in `examples/README.md`.
//!
//! The examples use fixed ports (listeners on 8080, 8443, 9000..., backends on 3000...,
//! the admin listener on 9901), as users will; they run one after the other in this one test,
//! in a test binary of its own (cargo runs test binaries one at a time, and the others use
//! ephemeral ports). `LOOM_EXAMPLE=name` runs only the examples whose file name contains it.
//!
//! Needs Go (the backend), curl and bash; without Go the test is skipped, loudly, unless
//! `LOOM_REQUIRE_GO=1` (as in CI). The HTTP/3 commands need aioquic, as `tests/http3.rs`
//! does (`LOOM_REQUIRE_AIOQUIC=1`).

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{admin_get, test_dir};

/// The repository root: examples name their files relative to it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What an example's header says.
#[derive(Debug)]
struct Example {
    file: String,
    /// The echo backend's arguments (after `go run examples/backend/echo.go`).
    backends: Vec<String>,
    /// `loom`'s arguments (after `loom`).
    serve: Vec<String>,
    /// The command that builds its WASMPlugins, if it has any.
    plugins: Option<String>,
    tries: Vec<Try>,
}

/// One command of `# Try:` and what it must print.
#[derive(Debug)]
struct Try {
    command: String,
    /// The header line the command is on (1-based), for messages.
    line: usize,
    expect: Vec<String>,
    absent: Vec<String>,
}

const ECHO: &str = "go run examples/backend/echo.go ";

/// Reads the header (the comment lines before the first document) of `file`.
fn parse(file: &str, text: &str) -> Example {
    let mut example = Example {
        file: file.to_owned(),
        backends: vec![],
        serve: vec![],
        plugins: None,
        tries: vec![],
    };
    let mut in_try = false;
    let mut continued: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let Some(comment) = raw.strip_prefix('#') else {
            break;
        };
        let line = comment.trim();
        let at = || format!("{file}:{}", i + 1);
        if let Some(mut command) = continued.take() {
            command.push('\n');
            command.push_str(line);
            if line.ends_with('\\') {
                continued = Some(command);
            } else {
                example.tries.last_mut().unwrap().command = command;
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Backends:") {
            let rest = rest.trim();
            let args = rest
                .strip_prefix(ECHO)
                .unwrap_or_else(|| panic!("{}: the backends are not `{ECHO}...`", at()));
            assert!(
                !args.contains(['\'', '"', '\\']),
                "{}: keep the backends' arguments free of quotes",
                at()
            );
            example.backends = args.split_whitespace().map(str::to_owned).collect();
        } else if let Some(rest) = line.strip_prefix("Plugins:") {
            let command = rest.split("  ").next().unwrap_or("").trim();
            example.plugins = Some(command.to_owned());
        } else if let Some(rest) = line.strip_prefix("Serve:") {
            let args = rest
                .trim()
                .strip_prefix("loom serve ")
                .unwrap_or_else(|| panic!("{}: `Serve:` is not `loom serve ...`", at()));
            assert!(!args.contains(['\'', '"', '\\']), "{}: no quotes", at());
            example.serve = std::iter::once("serve")
                .chain(args.split_whitespace())
                .map(str::to_owned)
                .collect();
        } else if line.starts_with("Try") {
            in_try = true;
        } else if let Some(command) = line.strip_prefix("$ ") {
            assert!(in_try, "{}: a command before `Try`", at());
            example.tries.push(Try {
                command: command.to_owned(),
                line: i + 1,
                expect: vec![],
                absent: vec![],
            });
            if command.ends_with('\\') {
                continued = Some(command.to_owned());
            }
        } else if let Some(expected) = line.strip_prefix("> ") {
            let t = example
                .tries
                .last_mut()
                .unwrap_or_else(|| panic!("{}: an expected line before any command", at()));
            t.expect.push(expected.to_owned());
        } else if let Some(absent) = line.strip_prefix("! ") {
            let t = example
                .tries
                .last_mut()
                .unwrap_or_else(|| panic!("{}: a `!` line before any command", at()));
            t.absent.push(absent.to_lowercase());
        }
    }
    assert!(
        !example.backends.is_empty(),
        "{file}: no `# Backends:` line"
    );
    assert!(!example.serve.is_empty(), "{file}: no `# Serve:` line");
    assert!(
        !example.tries.is_empty(),
        "{file}: no `$` command under `# Try:`"
    );
    for t in &example.tries {
        assert!(
            !t.expect.is_empty() || !t.absent.is_empty(),
            "{file}:{}: `{}` says nothing about what it prints",
            t.line,
            t.command
        );
    }
    example
}

/// Whitespace runs as one space, none at either end.
fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `N±M` at the start of `p`: (N, M, the rest).
fn plus_minus(p: &str) -> Option<(i64, i64, &str)> {
    let digits = p.bytes().take_while(u8::is_ascii_digit).count();
    let rest = p[digits..].strip_prefix('±')?;
    let tolerance = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || tolerance == 0 {
        return None;
    }
    Some((
        p[..digits].parse().ok()?,
        rest[..tolerance].parse().ok()?,
        &rest[tolerance..],
    ))
}

/// Whether `s` is what pattern `p` describes: literal text, `...` any text, `N±M` a number in
/// range.
fn glob(p: &str, s: &str) -> bool {
    if p.is_empty() {
        return s.is_empty();
    }
    if let Some(rest) = p.strip_prefix("...") {
        return (0..=s.len())
            .filter(|&i| s.is_char_boundary(i))
            .any(|i| glob(rest, &s[i..]));
    }
    if let Some((n, m, rest)) = plus_minus(p) {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        return s[..digits]
            .parse::<i64>()
            .is_ok_and(|v| (n - m..=n + m).contains(&v))
            && glob(rest, &s[digits..]);
    }
    let c = p.chars().next().unwrap();
    s.starts_with(c) && glob(&p[c.len_utf8()..], &s[c.len_utf8()..])
}

/// Whether an output line is what an expected line says. A trailing comma the expected line
/// leaves out is not required (the last member of a JSON object has none).
fn line_matches(expected: &str, line: &str) -> bool {
    let (p, s) = (normalize(expected), normalize(line));
    glob(&p, &s) || (!p.ends_with(',') && s.strip_suffix(',').is_some_and(|s| glob(&p, s)))
}

/// What is wrong with `output` for `t`, if anything.
fn judge(t: &Try, output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    let mut next = 0;
    for expected in &t.expect {
        match lines[next..].iter().position(|l| line_matches(expected, l)) {
            Some(i) => next += i + 1,
            None => {
                return Some(format!(
                    "no line `{expected}` (after the lines matched before it)"
                ));
            }
        }
    }
    for absent in &t.absent {
        if let Some(l) = lines.iter().find(|l| l.to_lowercase().contains(absent)) {
            return Some(format!("`{absent}` should not be printed, but is: `{l}`"));
        }
    }
    None
}

#[test]
fn the_notation_matches_as_documented() {
    assert!(line_matches("HTTP/1.1 200 OK", "HTTP/1.1 200 OK\r"));
    assert!(!line_matches("x-backend: api", "x-backend: api-canary"));
    assert!(line_matches("\"path\": \"/a\"", "  \"path\": \"/a\","));
    assert!(line_matches("\"path\": \"/a\",", "  \"path\": \"/a\","));
    assert!(!line_matches("\"path\": \"/a\",", "  \"path\": \"/a\""));
    assert!(line_matches("900±45 web", "    903 web"));
    assert!(!line_matches("900±45 web", "    944 web-canary"));
    assert!(!line_matches("100±45 web", "    146 web"));
    assert!(line_matches("curl: (7) ...", "curl: (7) Failed to connect"));
    assert!(line_matches("a...b...c", "a--b--c"));
    assert!(!line_matches("a...b", "a--c"));
    let t = Try {
        command: String::new(),
        line: 1,
        expect: vec!["a".into(), "c".into()],
        absent: vec!["x-debug".into()],
    };
    assert_eq!(judge(&t, "a\nb\nc\n"), None);
    assert!(judge(&t, "c\na\n").is_some(), "in order");
    assert!(judge(&t, "a\nc\nX-Debug: 1\n").is_some(), "any case");
}

/// A child process (and its process group) killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// Starts `program` with `args` from the repository root in a process group of its own,
    /// stdout and stderr into the file `log`.
    fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[String], log: &Path) -> Killed {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(root())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        Killed(child)
    }
}

fn listening(addr: &str) -> bool {
    TcpStream::connect(addr).is_ok()
}

/// Runs `command` with bash from the repository root, `PATH` first searching `bin`; stdout
/// and stderr together. Fails the test after a minute.
fn run(command: &str, bin: &Path) -> String {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var_os("PATH")
            .unwrap_or_default()
            .to_string_lossy()
    );
    let mut child = Command::new("bash")
        .args(["-c", &format!("exec 2>&1\n{command}")])
        .current_dir(root())
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let reader = std::thread::spawn(move || {
        let mut out = vec![];
        let _ = stdout.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "`{command}` still runs after a minute"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(guard);
    reader.join().unwrap()
}

fn go_present() -> bool {
    Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `None` (skipped, loudly) without Go, unless `LOOM_REQUIRE_GO=1`; else the echo backend,
/// built into `dir`.
fn build_echo(dir: &Path) -> Option<PathBuf> {
    if !go_present() {
        assert!(
            std::env::var_os("LOOM_REQUIRE_GO").is_none_or(|v| v != "1"),
            "go is required for the examples' backend (https://go.dev/dl/, 1.24 or later)"
        );
        eprintln!(
            "*** skipped: the examples' requests (go not found; LOOM_REQUIRE_GO=1 makes \
             this fail). `loom check` ran on every example."
        );
        return None;
    }
    let echo = dir.join("echo");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&echo)
        .arg("examples/backend/echo.go")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build examples/backend/echo.go:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vet = Command::new("go")
        .args(["vet", "examples/backend/echo.go"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        vet.status.success(),
        "go vet examples/backend/echo.go:\n{}",
        String::from_utf8_lossy(&vet.stderr)
    );
    Some(echo)
}

fn aioquic_present() -> bool {
    let present = Command::new("python3")
        .args(["-c", "import aioquic"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var_os("LOOM_REQUIRE_AIOQUIC").is_none_or(|v| v != "1"),
            "aioquic is required for the HTTP/3 commands (pip install aioquic)"
        );
    }
    present
}

/// `loom check FILE`: exit 0, nothing on stderr (no error, no warning), and every route
/// attached to each of its parentRefs, Accepted with its references resolved.
fn check(file: &str, text: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_loom"))
        .args(["check", file])
        .current_dir(root())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "loom check {file}\n{stdout}{stderr}"
    );
    assert!(stderr.is_empty(), "loom check {file} warns:\n{stderr}");
    let loaded = loom_core::load::load_str(file, text);
    assert!(loaded.errors.is_empty(), "{file}: {:?}", loaded.errors);
    let documents: Vec<&str> = stdout.split("---\n").collect();
    let mut routes = 0;
    for (_, object) in &loaded.objects {
        let Some(parent_refs) = object.parent_refs() else {
            continue;
        };
        routes += 1;
        let key = object.key();
        let header = format!(
            "kind: {}\nmetadata:\n  name: {}\n  namespace: {}\n",
            key.kind, key.name, key.namespace
        );
        let doc = documents
            .iter()
            .find(|d| d.starts_with(&header))
            .unwrap_or_else(|| panic!("{file}: {key} is not in loom check's output"));
        let status: Value = serde_saphyr::from_str(doc).unwrap();
        let parents = status["status"]["parents"].as_array().cloned();
        let parents = parents.unwrap_or_else(|| panic!("{file}: {key} has no parents:\n{doc}"));
        assert_eq!(
            parents.len(),
            parent_refs.len(),
            "{file}: {key} is not attached to each parentRef:\n{doc}"
        );
        for parent in parents {
            for condition in ["Accepted", "ResolvedRefs"] {
                let holds = parent["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == condition && c["status"] == "True")
                });
                assert!(holds, "{file}: {key}: {condition} is not True:\n{doc}");
            }
        }
    }
    assert!(routes > 0, "{file}: no route");
}

/// The demo certificate and key in `examples/tls/` are those of every Secret that embeds a
/// PEM (examples/tls/README.md says so).
fn same_demo_certificate(file: &str, text: &str) {
    if !text.contains("-----BEGIN") {
        return;
    }
    for pem in ["example.com.crt", "example.com.key"] {
        let pem = std::fs::read_to_string(root().join("examples/tls").join(pem)).unwrap();
        let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        assert!(
            text.contains(&indented),
            "{file}: a Secret that is not examples/tls/'s demo certificate and key"
        );
    }
}

/// The echo backend's socket addresses from its arguments.
fn backend_addresses(args: &[String]) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == "-listen")
        .map(|w| w[1].split([',', '=']).next().unwrap().to_owned())
        .collect()
}

/// The admin listener `loom serve` gets from its arguments.
fn admin_port(serve: &[String]) -> u16 {
    serve
        .windows(2)
        .find(|w| w[0] == "--admin")
        .map_or(9901, |w| w[1].rsplit(':').next().unwrap().parse().unwrap())
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Starts the example's backends and `loom serve`, runs its commands, judges what they print.
fn serve_and_try(example: &Example, echo: &Path, bin: &Path, dir: &Path, h3: bool) {
    let name = Path::new(&example.file)
        .file_stem()
        .unwrap()
        .to_string_lossy();
    let admin = admin_port(&example.serve);
    let addresses = backend_addresses(&example.backends);
    for a in addresses
        .iter()
        .map(String::as_str)
        .chain([format!("127.0.0.1:{admin}").as_str()])
    {
        assert!(
            !listening(a),
            "{}: something already listens on {a}; the examples need it",
            example.file
        );
    }
    let backend_log = dir.join(format!("{name}.backend.log"));
    let mut backend = Killed::spawn(echo, &example.backends, &backend_log);
    support::wait_for(&format!("{}'s backends", example.file), || {
        if let Ok(Some(status)) = backend.0.try_wait() {
            panic!(
                "{}: the backend exited ({status}):\n{}",
                example.file,
                tail(&backend_log)
            );
        }
        addresses.iter().all(|a| listening(a))
    });
    let loom_log = dir.join(format!("{name}.loom.log"));
    let mut loom = Killed::spawn(env!("CARGO_BIN_EXE_loom"), &example.serve, &loom_log);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = loom.0.try_wait() {
            panic!(
                "{}: loom serve exited ({status}):\n{}",
                example.file,
                tail(&loom_log)
            );
        }
        let ready = admin_get(admin, "/readyz");
        if ready.as_ref().is_some_and(|(s, _)| *s == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: loom serve is not ready after 20 s: {ready:?}\n{}",
            example.file,
            tail(&loom_log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in &example.tries {
        if t.command.contains("h3client.py") && !h3 {
            eprintln!(
                "*** skipped: {}:{} (aioquic not installed; LOOM_REQUIRE_AIOQUIC=1 makes this \
                 fail)",
                example.file, t.line
            );
            continue;
        }
        let output = run(&t.command, bin);
        if let Some(wrong) = judge(t, &output) {
            let lines: Vec<&str> = output.lines().collect();
            let output = if lines.len() > 80 {
                format!("{}\n... ({} lines)", lines[..80].join("\n"), lines.len())
            } else {
                output
            };
            panic!(
                "{}:{}: `{}`: {wrong}\n--- it printed:\n{output}\n--- loom serve's log:\n{}\n\
                 --- the backend's log:\n{}",
                example.file,
                t.line,
                t.command,
                tail(&loom_log),
                tail(&backend_log)
            );
        }
    }
    drop(loom);
    drop(backend);
}

#[test]
fn every_example_runs_as_documented() {
    let only = std::env::var_os("LOOM_EXAMPLE").map(|v| v.to_string_lossy().into_owned());
    let mut files: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .filter(|f| only.as_ref().is_none_or(|o| f.contains(o.as_str())))
        .map(|f| format!("examples/{f}"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no example matches LOOM_EXAMPLE={only:?}"
    );
    let go = go_present();
    let mut examples = vec![];
    for file in &files {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let example = parse(file, &text);
        if let Some(command) = &example.plugins {
            if !go {
                eprintln!("*** skipped: {file} (its plugins are built with Go, not found)");
                continue;
            }
            let out = Command::new("bash")
                .args(["-c", command])
                .current_dir(root())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{file}: `{command}` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        check(file, &text);
        same_demo_certificate(file, &text);
        examples.push(example);
    }
    let dir = test_dir("examples");
    let Some(echo) = build_echo(&dir) else {
        return;
    };
    // `loom` on the PATH, as the examples say it.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_loom"), bin.join("loom")).unwrap();
    let h3 = aioquic_present();
    for example in &examples {
        let started = Instant::now();
        serve_and_try(example, &echo, &bin, &dir, h3);
        eprintln!(
            "{}: {} commands as documented ({:.1?})",
            example.file,
            example.tries.len(),
            started.elapsed()
        );
    }
    // The logs are kept only when something failed (a panic skips this).
}
