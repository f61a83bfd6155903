//! Planning a `listen`: from what it asks for and the cluster's settings,
//! the shared socket's key, its balance mode, its limits, and how to bind it
//! the first time. Nothing is bound here.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use cluster_core::Worker;

use crate::bind::{self, StdListener};
use crate::registry::{Key, Registry};
use crate::{Balance, Error, Listen, ListenSpec, NetConfig, Ports, SystemdSockets};

/// A socket the workers share (or a per-worker one the registry keeps).
pub(crate) struct Plan {
    pub(crate) key: Key,
    pub(crate) balance: Balance,
    pub(crate) max_per_worker: Option<usize>,
    pub(crate) max_total: Option<usize>,
    pub(crate) proxy: crate::proxy::Proxy,
    pub(crate) bind: Bind,
}

/// How to create the socket when the registry has none for the key yet.
pub(crate) enum Bind {
    Tcp {
        addr: SocketAddr,
        reuseport: bool,
    },
    Unix(PathBuf),
    Fd(RawFd),
    /// systemd's socket for this address.
    Activated(OwnedFd),
}

impl Bind {
    pub(crate) fn bind(self, backlog: i32) -> Result<StdListener, Error> {
        match self {
            Bind::Tcp { addr, reuseport } => {
                bind::tcp(addr, reuseport, backlog).map(StdListener::Tcp)
            }
            Bind::Unix(path) => bind::unix(&path, backlog).map(StdListener::Unix),
            Bind::Fd(fd) => bind::inherited(fd),
            Bind::Activated(fd) => bind::inherited(fd.into_raw_fd()),
        }
    }
}

/// What a `listen` becomes.
pub(crate) enum Target {
    Shared(Plan),
    /// `Listen::Handle`: the worker's own listener, no registry.
    Handle(std::net::TcpListener, Option<usize>),
}

pub(crate) fn plan(
    worker: &Worker,
    spec: ListenSpec,
    config: &NetConfig,
    registry: &Registry,
) -> Result<Target, Error> {
    let options = spec.options.clone().or(config.options.clone());
    // A listener's own balance, else the environment's, else the cluster's.
    let balance = match spec.options.balance {
        Some(b) => b,
        None => registry
            .balance_env()?
            .or(config.options.balance)
            .unwrap_or_default(),
    };
    let ports = options.ports.unwrap_or_default();
    let (max_per_worker, max_total) = (options.max_connections_per_worker, options.max_connections);
    let proxy = match options.proxy_protocol {
        Some(true) => crate::proxy::Proxy::On {
            from: options.proxy_from.clone(),
        },
        _ => crate::proxy::Proxy::Off,
    };
    let slot = worker.slot();
    let shared = |key, balance, bind| {
        Ok(Target::Shared(Plan {
            key,
            balance,
            max_per_worker,
            max_total,
            proxy,
            bind,
        }))
    };
    match systemd(worker, spec.target)? {
        Listen::Handle(listener) => Ok(Target::Handle(listener, max_per_worker)),
        Listen::Tcp(asked) => {
            let nth = if asked.port() == 0 {
                registry.next_zero(worker.id())
            } else {
                0
            };
            let per_worker = match ports {
                Ports::Shared => None,
                Ports::PerWorker if asked.port() == 0 => Some(asked),
                Ports::PerWorker => {
                    let port = usize::from(asked.port()) + slot;
                    let port = u16::try_from(port).map_err(|_| Error::PortOverflow {
                        addr: asked.to_string(),
                        slot,
                    })?;
                    Some(SocketAddr::new(asked.ip(), port))
                }
                Ports::PerWorkerWith(f) => Some(SocketAddr::new(asked.ip(), f(slot))),
            };
            if let Some(addr) = per_worker {
                let bind = Bind::Tcp {
                    addr,
                    reuseport: false,
                };
                return shared(Key::Slot(asked, slot, nth), Balance::Os, bind);
            }
            let balance = reuseport_or_os(balance);
            // Socket activation: systemd's socket for this address.
            let activated = worker
                .state::<SystemdSockets>()
                .filter(|_| nth == 0)
                .and_then(|s| s.tcp_listener(asked));
            let key = Key::Tcp(asked, nth);
            match activated {
                Some(fd) => {
                    if balance == Balance::ReusePort {
                        tracing::warn!(%asked, "reuseport cannot apply to systemd's socket; using os");
                    }
                    let balance = os_for_reuseport(balance);
                    shared(key, balance, Bind::Activated(fd))
                }
                None => {
                    let reuseport = balance == Balance::ReusePort;
                    shared(
                        key,
                        balance,
                        Bind::Tcp {
                            addr: asked,
                            reuseport,
                        },
                    )
                }
            }
        }
        Listen::Unix(path) => {
            let bind = Bind::Unix(path.clone());
            shared(Key::Unix(path), os_for_reuseport(balance), bind)
        }
        Listen::Fd(fd) => {
            if balance == Balance::ReusePort {
                tracing::warn!(fd, "reuseport cannot apply to an inherited fd; using os");
            }
            shared(Key::Fd(fd), os_for_reuseport(balance), Bind::Fd(fd))
        }
        Listen::Systemd(_) | Listen::SystemdNamed(_) => {
            unreachable!("resolved to Listen::Fd by systemd()")
        }
    }
}

/// Reuseport needs a TCP socket of its own per slot: not for a socket given.
fn os_for_reuseport(balance: Balance) -> Balance {
    if balance == Balance::ReusePort {
        Balance::Os
    } else {
        balance
    }
}

/// `Listen::Systemd*` as the `Listen::Fd` systemd passed; the rest as is.
fn systemd(worker: &Worker, target: Listen) -> Result<Listen, Error> {
    let (Listen::Systemd(_) | Listen::SystemdNamed(_)) = target else {
        return Ok(target);
    };
    let sockets = worker
        .state::<SystemdSockets>()
        .ok_or_else(|| Error::Systemd {
            reason: format!(
                "listen({target}) needs SystemdSockets::from_env() given to the cluster as state"
            ),
        })?;
    let fd = match &target {
        Listen::Systemd(n) => sockets.fd(*n),
        Listen::SystemdNamed(name) => sockets.named(name),
        _ => None,
    };
    fd.map(Listen::Fd).ok_or_else(|| Error::Systemd {
        reason: format!("no {target}: systemd passed {} socket(s)", sockets.len()),
    })
}

fn reuseport_or_os(balance: Balance) -> Balance {
    if balance == Balance::ReusePort && !cfg!(any(target_os = "linux", target_os = "android")) {
        tracing::warn!("reuseport balancing is Linux-only; using os");
        return Balance::Os;
    }
    balance
}
