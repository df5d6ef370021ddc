//! HTTP/3: QUIC (quinn) on a UDP port, HTTP/3 framing (h3), and every request through the
//! same pipeline as HTTP/1 and HTTP/2: each request stream becomes a Pingora custom session
//! (`protocols::http::custom`) handed to the port's `HttpProxy<LoomProxy>`. Nothing of the
//! request path is repeated here.
//!
//! ```text
//! quic_loop   accepts QUIC connections (address validation with a Retry under load, a cap
//!             on connections per listener), one task per connection
//! connection  the h3 connection: one task per request stream, SNI from the handshake
//! H3Session   custom::server::Session over an h3 request stream: request head and body in,
//!             response head, body and trailers out
//! ```
//!
//! Limits: at most [`MAX_STREAMS`] concurrent request streams per connection, request heads
//! of at most [`MAX_FIELD_SECTION`] bytes, the keep-alive idle timeout as QUIC's idle
//! timeout. QUIC itself (quinn) sends at most three times what an unvalidated address sent
//! (RFC 9000 §8.1).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use h3::server::RequestStream;
use http::{HeaderMap, HeaderName, HeaderValue, Version};
use pingora::apps::HttpServerApp;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::HttpTask;
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::custom::{self, CustomMessageWrite};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::tls::{SslDigest, SslDigestExtension};
use pingora::protocols::{Digest, TimingDigest};
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, OrErr, Result};
use tokio::sync::watch;

use crate::pipeline::downstream::ClientSni;

/// Concurrent request streams a client may open on one connection.
pub(crate) const MAX_STREAMS: u32 = 100;
/// The largest request head (QPACK-decoded field section), as for HTTP/1 and HTTP/2.
pub(crate) const MAX_FIELD_SECTION: u64 = 64 * 1024;
/// How much of a request body is kept for a retry (as Pingora keeps for HTTP/1 and HTTP/2).
const RETRY_BUFFER: usize = 64 * 1024;

type H3Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// The client limits of an HTTP/3 port that apply per connection, changed in place when the
/// port's ClientTrafficPolicy changes: new connections get the new values.
#[derive(Debug)]
pub(crate) struct Limits {
    max_connections: AtomicUsize,
    /// The head deadline, in milliseconds.
    head_timeout: AtomicU64,
}

impl Limits {
    pub(crate) fn new(max_connections: usize, head_timeout: Duration) -> Self {
        let limits = Limits {
            max_connections: AtomicUsize::new(0),
            head_timeout: AtomicU64::new(0),
        };
        limits.set(max_connections, head_timeout);
        limits
    }

    pub(crate) fn set(&self, max_connections: usize, head_timeout: Duration) {
        self.max_connections
            .store(max_connections, Ordering::Relaxed);
        let ms = u64::try_from(head_timeout.as_millis()).unwrap_or(u64::MAX);
        self.head_timeout.store(ms, Ordering::Relaxed);
    }

    fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    fn head_timeout(&self) -> Duration {
        Duration::from_millis(self.head_timeout.load(Ordering::Relaxed))
    }
}

/// The QUIC configuration of a port: its certificates by SNI (the rustls configuration of
/// the port's HTTP/3 listeners, TLS 1.3 and ALPN `h3`), stream limits and idle timeout.
pub(crate) fn server_config(
    tls: rustls::ServerConfig,
    idle: Duration,
) -> std::result::Result<quinn::ServerConfig, String> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| format!("QUIC TLS: {e}"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Flow control bounds what one connection may make Loom buffer (quinn's defaults let a
    // client pin over 100 MB with data Loom cannot read yet): 256 KiB per stream, 4 MiB per
    // connection; HTTP/3 needs 3 unidirectional streams (control, QPACK encoder, decoder).
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS.into())
        .max_concurrent_uni_streams(8u32.into())
        .stream_receive_window((256u32 * 1024).into())
        .receive_window((4u32 * 1024 * 1024).into())
        .datagram_receive_buffer_size(None)
        .max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    config.transport_config(Arc::new(transport));
    // A flood of Initial packets: at most 4096 connection attempts wait to be accepted, and
    // what they sent ahead is bounded (64 KiB each, 16 MiB in all) instead of quinn's 100 MiB.
    config
        .max_incoming(4096)
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(16 * 1024 * 1024);
    Ok(config)
}

/// Accepts QUIC connections on `endpoint` until `stopped`: then it takes no new connection
/// and lets the open ones finish. `max_connections` may change while it runs (a
/// ClientTrafficPolicy).
pub(crate) async fn quic_loop<A: HttpServerApp + Send + Sync + 'static>(
    endpoint: quinn::Endpoint,
    app: Arc<A>,
    limits: Arc<Limits>,
    mut stopped: watch::Receiver<bool>,
    shutdown: ShutdownWatch,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = stopped.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        let connections = open.load(Ordering::Relaxed);
        let max_connections = limits.max_connections();
        if connections >= max_connections {
            incoming.refuse();
            continue;
        }
        // Under load, a client proves it owns its address (a Retry round trip) before Loom
        // keeps any state for it.
        if connections >= max_connections / 2 && !incoming.remote_address_validated() {
            if incoming.may_retry() {
                let _ = incoming.retry();
            } else {
                incoming.ignore();
            }
            continue;
        }
        let counted = Counted::new(open.clone());
        let head_timeout = limits.head_timeout();
        let (app, shutdown, stopped) = (app.clone(), shutdown.clone(), stopped.clone());
        tokio::spawn(async move {
            let _counted = counted;
            connection(incoming, app, head_timeout, stopped, shutdown).await;
        });
    }
    // No new connections; the current ones were asked to finish (GOAWAY) and get a while to.
    endpoint.set_server_config(None);
    if tokio::time::timeout(DRAIN, endpoint.wait_idle())
        .await
        .is_err()
    {
        endpoint.close(0u32.into(), b"listener removed");
    }
}

/// How long the connections of a removed HTTP/3 listener may finish their requests.
const DRAIN: Duration = Duration::from_secs(30);

/// One open connection in a listener's count, for as long as it lives (panics included).
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Counted(open)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection<A: HttpServerApp + Send + Sync + 'static>(
    incoming: quinn::Incoming,
    app: Arc<A>,
    head_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
    mut shutdown: ShutdownWatch,
) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => return tracing::debug!("QUIC handshake: {e}"),
    };
    let sni = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.server_name)
        .map(|s| s.to_ascii_lowercase());
    let client = conn.remote_address();
    let local = conn.local_ip();
    let closed = conn.clone();
    let digest = Arc::new(digest(sni));
    let mut h3 = match h3::server::builder()
        .max_field_section_size(MAX_FIELD_SECTION)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(h3) => h3,
        Err(e) => return tracing::debug!("HTTP/3 connection from {client}: {e}"),
    };
    let mut going_away = false;
    loop {
        let next = tokio::select! {
            next = h3.accept() => next,
            // The listener is removed or Loom shuts down: GOAWAY, then the requests already
            // open finish (`accept` ends once they have).
            _ = stopped.changed(), if !going_away => {
                going_away = true;
                let _ = h3.shutdown(0).await;
                continue;
            }
            _ = shutdown.changed(), if !going_away => {
                going_away = true;
                let _ = h3.shutdown(0).await;
                continue;
            }
        };
        match next {
            Ok(Some(resolver)) => {
                let (app, digest, shutdown) = (app.clone(), digest.clone(), shutdown.clone());
                let closed = closed.clone();
                tokio::spawn(async move {
                    // The request head must arrive within the head deadline, as on TCP.
                    let (req, stream) = match tokio::time::timeout(
                        head_timeout,
                        resolver.resolve_request(),
                    )
                    .await
                    {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => return tracing::debug!("HTTP/3 request from {client}: {e}"),
                        Err(_) => {
                            return tracing::debug!("HTTP/3 request head from {client}: timed out");
                        }
                    };
                    let server = local.map(|ip| std::net::SocketAddr::new(ip, 0));
                    let Some(session) =
                        H3Session::new(req, stream, digest, client, server, closed).await
                    else {
                        return;
                    };
                    let session = ServerSession::new_custom(Box::new(session));
                    app.process_new_http(session, &shutdown).await;
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("HTTP/3 connection from {client}: {e}");
                break;
            }
        }
    }
}

/// What the pipeline learns of the TLS connection: the client's SNI, as the TCP TLS frontend
/// attaches it (`ClientSni`).
fn digest(sni: Option<String>) -> Digest {
    let mut ssl = SslDigest::new("TLS13", "TLSv1.3", None, None, vec![]);
    let mut extension = SslDigestExtension::default();
    extension.set(Arc::new(ClientSni(sni)));
    ssl.extension = extension;
    Digest {
        ssl_digest: Some(Arc::new(ssl)),
        timing_digest: vec![Some(TimingDigest::default())],
        proxy_digest: None,
        socket_digest: None,
    }
}

/// The hop-by-hop fields HTTP/3 forbids (RFC 9114 §4.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// One HTTP/3 request stream as a Pingora custom session.
pub(crate) struct H3Session {
    req: RequestHeader,
    stream: H3Stream,
    digest: Arc<Digest>,
    client: SocketAddr,
    server: Option<SocketAddr>,
    /// The first piece of the body, read before the pipeline starts (to know whether there
    /// is a body at all); `None` once handed out.
    first: Option<Bytes>,
    body_done: bool,
    body_read: usize,
    body_sent: usize,
    response: Option<ResponseHeader>,
    ended: bool,
    /// The request body's declared length, checked against what arrives.
    declared: Option<u64>,
    /// The stream failed before the pipeline started reading (the client reset it).
    failed: bool,
    /// The connection, to notice a client that went away.
    connection: quinn::Connection,
    retry: Option<BytesMut>,
    retry_truncated: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    drain_timeout: Option<Duration>,
}

impl H3Session {
    /// The session of a request stream; `None` when the request is malformed (RFC 9114
    /// §4.1.2: connection-specific fields) and was answered 400.
    async fn new(
        req: http::Request<()>,
        mut stream: H3Stream,
        digest: Arc<Digest>,
        client: std::net::SocketAddr,
        server: Option<std::net::SocketAddr>,
        connection: quinn::Connection,
    ) -> Option<Self> {
        let malformed = CONNECTION_SPECIFIC
            .iter()
            .any(|n| req.headers().contains_key(*n))
            || req
                .headers()
                .get(http::header::TE)
                .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        if malformed {
            let response = http::Response::builder()
                .status(http::StatusCode::BAD_REQUEST)
                .body(())
                .ok()?;
            let _ = stream.send_response(response).await;
            let _ = stream.finish().await;
            return None;
        }
        let (parts, ()) = req.into_parts();
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        let mut req = RequestHeader::from(parts);
        req.set_version(Version::HTTP_3);
        // The request as HTTP/1 and HTTP/2 requests reach the pipeline: origin-form target,
        // the authority in Host.
        if let Some(path) = req.uri.path_and_query().cloned() {
            let mut uri = http::uri::Parts::default();
            uri.path_and_query = Some(path);
            if let Ok(uri) = http::Uri::from_parts(uri) {
                req.set_uri(uri);
            }
        }
        if !req.headers.contains_key(http::header::HOST)
            && let Some(v) = authority.and_then(|a| HeaderValue::from_str(&a).ok())
        {
            let _ = req.insert_header(http::header::HOST, v);
        }
        // A body, if there is one, is usually in flight with the head: whether it is empty
        // decides the framing of the request the backend gets.
        let declared = req.headers.get(http::header::CONTENT_LENGTH).and_then(|v| {
            v.to_str()
                .ok()?
                .split(',')
                .next()?
                .trim()
                .parse::<u64>()
                .ok()
        });
        let mut first = None;
        let mut body_done = false;
        let mut failed = false;
        if declared == Some(0) {
            body_done = true;
        } else if let std::task::Poll::Ready(r) =
            futures::poll!(std::future::poll_fn(|cx| stream.poll_recv_data(cx)))
        {
            match r {
                Ok(Some(mut buf)) => first = Some(buf.copy_to_bytes(buf.remaining())),
                Ok(None) => body_done = true,
                Err(_) => failed = true,
            }
        }
        Some(H3Session {
            req,
            stream,
            digest,
            client: SocketAddr::Inet(client),
            server: server.map(SocketAddr::Inet),
            first,
            body_done,
            body_read: 0,
            body_sent: 0,
            response: None,
            ended: false,
            declared,
            failed,
            connection,
            retry: None,
            retry_truncated: false,
            read_timeout: None,
            write_timeout: None,
            drain_timeout: None,
        })
    }

    async fn read_next(&mut self) -> Result<Option<Bytes>> {
        if self.failed {
            return Error::e_explain(ErrorType::ReadError, "HTTP/3 request stream reset");
        }
        let next = match self.first.take() {
            Some(first) => Some(first),
            None if self.body_done => return Ok(None),
            None => match self.stream.recv_data().await {
                Ok(Some(mut buf)) => Some(buf.copy_to_bytes(buf.remaining())),
                Ok(None) => {
                    self.body_done = true;
                    None
                }
                Err(e) => {
                    self.failed = true;
                    return Error::e_explain(
                        ErrorType::ReadError,
                        format!("HTTP/3 request body: {e}"),
                    );
                }
            },
        };
        // A body longer or shorter than its Content-Length is malformed (RFC 9114 §4.1.2).
        let seen = self.body_read as u64 + next.as_ref().map_or(0, |b| b.len() as u64);
        if let Some(declared) = self.declared
            && (seen > declared || (next.is_none() && seen != declared))
        {
            self.failed = true;
            self.stream.stop_sending(h3::error::Code::H3_MESSAGE_ERROR);
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                format!("HTTP/3 request body of {seen}+ bytes, Content-Length {declared}"),
            );
        }
        Ok(next)
    }

    async fn write_header(&mut self, mut resp: ResponseHeader, end: bool) -> Result<()> {
        if self.ended || self.response.is_some() || resp.status.is_informational() {
            // One final response per stream; 1xx are not forwarded (as for HTTP/2).
            return Ok(());
        }
        let _ = resp.insert_header(
            http::header::DATE,
            pingora::protocols::http::date::get_cached_date(),
        );
        for name in CONNECTION_SPECIFIC {
            resp.remove_header(&HeaderName::from_static(name));
        }
        let response = http::Response::from_parts(resp.as_owned_parts(), ());
        self.stream
            .send_response(response)
            .await
            .or_err(ErrorType::WriteError, "writing the HTTP/3 response head")?;
        self.response = Some(resp);
        if end {
            self.finish_stream().await?;
        }
        Ok(())
    }

    async fn write_data(&mut self, data: Bytes, end: bool) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        if !data.is_empty() {
            self.body_sent += data.len();
            let send = self.stream.send_data(data);
            match self.write_timeout {
                Some(t) => tokio::time::timeout(t, send)
                    .await
                    .or_err(ErrorType::WriteTimedout, "writing the HTTP/3 response body")?,
                None => send.await,
            }
            .or_err(ErrorType::WriteError, "writing the HTTP/3 response body")?;
        }
        if end {
            self.finish_stream().await?;
        }
        Ok(())
    }

    async fn finish_stream(&mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        self.stream
            .finish()
            .await
            .or_err(ErrorType::WriteError, "finishing the HTTP/3 response")
    }
}

/// A session dropped before its response ended (the backend failed mid-body, the pipeline
/// gave up) resets the stream: quinn would otherwise end it cleanly, and the client would take
/// a cut-off response for a whole one.
impl Drop for H3Session {
    fn drop(&mut self) {
        if !self.ended {
            self.stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
        }
    }
}

#[async_trait]
impl custom::server::Session for H3Session {
    fn req_header(&self) -> &RequestHeader {
        &self.req
    }

    fn req_header_mut(&mut self) -> &mut RequestHeader {
        &mut self.req
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        let next = match self.read_timeout {
            Some(t) => tokio::time::timeout(t, self.read_next())
                .await
                .or_err(ErrorType::ReadTimedout, "reading the HTTP/3 request body")?,
            None => self.read_next().await,
        }?;
        if let Some(b) = &next {
            self.body_read += b.len();
            if let Some(retry) = &mut self.retry {
                if retry.len() + b.len() <= RETRY_BUFFER {
                    retry.extend_from_slice(b);
                } else {
                    self.retry_truncated = true;
                }
            }
        }
        Ok(next)
    }

    async fn drain_request_body(&mut self) -> Result<()> {
        let timeout = self.drain_timeout;
        let drain = async {
            while self.read_next().await?.is_some() {}
            Ok(())
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, drain)
                .await
                .or_err(ErrorType::ReadTimedout, "draining the HTTP/3 request body")?,
            None => drain.await,
        }
    }

    async fn write_response_header(&mut self, resp: Box<ResponseHeader>, end: bool) -> Result<()> {
        self.write_header(*resp, end).await
    }

    async fn write_response_header_ref(&mut self, resp: &ResponseHeader, end: bool) -> Result<()> {
        self.write_header(resp.clone(), end).await
    }

    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<()> {
        self.write_data(data, end).await
    }

    async fn write_trailers(&mut self, trailers: HeaderMap) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.stream
            .send_trailers(trailers)
            .await
            .or_err(ErrorType::WriteError, "writing HTTP/3 trailers")?;
        self.finish_stream().await
    }

    async fn response_duplex_vec(&mut self, tasks: Vec<HttpTask>) -> Result<bool> {
        let mut end_stream = false;
        for task in tasks {
            end_stream = match task {
                HttpTask::Header(header, end) => {
                    self.write_header(*header, end).await?;
                    end
                }
                HttpTask::Body(data, end) => {
                    self.write_data(data.unwrap_or_default(), end).await?;
                    end
                }
                HttpTask::UpgradedBody(..) => {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "an upgraded HTTP/1.1 body cannot go to an HTTP/3 client",
                    );
                }
                HttpTask::Trailer(Some(trailers)) => {
                    custom::server::Session::write_trailers(self, *trailers).await?;
                    true
                }
                HttpTask::Trailer(None) | HttpTask::Done => true,
                HttpTask::Failed(e) => return Err(e),
            } || end_stream;
        }
        if end_stream {
            self.finish_stream().await?;
        }
        Ok(end_stream)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    fn get_read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    fn get_write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    fn set_total_drain_timeout(&mut self, timeout: Option<Duration>) {
        self.drain_timeout = timeout;
    }

    fn get_total_drain_timeout(&self) -> Option<Duration> {
        self.drain_timeout
    }

    fn request_summary(&self) -> String {
        format!(
            "{} {}, Host: {}",
            self.req.method,
            self.req.uri,
            self.req
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
        )
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        self.response.as_ref()
    }

    async fn shutdown(&mut self, _code: u32, _ctx: &str) {
        if !self.ended {
            self.ended = true;
            self.stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
        }
    }

    async fn abandon(&mut self, _ctx: &str) {
        if !self.ended {
            self.ended = true;
            self.stream
                .stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
        }
    }

    fn is_body_done(&mut self) -> bool {
        (self.body_done || self.failed) && self.first.is_none()
    }

    async fn finish(&mut self) -> Result<()> {
        if self.response.is_none() {
            // No response was started: ending the stream cleanly would look like one.
            custom::server::Session::abandon(self, "no response").await;
            return Ok(());
        }
        self.finish_stream().await
    }

    fn is_body_empty(&mut self) -> bool {
        self.body_read == 0 && self.first.is_none() && self.body_done
    }

    async fn read_body_or_idle(&mut self, no_body_expected: bool) -> Result<Option<Bytes>> {
        if no_body_expected || custom::server::Session::is_body_done(self) {
            // Nothing more to read: wait until the client goes away.
            let reason = self.connection.closed().await;
            return Error::e_explain(
                ErrorType::ConnectionClosed,
                format!("HTTP/3 client went away: {reason}"),
            );
        }
        custom::server::Session::read_body_bytes(self).await
    }

    fn body_bytes_sent(&self) -> usize {
        self.body_sent
    }

    fn body_bytes_read(&self) -> usize {
        self.body_read
    }

    fn digest(&self) -> Option<&Digest> {
        Some(&self.digest)
    }

    fn digest_mut(&mut self) -> Option<&mut Digest> {
        Arc::get_mut(&mut self.digest)
    }

    fn client_addr(&self) -> Option<&SocketAddr> {
        Some(&self.client)
    }

    fn server_addr(&self) -> Option<&SocketAddr> {
        self.server.as_ref()
    }

    fn pseudo_raw_h1_request_header(&self) -> Bytes {
        let mut out = format!(
            "{} {} HTTP/1.1\r\n",
            self.req.method,
            self.req.uri.path_and_query().map_or("/", |p| p.as_str())
        )
        .into_bytes();
        for (n, v) in &self.req.headers {
            out.extend_from_slice(n.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.into()
    }

    fn enable_retry_buffering(&mut self) {
        if self.retry.is_none() {
            self.retry = Some(BytesMut::new());
        }
    }

    fn retry_buffer_truncated(&self) -> bool {
        self.retry_truncated
    }

    fn get_retry_buffer(&self) -> Option<Bytes> {
        if self.retry_truncated {
            return None;
        }
        self.retry
            .as_ref()
            .filter(|b| !b.is_empty())
            .map(|b| Bytes::copy_from_slice(b))
    }

    async fn finish_custom(&mut self) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_reader(
        &mut self,
    ) -> Option<Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>> {
        None
    }

    fn restore_custom_message_reader(
        &mut self,
        _reader: Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>,
    ) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_writer(&mut self) -> Option<Box<dyn CustomMessageWrite>> {
        None
    }

    fn restore_custom_message_writer(
        &mut self,
        _writer: Box<dyn CustomMessageWrite>,
    ) -> Result<()> {
        Ok(())
    }
}
