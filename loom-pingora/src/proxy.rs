//! The HTTP proxy: Pingora's `ProxyHttp` phases driven by loom-core's decision API.
//!
//! ```text
//! request_filter   load the published snapshot once; decide; answer locally (404, 421,
//!                  redirects, CORS preflight, 500 for invalid backends) or apply the request
//!                  filters in place and remember the chosen backend
//! upstream_peer    pick a ready endpoint of that backend; h2c for kubernetes.io/h2c
//! response_filter  response header filters and CORS headers
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
    ) -> Self {
        LoomProxy {
            handle,
            gateway,
            port,
            tls,
            metrics,
            mirrors,
        }
    }
}

/// What a request carries from one phase to the next.
pub struct RequestCtx {
    started: Instant,
    route: Option<Routed>,
    /// `namespace/name` of the route and the rule index, for metrics (`-` when none matched).
    label: Option<(String, String)>,
}

struct Routed {
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
/// would leave the backend to agree with Loom on framing). Pingora itself refuses conflicting
/// Content-Lengths and a non-chunked final coding (400), and for a request with both
/// Content-Length and Transfer-Encoding it drops the Content-Length before the request reaches
/// Loom and closes the connection afterwards (RFC 9112 §6.3), so the backend never sees both.
///
/// Requests with more than [`MAX_HEADERS`] header lines or more than [`MAX_HEADER_BYTES`] of
/// request line and headers get 431 (Pingora's own limits are far larger: about 1 MB).
fn framing_error(req: &pingora::http::RequestHeader) -> Option<StatusCode> {
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
        [only] if only.eq_ignore_ascii_case(b"chunked") => None,
        _ => Some(StatusCode::NOT_IMPLEMENTED),
    }
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
            label: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(status) = framing_error(session.req_header()) {
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
                ctx.route = Some(Routed {
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
        let endpoint = &endpoints[fastrand::usize(..endpoints.len())];
        let mut peer = HttpPeer::new(endpoint.as_str(), false, String::new());
        if routed.backend.protocol == AppProtocol::H2c {
            // Prior knowledge: the backend speaks HTTP/2 in cleartext.
            peer.options.set_http_version(2, 2);
        }
        let backend_timeout = routed
            .timeouts
            .backend_request_ms
            .or(routed.timeouts.request_ms);
        if let Some(ms) = backend_timeout {
            let d = Duration::from_millis(ms);
            peer.options.connection_timeout = Some(d);
            peer.options.read_timeout = Some(d);
            peer.options.write_timeout = Some(d);
        }
        Ok(Box::new(peer))
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
