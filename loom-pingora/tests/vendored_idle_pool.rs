//! The unit tests of the vendored `pingora-core`'s idle connection pool (a loom patch,
//! vendor/README.md). `cargo test --workspace` does not run a path dependency's own tests, so
//! this target compiles the module as it is and runs them.

#[allow(dead_code)]
#[path = "../../vendor/pingora-core/src/connectors/idle.rs"]
mod idle;
