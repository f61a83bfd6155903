//! The PROXY protocol (v1 text, v2 binary; HAProxy's `send-proxy` and
//! `send-proxy-v2`): the header a load balancer writes before the client's
//! bytes, naming the client. On a listener that expects it, the header is
//! read first, the client's address becomes the connection's peer (and, in
//! sticky mode, the key of its slot), and the bytes read after it are
//! served first. Parsing is the `ppp` crate's.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::cap::Cap;

/// How long a client (the balancer) has to send the header.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// [`TIMEOUT`], or a quarter of it while the connection cap is under
/// pressure (silent connections may be filling it).
pub(crate) fn timeout(cap: &Cap) -> Duration {
    if cap.under_pressure() {
        TIMEOUT / 4
    } else {
        TIMEOUT
    }
}

/// Whether a socket's connections start with a PROXY header, and from
/// whom they may come.
#[derive(Debug, Clone, Default)]
pub(crate) enum Proxy {
    #[default]
    Off,
    /// Expected; with `from`, only TCP clients in these networks (the load
    /// balancers) are accepted, anyone else is refused and counted.
    On { from: Option<Arc<[Cidr]>> },
}

impl Proxy {
    pub(crate) fn expected(&self) -> bool {
        matches!(self, Proxy::On { .. })
    }

    /// Whether a connection from `peer` is refused: a TCP client outside
    /// the trusted networks.
    pub(crate) fn refuses(&self, peer: Option<SocketAddr>) -> bool {
        match (self, peer) {
            (Proxy::On { from: Some(from) }, Some(peer)) => {
                !from.iter().any(|net| net.contains(peer.ip()))
            }
            _ => false,
        }
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare
/// address is one host), for
/// [`ListenSpec::proxy_from`](crate::ListenSpec::proxy_from).
///
/// ```
/// let lb: cluster_net::Cidr = "10.1.0.0/16".parse()?;
/// assert!(lb.contains("10.1.2.3".parse()?));
/// assert!(!lb.contains("10.2.0.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `addr`'s first `prefix` bits, or `None` when
    /// `prefix` is longer than the address (32 bits, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address as its
    /// IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (net >> shift) == (ip >> shift)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<IpAddr> for Cidr {
    /// One host.
    fn from(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }
}

impl FromStr for Cidr {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Cidr, crate::Error> {
        let bad = |reason| crate::Error::BadAddress {
            spec: s.to_owned(),
            reason,
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("expected a network such as 10.0.0.0/8 or 2001:db8::/32"))?;
        match prefix {
            None => Ok(Cidr::from(addr)),
            Some(p) => p
                .parse()
                .ok()
                .and_then(|p| Cidr::new(addr, p))
                .ok_or_else(|| bad("the prefix length must be 0–32 (IPv4) or 0–128 (IPv6)")),
        }
    }
}

/// The longest header read: v1's is at most 107 bytes, v2's 16 + its
/// addresses and TLVs (a balancer's fit in this).
const MAX_HEADER: usize = 1024;

/// What went wrong with a header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("no PROXY header in time")]
    Timeout,
    #[error("the connection closed before a whole PROXY header")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PROXY protocol header: {0}")]
    Malformed(String),
}

/// A header read: the client's address (`None` for v1 `UNKNOWN`, v2
/// `LOCAL` or a non-IP family: the balancer's own connection), and the
/// bytes read after the header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) client: Option<SocketAddr>,
    pub(crate) rest: Vec<u8>,
}

/// Reads the header off `io`, within `timeout`.
pub(crate) async fn read_header<S: AsyncRead + Unpin + ?Sized>(
    io: &mut S,
    timeout: Duration,
) -> Result<Header, ProxyError> {
    match tokio::time::timeout(timeout, read(io)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout),
    }
}

async fn read<S: AsyncRead + Unpin + ?Sized>(io: &mut S) -> Result<Header, ProxyError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 256];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(header) = parse(&buf)? {
            return Ok(header);
        }
        if buf.len() > MAX_HEADER {
            return Err(ProxyError::Malformed(format!(
                "no complete header in the first {MAX_HEADER} bytes"
            )));
        }
    }
}

/// The header at the start of `buf`, `None` if it needs more bytes.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        return Ok(None);
    }
    let (len, client) = match parsed {
        HeaderResult::V1(Ok(h)) => (h.header.len(), v1_client(&h.addresses)),
        HeaderResult::V2(Ok(h)) => {
            let client = match h.command {
                v2::Command::Proxy => v2_client(&h.addresses),
                v2::Command::Local => None,
            };
            (h.len(), client)
        }
        HeaderResult::V1(Err(e)) => return Err(ProxyError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => return Err(ProxyError::Malformed(e.to_string())),
    };
    Ok(Some(Header {
        client,
        rest: buf[len..].to_vec(),
    }))
}

fn v1_client(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_client(addresses: &v2::Addresses) -> Option<SocketAddr> {
    match addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::Unix(_) | v2::Addresses::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap()
    }

    #[test]
    fn v1_gives_the_client_and_keeps_what_follows() {
        let h = parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\nGET / HTTP/1.1\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.client, Some("192.0.2.7:51000".parse().unwrap()));
        assert_eq!(h.rest, b"GET / HTTP/1.1\r\n");
        let h = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.client, Some("[2001:db8::1]:4000".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().client, None);
    }

    #[test]
    fn v2_gives_the_client_and_keeps_what_follows() {
        let mut bytes = v2_header(
            "203.0.113.9:6000".parse().unwrap(),
            "10.0.0.1:8000".parse().unwrap(),
        );
        bytes.extend_from_slice(b"hello");
        let h = parse(&bytes).unwrap().unwrap();
        assert_eq!(h.client, Some("203.0.113.9:6000".parse().unwrap()));
        assert_eq!(h.rest, b"hello");
    }

    #[test]
    fn a_partial_header_needs_more_and_garbage_is_refused() {
        let full = v2_header(
            "203.0.113.9:6000".parse().unwrap(),
            "10.0.0.1:8000".parse().unwrap(),
        );
        for cut in [1, 12, 15, full.len() - 1] {
            assert!(parse(&full[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        assert!(parse(b"PROXY TCP4 192.0.2.7").unwrap().is_none());
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP9 a b c d\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.255.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.9".parse().unwrap()),
            "v4-mapped"
        );
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "nonsense",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} parsed");
        }
        let proxy = Proxy::On {
            from: Some(Arc::from([net])),
        };
        assert!(proxy.refuses(Some("10.2.0.1:5000".parse().unwrap())));
        assert!(!proxy.refuses(Some("10.1.0.1:5000".parse().unwrap())));
        assert!(!proxy.refuses(None), "a Unix client");
    }

    #[tokio::test]
    async fn a_header_split_across_reads_is_read_whole() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in [
                &b"PROXY TCP4 192.0.2.7 "[..],
                b"198.51.100.1 51000 443\r\nbody",
            ] {
                client.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let h = read_header(&mut server, TIMEOUT).await.unwrap();
        assert_eq!(h.client, Some("192.0.2.7:51000".parse().unwrap()));
        drop(writer.await);
        assert_eq!(h.rest, b"body");
    }
}
