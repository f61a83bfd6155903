//! The primary's sockets: one registry per cluster (a cluster extension), so
//! sockets outlive any one worker, and the acceptor thread that serves the
//! balance modes needing one.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use cluster_core::Address;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use crate::accept::AcceptSocket;
use crate::balance::Dispatch;
use crate::bind::StdListener;
use crate::conn::{Counters, Totals};
use crate::{Balance, Error};

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
    /// For the acceptor modes, and for reuseport's empty slots.
    pub(crate) dispatch: Option<Arc<Dispatch>>,
    /// Reuseport: the group's socket of each slot.
    pub(crate) group: Mutex<BTreeMap<usize, Arc<ReuseSocket>>>,
    pub(crate) totals: Arc<Totals>,
    /// The limit of open connections, all workers together.
    pub(crate) max_total: Option<usize>,
    pub(crate) counters: Mutex<Vec<Weak<Counters>>>,
}

impl SharedSocket {
    pub(crate) fn new(
        label: String,
        address: Address,
        balance: Balance,
        listener: StdListener,
        max_total: Option<usize>,
    ) -> SharedSocket {
        let dispatch = (balance.uses_acceptor() || balance == Balance::ReusePort)
            .then(|| Arc::new(Dispatch::new(balance)));
        SharedSocket {
            label,
            address,
            balance,
            listener,
            dispatch,
            group: Mutex::default(),
            totals: Arc::default(),
            max_total,
            counters: Mutex::default(),
        }
    }

    pub(crate) fn counters(&self, id: u64, slot: usize) -> Arc<Counters> {
        let counters = Arc::new(Counters {
            id,
            slot,
            accepted: Default::default(),
            active: Default::default(),
            freed: Notify::new(),
            capacity: self.dispatch.as_ref().map(|d| d.capacity()),
        });
        let mut all = lock(&self.counters);
        all.retain(|c| c.strong_count() > 0);
        all.push(Arc::downgrade(&counters));
        counters
    }
}

/// A slot's socket in a `SO_REUSEPORT` group. While no worker of the slot
/// listens on it, the primary accepts from it (the kernel still hashes
/// connections to it) and hands them to the other workers.
pub(crate) struct ReuseSocket {
    pub(crate) listener: StdListener,
    attached: AtomicUsize,
    reattached: Notify,
    shared: Weak<SharedSocket>,
    acceptor: Handle,
}

impl ReuseSocket {
    pub(crate) fn new(listener: StdListener, shared: &Arc<SharedSocket>, acceptor: Handle) -> Self {
        ReuseSocket {
            listener,
            attached: AtomicUsize::new(0),
            reattached: Notify::new(),
            shared: Arc::downgrade(shared),
            acceptor,
        }
    }

    pub(crate) fn attach(&self) {
        self.attached.fetch_add(1, Ordering::SeqCst);
        self.reattached.notify_waiters();
    }

    /// The slot's worker stopped listening: take its socket's queue over.
    pub(crate) fn detach(self: &Arc<Self>) {
        if self.attached.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let this = Arc::clone(self);
        self.acceptor.spawn(async move { this.stand_in().await });
    }

    async fn stand_in(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let (Some(dispatch), totals) = (shared.dispatch.clone(), Arc::clone(&shared.totals)) else {
            return;
        };
        drop(shared);
        let listener = match AcceptSocket::register(&self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot take over an empty slot's reuseport socket");
                return;
            }
        };
        loop {
            let reattached = self.reattached.notified();
            tokio::pin!(reattached);
            reattached.as_mut().enable();
            if self.attached.load(Ordering::SeqCst) > 0 {
                return;
            }
            tokio::select! {
                () = &mut reattached => return,
                () = dispatch.wanted() => {}
            }
            tokio::select! {
                () = &mut reattached => return,
                () = dispatch.accept_from(&listener, &totals.accept_errors) => {}
            }
        }
    }
}

/// Everything `cluster-net` keeps for one cluster.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<RegistryState>,
    acceptor: OnceLock<AcceptorThread>,
}

#[derive(Default)]
struct RegistryState {
    sockets: HashMap<Key, Arc<SharedSocket>>,
    udp: HashMap<Key, Arc<std::net::UdpSocket>>,
    /// Per worker id: how many port-0 listens it made.
    zero_counts: HashMap<u64, usize>,
}

struct AcceptorThread {
    handle: Handle,
    /// Dropped with the registry: the thread then ends.
    _stop: oneshot::Sender<()>,
}

/// The label of a slot's socket in a reuseport group.
pub(crate) fn reuse_label(label: &str, slot: usize) -> String {
    format!("{label} reuseport {slot}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
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
        if let Some(dispatch) = socket
            .dispatch
            .clone()
            .filter(|_| socket.balance.uses_acceptor())
        {
            self.spawn_acceptor(&socket, dispatch)?;
        }
        Ok(socket)
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
        out
    }

    /// Live counters of every listener, with its socket's totals, for the primary.
    pub(crate) fn stats(&self) -> Vec<(Address, Arc<Counters>, Arc<Totals>)> {
        let st = lock(&self.state);
        let mut out = Vec::new();
        for socket in st.sockets.values() {
            for c in lock(&socket.counters).iter().filter_map(Weak::upgrade) {
                out.push((socket.address.clone(), c, Arc::clone(&socket.totals)));
            }
        }
        out
    }

    pub(crate) fn acceptor(&self, addr: &Address) -> Result<Handle, Error> {
        if let Some(a) = self.acceptor.get() {
            return Ok(a.handle.clone());
        }
        let fail = |source| Error::Listen {
            addr: addr.to_string(),
            source,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(fail)?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("cluster-acceptor".into())
            .spawn(move || {
                let _ = rt.block_on(stopped);
            })
            .map_err(fail)?;
        let thread = AcceptorThread {
            handle,
            _stop: stop,
        };
        // Two workers may race here; the loser's thread ends at once.
        Ok(self.acceptor.get_or_init(|| thread).handle.clone())
    }

    fn spawn_acceptor(
        &self,
        socket: &Arc<SharedSocket>,
        dispatch: Arc<Dispatch>,
    ) -> Result<(), Error> {
        let handle = self.acceptor(&socket.address)?;
        let std_listener = socket
            .listener
            .try_clone()
            .map_err(|source| Error::Listen {
                addr: socket.address.to_string(),
                source,
            })?;
        let totals = Arc::clone(&socket.totals);
        let max_total = socket.max_total;
        let address = socket.address.clone();
        handle.spawn(async move {
            let listener = match AcceptSocket::register(&std_listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(%address, error = %e, "acceptor cannot register the socket");
                    return;
                }
            };
            loop {
                dispatch.wanted().await;
                if let Some(max) = max_total {
                    wait_total_below(&totals, max).await;
                }
                dispatch.accept_from(&listener, &totals.accept_errors).await;
            }
        });
        Ok(())
    }
}

async fn wait_total_below(totals: &Totals, max: usize) {
    loop {
        let freed = totals.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if totals.active.load(Ordering::Acquire) < max {
            return;
        }
        freed.await;
    }
}
