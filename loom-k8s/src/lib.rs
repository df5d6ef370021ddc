//! Loom's Kubernetes adapter.
//!
//! Watches every kind `loom-core` reads (discovered, so a cluster without the
//! experimental CRDs still works), keeps one [`loom_core::input::Input`] up to date,
//! compiles after a short debounce, hands each snapshot to the data plane, and writes
//! the status `loom-core` computes with server-side apply — only on the replica holding
//! the Lease, and only when the object does not already show it.
//!
//! The pure parts (address assignment, status merging, object conversion) are in their
//! own modules and tested without an API server; the loop is tested against a real one
//! (`ci/k8s`).

pub mod addresses;
pub mod controller;
pub mod crds;
pub mod provision;
pub mod resources;
pub mod status;
mod writer;

pub use controller::{ControllerOptions, LeaseOptions, Publish, run};

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
