//! `TlsStream`: a connection of a `TlsListener`. It starts with the raw
//! stream and what its handshake needs; `TlsListener::handshake` (on the
//! connection's own task) runs the inner listener's step and the TLS
//! handshake (tokio-rustls's acceptor) and leaves it established: the
//! socket and the `rustls::ServerConnection`, with the record layer here
//! (as tokio-rustls's stream does it), so that an idle connection can be
//! taken apart at a drain ([`Moved`]: the session, with what it has
//! buffered, and the plaintext read ahead) and put together again on
//! another worker's runtime. Reads and writes before the handshake fail.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
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
    /// The worker's slot, whose handshakes `/metrics` counts (on a worker).
    pub(crate) slot: Option<Arc<crate::slots::Slot>>,
}

/// An established connection's TLS state on its way to another worker,
/// attached to its socket (`cluster_net::Connection::attach`).
pub(crate) struct Moved {
    pub(crate) session: ServerConnection,
    /// Plaintext read from the session and not served yet.
    pub(crate) plaintext: Vec<u8>,
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
    Tls(Established<Io>),
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

    /// A stream with nothing under it (reads and writes fail).
    pub(crate) fn gone() -> TlsStream<Io> {
        TlsStream { state: State::Gone }
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

    /// Established by a handshake just done.
    pub(crate) fn established(&mut self, stream: tokio_rustls::server::TlsStream<Io>) {
        let (io, session) = stream.into_inner();
        self.resume(
            io,
            Moved {
                session,
                plaintext: Vec::new(),
            },
        );
    }

    /// Established on this worker by a session that moved here with `io`.
    pub(crate) fn resume(&mut self, io: Io, moved: Moved) {
        self.state = State::Tls(Established {
            io,
            session: moved.session,
            prefix: moved.plaintext,
            consumed: 0,
            eof: false,
            closing: false,
        });
    }

    /// The socket and the TLS state, to move to another worker (`None`
    /// before or after a failed handshake).
    #[allow(clippy::result_large_err)] // the stream itself comes back
    pub(crate) fn into_moved(self, plaintext: Vec<u8>) -> Result<(Io, Moved), TlsStream<Io>> {
        match self.state {
            State::Tls(e) => {
                let mut rest = plaintext;
                rest.extend_from_slice(&e.prefix[e.consumed..]);
                Ok((
                    e.io,
                    Moved {
                        session: e.session,
                        plaintext: rest,
                    },
                ))
            }
            state => Err(TlsStream { state }),
        }
    }

    /// The inner listener's stream (`None` after a failed handshake).
    pub fn inner(&self) -> Option<&Io> {
        match &self.state {
            State::Pending(io, _) => Some(io),
            State::Tls(s) => Some(&s.io),
            State::Gone => None,
        }
    }

    /// The rustls connection, once the handshake is done: ALPN, SNI, the
    /// negotiated version and cipher suite, whether the session was resumed.
    pub fn session(&self) -> Option<&ServerConnection> {
        match &self.state {
            State::Tls(s) => Some(&s.session),
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
            State::Tls(s) => s.poll_read(cx, buf),
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
            State::Tls(s) => {
                s.poll_write_with(cx, buf.len(), |session| session.writer().write(buf))
            }
            _ => Poll::Ready(Err(not_established())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().state {
            State::Tls(s) => {
                let len = bufs.iter().map(|b| b.len()).sum();
                s.poll_write_with(cx, len, |session| session.writer().write_vectored(bufs))
            }
            _ => Poll::Ready(Err(not_established())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        matches!(self.state, State::Tls(_))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Tls(s) => s.flush_all(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Tls(s) => s.poll_shutdown(cx),
            State::Pending(io, _) => Pin::new(io).poll_shutdown(cx),
            State::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// The established connection: the record layer over `io`.
struct Established<Io> {
    io: Io,
    session: ServerConnection,
    /// Plaintext that moved with the connection, served before the
    /// session's; `consumed` of it so far.
    prefix: Vec<u8>,
    consumed: usize,
    /// The socket's read side ended.
    eof: bool,
    /// `close_notify` queued.
    closing: bool,
}

/// `io` as `std::io::Read` / `Write` for rustls: `WouldBlock` while it is
/// not ready (its waker registered with `cx`).
struct Sync<'a, 'b, Io> {
    io: &'a mut Io,
    cx: &'a mut Context<'b>,
}

impl<Io: AsyncRead + Unpin> Read for Sync<'_, '_, Io> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<Io: AsyncWrite + Unpin> Write for Sync<'_, '_, Io> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Established<Io> {
    /// Reads TLS records from the socket into the session and processes
    /// them: `Ok(0)` at the socket's EOF.
    fn read_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = match self.session.read_tls(&mut Sync {
            io: &mut self.io,
            cx,
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(e) = self.session.process_new_packets() {
            // The alert that says why, if it can go out now.
            let _ = self.write_io(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Writes what the session has to send.
    fn write_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.session.write_tls(&mut Sync {
            io: &mut self.io,
            cx,
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            result => Poll::Ready(result),
        }
    }

    /// Everything the session has to send, written and the socket flushed.
    fn flush_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.writer().flush()?;
        while self.session.wants_write() {
            match self.write_io(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.consumed < self.prefix.len() {
            let rest = &self.prefix[self.consumed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.consumed += n;
            if self.consumed == self.prefix.len() {
                self.prefix = Vec::new();
                self.consumed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        loop {
            // Copied chunk by chunk: `Read::read` would need the buffer
            // initialised (hyper's is not: zeroing it cost more than the rest).
            match self.session.reader().into_first_chunk() {
                // Plaintext, or none after the client's close_notify: EOF.
                Ok(chunk) => {
                    let n = chunk.len().min(buf.remaining());
                    buf.put_slice(&chunk[..n]);
                    self.session.reader().consume(n);
                    while buf.remaining() > 0 {
                        match self.session.reader().into_first_chunk() {
                            Ok(chunk) if !chunk.is_empty() => {
                                let n = chunk.len().min(buf.remaining());
                                buf.put_slice(&chunk[..n]);
                                self.session.reader().consume(n);
                            }
                            _ => break,
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.eof {
                // rustls reports a close without close_notify above; this
                // is only a guard against spinning.
                return Poll::Ready(Ok(()));
            }
            match self.read_io(cx) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Queues `write`'s plaintext (as records) and writes what it can:
    /// how much was taken, or pending if none could be.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        mut write: impl FnMut(&mut ServerConnection) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let n = write(&mut self.session)?;
        if n == 0 && len == 0 {
            return Poll::Ready(Ok(0));
        }
        while self.session.wants_write() {
            match self.write_io(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Pending => break,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        if n == 0 {
            // The session's buffer is full (the socket would block): try
            // once more now that some may have gone out.
            let n = write(&mut self.session)?;
            if n == 0 {
                return Poll::Pending;
            }
            return Poll::Ready(Ok(n));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.closing = true;
            self.session.send_close_notify();
        }
        match self.flush_all(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.io).poll_shutdown(cx),
            // Closing anyway: a client gone meanwhile is no error.
            Poll::Ready(Err(_)) => Pin::new(&mut self.io).poll_shutdown(cx),
            Poll::Pending => Poll::Pending,
        }
    }
}
