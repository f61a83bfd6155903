//! The accept primitives and their error policy: an accept loop never
//! ends while its socket is open.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::SockRef;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::bind::StdListener;
use crate::conn::{Accepted, Counters, Full, Place, StdStream, Totals};
use crate::proxy::Proxy;

/// A listening socket registered on the current runtime, accepting
/// connections in std form (non-blocking, close-on-exec), registered later
/// on whichever worker serves them. The acceptor and the workers' own
/// accept loops (os, per-worker, reuseport) use it alike.
#[derive(Debug)]
pub(crate) struct AcceptSocket {
    /// A dup of the socket, to register again from.
    source: StdListener,
    /// The current registration. Replaced when the socket stopped listening
    /// and listens again: tokio keeps "read closed" readiness for good, so
    /// the old registration would report ready forever.
    registered: Mutex<Arc<AsyncFd<StdListener>>>,
    /// Whether its connections start with a PROXY protocol header, and
    /// from whom they may come.
    proxy: Proxy,
}

impl AcceptSocket {
    /// Registers a clone of `listener` on the current runtime.
    pub(crate) fn register(listener: &StdListener, proxy: Proxy) -> io::Result<AcceptSocket> {
        let source = listener.try_clone()?;
        let registered = Mutex::new(Arc::new(Self::registration(&source)?));
        Ok(AcceptSocket {
            source,
            registered,
            proxy,
        })
    }

    fn registration(source: &StdListener) -> io::Result<AsyncFd<StdListener>> {
        // SAFETY: a `StdListener` owns its fd and always reports that one,
        // for as long as the `AsyncFd` owns the listener.
        unsafe { AsyncFd::register_with_interest(source.try_clone()?, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }

    fn current(&self) -> Arc<AsyncFd<StdListener>> {
        Arc::clone(
            &self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// A connection already in the queue, if any, without waiting, and if
    /// the listener's total and the cap have room for it.
    pub(crate) fn accept_now(&self, totals: &Arc<Totals>) -> Option<Accepted> {
        loop {
            let place = Place::take(totals, None, None).ok()?;
            let accepted = accept_nonblocking(&self.source, &self.proxy, place).ok()?;
            if !refused(&self.proxy, &accepted, totals) {
                return Some(accepted);
            }
        }
    }

    /// Every connection in the queue, counted even past the limits: a
    /// socket being closed is drained, never reset.
    pub(crate) fn drain(&self, totals: &Arc<Totals>) -> Vec<Accepted> {
        drain(&self.source, &self.proxy, totals)
    }

    /// The next connection, with its place taken (in `worker`'s count too,
    /// if given); errors are counted in the socket's `totals` and handled
    /// by [`Backoff`], never returned.
    pub(crate) async fn accept(
        &self,
        totals: &Arc<Totals>,
        worker: Option<&Arc<Counters>>,
    ) -> Accepted {
        self.accept_holding(totals, worker, || std::future::ready(()))
            .await
            .0
    }

    /// [`accept`](Self::accept), with what `hold` resolves to (a lock's
    /// guard) taken just before the `accept(2)` that succeeds, and returned:
    /// held from accept to delivery, but neither while waiting for a client
    /// nor through a back-off.
    ///
    /// The connection's place is taken before `accept(2)` and given back if
    /// it fails: while the listener's total, the cap or `worker` is full, a
    /// waiting client stays in the kernel's queue (at the cap, once the
    /// oldest idle connection was asked to make room).
    pub(crate) async fn accept_holding<G, F: Future<Output = G>>(
        &self,
        totals: &Arc<Totals>,
        worker: Option<&Arc<Counters>>,
        mut hold: impl FnMut() -> F,
    ) -> (Accepted, G) {
        let mut backoff = Backoff::new(totals);
        // A place won at the cap, for the accept right after.
        let mut turn = None;
        loop {
            let registered = self.current();
            let mut ready = match registered.readable().await {
                Ok(ready) => ready,
                Err(e) => {
                    turn = None;
                    backoff.on_error(&e).await;
                    continue;
                }
            };
            let closed = ready.ready().is_read_closed();
            let place = match Place::take(totals, worker, turn.take()) {
                Ok(place) => place,
                Err(full) => {
                    // Readiness outlives the accept that used it, so ask the
                    // kernel whether a client waits: never wait for a place,
                    // nor close an idle connection, for nobody. (A client
                    // that comes after the check brings readiness of its own.)
                    if !closed && !queued(registered.get_ref()) {
                        if let Some(w) = worker {
                            w.queue_empty();
                        }
                        ready.clear_ready();
                        continue;
                    }
                    // A client waits: for a place (readiness stays set, so
                    // it is taken right after).
                    drop(ready);
                    match full {
                        Full::Cap => turn = Some(totals.cap.make_room().await),
                        Full::Total => wait_for_room(&totals.freed, || totals.has_room()).await,
                        Full::Worker(w) => wait_for_room(&w.freed, || w.has_room()).await,
                    }
                    continue;
                }
            };
            let guard = hold().await;
            let accept =
                |fd: &AsyncFd<StdListener>| accept_nonblocking(fd.get_ref(), &self.proxy, place);
            let error = match ready.try_io(accept) {
                Ok(Ok(accepted)) if refused(&self.proxy, &accepted, totals) => continue,
                Ok(Ok(accepted)) => {
                    if let Some(w) = worker {
                        w.took_from_queue();
                    }
                    return (accepted, guard);
                }
                Ok(Err(e)) => e,
                // Listening again after it was shut down: register afresh.
                Err(_would_block) if closed => match Self::registration(&self.source) {
                    Ok(fresh) => {
                        *self
                            .registered
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
                        continue;
                    }
                    Err(e) => e,
                },
                // Not ready after all: readiness was cleared, wait again.
                Err(_would_block) => {
                    if let Some(w) = worker {
                        w.queue_empty();
                    }
                    continue;
                }
            };
            // Not held through the back-off: a lock's other users (the last
            // listener's `close`, sibling stand-ins) must not wait it out.
            drop(guard);
            backoff.on_error(&error).await;
        }
    }
}

/// Waits until `has_room` (re-checked each time `freed` is notified).
pub(crate) async fn wait_for_room(freed: &Notify, has_room: impl Fn() -> bool) {
    loop {
        let notified = freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if has_room() {
            return;
        }
        notified.await;
    }
}

/// Every connection in `listener`'s queue, counted even past the limits.
pub(crate) fn drain(listener: &StdListener, proxy: &Proxy, totals: &Arc<Totals>) -> Vec<Accepted> {
    std::iter::from_fn(|| accept_nonblocking(listener, proxy, Place::force(totals)).ok())
        .filter(|accepted| !refused(proxy, accepted, totals))
        .collect()
}

/// Whether `accepted` comes from outside a PROXY port's trusted networks:
/// then it is counted and logged (and closed as it is dropped).
fn refused(proxy: &Proxy, accepted: &Accepted, totals: &Totals) -> bool {
    if !proxy.refuses(accepted.peer) {
        return false;
    }
    totals.proxy_rejected.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(peer = ?accepted.peer, "a PROXY port's client outside its trusted networks; closed");
    true
}

/// Whether a connection waits in `listener`'s queue (a poll that does not
/// wait). Anything but "nothing" (an error, a hang-up) says yes, so that
/// the caller goes on as it would: makes room, then accepts.
fn queued(listener: &StdListener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

/// One `accept(2)` for a connection whose place is taken (given back if
/// it fails); the new socket non-blocking and close-on-exec; with `proxy`,
/// its PROXY header is still to be read.
fn accept_nonblocking(listener: &StdListener, proxy: &Proxy, place: Place) -> io::Result<Accepted> {
    let (socket, peer) = accept4(listener)?;
    let mut accepted = match listener {
        StdListener::Tcp(_) => {
            Accepted::new(StdStream::Tcp(socket.into()), peer.as_socket(), place)
        }
        StdListener::Unix(_) => Accepted::new(StdStream::Unix(socket.into()), None, place),
    };
    accepted.proxy_pending = proxy.expected();
    Ok(accepted)
}

#[cfg(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "linux",
    target_os = "netbsd",
    target_os = "openbsd"
))]
fn accept4(listener: &StdListener) -> io::Result<(socket2::Socket, socket2::SockAddr)> {
    // One system call: the flags are set atomically.
    SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
}

#[cfg(not(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "linux",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
fn accept4(listener: &StdListener) -> io::Result<(socket2::Socket, socket2::SockAddr)> {
    let (socket, peer) = SockRef::from(listener).accept()?;
    socket.set_nonblocking(true)?;
    Ok((socket, peer))
}

/// What an accept error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The one connection being accepted is gone (the client gave up, or a
    /// network error pending on it, which Linux reports on `accept`).
    Connection,
    /// Out of fds or memory: accepting more now only spins.
    Resources,
    /// Anything else, such as a socket no longer listening: it may come
    /// back (`listen` again), so the loop waits and tries again.
    Socket,
}

impl Cause {
    pub(crate) fn of(e: &io::Error) -> Cause {
        match e.raw_os_error() {
            Some(
                libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EINTR
                | libc::EAGAIN
                | libc::EPROTO
                | libc::EPERM
                | libc::ETIMEDOUT
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH,
            ) => Cause::Connection,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => Cause::Resources,
            _ => Cause::Socket,
        }
    }
}

/// The error policy of an accept loop: it never ends while its socket is
/// open. A connection's own error skips that connection; any other error
/// is logged (once per run of errors) and waited out, 5 ms doubling to 1 s.
pub(crate) struct Backoff<'a> {
    delay: Duration,
    totals: &'a Totals,
}

impl<'a> Backoff<'a> {
    const MIN: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// Counts every error in the socket's `totals`.
    pub(crate) fn new(totals: &'a Totals) -> Backoff<'a> {
        Backoff {
            delay: Duration::ZERO,
            totals,
        }
    }

    pub(crate) async fn on_error(&mut self, e: &io::Error) {
        self.totals.accept_errors.fetch_add(1, Ordering::Relaxed);
        let cause = Cause::of(e);
        if cause == Cause::Connection {
            tracing::debug!(error = %e, "a connection failed before it was accepted");
            return;
        }
        if cause == Cause::Resources {
            // Out of fds below the cap (other files took them): make room.
            self.totals.cap.evict_oldest(crate::cap::BATCH);
        }
        let first = self.delay.is_zero();
        self.delay = (self.delay * 2).clamp(Self::MIN, Self::MAX);
        if first {
            match cause {
                Cause::Resources => {
                    tracing::warn!(error = %e, "out of file descriptors or memory; accepting again in a moment")
                }
                _ => {
                    tracing::error!(error = %e, "accept failed; trying again, backing off up to 1 s")
                }
            }
        }
        tokio::time::sleep(self.delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes() {
        let of = |n| Cause::of(&io::Error::from_raw_os_error(n));
        for n in [
            libc::ECONNABORTED,
            libc::ENETDOWN,
            libc::EHOSTUNREACH,
            libc::EPROTO,
        ] {
            assert_eq!(of(n), Cause::Connection);
        }
        for n in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(of(n), Cause::Resources);
        }
        for n in [libc::EINVAL, libc::EBADF, libc::ENOTSOCK] {
            assert_eq!(of(n), Cause::Socket);
        }
        assert_eq!(Cause::of(&io::Error::other("no errno")), Cause::Socket);
    }

    /// A lock taken for the delivery (the dispatch's `busy`) is let go
    /// before the back-off: a socket in error (here shut down, so that
    /// `accept(2)` fails with EINVAL for good) must not hold up the last
    /// listener's `close` or a sibling stand-in for up to a second a time.
    #[tokio::test(start_paused = true)]
    async fn the_lock_held_for_delivery_is_let_go_before_the_back_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        SockRef::from(&listener)
            .shutdown(std::net::Shutdown::Read)
            .unwrap();
        let socket = AcceptSocket::register(&StdListener::Tcp(listener), Proxy::Off).unwrap();
        let totals = Arc::new(Totals::new(Arc::new(crate::cap::Cap::new(8)), None));
        let busy = Arc::new(tokio::sync::Mutex::new(()));
        let accepting = tokio::spawn({
            let (totals, busy) = (Arc::clone(&totals), Arc::clone(&busy));
            async move {
                let _ = socket.accept_holding(&totals, None, || busy.lock()).await;
            }
        });
        // Time stands still while this task yields: the accept loop is in
        // its first back-off once the error is counted.
        let mut turns = 0;
        while totals.accept_errors.load(Ordering::Relaxed) == 0 {
            assert!(turns < 100_000, "accept(2) never failed");
            turns += 1;
            tokio::task::yield_now().await;
        }
        assert!(
            busy.try_lock().is_ok(),
            "the lock is held through the back-off"
        );
        accepting.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_doubles_up_to_a_second_and_every_error_counts() {
        let totals = Totals::new(std::sync::Arc::new(crate::cap::Cap::new(8)), None);
        let mut backoff = Backoff::new(&totals);
        let invalid = io::Error::from_raw_os_error(libc::EINVAL);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            backoff.on_error(&invalid).await;
        }
        // 5 + 10 + 20 + … + 640 ms, then 1 s and 1 s.
        assert_eq!(start.elapsed(), Duration::from_millis(1275 + 2000));
        backoff
            .on_error(&io::Error::from_raw_os_error(libc::ECONNABORTED))
            .await;
        assert_eq!(totals.accept_errors.load(Ordering::Relaxed), 11);
    }
}
