//! A blocking rustls client for the load and the tests' HTTPS requests:
//! real handshakes over 127.0.0.1 with the test CA's certificate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::{exchange, Response};

/// The name the tests' clients ask for (SNI) and check the server's
/// certificate against.
pub const SERVER_NAME: &str = "localhost";

/// A rustls client config (ring) trusting `ca` only, offering HTTP/1.1 by
/// ALPN. Its session cache is in the config: connections made with one
/// config resume each other's sessions.
pub fn tls_client_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("the test CA's certificate");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring's protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection over TCP, blocking, its handshake done.
pub type TlsConn = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` and completes the handshake (to [`SERVER_NAME`]),
/// reads bounded by a 10 s timeout.
pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<TlsConn> {
    let name = ServerName::try_from(SERVER_NAME).map_err(std::io::Error::other)?;
    let mut conn =
        ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_nodelay(true)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// A `GET` over HTTPS on a fresh connection.
pub fn tls_get(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    path: &str,
) -> std::io::Result<Response> {
    let mut tls = tls_connect(addr, config)?;
    exchange(&mut tls, path, false)
}

/// A load client's connection: plain TCP or TLS.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}
