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

use crate::cap::{Cap, IdleHandle, Turn};
use crate::count::{released, take_one};
use crate::proxy::{self, ProxyError};
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
    /// Its place under the limits, from before its `accept(2)` on.
    pub(crate) place: Place,
    /// The state of the protocol above the socket (a TLS session), moved
    /// with it between workers (never to another process).
    pub(crate) state: Option<State>,
}

/// What a protocol above a connection leaves with it to move it between
/// workers (see [`Connection::attach`]).
pub(crate) type State = Box<dyn std::any::Any + Send>;

impl Accepted {
    pub(crate) fn new(stream: StdStream, peer: Option<SocketAddr>, place: Place) -> Accepted {
        Accepted {
            stream,
            peer,
            prefix: Vec::new(),
            proxy_pending: false,
            place,
            state: None,
        }
    }

    /// Reads the header of a connection still in std form (on the acceptor's
    /// runtime): its peer becomes the client, the bytes after the header its
    /// prefix. The error names the balancer's address.
    pub(crate) async fn take_proxy_header(
        mut self,
    ) -> Result<Accepted, (Option<SocketAddr>, ProxyError)> {
        let peer = self.peer;
        let timeout = proxy::timeout(&self.place.totals().cap);
        let fail = |e: std::io::Error| (peer, ProxyError::Io(e));
        let (header, stream) = match self.stream {
            StdStream::Tcp(s) => {
                let mut s = tokio::net::TcpStream::from_std(s).map_err(fail)?;
                let header = proxy::read_header(&mut s, timeout)
                    .await
                    .map_err(|e| (peer, e))?;
                (header, StdStream::Tcp(s.into_std().map_err(fail)?))
            }
            StdStream::Unix(s) => {
                let mut s = tokio::net::UnixStream::from_std(s).map_err(fail)?;
                let header = proxy::read_header(&mut s, timeout)
                    .await
                    .map_err(|e| (peer, e))?;
                (header, StdStream::Unix(s.into_std().map_err(fail)?))
            }
        };
        self.stream = stream;
        self.peer = header.client.or(peer);
        self.prefix = header.rest;
        self.proxy_pending = false;
        Ok(self)
    }
}

/// Connection counts of one worker on one listener.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) id: u64,
    pub(crate) slot: usize,
    pub(crate) accepted: AtomicU64,
    /// Its connections: open, or accepted for it and waiting in its inbox.
    pub(crate) active: AtomicUsize,
    /// Its connection limit (`max_connections_per_worker`).
    pub(crate) limit: Option<usize>,
    /// Notified when `active` goes below `limit`.
    pub(crate) freed: Notify,
    /// The dispatch's: a place freed may let an acceptor hand this worker
    /// another.
    pub(crate) capacity: Arc<Notify>,
    /// Kernel steering: where `active` is published for the group's program.
    pub(crate) publisher: Option<crate::steer::Publisher>,
}

impl Counters {
    pub(crate) fn has_room(&self) -> bool {
        self.limit
            .is_none_or(|limit| self.active.load(Ordering::Acquire) < limit)
    }

    /// One more connection, if under the limit.
    fn take(&self) -> bool {
        let taken = take_one(&self.active, self.limit);
        if taken {
            self.publish();
        }
        taken
    }

    /// One more connection, even past the limit.
    fn force_take(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.publish();
    }

    fn release(&self) {
        let freed = released(&self.active, self.limit);
        self.publish();
        if freed {
            self.freed.notify_waiters();
            self.capacity.notify_one();
        }
    }

    /// Kernel steering: one connection taken from this worker's own socket.
    pub(crate) fn took_from_queue(&self) {
        if let Some(p) = &self.publisher {
            p.took();
        }
    }

    /// Kernel steering: this worker's own socket has nothing queued.
    pub(crate) fn queue_empty(&self) {
        if let Some(p) = &self.publisher {
            p.drained();
        }
    }

    /// Tells the kernel's program (with kernel steering) how many are open.
    fn publish(&self) {
        if let Some(p) = &self.publisher {
            p.publish(self.active.load(Ordering::Relaxed), self.limit);
        }
    }
}

/// Connection counts of a listener, all workers together.
#[derive(Debug)]
pub(crate) struct Totals {
    /// Its connections: open, on their way to a worker, or being accepted.
    pub(crate) active: AtomicUsize,
    /// Its limit (`max_connections`).
    pub(crate) max: Option<usize>,
    /// Notified when `active` goes below `max`.
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
    pub(crate) fn new(cap: Arc<Cap>, max: Option<usize>) -> Totals {
        Totals {
            active: AtomicUsize::new(0),
            max,
            freed: Notify::new(),
            accept_errors: AtomicU64::new(0),
            proxy_rejected: AtomicU64::new(0),
            migrated: AtomicU64::new(0),
            cap,
        }
    }

    pub(crate) fn has_room(&self) -> bool {
        self.max
            .is_none_or(|max| self.active.load(Ordering::Acquire) < max)
    }

    fn release(&self) {
        if released(&self.active, self.max) {
            self.freed.notify_waiters();
        }
    }
}

/// Which limit had no room for a connection.
#[derive(Debug)]
pub(crate) enum Full<'a> {
    Worker(&'a Counters),
    Total,
    Cap,
}

/// A connection's place under the limits: taken just before its
/// `accept(2)` (so a burst never overshoots them), held while it waits for
/// a worker and while it is open, given back when it closes or when the
/// accept fails. The listener's total and the cluster's cap from the
/// start; a worker's count from the moment it is given to that worker
/// (put in its inbox, or accepted by it).
#[derive(Debug)]
pub(crate) struct Place {
    totals: Arc<Totals>,
    worker: Option<Arc<Counters>>,
}

impl Place {
    /// A place in `totals` and the cap (and `worker`'s count, if given),
    /// or which of them is full. The cap's place is `turn`'s, if given
    /// (won at the cap; given back to the next in turn on failure).
    pub(crate) fn take<'a>(
        totals: &Arc<Totals>,
        worker: Option<&'a Arc<Counters>>,
        turn: Option<Turn<'_>>,
    ) -> Result<Place, Full<'a>> {
        if let Some(w) = worker {
            if !w.take() {
                return Err(Full::Worker(w));
            }
        }
        let full = if !take_one(&totals.active, totals.max) {
            Some(Full::Total)
        } else if let Some(turn) = turn {
            turn.keep();
            None
        } else if !totals.cap.try_open() {
            totals.release();
            Some(Full::Cap)
        } else {
            None
        };
        if let Some(full) = full {
            if let Some(w) = worker {
                w.release();
            }
            return Err(full);
        }
        Ok(Place {
            totals: Arc::clone(totals),
            worker: worker.cloned(),
        })
    }

    /// A place for a connection that is open already (passed by the process
    /// this one replaces, drained from a socket being closed): counted even
    /// past the limits, never lost.
    pub(crate) fn force(totals: &Arc<Totals>) -> Place {
        totals.active.fetch_add(1, Ordering::AcqRel);
        totals.cap.force_open();
        Place {
            totals: Arc::clone(totals),
            worker: None,
        }
    }

    /// Gives the place to `worker`, if it is under its limit (true if it
    /// has it already).
    pub(crate) fn assign(&mut self, worker: &Arc<Counters>) -> bool {
        if self.is_of(worker) {
            return true;
        }
        if !worker.take() {
            return false;
        }
        self.unassign();
        self.worker = Some(Arc::clone(worker));
        true
    }

    /// Gives the place to `worker` even past its limit (a connection the
    /// last listener of a socket must serve).
    pub(crate) fn force_assign(&mut self, worker: &Arc<Counters>) {
        if !self.is_of(worker) {
            self.unassign();
            worker.force_take();
            self.worker = Some(Arc::clone(worker));
        }
    }

    /// No longer any worker's (it moves to another one).
    pub(crate) fn unassign(&mut self) {
        if let Some(w) = self.worker.take() {
            w.release();
        }
    }

    fn is_of(&self, worker: &Arc<Counters>) -> bool {
        self.worker.as_ref().is_some_and(|w| Arc::ptr_eq(w, worker))
    }

    pub(crate) fn totals(&self) -> &Arc<Totals> {
        &self.totals
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.unassign();
        self.totals.release();
        self.totals.cap.closed();
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
    /// Keeps it counted while it is open.
    place: Place,
    /// Its handle for the cap, made on first use.
    idle: std::sync::OnceLock<IdleHandle>,
    state: Option<State>,
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
    /// registered on the current runtime. Its place becomes that worker's
    /// (it was already, unless it is one nobody's inbox could take).
    pub(crate) fn register(accepted: Accepted, counters: &Arc<Counters>) -> io::Result<Connection> {
        let Accepted {
            stream,
            peer,
            prefix,
            proxy_pending,
            mut place,
            state,
        } = accepted;
        let io = Io::from_std(stream)?;
        place.force_assign(counters);
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Connection {
            io,
            peer,
            prefix,
            consumed: 0,
            proxy_pending,
            place,
            idle: std::sync::OnceLock::new(),
            state,
        })
    }

    /// The handle through which the protocol served on this connection
    /// says whether it has sent a whole request yet and when it is idle
    /// between requests, so that the cluster's connection cap may close it
    /// to admit a new client (see [`IdleHandle`]; `cluster-http` does this
    /// by itself). Every call gives the same connection's handle.
    pub(crate) fn idle_handle(&self) -> IdleHandle {
        self.idle
            .get_or_init(|| IdleHandle::new(&self.place.totals().cap))
            .clone()
    }

    /// The client's address (TCP only). On a listener that expects the
    /// PROXY protocol, the client's as the load balancer says, once its
    /// header is read (`cluster-http` reads it before anything else).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// On a listener that expects the PROXY protocol
    /// ([`ListenSpec::proxy_protocol`](crate::ListenSpec::proxy_protocol)):
    /// reads the load balancer's header (within 5 s, or 1.25 s while the
    /// connection cap is three quarters full), so that
    /// [`peer_addr`](Self::peer_addr) is the client's. Call it before
    /// reading; `cluster-http` does. Does nothing on other listeners, or
    /// when the acceptor already read it (sticky mode, whose key it is).
    ///
    /// A missing, malformed or late header is an [`Error::Proxy`]: close
    /// the connection (it is counted in `ListenerStats::proxy_rejected`).
    pub(crate) async fn read_proxy_header(&mut self) -> Result<(), Error> {
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
        let timeout = proxy::timeout(&self.place.totals().cap);
        match Box::pin(proxy::read_header(io, timeout)).await {
            Ok(header) => {
                if let Some(client) = header.client {
                    self.peer = Some(client);
                }
                self.prefix = header.rest;
                self.consumed = 0;
                Ok(())
            }
            Err(e) => {
                self.place
                    .totals()
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
        self.place.totals()
    }

    /// Leaves the state of the protocol served on this connection (a TLS
    /// session, with the plaintext already decrypted) with it, for a
    /// [`Migrator`](crate::migrate::Migrator) to move to another worker of this
    /// process, whose listener gives it back with
    /// [`take_attached`](Self::take_attached). Such a connection never goes
    /// to a hot upgrade's new process (the state cannot be serialised).
    pub(crate) fn attach(&mut self, state: Box<dyn std::any::Any + Send>) {
        self.state = Some(state);
    }

    /// The state [`attach`](Self::attach)ed to this connection by the
    /// worker it moved from, if any.
    pub(crate) fn take_attached(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        self.state.take()
    }

    /// Whether a state is attached.
    pub(crate) fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// Back to std form, to move to another worker: `read` (bytes read and
    /// not used yet) goes before what is left of its own prefix. Its place
    /// under this worker's limit is freed (it keeps its place in the
    /// listener's total and the cap). `None` (the connection closed) if
    /// its socket cannot leave this runtime's reactor.
    pub(crate) fn into_accepted(self, read: &[u8]) -> Option<Accepted> {
        let Connection {
            io,
            peer,
            prefix: own,
            consumed,
            proxy_pending,
            mut place,
            idle: _,
            state,
        } = self;
        let mut prefix = read.to_vec();
        prefix.extend_from_slice(&own[consumed..]);
        let stream = match io {
            Io::Tcp(s) => s.into_std().map(StdStream::Tcp),
            Io::Unix(s) => s.into_std().map(StdStream::Unix),
        };
        match stream {
            Ok(stream) => {
                place.unassign();
                Some(Accepted {
                    stream,
                    peer,
                    prefix,
                    proxy_pending,
                    place,
                    state,
                })
            }
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
