//! What `serve` takes connections from: a small trait in the spirit of
//! `axum::serve::Listener`, implemented by `cluster-net`'s listener, by
//! tokio's `TcpListener`, and (feature `tls`) `TlsListener` around any of them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use cluster_core::Address;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// The addresses of a TCP connection, in every request's extensions:
/// `req.extensions().get::<ConnectionInfo>()` (with the `axum` feature,
/// axum's `ConnectInfo<SocketAddr>` extractor reads the same peer).
/// Unix-domain connections have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address of this end of the connection: the one the client
    /// reached, even on a listener bound to `0.0.0.0`.
    pub local: SocketAddr,
}

impl ConnectionInfo {
    /// The addresses of a connection from `peer` to `local`.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> ConnectionInfo {
        ConnectionInfo { peer, local }
    }
}

/// The certificate a TLS client presented and the server verified
/// ([`TlsConfig::client_ca`](crate::TlsConfig::client_ca), feature `tls`),
/// in every request's extensions of that connection:
/// `req.extensions().get::<ClientCertificate>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: std::sync::Arc<[u8]>,
}

impl ClientCertificate {
    /// The client's end-entity certificate, as `der` (X.509, DER).
    pub fn new(der: &[u8]) -> ClientCertificate {
        ClientCertificate { der: der.into() }
    }

    /// The certificate, DER-encoded X.509 (parse it with the crate of your
    /// choice for its subject or SANs).
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// A source of connections for [`serve`](crate::serve) and
/// [`Server`](crate::Server): `cluster_net::Listener` (from
/// `worker.listen(...)`), `tokio::net::TcpListener`, a `TlsListener`
/// (feature `tls`) around either, or your own.
///
/// Unlike `axum::serve::Listener`, neither the listener nor its futures
/// need to be `Send`: a server runs on its worker's `LocalSet`. The streams
/// do (hyper hands upgraded connections out as `Send` values).
pub trait Listener: Sized + 'static {
    /// A connection's stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection, with its addresses (`None` where it has no IP
    /// address, as on a Unix-domain socket). Never fails: an error of the
    /// underlying `accept` is handled (logged, waited out) inside, so that
    /// a server never stops accepting while its socket is open. Must be
    /// cancel-safe: the server drops the future whenever something else
    /// happens first.
    fn accept(&mut self) -> impl Future<Output = (Self::Io, Option<ConnectionInfo>)>;

    /// The address listened on, for logs and errors.
    fn local_addr(&self) -> io::Result<Address>;

    /// Stops accepting for good, when the server drains; returns the
    /// connections already accepted for this listener and not yet handed
    /// out, which the server then serves before it ends. The default drops
    /// the listener and returns none; `cluster_net::Listener` returns those
    /// the primary had queued for it, so a drain loses none.
    fn close(self) -> impl Future<Output = Vec<(Self::Io, Option<ConnectionInfo>)>> {
        drop(self);
        std::future::ready(Vec::new())
    }

    /// What a new connection goes through before HTTP, on its own task
    /// (so a slow one delays nobody else): `cluster_net::Listener` reads a
    /// PROXY protocol header there, when its listener expects one, and the
    /// addresses become the client's. An error closes the connection. The
    /// default passes it through.
    fn handshake(
        io: &mut Self::Io,
        info: Option<ConnectionInfo>,
    ) -> impl Future<Output = io::Result<Option<ConnectionInfo>>> {
        let _ = io;
        std::future::ready(Ok(info))
    }

    /// What only this crate's listeners have (`sealed::Hooks`): hidden,
    /// and sealed, since its type cannot be named outside this crate; other
    /// listeners keep the default, none.
    #[doc(hidden)]
    fn hooks() -> &'static dyn Hooks<Self> {
        &NoHooks
    }
}

/// The hooks' type, in a module no other crate can name: so no listener
/// outside this crate can override [`Listener::hooks`].
mod sealed {
    use super::{ClientCertificate, Listener};

    /// What `serve` asks of a listener beyond [`Listener`]'s four methods:
    /// `cluster_net`'s plumbing (the connection cap's idle marks,
    /// migration to another worker) and TLS's client certificate. Each
    /// default is "none".
    pub trait Hooks<L: Listener> {
        /// The certificate the client presented and the server verified,
        /// once `handshake` is done (`TlsListener` with a client CA).
        fn client_certificate(&self, io: &L::Io) -> Option<ClientCertificate> {
            let _ = io;
            None
        }

        /// The handle through which the cluster's connection cap may close
        /// this connection while it is idle, to admit a new client.
        fn idle_handle(&self, io: &L::Io) -> Option<cluster_net::hooks::IdleHandle> {
            let _ = io;
            None
        }

        /// How this listener's connections move to its other workers when
        /// this one drains; without one the drain closes idle connections.
        fn migrator(&self, listener: &L) -> Option<cluster_net::hooks::Migrator> {
            let _ = listener;
            None
        }

        /// The `cluster_net` connection under a stream, to move it, with
        /// `read` (bytes read from the stream and not served yet): the
        /// connection and the bytes to serve first from its socket
        /// (`TlsListener` attaches its session and `read` to the
        /// connection, and gives none). `Err` gives back one that cannot
        /// move.
        #[allow(clippy::result_large_err)] // the stream itself comes back
        fn connection_of(
            &self,
            io: L::Io,
            read: Vec<u8>,
        ) -> Result<(cluster_net::Connection, Vec<u8>), L::Io> {
            let _ = read;
            Err(io)
        }

        /// Whether moved connections can be served only by a worker of this
        /// process (they carry a state that cannot be serialised, such as a
        /// TLS session), not by a hot upgrade's new one.
        fn moves_in_process_only(&self) -> bool {
            false
        }

        /// The state a connection that moved here from another worker
        /// carries (see `connection_of`).
        fn take_attached(&self, io: &mut L::Io) -> Option<Box<dyn std::any::Any + Send>> {
            let _ = io;
            None
        }
    }
}

pub(crate) use sealed::Hooks;

/// A listener without hooks: every answer is "none".
struct NoHooks;

impl<L: Listener> Hooks<L> for NoHooks {}

/// The hooks as functions of the listener's type, for `serve`, the drain
/// and `TlsListener`: `L::idle_handle(&io)`.
pub(crate) trait ListenerExt: Listener {
    fn client_certificate(io: &Self::Io) -> Option<ClientCertificate> {
        Self::hooks().client_certificate(io)
    }

    fn idle_handle(io: &Self::Io) -> Option<cluster_net::hooks::IdleHandle> {
        Self::hooks().idle_handle(io)
    }

    fn migrator(&self) -> Option<cluster_net::hooks::Migrator> {
        Self::hooks().migrator(self)
    }

    #[allow(clippy::result_large_err)] // the stream itself comes back
    fn into_connection(
        io: Self::Io,
        read: Vec<u8>,
    ) -> Result<(cluster_net::Connection, Vec<u8>), Self::Io> {
        Self::hooks().connection_of(io, read)
    }

    fn moves_in_process_only() -> bool {
        Self::hooks().moves_in_process_only()
    }

    fn take_attached(io: &mut Self::Io) -> Option<Box<dyn std::any::Any + Send>> {
        Self::hooks().take_attached(io)
    }
}

impl<L: Listener> ListenerExt for L {}

/// The local address of a connection accepted on a listener bound to
/// `bound`: `bound` itself unless it is a wildcard (`0.0.0.0`, `::`), where
/// only the connection knows which of the host's addresses was reached.
fn local_of(bound: Option<SocketAddr>, stream: &TcpStream) -> Option<SocketAddr> {
    match bound {
        Some(a) if !a.ip().is_unspecified() => Some(a),
        _ => stream.local_addr().ok(),
    }
}

fn nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

fn info_of(conn: &cluster_net::Connection, bound: Option<SocketAddr>) -> Option<ConnectionInfo> {
    let tcp = conn.as_tcp()?;
    nodelay(tcp);
    Some(ConnectionInfo::new(
        conn.peer_addr()?,
        local_of(bound, tcp)?,
    ))
}

impl Listener for cluster_net::Listener {
    type Io = cluster_net::Connection;

    async fn accept(&mut self) -> (Self::Io, Option<ConnectionInfo>) {
        let conn = cluster_net::Listener::accept(self).await;
        let info = info_of(&conn, self.tcp_addr());
        (conn, info)
    }

    fn local_addr(&self) -> io::Result<Address> {
        Ok(cluster_net::Listener::local_addr(self).clone())
    }

    async fn handshake(
        io: &mut Self::Io,
        info: Option<ConnectionInfo>,
    ) -> io::Result<Option<ConnectionInfo>> {
        cluster_net::hooks::read_proxy_header(io)
            .await
            .map_err(io::Error::other)?;
        // The peer the PROXY header named, if any.
        Ok(match (info, io.peer_addr()) {
            (Some(info), Some(peer)) => Some(ConnectionInfo::new(peer, info.local)),
            (info, _) => info,
        })
    }

    fn hooks() -> &'static dyn Hooks<Self> {
        &NetHooks
    }

    async fn close(self) -> Vec<(Self::Io, Option<ConnectionInfo>)> {
        let bound = self.tcp_addr();
        cluster_net::Listener::close(self)
            .await
            .into_iter()
            .map(|conn| {
                let info = info_of(&conn, bound);
                (conn, info)
            })
            .collect()
    }
}

/// `cluster_net`'s listener: the cap's idle marks, migration, a moved
/// connection's attached state.
struct NetHooks;

impl Hooks<cluster_net::Listener> for NetHooks {
    fn idle_handle(&self, io: &cluster_net::Connection) -> Option<cluster_net::hooks::IdleHandle> {
        Some(cluster_net::hooks::idle_handle(io))
    }

    fn migrator(&self, listener: &cluster_net::Listener) -> Option<cluster_net::hooks::Migrator> {
        cluster_net::hooks::migrator(listener)
    }

    fn connection_of(
        &self,
        io: cluster_net::Connection,
        read: Vec<u8>,
    ) -> Result<(cluster_net::Connection, Vec<u8>), cluster_net::Connection> {
        Ok((io, read))
    }

    fn take_attached(
        &self,
        io: &mut cluster_net::Connection,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        cluster_net::hooks::take_attached(io)
    }
}

impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> (Self::Io, Option<ConnectionInfo>) {
        let mut delay = Duration::ZERO;
        loop {
            match TcpListener::accept(self).await {
                Ok((stream, peer)) => {
                    nodelay(&stream);
                    let info = stream
                        .local_addr()
                        .ok()
                        .map(|local| ConnectionInfo::new(peer, local));
                    return (stream, info);
                }
                // That one connection is gone; the next may be fine.
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "a connection failed before it was accepted");
                }
                // Out of fds, or worse: accepting again at once only spins.
                Err(e) => {
                    if delay.is_zero() {
                        tracing::warn!(error = %e, "accept failed; trying again, backing off up to 1 s");
                    }
                    delay = (delay * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Address> {
        TcpListener::local_addr(self).map(Address::Tcp)
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}
