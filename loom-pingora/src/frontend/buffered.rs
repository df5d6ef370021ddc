//! A write-coalescing wrapper for accepted connections.
//!
//! Pingora's own listeners give each connection a small write buffer, so a response head and a
//! short body leave in one `send`. Loom runs its own accept loops (Pingora cannot add listeners
//! at runtime) and Pingora's buffer setter is crate-private, so without this wrapper every
//! response costs an extra system call (measured with strace: 3 `sendto` per proxied request
//! against 2).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deadline::HeadClock;

/// Writes up to this many bytes are held until a flush (one TCP segment on most links).
const WRITE_BUFFER: usize = 1460;

/// An accepted TCP connection whose small writes are coalesced until flushed, or until the
/// connection reads again: what was written by then is all there is for now, so a response
/// head and the first bytes of a body that trickles in reach the client at once, while a head
/// and body written together still leave in one `send`.
pub(crate) struct Buffered {
    inner: L4Stream,
    pending: Vec<u8>,
    written: usize,
    /// Told when bytes arrive (HTTP/1 request head deadlines).
    clock: Option<Arc<HeadClock>>,
}

impl Buffered {
    pub(crate) fn new(inner: L4Stream, clock: Option<Arc<HeadClock>>) -> Self {
        Buffered {
            inner,
            pending: Vec::with_capacity(WRITE_BUFFER),
            written: 0,
            clock,
        }
    }

    /// Writes out what is pending.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for Buffered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffered")
            .field("inner", &self.inner)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl AsyncRead for Buffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pending.is_empty()
            && let Poll::Ready(Err(e)) = self.poll_drain(cx)
        {
            return Poll::Ready(Err(e));
        }
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(clock) = &self.clock
            && buf.filled().len() > filled
        {
            clock.saw_bytes(tokio::time::Instant::now);
        }
        read
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.len() + data.len() <= WRITE_BUFFER {
            this.pending.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        ready!(this.poll_drain(cx))?;
        if data.len() < WRITE_BUFFER {
            this.pending.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        let _ = std::future::poll_fn(|cx| self.poll_drain(cx)).await;
        Shutdown::shutdown(&mut self.inner).await;
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Buffered {}

impl GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Buffered {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
