//! The worker's side: a `Listener` that yields `Connection`s registered on
//! the worker's own runtime, whatever the balance mode.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cluster_core::Address;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::balance::Dispatch;
use crate::bind::StdListener;
use crate::registry::ReuseSocket;

/// A connection in std form, on its way from an acceptor to a worker.
#[derive(Debug)]
pub(crate) enum StdStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: StdStream,
    pub(crate) peer: Option<SocketAddr>,
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
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) active: AtomicUsize,
    pub(crate) freed: Notify,
}

/// A tokio listener on one runtime.
#[derive(Debug)]
pub(crate) enum TokioListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl TokioListener {
    /// Registers a clone of `listener` on the current runtime.
    pub(crate) fn from_std(listener: &StdListener) -> io::Result<TokioListener> {
        Ok(match listener.try_clone()? {
            StdListener::Tcp(l) => TokioListener::Tcp(tokio::net::TcpListener::from_std(l)?),
            StdListener::Unix(l) => TokioListener::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }

    async fn accept_once(&self) -> io::Result<(Io, Option<SocketAddr>)> {
        Ok(match self {
            TokioListener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                (Io::Tcp(s), Some(peer))
            }
            TokioListener::Unix(l) => (Io::Unix(l.accept().await?.0), None),
        })
    }

    /// The next connection. Errors that concern one connection are skipped;
    /// running out of fds backs off instead of spinning.
    pub(crate) async fn accept(&self) -> io::Result<(Io, Option<SocketAddr>)> {
        let mut backoff = Backoff::default();
        loop {
            match self.accept_once().await {
                Ok(accepted) => return Ok(accepted),
                Err(e) => backoff.on_error(e).await?,
            }
        }
    }
}

/// An acceptor's listener: connections are accepted in std form and never
/// registered with the acceptor's own reactor (they are registered once, on
/// the worker that gets them).
#[derive(Debug)]
pub(crate) struct AcceptorListener(AsyncFd<StdListener>);

impl AcceptorListener {
    /// Registers a clone of `listener` on the current runtime.
    pub(crate) fn from_std(listener: &StdListener) -> io::Result<AcceptorListener> {
        // SAFETY: a `StdListener` owns its fd and always reports that one,
        // for as long as the `AsyncFd` owns the listener.
        unsafe { AsyncFd::register_with_interest(listener.try_clone()?, Interest::READABLE) }
            .map(AcceptorListener)
            .map_err(|e| e.into_parts().1)
    }

    fn try_accept(&self) -> io::Result<Accepted> {
        Ok(match self.0.get_ref() {
            StdListener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                Accepted {
                    stream: StdStream::Tcp(s),
                    peer: Some(peer),
                }
            }
            StdListener::Unix(l) => Accepted {
                stream: StdStream::Unix(l.accept()?.0),
                peer: None,
            },
        })
    }

    /// The next connection, as [`TokioListener::accept`] treats errors.
    pub(crate) async fn accept_std(&self) -> io::Result<Accepted> {
        let mut backoff = Backoff::default();
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|_| self.try_accept()) {
                Ok(Ok(accepted)) => return Ok(accepted),
                Ok(Err(e)) => backoff.on_error(e).await?,
                // Not ready after all: readiness was cleared, wait again.
                Err(_would_block) => {}
            }
        }
    }
}

/// What to do after an accept error.
#[derive(Default)]
pub(crate) struct Backoff {
    delay: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) async fn on_error(&mut self, e: io::Error) -> io::Result<()> {
        match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                self.delay = (self.delay * 2).clamp(Self::MIN, Self::MAX);
                if self.delay == Self::MIN {
                    tracing::warn!(error = %e, "out of file descriptors; accepting again in a moment");
                }
                tokio::time::sleep(self.delay).await;
                Ok(())
            }
            // The client gave up before we accepted: only that connection is gone.
            Some(libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO | libc::EPERM) => {
                Ok(())
            }
            _ => Err(e),
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
    fn from_std(stream: StdStream) -> io::Result<Io> {
        Ok(match stream {
            StdStream::Tcp(s) => {
                s.set_nonblocking(true)?;
                Io::Tcp(TcpStream::from_std(s)?)
            }
            StdStream::Unix(s) => {
                s.set_nonblocking(true)?;
                Io::Unix(UnixStream::from_std(s)?)
            }
        })
    }
}

/// A listener's place in its socket's dispatcher (and, for reuseport, in
/// the group): given up once, by whichever comes first: the listener
/// closing or dropping, or the primary declaring its worker gone (a stuck
/// worker's thread may never drop it). Its queued connections then go to
/// the live workers.
pub(crate) struct Seat {
    pub(crate) dispatch: Arc<Dispatch>,
    pub(crate) inbox: u64,
    /// Reuseport: the slot's socket, taken over by a stand-in once left.
    pub(crate) reuse: Option<Arc<ReuseSocket>>,
    left: AtomicBool,
    /// Ends the watcher of the worker's exit.
    leaving: Notify,
}

impl Seat {
    pub(crate) fn new(
        dispatch: Arc<Dispatch>,
        inbox: u64,
        reuse: Option<Arc<ReuseSocket>>,
    ) -> Arc<Seat> {
        Arc::new(Seat {
            dispatch,
            inbox,
            reuse,
            left: AtomicBool::new(false),
            leaving: Notify::new(),
        })
    }

    /// Gives the seat up when `worker` is gone, unless the listener gave it
    /// up first. Runs on the acceptor's runtime.
    pub(crate) fn watch(self: &Arc<Self>, worker: &cluster_core::Worker, acceptor: &Handle) {
        let (seat, gone) = (Arc::clone(self), worker.gone());
        acceptor.spawn(async move {
            tokio::select! {
                () = gone => if seat.leave() {
                    tracing::debug!("worker gone: its waiting connections go to live workers");
                },
                () = seat.leaving.notified() => {}
            }
        });
    }

    /// Leaves; false if it had already left.
    fn leave(&self) -> bool {
        if self.left.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.leaving.notify_one();
        self.dispatch.detach(self.inbox);
        if let Some(reuse) = &self.reuse {
            reuse.detach();
        }
        true
    }

    /// Leaves for good; the last listener of the socket gets what was
    /// accepted and not yet taken (nothing if it had already left).
    async fn close(&self) -> Vec<Accepted> {
        if self.left.swap(true, Ordering::AcqRel) {
            return Vec::new();
        }
        self.leaving.notify_one();
        let left = self.dispatch.close(self.inbox).await;
        if let Some(reuse) = &self.reuse {
            reuse.detach();
        }
        left
    }
}

/// How a listener gets its connections.
pub(crate) enum Mode {
    /// Accepts on its own registration of the socket (os, per-worker, fd, handle).
    Direct(TokioListener),
    /// Gets them from the acceptor (round-robin, least-connections, sticky),
    /// through its seat's inbox.
    Dispatched(Arc<Seat>),
    /// Accepts on its slot's `SO_REUSEPORT` socket, and also takes what the
    /// primary accepts from the sockets of empty slots.
    ReusePort { own: TokioListener, seat: Arc<Seat> },
}

/// A worker's listener, from `worker.listen(...)`. Dropping it stops this
/// worker's share of the socket; the socket itself stays open in the primary.
pub struct Listener {
    pub(crate) mode: Mode,
    pub(crate) address: Address,
    pub(crate) slot: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) totals: Arc<Totals>,
    pub(crate) max_per_worker: Option<usize>,
    pub(crate) max_total: Option<usize>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// The address really bound (port 0 resolved).
    pub fn local_addr(&self) -> &Address {
        &self.address
    }

    /// The TCP address really bound, if this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self.address {
            Address::Tcp(a) => Some(a),
            _ => None,
        }
    }

    /// Connections this worker accepted on this listener so far.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Connections of this worker on this listener that are still open.
    pub fn active(&self) -> usize {
        self.counters.active.load(Ordering::Relaxed)
    }

    /// The next connection. Waits while this worker, or the listener as a
    /// whole, is at its connection limit (connections wait in the backlog).
    /// Cancel-safe: a connection handed to a dropped `accept` goes to another
    /// worker.
    pub async fn accept(&self) -> io::Result<Connection> {
        wait_below(
            &self.counters.active,
            &self.counters.freed,
            self.max_per_worker,
        )
        .await;
        if !matches!(self.mode, Mode::Dispatched(_)) {
            // The acceptor enforces the total for dispatched modes.
            wait_below(&self.totals.active, &self.totals.freed, self.max_total).await;
        }
        let (io, peer) = match &self.mode {
            Mode::Direct(l) => l.accept().await?,
            Mode::Dispatched(seat) => take_dispatched(seat).await?,
            Mode::ReusePort { own, seat } => tokio::select! {
                r = own.accept() => r?,
                r = take_dispatched(seat) => r?,
            },
        };
        Ok(self.connection(io, peer))
    }

    fn connection(&self, io: Io, peer: Option<SocketAddr>) -> Connection {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        self.totals.active.fetch_add(1, Ordering::Relaxed);
        Connection {
            io,
            peer,
            _guard: Guard {
                counters: Arc::clone(&self.counters),
                totals: Arc::clone(&self.totals),
            },
        }
    }

    /// Stops this worker's share of the socket for good, as a draining
    /// worker should (rather than dropping it). When this is the socket's
    /// last listener in the process, the result holds the connections the
    /// primary had already accepted and nobody took: serve them before
    /// ending, and no accepted connection is lost. Connections still in the
    /// kernel's queue stay there (for a restarted worker, or the new process
    /// of a hot upgrade).
    pub async fn close(self) -> Vec<Connection> {
        let accepted = match &self.mode {
            Mode::Direct(_) => Vec::new(),
            Mode::Dispatched(seat) | Mode::ReusePort { seat, .. } => seat.close().await,
        };
        accepted
            .into_iter()
            .filter_map(|a| match Io::from_std(a.stream) {
                Ok(io) => Some(self.connection(io, a.peer)),
                Err(e) => {
                    tracing::warn!(error = %e, "a connection could not be registered while closing");
                    None
                }
            })
            .collect()
    }
}

/// The next connection of the seat's inbox, registered on this worker's runtime.
async fn take_dispatched(seat: &Seat) -> io::Result<(Io, Option<SocketAddr>)> {
    loop {
        let accepted = std::future::poll_fn(|cx| seat.dispatch.poll_take(seat.inbox, cx)).await;
        let peer = accepted.peer;
        match Io::from_std(accepted.stream) {
            Ok(io) => return Ok((io, peer)),
            // Out of fds here means out everywhere: back off, the
            // connection is lost either way.
            Err(e) => Backoff::default().on_error(e).await?,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Mode::Dispatched(seat) | Mode::ReusePort { seat, .. } = &self.mode {
            seat.leave();
        }
    }
}

async fn wait_below(count: &AtomicUsize, freed: &Notify, limit: Option<usize>) {
    let Some(limit) = limit else { return };
    loop {
        let notified = freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if count.load(Ordering::Acquire) < limit {
            return;
        }
        notified.await;
    }
}

pub(crate) struct Guard {
    counters: Arc<Counters>,
    totals: Arc<Totals>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::AcqRel);
        self.counters.freed.notify_one();
        self.totals.active.fetch_sub(1, Ordering::AcqRel);
        self.totals.freed.notify_one();
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
    /// The client's address (TCP only).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
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
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
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
