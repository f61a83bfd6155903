//! The other process of a hot upgrade, for QUIC: both processes read the
//! same UDP sockets until the old one has drained, so each forwards to the
//! other, over a private `socketpair()` (one datagram a message, with its
//! source and destination), what belongs to the other: a datagram of a
//! connection it did not issue (a short header, or a Handshake packet, with
//! an ID not its own), and the new clients' first packets the old process
//! reads (it takes no new connections). The receiver routes each as its own
//! socket's; never back. A leaf.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes before a datagram in a message: the port's number (u16), the
/// source (family u8, address 16, port u16), the destination address
/// (family u8, 0 when unknown; address 16), the ECN bits.
const HEAD: usize = 2 + 19 + 17 + 1;

/// A message's largest datagram (UDP's largest payload).
pub(crate) const MAX: usize = 65_535;

/// This process's channel to the other one, while there is one.
#[derive(Debug, Default)]
pub(crate) struct Peer(Mutex<Option<Arc<UnixDatagram>>>);

impl Peer {
    pub(crate) fn set(&self, socket: Arc<UnixDatagram>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(socket);
    }

    pub(crate) fn get(&self) -> Option<Arc<UnixDatagram>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether there is another process to forward to.
    pub(crate) fn active(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Sends one datagram of the port `port`, without waiting (a full
    /// channel drops it, as the network may); the other process gone, the
    /// channel is forgotten.
    pub(crate) fn send(
        &self,
        port: u16,
        data: &[u8],
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
        ecn: u8,
    ) -> bool {
        let Some(socket) = self.get() else {
            return false;
        };
        let message = encode(port, data, src, dst_ip, ecn);
        match socket.send(&message) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => {
                tracing::debug!(error = %e, "the other process of the hot upgrade is gone: no more QUIC forwarding");
                let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &socket)) {
                    *slot = None;
                }
                false
            }
        }
    }
}

fn put_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    let (family, bytes) = match ip {
        Some(IpAddr::V4(v4)) => (4, v4.to_ipv6_mapped().octets()),
        Some(IpAddr::V6(v6)) => (6, v6.octets()),
        None => (0, [0; 16]),
    };
    out.push(family);
    out.extend_from_slice(&bytes);
}

fn get_ip(family: u8, bytes: &[u8]) -> Option<Option<IpAddr>> {
    let octets: [u8; 16] = bytes.try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    Some(match family {
        0 => None,
        4 => Some(IpAddr::V4(v6.to_ipv4_mapped()?)),
        6 => Some(IpAddr::V6(v6)),
        _ => return None,
    })
}

pub(crate) fn encode(
    port: u16,
    data: &[u8],
    src: SocketAddr,
    dst_ip: Option<IpAddr>,
    ecn: u8,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD + data.len());
    out.extend_from_slice(&port.to_be_bytes());
    put_ip(&mut out, Some(src.ip()));
    out.extend_from_slice(&src.port().to_be_bytes());
    put_ip(&mut out, dst_ip);
    out.push(ecn);
    out.extend_from_slice(data);
    out
}

/// A message's port, datagram, source, destination and ECN bits.
pub(crate) type Decoded<'a> = (u16, &'a [u8], SocketAddr, Option<IpAddr>, u8);

pub(crate) fn decode(message: &[u8]) -> Option<Decoded<'_>> {
    if message.len() < HEAD {
        return None;
    }
    let port = u16::from_be_bytes([message[0], message[1]]);
    let src_ip = get_ip(message[2], &message[3..19])?.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let src_port = u16::from_be_bytes([message[19], message[20]]);
    let dst_ip = get_ip(message[21], &message[22..38])?;
    let ecn = message[38];
    Some((
        port,
        &message[HEAD..],
        SocketAddr::new(src_ip, src_port),
        dst_ip,
        ecn,
    ))
}

/// Whether a datagram whose ID names none of this process's endpoints
/// belongs to a connection already made (a short header, or a Handshake
/// packet: its ID was issued by a server), rather than a client's first
/// packets (Initial, 0-RTT: an ID the client chose).
pub(crate) fn of_a_made_connection(datagram: &[u8]) -> bool {
    match datagram.first() {
        Some(&first) if first & 0x80 == 0 => true,
        // Long header: the packet type in bits 4..6 (QUIC v1), 2 = Handshake.
        Some(&first) => (first >> 4) & 0x03 == 2,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips() {
        let src: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let dst = Some("::1".parse().unwrap());
        let m = encode(8443, b"quic", src, dst, 2);
        assert_eq!(decode(&m), Some((8443, &b"quic"[..], src, dst, 2)));
        let m = encode(1, b"", "[::1]:9".parse().unwrap(), None, 0);
        assert_eq!(
            decode(&m),
            Some((1, &b""[..], "[::1]:9".parse().unwrap(), None, 0))
        );
        assert_eq!(decode(&m[..HEAD - 1]), None);
        let mut bad = m.clone();
        bad[2] = 9;
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn made_connections_are_told_from_first_packets() {
        assert!(of_a_made_connection(&[0x40, 1, 2]));
        assert!(of_a_made_connection(&[0xe0, 0, 0, 0, 1]));
        assert!(!of_a_made_connection(&[0xc0, 0, 0, 0, 1]));
        assert!(!of_a_made_connection(&[0xd0, 0, 0, 0, 1]));
        assert!(!of_a_made_connection(&[]));
    }
}
