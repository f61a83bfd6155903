//! The endpoint's socket: quinn's own UDP socket (GSO, GRO, ECN, the
//! destination address) with every datagram read routed first. One whose
//! connection ID names another endpoint of the port goes to it, and never
//! reaches this endpoint's quinn, which would otherwise answer it with a
//! stateless reset; the datagrams other sockets forward here come out as
//! if this socket had read them.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cluster_net::quic::Dispatched;
use cluster_net::QuicRouter;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use crate::slots::Slot;

pub(crate) struct SteeredSocket {
    pub(crate) inner: Arc<dyn AsyncUdpSocket>,
    pub(crate) router: QuicRouter,
    /// Counts what it forwards.
    pub(crate) slot: Arc<Slot>,
}

impl fmt::Debug for SteeredSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SteeredSocket")
            .field("slot", &self.router.slot())
            .field("generation", &self.router.generation())
            .finish()
    }
}

impl AsyncUdpSocket for SteeredSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // What others forwarded first: it waited already.
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let Poll::Ready(d) = self.router.poll_forwarded(cx) else {
                break;
            };
            let len = d.data.len();
            if len > bufs[n].len() {
                continue;
            }
            bufs[n][..len].copy_from_slice(&d.data);
            meta[n] = RecvMeta {
                addr: d.src,
                len,
                stride: len,
                ecn: EcnCodepoint::from_bits(d.ecn),
                dst_ip: d.dst_ip,
            };
            n += 1;
        }
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        loop {
            let count = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(count)) => count,
                other => return other,
            };
            let mut kept = 0;
            for i in 0..count {
                if keep_local(&self.router, &self.slot, &mut bufs[i], &mut meta[i]) == 0 {
                    continue;
                }
                if kept != i {
                    let (to, from) = bufs.split_at_mut(i);
                    let len = meta[i].len;
                    to[kept][..len].copy_from_slice(&from[0][..len]);
                    meta[kept] = meta[i];
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // All forwarded: read on (the socket says when it has none).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Routes each datagram of one read (several, `stride` apart, after GRO),
/// keeps this endpoint's at the front of `buf`, and returns their length.
fn keep_local(router: &QuicRouter, slot: &Slot, buf: &mut [u8], meta: &mut RecvMeta) -> usize {
    let stride = if meta.stride == 0 {
        meta.len
    } else {
        meta.stride
    };
    let ecn = meta.ecn.map_or(0, |e| e as u8);
    let (mut read, mut write) = (0, 0);
    while read < meta.len {
        let end = (read + stride).min(meta.len);
        match router.dispatch(&buf[read..end], meta.addr, meta.dst_ip, ecn) {
            Dispatched::Local => {
                buf.copy_within(read..end, write);
                write += end - read;
            }
            Dispatched::Forwarded => {
                slot.quic
                    .forwarded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
        read = end;
    }
    meta.len = write;
    write
}
