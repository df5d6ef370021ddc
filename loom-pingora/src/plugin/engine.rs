//! The Wasm engine: extism on wasmtime. A module is compiled once per content (wasmtime's
//! on-disk cache makes every later compile of the same bytes a load), a prepared plugin is
//! one module with one config and limits, and its instances are pooled (extism's
//! `Plugin::call` takes `&mut self`: a call takes an idle instance, or makes one, and gives
//! it back unless the call failed, since a trapped instance's state is undefined).
//!
//! Public for embedders and benchmarks; the data plane reaches it through
//! [`Plugins`](super::Plugins).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use loom_core::snapshot::Plugin;

/// Idle instances kept per prepared plugin (more are made under load and dropped after).
const POOL: usize = 64;

/// The instructions (wasmtime fuel) a module's initialization may take when it loads: the Go
/// auth plugin's runtime start takes about 760,000; a loop runs out in under a second.
const INIT_FUEL: u64 = 1_000_000_000;

/// A function no plugin exports (see [`Engine::check`]).
const INIT_PROBE: &str = "loom:initialize-only";

/// What a module exports, of what Loom calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exports {
    /// `on_request`.
    pub on_request: bool,
    /// `on_response`.
    pub on_response: bool,
}

/// Why a call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A trap, a time-out, memory exhausted, or the plugin's own error (`error_set`).
    #[error("{0}")]
    Failed(String),
}

/// The engine's settings.
#[derive(Clone, Debug)]
pub struct Engine {
    /// wasmtime's cache configuration file (compiled code under the plugin cache
    /// directory), if it could be written.
    cache_config: Option<PathBuf>,
}

impl Engine {
    /// An engine whose compiled code is cached under `cache_dir`.
    pub fn new(cache_dir: &Path) -> Self {
        let compiled = cache_dir.join("compiled");
        let file = cache_dir.join("wasmtime-cache.toml");
        let cache_config = std::fs::create_dir_all(&compiled)
            .and_then(|()| {
                let dir = std::path::absolute(&compiled)?;
                let toml = format!(
                    "[cache]\ndirectory = {}\n",
                    serde_json::to_string(&dir.to_string_lossy()).unwrap_or_default()
                );
                super::fetch::write_atomically(&file, toml.as_bytes())
            })
            .map_err(|e| {
                tracing::warn!(
                    "no compiled-plugin cache in {}: {e}; every load compiles",
                    compiled.display()
                )
            })
            .ok()
            .map(|()| file);
        Engine { cache_config }
    }

    fn builder<'a>(&self, manifest: extism::Manifest) -> extism::PluginBuilder<'a> {
        let b = extism::PluginBuilder::new(manifest).with_wasi(true);
        match &self.cache_config {
            Some(c) => b.with_cache_config(c),
            None => b.with_cache_disabled(),
        }
    }

    /// Compiles a module (filling the cache) and says what it exports. An instance is made
    /// and initialized once, off the request path, under a fuel budget: the module's own start
    /// code (Go's runtime, `init` functions) is not under a call's time budget later, so a
    /// module whose initialization does not end (or traps) is refused here.
    pub fn check(&self, wasm: &[u8]) -> Result<Exports, String> {
        let manifest = extism::Manifest::new([extism::Wasm::data(wasm.to_vec())]);
        let compiled = self
            .builder(manifest)
            .with_fuel_limit(INIT_FUEL)
            .compile()
            .map_err(|e| format!("not a usable Wasm module: {e:#}"))?;
        let mut plugin = extism::Plugin::new_from_compiled(&compiled).map_err(|e| {
            format!(
                "cannot instantiate the module (its imports, or its initialization): {}",
                describe(&e)
            )
        })?;
        let exports = Exports {
            on_request: plugin.function_exists("on_request"),
            on_response: plugin.function_exists("on_response"),
        };
        if !exports.on_request && !exports.on_response {
            return Err(
                "the module exports neither on_request nor on_response (a function taking \
                 nothing and returning an i32)"
                    .into(),
            );
        }
        // Calling a function that is not there instantiates (and initializes) the module, then
        // stops: no plugin code but its initialization runs.
        let probed = plugin
            .call::<&[u8], &[u8]>(INIT_PROBE, b"")
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        tracing::debug!(
            "module initialization took {:?} instructions (fuel)",
            plugin.fuel_consumed()
        );
        match probed {
            Err(e) if e.contains("Function not found") => {
                // The code calls run (without fuel metering, compiled apart), into the cache,
                // so that preparing the plugin before a publish only loads it.
                let manifest = extism::Manifest::new([extism::Wasm::data(wasm.to_vec())]);
                self.builder(manifest)
                    .compile()
                    .map_err(|e| format!("compiling: {e:#}"))?;
                Ok(exports)
            }
            Err(e) => Err(format!(
                "the module's initialization failed: {}",
                e.replace('\n', " ")
            )),
            Ok(()) => Ok(exports),
        }
    }

    /// A module with a plugin's config and limits, ready to make instances.
    pub fn prepare(
        &self,
        plugin: &Plugin,
        wasm: &[u8],
        exports: Exports,
    ) -> Result<Prepared, String> {
        let manifest = extism::Manifest::new([extism::Wasm::data(wasm.to_vec())])
            .with_timeout(plugin.timeout)
            .with_memory_max(plugin.memory_pages)
            .with_config(config_entries(&plugin.config).into_iter());
        let compiled = self
            .builder(manifest)
            .compile()
            .map_err(|e| format!("compiling: {e:#}"))?;
        Ok(Prepared {
            compiled,
            idle: Mutex::new(vec![]),
            exports,
        })
    }
}

/// The config an extism plugin reads with `config_get`: each top-level key of `spec.config`
/// (strings as they are, other values as JSON), and the whole object as `loom.config`.
pub(crate) fn config_entries(config: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(config) {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(k, v);
        }
    }
    out.insert("loom.config".into(), config.to_owned());
    out
}

/// One module with one config and limits, and its idle instances.
pub struct Prepared {
    compiled: extism::CompiledPlugin,
    idle: Mutex<Vec<extism::Plugin>>,
    /// What the module exports.
    pub exports: Exports,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Calls `export` with `input`; the output bytes, or why there are none.
    pub fn call(&self, export: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match taken {
            Some(i) => i,
            None => extism::Plugin::new_from_compiled(&self.compiled)
                .map_err(|e| CallError::Failed(format!("cannot instantiate: {e:#}")))?,
        };
        match instance.call::<&[u8], &[u8]>(export, input) {
            Ok(out) => {
                let out = out.to_vec();
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < POOL {
                    idle.push(instance);
                }
                Ok(out)
            }
            // The instance is dropped: after a trap or a time-out its memory is whatever the
            // guest left half done.
            Err(e) => Err(CallError::Failed(describe(&e))),
        }
    }

    /// Instances idle now (tests, metrics).
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }
}

/// One line for an extism error: a time-out says so.
fn describe(e: &extism::Error) -> String {
    let text = format!("{e:#}").replace('\n', " ");
    if text.contains("fuel consumed") {
        format!("ran out of its instruction budget ({text})")
    } else if text.contains("epoch deadline")
        || text.contains("timeout")
        || text.contains("interrupt")
    {
        format!("ran past its time budget ({text})")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use loom_core::input::{Kind, ObjectKey};
    use loom_core::snapshot::{FailStrategy, ModuleDigest, PluginPhase};

    use super::*;

    /// Exports: `on_request` writes "ok" as its output; `on_response` traps;
    /// `spin` loops forever; `grow` asks for 100 more pages of memory.
    const WAT: &str = r#"(module
      (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
      (import "extism:host/env" "store_u8" (func $store (param i64 i32)))
      (import "extism:host/env" "output_set" (func $out (param i64 i64)))
      (memory 1)
      (func (export "on_request") (result i32) (local $p i64)
        (local.set $p (call $alloc (i64.const 2)))
        (call $store (local.get $p) (i32.const 111))
        (call $store (i64.add (local.get $p) (i64.const 1)) (i32.const 107))
        (call $out (local.get $p) (i64.const 2))
        (i32.const 0))
      (func (export "on_response") (result i32) unreachable)
      (func (export "spin") (result i32) (loop (br 0)) (i32.const 0))
      (func (export "grow") (result i32)
        (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))
        (i32.const 0)))"#;

    fn engine() -> Engine {
        let dir = std::env::temp_dir().join(format!("loom-engine-test-{}", std::process::id()));
        Engine::new(&dir)
    }

    fn plugin(timeout_ms: u64, memory_pages: u32) -> Plugin {
        Plugin {
            plugin: ObjectKey {
                kind: Kind::WasmPlugin,
                namespace: "default".into(),
                name: "wat".into(),
            },
            phase: PluginPhase::Unspecified,
            priority: 0,
            fail: FailStrategy::FailClose,
            module: Ok(ModuleDigest("test".into())),
            config: r#"{"audience":"api","n":1}"#.into(),
            timeout: Duration::from_millis(timeout_ms),
            memory_pages,
        }
    }

    fn prepared(timeout_ms: u64, memory_pages: u32) -> Prepared {
        let e = engine();
        let exports = e.check(WAT.as_bytes()).unwrap();
        assert_eq!(
            exports,
            Exports {
                on_request: true,
                on_response: true
            }
        );
        e.prepare(&plugin(timeout_ms, memory_pages), WAT.as_bytes(), exports)
            .unwrap()
    }

    #[test]
    fn a_call_returns_its_output_and_the_instance_goes_back_to_the_pool() {
        let p = prepared(50, 1024);
        assert_eq!(p.call("on_request", b"{}").unwrap(), b"ok");
        assert_eq!(p.idle(), 1);
        assert_eq!(p.call("on_request", b"{}").unwrap(), b"ok");
        assert_eq!(p.idle(), 1, "the pooled instance was used again");
    }

    #[test]
    fn a_trap_fails_the_call_and_its_instance_is_dropped() {
        let p = prepared(50, 1024);
        assert!(p.call("on_response", b"{}").is_err());
        assert_eq!(p.idle(), 0);
        assert_eq!(p.call("on_request", b"{}").unwrap(), b"ok");
    }

    #[test]
    fn a_plugin_that_never_returns_is_stopped_at_its_time_budget() {
        let p = Arc::new(prepared(20, 1024));
        let started = Instant::now();
        let e = p.call("spin", b"").unwrap_err();
        let took = started.elapsed();
        assert!(e.to_string().contains("time budget"), "{e}");
        // The budget is 20 ms; the timer thread may be late, never by seconds.
        assert!(took < Duration::from_secs(1), "stopped after {took:?}");
        assert!(took >= Duration::from_millis(20), "stopped after {took:?}");
        assert_eq!(p.call("on_request", b"{}").unwrap(), b"ok");
    }

    #[test]
    fn memory_beyond_the_limit_is_refused() {
        assert!(prepared(50, 1024).call("grow", b"").is_ok());
        assert!(prepared(50, 50).call("grow", b"").is_err());
    }

    #[test]
    fn a_module_without_on_request_or_on_response_is_refused() {
        let e = engine();
        let why = e
            .check(br#"(module (func (export "other") (result i32) (i32.const 0)))"#)
            .unwrap_err();
        assert!(why.contains("neither on_request nor on_response"), "{why}");
        assert!(
            e.check(b"not wasm")
                .unwrap_err()
                .contains("not a usable Wasm module")
        );
    }

    #[test]
    fn a_module_whose_initialization_never_ends_is_refused_when_it_loads() {
        let looping = br#"(module
          (func $init (loop (br 0)))
          (start $init)
          (func (export "on_request") (result i32) (i32.const 0)))"#;
        let started = std::time::Instant::now();
        let why = engine().check(looping).unwrap_err();
        assert!(why.contains("ran out of its instruction budget"), "{why}");
        eprintln!(
            "measured: a looping start function refused after {:?}",
            started.elapsed()
        );
        let trapping = br#"(module
          (func (export "_initialize") unreachable)
          (func (export "on_request") (result i32) (i32.const 0)))"#;
        let why = engine().check(trapping).unwrap_err();
        assert!(why.contains("its initialization"), "{why}");
        assert!(why.contains("unreachable"), "{why}");
    }

    #[test]
    fn config_keys_are_strings_and_the_whole_object_is_loom_config() {
        let c = config_entries(r#"{"audience":"api","n":1,"nested":{"a":true}}"#);
        assert_eq!(c["audience"], "api");
        assert_eq!(c["n"], "1");
        assert_eq!(c["nested"], r#"{"a":true}"#);
        assert_eq!(
            c["loom.config"],
            r#"{"audience":"api","n":1,"nested":{"a":true}}"#
        );
    }
}
