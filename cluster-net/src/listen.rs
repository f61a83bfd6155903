//! `worker.listen(...)`: a planned socket found in (or added to) the
//! registry, and the worker's `Listener` attached to it.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use cluster_core::hooks;
use cluster_core::{Address, Worker};

use crate::accept::AcceptSocket;
use crate::bind::{self, StdListener};
use crate::conn::Counters;
use crate::listener::{Mode, Seat, SlotSocket};
use crate::plan::{plan, Bind, Plan, Target};
use crate::registry::{reuse_label, Key, OwnedFile, Registry, ReuseSocket, SharedSocket};
use crate::steer::Mode as Steer;
use crate::upgrade::Inherited;
use crate::{Balance, Error, KernelSteering, Listen, ListenSpec, Listener, NetConfig, ToListen};

/// `listen` and `listen_udp` on a worker: `use cluster_net::WorkerExt;`.
pub trait WorkerExt {
    /// Listens as Node's `server.listen` in a worker: the primary owns the
    /// socket, workers asking for the same address share it, the n-th
    /// `listen(0)` of every worker gets the same random port. Emits a
    /// `Listening` event with the address bound.
    ///
    /// A bind error (address in use, permission denied) is the worker's to
    /// handle, as in Node (try another address, go on without it). A worker
    /// that fails with it during start-up (returns it, or panics before it
    /// listened) stops the whole cluster with that message
    /// (`cluster_core::Error::StartFailed`), rather than crash-looping.
    fn listen<S: ToListen>(&self, spec: S) -> impl Future<Output = Result<Listener, Error>>;

    /// A UDP socket bound once by the primary and shared by every worker
    /// (each receives some of the datagrams).
    fn listen_udp(&self, addr: SocketAddr) -> Result<tokio::net::UdpSocket, Error>;

    /// This worker's socket of a QUIC port: the primary binds one
    /// `SO_REUSEPORT` socket per slot on `addr` (the n-th `listen_quic` of
    /// port 0 of every worker gets the same port), keeps each open for the
    /// cluster's life, and steers datagrams to the slot their connection
    /// ID names (see [`QuicSteering`](crate::QuicSteering), set on the
    /// [`NetConfig`]). Build the QUIC endpoint on the socket and the router
    /// of [`QuicSocket::into_parts`](crate::QuicSocket::into_parts).
    fn listen_quic(&self, addr: SocketAddr) -> Result<crate::QuicSocket, Error>;
}

impl WorkerExt for Worker {
    async fn listen<S: ToListen>(&self, spec: S) -> Result<Listener, Error> {
        let result = spec.to_listen().and_then(|spec| listen(self, spec));
        match &result {
            Ok(l) => hooks::report_listening(self, l.address.clone()),
            Err(e) => hooks::fail_start(self, e.to_string()),
        }
        result
    }

    fn listen_udp(&self, addr: SocketAddr) -> Result<tokio::net::UdpSocket, Error> {
        let registry = hooks::extension::<Registry>(self);
        let nth = if addr.port() == 0 {
            registry.next_zero(self.id())
        } else {
            0
        };
        let fail = |e| Error::from_bind(format!("udp://{addr}"), e);
        let key = Key::Udp(addr, nth);
        let label = key.label();
        let inherited = self.state::<Inherited>();
        let socket = registry.udp(key, || {
            if let Some(received) = inherited.as_ref().and_then(|i| i.take(&label)) {
                return Ok(std::net::UdpSocket::from(received.fd));
            }
            let socket = std::net::UdpSocket::bind(addr).map_err(fail)?;
            socket.set_nonblocking(true).map_err(fail)?;
            Ok(socket)
        })?;
        let result = socket
            .try_clone()
            .and_then(tokio::net::UdpSocket::from_std)
            .map_err(fail)?;
        if let Ok(local) = result.local_addr() {
            hooks::report_listening(self, Address::Udp(local));
        }
        Ok(result)
    }

    fn listen_quic(&self, addr: SocketAddr) -> Result<crate::QuicSocket, Error> {
        listen_quic(self, addr)
    }
}

fn listen_quic(worker: &Worker, addr: SocketAddr) -> Result<crate::QuicSocket, Error> {
    let registry = hooks::extension::<Registry>(worker);
    let steering = worker
        .state::<NetConfig>()
        .map(|c| c.quic_steering)
        .unwrap_or_default();
    let nth = if addr.port() == 0 {
        registry.next_zero(worker.id())
    } else {
        0
    };
    let acceptor = registry.acceptor(&Address::Udp(addr))?;
    let key = Key::Quic(addr, nth);
    let label = key.label();
    let inherited = worker.state::<Inherited>();
    let group = registry.quic(key, || {
        // Taken over from the process this one replaces: every slot's
        // socket, in slot order (the kernel's indices stay as they were).
        let taken: Vec<std::net::UdpSocket> = (0..)
            .map_while(|slot| {
                let label = crate::registry::quic_label(&label, slot);
                inherited.as_ref().and_then(|i| i.take(&label))
            })
            .map(|received| std::net::UdpSocket::from(received.fd))
            .collect();
        crate::quic::group::QuicGroup::bind(addr, steering, acceptor, taken)
    })?;
    let socket = crate::QuicSocket::new(group, worker.slot())?;
    hooks::report_listening(worker, Address::Udp(socket.local_addr()));
    Ok(socket)
}

fn listen(worker: &Worker, spec: ListenSpec) -> Result<Listener, Error> {
    let config = worker
        .state::<NetConfig>()
        .map(|c| (*c).clone())
        .unwrap_or_default();
    let registry = hooks::extension::<Registry>(worker);
    let Plan {
        key,
        balance,
        max_per_worker,
        max_total,
        proxy,
        bind,
    } = match plan(worker, spec, &config, &registry)? {
        Target::Shared(plan) => plan,
        Target::Handle(listener, max_per_worker) => {
            return handle(worker, listener, max_per_worker, registry.cap(&config))
        }
    };
    let slot = worker.slot();
    let label = key.label();
    let inherited = worker.state::<Inherited>();
    let slot_socket = matches!(key, Key::Slot(..)).then(|| SlotSocket {
        worker: worker.clone(),
        registry: Arc::downgrade(&registry),
        key: key.clone(),
    });
    let mut not_steered = None;
    let mut adopted = Vec::new();
    let slots = worker.cluster_info().slots;
    let unix_path = match &key {
        Key::Unix(path) => Some(path.clone()),
        _ => None,
    };
    // The kernel's program instead of the acceptor, where it applies.
    let setting = registry.kernel_steering(&config)?;
    let steer = Steer::of(balance).filter(|_| {
        setting != KernelSteering::Off
            && matches!(proxy, crate::proxy::Proxy::Off)
            && matches!((&key, &bind), (Key::Tcp(..), Bind::Tcp { .. }))
    });
    // A full worker's clients would wait in its own socket's queue while
    // another worker has room; the acceptor gives them to that one. (Sticky
    // holds them for their slot either way.)
    let per_worker_limit =
        steer.is_some() && max_per_worker.is_some() && balance != Balance::Sticky;
    let socket = registry.socket(key, || {
        let mut bind = bind;
        let wanted = steer.and_then(|mode| match crate::steer::probe() {
            Ok(()) if per_worker_limit => {
                not_steered = Some(crate::steer::Unsupported {
                    reason: "with max_connections_per_worker the acceptor gives a full \
                             worker's share to the others"
                        .into(),
                    denied: false,
                });
                None
            }
            Ok(()) => Some(mode),
            Err(why) => {
                not_steered = Some(why);
                None
            }
        });
        if let (Some(_), Bind::Tcp { reuseport, .. }) = (wanted, &mut bind) {
            // The group the workers' own sockets join.
            *reuseport = true;
        }
        // Taken over from the process this one replaces, or bound now.
        let (listener, bound_here) = match inherited.as_ref().and_then(|i| i.take(&label)) {
            Some(received) => (StdListener::from_received(received)?, false),
            None => (bind.bind(config.backlog)?, true),
        };
        let address = listener.address().map_err(|source| Error::Listen {
            addr: label.clone(),
            source,
        })?;
        let steering = match wanted {
            Some(mode) => match steering(mode, &listener, bound_here) {
                Ok(s) => Some(Arc::new(s)),
                Err(why) => {
                    not_steered = Some(why);
                    None
                }
            },
            None => None,
        };
        if steering.is_none() && !bound_here {
            // The old process's program, if it steered: this one accepts.
            crate::steer::detach(&listener);
            // The old process's slot sockets stay in the group (the kernel
            // hashes connections to them) until the last copy closes, which
            // resets what waits in their queues: this process keeps them,
            // each drained by a stand-in (as the new process of a
            // privilege-dropped one, which may not load eBPF, does).
            if let Some(inherited) = &inherited {
                adopted = inherited.take_members(&label);
            }
        }
        match (&not_steered, setting) {
            (Some(why), KernelSteering::Required) if !per_worker_limit => {
                return Err(Error::KernelSteering {
                    addr: address.to_string(),
                    reason: why.to_string(),
                })
            }
            (Some(why), _) => tracing::info!(
                %address,
                %balance,
                "{balance} through the acceptor thread, not the kernel: {why}"
            ),
            (None, _) if steering.is_some() => tracing::debug!(
                %address,
                %balance,
                "{balance} by the kernel (eBPF): every worker accepts on its own socket"
            ),
            (None, _) => {}
        }
        let cap = registry.cap(&config);
        let mut socket =
            SharedSocket::new(label.clone(), address, balance, listener, max_total, cap);
        socket.proxy = proxy;
        // One slot: its worker accepts itself (the acceptor's hop is for
        // choosing among workers).
        let solo = balance.uses_acceptor() && steering.is_none() && slots == 1;
        socket.solo.send_replace(solo);
        socket.steering = steering;
        // A socket file this cluster created goes away when it stops.
        socket.file = unix_path
            .filter(|_| bound_here)
            .and_then(|p| OwnedFile::of(&p));
        Ok(socket)
    })?;
    let fail = |source| Error::Listen {
        addr: socket.address.to_string(),
        source,
    };
    if !adopted.is_empty() {
        adopt(&registry, &socket, adopted)?;
    }
    let counters = socket.counters(worker.id(), slot, max_per_worker);
    let mode = match socket.balance {
        _ if socket.balance == Balance::ReusePort || socket.steering.is_some() => reuseport(
            worker,
            &registry,
            &socket,
            inherited.as_deref(),
            &counters,
            config.backlog,
        )?,
        b => {
            let dispatch = Arc::clone(&socket.dispatch);
            let inbox = dispatch.attach(slot, Arc::clone(&counters));
            let seat = Seat::new(worker, &socket.label, dispatch, inbox, None);
            seat.watch(&registry.acceptor(&socket.address)?);
            if b.uses_acceptor() && *socket.solo.borrow() && (slot, slots) == (0, 1) {
                let own =
                    AcceptSocket::register(&socket.listener, socket.proxy.clone()).map_err(fail)?;
                Mode::Solo {
                    own,
                    seat,
                    solo: socket.solo.subscribe(),
                }
            } else if b.uses_acceptor() {
                registry.end_solo(&socket)?;
                Mode::Dispatched(seat)
            } else {
                let own =
                    AcceptSocket::register(&socket.listener, socket.proxy.clone()).map_err(fail)?;
                Mode::Own {
                    own,
                    seat: Some(seat),
                }
            }
        }
    };
    Ok(Listener {
        mode,
        address: socket.address.clone(),
        balance: socket.balance,
        slot,
        counters,
        totals: Arc::clone(&socket.totals),
        slot_socket,
        first_accept: crate::upgrade::FirstAccept::new(worker),
    })
}

/// This slot's socket of the `SO_REUSEPORT` group, bound on first use with
/// the group's port (so port 0 is resolved once).
fn reuseport(
    worker: &Worker,
    registry: &Registry,
    socket: &Arc<SharedSocket>,
    inherited: Option<&Inherited>,
    counters: &Arc<Counters>,
    backlog: i32,
) -> Result<Mode, Error> {
    let fail = |source| Error::Listen {
        addr: socket.address.to_string(),
        source,
    };
    let dispatch = Arc::clone(&socket.dispatch);
    let slot = worker.slot();
    let acceptor = registry.acceptor(&socket.address)?;
    let member = {
        let mut group = socket
            .group
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let member_of = |slot: usize, first: bool| -> Result<Arc<ReuseSocket>, Error> {
            let received = inherited.and_then(|i| i.take(&reuse_label(&socket.label, slot)));
            let listener = match received {
                Some(received) => StdListener::from_received(received)?,
                None if first => socket.listener.try_clone().map_err(fail)?,
                None => {
                    let Address::Tcp(addr) = socket.address else {
                        return Err(fail(std::io::Error::other("reuseport needs TCP")));
                    };
                    StdListener::Tcp(bind::tcp(addr, true, backlog)?)
                }
            };
            if let Some(steering) = &socket.steering {
                // Its place in the program's map, by slot (never shifted).
                if let Err(e) = steering.insert(slot, listener.as_fd()) {
                    tracing::warn!(
                        address = %socket.address,
                        slot,
                        error = %e,
                        "the kernel will not steer connections to this slot's socket"
                    );
                }
            }
            Ok(Arc::new(ReuseSocket::new(
                listener,
                slot,
                socket,
                acceptor.clone(),
            )))
        };
        if group.is_empty() {
            // Slot 0's member is the socket bound for the key itself: slot 0
            // is never removed, so the registry's copy never keeps a removed
            // slot's socket open. Until its worker listens, a stand-in
            // drains it.
            let first = member_of(0, true)?;
            if slot != 0 {
                first.cover();
            }
            group.insert(0, first);
        }
        match group.get(&slot) {
            Some(m) => Arc::clone(m),
            None => {
                let m = member_of(slot, false)?;
                group.insert(slot, Arc::clone(&m));
                m
            }
        }
    };
    let own = AcceptSocket::register(&member.listener, socket.proxy.clone()).map_err(fail)?;
    member.attach();
    let inbox = dispatch.attach(slot, Arc::clone(counters));
    let seat = Seat::new(worker, &socket.label, dispatch, inbox, Some(member));
    seat.watch(&acceptor);
    Ok(Mode::Own {
        own,
        seat: Some(seat),
    })
}

/// The old process's slot sockets of `socket`'s group, which this process
/// does not accept on itself: each gets a stand-in that hands what the
/// kernel queues there to this process's workers, for the group's life.
fn adopt(
    registry: &Registry,
    socket: &Arc<SharedSocket>,
    members: Vec<(usize, crate::handoff::Received)>,
) -> Result<(), Error> {
    let acceptor = registry.acceptor(&socket.address)?;
    let mut group = socket
        .group
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (slot, received) in members {
        let listener = StdListener::from_received(received)?;
        let member = Arc::new(ReuseSocket::new(listener, slot, socket, acceptor.clone()));
        member.cover();
        group.insert(slot, member);
    }
    tracing::debug!(
        address = %socket.address,
        sockets = group.len(),
        "the old process's slot sockets are drained by stand-ins"
    );
    Ok(())
}

/// Kernel steering of `mode` for the group of `listener`, the key's socket:
/// bound here with `SO_REUSEPORT`, or inherited (then it must be in a group
/// already, as the old process's steering or reuseport made it).
fn steering(
    mode: crate::steer::Mode,
    listener: &StdListener,
    bound_here: bool,
) -> Result<crate::steer::Steering, crate::steer::Unsupported> {
    let in_group = bound_here
        || socket2::SockRef::from(listener)
            .reuse_port()
            .unwrap_or(false);
    if !in_group {
        return Err(crate::steer::Unsupported {
            reason: "the socket taken over from the old process is not in a reuseport group".into(),
            denied: false,
        });
    }
    crate::steer::Steering::for_group(mode, listener.as_fd())
}

/// `Listen::Handle`: the worker's own listener, no primary involved.
fn handle(
    worker: &Worker,
    listener: std::net::TcpListener,
    max_per_worker: Option<usize>,
    cap: Arc<crate::cap::Cap>,
) -> Result<Listener, Error> {
    let shown = format!(
        "{}",
        Listen::Handle(listener.try_clone().map_err(|source| Error::Listen {
            addr: "handle".into(),
            source,
        })?)
    );
    let fail = |source| Error::Listen {
        addr: shown.clone(),
        source,
    };
    listener.set_nonblocking(true).map_err(fail)?;
    let address = Address::Tcp(listener.local_addr().map_err(fail)?);
    let std_listener = StdListener::Tcp(listener);
    let socket = SharedSocket::new(
        "handle".into(),
        address.clone(),
        Balance::Os,
        std_listener,
        None,
        cap,
    );
    let mode = Mode::Own {
        own: AcceptSocket::register(&socket.listener, crate::proxy::Proxy::Off).map_err(fail)?,
        seat: None,
    };
    Ok(Listener {
        mode,
        address,
        balance: Balance::Os,
        slot: worker.slot(),
        counters: socket.counters(worker.id(), worker.slot(), max_per_worker),
        totals: Arc::clone(&socket.totals),
        slot_socket: None,
        first_accept: crate::upgrade::FirstAccept::new(worker),
    })
}
