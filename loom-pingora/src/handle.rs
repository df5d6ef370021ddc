//! The one place the data plane reads configuration from: an `ArcSwap` of the published
//! snapshot. A reload is one `store`; requests in flight keep the `Arc` they loaded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use loom_core::snapshot::GatewayName;
use loom_core::{Compiled, PortsNotServing, Snapshot, Status};
use tokio::sync::watch;

/// What is being served: a compiled snapshot, its status, and a generation number.
#[derive(Debug, Default)]
pub struct Published {
    /// Increases by one with every publish; 0 before the first.
    pub generation: u64,
    /// The routing snapshot.
    pub snapshot: Snapshot,
    /// The status computed with it (shared with the controller, which plans its writes
    /// from it).
    pub status: Arc<Status>,
    /// How long the compile that produced it took (reported in metrics).
    pub compile_time: Duration,
}

/// What the data plane's listeners are doing with a published configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    /// The generation the listeners were last reconciled with (0: none yet).
    pub generation: u64,
    /// The sockets that configuration asks for and that could not be opened (retried).
    pub failed: Vec<ListenFailure>,
}

impl Listening {
    /// The ports that could not be opened, by Gateway `(namespace, name)` and port, with why:
    /// what `loom_core::Options::ports_not_serving` takes.
    pub fn ports_not_serving(&self) -> PortsNotServing {
        let mut out = PortsNotServing::new();
        for f in &self.failed {
            let key = (f.gateway.namespace.clone(), f.gateway.name.clone(), f.port);
            let why = out.entry(key).or_default();
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str(&f.to_string());
        }
        out
    }

    /// Whether every listener of `generation` is open.
    pub fn all_bound(&self, generation: u64) -> bool {
        self.generation == generation && generation > 0 && self.failed.is_empty()
    }
}

/// A socket a Gateway asks for that is not open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenFailure {
    /// The Gateway.
    pub gateway: GatewayName,
    /// Its port.
    pub port: u16,
    /// The address that could not be bound.
    pub address: SocketAddr,
    /// UDP rather than TCP.
    pub udp: bool,
    /// Why (the bind error, or the TLS material that could not be loaded).
    pub error: String,
}

impl std::fmt::Display for ListenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = if self.udp { "udp" } else { "tcp" };
        write!(f, "{proto} {}: {}", self.address, self.error)
    }
}

/// A cheap-to-clone handle to the published configuration.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Published>>,
    changes: Arc<watch::Sender<u64>>,
    listening: Arc<watch::Sender<Listening>>,
    /// The WASMPlugins snapshots run.
    plugins: crate::plugin::Plugins,
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotHandle {
    /// A handle with nothing published (every request gets 404 until the first publish),
    /// running no WASMPlugins.
    pub fn new() -> Self {
        Self::with_plugins(crate::plugin::Plugins::none())
    }

    /// A handle whose snapshots run WASMPlugins with `plugins`.
    pub fn with_plugins(plugins: crate::plugin::Plugins) -> Self {
        let (tx, _) = watch::channel(0);
        SnapshotHandle {
            current: Arc::new(ArcSwap::from_pointee(Published::default())),
            changes: Arc::new(tx),
            listening: Arc::new(watch::channel(Listening::default()).0),
            plugins,
        }
    }

    /// The WASMPlugins (their modules' state for compile, their calls).
    pub fn plugins(&self) -> &crate::plugin::Plugins {
        &self.plugins
    }

    /// The configuration to use for one request or one connection.
    pub fn load(&self) -> Arc<Published> {
        self.current.load_full()
    }

    /// Publishes a new configuration as one unit and wakes the listener manager.
    pub fn publish(&self, compiled: Compiled, compile_time: Duration) -> u64 {
        self.publish_shared(compiled.snapshot, Arc::new(compiled.status), compile_time)
    }

    /// [`publish`](Self::publish), with a status the caller keeps too.
    pub fn publish_shared(
        &self,
        snapshot: Snapshot,
        status: Arc<Status>,
        compile_time: Duration,
    ) -> u64 {
        // Plugins are made ready before the snapshot that runs them is served.
        self.plugins.prepare(&snapshot);
        let generation = self.current.load().generation + 1;
        self.current.store(Arc::new(Published {
            generation,
            snapshot,
            status,
            compile_time,
        }));
        self.changes.send_replace(generation);
        generation
    }

    /// A receiver that changes on every publish.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// What the listeners are doing: every reconcile reports here (sockets that could not be
    /// opened, for readiness and status).
    pub fn listening(&self) -> watch::Receiver<Listening> {
        self.listening.subscribe()
    }

    /// Whether the published configuration is served: published, and every listener it asks
    /// for is open.
    pub fn is_serving(&self) -> bool {
        self.listening.borrow().all_bound(self.load().generation)
    }

    pub(crate) fn report_listening(&self, listening: Listening) {
        self.listening.send_if_modified(|current| {
            let changed = *current != listening;
            *current = listening;
            changed
        });
    }
}
