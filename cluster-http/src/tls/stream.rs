//! `TlsStream`: a connection of a `TlsListener`. It starts with the raw
//! stream and what its handshake needs; `TlsListener::handshake` (on the
//! connection's own task) runs the inner listener's step and the TLS
//! handshake and leaves it established. Reads and writes before that fail.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::ServerConnection;
use tokio_rustls::TlsAcceptor;

/// What a connection's TLS handshake needs: shared by every connection of
/// one listener.
#[derive(Clone)]
pub(crate) struct Handshake {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) timeout: Duration,
    /// The listener's count of failed handshakes.
    pub(crate) failures: Arc<AtomicU64>,
}

/// A TLS connection of a [`TlsListener`](crate::TlsListener), over the
/// inner listener's stream `Io`: TLS from the end of its handshake (which
/// the server runs, through [`Listener::handshake`](crate::Listener::handshake)).
pub struct TlsStream<Io> {
    state: State<Io>,
}

// One per connection, moved only as the connection's state changes.
#[allow(clippy::large_enum_variant)]
enum State<Io> {
    Pending(Io, Handshake),
    Tls(tokio_rustls::server::TlsStream<Io>),
    /// The handshake took the stream, and failed.
    Gone,
}

impl<Io> fmt::Debug for TlsStream<Io> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Pending(..) => "handshake pending",
            State::Tls(_) => "established",
            State::Gone => "handshake failed",
        };
        f.debug_struct("TlsStream").field("state", &state).finish()
    }
}

impl<Io> TlsStream<Io> {
    pub(crate) fn pending(io: Io, handshake: Handshake) -> TlsStream<Io> {
        TlsStream {
            state: State::Pending(io, handshake),
        }
    }

    /// The stream and its handshake's settings, if the handshake has not
    /// run yet; the stream is gone until [`established`](Self::established).
    pub(crate) fn take_pending(&mut self) -> Option<(Io, Handshake)> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Pending(io, handshake) => Some((io, handshake)),
            other => {
                self.state = other;
                None
            }
        }
    }

    pub(crate) fn established(&mut self, stream: tokio_rustls::server::TlsStream<Io>) {
        self.state = State::Tls(stream);
    }

    /// The inner listener's stream (`None` after a failed handshake).
    pub fn inner(&self) -> Option<&Io> {
        match &self.state {
            State::Pending(io, _) => Some(io),
            State::Tls(s) => Some(s.get_ref().0),
            State::Gone => None,
        }
    }

    /// The rustls connection, once the handshake is done: ALPN, SNI, the
    /// negotiated version and cipher suite, whether the session was resumed.
    pub fn session(&self) -> Option<&ServerConnection> {
        match &self.state {
            State::Tls(s) => Some(s.get_ref().1),
            _ => None,
        }
    }
}

fn not_established() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the TLS handshake has not completed",
    )
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Tls(s) => Pin::new(s).poll_read(cx, buf),
            _ => Poll::Ready(Err(not_established())),
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().state {
            State::Tls(s) => Pin::new(s).poll_write(cx, buf),
            _ => Poll::Ready(Err(not_established())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().state {
            State::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            _ => Poll::Ready(Err(not_established())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.state {
            State::Tls(s) => s.is_write_vectored(),
            _ => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Tls(s) => Pin::new(s).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Tls(s) => Pin::new(s).poll_shutdown(cx),
            State::Pending(io, _) => Pin::new(io).poll_shutdown(cx),
            State::Gone => Poll::Ready(Ok(())),
        }
    }
}
