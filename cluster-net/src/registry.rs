//! The primary's sockets: one registry per cluster (a cluster extension), so
//! sockets outlive any one worker. Dropped when the cluster stops, which
//! closes every socket (the acceptor thread first) and removes the Unix
//! socket files the cluster created.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use cluster_core::Address;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::accept::AcceptSocket;
use crate::acceptor::{accept_loop, stand_in, AcceptorThread, Occupancy};
use crate::bind::StdListener;
use crate::cap::Cap;
use crate::conn::{Counters, Totals};
use crate::dispatch::Dispatch;
use crate::steer::{Publisher, Steering};
use crate::{Balance, Error, KernelSteering, NetConfig, BALANCE_ENV, KERNEL_STEERING_ENV};

/// What identifies a socket the workers share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// The address asked for; for port 0, the n-th such `listen` of a worker.
    Tcp(SocketAddr, usize),
    /// A per-worker socket: the address asked for, the slot, the n-th.
    Slot(SocketAddr, usize, usize),
    Unix(PathBuf),
    Fd(RawFd),
    Udp(SocketAddr, usize),
    /// A QUIC port's reuseport group: the address asked for, the n-th.
    Quic(SocketAddr, usize),
}

impl Key {
    /// The socket's name in a hot upgrade: the same `listen` in the new
    /// process finds it by this.
    pub(crate) fn label(&self) -> String {
        match self {
            Key::Tcp(a, n) => format!("tcp {a} #{n}"),
            Key::Slot(a, slot, n) => format!("tcp {a} slot {slot} #{n}"),
            Key::Unix(p) => format!("unix {}", p.display()),
            Key::Fd(fd) => format!("fd {fd}"),
            Key::Udp(a, n) => format!("udp {a} #{n}"),
            Key::Quic(a, n) => format!("quic {a} #{n}"),
        }
    }
}

/// One shared listening socket.
pub(crate) struct SharedSocket {
    /// Its key's label, for hot upgrades.
    pub(crate) label: String,
    pub(crate) address: Address,
    pub(crate) balance: Balance,
    /// The primary's own copy: keeps the socket open while workers come and go.
    pub(crate) listener: StdListener,
    /// Where connections are handed to the workers: by the acceptor (its
    /// modes), by reuseport's stand-ins, and by a draining worker that
    /// hands its idle connections on (every mode).
    pub(crate) dispatch: Arc<Dispatch>,
    /// Reuseport: the group's socket of each slot.
    pub(crate) group: Mutex<BTreeMap<usize, Arc<ReuseSocket>>>,
    /// Its connection counts and limit (`max_connections`).
    pub(crate) totals: Arc<Totals>,
    pub(crate) counters: Mutex<Vec<Weak<Counters>>>,
    /// The socket file it created, for `unix:` listeners bound here.
    pub(crate) file: Option<OwnedFile>,
    /// Whether its connections start with a PROXY protocol header, and
    /// from whom.
    pub(crate) proxy: crate::proxy::Proxy,
    /// Kernel steering (round-robin, least-connections, sticky without the
    /// acceptor): the program of its reuseport group, `group`.
    pub(crate) steering: Option<Arc<Steering>>,
    /// The acceptor modes without kernel steering: true while the cluster
    /// has one slot, whose worker then accepts itself; the acceptor's
    /// loop starts when it turns false.
    pub(crate) solo: tokio::sync::watch::Sender<bool>,
}

impl SharedSocket {
    pub(crate) fn new(
        label: String,
        address: Address,
        balance: Balance,
        listener: StdListener,
        max_total: Option<usize>,
        cap: Arc<Cap>,
    ) -> SharedSocket {
        let dispatch = Arc::new(Dispatch::new(balance));
        SharedSocket {
            label,
            address,
            balance,
            listener,
            dispatch,
            group: Mutex::default(),
            totals: Arc::new(Totals::new(cap, max_total)),
            counters: Mutex::default(),
            file: None,
            proxy: crate::proxy::Proxy::Off,
            steering: None,
            solo: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The counts of worker `id`'s listener, with its connection limit.
    pub(crate) fn counters(&self, id: u64, slot: usize, limit: Option<usize>) -> Arc<Counters> {
        let counters = Arc::new(Counters {
            id,
            slot,
            accepted: Default::default(),
            active: Default::default(),
            limit,
            freed: Notify::new(),
            capacity: self.dispatch.capacity(),
            publisher: self.steering.as_ref().map(|s| Publisher::new(s, slot)),
        });
        let mut all = lock(&self.counters);
        all.retain(|c| c.strong_count() > 0);
        all.push(Arc::downgrade(&counters));
        counters
    }
}

/// A slot's socket in a `SO_REUSEPORT` group. While no worker of the slot
/// listens on it, a stand-in on the acceptor thread accepts from it (the
/// kernel still hashes connections to it, or, with kernel steering, left
/// them there when the worker went) and hands them to the other workers.
/// Closed when the cluster stops, or when its slot is removed (scale-down)
/// if the kernel moves a closed listener's queue to the rest of the group
/// (kernel steering's `SELECT_OR_MIGRATE` program, or
/// `net.ipv4.tcp_migrate_req`); else a removed slot's socket stays with its
/// stand-in (and serves that slot again after a scale-up): closing it would
/// reset a connection that completed its handshake between the last
/// `accept` and the close.
pub(crate) struct ReuseSocket {
    pub(crate) listener: StdListener,
    slot: usize,
    occupancy: Occupancy,
    shared: Weak<SharedSocket>,
    acceptor: Handle,
}

impl ReuseSocket {
    pub(crate) fn new(
        listener: StdListener,
        slot: usize,
        shared: &Arc<SharedSocket>,
        acceptor: Handle,
    ) -> Self {
        ReuseSocket {
            listener,
            slot,
            occupancy: Occupancy::default(),
            shared: Arc::downgrade(shared),
            acceptor,
        }
    }

    pub(crate) fn attach(&self) {
        self.occupancy.attach();
    }

    /// Kernel steering: whether the group's program may choose this slot
    /// (its worker accepts).
    pub(crate) fn set_live(&self, live: bool) {
        let Some(steering) = self.shared.upgrade().and_then(|s| s.steering.clone()) else {
            return;
        };
        if let Err(e) = steering.set_live(self.slot, live) {
            tracing::warn!(slot = self.slot, error = %e, "kernel steering cannot choose this slot");
        }
    }

    /// A listener of the slot's worker stops. When it was the last: a slot
    /// that stays gets a stand-in; a removed one (`retired`) is drained to
    /// the other workers and closed.
    pub(crate) fn detach(self: &Arc<Self>, retired: bool) {
        if !self.occupancy.detach() {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        // New connections go to the live slots from now on.
        self.set_live(false);
        let migrates = shared.steering.is_some() || kernel_migrates_requests();
        if !retired || !migrates {
            self.cover();
            return;
        }
        let dispatch = Arc::clone(&shared.dispatch);
        lock(&shared.group).remove(&self.slot);
        // A backlog of 0 keeps what joins while the queue is drained to one
        // connection, which the kernel moves to another socket of the group
        // when this one shuts down (`tcp_migrate_req`). Shutting the socket
        // down takes it out of the group at once, whoever still holds a
        // copy of its fd.
        let sock = socket2::SockRef::from(&self.listener);
        let _ = sock.listen(0);
        let mut moved = 0;
        for conn in crate::accept::drain(&self.listener, &shared.proxy, &shared.totals) {
            dispatch.deliver(conn);
            moved += 1;
        }
        let _ = sock.shutdown(std::net::Shutdown::Both);
        tracing::debug!(
            slot = self.slot,
            moved,
            "removed slot's reuseport socket drained and closed"
        );
    }

    /// While no worker of the slot listens: a stand-in accepts for it.
    pub(crate) fn cover(self: &Arc<Self>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let dispatch = Arc::clone(&shared.dispatch);
        let (this, totals, shared_proxy) = (
            Arc::clone(self),
            Arc::clone(&shared.totals),
            shared.proxy.clone(),
        );
        self.acceptor.spawn(async move {
            stand_in(
                &this.occupancy,
                &this.listener,
                shared_proxy,
                &dispatch,
                &totals,
            )
            .await;
        });
    }
}

/// Whether this network namespace's kernel hands a closed listener's queued
/// connections to another socket of its `SO_REUSEPORT` group
/// (`net.ipv4.tcp_migrate_req = 1`, Linux 5.14+; off by default).
fn kernel_migrates_requests() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}

/// A Unix socket file the cluster created: removed when it stops, if it is
/// still that socket (never a file someone put there since).
pub(crate) struct OwnedFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl OwnedFile {
    pub(crate) fn of(path: &std::path::Path) -> Option<OwnedFile> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(OwnedFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn remove(&self) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let same = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino);
        if same {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file");
            }
        }
    }
}

/// Everything `cluster-net` keeps for one cluster.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<RegistryState>,
    acceptor: OnceLock<AcceptorThread>,
    /// A hot upgrade handed the sockets to a new process, which uses the
    /// socket files now.
    handed_over: AtomicBool,
    cap: OnceLock<Arc<Cap>>,
    /// `CLUSTER_THREAD_BALANCE`, read once, by the cluster's first `listen`.
    balance_env: OnceLock<Option<String>>,
    /// `CLUSTER_THREAD_KERNEL_STEERING`, read once, likewise.
    steering_env: OnceLock<Option<String>>,
}

#[derive(Default)]
struct RegistryState {
    sockets: HashMap<Key, Arc<SharedSocket>>,
    udp: HashMap<Key, Arc<std::net::UdpSocket>>,
    quic: HashMap<Key, Arc<crate::quic::group::QuicGroup>>,
    /// Per worker id: how many port-0 listens it made.
    zero_counts: HashMap<u64, usize>,
}

/// The label of a slot's socket of a QUIC port, in a hot upgrade.
pub(crate) fn quic_label(label: &str, slot: usize) -> String {
    format!("{label} slot {slot}")
}

/// The label of a slot's socket in a reuseport group.
pub(crate) fn reuse_label(label: &str, slot: usize) -> String {
    format!("{label} reuseport {slot}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// The cluster's connection cap, set by the first `listen`'s config.
    pub(crate) fn cap(&self, config: &NetConfig) -> Arc<Cap> {
        let cap = self.cap.get_or_init(|| {
            Arc::new(Cap::new(
                config
                    .connection_cap
                    .unwrap_or_else(crate::cap::default_cap),
            ))
        });
        Arc::clone(cap)
    }

    /// The balance mode `CLUSTER_THREAD_BALANCE` sets for this cluster
    /// (`None`: unset), or an error naming the variable.
    pub(crate) fn balance_env(&self) -> Result<Option<Balance>, Error> {
        self.balance_env
            .get_or_init(|| {
                // Not Unicode: shown (lossily) in the error it causes.
                std::env::var_os(BALANCE_ENV).map(|v| v.to_string_lossy().into_owned())
            })
            .as_deref()
            .map(Balance::from_env_value)
            .transpose()
    }

    /// Whether the kernel steers this cluster's connections:
    /// `CLUSTER_THREAD_KERNEL_STEERING` if set, else the cluster's
    /// [`NetConfig::kernel_steering`]; an error names the variable.
    pub(crate) fn kernel_steering(&self, config: &NetConfig) -> Result<KernelSteering, Error> {
        let env = self
            .steering_env
            .get_or_init(|| {
                std::env::var_os(KERNEL_STEERING_ENV).map(|v| v.to_string_lossy().into_owned())
            })
            .as_deref()
            .map(KernelSteering::from_env_value)
            .transpose()?;
        Ok(env.unwrap_or(config.kernel_steering))
    }

    /// The cap as it stands, for the primary.
    pub(crate) fn cap_stats(&self) -> Option<Arc<Cap>> {
        self.cap.get().cloned()
    }

    /// The n-th port-0 listen of this worker (0 for the first).
    pub(crate) fn next_zero(&self, worker: u64) -> usize {
        let mut st = lock(&self.state);
        let n = st.zero_counts.entry(worker).or_default();
        *n += 1;
        *n - 1
    }

    /// The socket for `key`, bound by `bind` the first time.
    pub(crate) fn socket(
        &self,
        key: Key,
        bind: impl FnOnce() -> Result<SharedSocket, Error>,
    ) -> Result<Arc<SharedSocket>, Error> {
        let mut st = lock(&self.state);
        if let Some(s) = st.sockets.get(&key) {
            return Ok(Arc::clone(s));
        }
        let socket = Arc::new(bind()?);
        st.sockets.insert(key, Arc::clone(&socket));
        drop(st);
        if socket.balance.uses_acceptor() && socket.steering.is_none() && !*socket.solo.borrow() {
            self.spawn_acceptor(&socket, Arc::clone(&socket.dispatch))?;
        }
        Ok(socket)
    }

    /// A worker of another slot than a solo socket's listens on it: the
    /// acceptor takes over (the solo worker turns to its seat).
    pub(crate) fn end_solo(&self, socket: &Arc<SharedSocket>) -> Result<(), Error> {
        if socket.solo.send_replace(false) {
            self.spawn_acceptor(socket, Arc::clone(&socket.dispatch))?;
        }
        Ok(())
    }

    /// The shared socket a hot upgrade names `label`.
    pub(crate) fn socket_by_label(&self, label: &str) -> Option<Arc<SharedSocket>> {
        let st = lock(&self.state);
        st.sockets.values().find(|s| s.label == label).cloned()
    }

    pub(crate) fn udp(
        &self,
        key: Key,
        bind: impl FnOnce() -> Result<std::net::UdpSocket, Error>,
    ) -> Result<Arc<std::net::UdpSocket>, Error> {
        let mut st = lock(&self.state);
        if let Some(s) = st.udp.get(&key) {
            return Ok(Arc::clone(s));
        }
        let socket = Arc::new(bind()?);
        st.udp.insert(key, Arc::clone(&socket));
        Ok(socket)
    }

    /// The QUIC group for `key`, bound by `bind` the first time.
    pub(crate) fn quic(
        &self,
        key: Key,
        bind: impl FnOnce() -> Result<Arc<crate::quic::group::QuicGroup>, Error>,
    ) -> Result<Arc<crate::quic::group::QuicGroup>, Error> {
        let mut st = lock(&self.state);
        if let Some(g) = st.quic.get(&key) {
            return Ok(Arc::clone(g));
        }
        let group = bind()?;
        st.quic.insert(key, Arc::clone(&group));
        Ok(group)
    }

    /// Every QUIC group, for the stats.
    pub(crate) fn quic_groups(&self) -> Vec<Arc<crate::quic::group::QuicGroup>> {
        lock(&self.state).quic.values().cloned().collect()
    }

    /// A dup of every socket with its label and address, for a hot upgrade.
    pub(crate) fn export(&self) -> Vec<(String, String, std::os::fd::OwnedFd)> {
        use std::os::fd::AsFd;
        let st = lock(&self.state);
        let mut out = Vec::new();
        let mut push = |label: String, address: &Address, fd: std::os::fd::BorrowedFd<'_>| match fd
            .try_clone_to_owned()
        {
            Ok(fd) => out.push((label, address.to_string(), fd)),
            Err(e) => tracing::error!(%label, error = %e, "cannot hand this socket over"),
        };
        for socket in st.sockets.values() {
            push(
                socket.label.clone(),
                &socket.address,
                socket.listener.as_fd(),
            );
            for (slot, member) in lock(&socket.group).iter() {
                push(
                    reuse_label(&socket.label, *slot),
                    &socket.address,
                    member.listener.as_fd(),
                );
            }
        }
        for (key, socket) in &st.udp {
            if let Ok(a) = socket.local_addr() {
                push(key.label(), &Address::Udp(a), socket.as_fd());
            }
        }
        for (key, group) in &st.quic {
            for (slot, fd) in group.dup_members().into_iter().enumerate() {
                let label = quic_label(&key.label(), slot);
                match fd {
                    Ok(fd) => out.push((label, Address::Udp(group.addr).to_string(), fd)),
                    Err(e) => tracing::error!(%label, error = %e, "cannot hand this socket over"),
                }
            }
        }
        out
    }

    /// Live counters of every listener, with its socket's totals, for the primary.
    pub(crate) fn stats(&self) -> Vec<(Address, Balance, Arc<Counters>, Arc<Totals>)> {
        let st = lock(&self.state);
        let mut out = Vec::new();
        for socket in st.sockets.values() {
            for c in lock(&socket.counters).iter().filter_map(Weak::upgrade) {
                let totals = Arc::clone(&socket.totals);
                out.push((socket.address.clone(), socket.balance, c, totals));
            }
        }
        out
    }

    pub(crate) fn acceptor(&self, addr: &Address) -> Result<Handle, Error> {
        if let Some(a) = self.acceptor.get() {
            return Ok(a.handle.clone());
        }
        let thread = AcceptorThread::start().map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })?;
        // Two workers may race here; the loser's thread ends at once.
        Ok(self.acceptor.get_or_init(|| thread).handle.clone())
    }

    fn spawn_acceptor(
        &self,
        socket: &Arc<SharedSocket>,
        dispatch: Arc<Dispatch>,
    ) -> Result<(), Error> {
        let fail = |source| Error::Listen {
            addr: socket.address.to_string(),
            source,
        };
        let handle = self.acceptor(&socket.address)?;
        let listener = {
            // Registered on the acceptor's runtime.
            let _runtime = handle.enter();
            AcceptSocket::register(&socket.listener, socket.proxy.clone()).map_err(fail)?
        };
        handle.spawn(accept_loop(listener, dispatch, Arc::clone(&socket.totals)));
        Ok(())
    }

    /// Closes the socket of `key` (a removed slot's), unless others use it.
    pub(crate) fn remove(&self, key: &Key) {
        lock(&self.state).sockets.remove(key);
    }

    /// The sockets now belong to a new process too: leave their files.
    pub(crate) fn hand_over(&self) {
        self.handed_over.store(true, Ordering::SeqCst);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Its loops hold clones of the sockets: closed when it returns.
        drop(self.acceptor.take());
        let st = std::mem::take(&mut *lock(&self.state));
        if !self.handed_over.load(Ordering::SeqCst) {
            for socket in st.sockets.values() {
                if let Some(file) = &socket.file {
                    file.remove();
                }
            }
        }
    }
}
