//! The drain: what a server does once its worker is disconnected (or a
//! connection panicked under `on_panic = "restart"`), and what each of its
//! connections does then.
//!
//! - [`run`], the server's side: stop accepting, close the listener (ours
//!   hands back what the primary queued for this worker) and serve what it
//!   returns, set the drain flag and wake every connection, then wait for the
//!   last one to end, or abort those left at the drain deadline.
//! - [`Drain`] / [`DrainFlag`], the signal: a flag on the server's thread,
//!   not a channel: the server wakes every connection task when it sets it
//!   (`Tasks::wake_all`), so no connection registers a waker for it. Also
//!   read by `/healthz`.
//! - [`on_drain`], a connection's side: an HTTP/1.1 connection that can move
//!   runs until it is between two requests with nothing unflushed
//!   ([`Ended::Settled`]); one accepted just before the drain gets a moment
//!   for its first request; the rest shut down gracefully (GOAWAY on HTTP/2).
//! - [`Handoff`] / [`hand_over`]: a settled connection, with the bytes read
//!   from it and not served yet, goes to a live worker through the listener's
//!   `cluster_net::hooks::Migrator` (see `cluster_net::migrate`).

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use cluster_core::{Phase, Worker};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::idle::Activity;
use crate::rewind::StreamRef;
use crate::slots::Slot;
use crate::tasks::Tasks;
use crate::{ConnectionInfo, Listener};

/// How long a connection accepted just before a drain may take to send its
/// first request (at most the header read timeout), when it cannot move.
pub(crate) const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// What the server's drain needs of it.
pub(crate) struct Draining<'a> {
    pub(crate) addr: &'a str,
    pub(crate) worker: &'a Worker,
    pub(crate) slot: &'a Slot,
    pub(crate) drain: &'a Drain,
    pub(crate) conns: &'a Tasks,
    /// The deadline, from the drain's start.
    pub(crate) timeout: Duration,
}

/// The server's drain: `listener` closed, what it hands back given to
/// `start`, every connection told, and waited for until the last ends or
/// `timeout` passes (then aborted). A connection's panic meanwhile goes to
/// `on_panic`.
pub(crate) async fn run<L: Listener>(
    listener: L,
    cx: Draining<'_>,
    mut start: impl FnMut((L::Io, Option<ConnectionInfo>)),
    panics: &mut mpsc::UnboundedReceiver<String>,
    mut on_panic: impl FnMut(String),
) {
    let Draining {
        addr,
        worker,
        slot,
        drain,
        conns,
        timeout,
    } = cx;
    // The primary hands new connections to the other workers from now on.
    // The last worker of the socket gets those already accepted for nobody.
    let leftover = listener.close().await;
    for conn in leftover {
        start(conn);
    }
    drain.start();
    conns.wake_all();
    slot.draining(worker.id());
    tracing::debug!(%addr, open = conns.len(), "stopped accepting; draining the open connections");
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            () = conns.all_ended() => break,
            Some(message) = panics.recv() => on_panic(message),
            () = &mut deadline => {
                tracing::warn!(%addr, open = conns.len(), drain_timeout = ?timeout, "drain deadline passed; closing the connections left");
                conns.abort_all();
                conns.all_ended().await;
                break;
            }
        }
    }
    // A stream that panicked just before its connection ended.
    while let Ok(message) = panics.try_recv() {
        on_panic(message);
    }
    tracing::debug!(%addr, "drained");
}

/// How a connection's driving ended.
pub(crate) enum Ended {
    /// The connection ended.
    Done(Result<(), hyper::Error>),
    /// The server drains, the connection can move, and it is between two
    /// requests with its responses flushed: ready to be taken from hyper.
    Settled,
}

/// A connection's side of the drain, once the flag is seen: with
/// `stream` (HTTP/1.1) and `movable`, drives `http` until it settles
/// (or ends); else, for one that has had no request yet, a moment (at most
/// `first`) for its first one. `None`: shut it down gracefully now.
pub(crate) async fn on_drain<F>(
    http: &mut F,
    activity: &Activity,
    movable: bool,
    stream: Option<&StreamRef>,
    first: Duration,
) -> Option<Ended>
where
    F: Future<Output = Result<(), hyper::Error>> + Unpin,
{
    if let Some(stream) = stream.filter(|_| movable) {
        // Every change of the two happens inside hyper's poll, on this
        // task: checking after each poll misses none.
        return Some(
            poll_fn(|task| match Pin::new(&mut *http).poll(task) {
                Poll::Ready(result) => Poll::Ready(Ended::Done(result)),
                Poll::Pending if activity.in_flight() == 0 && !stream.unflushed() => {
                    Poll::Ready(Ended::Settled)
                }
                Poll::Pending => Poll::Pending,
            })
            .await,
        );
    }
    if activity.requests() == 0 {
        // Accepted just before the drain: its first request may be on its
        // way; give it a moment rather than refuse it.
        tokio::select! {
            biased;
            result = &mut *http => return Some(Ended::Done(result)),
            () = activity.first_request() => {}
            () = tokio::time::sleep(first.min(FIRST_REQUEST_GRACE)) => {}
        }
    }
    None
}

/// How a connection of a draining server moves to a live worker: the
/// listener's migrator, and how to get a `cluster_net` connection back
/// from the listener's stream (TLS streams cannot).
pub(crate) struct Handoff<I> {
    pub(crate) migrator: cluster_net::hooks::Migrator,
    /// Counts what moves.
    pub(crate) slot: Arc<Slot>,
    #[allow(clippy::type_complexity)]
    pub(crate) into_connection: fn(I, Vec<u8>) -> Result<(cluster_net::Connection, Vec<u8>), I>,
    /// Its connections carry a state only this process can serve (TLS).
    pub(crate) in_process_only: bool,
}

/// Whether a connection of `handoff` can move now.
pub(crate) fn movable<I>(handoff: Option<&Rc<Handoff<I>>>) -> bool {
    handoff.is_some_and(|h| {
        if h.in_process_only {
            h.migrator.possible_in_process()
        } else {
            h.migrator.possible()
        }
    })
}

/// Moves `io` to a live worker with the bytes read from it and not served
/// yet (`read`, then `rest`, in that order; for TLS, plaintext, which goes
/// with its session); closes it where it cannot move.
pub(crate) async fn hand_over<I: AsyncWrite + Unpin>(
    handoff: Option<&Handoff<I>>,
    io: I,
    read: Bytes,
    rest: Bytes,
) {
    let Some(handoff) = handoff else { return };
    let mut bytes = Vec::with_capacity(read.len() + rest.len());
    bytes.extend_from_slice(&read);
    bytes.extend_from_slice(&rest);
    let (conn, raw) = match (handoff.into_connection)(io, bytes) {
        Ok(moving) => moving,
        Err(mut io) => {
            let _ = io.shutdown().await;
            return;
        }
    };
    match handoff.migrator.hand_over(conn, &raw) {
        Ok(()) => {
            handoff.slot.migrated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("connection moved to a live worker");
        }
        // The last worker went away in the meantime.
        Err(mut conn) => {
            let _ = conn.shutdown().await;
        }
    }
}

/// Whether this server drains.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    started: Rc<Cell<bool>>,
}

/// A connection's view of its server's [`Drain`].
#[derive(Debug, Clone)]
pub(crate) struct DrainFlag(Rc<Cell<bool>>);

impl DrainFlag {
    /// Whether the drain started.
    pub(crate) fn is_set(&self) -> bool {
        self.0.get()
    }

    /// Ready once the drain started. It registers no waker: it must be
    /// polled by a task the server wakes when the drain starts.
    pub(crate) async fn started(&self) {
        std::future::poll_fn(|_| {
            if self.is_set() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

impl Drain {
    /// Starts the drain; the caller wakes the connections.
    pub(crate) fn start(&self) {
        self.started.set(true);
    }

    /// What a connection reads.
    pub(crate) fn flag(&self) -> DrainFlag {
        DrainFlag(Rc::clone(&self.started))
    }

    /// True once this server drains, this worker was asked to disconnect, or
    /// the cluster is draining or stopping.
    pub(crate) fn is_draining(&self, worker: &Worker) -> bool {
        self.started.get()
            || !worker.is_connected()
            || worker.cluster_info().phase >= Phase::Draining
    }
}
