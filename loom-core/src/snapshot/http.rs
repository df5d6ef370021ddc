//! HTTP listeners, their virtual hosts and the compiled rules.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::FixedState;

use serde::Serialize;

use http::HeaderValue;

use super::{BackendTarget, ServerTls, UnsupportedExtensionRef, WeightedBackend};
use crate::filter::{Cors, HeaderEdits, HeaderStore, Redirect, Rewrite};
use crate::input::ObjectKey;
use crate::route::host::{HostPattern, most_specific_first};
use crate::route::{GrpcTable, HttpTable};

/// An HTTP or HTTPS listener.
#[derive(Clone, Debug)]
pub struct HttpListener {
    /// Listener name.
    pub name: String,
    /// The Gateway or ListenerSet that declares it.
    pub owner: ObjectKey,
    /// The listener's hostname; `None` takes any host.
    pub hostname: Option<HostPattern>,
    /// TLS (HTTPS).
    pub tls: Option<ServerTls>,
    /// Exact hostnames, hashed as path values are (foldhash under a random seed: a lookup
    /// per request, and 5,000 hostnames inserted at each compile).
    exact: HashMap<String, usize, FixedState>,
    wildcards: Vec<usize>,
    any: Option<usize>,
    /// Virtual hosts (shared: a compile that changed nothing in one takes it from the last).
    pub vhosts: Vec<Arc<VirtualHost>>,
}

/// The rules of one hostname (or of every hostname) on a listener.
#[derive(Clone, Debug)]
pub struct VirtualHost {
    /// `None` = any host.
    pub hostname: Option<HostPattern>,
    /// HTTPRoute rules.
    pub http: HttpTable<Arc<HttpRule>>,
    /// GRPCRoute rules.
    pub grpc: GrpcTable<Arc<HttpRule>>,
}

impl HttpListener {
    /// A listener with its virtual hosts.
    pub fn new(
        name: String,
        owner: ObjectKey,
        hostname: Option<HostPattern>,
        tls: Option<ServerTls>,
        mut vhosts: Vec<Arc<VirtualHost>>,
    ) -> Self {
        vhosts.sort_by(|a, b| most_specific_first(a.hostname.as_ref(), b.hostname.as_ref()));
        let exact_hosts = (vhosts.iter())
            .filter(|v| matches!(v.hostname, Some(HostPattern::Exact(_))))
            .count();
        let mut exact = HashMap::with_capacity_and_hasher(exact_hosts, crate::route::hasher());
        let mut wildcards = Vec::new();
        let mut any = None;
        for (i, v) in vhosts.iter().enumerate() {
            match &v.hostname {
                Some(HostPattern::Exact(h)) => {
                    exact.insert(h.clone(), i);
                }
                Some(HostPattern::Wildcard(_)) => wildcards.push(i),
                None => any = Some(i),
            }
        }
        HttpListener {
            name,
            owner,
            hostname,
            tls,
            exact,
            wildcards,
            any,
            vhosts,
        }
    }

    /// The virtual hosts a host may use, most specific first.
    /// `host` must be lower-case.
    pub fn vhosts_for<'s, 'h>(
        &'s self,
        host: &'h str,
    ) -> impl Iterator<Item = &'s VirtualHost> + use<'s, 'h> {
        let exact = self.exact.get(host).copied();
        let wild = self.wildcards.iter().copied().filter(move |&i| {
            self.vhosts[i]
                .hostname
                .as_ref()
                .is_some_and(|h| h.matches(host))
        });
        exact
            .into_iter()
            .chain(wild)
            .chain(self.any)
            .map(move |i| &*self.vhosts[i])
    }
}

/// A compiled route rule: where matching traffic goes and what happens to it on the way.
#[derive(Clone, Debug)]
pub struct HttpRule {
    /// The route (HTTPRoute or GRPCRoute).
    pub route: ObjectKey,
    /// Rule index.
    pub rule_index: usize,
    /// Rule name, if set.
    pub rule_name: Option<String>,
    /// Rule-level filters.
    pub filters: Filters,
    /// Weighted backends.
    pub backends: Vec<WeightedBackend>,
    /// Why the whole rule answers 500 (an unresolvable filter), if it does.
    pub invalid: Option<UnsupportedExtensionRef>,
    /// The rule's request and backend request timeouts.
    pub timeouts: Timeouts,
    /// Retry policy (boxed: most rules have none, and every route has a rule).
    pub retry: Option<Box<Retry>>,
    /// The RateLimitPolicy that counts this rule's requests on this listener.
    pub rate_limit: Option<Arc<super::RateLimit>>,
    /// The WASMPlugins this rule runs on this listener.
    pub plugins: Option<Arc<super::RulePlugins>>,
}

/// Compiled filters (rule- or backend-level). Each filter is boxed: most rules and backends
/// have none, and a rule and its backend carry two of these (432 bytes each inline, 64 boxed;
/// 3.7 MB at 5,000 one-backend routes).
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// RequestHeaderModifier.
    pub request_headers: Option<Box<HeaderEdits>>,
    /// ResponseHeaderModifier.
    pub response_headers: Option<Box<HeaderEdits>>,
    /// RequestRedirect.
    pub redirect: Option<Box<Redirect>>,
    /// URLRewrite.
    pub rewrite: Option<Box<Rewrite>>,
    /// RequestMirror filters.
    pub mirrors: Vec<Mirror>,
    /// CORS.
    pub cors: Option<Box<Cors>>,
}

/// A mirror target and how often to mirror.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// Where mirrored requests go (an unresolvable mirror is dropped at compile time).
    pub backend: Arc<BackendTarget>,
    /// Mirror `numerator` out of every `denominator` requests.
    pub numerator: u32,
    /// See `numerator`.
    pub denominator: u32,
}

/// A route's timeouts in milliseconds; `None`: the route sets none (the data plane's defaults
/// apply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Whole request; `Some(0)`: the route disables it ("0s").
    pub request_ms: Option<u64>,
    /// Each backend attempt; `Some(0)`: the route disables it ("0s").
    pub backend_request_ms: Option<u64>,
}

/// Retry policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Status codes to retry.
    pub codes: Vec<u16>,
    /// Maximum retries.
    pub attempts: u32,
    /// Backoff in milliseconds.
    pub backoff_ms: Option<u64>,
}

impl HttpRule {
    fn filter_layers(&self, backend_index: usize) -> impl Iterator<Item = &Filters> {
        std::iter::once(&self.filters).chain(self.backends.get(backend_index).map(|b| &b.filters))
    }

    /// Applies the request header modifiers of the rule and of the chosen backendRef, in place.
    pub fn apply_request_headers<H: HeaderStore + ?Sized>(
        &self,
        backend_index: usize,
        headers: &mut H,
    ) {
        for f in self.filter_layers(backend_index) {
            if let Some(e) = &f.request_headers {
                e.apply(headers);
            }
        }
    }

    /// Applies the response header modifiers and CORS headers of the rule and of the chosen
    /// backendRef to a backend's response, in place. `origin` is the request's `Origin`.
    pub fn apply_response_headers<H: HeaderStore + ?Sized>(
        &self,
        backend_index: usize,
        origin: Option<&HeaderValue>,
        headers: &mut H,
    ) {
        for f in self.filter_layers(backend_index) {
            if let Some(e) = &f.response_headers {
                e.apply(headers);
            }
            if let Some(c) = &f.cors {
                for (n, v) in c.response_headers(origin) {
                    headers.set_header(n, v);
                }
            }
        }
    }
}
