//! One UDP port's reuseport group: a socket per slot, bound in slot order
//! and kept open for the group's life (closing a member would move the
//! last socket into its index, and the classic program steers by index),
//! the live endpoints by owner, their inboxes of forwarded datagrams, and
//! a stand-in that reads a slot's socket while no worker of it does.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::cid::{self, Layout, Owner};
use super::kinds::QuicSteering;
use super::peer::Peer;
use crate::Error;

/// The most datagrams, and bytes, waiting in one inbox; past either they
/// are dropped, as a full socket buffer drops them (a client knows its own
/// connection IDs, and may send large datagrams with them to every socket).
const INBOX_CAP: usize = 4096;
const INBOX_BYTES: usize = 4 << 20;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// A datagram handed from the socket that received it to the endpoint its
/// connection ID names.
#[derive(Debug)]
#[non_exhaustive]
pub struct Datagram {
    /// Its bytes.
    pub data: Box<[u8]>,
    /// Who sent it.
    pub src: SocketAddr,
    /// The local address it was sent to, if known.
    pub dst_ip: Option<IpAddr>,
    /// Its ECN bits (0: not ECN-capable).
    pub ecn: u8,
}

/// Where forwarded datagrams wait for their endpoint.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    queue: Mutex<Queue>,
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct Queue {
    datagrams: VecDeque<Datagram>,
    bytes: usize,
}

impl Queue {
    fn pop(&mut self) -> Option<Datagram> {
        let d = self.datagrams.pop_front()?;
        self.bytes -= d.data.len();
        Some(d)
    }
}

impl Inbox {
    fn push(&self, datagram: Datagram) -> bool {
        let mut q = lock(&self.queue);
        if q.datagrams.len() >= INBOX_CAP || q.bytes + datagram.data.len() > INBOX_BYTES {
            return false;
        }
        q.bytes += datagram.data.len();
        q.datagrams.push_back(datagram);
        drop(q);
        self.waker.wake();
        true
    }

    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Datagram> {
        if let Some(d) = lock(&self.queue).pop() {
            return Poll::Ready(d);
        }
        self.waker.register(cx.waker());
        match lock(&self.queue).pop() {
            Some(d) => Poll::Ready(d),
            None => Poll::Pending,
        }
    }
}

/// A slot's socket in the group.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) socket: std::net::UdpSocket,
    slot: usize,
    /// Endpoints reading it now.
    attended: Mutex<usize>,
    changed: Notify,
    /// Datagrams that reached this socket and went to another endpoint.
    pub(crate) forwarded: AtomicU64,
}

impl Member {
    fn new(slot: usize, socket: std::net::UdpSocket) -> Arc<Member> {
        Arc::new(Member {
            socket,
            slot,
            attended: Mutex::new(0),
            changed: Notify::new(),
            forwarded: AtomicU64::new(0),
        })
    }

    fn attended(&self) -> usize {
        *lock(&self.attended)
    }
}

/// A live endpoint of the port.
#[derive(Debug)]
struct Endpoint {
    owner: Owner,
    inbox: Arc<Inbox>,
    /// Takes new connections (not draining).
    accepting: AtomicBool,
}

/// Where a datagram goes.
pub(crate) enum Target {
    /// To the endpoint reading it (its ID is its own, or names nobody).
    Here,
    To(Arc<Inbox>),
    /// Its ID names an endpoint that is gone: no one answers it (a reset
    /// from anyone else would be invalid, or, with a shared key, fatal).
    Nowhere,
    /// To the other process of a hot upgrade: a connection this one did
    /// not make, or a client's first packets when no endpoint here takes
    /// new connections.
    Peer,
}

/// One port's group.
#[derive(Debug)]
pub(crate) struct QuicGroup {
    /// The address bound, with its port.
    pub(crate) addr: SocketAddr,
    pub(crate) steering: QuicSteering,
    pub(crate) layout: Layout,
    members: Mutex<Vec<Arc<Member>>>,
    owners: RwLock<Vec<Endpoint>>,
    next_generation: AtomicU32,
    /// Runs the stand-ins.
    acceptor: Handle,
    /// Whether the classic program is attached.
    pub(crate) steered: bool,
    /// The other process during a hot upgrade.
    peer: Arc<Peer>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One member of a reuseport group on `addr`.
fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

impl QuicGroup {
    /// Binds the group's first member (slot 0's, resolving port 0) and, for
    /// [`QuicSteering::Cid`], attaches the classic program to the group.
    /// `inherited`: the members a hot upgrade handed over, in slot order,
    /// taken as they are (the same sockets, so the same indices).
    pub(crate) fn bind(
        addr: SocketAddr,
        steering: QuicSteering,
        acceptor: Handle,
        inherited: Vec<std::net::UdpSocket>,
        peer: Arc<Peer>,
    ) -> Result<Arc<QuicGroup>, Error> {
        let fail = |e| Error::from_bind(format!("udp://{addr}"), e);
        let mut sockets = inherited.into_iter();
        let first = match sockets.next() {
            Some(s) => {
                s.set_nonblocking(true).map_err(fail)?;
                s
            }
            None => bind(addr).map_err(fail)?,
        };
        let bound = first.local_addr().map_err(fail)?;
        let steered = steering == QuicSteering::Cid && attach(&first);
        let group = Arc::new(QuicGroup {
            addr: bound,
            steering,
            layout: Layout::new(),
            members: Mutex::default(),
            owners: RwLock::default(),
            next_generation: AtomicU32::new(0),
            acceptor,
            steered,
            peer,
        });
        for (slot, socket) in std::iter::once(first).chain(sockets).enumerate() {
            socket.set_nonblocking(true).map_err(fail)?;
            let member = Member::new(slot, socket);
            lock(&group.members).push(Arc::clone(&member));
            group.cover(&member);
        }
        Ok(group)
    }

    /// A copy of every member's socket, in slot order, for a hot upgrade.
    pub(crate) fn dup_members(&self) -> Vec<io::Result<std::os::fd::OwnedFd>> {
        use std::os::fd::AsFd;
        lock(&self.members)
            .iter()
            .map(|m| m.socket.as_fd().try_clone_to_owned())
            .collect()
    }

    /// Slot `slot`'s member, binding every missing one up to it in slot
    /// order (so a member's index in the kernel's group is its slot).
    pub(crate) fn member(self: &Arc<Self>, slot: usize) -> Result<Arc<Member>, Error> {
        let fail = |e| Error::from_bind(format!("udp://{}", self.addr), e);
        if slot >= cid::ROUTE_MODULUS as usize {
            return Err(Error::Listen {
                addr: format!("udp://{}", self.addr),
                source: io::Error::other(format!(
                    "slot {slot}: QUIC connection IDs name at most {} slots",
                    cid::ROUTE_MODULUS
                )),
            });
        }
        let mut added = Vec::new();
        let member = {
            let mut members = lock(&self.members);
            while members.len() <= slot {
                let socket = bind(self.addr).map_err(fail)?;
                let member = Member::new(members.len(), socket);
                members.push(Arc::clone(&member));
                added.push(member);
            }
            Arc::clone(&members[slot])
        };
        // Until their workers read them, stand-ins do.
        for m in &added {
            self.cover(m);
        }
        Ok(member)
    }

    /// Per member, in slot order: its datagrams forwarded so far, and the
    /// generations of its live endpoints.
    pub(crate) fn stats(&self) -> Vec<(u64, Vec<u32>)> {
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        lock(&self.members)
            .iter()
            .map(|m| {
                let generations = owners
                    .iter()
                    .filter(|e| e.owner.slot == m.slot)
                    .map(|e| e.owner.generation)
                    .collect();
                (m.forwarded.load(Ordering::Relaxed), generations)
            })
            .collect()
    }

    /// A new endpoint of `slot`: its owner (with a new generation) and inbox.
    pub(crate) fn register(&self, slot: usize) -> (Owner, Arc<Inbox>) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) % cid::GEN_MODULUS;
        let owner = Owner { slot, generation };
        let inbox = Arc::new(Inbox::default());
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|e| e.owner != owner);
        owners.push(Endpoint {
            owner,
            inbox: Arc::clone(&inbox),
            accepting: AtomicBool::new(true),
        });
        (owner, inbox)
    }

    pub(crate) fn unregister(&self, owner: Owner) {
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|e| e.owner != owner);
    }

    /// `owner` drains: new connections go to the others.
    pub(crate) fn stop_accepting(&self, owner: Owner) {
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = owners.iter().find(|e| e.owner == owner) {
            e.accepting.store(false, Ordering::Relaxed);
        }
    }

    /// Where `datagram`, read by `me` (`None`: a stand-in), goes.
    pub(crate) fn route(&self, datagram: &[u8], me: Option<Owner>) -> Target {
        let owner = cid::dcid(datagram).and_then(|id| self.layout.decode(id));
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        let Some(owner) = owner else {
            // A connection the other process of a hot upgrade made (both
            // read the same sockets): its own to answer.
            if self.peer.active() && super::peer::of_a_made_connection(datagram) {
                return Target::Peer;
            }
            // A client's own ID (an Initial), or not QUIC: a new connection
            // for whoever reads it if it takes them, else for one that
            // does, of the same slot first (a reload's new endpoint).
            let accepting = |e: &&Endpoint| e.accepting.load(Ordering::Relaxed);
            let me_accepting =
                me.is_some_and(|m| owners.iter().filter(accepting).any(|e| e.owner == m));
            if me_accepting || (me.is_some() && self.steering == QuicSteering::Hash) {
                return Target::Here;
            }
            let slot = me.map(|m| m.slot);
            let other = owners
                .iter()
                .filter(accepting)
                .find(|e| Some(e.owner.slot) == slot)
                .or_else(|| owners.iter().find(accepting));
            return match (other, me) {
                (Some(e), _) => Target::To(Arc::clone(&e.inbox)),
                // Nobody here takes new connections (a hot upgrade's old
                // process): the new one does.
                (None, _) if self.peer.active() => Target::Peer,
                // Nobody takes new connections: refused where read.
                (None, Some(_)) => Target::Here,
                (None, None) => Target::Nowhere,
            };
        };
        if Some(owner) == me || (self.steering == QuicSteering::Hash && me.is_some()) {
            return Target::Here;
        }
        match owners.iter().find(|e| e.owner == owner) {
            Some(e) => Target::To(Arc::clone(&e.inbox)),
            None => Target::Nowhere,
        }
    }

    /// A worker of `member`'s slot reads it from now on.
    pub(crate) fn attend(&self, member: &Member) {
        *lock(&member.attended) += 1;
        member.changed.notify_waiters();
    }

    /// A worker of `member`'s slot stopped reading it; if it was the last,
    /// a stand-in takes over, so that what the kernel steers there is not
    /// left unread (a removed slot's socket stays open for the group's life).
    pub(crate) fn leave(self: &Arc<Self>, member: &Arc<Member>) {
        let last = {
            let mut n = lock(&member.attended);
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last {
            self.cover(member);
        }
    }

    /// Reads `member`'s socket on the acceptor thread while no worker does,
    /// forwarding each datagram to the endpoint its ID names.
    fn cover(self: &Arc<Self>, member: &Arc<Member>) {
        let (group, member) = (Arc::downgrade(self), Arc::clone(member));
        let socket = match member.socket.try_clone() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(slot = member.slot, error = %e, "cannot read this QUIC socket while its slot has no worker");
                return;
            }
        };
        self.acceptor.spawn(async move {
            // A worker's endpoint turns GRO on; a plain recv would see
            // coalesced datagrams as one.
            no_gro(&socket);
            let Ok(socket) = tokio::net::UdpSocket::from_std(socket) else {
                return;
            };
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let changed = member.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if member.attended() > 0 {
                    return;
                }
                tokio::select! {
                    received = socket.recv_from(&mut buf) => {
                        let Ok((n, src)) = received else { continue };
                        let Some(group) = group.upgrade() else { return };
                        match group.route(&buf[..n], None) {
                            Target::To(inbox) => {
                                member.forwarded.fetch_add(1, Ordering::Relaxed);
                                inbox.push(Datagram { data: buf[..n].into(), src, dst_ip: None, ecn: 0 });
                            }
                            Target::Peer => {
                                group.to_peer(&member, &buf[..n], src, None, 0);
                            }
                            Target::Here | Target::Nowhere => {}
                        }
                    }
                    () = &mut changed => {}
                }
            }
        });
    }

    /// Sends a datagram read here to the other process, counted as
    /// forwarded from `member`.
    pub(crate) fn to_peer(
        &self,
        member: &Member,
        data: &[u8],
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
        ecn: u8,
    ) -> bool {
        member.forwarded.fetch_add(1, Ordering::Relaxed);
        self.peer.send(self.addr.port(), data, src, dst_ip, ecn)
    }

    /// A datagram the other process forwarded: to the endpoint here its ID
    /// names (or that takes new connections); never back.
    pub(crate) fn deliver_from_peer(
        &self,
        data: &[u8],
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
        ecn: u8,
    ) -> bool {
        match self.route(data, None) {
            Target::To(inbox) => inbox.push(Datagram {
                data: data.into(),
                src,
                dst_ip,
                ecn,
            }),
            Target::Here | Target::Nowhere | Target::Peer => false,
        }
    }

    /// Sends `datagram` to `inbox`, counted as forwarded from `member`.
    pub(crate) fn forward(member: &Member, inbox: &Inbox, datagram: Datagram) -> bool {
        member.forwarded.fetch_add(1, Ordering::Relaxed);
        inbox.push(datagram)
    }
}

/// Attaches the classic program; false (logged) where the kernel refuses.
fn attach(socket: &std::net::UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let offset = cid::ROUTE_AT as u32;
        match crate::steer::classic::attach_quic(socket.as_fd(), offset, cid::ROUTE_MODULUS) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "QUIC steering by connection ID is not available; datagrams that reach the wrong worker are forwarded");
                false
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

fn no_gro(socket: &std::net::UdpSocket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let off: libc::c_int = 0;
        // SAFETY: a live socket fd, an int option of the int's size; the
        // kernel copies the value.
        let _ = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&off as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::quic::cid::Random;

    #[test]
    fn an_inbox_holds_at_most_its_bytes() {
        let inbox = Inbox::default();
        let big = || Datagram {
            data: vec![0u8; 65_507].into(),
            src: "127.0.0.1:1".parse().unwrap(),
            dst_ip: None,
            ecn: 0,
        };
        let taken = (0..1000).filter(|_| inbox.push(big())).count();
        assert_eq!(taken, INBOX_BYTES / 65_507);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(inbox.poll_pop(&mut cx).is_ready());
        assert!(inbox.push(big()), "room again once one is taken");
    }

    /// The classic program on a group of four: every short- and long-header
    /// datagram whose ID names slot s reaches socket s, from any source port.
    #[test]
    fn the_kernel_steers_each_datagram_to_the_socket_its_id_names() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        assert!(attach(&first), "SO_ATTACH_REUSEPORT_CBPF refused");
        let mut members = vec![first];
        for _ in 1..4 {
            members.push(bind(addr).unwrap());
        }
        let (layout, random) = (Layout::new(), Random::new());
        let mut buf = [0u8; 64];
        for round in 0..8 {
            for slot in 0..4 {
                let cid = layout.encode(
                    Owner {
                        slot,
                        generation: round,
                    },
                    random.bytes16(),
                );
                let mut short = vec![0x40];
                short.extend_from_slice(&cid);
                let mut long = vec![0xc0, 0, 0, 0, 1, cid::CID_LEN as u8];
                long.extend_from_slice(&cid);
                long.push(0);
                for datagram in [short, long] {
                    // A new source port each time: the hash would scatter them.
                    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    client.send_to(&datagram, addr).unwrap();
                    let got = wait_any(&members, &mut buf);
                    assert_eq!(got, slot, "round {round}");
                }
            }
        }
    }

    /// The index of the member that received the next datagram.
    fn wait_any(members: &[std::net::UdpSocket], buf: &mut [u8]) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            for (i, m) in members.iter().enumerate() {
                if m.recv_from(buf).is_ok() {
                    return i;
                }
            }
            std::thread::yield_now();
        }
        panic!("no member received the datagram before the deadline");
    }
}
