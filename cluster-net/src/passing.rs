//! Open connections that outlive a hot upgrade: once the new process has
//! taken the listening sockets over, the old one's draining workers pass
//! their idle keep-alive connections (each socket, with the bytes already
//! read from it) over the same private channel, and the new process serves
//! them on from its `accept`, as connections moved between workers are.
//!
//! The old side is [`Outbox`], a cluster extension opened by a successful
//! upgrade: one thread writes the connections to the channel in order, and
//! the cluster's stop waits for it, so none is lost when the old process
//! exits. The new side is [`serve_inbox`]: a thread that reads them until
//! the old process closes the channel.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, SockRef};

use crate::conn::{Accepted, Place, StdStream, Totals};
use crate::handoff::{self, PassedConnection};
use crate::registry::Registry;

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
                        match handoff::send_connection(&channel, conn, SEND_TIMEOUT) {
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
        } = conn;
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
            let conn = match handoff::receive_connection(&channel) {
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
    })
}

/// The outbox of the cluster `worker` belongs to.
pub(crate) fn outbox(worker: &cluster_core::Worker) -> Arc<Outbox> {
    cluster_core::hooks::extension::<Outbox>(worker)
}
