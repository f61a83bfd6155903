//! `TlsListener`: TLS over another listener. Its `accept` only wraps the
//! inner listener's connections; each one's handshake (the inner listener's
//! own step, such as a PROXY header, then TLS) runs in `Listener::handshake`,
//! on the connection's own task, so a slow or broken client never holds up
//! the accept loop, and a drain waits for (or, at its deadline, aborts) the
//! handshakes under way as it does for any connection.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::Address;
use tokio_rustls::rustls::{HandshakeKind, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::listener::{Hooks, ListenerExt};
use crate::tls::config::TlsConfig;
use crate::tls::stream::{Handshake, Moved, TlsStream};
use crate::{ConnectionInfo, Error, Listener};

/// A [`Listener`] that speaks TLS over another one (ours, tokio's, your
/// own). Each connection's handshake runs in its own task (the server's
/// task for that connection, through [`Listener::handshake`]) with the
/// handshake timeout; a failed or timed-out one closes that connection only
/// (logged at debug and counted in
/// [`handshake_failures`](Self::handshake_failures)).
///
/// The inner listener's own handshake comes first: on a `cluster_net`
/// listener that expects the PROXY protocol, the header is read (with its
/// timeout and counters) before the TLS handshake, and the client it names
/// is the connection's peer.
pub struct TlsListener<L: Listener> {
    inner: L,
    handshake: Handshake,
}

impl<L: Listener> fmt::Debug for TlsListener<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.inner.local_addr().ok())
            .field("handshake_timeout", &self.handshake.timeout)
            .finish_non_exhaustive()
    }
}

impl<L: Listener> TlsListener<L> {
    /// TLS over `inner` with `config` (read now: PEM files are loaded here;
    /// on a worker, files that cannot be used after an earlier worker
    /// loaded them fine give that earlier certificate, with a warning).
    pub fn new(inner: L, config: &TlsConfig) -> Result<TlsListener<L>, Error> {
        Ok(TlsListener::with_server_config(
            inner,
            config.load_on(cluster_core::worker().as_ref())?,
            config.handshake_timeout,
        ))
    }

    /// TLS over `inner` with a rustls config used as it is.
    pub fn with_server_config(
        inner: L,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
    ) -> TlsListener<L> {
        TlsListener {
            inner,
            handshake: Handshake {
                acceptor: TlsAcceptor::from(config),
                timeout: handshake_timeout,
                failures: Arc::default(),
                slot: cluster_core::worker().map(|w| {
                    cluster_core::hooks::extension::<crate::slots::Slots>(&w).get(w.slot())
                }),
            },
        }
    }

    /// Handshakes that failed or timed out so far.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake.failures.load(Ordering::Relaxed)
    }
}

impl<L: Listener> Listener for TlsListener<L> {
    type Io = TlsStream<L::Io>;

    async fn accept(&mut self) -> (Self::Io, Option<ConnectionInfo>) {
        let (io, info) = self.inner.accept().await;
        (TlsStream::pending(io, self.handshake.clone()), info)
    }

    fn local_addr(&self) -> io::Result<Address> {
        self.inner.local_addr()
    }

    /// The inner listener's handshake (a PROXY header), then TLS's, under
    /// the handshake timeout (a quarter of it while the connection cap is
    /// under pressure).
    async fn handshake(
        io: &mut Self::Io,
        info: Option<ConnectionInfo>,
    ) -> io::Result<Option<ConnectionInfo>> {
        let Some((mut raw, handshake)) = io.take_pending() else {
            return Ok(info);
        };
        let info = L::handshake(&mut raw, info).await?;
        // Moved here by a draining worker: its session goes on.
        if let Some(attached) = L::take_attached(&mut raw) {
            return match attached.downcast::<Moved>() {
                Ok(moved) => {
                    io.resume(raw, *moved);
                    Ok(info)
                }
                Err(_) => Err(io::Error::other(
                    "a moved connection carries a state that is not a TLS session",
                )),
            };
        }
        let mut timeout = handshake.timeout;
        if L::idle_handle(&raw).is_some_and(|cap| cap.under_pressure()) {
            timeout = crate::idle::under_pressure(timeout);
        }
        let peer = info.map(|i| i.peer);
        let failures = &handshake.failures;
        let slot = handshake.slot.as_deref();
        let failed = |e: io::Error| {
            failures.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = slot {
                slot.tls.failed.fetch_add(1, Ordering::Relaxed);
            }
            e
        };
        match tokio::time::timeout(timeout, handshake.acceptor.accept(raw)).await {
            Ok(Ok(stream)) => {
                if let Some(slot) = slot {
                    let kind = stream.get_ref().1.handshake_kind();
                    let count = if kind == Some(HandshakeKind::Resumed) {
                        &slot.tls.resumed
                    } else {
                        &slot.tls.full
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                }
                io.established(stream);
                Ok(info)
            }
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "TLS handshake failed; connection closed");
                Err(failed(e))
            }
            Err(_) => {
                tracing::debug!(
                    ?peer,
                    ?timeout,
                    "TLS handshake timed out; connection closed"
                );
                Err(failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no TLS handshake within {timeout:?}"),
                )))
            }
        }
    }

    fn hooks() -> &'static dyn Hooks<Self> {
        &TlsHooks
    }

    async fn close(self) -> Vec<(Self::Io, Option<ConnectionInfo>)> {
        let TlsListener { inner, handshake } = self;
        inner
            .close()
            .await
            .into_iter()
            .map(|(io, info)| (TlsStream::pending(io, handshake.clone()), info))
            .collect()
    }
}

/// `TlsListener`'s hooks: the inner listener's, with the session.
struct TlsHooks;

impl<L: Listener> Hooks<TlsListener<L>> for TlsHooks {
    fn idle_handle(&self, io: &TlsStream<L::Io>) -> Option<cluster_net::hooks::IdleHandle> {
        io.inner().and_then(L::idle_handle)
    }

    /// The inner listener's: an idle HTTP/1.1 connection moves with its
    /// session to another worker of this process.
    fn migrator(&self, listener: &TlsListener<L>) -> Option<cluster_net::hooks::Migrator> {
        listener.inner.migrator()
    }

    fn moves_in_process_only(&self) -> bool {
        true
    }

    fn client_certificate(&self, io: &TlsStream<L::Io>) -> Option<crate::ClientCertificate> {
        let leaf = io.session()?.peer_certificates()?.first()?;
        Some(crate::ClientCertificate::new(leaf.as_ref()))
    }

    /// The socket, with the session and `read` (plaintext) attached.
    fn connection_of(
        &self,
        io: TlsStream<L::Io>,
        read: Vec<u8>,
    ) -> Result<(cluster_net::Connection, Vec<u8>), TlsStream<L::Io>> {
        let (raw, moved) = io.into_moved(read)?;
        match L::into_connection(raw, Vec::new()) {
            // Bytes the inner stream read ahead (none, for ours) are
            // still TLS records: served first from the socket.
            Ok((mut conn, raw_read)) => {
                cluster_net::hooks::attach(&mut conn, Box::new(moved));
                Ok((conn, raw_read))
            }
            Err(raw) => {
                let mut io = TlsStream::gone();
                io.resume(raw, moved);
                Err(io)
            }
        }
    }
}
