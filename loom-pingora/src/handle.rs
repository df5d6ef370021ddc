//! The one place the data plane reads configuration from: an `ArcSwap` of the published
//! snapshot. A reload is one `store`; requests in flight keep the `Arc` they loaded.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use loom_core::{Compiled, Snapshot, Status};
use tokio::sync::watch;

/// What is being served: a compiled snapshot, its status, and a generation number.
#[derive(Debug, Default)]
pub struct Published {
    /// Increases by one with every publish; 0 before the first.
    pub generation: u64,
    /// The routing snapshot.
    pub snapshot: Snapshot,
    /// The status computed with it.
    pub status: Status,
    /// How long the compile that produced it took (reported in metrics).
    pub compile_time: Duration,
}

/// A cheap-to-clone handle to the published configuration.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Published>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotHandle {
    /// A handle with nothing published (every request gets 404 until the first publish).
    pub fn new() -> Self {
        let (tx, _) = watch::channel(0);
        SnapshotHandle {
            current: Arc::new(ArcSwap::from_pointee(Published::default())),
            changes: Arc::new(tx),
        }
    }

    /// The configuration to use for one request or one connection.
    pub fn load(&self) -> Arc<Published> {
        self.current.load_full()
    }

    /// Publishes a new configuration as one unit and wakes the listener manager.
    pub fn publish(&self, compiled: Compiled, compile_time: Duration) -> u64 {
        let generation = self.current.load().generation + 1;
        self.current.store(Arc::new(Published {
            generation,
            snapshot: compiled.snapshot,
            status: compiled.status,
            compile_time,
        }));
        self.changes.send_replace(generation);
        generation
    }

    /// A receiver that changes on every publish.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
