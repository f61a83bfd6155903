//! A connection's stream as hyper sees it: the bytes read to tell HTTP/1
//! from HTTP/2 served first, and whether hyper has written anything it has
//! not flushed yet (a connection moves to another worker only once it has).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Set from hyper's first write until its next flush. hyper writes out its
/// whole buffer before it flushes, so while this is clear, nothing of a
/// response waits in hyper. (Shared with the connection's task; the stream
/// must be `Send` for upgrades, hence the atomic.)
pub(crate) type Unflushed = Arc<AtomicBool>;

#[derive(Debug)]
pub(crate) struct Rewind<I> {
    prefix: Bytes,
    inner: I,
    unflushed: Unflushed,
}

impl<I> Rewind<I> {
    pub(crate) fn new(prefix: Bytes, inner: I, unflushed: Unflushed) -> Rewind<I> {
        Rewind {
            prefix,
            inner,
            unflushed,
        }
    }

    /// The stream, and what is left of the bytes it was given back.
    pub(crate) fn into_parts(self) -> (I, Bytes) {
        (self.inner, self.prefix)
    }

    fn wrote(&self, len: usize) {
        if len > 0 {
            self.unflushed.store(true, Ordering::Relaxed);
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
            self.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
