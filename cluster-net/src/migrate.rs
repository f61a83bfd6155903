//! Connection migration: an open connection changes worker, or process,
//! without its client noticing.
//!
//! - [`Migrator`]: a draining worker's way to hand an idle connection (its
//!   socket, and the bytes already read from it) to another live worker of
//!   the same listener, or, while the cluster drains after a hot upgrade, to
//!   the new process ([`Route`]).
//! - [`Outbox`] (the old process) and [`serve_inbox`] (the new one): the
//!   connections passed over the upgrade's private channel once the new
//!   process has taken the listening sockets over. One thread writes them in
//!   order, and the cluster's stop waits for it, so none is lost when the old
//!   process exits; the new process's inbox thread reads them until the old
//!   process closes the channel and puts each in the dispatch of the socket
//!   with its label.
//! - The connection message on that channel (`CTHC`, below), with the
//!   framing and deadlines of `handoff::scm`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use cluster_core::Worker;
use socket2::{Domain, SockRef};

use crate::conn::{Accepted, Connection, Place, StdStream, Totals};
use crate::dispatch::Dispatch;
use crate::handoff::scm::{describe_peer, prepare, recv_exact, recv_message, send_all, Deadline};
use crate::handoff::wire::{be_u32, truncate, Cursor, Shown, MAX_LABEL};
use crate::handoff::HandoffError;
use crate::registry::Registry;

/// Hands connections of a draining worker to the other live workers of the
/// same listener, from [`Listener::migrator`](crate::Listener::migrator): threads share the process, so
/// an open connection (its socket, and the bytes already read from it) can
/// move to another worker's runtime instead of being closed. The worker
/// that gets it takes it from its `accept`, with those bytes first.
#[derive(Clone)]
pub struct Migrator {
    worker: Worker,
    /// The socket's label, by which a hot upgrade's new process finds it.
    label: Arc<str>,
    dispatch: Arc<Dispatch>,
    /// This worker's inbox in `dispatch`, which a moved connection avoids.
    inbox: u64,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator").finish_non_exhaustive()
    }
}

impl Migrator {
    pub(crate) fn new(
        worker: &Worker,
        label: &str,
        dispatch: Arc<Dispatch>,
        inbox: u64,
    ) -> Migrator {
        Migrator {
            worker: worker.clone(),
            label: label.into(),
            dispatch,
            inbox,
        }
    }

    /// Moves `conn` to another live worker, with `read` (bytes read from it
    /// and not used yet) to be served first; while the cluster drains after
    /// a hot upgrade, to the new process. Gives it back when neither can
    /// take it (no other worker listens on the socket, or the cluster
    /// drains otherwise; or it has an [attached](Connection::attach) state
    /// and only a new process could take it): then close it, as always. (In
    /// the rare case that its socket cannot leave this worker's reactor, it
    /// is closed.)
    #[allow(clippy::result_large_err)] // the connection itself comes back, as with `try_send`
    pub fn hand_over(&self, conn: Connection, read: &[u8]) -> Result<(), Connection> {
        let Some(route) = self.route() else {
            return Err(conn);
        };
        if conn.has_state() && matches!(route, Route::NewProcess(_)) {
            return Err(conn);
        }
        let totals = Arc::clone(conn.totals());
        if let Some(accepted) = conn.into_accepted(read) {
            match route {
                Route::Worker => self.dispatch.deliver_except(accepted, self.inbox),
                Route::NewProcess(outbox) => outbox.pass(&self.label, accepted),
            }
            totals.migrated.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether [`hand_over`](Self::hand_over) would take a connection now.
    pub fn possible(&self) -> bool {
        self.route().is_some()
    }

    /// Whether [`hand_over`](Self::hand_over) would take a connection with
    /// an [attached](Connection::attach) state now: to another worker of
    /// this process only.
    pub fn possible_in_process(&self) -> bool {
        matches!(self.route(), Some(Route::Worker))
    }

    fn route(&self) -> Option<Route> {
        if self.worker.cluster_info().phase < cluster_core::Phase::Draining {
            return self.dispatch.has_other(self.inbox).then_some(Route::Worker);
        }
        let outbox = outbox(&self.worker);
        outbox.is_open().then_some(Route::NewProcess(outbox))
    }
}

/// Where a migrating connection goes.
enum Route {
    /// Another worker of this process.
    Worker,
    /// The new process of a hot upgrade.
    NewProcess(Arc<Outbox>),
}

/// How long one connection may take to go through the channel.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The old process's end of the channel, after a successful upgrade.
#[derive(Default)]
pub(crate) struct Outbox {
    tx: Mutex<Option<mpsc::Sender<PassedConnection>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Outbox {
    /// From now on, connections go to the process at the other end of
    /// `channel` (pid `pid`, for the logs).
    pub(crate) fn open(&self, channel: UnixStream, pid: u32) {
        let (tx, rx) = mpsc::channel::<PassedConnection>();
        let writer = std::thread::Builder::new()
            .name("cluster-thread-passing".into())
            .spawn(move || {
                let (mut passed, mut lost) = (0u64, 0u64);
                for conn in rx {
                    // After one failure the channel is gone: the rest close.
                    if lost == 0 {
                        match send_connection(&channel, conn, SEND_TIMEOUT) {
                            Ok(()) => passed += 1,
                            Err(e) => {
                                tracing::warn!(pid, error = %e, "could not pass a connection to the new process; closing the rest");
                                lost += 1;
                            }
                        }
                    } else {
                        lost += 1;
                    }
                }
                tracing::debug!(pid, passed, lost, "connections passed to the new process");
            });
        match writer {
            Ok(writer) => {
                *lock(&self.tx) = Some(tx);
                *lock(&self.writer) = Some(writer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "no thread to pass connections to the new process: they will close")
            }
        }
    }

    /// Whether connections can go to a new process.
    pub(crate) fn is_open(&self) -> bool {
        lock(&self.tx).is_some()
    }

    /// Queues `conn`, accepted on the socket `socket`, for the new process
    /// (it closes if the outbox is not open: it never closes once open).
    pub(crate) fn pass(&self, socket: &str, conn: Accepted) {
        let tx = lock(&self.tx);
        let Some(tx) = tx.as_ref() else {
            return tracing::debug!("no new process to pass a connection to; closed");
        };
        // Its place here is freed as it leaves for the new process.
        let Accepted {
            stream,
            peer,
            prefix,
            proxy_pending,
            place: _,
            state,
        } = conn;
        if state.is_some() {
            return tracing::debug!(
                "a connection with a protocol state cannot go to another process; closed"
            );
        }
        let fd: OwnedFd = match stream {
            StdStream::Tcp(s) => s.into(),
            StdStream::Unix(s) => s.into(),
        };
        // The writer ends only when the outbox is dropped, after this.
        let _ = tx.send(PassedConnection {
            socket: socket.to_owned(),
            peer,
            proxy_pending,
            read: prefix,
            fd,
        });
    }
}

impl Drop for Outbox {
    /// At the cluster's stop: every queued connection is written before the
    /// process may exit.
    fn drop(&mut self) {
        drop(lock(&self.tx).take());
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// In the new process, once it has acknowledged: serves the connections the
/// old process passes, on the listeners of the same sockets, until the old
/// process closes the channel (it exits), or this cluster is gone.
pub(crate) fn serve_inbox(channel: UnixStream, registry: Weak<Registry>) {
    let inbox = std::thread::Builder::new()
        .name("cluster-thread-inbox".into())
        .spawn(move || loop {
            let conn = match receive_connection(&channel) {
                Ok(Some(conn)) => conn,
                Ok(None) => return tracing::debug!("the old process passed its last connection"),
                Err(e) => return tracing::warn!(error = %e, "the channel from the old process failed; no more connections come from it"),
            };
            let Some(registry) = registry.upgrade() else { return };
            let Some(socket) = registry.socket_by_label(&conn.socket) else {
                tracing::debug!(socket = %conn.socket, "a passed connection of a socket no worker listens on; closed");
                continue;
            };
            match accepted(conn, &socket.totals) {
                Ok(accepted) => socket.dispatch.deliver(accepted),
                Err(e) => tracing::debug!(error = %e, "a passed fd is not a connection; closed"),
            }
        });
    if let Err(e) = inbox {
        tracing::warn!(error = %e, "no thread to take the old process's connections: they will close");
    }
}

/// The connection in the form an acceptor hands to workers, counted under
/// the limits of `totals` (even past them: it is open already).
fn accepted(conn: PassedConnection, totals: &Arc<Totals>) -> std::io::Result<Accepted> {
    let socket = SockRef::from(&conn.fd);
    let (domain, listening) = (socket.domain()?, socket.is_listener()?);
    let stream = match domain {
        _ if listening => return Err(std::io::Error::other("a listening socket")),
        Domain::UNIX => StdStream::Unix(conn.fd.into()),
        Domain::IPV4 | Domain::IPV6 => StdStream::Tcp(conn.fd.into()),
        d => return Err(std::io::Error::other(format!("a {d:?} socket"))),
    };
    Ok(Accepted {
        stream,
        peer: conn.peer,
        prefix: conn.read,
        proxy_pending: conn.proxy_pending,
        place: Place::force(totals),
        state: None,
    })
}

/// The outbox of the cluster `worker` belongs to.
pub(crate) fn outbox(worker: &cluster_core::Worker) -> Arc<Outbox> {
    cluster_core::hooks::extension::<Outbox>(worker)
}

// ---------------------------------------------------------------------------
// The connection message: open connections passed to the new process,
// after the sockets' acknowledgement (`handoff`).
//
// Each is one message: magic `CTHC`, u32 `body_len`, then the body: u16
// length + the id of the listening socket it was accepted on, u16 length +
// its peer address as text (empty: none), one flags byte (bit 0: a PROXY
// header is still to be read), u32 length + the bytes already read from
// it. Its fd travels as `SCM_RIGHTS` on the first byte, alone.

const CONN_MAGIC: [u8; 4] = *b"CTHC";
const CONN_HEADER_LEN: usize = 8;
/// The most bytes read ahead that a connection carries: far more than a
/// request head (hyper's read buffer is bounded by the header size limit).
pub(crate) const MAX_READ_AHEAD: usize = 1 << 20;
const MAX_CONN_BODY: usize = 2 + MAX_LABEL + 2 + MAX_LABEL + 1 + 4 + MAX_READ_AHEAD;
const PROXY_PENDING: u8 = 1;

/// An open connection on its way to the new process.
#[derive(Debug)]
pub(crate) struct PassedConnection {
    /// The id of the listening socket it came from.
    pub(crate) socket: String,
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) proxy_pending: bool,
    /// Bytes read from it and not used yet.
    pub(crate) read: Vec<u8>,
    pub(crate) fd: OwnedFd,
}

/// Sends one connection (the fd is closed here once sent, or not).
pub(crate) fn send_connection(
    stream: &UnixStream,
    conn: PassedConnection,
    timeout: Duration,
) -> Result<(), HandoffError> {
    let peer = describe_peer(stream);
    let shown_peer = conn.peer.map(|p| p.to_string()).unwrap_or_default();
    if conn.socket.len() > MAX_LABEL || conn.read.len() > MAX_READ_AHEAD {
        return Err(HandoffError::Invalid {
            reason: format!(
                "a connection of {:?} with {} bytes read ahead cannot be passed",
                truncate(&conn.socket),
                conn.read.len()
            ),
        });
    }
    let mut body = Vec::with_capacity(9 + conn.socket.len() + shown_peer.len() + conn.read.len());
    for label in [conn.socket.as_str(), shown_peer.as_str()] {
        // At most MAX_LABEL (a socket address is short): fits in a u16.
        let len = u16::try_from(label.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(label.as_bytes());
    }
    body.push(if conn.proxy_pending { PROXY_PENDING } else { 0 });
    // At most MAX_READ_AHEAD, checked above.
    let read_len = u32::try_from(conn.read.len()).unwrap_or(u32::MAX);
    body.extend_from_slice(&read_len.to_be_bytes());
    body.extend_from_slice(&conn.read);
    let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut message = Vec::with_capacity(CONN_HEADER_LEN + body.len());
    message.extend_from_slice(&CONN_MAGIC);
    message.extend_from_slice(&body_len.to_be_bytes());
    message.extend_from_slice(&body);
    send_all(
        stream,
        &message,
        &[conn.fd.as_raw_fd()],
        &Deadline::after(timeout),
        &peer,
        "passing a connection",
    )
}

/// The next connection the old process passes; `None` once it has closed
/// the channel between two messages. Waits as long as it takes.
pub(crate) fn receive_connection(
    stream: &UnixStream,
) -> Result<Option<PassedConnection>, HandoffError> {
    const WHAT: (&str, &str) = ("a connection", "receiving a connection");
    let peer = describe_peer(stream);
    let deadline = Deadline::after(Duration::MAX);
    let mut header = [0u8; CONN_HEADER_LEN];
    let Some(mut got) = recv_message(stream, &mut header, &deadline, &peer, WHAT, true)? else {
        return Ok(None);
    };
    if header[..4] != CONN_MAGIC {
        return Err(HandoffError::protocol(
            &peer,
            format!(
                "bad magic {:?}, expected {:?}",
                Shown(&header[..4]),
                Shown(&CONN_MAGIC)
            ),
        ));
    }
    let body_len = be_u32(&header[4..]);
    if body_len > MAX_CONN_BODY as u64 {
        return Err(HandoffError::protocol(
            &peer,
            format!("a connection of {body_len} bytes announced, at most {MAX_CONN_BODY}"),
        ));
    }
    // Bounded above.
    let mut body = vec![0u8; body_len as usize];
    let rest = recv_exact(stream, &mut body, &deadline, &peer, WHAT)?;
    if got.late || !rest.fds.is_empty() || got.fds.len() != 1 {
        return Err(HandoffError::protocol(
            &peer,
            format!(
                "a connection came with {} file descriptors on its first byte and {} later, expected 1",
                got.fds.len(),
                rest.fds.len()
            ),
        ));
    }
    let mut cursor = Cursor(&body);
    let socket = cursor
        .label()
        .map_err(|e| HandoffError::protocol(&peer, format!("socket id {e}")))?;
    let shown_peer = cursor
        .label()
        .map_err(|e| HandoffError::protocol(&peer, format!("peer {e}")))?;
    let peer_addr = match shown_peer.as_str() {
        "" => None,
        p => Some(
            p.parse()
                .map_err(|_| HandoffError::protocol(&peer, format!("bad peer address {p:?}")))?,
        ),
    };
    let flags = cursor
        .take(1)
        .map(|b| b[0])
        .ok_or_else(|| HandoffError::protocol(&peer, "flags truncated"))?;
    let read_len = cursor
        .take(4)
        .map(be_u32)
        .ok_or_else(|| HandoffError::protocol(&peer, "read-ahead length truncated"))?;
    let read = cursor
        .take(usize::try_from(read_len).unwrap_or(usize::MAX))
        .ok_or_else(|| {
            HandoffError::protocol(&peer, format!("{read_len} bytes of read-ahead truncated"))
        })?
        .to_vec();
    if !cursor.0.is_empty() {
        return Err(HandoffError::protocol(
            &peer,
            format!("{} bytes after a connection", cursor.0.len()),
        ));
    }
    let fd = got.fds.remove(0);
    prepare(fd.as_fd()).map_err(|source| {
        HandoffError::io(
            &peer,
            "setting close-on-exec and non-blocking on a passed connection",
            source,
        )
    })?;
    Ok(Some(PassedConnection {
        socket,
        peer: peer_addr,
        proxy_pending: flags & PROXY_PENDING != 0,
        read,
        fd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_passes_with_its_peer_and_bytes() {
        let (old, new) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, peer) = listener.accept().unwrap();
        let conn = PassedConnection {
            socket: "tcp 127.0.0.1:0 #0".into(),
            peer: Some(peer),
            proxy_pending: true,
            read: b"GET / HT".to_vec(),
            fd: served.into(),
        };
        send_connection(&old, conn, Duration::from_secs(5)).unwrap();
        drop(old);
        let got = receive_connection(&new).unwrap().expect("a connection");
        assert_eq!(got.socket, "tcp 127.0.0.1:0 #0");
        assert_eq!(got.peer, Some(peer));
        assert!(got.proxy_pending);
        assert_eq!(got.read, b"GET / HT");
        // The same TCP connection: what the client sends arrives on it.
        use std::io::{Read, Write};
        client.write_all(b"TP/1.1").unwrap();
        let mut stream = std::net::TcpStream::from(got.fd);
        stream.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 6];
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"TP/1.1");
        // Closed between messages: the end, not an error.
        assert!(receive_connection(&new).unwrap().is_none());
    }

    #[test]
    fn a_malformed_connection_message_is_refused() {
        use std::io::Write;
        let (mut old, new) = UnixStream::pair().unwrap();
        old.write_all(b"CTHX\0\0\0\0").unwrap();
        let e = receive_connection(&new).unwrap_err();
        assert!(e.to_string().contains("bad magic"), "{e}");
        // A message without its fd.
        let (mut old, new) = UnixStream::pair().unwrap();
        old.write_all(b"CTHC\0\0\0\x09\0\x01a\0\0\0\0\0\0").unwrap();
        let e = receive_connection(&new).unwrap_err();
        assert!(e.to_string().contains("expected 1"), "{e}");
        // A length past the limit is refused before anything is allocated.
        let (mut old, new) = UnixStream::pair().unwrap();
        old.write_all(b"CTHC\xff\xff\xff\xff").unwrap();
        let e = receive_connection(&new).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
