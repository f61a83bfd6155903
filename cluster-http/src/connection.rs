//! One connection: HTTP/1.1 or HTTP/2 (told apart by the client's first
//! bytes), shut down gracefully when it stays idle or the server drains,
//! or, when the server drains, handed to a live worker between two
//! HTTP/1.1 requests (see [`HttpConfig::migrate`]).

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use hyper::body::Body;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::drain::{self, DrainFlag, Ended, Handoff};
use crate::exec::LocalExec;
use crate::handler::Handler;
use crate::idle::{Activity, IdleFor};
use crate::rewind::{Rewind, StreamRef};
use crate::{BoxError, HttpConfig, Request};

/// hyper's connection settings of both protocols, from `config` (validated).
#[derive(Debug)]
pub(crate) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<LocalExec>,
}

impl Builders {
    pub(crate) fn new(config: &HttpConfig, exec: LocalExec) -> Builders {
        let mut http1 = http1::Builder::new();
        // No timer, so no header read timeout of hyper's: it costs a boxed
        // sleep per request. `IdleLimits::http1` keeps the same limit (a
        // request starts only once its head is read).
        http1
            .keep_alive(true)
            // The read buffer bounds the request head: past it, 431.
            .max_buf_size(config.max_header_size);
        let mut http2 = http2::Builder::new(exec);
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX));
        Builders { http1, http2 }
    }

    /// The HTTP/2 server, for HTTP/3's requests (bridged through it).
    #[cfg(feature = "http3")]
    pub(crate) fn http2(&self) -> &http2::Builder<LocalExec> {
        &self.http2
    }
}

/// The HTTP/2 client preface; anything else is HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much a connection reads before hyper does: a whole request head,
/// usually, so that hyper need not read again.
const FIRST_READ: usize = 2048;

/// How long a connection may stay without a request in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleLimits {
    /// Before its first request: the shorter of the header read and
    /// keep-alive timeouts.
    pub(crate) first: Duration,
    /// After a request, on HTTP/1: the same (hyper's header read timeout
    /// would run from there too).
    pub(crate) http1: Duration,
    /// After a request, on HTTP/2: the keep-alive timeout.
    pub(crate) http2: Duration,
}

/// What every connection of one server is given.
pub(crate) struct Setup<I> {
    pub(crate) builders: Rc<Builders>,
    /// Read on every wake: the server wakes its connections when it sets it.
    pub(crate) drain: DrainFlag,
    pub(crate) idle: IdleLimits,
    pub(crate) handoff: Option<Rc<Handoff<I>>>,
}

/// Serves one connection until it ends: the client closes it, it stays idle
/// past its limit, the drain closes it (after its requests in flight), or
/// the drain moves it to a live worker.
pub(crate) async fn serve<I, S, B>(
    mut io: I,
    peer: Option<SocketAddr>,
    handler: Handler<S>,
    activity: Rc<Activity>,
    cx: Setup<I>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: 'static,
        > + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    // In the connection's span, which names the peer.
    tracing::debug!("connection open");
    let mut first = BytesMut::with_capacity(FIRST_READ);
    let first_limit = activity.first_limit(cx.idle.first);
    // One timer for the connection's life: until its first request, then
    // between requests.
    let idle = activity.idle_for(first_limit, first_limit);
    tokio::pin!(idle);
    let h2 = tokio::select! {
        biased;
        h2 = is_h2(&mut io, &mut first) => match h2 {
            Ok(h2) => h2,
            Err(e) => return log(peer, Err(e)),
        },
        () = cx.drain.started() => {
            if drain::movable(cx.handoff.as_ref()) {
                let handoff = cx.handoff.as_deref();
                return drain::hand_over(handoff, io, first.freeze(), Bytes::new()).await;
            }
            // It cannot move: a moment for its first bytes, as for its
            // first request below, rather than hold the drain.
            let grace = first_limit.min(drain::FIRST_REQUEST_GRACE);
            match tokio::time::timeout(grace, is_h2(&mut io, &mut first)).await {
                Ok(Ok(h2)) => h2,
                Ok(Err(e)) => return log(peer, Err(e)),
                Err(_) => return,
            }
        }
        () = &mut idle => return,
        () = activity.evicted() => return,
    };
    let stream = StreamRef::default();
    let io = TokioIo::new(Rewind::new(first.freeze(), io, StreamRef::clone(&stream)));
    if h2 {
        let mut http = cx.builders.http2.serve_connection(io, handler);
        idle.as_mut().set_after(cx.idle.http2);
        // Never `Settled` without `stream`.
        if let Ended::Done(result) = drive(
            &mut http,
            |h| h.graceful_shutdown(),
            &activity,
            &cx,
            idle,
            None,
        )
        .await
        {
            log(peer, result);
        }
        return;
    }
    // In a block: hyper's connection (and the stream, unless upgraded)
    // is dropped at its end.
    let result = {
        let mut http = cx
            .builders
            .http1
            .serve_connection(io, handler)
            .with_upgrades();
        idle.as_mut().set_after(cx.idle.http1);
        match drive(
            &mut http,
            |h| h.graceful_shutdown(),
            &activity,
            &cx,
            idle,
            Some(&stream),
        )
        .await
        {
            Ended::Done(result) => result,
            // Where none can take it after all, it closes as always.
            Ended::Settled if !drain::movable(cx.handoff.as_ref()) => {
                Pin::new(&mut http).graceful_shutdown();
                http.await
            }
            Ended::Settled => {
                // `None`: upgraded, so no longer ours.
                if let Some(parts) = http.into_parts() {
                    let (io, rest) = parts.io.into_inner().into_parts();
                    drain::hand_over(cx.handoff.as_deref(), io, parts.read_buf, rest).await;
                }
                return;
            }
        }
    };
    log(peer, result);
    // Upgraded (a WebSocket, `101 Switching Protocols`): the stream lives
    // on with the handler that took it. The connection counts, and a
    // drain waits for it (up to its deadline, which aborts this task, and
    // then the worker's end drops the handler's), until it is let go.
    stream.dropped().await;
}

/// Whether the client speaks HTTP/2: reads until its first bytes either
/// differ from the HTTP/2 preface or are all of it. On EOF: HTTP/1 (hyper
/// then sees the connection end).
async fn is_h2<I: AsyncRead + Unpin>(io: &mut I, buf: &mut BytesMut) -> std::io::Result<bool> {
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        if io.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
}

/// Runs `http` to its end, shutting it down gracefully when the drain
/// starts (after a moment for the first request of one accepted just
/// before), it stays idle too long (`idle` fires), or the connection cap
/// needs its place. With `stream` (HTTP/1), a drain
/// that can move the connection instead waits for its request in flight
/// and its response, then returns [`Ended::Settled`].
async fn drive<I, F>(
    http: &mut F,
    shut_down: impl FnOnce(Pin<&mut F>),
    activity: &Activity,
    cx: &Setup<I>,
    mut idle: Pin<&mut IdleFor<'_>>,
    stream: Option<&StreamRef>,
) -> Ended
where
    F: Future<Output = Result<(), hyper::Error>> + Unpin,
{
    let evicted = activity.evicted();
    tokio::pin!(evicted);
    // The drain flag is read on every wake (the server wakes us when it
    // sets it). The timer and the eviction are polled once, to be woken by
    // them, and from then on only when a cheap check says they may be
    // ready: the task wakes for every request, and polling them each time
    // costs more than hyper's own work on a keep-alive request. Biased to
    // `http`: on a wake-up, the connection reads what the client already
    // sent before it is told to shut down, so no request already sent is
    // lost.
    let mut primed = false;
    let woke = poll_fn(|task| {
        if let Poll::Ready(result) = Pin::new(&mut *http).poll(task) {
            return Poll::Ready(Woke::Ended(result));
        }
        let all = !std::mem::replace(&mut primed, true);
        if cx.drain.is_set() {
            return Poll::Ready(Woke::Drain);
        }
        if (all || idle.may_be_due()) && idle.as_mut().poll(task).is_ready() {
            return Poll::Ready(Woke::Idle);
        }
        if (all || activity.eviction_asked()) && evicted.as_mut().poll(task).is_ready() {
            return Poll::Ready(Woke::Evicted);
        }
        Poll::Pending
    })
    .await;
    match woke {
        Woke::Ended(result) => return Ended::Done(result),
        Woke::Drain => {
            let movable = drain::movable(cx.handoff.as_ref());
            if let Some(ended) =
                drain::on_drain(http, activity, movable, stream, cx.idle.first).await
            {
                return ended;
            }
        }
        // HTTP/1: no request in flight, perhaps a head arriving too slowly
        // (hyper would finish reading it): closed now, as hyper's own
        // header read timeout does.
        Woke::Idle if stream.is_some() => {
            tracing::trace!("no request for too long; closing the connection");
            return Ended::Done(Ok(()));
        }
        Woke::Idle => tracing::trace!("connection idle; closing it"),
        Woke::Evicted => {
            tracing::debug!("idle connection closed to admit a new one (connection cap)");
        }
    }
    shut_down(Pin::new(&mut *http));
    Ended::Done(http.await)
}

/// What woke [`drive`] first.
enum Woke {
    Ended(Result<(), hyper::Error>),
    Drain,
    Idle,
    Evicted,
}

fn log<E: std::fmt::Display>(peer: Option<SocketAddr>, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::debug!(?peer, error = %e, "connection ended with an error");
    }
}
