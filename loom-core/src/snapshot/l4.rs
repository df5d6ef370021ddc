//! TCP and UDP listeners, and the L4 rules of TLS, TCP and UDP routes.

use std::sync::Arc;

use super::{BackendTarget, UnresolvedRef, WeightedBackend, choose_weighted};
use crate::input::ObjectKey;

/// A TCP or UDP listener's route.
#[derive(Clone, Debug)]
pub struct L4Listener {
    /// Listener name.
    pub name: String,
    /// The route that gets the traffic (the oldest attached).
    pub rule: Arc<L4Rule>,
}

/// A TLS/TCP/UDP route rule.
#[derive(Clone, Debug)]
pub struct L4Rule {
    /// The route.
    pub route: ObjectKey,
    /// Weighted backends.
    pub backends: Vec<WeightedBackend>,
}

/// Why an L4 rule cannot take a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoBackend {
    /// Every backend has weight 0.
    #[error("no backend with weight > 0")]
    ZeroWeight,
    /// The backend chosen does not resolve.
    #[error(transparent)]
    Unresolved(#[from] UnresolvedRef),
}

impl L4Rule {
    /// Chooses a backend by weight; `Err` when none can take the connection.
    pub fn choose(&self, random: u64) -> Result<&BackendTarget, NoBackend> {
        let i = choose_weighted(self.backends.iter().map(|b| b.weight), random)
            .ok_or(NoBackend::ZeroWeight)?;
        self.backends[i]
            .target
            .as_deref()
            .map_err(|e| NoBackend::Unresolved((**e).clone()))
    }
}
