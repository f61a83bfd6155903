//! The accept loop: accept and spawn connections until the worker is
//! disconnected (or a connection panics), then hand over to the drain
//! (`drain::run`).

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use cluster_core::hooks;
use http::Response;
use hyper::body::Body;
use tokio::sync::mpsc;

use crate::connection::{self, Builders, IdleLimits, Setup};
use crate::drain::{self, Drain, Draining, Handoff};
use crate::endpoints::Endpoints;
use crate::exec::LocalExec;
use crate::handler::{Handler, Info, Shared};
use crate::idle::Activity;
use crate::listener::ListenerExt;
use crate::slots::{Slot, Slots};
use crate::tasks::Tasks;
use crate::{BoxError, ConnectionInfo, Error, HttpConfig, Listener, OnPanic, Request};

/// Keeps its server counted as its slot's until dropped: when `run`
/// returns, or with its worker's runtime (a panic, a kill).
struct Attached<'a> {
    slot: &'a Slot,
    id: u64,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.slot.detach(self.id);
    }
}

/// Serves `listener` with `service` until the worker is disconnected and
/// the connections have ended (or the drain deadline passed).
pub(crate) async fn run<L, S, B>(
    mut listener: L,
    config: HttpConfig,
    service: S,
) -> Result<(), Error>
where
    L: Listener,
    S: hyper::service::Service<
            Request,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: 'static,
        > + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    let addr = match listener.local_addr() {
        Ok(a) => a.to_string(),
        Err(e) => format!("<unknown address: {e}>"),
    };
    let worker = cluster_core::worker().ok_or_else(|| Error::NotAWorker { addr: addr.clone() })?;
    if let Err(e) = config.validate() {
        // Every worker would hit it: while starting, stop the cluster with it.
        hooks::fail_start(&worker, e.to_string());
        return Err(e);
    }
    #[cfg(feature = "http3")]
    let http3 = match http3(&worker, &listener, &config) {
        Ok(h) => h,
        Err(e) => {
            hooks::fail_start(&worker, e.to_string());
            return Err(e);
        }
    };
    #[cfg(feature = "http3")]
    let alt_svc = http3.as_ref().and_then(crate::http3::Http3::alt_svc);
    #[cfg(not(feature = "http3"))]
    let alt_svc = None;
    let (panic_tx, mut panics) = mpsc::unbounded_channel();
    let conns = Tasks::new(panic_tx.clone());
    let exec = LocalExec::new(panic_tx);
    let builders = Rc::new(Builders::new(&config, exec.clone()));
    #[cfg(feature = "metrics")]
    if config.metrics.is_some() {
        // The recorder from now on, so that what the service records shows.
        let _ = crate::metrics::user::handle();
    }
    let slot = Slots::of(&worker, config.status.is_some());
    slot.attach(&worker);
    let _attached = Attached {
        slot: &slot,
        id: worker.id(),
    };
    let shared = Rc::new(Shared {
        worker: worker.clone(),
        slot: Arc::clone(&slot),
        endpoints: Endpoints::new(
            config.healthz.clone(),
            config.metrics.clone(),
            config.status.clone(),
        ),
        drain: Drain::default(),
        alt_svc,
    });
    let service = Rc::new(service);
    #[cfg(feature = "http3")]
    let quic_endpoint = http3.as_ref().map(crate::http3::Http3::endpoint);
    #[cfg(feature = "http3")]
    if let Some(h) = http3 {
        h.start(
            Rc::clone(&shared),
            Rc::clone(&service),
            &conns,
            Rc::clone(&builders),
            exec.clone(),
        );
    }
    #[cfg(not(feature = "http3"))]
    let _ = exec;
    let first = config.header_read_timeout.min(config.keep_alive_timeout);
    let idle = IdleLimits {
        first,
        http1: first,
        http2: config.keep_alive_timeout,
    };
    let on_panic = |message: String, failure: &mut Option<Error>| match config.on_panic {
        OnPanic::Restart => {
            tracing::error!(%addr, %message, "a connection panicked; draining this worker so that it is replaced (on_panic = restart)");
            if failure.is_none() {
                *failure = Some(Error::ConnectionPanicked {
                    addr: addr.clone(),
                    message,
                });
            }
        }
        OnPanic::Ignore => {
            tracing::error!(%addr, %message, "a connection panicked; serving on (on_panic = ignore)");
        }
    };
    // Taken now: a closed listener has none.
    let handoff = listener
        .migrator()
        .filter(|_| config.migrate)
        .map(|migrator| {
            Rc::new(Handoff {
                migrator,
                slot: Arc::clone(&slot),
                into_connection: L::into_connection,
                in_process_only: L::moves_in_process_only(),
            })
        });
    let mut failure = None;
    let start = |(mut io, info): (L::Io, Option<ConnectionInfo>)| {
        let activity = Activity::new(Arc::clone(&shared.slot), L::idle_handle(&io));
        let (service, shared) = (Rc::clone(&service), Rc::clone(&shared));
        let setup = Setup {
            builders: Rc::clone(&builders),
            drain: shared.drain.flag(),
            idle,
            handoff: handoff.clone(),
        };
        let span = tracing::debug_span!("connection", peer = ?info.map(|i| i.peer));
        conns.spawn(tracing::Instrument::instrument(
            async move {
                // Before HTTP, on the connection's own task: a PROXY header
                // (the cap may close it meanwhile, as a silent connection).
                let handshake = tokio::select! {
                    handshake = L::handshake(&mut io, info) => handshake,
                    () = activity.evicted() => return,
                };
                let info = match handshake {
                    Ok(info) => info,
                    Err(e) => {
                        tracing::debug!(error = %e, "connection refused before HTTP");
                        return;
                    }
                };
                let client = L::client_certificate(&io);
                let handler = Handler::new(
                    service,
                    shared,
                    Rc::clone(&activity),
                    Info::Fixed(info),
                    client,
                );
                // Boxed: the connection's state is kilobytes, and a task's
                // future is moved and rewritten whole as it is spawned and
                // as it ends.
                let peer = info.map(|i| i.peer);
                Box::pin(connection::serve(io, peer, handler, activity, setup)).await;
            },
            span,
        ));
    };

    let disconnected = worker.disconnected();
    tokio::pin!(disconnected);
    // The disconnect and the panics are polled once, to be woken by them,
    // and from then on only when a cheap check says they may be ready: this
    // loop turns once per connection, and a pending watch takes a lock each
    // time it is polled.
    let mut primed = false;
    while failure.is_none() {
        let accept = listener.accept();
        tokio::pin!(accept);
        let next = poll_fn(|task| {
            let all = !std::mem::replace(&mut primed, true);
            if (all || !worker.is_connected()) && disconnected.as_mut().poll(task).is_ready() {
                return Poll::Ready(None);
            }
            if all || !panics.is_empty() {
                if let Poll::Ready(Some(message)) = panics.poll_recv(task) {
                    return Poll::Ready(Some(Err(message)));
                }
            }
            accept.as_mut().poll(task).map(|conn| Some(Ok(conn)))
        })
        .await;
        match next {
            None => {
                tracing::debug!(%addr, "worker disconnected: draining");
                break;
            }
            Some(Err(message)) => on_panic(message, &mut failure),
            Some(Ok(conn)) => start(conn),
        }
    }

    let drain = Draining {
        addr: &addr,
        worker: &worker,
        slot: &slot,
        drain: &shared.drain,
        conns: &conns,
        timeout: config.drain_deadline(worker.shutdown_timeout()),
    };
    drain::run(listener, drain, start, &mut panics, |message| {
        on_panic(message, &mut failure);
    })
    .await;
    #[cfg(feature = "http3")]
    if let Some(endpoint) = quic_endpoint {
        crate::http3::closed(endpoint).await;
    }
    failure.map_or(Ok(()), Err)
}

/// The HTTP/3 endpoint beside `listener`, on the UDP port of its number,
/// when the config asks for it.
#[cfg(feature = "http3")]
fn http3<L: Listener>(
    worker: &cluster_core::Worker,
    listener: &L,
    config: &HttpConfig,
) -> Result<Option<crate::http3::Http3>, Error> {
    if !config.http3 {
        return Ok(None);
    }
    match listener.local_addr() {
        Ok(cluster_core::Address::Tcp(addr)) => {
            crate::http3::Http3::bind(worker, addr, config).map(Some)
        }
        Ok(other) => Err(Error::BadSetting {
            setting: "http3",
            value: other.to_string(),
            reason: "HTTP/3 needs a TCP listener (its port number is the UDP port's)",
        }),
        Err(e) => Err(Error::BadSetting {
            setting: "http3",
            value: e.to_string(),
            reason: "the listener's address is unknown",
        }),
    }
}
