//! The HTTP proxy: Pingora's `ProxyHttp` phases driven by loom-core's decision API.
//!
//! ```text
//! request_filter   load the published snapshot once; decide; rate limits; AUTHN/AUTHZ
//!                  plugins; answer locally (404, 421, redirects, CORS preflight, 500 for
//!                  invalid backends) or apply the request filters in place, run the
//!                  unspecified-phase plugins and remember the chosen backend
//! upstream_peer    pick a ready endpoint of that backend; h2c for kubernetes.io/h2c; the
//!                  attempt's timeout (backendRequest, capped by what is left of request)
//! upstream_response_filter
//!                  a status the rule's retry policy names, with attempts left: drop it
//!                  and try again (after the backoff), else pass it on
//! response_filter  response header filters and CORS headers; plugins' on_response, STATS
//! fail_to_proxy    timeouts answer 504, other backend failures 502
//! logging          metrics and the access log
//! ```

mod ctx;
pub(crate) mod downstream;
pub(crate) mod forwarded;
pub(crate) mod framing;
pub(crate) mod headers;
pub(crate) mod ratelimit;
pub(crate) mod timeouts;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use loom_core::snapshot::{Decision, Endpoint, GatewayName, HttpRequest, PortSnapshot, Transport};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use crate::handle::SnapshotHandle;
use crate::metrics::Metrics;
use crate::policy::global::GlobalLimiter;
use crate::policy::local::RateLimiters;
use crate::upstream::dns::Resolver;
use crate::upstream::health::Health;
use crate::upstream::mirror::Mirrors;
use crate::upstream::peer::{self, BackendTimeouts};
pub use ctx::RequestCtx;
use ctx::Routed;
use downstream::Downstream;
use loom_core::policy::outlier::Outcome;

/// What the proxies of every listener share.
pub struct Shared {
    /// The published configuration.
    pub handle: SnapshotHandle,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Mirrored requests in flight.
    pub mirrors: Arc<Mirrors>,
    /// Outlier detection and circuit-breaker limits of every backend.
    pub health: Arc<Health>,
    /// Local rate-limit buckets.
    pub rate_limits: RateLimiters,
    /// Where global rate limits are counted (Redis), if anywhere.
    pub global: Option<GlobalLimiter>,
    /// Backend timeouts where a route sets none.
    pub backend: BackendTimeouts,
    /// Proxies in front of Loom whose `X-Forwarded-*` headers are trusted (see `forwarded`).
    pub trusted_hops: usize,
    /// Endpoint DNS names, resolved and cached.
    pub dns: Resolver,
}

impl Shared {
    /// What serving `handle` with `options` shares, with fresh metrics, health and limits.
    /// Fails when `options.redis` is not a usable Redis address.
    pub fn new(handle: SnapshotHandle, options: &crate::ServeOptions) -> std::io::Result<Self> {
        let metrics = Metrics::new();
        Ok(Shared {
            handle,
            metrics: metrics.clone(),
            mirrors: Arc::default(),
            health: Arc::new(Health::new(metrics)),
            rate_limits: RateLimiters::default(),
            global: options
                .redis
                .clone()
                .map(GlobalLimiter::new)
                .transpose()
                .map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                })?,
            backend: options.backend,
            trusted_hops: options.trusted_hops,
            dns: Resolver::default(),
        })
    }
}

/// Serves one port of one Gateway.
pub struct LoomProxy {
    shared: Arc<Shared>,
    gateway: GatewayName,
    port: u16,
    tls: bool,
    transport: Transport,
    /// `Alt-Svc` of an HTTPS port that also serves HTTP/3.
    alt_svc: HeaderValue,
}

impl LoomProxy {
    /// A proxy for a Gateway's port (`tls` for HTTPS listeners).
    pub fn new(shared: Arc<Shared>, gateway: GatewayName, port: u16, tls: bool) -> Self {
        LoomProxy {
            shared,
            gateway,
            port,
            tls,
            transport: Transport::Tcp,
            alt_svc: HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))
                .unwrap_or(HeaderValue::from_static("clear")),
        }
    }

    /// The proxy of the port's HTTP/3 listeners (requests over QUIC).
    pub fn over_quic(mut self) -> Self {
        self.transport = Transport::Quic;
        self
    }
}

/// Says why a circuit breaker turned a request away (Envoy says `x-envoy-overloaded`).
const OVERLOADED: HeaderName = HeaderName::from_static("x-loom-overloaded");

impl LoomProxy {
    /// Records what came of the current attempt for outlier detection.
    fn record(&self, ctx: &RequestCtx, outcome: Outcome) {
        if let (Some(routed), Some(health)) = (&ctx.route, &ctx.health)
            && let Some(endpoint) = routed.backend.endpoints.get(ctx.endpoint)
        {
            self.shared
                .health
                .record(health, &routed.backend, endpoint, outcome);
        }
    }
}

/// Whether the request as received carried a Content-Length (see [`framing::framing_error`]).
fn had_content_length(session: &Session) -> bool {
    match session.as_ref() {
        pingora::protocols::http::ServerSession::H1(h1) => {
            framing::raw_has_content_length(h1.get_headers_raw_bytes().as_ref())
        }
        _ => session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH),
    }
}

/// What the access log says of a request that ended in `e` after a response with status
/// `code` (0: none) was started.
fn outcome(e: &Error, code: u16) -> String {
    let incomplete = match (code, e.esource(), e.etype()) {
        (0, ..) => "",
        (_, ErrorSource::Upstream, ConnectionClosed | ReadError | ReadTimedout) => {
            "incomplete: upstream closed mid-body; "
        }
        (_, ErrorSource::Downstream, _) => "incomplete: client went away; ",
        _ => "incomplete: response cut short; ",
    };
    format!("{incomplete}{e}")
}

/// Answers with what a WASMPlugin said (its own answer, or its failure).
async fn respond_plugin(
    session: &mut Session,
    ctx: &mut RequestCtx,
    answer: crate::plugin::PluginAnswer,
) -> Result<()> {
    let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 2))?;
    for (n, v) in std::mem::take(&mut ctx.response_headers)
        .into_iter()
        .chain(answer.headers)
    {
        resp.append_header(n, v)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, answer.body.len())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(answer.body), true).await
}

async fn respond(
    session: &mut Session,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 1))?;
    for (n, v) in headers {
        resp.insert_header(n.clone(), v.clone())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::new()), true).await
}

#[async_trait]
impl ProxyHttp for LoomProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(Instant::now())
    }

    /// None. Pingora's default is its response compression module, disabled (level 0): Loom
    /// compresses nothing, and the module cost every request three allocations and two boxed
    /// filter calls that did nothing (bench/RESULTS.md, #16).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        frontend: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Ok(on_head) = frontend.downcast::<downstream::OnRequestHead>() {
            (on_head.0)();
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let refused = framing::framing_error(session.req_header(), || had_content_length(session))
            .or_else(|| framing::host_error(session.req_header()));
        if let Some(status) = refused {
            // Before the answer, so that it says `Connection: close` (Pingora writes the
            // Connection header from the keep-alive setting).
            session.set_keepalive(None);
            respond(
                session,
                status,
                &[(http::header::CONNECTION, HeaderValue::from_static("close"))],
            )
            .await?;
            return Ok(true);
        }
        if let Some(length) = framing::normalized_content_length(session.req_header()) {
            session
                .req_header_mut()
                .insert_header(http::header::CONTENT_LENGTH, length)?;
        }
        let published = self.shared.handle.load();
        let Some(port) = published.snapshot.port(&self.gateway, self.port) else {
            respond(session, StatusCode::NOT_FOUND, &[]).await?;
            return Ok(true);
        };
        let downstream = Downstream::of(session, self.tls);
        let scheme = downstream.scheme;
        let header = session.req_header();
        let request = HttpRequest {
            scheme: downstream.scheme,
            sni: downstream.sni,
            method: &header.method,
            uri: &header.uri,
            headers: &header.headers,
        };
        let origin = header.headers.get(http::header::ORIGIN).cloned();
        let decision = port.decide_over(self.transport, &request, fastrand::u64(..));
        // An HTTPS response for a host an HTTP/3 listener of the port serves advertises it
        // (Alt-Svc, RFC 7838), so clients can move to HTTP/3.
        if self.tls
            && self.transport == Transport::Tcp
            && port.serves_http3(PortSnapshot::authority(&request).unwrap_or(""))
        {
            ctx.response_headers
                .push((http::header::ALT_SVC, self.alt_svc.clone()));
        }
        if let Some(m) = decision.matched() {
            ctx.matched = Some(m.rule.clone());
            if let Some(limit) = &m.limit {
                let client = || {
                    let peer = session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| a.ip());
                    forwarded::client_address(session.req_header(), peer, self.shared.trusted_hops)
                };
                let counted = ratelimit::count(
                    &self.shared,
                    &published,
                    limit,
                    &session.req_header().headers,
                    client,
                )
                .await;
                match counted {
                    ratelimit::Counted::Allowed(headers) => {
                        ctx.response_headers.extend(headers.into_iter().flatten())
                    }
                    ratelimit::Counted::Limited(mut headers) => {
                        self.shared
                            .metrics
                            .rate_limited(&limit.rate_limit.policy, &limit.rate_limit.route);
                        headers.append(&mut ctx.response_headers);
                        respond(session, StatusCode::TOO_MANY_REQUESTS, &headers).await?;
                        return Ok(true);
                    }
                    ratelimit::Counted::Unavailable => {
                        ctx.response_headers
                            .push((OVERLOADED, HeaderValue::from_static("rate-limit-store")));
                        respond(
                            session,
                            StatusCode::SERVICE_UNAVAILABLE,
                            &ctx.response_headers,
                        )
                        .await?;
                        return Ok(true);
                    }
                }
            }
        }
        let plugins = decision.matched().and_then(|m| {
            let p = m.rule.plugins.clone()?;
            Some((p, m.rule.clone()))
        });
        if let Some((p, rule)) = &plugins {
            let peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            ctx.client =
                forwarded::client_address(session.req_header(), peer, self.shared.trusted_hops);
            // AUTHN, then AUTHZ: before the route's own filters.
            if !p.before_filters.is_empty()
                && let Some(answer) = self.shared.handle.plugins().on_request(
                    &p.before_filters,
                    session.req_header_mut(),
                    ctx.client.as_deref(),
                    rule,
                    &self.shared.metrics,
                )
            {
                respond_plugin(session, ctx, answer).await?;
                return Ok(true);
            }
        }
        match decision {
            Decision::Forward(f) => {
                let health = self.shared.health.backend(f.backend);
                if let Some(breaker) = &f.backend.circuit_breaker {
                    match health.admit(breaker, self.shared.backend.connect).await {
                        Ok(admission) => ctx.admission = Some(admission),
                        Err(why) => {
                            ctx.response_headers
                                .push((OVERLOADED, HeaderValue::from_static(why.as_str())));
                            respond(
                                session,
                                StatusCode::SERVICE_UNAVAILABLE,
                                &ctx.response_headers,
                            )
                            .await?;
                            return Ok(true);
                        }
                    }
                }
                ctx.health = Some(health);
                for m in &f.mirrors {
                    self.shared
                        .mirrors
                        .send(m, session.req_header(), &f.path_and_query);
                }
                let peer = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip());
                let req = session.req_header_mut();
                forwarded::set_forwarded(req, peer, scheme, self.shared.trusted_hops)?;
                if req.uri.path_and_query().map(|p| p.as_str()) != Some(f.path_and_query.as_str()) {
                    let uri = f
                        .path_and_query
                        .parse()
                        .or_err(InvalidHTTPHeader, "rewritten path")?;
                    req.set_uri(uri);
                }
                f.apply_request_headers(&mut headers::Request(req));
                // Unspecified phase: after the route's filters, before the backend.
                if let Some((p, rule)) = &plugins
                    && !p.after_filters.is_empty()
                    && let Some(answer) = self.shared.handle.plugins().on_request(
                        &p.after_filters,
                        req,
                        ctx.client.as_deref(),
                        rule,
                        &self.shared.metrics,
                    )
                {
                    respond_plugin(session, ctx, answer).await?;
                    return Ok(true);
                }
                if f.retry.is_some() {
                    // Keep the request body so a retry can send it again.
                    session.as_mut().enable_retry_buffering();
                }
                ctx.route = Some(Routed {
                    client_cert: f.backend.tls.as_ref().and_then(|_| {
                        published
                            .snapshot
                            .gateways
                            .get(&self.gateway)
                            .and_then(|g| g.backend_client_certificate.clone())
                    }),
                    rule: f.matched.rule.clone(),
                    backend_index: f.backend_index,
                    backend: f.backend.clone(),
                    origin,
                    timeouts: f.timeouts,
                });
                Ok(false)
            }
            Decision::Redirect {
                status, location, ..
            } => {
                let location = HeaderValue::from_str(&location)
                    .or_err(InvalidHTTPHeader, "redirect location")?;
                ctx.response_headers
                    .push((http::header::LOCATION, location));
                respond(session, status, &ctx.response_headers).await?;
                Ok(true)
            }
            Decision::Respond(r) => {
                ctx.response_headers.extend(r.headers);
                respond(session, r.status, &ctx.response_headers).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(routed) = &ctx.route else {
            return Error::e_explain(InternalError, "no route chosen");
        };
        let endpoints = &routed.backend.endpoints;
        if endpoints.is_empty() {
            return Error::e_explain(
                HTTPStatus(503),
                format!("{} has no ready endpoints", routed.backend.object),
            );
        }
        let Some(health) = &ctx.health else {
            return Error::e_explain(InternalError, "no backend state");
        };
        ctx.endpoint = self
            .shared
            .health
            .pick(health, endpoints, fastrand::usize(..));
        let endpoint = &endpoints[ctx.endpoint];
        // The compiler refuses endpoints that do not parse; this only guards against a
        // snapshot built some other way.
        let address = match Endpoint::parse(endpoint) {
            Ok(Endpoint::Socket(address)) => address,
            Ok(Endpoint::Dns { host, port }) => self
                .shared
                .dns
                .resolve(host, port, fastrand::usize(..))
                .await
                .or_else(|e| Error::e_explain(HTTPStatus(502), format!("{endpoint}: {e}")))?,
            Err(e) => return Error::e_explain(HTTPStatus(502), e.to_string()),
        };
        let mut peer = peer::http_peer(&routed.backend, address, routed.client_cert.as_ref())?;
        ctx.tries += 1;
        ctx.retrying = false;
        let backoff_ms = routed.rule.retry.as_ref().and_then(|r| r.backoff_ms);
        let mut now = Instant::now();
        if let Some(backoff) =
            timeouts::backoff(backoff_ms, &routed.timeouts, ctx.started, now, ctx.tries)
        {
            tokio::time::sleep(backoff).await;
            now = Instant::now();
        }
        match timeouts::attempt_timeout(&routed.timeouts, ctx.started, now) {
            Err(timeouts::RequestTimedOut) => {
                return Error::e_explain(HTTPStatus(504), "request timeout");
            }
            Ok(timeouts::Budget::Limit(timeout)) => peer::set_timeout(&mut peer, timeout),
            Ok(timeouts::Budget::Default) => self.shared.backend.apply(&mut peer),
            Ok(timeouts::Budget::Unlimited) => self.shared.backend.apply_connect(&mut peer),
        }
        Ok(Box::new(peer))
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream_response.status.is_informational() {
            // 100 Continue, 103 Early Hints: the final response decides.
            return Ok(());
        }
        let code = upstream_response.status.as_u16();
        let outcome = if code >= 500 {
            Outcome::ServerError
        } else {
            Outcome::Success
        };
        self.record(ctx, outcome);
        let Some(retry) = ctx.route.as_ref().and_then(|r| r.rule.retry.as_ref()) else {
            return Ok(());
        };
        // `attempts` counts retries: the first try plus at most `attempts` more.
        if retry.codes.contains(&code) && ctx.tries <= retry.attempts {
            ctx.retrying = true;
            let mut e = Error::explain(
                HTTPStatus(code),
                "retrying: the retry policy names this status",
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        tracing::warn!("{e}");
        self.record(ctx, Outcome::GatewayFailure);
        // A connection that could not be made is retried while the policy has attempts left.
        if let Some(retry) = ctx.route.as_ref().and_then(|r| r.rule.retry.as_ref())
            && ctx.tries <= retry.attempts
        {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        // A timeout or reset after connecting counts only under a CircuitBreakerPolicy (Loom's
        // passive health without one counts connect failures alone), and not on a reused
        // connection (a backend may close an idle pooled connection at any time).
        let breaker = ctx
            .route
            .as_ref()
            .is_some_and(|r| r.backend.circuit_breaker.is_some());
        if breaker
            && !client_reused
            && e.esource() == &ErrorSource::Upstream
            && matches!(
                e.etype(),
                ConnectTimedout | ReadTimedout | WriteTimedout | ConnectionClosed | ReadError
            )
        {
            self.record(ctx, Outcome::GatewayFailure);
        }
        if session.response_written().is_some() {
            // Part of the response is on its way to the client: another attempt's response
            // cannot replace it.
            e.set_retry(false);
            return e;
        }
        let truncated = session.as_ref().retry_buffer_truncated();
        // An attempt that ran out of time counts as a 504 for the retry policy.
        let timed_out = matches!(e.etype(), ConnectTimedout | ReadTimedout | WriteTimedout)
            && ctx
                .route
                .as_ref()
                .and_then(|r| r.rule.retry.as_ref())
                .is_some_and(|r| r.codes.contains(&504) && ctx.tries <= r.attempts);
        if ctx.retrying || timed_out {
            e.set_retry(!truncated);
        } else if !session.req_header().method.is_idempotent() || truncated {
            e.set_retry(false);
        } else {
            // Pingora's default: retry only a failure on a reused (possibly stale) connection.
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        _error: &Error,
        _context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        // A retry the route's policy asked for is the policy working, not a warning.
        ctx.retrying
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> pingora::proxy::FailToProxy {
        let code = match e.etype() {
            HTTPStatus(code) => *code,
            ConnectTimedout | ReadTimedout | WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            // Pingora's error response, with the headers Loom owes every response of the
            // request (RateLimit state, Alt-Svc): a 502 still counted against the client's
            // quota says so.
            let mut resp = pingora::protocols::http::ServerSession::generate_error(code);
            for (name, value) in std::mem::take(&mut ctx.response_headers) {
                let _ = resp.insert_header(name, value);
            }
            if let Err(e) = session.write_error_response(resp, Bytes::new()).await {
                tracing::debug!("could not answer {code}: {e}");
            }
        }
        pingora::proxy::FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        for (name, value) in std::mem::take(&mut ctx.response_headers) {
            upstream_response.insert_header(name, value)?;
        }
        if let Some(r) = &ctx.route {
            r.rule.apply_response_headers(
                r.backend_index,
                r.origin.as_ref(),
                &mut headers::Response(upstream_response),
            );
            if let Some(p) = &r.rule.plugins {
                let view = crate::plugin::RequestView {
                    header: session.req_header(),
                    client: ctx.client.as_deref(),
                    rule: &r.rule,
                };
                self.shared
                    .handle
                    .plugins()
                    .on_response(
                        p.response_order().cloned(),
                        view,
                        upstream_response,
                        ctx.started.elapsed(),
                        &self.shared.metrics,
                    )
                    .or_else(|why| Error::e_explain(HTTPStatus(500), why))?;
            }
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let code = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let req = session.req_header();
        self.shared.metrics.request(
            ctx.matched.as_ref(),
            &req.method,
            code,
            elapsed.as_secs_f64(),
        );
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        // One event per request with a field per fact: `key=value` pairs in text logs, one
        // JSON object per line with `--log-format json`.
        let dash = |s: Option<String>| s.unwrap_or_else(|| "-".to_owned());
        let name = |k: &loom_core::input::ObjectKey| format!("{}/{}", k.namespace, k.name);
        let route = ctx.matched.as_ref().map(|r| &r.route);
        let backend = ctx.route.as_ref().map(|r| &r.backend.object);
        // The endpoint of the last attempt, if one was made.
        let endpoint = ctx
            .route
            .as_ref()
            .filter(|_| ctx.tries > 0)
            .and_then(|r| r.backend.endpoints.get(ctx.endpoint).cloned());
        tracing::info!(
            target: "access",
            client = %dash(session.client_addr().map(|a| a.to_string())),
            method = %req.method,
            host = req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("-"),
            path = %req.uri,
            status = code,
            route_kind = %route.map_or("-", |r| r.kind.as_str()),
            route = %dash(route.map(name)),
            rule = %dash(ctx.matched.as_ref().map(|r| r.rule_index.to_string())),
            backend_kind = %backend.map_or("-", |b| b.kind.as_str()),
            backend = %dash(backend.map(name)),
            endpoint = %dash(endpoint),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            bytes = session.body_bytes_sent(),
            error = error.map(|e| outcome(e, code)).as_deref(),
        );
    }
}
