//! Loom's traffic policies as the data plane applies them: the rate limit a route's requests
//! are counted against, the circuit breaker of a backend, and the client limits of a port.
//!
//! The counting itself (token buckets, ejections) is in [`crate::policy`]; the data plane
//! keeps the state, keyed by what is here, so that state survives a reload when the policy's
//! numbers for it did not change.

use std::time::Duration;

use http::HeaderName;
use serde::Serialize;

use crate::input::ObjectKey;
use crate::policy::gcra::Quota;
use crate::policy::outlier::OutlierConfig;
use crate::route::{HttpMatch, RequestView};

/// A RateLimitPolicy as it applies to the requests of one route (one token bucket per
/// targeted route and limit, per replica; or one shared through Redis).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Index in [`Snapshot::rate_limits`](super::Snapshot::rate_limits).
    pub id: usize,
    /// The policy.
    pub policy: ObjectKey,
    /// The route whose requests are counted.
    pub route: ObjectKey,
    /// The limit of requests no rule matches; `None`: they are not limited.
    pub default: Option<Quota>,
    /// Limits for the requests that match, first match wins.
    pub rules: Vec<RateLimitRule>,
    /// Per-client buckets; `None`: all requests share one.
    pub key: Option<ClientKey>,
    /// Shared across replicas through Redis.
    pub global: Option<GlobalLimit>,
    /// Which responses carry the `RateLimit-Policy` and `RateLimit` headers.
    pub headers: RateLimitHeaders,
}

/// `RateLimitPolicy.spec.headers`: which responses describe the limit (`RateLimit-Policy`,
/// `RateLimit`; draft-ietf-httpapi-ratelimit-headers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum RateLimitHeaders {
    /// Only the 429 answers (beside `Retry-After`); allowed responses stay as the backend sent
    /// them, as Envoy's, nginx's and HAProxy's rate limits leave them by default.
    #[default]
    OnLimit,
    /// Every response of a request the policy counted.
    Always,
}

/// A `rules[]` entry of a RateLimitPolicy.
#[derive(Debug, Serialize)]
pub struct RateLimitRule {
    /// Any of these selects a request.
    #[serde(skip)]
    pub matches: Vec<HttpMatch>,
    /// The rule's limit.
    pub quota: Quota,
}

/// What makes two requests the same client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientKey {
    /// The client's IP address (as Loom determines it: the peer, or the `X-Forwarded-For`
    /// entry the trusted proxies in front of Loom name).
    ClientAddress {
        /// Clients tracked at once per bucket; the least recently seen goes first.
        max_keys: u32,
    },
    /// The value of a request header; requests without it share one bucket.
    Header {
        /// The header.
        #[serde(serialize_with = "header_name")]
        name: HeaderName,
        /// Clients tracked at once per bucket; the least recently seen goes first.
        max_keys: u32,
    },
}

fn header_name<S: serde::Serializer>(h: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.as_str())
}

impl ClientKey {
    /// Clients tracked at once per bucket.
    pub fn max_keys(&self) -> u32 {
        match self {
            ClientKey::ClientAddress { max_keys } | ClientKey::Header { max_keys, .. } => *max_keys,
        }
    }
}

/// `RateLimitPolicy.spec.global`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalLimit {
    /// Let requests through when Redis cannot be reached (else answer 503).
    pub fail_open: bool,
}

/// Which bucket of a [`RateLimit`] counts a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Slot {
    /// `default`.
    Default,
    /// `rules[i]`.
    Rule(usize),
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Default => f.write_str("default"),
            Slot::Rule(i) => write!(f, "rules[{i}]"),
        }
    }
}

/// The bucket a request is counted in.
#[derive(Clone, Copy, Debug)]
pub struct Limit<'s> {
    /// The policy as it applies to the route.
    pub rate_limit: &'s RateLimit,
    /// Which of its buckets.
    pub slot: Slot,
    /// That bucket's limit.
    pub quota: Quota,
}

impl RateLimit {
    /// The bucket a request is counted in; `None` when neither a rule nor `default` limits it.
    pub fn limit(&self, req: &RequestView<'_>) -> Option<Limit<'_>> {
        let (slot, quota) = match self
            .rules
            .iter()
            .position(|r| r.matches.iter().any(|m| m.matches(req)))
        {
            Some(i) => (Slot::Rule(i), self.rules[i].quota),
            None => (Slot::Default, self.default?),
        };
        Some(Limit {
            rate_limit: self,
            slot,
            quota,
        })
    }

    /// The bucket's name, the same in every replica and across reloads: policy, route, slot.
    pub fn bucket_name(&self, slot: Slot) -> String {
        format!("{}|{}|{slot}", self.policy, self.route)
    }
}

/// A CircuitBreakerPolicy as it applies to one backend (per replica).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// The policy.
    pub policy: ObjectKey,
    /// When endpoints are ejected, and for how long.
    #[serde(skip)]
    pub outlier: OutlierConfig,
    /// Connections in use at once.
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection while `max_connections` are in use.
    pub max_pending_requests: Option<u32>,
    /// Requests in flight at once.
    pub max_requests: Option<u32>,
}

impl CircuitBreaker {
    /// The outlier settings in words, for `/config` and `loom explain`.
    pub fn outlier_summary(&self) -> String {
        let o = &self.outlier;
        format!(
            "{} failures in a row eject an endpoint for {} × n (at most {}), at most {}% of \
             endpoints at once, reviewed every {}",
            o.consecutive_errors,
            secs(o.base_ejection_time),
            secs(o.max_ejection_time),
            o.max_ejection_percent,
            secs(o.interval),
        )
    }
}

/// A ClientTrafficPolicy as it applies to one port: what a client connection there may hold.
/// A field the policy leaves out is `None`, and the data plane's own default (`loom serve`
/// flags) applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    /// The policy.
    pub policy: ObjectKey,
    /// Time to send a whole HTTP/1 request head.
    pub header_timeout: Option<Duration>,
    /// Time a keep-alive connection stays open idle (at least a second).
    pub idle_timeout: Option<Duration>,
    /// Connections one listening socket holds at most.
    pub max_connections: Option<u32>,
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
