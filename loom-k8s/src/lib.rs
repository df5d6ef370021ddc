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
mod refs;
pub mod resources;
pub mod status;
mod writer;

pub use controller::{ControllerOptions, LeaseOptions, Publish, run};
