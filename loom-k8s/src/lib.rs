//! Loom's Kubernetes adapter.
//!
//! Watches every kind `loom-core` reads (discovered, so a cluster without the
//! experimental CRDs still works), keeps one [`loom_core::input::Input`] up to date,
//! compiles at once when idle (a burst of changes together), hands each snapshot to the
//! data plane, and writes the status `loom-core` computes with server-side apply — only on
//! the replica holding the Lease, and only when the object does not already show it.
//!
//! - [`controller`]: the run loop (select over watches and timers, debounce, leader
//!   election, reconnects, per-Secret watches) and its options. Inside it, pure and
//!   unit-tested: `index` (watch events, relists buffered, into the `Input`, the status
//!   each object shows, data-plane rollouts, named Secrets/ConfigMaps, pool addresses),
//!   `plan` (compile, and the writes to make, with `now` passed in) and `readiness` (every
//!   kind listed once, named Secrets fetched or waited for, the debounce).
//! - [`resources`]: discovery, and the one conversion of API objects into `loom_core::input`.
//! - [`status`]: the `status` to write from the computed one (transition times, other
//!   controllers' entries).
//! - [`addresses`]: the address pool. [`provision`]: the per-Gateway objects.
//! - `writer`: applies the planned writes on the Lease holder. [`crds`]: Loom's CRDs.
//!
//! The pure parts are tested without an API server; the loop is tested against a real
//! one (`ci/k8s`).

pub mod addresses;
pub mod controller;
pub mod crds;
pub mod provision;
pub mod resources;
pub mod status;
mod writer;

pub use controller::{ControllerOptions, LeaseOptions, PluginModules, Publish, TakeStatus, run};

/// Test helper: the objects of a YAML string as an `Input` (no load errors allowed).
#[cfg(test)]
pub(crate) fn test_input(yaml: &str) -> loom_core::input::Input {
    let loaded = loom_core::load::load_str("in.yaml", yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut input = loom_core::input::Input::default();
    for (_, o) in loaded.objects {
        input.upsert(o);
    }
    input
}
