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
    /// from it). A snapshot served before its status is put together
    /// ([`SnapshotHandle::publish_first`]) has the last one's until then.
    pub status: ArcSwap<Status>,
    /// How long the compile that produced it took (reported in metrics).
    pub compile_time: Duration,
}

/// A snapshot served before its status ([`SnapshotHandle::publish_first`]).
#[must_use = "the listener manager is woken when the status is given"]
pub struct StatusToCome {
    changes: Arc<watch::Sender<u64>>,
    published: Arc<Published>,
}

impl StatusToCome {
    /// The snapshot's status: published with it, and the listener manager woken. Returns the
    /// generation.
    pub fn status(self, status: Arc<Status>) -> u64 {
        self.published.status.store(status);
        self.published.generation
    }
}

impl Drop for StatusToCome {
    fn drop(&mut self) {
        self.changes.send_replace(self.published.generation);
    }
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
        self.publish_first(snapshot, compile_time).status(status)
    }

    /// Serves `snapshot` at once, before its status is put together (at thousands of routes
    /// that is a third of a compile, which a change need not wait for): requests use it from
    /// here on, with the last publish's status until [`StatusToCome::status`] gives its own.
    /// The listener manager (listeners, health checks, metrics) is woken then, or when the
    /// `StatusToCome` is dropped.
    pub fn publish_first(&self, snapshot: Snapshot, compile_time: Duration) -> StatusToCome {
        // Plugins are made ready before the snapshot that runs them is served.
        self.plugins.prepare(&snapshot);
        let last = self.current.load();
        let published = Arc::new(Published {
            generation: last.generation + 1,
            snapshot,
            status: ArcSwap::new(last.status.load_full()),
            compile_time,
        });
        self.current.store(published.clone());
        StatusToCome {
            changes: self.changes.clone(),
            published,
        }
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

#[cfg(test)]
mod tests {
    use loom_core::input::{Kind, ObjectKey};
    use loom_core::status::ObjectStatus;

    use super::*;

    /// A status with one object in it, told apart by name.
    fn status(name: &str) -> Arc<Status> {
        let mut s = Status::default();
        let key = ObjectKey {
            kind: Kind::HttpRoute,
            namespace: "app".into(),
            name: name.into(),
        };
        s.objects
            .insert(key, ObjectStatus::Route(Arc::new(Default::default())));
        Arc::new(s)
    }

    fn names(p: &Published) -> Vec<String> {
        let status = p.status.load();
        status.objects.keys().map(|k| k.name.clone()).collect()
    }

    #[test]
    fn a_snapshot_published_first_is_served_at_once_with_the_last_status_until_its_own() {
        let handle = SnapshotHandle::new();
        let mut changes = handle.subscribe();
        handle.publish_shared(Snapshot::default(), status("first"), Duration::ZERO);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();

        let to_come = handle.publish_first(Snapshot::default(), Duration::from_millis(3));
        let served = handle.load();
        assert_eq!(served.generation, 2);
        assert_eq!(served.compile_time, Duration::from_millis(3));
        assert_eq!(names(&served), ["first"]);
        // The listener manager waits for the status (its metrics are the status's).
        assert!(!changes.has_changed().unwrap());

        assert_eq!(to_come.status(status("second")), 2);
        assert_eq!(names(&served), ["second"]);
        assert!(Arc::ptr_eq(&handle.load(), &served));
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 2);
    }

    #[test]
    fn a_snapshot_whose_status_never_comes_still_wakes_the_listener_manager() {
        let handle = SnapshotHandle::new();
        let mut changes = handle.subscribe();
        drop(handle.publish_first(Snapshot::default(), Duration::ZERO));
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 1);
        assert!(names(&handle.load()).is_empty());
    }
}
