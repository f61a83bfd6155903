use std::sync::atomic::Ordering;

use cluster_core::hooks;
use cluster_core::{Address, Cluster};

use crate::registry::Registry;
use crate::{Balance, Error};

/// One worker's connection counts on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// The listener's address.
    pub address: Address,
    /// How its socket's connections are balanced.
    pub balance: Balance,
    /// The worker's id.
    pub worker: u64,
    /// The worker's slot.
    pub slot: usize,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections open now.
    pub active: usize,
    /// Failed accepts on the listener's socket so far, by any worker or
    /// the acceptor (each logged and waited out; see
    /// [`Listener::accept`](crate::Listener::accept)).
    pub accept_errors: u64,
    /// Connections closed for a missing or malformed PROXY header on the
    /// listener's socket so far.
    pub proxy_rejected: u64,
    /// Open connections handed over from draining workers to live ones
    /// (by `cluster-http`'s drain, `HttpConfig::migrate`) on the listener's socket so far.
    pub migrated: u64,
    /// Whether the kernel chooses the worker of each new connection
    /// ([`NetConfig::kernel_steering`](crate::NetConfig::kernel_steering)),
    /// rather than the acceptor thread; false for the modes without either.
    pub kernel_steering: bool,
}

/// The connection counts of every live worker's listeners, read by the primary.
pub fn stats(cluster: &Cluster) -> Vec<ListenerStats> {
    let mut all: Vec<_> = hooks::cluster_extension::<Registry>(cluster)
        .stats()
        .into_iter()
        .map(|(address, balance, c, totals)| ListenerStats {
            address,
            balance,
            worker: c.id,
            slot: c.slot,
            accepted: c.accepted.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            accept_errors: totals.accept_errors.load(Ordering::Relaxed),
            proxy_rejected: totals.proxy_rejected.load(Ordering::Relaxed),
            migrated: totals.migrated.load(Ordering::Relaxed),
            kernel_steering: c.publisher.is_some(),
        })
        .collect();
    all.sort_by_key(|s| (s.address.to_string(), s.slot, s.worker));
    all
}

/// One slot's socket of a QUIC port (`listen_quic`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuicStats {
    /// The port's address.
    pub address: Address,
    /// The slot.
    pub slot: usize,
    /// Generations of the slot's endpoints reading the socket now (two
    /// during a rolling reload's hand-over, none while the slot has no
    /// worker).
    pub endpoints: Vec<u32>,
    /// Datagrams that reached this socket and were forwarded to the
    /// endpoint their connection ID names, so far.
    pub forwarded: u64,
    /// Whether the kernel steers the port's datagrams by connection ID.
    pub kernel_steers: bool,
}

/// Every QUIC port's sockets, by slot, read by the primary.
pub fn quic_stats(cluster: &Cluster) -> Vec<QuicStats> {
    let mut all = Vec::new();
    for group in hooks::cluster_extension::<Registry>(cluster).quic_groups() {
        for (slot, (forwarded, endpoints)) in group.stats().into_iter().enumerate() {
            all.push(QuicStats {
                address: Address::Udp(group.addr),
                slot,
                endpoints,
                forwarded,
                kernel_steers: group.steered,
            });
        }
    }
    all.sort_by_key(|s| (s.address.to_string(), s.slot));
    all
}

/// The cluster's connection cap as it stands (see
/// [`NetConfig::connection_cap`](crate::NetConfig::connection_cap)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CapStats {
    /// The cap: open connections allowed, every listener together.
    pub limit: usize,
    /// Open connections now.
    pub open: usize,
    /// Idle keep-alive connections closed at the cap to admit new clients.
    pub evicted: u64,
}

/// The connection cap of `cluster`; `None` before the first `listen`.
pub fn cap_stats(cluster: &Cluster) -> Option<CapStats> {
    let cap = hooks::cluster_extension::<Registry>(cluster).cap_stats()?;
    Some(CapStats {
        limit: cap.limit(),
        open: cap.open(),
        evicted: cap.evicted(),
    })
}

/// Changes the cluster's connection cap live (see
/// [`NetConfig::connection_cap`](crate::NetConfig::connection_cap)): a
/// higher cap admits the connections waiting at the old one at once, a
/// lower one keeps those open and admits no more until they are under it.
/// An error before the first `listen` (the cap is set up then) or for 0.
pub fn set_connection_cap(cluster: &Cluster, limit: usize) -> Result<(), Error> {
    if limit == 0 {
        return Err(Error::BadSetting {
            setting: "connection_cap",
            value: limit.to_string(),
            expected: "at least 1",
        });
    }
    let cap = hooks::cluster_extension::<Registry>(cluster)
        .cap_stats()
        .ok_or(Error::BadSetting {
            setting: "connection_cap",
            value: limit.to_string(),
            expected: "a cluster that listens (the cap is set up by the first listen)",
        })?;
    cap.set_limit(limit);
    Ok(())
}
