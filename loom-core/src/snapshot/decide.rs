//! The decision for an HTTP request: listener (isolation, SNI), virtual host, rule, then
//! redirect, local answer or backend.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::backend::mix;
use super::{
    BackendTarget, GatewayName, HttpListener, HttpRule, Limit, PortSnapshot, Retry, Snapshot,
    Timeouts, VirtualHost, choose_weighted,
};
use crate::filter::{Cors, HeaderStore, Redirect};
use crate::route::host::host_without_port;
use crate::route::path::{BadRequestPath, PathMatch, normalize};
use crate::route::{HttpMatch, RequestView};

/// Why no rule takes an HTTP request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoRoute {
    /// No listener on the port serves the host.
    #[error("no listener for host {0:?}")]
    NoListener(String),
    /// The host belongs to another listener than the one the TLS server name chose.
    #[error("host {host:?} is not served by the listener of SNI {sni:?}")]
    Misdirected {
        /// The request's host.
        host: String,
        /// The TLS server name.
        sni: String,
    },
    /// The path cannot be normalised.
    #[error(transparent)]
    BadPath(#[from] BadRequestPath),
    /// No rule matches.
    #[error("no route matched")]
    NoMatch,
}

impl NoRoute {
    /// The status the request is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            NoRoute::NoListener(_) | NoRoute::NoMatch => StatusCode::NOT_FOUND,
            NoRoute::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            NoRoute::BadPath(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub struct HttpRequest<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The TLS server name, on HTTPS.
    pub sni: Option<&'a str>,
    /// The request method.
    pub method: &'a Method,
    /// Request target.
    pub uri: &'a Uri,
    /// Headers (including `host` for HTTP/1.1).
    pub headers: &'a HeaderMap,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision<'s> {
    /// Send it to a backend.
    Forward(Box<Forward<'s>>),
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: StatusCode,
        /// The `Location`.
        location: String,
        /// The rule.
        matched: Matched<'s>,
    },
    /// Answer locally.
    Respond(LocalResponse<'s>),
}

impl<'s> Decision<'s> {
    /// The listener, host and rule that matched, if one did.
    pub fn matched(&self) -> Option<&Matched<'s>> {
        match self {
            Decision::Forward(f) => Some(&f.matched),
            Decision::Redirect { matched, .. } => Some(matched),
            Decision::Respond(r) => r.matched.as_ref(),
        }
    }
}

/// The listener, host and rule that won.
#[derive(Clone, Copy, Debug)]
pub struct Matched<'s> {
    /// The listener.
    pub listener: &'s HttpListener,
    /// The virtual host.
    pub vhost: &'s VirtualHost,
    /// The rule (an `Arc`, so the data plane can keep it past the decision).
    pub rule: &'s Arc<HttpRule>,
    /// The winning HTTP match (`None` for gRPC rules).
    pub http_match: Option<&'s HttpMatch>,
    /// The rate-limit bucket the request is counted in, if a RateLimitPolicy limits it.
    pub limit: Option<Limit<'s>>,
}

/// A local answer (404, 400, 421, 500, CORS preflight, ...).
#[derive(Debug)]
pub struct LocalResponse<'s> {
    /// The status code to answer with.
    pub status: StatusCode,
    /// Headers to send.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Why (for logs and `loom explain`).
    pub reason: String,
    /// The rule, when one matched.
    pub matched: Option<Matched<'s>>,
}

/// A forwarded request. The request filters are not applied yet: the data plane applies
/// them in place ([`Forward::apply_request_headers`]) to its own header type, so nothing is
/// copied; [`Forward::backend_request`] builds the whole request for tools and tests.
#[derive(Debug)]
pub struct Forward<'s> {
    /// What matched.
    pub matched: Matched<'s>,
    /// The chosen backend.
    pub backend: &'s Arc<BackendTarget>,
    /// The chosen backendRef's index in the rule.
    pub backend_index: usize,
    /// The path and query the backend receives (normalised, then rewritten).
    pub path_and_query: String,
    /// The `Host` the backend receives, when a URLRewrite changes it.
    pub host: Option<&'s HeaderValue>,
    /// Where to send copies of the request.
    pub mirrors: Vec<&'s Arc<BackendTarget>>,
    /// The rule's timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retry: Option<&'s Retry>,
}

impl Forward<'_> {
    /// Applies the request header filters (rule, then backend) and the `Host` rewrite in place.
    pub fn apply_request_headers<H: HeaderStore + ?Sized>(&self, headers: &mut H) {
        self.matched
            .rule
            .apply_request_headers(self.backend_index, headers);
        if let Some(h) = self.host {
            headers.set_header(http::header::HOST, h.clone());
        }
    }

    /// The request as the backend receives it.
    pub fn backend_request(&self, req: &HttpRequest<'_>) -> http::Request<()> {
        let mut headers = req.headers.clone();
        if !headers.contains_key(http::header::HOST)
            && let Some(a) = req
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(http::header::HOST, a);
        }
        self.apply_request_headers(&mut headers);
        let mut request = http::Request::new(());
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = self
            .path_and_query
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *request.headers_mut() = headers;
        request
    }
}

impl Snapshot {
    /// Decides what to do with an HTTP request that arrived on a Gateway's port. `random` is the
    /// only source of randomness (weighted backends, mirror percentages).
    pub fn decide<'s>(
        &'s self,
        gateway: &GatewayName,
        port: u16,
        req: &HttpRequest<'_>,
        random: u64,
    ) -> Decision<'s> {
        match self.port(gateway, port) {
            Some(p) => p.decide(req, random),
            None => respond(StatusCode::NOT_FOUND, "no listener on this port", None),
        }
    }
}

/// The listener of `listeners` a host belongs to: the most specific hostname wins.
fn listener_in<'s>(listeners: &'s [HttpListener], host: &str) -> Option<&'s HttpListener> {
    listeners
        .iter()
        .find(|l| l.hostname.as_ref().is_none_or(|h| h.matches(host)))
}

/// A local answer with no headers.
fn respond<'s>(
    status: StatusCode,
    reason: impl Into<String>,
    matched: Option<Matched<'s>>,
) -> Decision<'s> {
    Decision::Respond(LocalResponse {
        status,
        headers: vec![],
        reason: reason.into(),
        matched,
    })
}

/// How a request reached a port: over TCP (HTTP/1.1, HTTP/2) or QUIC (HTTP/3). Each has its
/// own listeners (an HTTP/3 listener shares its port number with HTTPS listeners).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// HTTP, HTTPS.
    #[default]
    Tcp,
    /// HTTP/3.
    Quic,
}

impl PortSnapshot {
    /// The HTTP listeners of a transport, most specific hostname first.
    pub fn listeners_of(&self, transport: Transport) -> &[HttpListener] {
        match transport {
            Transport::Tcp => self.http_listeners(),
            Transport::Quic => self.http3_listeners(),
        }
    }

    /// Whether an HTTP/3 listener of the port serves `authority` (a `host[:port]`): what
    /// decides if an HTTPS response advertises HTTP/3 (`Alt-Svc`).
    pub fn serves_http3(&self, authority: &str) -> bool {
        let http3 = self.http3_listeners();
        if http3.is_empty() {
            return false;
        }
        let host = host_without_port(authority).to_ascii_lowercase();
        listener_in(http3, &host).is_some()
    }

    /// The listener a host belongs to (listener isolation: the most specific hostname wins).
    pub fn listener_for(&self, host: &str) -> Option<&HttpListener> {
        listener_in(self.http_listeners(), host)
    }

    /// The authority of a request: `:authority`/URI authority, else the `Host` header.
    pub fn authority<'r>(req: &HttpRequest<'r>) -> Option<&'r str> {
        req.uri.authority().map(|a| a.as_str()).or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
    }

    /// Finds the listener, virtual host and rule for a request without applying anything.
    pub fn find<'s>(&'s self, req: &HttpRequest<'_>) -> Result<Matched<'s>, NoRoute> {
        self.find_normalized(Transport::Tcp, req).map(|(m, _)| m)
    }

    /// [`Self::find`], also returning the normalised path it matched on.
    fn find_normalized<'s, 'r>(
        &'s self,
        transport: Transport,
        req: &HttpRequest<'r>,
    ) -> Result<(Matched<'s>, Cow<'r, str>), NoRoute> {
        let listeners = self.listeners_of(transport);
        let authority = Self::authority(req).unwrap_or("");
        let host = host_without_port(authority);
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let Some(listener) = listener_in(listeners, host) else {
            return Err(NoRoute::NoListener(host.to_owned()));
        };
        if let Some(sni) = req.sni {
            // HTTPS listener isolation: the Host must belong to the listener the SNI chose.
            // Compare identities, not names: a ListenerSet's listener may share its name with
            // a Gateway listener (or another set's) on the same port.
            let by_sni = listener_in(listeners, sni);
            if !by_sni.is_some_and(|l| std::ptr::eq(l, listener)) {
                return Err(NoRoute::Misdirected {
                    host: host.to_owned(),
                    sni: sni.to_owned(),
                });
            }
        }
        let raw_path = req.uri.path();
        let path = normalize(raw_path)?;
        let is_grpc = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let view = RequestView {
            method: req.method,
            path: &path,
            query: req.uri.query(),
            headers: req.headers,
        };
        let mut found = None;
        for vhost in listener.vhosts_for(host) {
            if is_grpc && let Some(rule) = vhost.grpc.find(&path, req.headers) {
                found = Some(Matched {
                    listener,
                    vhost,
                    rule,
                    http_match: None,
                    limit: None,
                });
                break;
            }
            if let Some((m, rule)) = vhost.http.find(&view) {
                found = Some(Matched {
                    listener,
                    vhost,
                    rule,
                    http_match: Some(m),
                    limit: None,
                });
                break;
            }
        }
        if let Some(mut m) = found {
            m.limit = m.rule.rate_limit.as_deref().and_then(|l| l.limit(&view));
            return Ok((m, path));
        }
        Err(NoRoute::NoMatch)
    }

    /// Decides what to do with a request: see [`Snapshot::decide`].
    pub fn decide<'s>(&'s self, req: &HttpRequest<'_>, random: u64) -> Decision<'s> {
        self.decide_over(Transport::Tcp, req, random)
    }

    /// Decides what to do with a request that came over `transport`.
    pub fn decide_over<'s>(
        &'s self,
        transport: Transport,
        req: &HttpRequest<'_>,
        random: u64,
    ) -> Decision<'s> {
        let (matched, path) = match self.find_normalized(transport, req) {
            Ok(found) => found,
            Err(no_route) => return respond(no_route.status(), no_route.to_string(), None),
        };
        let rule = matched.rule;
        if let Some(why) = &rule.invalid {
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                why.to_string(),
                Some(matched),
            );
        }
        if let Some(cors) = &rule.filters.cors
            && Cors::is_preflight(req.method, req.headers)
        {
            let headers = cors.preflight_headers(req.headers);
            let reason = if headers.is_empty() {
                "CORS preflight from an origin not allowed"
            } else {
                "CORS preflight"
            };
            return Decision::Respond(LocalResponse {
                status: StatusCode::OK,
                headers,
                reason: reason.into(),
                matched: Some(matched),
            });
        }
        let matched_prefix = match matched.http_match.map(|m| &m.path) {
            Some(PathMatch::Prefix(p)) => Some(p.as_str()),
            _ => None,
        };
        let redirect = |r: &Redirect| {
            let host = host_without_port(Self::authority(req).unwrap_or(""));
            let location = r.location(
                req.scheme,
                host,
                self.port,
                &path,
                req.uri.query(),
                matched_prefix,
            );
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
            Decision::Redirect {
                status,
                location,
                matched,
            }
        };
        if let Some(r) = &rule.filters.redirect {
            return redirect(r);
        }
        let Some(index) = choose_weighted(rule.backends.iter().map(|b| b.weight), mix(random, 0))
        else {
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rule has no backend with weight > 0",
                Some(matched),
            );
        };
        let chosen = &rule.backends[index];
        let backend = match &chosen.target {
            Ok(b) => b,
            Err(why) => {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    why.to_string(),
                    Some(matched),
                );
            }
        };
        if let Some(r) = &chosen.filters.redirect {
            return redirect(r);
        }
        let mut new_path = path.into_owned();
        let mut host = None;
        let mut mirrors = Vec::new();
        for (n, filters) in [&rule.filters, &chosen.filters].into_iter().enumerate() {
            if let Some(rw) = &filters.rewrite {
                host = rw.hostname.as_ref().or(host);
                if let Some(p) = &rw.path {
                    new_path = p.apply(&new_path, matched_prefix);
                }
            }
            for (i, m) in filters.mirrors.iter().enumerate() {
                let r =
                    mix(random, 1 + (n as u64) * 1000 + i as u64) % u64::from(m.denominator.max(1));
                if r < u64::from(m.numerator) {
                    mirrors.push(&m.backend);
                }
            }
        }
        if let Some(q) = req.uri.query() {
            new_path.push('?');
            new_path.push_str(q);
        }
        Decision::Forward(Box::new(Forward {
            matched,
            backend,
            backend_index: index,
            path_and_query: new_path,
            host,
            mirrors,
            timeouts: rule.timeouts,
            retry: rule.retry.as_deref(),
        }))
    }
}
