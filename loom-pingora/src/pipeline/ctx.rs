//! What a request carries from one phase of the pipeline to the next.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue};
use loom_core::snapshot::{BackendTarget, Certificate, HttpRule, Timeouts};

use crate::upstream::health::{Admission, BackendHealth};

/// What a request carries from one phase to the next.
pub struct RequestCtx {
    pub(super) started: Instant,
    pub(super) route: Option<Routed>,
    /// Backend attempts made so far.
    pub(super) tries: u32,
    /// The endpoint of the current attempt (an index into the backend's endpoints).
    pub(super) endpoint: usize,
    /// The last attempt's response was dropped to retry it.
    pub(super) retrying: bool,
    /// The rule that matched, for metrics and the access log.
    pub(super) matched: Option<Arc<HttpRule>>,
    /// The chosen backend's health (outliers, breaker counts).
    pub(super) health: Option<Arc<BackendHealth>>,
    /// The request's share of the backend's circuit-breaker limits, given back on drop.
    pub(super) admission: Option<Admission>,
    /// Headers for the response (rate-limit state).
    pub(super) response_headers: Vec<(HeaderName, HeaderValue)>,
    /// The client's address as plugins see it (set on rules that run plugins).
    pub(super) client: Option<String>,
}

pub(super) struct Routed {
    /// The Gateway's client certificate for TLS backends.
    pub(super) client_cert: Option<Certificate>,
    pub(super) rule: Arc<HttpRule>,
    pub(super) backend_index: usize,
    pub(super) backend: Arc<BackendTarget>,
    pub(super) origin: Option<HeaderValue>,
    pub(super) timeouts: Timeouts,
}

impl RequestCtx {
    pub(super) fn new(started: Instant) -> Self {
        RequestCtx {
            started,
            route: None,
            tries: 0,
            endpoint: 0,
            retrying: false,
            matched: None,
            health: None,
            admission: None,
            response_headers: vec![],
            client: None,
        }
    }
}
