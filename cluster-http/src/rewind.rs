//! A connection's stream as hyper sees it: the bytes read to tell HTTP/1
//! from HTTP/2 served first, whether hyper has written anything it has
//! not flushed yet (a connection moves to another worker only once it has),
//! and when the stream is dropped (an upgraded one lives on with whoever
//! took it, a WebSocket handler, and its connection counts until then).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What a stream shares with its connection's task (atomics: the stream
/// must be `Send` for upgrades).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Set from hyper's first write until its next flush. hyper writes out
    /// its whole buffer before it flushes, so while this is clear, nothing
    /// of a response waits in hyper.
    unflushed: AtomicBool,
    dropped: AtomicBool,
    gone: Notify,
}

/// A connection's [`StreamState`], one allocation for both.
pub(crate) type StreamRef = Arc<StreamState>;

impl StreamState {
    pub(crate) fn unflushed(&self) -> bool {
        self.unflushed.load(Ordering::Relaxed)
    }

    /// Resolves once the stream is dropped: at once for a connection hyper
    /// ended, when the handler lets go of it for an upgraded one.
    pub(crate) async fn dropped(&self) {
        while !self.dropped.load(Ordering::Acquire) {
            self.gone.notified().await;
        }
    }
}

/// Marks the stream dropped when it is.
#[derive(Debug)]
struct Gone(StreamRef);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::Release);
        // A permit if nobody waits yet: the task's wait cannot miss it.
        self.0.gone.notify_one();
    }
}

#[derive(Debug)]
pub(crate) struct Rewind<I> {
    prefix: Bytes,
    inner: I,
    state: Gone,
}

impl<I> Rewind<I> {
    pub(crate) fn new(prefix: Bytes, inner: I, state: StreamRef) -> Rewind<I> {
        Rewind {
            prefix,
            inner,
            state: Gone(state),
        }
    }

    /// The stream, and what is left of the bytes it was given back.
    pub(crate) fn into_parts(self) -> (I, Bytes) {
        (self.inner, self.prefix)
    }

    fn wrote(&self, len: usize) {
        if len > 0 {
            self.state.0.unflushed.store(true, Ordering::Relaxed);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() {
            // Frees the buffer rather than keep it for the connection's life.
            self.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Marked before the write: one that is pending holds bytes back too.
        self.wrote(buf.len());
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote(bufs.iter().map(|b| b.len()).sum());
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.state.0.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
