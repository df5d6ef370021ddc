//! The state Loom's traffic policies keep: local rate-limit buckets and the Redis store of
//! global limits. (Circuit breakers keep theirs with the backends, in `upstream::health`.)

pub mod global;
pub mod local;
