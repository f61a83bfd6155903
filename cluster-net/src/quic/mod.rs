//! QUIC on one UDP port for every worker: the primary's reuseport group of
//! one socket per slot (`group.rs`), connection IDs that name their slot and
//! generation (`cid.rs`), the kernel steering datagrams by them (a classic
//! BPF program, no privilege needed) and, always, forwarding in user space
//! of a datagram that reached the wrong socket to the endpoint its ID names.
//!
//! This crate has no QUIC stack: [`QuicSocket`] is what an endpoint (quinn
//! in `cluster-http`) is built on: the slot's socket, and a [`QuicRouter`]
//! that issues IDs, says where each datagram read goes, and hands over the
//! ones forwarded to this endpoint.

pub(crate) mod cid;
pub(crate) mod group;
mod kinds;
pub(crate) mod peer;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

pub use cid::CID_LEN;
pub use group::Datagram;
pub use kinds::{Dispatched, QuicSteering};

use cid::{Owner, Random};
use group::{Inbox, Member, QuicGroup, Target};

/// This slot's socket of a QUIC port's group, and its router:
/// `worker.listen_quic(addr)` (see [`WorkerExt`](crate::WorkerExt)).
#[derive(Debug)]
pub struct QuicSocket {
    socket: std::net::UdpSocket,
    router: QuicRouter,
}

impl QuicSocket {
    pub(crate) fn new(group: Arc<QuicGroup>, slot: usize) -> Result<QuicSocket, crate::Error> {
        let member = group.member(slot)?;
        let socket = member
            .socket
            .try_clone()
            .map_err(|e| crate::Error::from_bind(format!("udp://{}", group.addr), e))?;
        group.attend(&member);
        let (owner, inbox) = group.register(slot);
        Ok(QuicSocket {
            socket,
            router: QuicRouter {
                inner: Arc::new(RouterInner {
                    group,
                    member,
                    owner,
                    inbox,
                    random: Random::new(),
                }),
            },
        })
    }

    /// The address bound (every worker's is the same).
    pub fn local_addr(&self) -> SocketAddr {
        self.router.inner.group.addr
    }

    /// The socket (a copy of the primary's, non-blocking) and the router.
    pub fn into_parts(self) -> (std::net::UdpSocket, QuicRouter) {
        (self.socket, self.router)
    }
}

/// Issues this endpoint's connection IDs and routes the datagrams its
/// socket reads. The endpoint counts as live (datagrams for its IDs are
/// forwarded to it) while any clone of its router exists.
#[derive(Clone, Debug)]
pub struct QuicRouter {
    inner: Arc<RouterInner>,
}

#[derive(Debug)]
struct RouterInner {
    group: Arc<QuicGroup>,
    member: Arc<Member>,
    owner: Owner,
    inbox: Arc<Inbox>,
    random: Random,
}

impl Drop for RouterInner {
    fn drop(&mut self) {
        self.group.unregister(self.owner);
        self.group.leave(&self.member);
    }
}

impl QuicRouter {
    /// This endpoint's slot.
    pub fn slot(&self) -> usize {
        self.inner.owner.slot
    }

    /// This endpoint's generation: which of its slot's endpoints it is
    /// (during a rolling reload, an old and a new one share the socket).
    pub fn generation(&self) -> u32 {
        self.inner.owner.generation
    }

    /// Whether the kernel steers by connection ID on this port.
    pub fn kernel_steers(&self) -> bool {
        self.inner.group.steered
    }

    /// This endpoint drains: clients' first packets that reach its socket
    /// go to another endpoint of the port (of its slot first) from now on.
    pub fn stop_accepting(&self) {
        self.inner.group.stop_accepting(self.inner.owner);
    }

    /// A new connection ID of [`CID_LEN`] bytes naming this endpoint.
    pub fn new_cid(&self) -> [u8; CID_LEN] {
        let g = &self.inner.group;
        g.layout
            .encode(self.inner.owner, self.inner.random.bytes16())
    }

    /// Whether `cid` is one this endpoint issued (its layout, its key, its
    /// slot and generation).
    pub fn is_own(&self, cid: &[u8]) -> bool {
        self.inner.group.layout.decode(cid) == Some(self.inner.owner)
    }

    /// Routes a datagram this endpoint's socket read from `src`: keep it,
    /// or hand a copy to the endpoint its ID names.
    pub fn dispatch(
        &self,
        datagram: &[u8],
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
        ecn: u8,
    ) -> Dispatched {
        let inner = &self.inner;
        match inner.group.route(datagram, Some(inner.owner)) {
            Target::Here => Dispatched::Local,
            Target::Nowhere => Dispatched::Dropped,
            Target::Peer => {
                if inner
                    .group
                    .to_peer(&inner.member, datagram, src, dst_ip, ecn)
                {
                    Dispatched::Forwarded
                } else {
                    Dispatched::Dropped
                }
            }
            Target::To(inbox) => {
                let d = Datagram {
                    data: datagram.into(),
                    src,
                    dst_ip,
                    ecn,
                };
                if QuicGroup::forward(&inner.member, &inbox, d) {
                    Dispatched::Forwarded
                } else {
                    Dispatched::Dropped
                }
            }
        }
    }

    /// The next datagram another socket forwarded to this endpoint, or
    /// `Pending` (woken when one comes).
    pub fn poll_forwarded(&self, cx: &mut Context<'_>) -> Poll<Datagram> {
        self.inner.inbox.poll_pop(cx)
    }

    /// Datagrams this slot's socket handed to other endpoints so far.
    pub fn forwarded(&self) -> u64 {
        self.inner
            .member
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
