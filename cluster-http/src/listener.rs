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

    /// The certificate the client presented and the server verified, once
    /// [`handshake`](Self::handshake) is done (`TlsListener` with a client
    /// CA); put in every request's extensions. The default has none.
    fn client_certificate(io: &Self::Io) -> Option<ClientCertificate> {
        let _ = io;
        None
    }

    /// The handle through which the cluster's connection cap may close this
    /// connection while it is idle, to admit a new client (`cluster_net`'s
    /// connections have one).
    fn idle_handle(io: &Self::Io) -> Option<cluster_net::IdleHandle> {
        let _ = io;
        None
    }

    /// How this listener's connections move to its other workers when this
    /// one drains (see [`HttpConfig::migrate`](crate::HttpConfig::migrate)):
    /// `cluster_net`'s listeners have a migrator. The default has none, and
    /// the drain closes idle connections.
    fn migrator(&self) -> Option<cluster_net::Migrator> {
        None
    }

    /// The `cluster_net` connection under a stream, to move it to another
    /// worker, with `read` (bytes read from the stream and not served yet):
    /// gives the connection and the bytes to serve first from its socket
    /// (`TlsListener` attaches its session and `read` to the connection,
    /// and gives none). `Err` gives back one that cannot move (the default).
    #[allow(clippy::result_large_err)] // the stream itself comes back
    fn into_connection(
        io: Self::Io,
        read: Vec<u8>,
    ) -> Result<(cluster_net::Connection, Vec<u8>), Self::Io> {
        let _ = read;
        Err(io)
    }

    /// Whether this listener's connections, once moved, can be served only
    /// by a worker of this process (they carry a state that cannot be
    /// serialised, such as a TLS session), not by a hot upgrade's new one.
    fn moves_in_process_only() -> bool {
        false
    }

    /// The state a connection that moved here from another worker carries
    /// (see [`into_connection`](Self::into_connection)); `cluster_net`'s
    /// connections can carry one.
    fn take_attached(io: &mut Self::Io) -> Option<Box<dyn std::any::Any + Send>> {
        let _ = io;
        None
    }
}

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
        io.read_proxy_header().await.map_err(io::Error::other)?;
        // The peer the PROXY header named, if any.
        Ok(match (info, io.peer_addr()) {
            (Some(info), Some(peer)) => Some(ConnectionInfo::new(peer, info.local)),
            (info, _) => info,
        })
    }

    fn idle_handle(io: &Self::Io) -> Option<cluster_net::IdleHandle> {
        Some(io.idle_handle())
    }

    fn migrator(&self) -> Option<cluster_net::Migrator> {
        cluster_net::Listener::migrator(self)
    }

    fn into_connection(
        io: Self::Io,
        read: Vec<u8>,
    ) -> Result<(cluster_net::Connection, Vec<u8>), Self::Io> {
        Ok((io, read))
    }

    fn take_attached(io: &mut Self::Io) -> Option<Box<dyn std::any::Any + Send>> {
        io.take_attached()
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
