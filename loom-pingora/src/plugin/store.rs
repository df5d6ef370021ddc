//! The modules the input names, fetched and compiled in the background, and the prepared
//! plugins the served snapshot runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use loom_core::compile::{ModuleSource, ModuleState, PluginModuleStates, module_sources};
use loom_core::snapshot::{ModuleDigest, Plugin};
use loom_core::{Input, Snapshot};
use tokio::sync::watch;

use super::engine::{Engine, Exports, Prepared};
use super::fetch::{Credentials, FetchError, Fetcher, sha256_hex};
use super::{Export, Outcome};

/// The first retry of a failed fetch waits this long, each next one twice as long...
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// ...up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A module by content: its bytes and exports.
struct Module {
    wasm: Arc<[u8]>,
    exports: Exports,
}

/// What makes two prepared plugins the same: the module, the config and the limits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PreparedKey {
    digest: ModuleDigest,
    config: Arc<str>,
    timeout: Duration,
    memory_pages: u32,
}

impl PreparedKey {
    fn of(p: &Plugin) -> Option<PreparedKey> {
        Some(PreparedKey {
            digest: p.module.as_ref().ok()?.clone(),
            config: p.config.clone(),
            timeout: p.timeout,
            memory_pages: p.memory_pages,
        })
    }
}

struct Inner {
    cache_dir: PathBuf,
    /// The engine, the fetcher and their thread, started by the first plugin (a data plane
    /// without plugins starts no thread and reads no TLS roots for them).
    started: OnceLock<Started>,
    /// Every module the input names, and its state.
    states: Mutex<PluginModuleStates>,
    modules: RwLock<HashMap<ModuleDigest, Arc<Module>>>,
    prepared: RwLock<HashMap<PreparedKey, Arc<Prepared>>>,
    changes: watch::Sender<u64>,
}

/// What fetching and running plugins needs.
struct Started {
    engine: Engine,
    fetcher: Fetcher,
    /// The runtime of the fetch thread.
    runtime: tokio::runtime::Handle,
}

impl Started {
    fn new(cache_dir: &std::path::Path) -> Started {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = std::thread::Builder::new()
            .name("loom-plugins".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for plugin fetches");
                let _ = tx.send(runtime.handle().clone());
                runtime.block_on(std::future::pending::<()>());
            });
        let runtime = rx.recv().expect("the plugin fetch thread starts");
        let fetcher = {
            let _guard = runtime.enter();
            Fetcher::new(cache_dir)
        };
        Started {
            engine: Engine::new(cache_dir),
            fetcher,
            runtime,
        }
    }
}

/// The data plane's WASMPlugins: modules, their state, prepared plugins. Cheap to clone.
/// [`Plugins::none`] runs none (every plugin reports so, and fails as its `failStrategy`
/// says).
#[derive(Clone, Default)]
pub struct Plugins {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").finish_non_exhaustive()
    }
}

impl Plugins {
    /// Plugins whose modules are cached under `cache_dir` (downloads by content, compiled
    /// code). Fetches run on a thread of their own, started with the first plugin.
    pub fn new(cache_dir: PathBuf) -> Plugins {
        Plugins {
            inner: Some(Arc::new(Inner {
                cache_dir,
                started: OnceLock::new(),
                states: Mutex::default(),
                modules: RwLock::default(),
                prepared: RwLock::default(),
                changes: watch::channel(0).0,
            })),
        }
    }

    /// No engine.
    pub fn none() -> Plugins {
        Plugins::default()
    }

    fn inner(&self) -> &Inner {
        self.inner.as_ref().expect("only called with an engine")
    }

    fn started(&self) -> &Started {
        let inner = self.inner();
        inner.started.get_or_init(|| Started::new(&inner.cache_dir))
    }

    /// Wants the modules `input`'s plugins name: new ones start fetching, ones no longer
    /// named are forgotten. Returns every module's state, for compile.
    pub fn sync(&self, input: &Input) -> Option<PluginModuleStates> {
        let inner = self.inner.as_ref()?;
        let wanted = module_sources(input);
        let mut states = inner.states.lock().unwrap_or_else(|e| e.into_inner());
        states.retain(|s, _| wanted.contains(s));
        for source in wanted {
            if states.contains_key(&source) {
                continue;
            }
            states.insert(source.clone(), ModuleState::Pending("fetching".into()));
            let credentials = credentials(input, &source);
            let this = self.clone();
            self.started()
                .runtime
                .spawn(async move { this.fetch(source, credentials).await });
        }
        Some(states.clone())
    }

    /// Waits until no module is being fetched any more, or `at_most` passed (at start, so a
    /// data plane turns ready with its plugins loaded; later fetches never hold anything up).
    /// Returns whether they all settled.
    pub fn wait_settled(&self, at_most: Duration) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let deadline = std::time::Instant::now() + at_most;
        loop {
            let pending = inner
                .states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .any(|s| matches!(s, ModuleState::Pending(_)));
            if !pending {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Changes whenever a module's state does (compile again then).
    pub fn changes(&self) -> watch::Receiver<u64> {
        match &self.inner {
            Some(i) => i.changes.subscribe(),
            None => watch::channel(0).1,
        }
    }

    fn set(&self, source: &ModuleSource, state: ModuleState) -> bool {
        let mut states = self
            .inner()
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match states.get_mut(source) {
            // No longer wanted: the fetch stops.
            None => false,
            Some(s) => {
                *s = state;
                drop(states);
                self.inner().changes.send_modify(|n| *n += 1);
                true
            }
        }
    }

    async fn fetch(self, source: ModuleSource, credentials: Option<Credentials>) {
        let mut backoff = BACKOFF_FIRST;
        for attempt in 1.. {
            let result = self
                .started()
                .fetcher
                .fetch(&source, credentials.as_ref())
                .await;
            let state = match result {
                Ok(wasm) => self.load(wasm).await,
                Err(FetchError::Refused(why)) => ModuleState::Failed(why),
                Err(FetchError::Retry(why)) => {
                    tracing::warn!(
                        "WASMPlugin module {}: attempt {attempt} failed: {why}; next in \
                         {backoff:?}",
                        source.url
                    );
                    let state = ModuleState::Pending(format!(
                        "attempt {attempt} failed: {why}; next in {}s",
                        backoff.as_secs()
                    ));
                    if !self.set(&source, state) {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            match &state {
                ModuleState::Ready(d) => {
                    tracing::debug!("WASMPlugin module {} loaded: sha256:{}", source.url, d.0)
                }
                other => tracing::warn!("WASMPlugin module {}: {other:?}", source.url),
            }
            self.set(&source, state);
            return;
        }
    }

    /// Compiles a module (once per content) and checks its exports, on a blocking thread.
    async fn load(&self, wasm: Vec<u8>) -> ModuleState {
        let digest = ModuleDigest(sha256_hex(&wasm));
        if self.module(&digest).is_some() {
            return ModuleState::Ready(digest);
        }
        let this = self.clone();
        let d = digest.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let exports = this.started().engine.check(&wasm)?;
            this.inner()
                .modules
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    d,
                    Arc::new(Module {
                        wasm: wasm.into(),
                        exports,
                    }),
                );
            Ok::<_, String>(())
        })
        .await
        .unwrap_or_else(|e| Err(format!("compiling the module panicked: {e}")));
        match checked {
            Ok(()) => ModuleState::Ready(digest),
            Err(why) => ModuleState::Failed(why),
        }
    }

    fn module(&self, digest: &ModuleDigest) -> Option<Arc<Module>> {
        self.inner()
            .modules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }

    /// Prepares every plugin of a snapshot about to be served (a module with its config and
    /// limits; the code comes from the compiled-code cache) and forgets the ones it no
    /// longer has.
    pub(crate) fn prepare(&self, snapshot: &Snapshot) {
        let Some(inner) = &self.inner else {
            return;
        };
        // Nothing is prepared before a module has loaded (which starts the engine).
        let Some(started) = inner.started.get() else {
            return;
        };
        let mut next = HashMap::new();
        for p in &snapshot.plugins {
            let Some(key) = PreparedKey::of(p) else {
                continue;
            };
            if next.contains_key(&key) {
                continue;
            }
            let existing = inner
                .prepared
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            let prepared = match existing {
                Some(p) => p,
                None => {
                    let Some(module) = self.module(&key.digest) else {
                        continue;
                    };
                    match started.engine.prepare(p, &module.wasm, module.exports) {
                        Ok(prepared) => Arc::new(prepared),
                        Err(why) => {
                            tracing::warn!(
                                "WASMPlugin {}/{}: {why}",
                                p.plugin.namespace,
                                p.plugin.name
                            );
                            continue;
                        }
                    }
                }
            };
            next.insert(key, prepared);
        }
        *inner.prepared.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    pub(super) fn call(&self, p: &Plugin, export: Export, input: &[u8]) -> Outcome {
        let Some(inner) = &self.inner else {
            return Outcome::Unavailable("this data plane runs no WASMPlugins".into());
        };
        let key = match PreparedKey::of(p) {
            Some(k) => k,
            None => {
                return Outcome::Unavailable(p.module.clone().err().unwrap_or_default());
            }
        };
        let prepared = inner
            .prepared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let Some(prepared) = prepared else {
            return Outcome::Unavailable(format!("module sha256:{} is not prepared", key.digest.0));
        };
        let exported = match export {
            Export::OnRequest => prepared.exports.on_request,
            Export::OnResponse => prepared.exports.on_response,
        };
        if !exported {
            return Outcome::NotExported;
        }
        match prepared.call(export.name(), input) {
            Ok(out) => Outcome::Output(out),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// The credentials of a source's `imagePullSecret`, from the input's Secrets.
fn credentials(input: &Input, source: &ModuleSource) -> Option<Credentials> {
    let (ns, name) = source.pull_secret.as_ref()?;
    let secret = input
        .secrets
        .iter()
        .find(|s| s.metadata.namespace_or_default() == ns && &s.metadata.name == name);
    let Some(secret) = secret else {
        tracing::warn!("WASMPlugin imagePullSecret {ns}/{name} not found; pulling anonymously");
        return None;
    };
    let registry = source.url.strip_prefix("oci://")?.split('/').next()?;
    let json = secret.data.get(".dockerconfigjson")?;
    Credentials::from_docker_config(json, registry)
}
