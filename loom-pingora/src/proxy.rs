//! The HTTP proxy: Pingora's `ProxyHttp` phases driven by loom-core's decision API.
//!
//! ```text
//! request_filter   load the published snapshot once; decide; answer locally (404, 421,
//!                  redirects, CORS preflight, 500 for invalid backends) or apply the request
//!                  filters in place and remember the chosen backend
//! upstream_peer    pick a ready endpoint of that backend; h2c for kubernetes.io/h2c; the
//!                  attempt's timeout (backendRequest, capped by what is left of request)
//! upstream_response_filter
//!                  a status the rule's retry policy names, with attempts left: drop it
//!                  and try again (after the backoff), else pass it on
//! response_filter  response header filters and CORS headers
//! fail_to_proxy    timeouts answer 504, other backend failures 502
//! logging          metrics and the access log
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use loom_core::snapshot::{
    AppProtocol, BackendTarget, Decision, GatewayName, HttpRequest, HttpRule, Timeouts,
};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use crate::handle::SnapshotHandle;
use crate::headers;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::tls::ClientSni;

/// Serves one port of one Gateway.
pub struct LoomProxy {
    handle: SnapshotHandle,
    gateway: GatewayName,
    port: u16,
    tls: bool,
    metrics: Arc<Metrics>,
    mirrors: Arc<Mirrors>,
    health: Arc<Health>,
}

impl LoomProxy {
    /// A proxy for a Gateway's port (`tls` for HTTPS listeners).
    pub fn new(
        handle: SnapshotHandle,
        gateway: GatewayName,
        port: u16,
        tls: bool,
        metrics: Arc<Metrics>,
        mirrors: Arc<Mirrors>,
        health: Arc<Health>,
    ) -> Self {
        LoomProxy {
            handle,
            gateway,
            port,
            tls,
            metrics,
            mirrors,
            health,
        }
    }
}

/// What a request carries from one phase to the next.
pub struct RequestCtx {
    started: Instant,
    route: Option<Routed>,
    /// Backend attempts made so far.
    tries: u32,
    /// The endpoint of the current attempt (an index into the backend's endpoints).
    endpoint: usize,
    /// The last attempt's response was dropped to retry it.
    retrying: bool,
    /// `namespace/name` of the route and the rule index, for metrics (`-` when none matched).
    label: Option<(String, String)>,
}

struct Routed {
    /// The Gateway's client certificate for TLS backends.
    client_cert: Option<loom_core::snapshot::Certificate>,
    rule: Arc<HttpRule>,
    backend_index: usize,
    backend: Arc<BackendTarget>,
    origin: Option<HeaderValue>,
    timeouts: Timeouts,
}

/// Header lines a request may carry.
pub const MAX_HEADERS: usize = 100;
/// Bytes of request target and headers a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Request framing Loom refuses: any transfer coding other than a lone `chunked` (RFC 9112
/// §6.1: a server SHOULD answer 501 to a transfer coding it does not understand; forwarding it
/// would leave the backend to agree with Loom on framing), and both Content-Length and
/// Transfer-Encoding (400: "a server MAY reject a request that contains both … as such a
/// message might indicate an attempt to perform request smuggling", RFC 9112 §6.1). Pingora
/// itself refuses conflicting Content-Lengths and a non-chunked final coding (400).
///
/// Requests with more than [`MAX_HEADERS`] header lines or more than [`MAX_HEADER_BYTES`] of
/// request line and headers get 431 (Pingora's own limits are far larger: about 1 MB).
fn framing_error(session: &Session) -> Option<StatusCode> {
    let req = session.req_header();
    if req.headers.len() > MAX_HEADERS {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let size: usize = req.raw_path().len()
        + req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > MAX_HEADER_BYTES {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let te = req.headers.get_all(http::header::TRANSFER_ENCODING);
    let codings: Vec<&[u8]> = te
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    match codings.as_slice() {
        [] => None,
        [only] if only.eq_ignore_ascii_case(b"chunked") => {
            has_content_length(session).then_some(StatusCode::BAD_REQUEST)
        }
        _ => Some(StatusCode::NOT_IMPLEMENTED),
    }
}

/// Whether the request as received carried a Content-Length. Pingora drops Content-Length
/// from an HTTP/1 request that also has Transfer-Encoding before Loom sees the headers, so
/// the raw header block is read instead (only for requests with Transfer-Encoding).
fn has_content_length(session: &Session) -> bool {
    let pingora::protocols::http::ServerSession::H1(h1) = session.as_ref() else {
        return session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH);
    };
    h1.get_headers_raw_bytes()
        .split(|b| *b == b'\n')
        .skip(1) // the request line
        .filter_map(|line| line.split(|b| *b == b':').next())
        .any(|name| name.trim_ascii().eq_ignore_ascii_case(b"content-length"))
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
        RequestCtx {
            started: Instant::now(),
            route: None,
            tries: 0,
            endpoint: 0,
            retrying: false,
            label: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(status) = framing_error(session) {
            respond(
                session,
                status,
                &[(http::header::CONNECTION, HeaderValue::from_static("close"))],
            )
            .await?;
            session.set_keepalive(None);
            return Ok(true);
        }
        let published = self.handle.load();
        let Some(port) = published.snapshot.port(&self.gateway, self.port) else {
            respond(session, StatusCode::NOT_FOUND, &[]).await?;
            return Ok(true);
        };
        let sni = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<ClientSni>())
            .and_then(|s| s.0.clone());
        let header = session.req_header();
        let request = HttpRequest {
            scheme: if self.tls { "https" } else { "http" },
            sni: sni.as_deref(),
            method: &header.method,
            uri: &header.uri,
            headers: &header.headers,
        };
        let origin = header.headers.get(http::header::ORIGIN).cloned();
        let decision = port.decide(&request, fastrand::u64(..));
        match decision {
            Decision::Forward(f) => {
                ctx.label = Some((
                    f.matched.rule.route.to_string(),
                    f.matched.rule.rule_index.to_string(),
                ));
                for m in &f.mirrors {
                    self.mirrors
                        .send(m, session.req_header(), &f.path_and_query);
                }
                let req = session.req_header_mut();
                if req.uri.path_and_query().map(|p| p.as_str()) != Some(f.path_and_query.as_str()) {
                    let uri = f
                        .path_and_query
                        .parse()
                        .or_err(InvalidHTTPHeader, "rewritten path")?;
                    req.set_uri(uri);
                }
                f.apply_request_headers(&mut headers::Request(req));
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
                status,
                location,
                matched,
            } => {
                ctx.label = Some((
                    matched.rule.route.to_string(),
                    matched.rule.rule_index.to_string(),
                ));
                let location = HeaderValue::from_str(&location)
                    .or_err(InvalidHTTPHeader, "redirect location")?;
                respond(session, status, &[(http::header::LOCATION, location)]).await?;
                Ok(true)
            }
            Decision::Respond(r) => {
                if let Some(m) = &r.matched {
                    ctx.label = Some((m.rule.route.to_string(), m.rule.rule_index.to_string()));
                }
                respond(session, r.status, &r.headers).await?;
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
        ctx.endpoint = self
            .health
            .pick(endpoints, fastrand::usize(..), Instant::now());
        let endpoint = &endpoints[ctx.endpoint];
        let mut peer = match &routed.backend.tls {
            None => HttpPeer::new(endpoint.as_str(), false, String::new()),
            Some(tls) => {
                if !tls.subject_alt_names.is_empty() {
                    // Pingora verifies the certificate against the SNI only; rather than
                    // accept a certificate the policy's subjectAltNames would refuse, fail.
                    return Error::e_explain(
                        HTTPStatus(502),
                        format!(
                            "{}: subjectAltNames validation is not supported",
                            tls.policy
                        ),
                    );
                }
                let mut peer = HttpPeer::new(endpoint.as_str(), true, tls.hostname.clone());
                peer.options.verify_cert = true;
                peer.options.verify_hostname = true;
                let trust = crate::backend_tls::trust(tls).or_else(|e| {
                    Error::e_explain(InternalError, format!("{}: CA: {e}", tls.policy))
                })?;
                peer.options.ca = trust.ca;
                peer.group_key = trust.group;
                if let Some(c) = &routed.client_cert {
                    peer.client_cert_key =
                        Some(crate::backend_tls::client_cert(c).or_else(|e| {
                            Error::e_explain(InternalError, format!("client certificate: {e}"))
                        })?);
                }
                peer
            }
        };
        if routed.backend.protocol == AppProtocol::H2c {
            if routed.backend.tls.is_some() {
                peer.options.alpn = pingora::protocols::ALPN::H2;
            } else {
                // Prior knowledge: the backend speaks HTTP/2 in cleartext.
                peer.options.set_http_version(2, 2);
            }
        }
        ctx.tries += 1;
        ctx.retrying = false;
        // "request": the whole request, every attempt included; "backendRequest": each
        // attempt (GEP-1742). Pingora's timeouts are per connect/read/write, so an attempt
        // gets the smaller of the two, measured from when it starts.
        let started = ctx.started;
        let left = || {
            let request = routed.timeouts.request_ms.map(Duration::from_millis);
            request.map(|r| r.saturating_sub(started.elapsed()))
        };
        if ctx.tries > 1
            && let Some(backoff) = routed.rule.retry.as_ref().and_then(|r| r.backoff_ms)
        {
            let backoff = Duration::from_millis(backoff);
            tokio::time::sleep(left().map_or(backoff, |l| l.min(backoff))).await;
        }
        let left = left();
        if left.is_some_and(|l| l.is_zero()) {
            return Error::e_explain(HTTPStatus(504), "request timeout");
        }
        let attempt = routed
            .timeouts
            .backend_request_ms
            .map(Duration::from_millis);
        let timeout = match (attempt, left) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        };
        if let Some(d) = timeout {
            peer.options.connection_timeout = Some(d);
            peer.options.total_connection_timeout = Some(d);
            peer.options.read_timeout = Some(d);
            peer.options.write_timeout = Some(d);
        }
        Ok(Box::new(peer))
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let code = upstream_response.status.as_u16();
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
        if let Some(endpoint) = ctx
            .route
            .as_ref()
            .and_then(|r| r.backend.endpoints.get(ctx.endpoint))
        {
            log::warn!(
                "{endpoint}: {e}; left out for {:?}",
                crate::health::EJECT_FOR
            );
            self.health.eject(endpoint, Instant::now());
        }
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
        _ctx: &mut RequestCtx,
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
        if code > 0
            && let Err(e) = session.respond_error(code).await
        {
            log::debug!("could not answer {code}: {e}");
        }
        pingora::proxy::FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(r) = &ctx.route {
            r.rule.apply_response_headers(
                r.backend_index,
                r.origin.as_ref(),
                &mut headers::Response(upstream_response),
            );
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let code = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let (route, rule) = ctx
            .label
            .as_ref()
            .map_or(("-", "-"), |(r, i)| (r.as_str(), i.as_str()));
        self.metrics
            .request(route, rule, code, elapsed.as_secs_f64());
        let req = session.req_header();
        log::info!(
            target: "access",
            "{} {} {} {} {} route={} rule={} backend={} {:.3}ms{}",
            session.client_addr().map(|a| a.to_string()).unwrap_or_default(),
            req.method,
            req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("-"),
            req.uri,
            code,
            route,
            rule,
            ctx.route.as_ref().map_or_else(|| "-".to_owned(), |r| r.backend.object.to_string()),
            elapsed.as_secs_f64() * 1000.0,
            error.map(|e| format!(" error={e}")).unwrap_or_default(),
        );
    }
}
