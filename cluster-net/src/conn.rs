//! A connection on its way and on its worker: the std form that crosses
//! threads, the stream registered on the worker's runtime, the public
//! `Connection`, and the counters its guard keeps.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

use crate::cap::{Cap, IdleHandle};
use crate::Error;

/// A connection in std form, on its way from an acceptor to a worker;
/// non-blocking and close-on-exec from its `accept`.
#[derive(Debug)]
pub(crate) enum StdStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: StdStream,
    pub(crate) peer: Option<SocketAddr>,
    /// Bytes already read from the stream, to be served first.
    pub(crate) prefix: Vec<u8>,
    /// A PROXY protocol header is still to be read.
    pub(crate) proxy_pending: bool,
}

impl Accepted {
    pub(crate) fn new(stream: StdStream, peer: Option<SocketAddr>) -> Accepted {
        Accepted {
            stream,
            peer,
            prefix: Vec::new(),
            proxy_pending: false,
        }
    }
}

/// Connection counts of one worker on one listener.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) id: u64,
    pub(crate) slot: usize,
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicUsize,
    pub(crate) freed: Notify,
    /// The acceptor's, for the modes that have one: a closed connection may
    /// let it hand this worker another.
    pub(crate) capacity: Option<Arc<Notify>>,
}

/// Connection counts of a listener, all workers together.
#[derive(Debug)]
pub(crate) struct Totals {
    pub(crate) active: AtomicUsize,
    pub(crate) freed: Notify,
    /// Failed accepts on the socket, by any worker or the acceptor.
    pub(crate) accept_errors: AtomicU64,
    /// Connections closed for a missing or malformed PROXY header.
    pub(crate) proxy_rejected: AtomicU64,
    /// Open connections handed from a draining worker to another one.
    pub(crate) migrated: AtomicU64,
    /// The cluster's cap, over every listener.
    pub(crate) cap: Arc<Cap>,
}

impl Totals {
    pub(crate) fn new(cap: Arc<Cap>) -> Totals {
        Totals {
            active: AtomicUsize::new(0),
            freed: Notify::new(),
            accept_errors: AtomicU64::new(0),
            proxy_rejected: AtomicU64::new(0),
            migrated: AtomicU64::new(0),
            cap,
        }
    }
}

/// A stream registered on the worker's runtime.
#[derive(Debug)]
pub(crate) enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Io {
    /// Registers an accepted (so already non-blocking) stream on the
    /// current runtime.
    fn from_std(stream: StdStream) -> io::Result<Io> {
        Ok(match stream {
            StdStream::Tcp(s) => Io::Tcp(TcpStream::from_std(s)?),
            StdStream::Unix(s) => Io::Unix(UnixStream::from_std(s)?),
        })
    }
}

/// Keeps a connection counted while it is open.
struct Guard {
    counters: Arc<Counters>,
    totals: Arc<Totals>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::AcqRel);
        self.counters.freed.notify_one();
        self.totals.active.fetch_sub(1, Ordering::AcqRel);
        self.totals.freed.notify_one();
        self.totals.cap.closed();
        if let Some(capacity) = &self.counters.capacity {
            capacity.notify_one();
        }
    }
}

/// An accepted connection, registered on the worker's runtime. Closing it
/// (dropping it) frees its place under the connection limits.
pub struct Connection {
    io: Io,
    peer: Option<SocketAddr>,
    /// Bytes read before the protocol got the connection (after a PROXY
    /// header), served first; `consumed` of them so far.
    prefix: Vec<u8>,
    consumed: usize,
    proxy_pending: bool,
    _guard: Guard,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("io", &self.io)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Connection {
    /// A new connection of the worker whose counters are `counters`,
    /// registered on the current runtime.
    pub(crate) fn register(
        accepted: Accepted,
        counters: &Arc<Counters>,
        totals: &Arc<Totals>,
    ) -> io::Result<Connection> {
        let io = Io::from_std(accepted.stream)?;
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.active.fetch_add(1, Ordering::Relaxed);
        totals.active.fetch_add(1, Ordering::Relaxed);
        totals.cap.opened();
        Ok(Connection {
            io,
            peer: accepted.peer,
            prefix: accepted.prefix,
            consumed: 0,
            proxy_pending: accepted.proxy_pending,
            _guard: Guard {
                counters: Arc::clone(counters),
                totals: Arc::clone(totals),
            },
        })
    }

    /// A handle through which the protocol served on this connection says
    /// when it is idle between requests, so that the cluster's connection
    /// cap may close it (oldest idle first) to admit a new client
    /// (`cluster-http` does this by itself).
    pub fn idle_handle(&self) -> IdleHandle {
        IdleHandle::new(&self._guard.totals.cap)
    }

    /// The client's address (TCP only). On a listener that expects the
    /// PROXY protocol, the client's as the load balancer says, once
    /// [`read_proxy_header`](Self::read_proxy_header) has run.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// On a listener that expects the PROXY protocol
    /// ([`ListenSpec::proxy_protocol`](crate::ListenSpec::proxy_protocol)):
    /// reads the load balancer's header (within 5 s), so that
    /// [`peer_addr`](Self::peer_addr) is the client's. Call it before
    /// reading; `cluster-http` does. Does nothing on other listeners, or
    /// when the acceptor already read it (sticky mode, whose key it is).
    ///
    /// A missing, malformed or late header is an [`Error::Proxy`]: close
    /// the connection (it is counted in `ListenerStats::proxy_rejected`).
    pub async fn read_proxy_header(&mut self) -> Result<(), Error> {
        if !self.proxy_pending {
            return Ok(());
        }
        self.proxy_pending = false;
        let io: &mut (dyn AsyncRead + Unpin + Send) = match &mut self.io {
            Io::Tcp(s) => s,
            Io::Unix(s) => s,
        };
        // Boxed: its buffer would otherwise be part of every connection's
        // future, PROXY protocol or not.
        match Box::pin(crate::proxy::read_header(io)).await {
            Ok(header) => {
                if let Some(client) = header.client {
                    self.peer = Some(client);
                }
                self.prefix = header.rest;
                self.consumed = 0;
                Ok(())
            }
            Err(e) => {
                self._guard
                    .totals
                    .proxy_rejected
                    .fetch_add(1, Ordering::Relaxed);
                Err(Error::Proxy {
                    peer: self
                        .peer
                        .map_or_else(|| "a Unix client".into(), |p| p.to_string()),
                    reason: e.to_string(),
                })
            }
        }
    }

    pub(crate) fn totals(&self) -> &Arc<Totals> {
        &self._guard.totals
    }

    /// Back to std form, to move to another worker: `read` (bytes read and
    /// not used yet) goes before what is left of its own prefix. Its place
    /// under this worker's limits is freed. `None` (the connection closed)
    /// if its socket cannot leave this runtime's reactor.
    pub(crate) fn into_accepted(self, read: &[u8]) -> Option<Accepted> {
        let mut prefix = read.to_vec();
        prefix.extend_from_slice(&self.prefix[self.consumed..]);
        let stream = match self.io {
            Io::Tcp(s) => s.into_std().map(StdStream::Tcp),
            Io::Unix(s) => s.into_std().map(StdStream::Unix),
        };
        match stream {
            Ok(stream) => Some(Accepted {
                stream,
                peer: self.peer,
                prefix,
                proxy_pending: self.proxy_pending,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "a connection could not leave its worker; closed");
                None
            }
        }
    }

    /// The TCP stream, to set options such as `TCP_NODELAY`.
    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Tcp(s) => Some(s),
            Io::Unix(_) => None,
        }
    }

    /// The Unix-domain stream.
    pub fn as_unix(&self) -> Option<&UnixStream> {
        match &self.io {
            Io::Unix(s) => Some(s),
            Io::Tcp(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            Io::Tcp($s) => $e,
            Io::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.consumed < this.prefix.len() {
            let rest = &this.prefix[this.consumed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.consumed += n;
            if this.consumed == this.prefix.len() {
                this.prefix = Vec::new();
                this.consumed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
