//! HTTP/3 beside TCP (feature `http3`): a quinn endpoint per worker on its
//! slot's socket of the port's reuseport group (`cluster_net`'s
//! `listen_quic`, the TCP listener's port number), its datagrams routed by
//! connection ID ([`socket`]), its IDs naming it ([`cid`]), each
//! connection's requests served by the same service ([`bridge`]).

mod bridge;
mod cid;
mod socket;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cluster_core::Worker;
use cluster_net::{QuicRouter, WorkerExt};
use quinn::crypto::rustls::QuicServerConfig;

use crate::connection::Builders;
use crate::exec::LocalExec;
use crate::handler::{Handler, Info, Shared};
use crate::idle::Activity;
use crate::tasks::Tasks;
use crate::{BoxError, Error, HttpConfig, Request};

/// Past this many handshakes in progress on one endpoint, a client must
/// prove its address first (a Retry): an Initial flood from spoofed
/// addresses then costs a stateless packet each, not a connection.
const RETRY_ABOVE: usize = 64;

/// Counts a QUIC connection open while it lives.
struct QuicOpen(Arc<crate::slots::Slot>);

impl QuicOpen {
    fn new(slot: Arc<crate::slots::Slot>) -> QuicOpen {
        slot.quic.accepted.fetch_add(1, Ordering::Relaxed);
        slot.quic.active.fetch_add(1, Ordering::Relaxed);
        QuicOpen(slot)
    }
}

impl Drop for QuicOpen {
    fn drop(&mut self) {
        self.0.quic.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's HTTP/3 endpoint, bound, not yet serving.
pub(crate) struct Http3 {
    endpoint: quinn::Endpoint,
    router: QuicRouter,
    addr: SocketAddr,
}

impl Http3 {
    /// The endpoint on `addr`'s UDP port, with `config`'s TLS (ALPN `h3`).
    pub(crate) fn bind(
        worker: &Worker,
        addr: SocketAddr,
        config: &HttpConfig,
    ) -> Result<Http3, Error> {
        let fail = |reason: String| Error::Http3 { addr, reason };
        let Some(tls) = &config.tls else {
            return Err(fail("HTTP/3 needs TLS".into()));
        };
        let mut tls = (*tls.load_on(Some(worker))?).clone();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        tls.max_early_data_size = 0;
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| fail(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.keep_alive_timeout)
                .map_err(|e| fail(e.to_string()))?,
        ));
        server.transport_config(Arc::new(transport));

        let (socket, router) = worker.listen_quic(addr)?.into_parts();
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let inner = runtime
            .wrap_udp_socket(socket)
            .map_err(|e| fail(e.to_string()))?;
        let slot = cluster_core::hooks::extension::<crate::slots::Slots>(worker).get(worker.slot());
        let steered = Arc::new(socket::SteeredSocket {
            inner,
            router: router.clone(),
            slot,
        });
        let mut endpoint_config = quinn::EndpointConfig::default();
        let ids = router.clone();
        endpoint_config.cid_generator(move || Box::new(cid::Generator(ids.clone())));
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server),
            steered,
            runtime,
        )
        .map_err(|e| fail(e.to_string()))?;
        let addr = endpoint.local_addr().map_err(|e| fail(e.to_string()))?;
        tracing::debug!(%addr, slot = router.slot(), generation = router.generation(), kernel_steers = router.kernel_steers(), "serving HTTP/3");
        Ok(Http3 {
            endpoint,
            router,
            addr,
        })
    }

    /// `Alt-Svc` for the TCP responses.
    pub(crate) fn alt_svc(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::try_from(format!("h3=\":{}\"", self.addr.port())).ok()
    }

    /// A handle on the endpoint, to wait for its last packets at the end.
    pub(crate) fn endpoint(&self) -> quinn::Endpoint {
        self.endpoint.clone()
    }

    /// Accepts QUIC connections in a task of `conns` until the drain, each
    /// connection in a task of its own there.
    pub(crate) fn start<S, B>(
        self,
        shared: Rc<Shared>,
        service: Rc<S>,
        conns: &Tasks,
        builders: Rc<Builders>,
        exec: LocalExec,
    ) where
        S: hyper::service::Service<
                Request,
                Response = http::Response<B>,
                Error: Into<BoxError>,
                Future: 'static,
            > + 'static,
        B: hyper::body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + 'static,
    {
        let spawner = conns.clone();
        conns.spawn(async move {
            let Http3 {
                endpoint,
                router,
                addr,
            } = self;
            let drain = shared.drain.flag();
            let handshaking = Rc::new(Cell::new(0usize));
            loop {
                let incoming = tokio::select! {
                    biased;
                    () = drain.started() => break,
                    incoming = endpoint.accept() => incoming,
                };
                let Some(incoming) = incoming else { break };
                if handshaking.get() >= RETRY_ABOVE && incoming.may_retry() {
                    shared.slot.quic.retries.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().ignore();
                    }
                    continue;
                }
                let (shared, service, builders, exec) = (
                    Rc::clone(&shared),
                    Rc::clone(&service),
                    Rc::clone(&builders),
                    exec.clone(),
                );
                // Counted here: the tasks spawned may not have run yet
                // when the next Initial is accepted.
                handshaking.set(handshaking.get() + 1);
                let handshaking = Rc::clone(&handshaking);
                spawner.spawn(async move {
                    // A handshake under way when the drain starts goes on
                    // (bounded by the idle timeout): its client is served,
                    // then told GOAWAY.
                    let connected = incoming.await;
                    handshaking.set(handshaking.get() - 1);
                    let conn = match connected {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::debug!(error = %e, "QUIC handshake failed");
                            return;
                        }
                    };
                    let activity = Activity::new(Arc::clone(&shared.slot), None);
                    let _open = QuicOpen::new(Arc::clone(&shared.slot));
                    let drain = shared.drain.flag();
                    let shared_slot = Arc::clone(&shared.slot);
                    let client = client_certificate(&conn);
                    let handler = Handler::new(
                        service,
                        shared,
                        activity,
                        Info::Quic(conn.clone(), addr),
                        client,
                    );
                    let slot = Arc::clone(&shared_slot);
                    bridge::serve(conn, handler, builders, exec, drain, slot).await;
                });
            }
            // From now on, clients' first packets go to an endpoint that
            // is not draining; anything new still reaching this one is refused.
            router.stop_accepting();
            endpoint.set_server_config(None);
            tracing::debug!(%addr, "HTTP/3: no new connections");
        });
    }
}

/// The certificate the client presented and the TLS config's client CA
/// verified (`TlsConfig::client_ca`), as over TCP: quinn's rustls session
/// gives the chain as its peer identity.
fn client_certificate(conn: &quinn::Connection) -> Option<crate::ClientCertificate> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    Some(crate::ClientCertificate::new(chain.first()?.as_ref()))
}

/// How long a drained endpoint waits at most for its connections' last
/// packets (their CONNECTION_CLOSE) to go out before the worker ends.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// After the drain: lets `endpoint` send its connections' closes.
pub(crate) async fn closed(endpoint: quinn::Endpoint) {
    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
}
