//! Kernel steering: the kernel chooses which member of a reuseport group
//! gets each new connection, so no acceptor thread hands connections on.
//!
//! Per group (one listening key), a [`Steering`] holds:
//! - an `SK_REUSEPORT` eBPF program ([`programs`]) for the balance mode,
//!   attached as `SELECT_OR_MIGRATE`, so a closing member's queued
//!   connections move to a live member instead of being reset;
//! - a `REUSEPORT_SOCKARRAY` of the members by slot (closing one does not
//!   shift the others, unlike the group's own array);
//! - the shared [`table`]: which slots are live, which are full (at
//!   their connection limit), and each slot's open connections, written by
//!   the registry and the workers with plain stores into an mmap'ed map.
//!
//! Loading eBPF needs CAP_BPF and CAP_NET_ADMIN (or root); [`probe`] says
//! whether this process may. Without it, [`classic`] has sticky in classic
//! BPF, which needs no privilege; round-robin and least-connections need
//! state and stay with the acceptor.
//!
//! Written raw: `bpf(2)` through libc ([`bpf`]), programs from a small
//! encoder ([`asm`]); no clang, no nightly, no libbpf.

//! The registry makes one [`Steering`] per listening key of those modes
//! (see `listen.rs`), puts each worker's member of the group in its slot,
//! and marks the slot live from its worker's first `accept` until its last
//! listener leaves; each worker's [`Publisher`] writes its slot's load.
//! Elsewhere than Linux, [`probe`] says no and nothing else is reached.

#[cfg(target_os = "linux")]
mod asm;
#[cfg(target_os = "linux")]
mod bpf;
// Sticky without the privilege: kept, and checked against the kernel by
// the tests, for the fallback the acceptor does today.
#[cfg(target_os = "linux")]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod classic;
#[cfg(target_os = "linux")]
mod error;
pub(crate) mod hash;
#[cfg(target_os = "linux")]
mod programs;
#[cfg(target_os = "linux")]
mod table;
#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests;
#[cfg(not(target_os = "linux"))]
mod unsupported;

#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
#[cfg(target_os = "linux")]
use std::sync::OnceLock;

#[cfg(target_os = "linux")]
pub(crate) use error::SteerError;
#[cfg(test)]
pub(crate) use hash::sticky_slot;
#[cfg(target_os = "linux")]
pub(crate) use table::{SlotCell, MAX_SLOTS};
#[cfg(not(target_os = "linux"))]
pub(crate) use unsupported::{detach, probe, Steering};

#[cfg(target_os = "linux")]
use programs::Maps;
#[cfg(target_os = "linux")]
use table::Table;

/// Which program chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    RoundRobin,
    LeastConnections,
    Sticky,
}

impl Mode {
    #[cfg(target_os = "linux")]
    pub(crate) const ALL: [Mode; 3] = [Mode::RoundRobin, Mode::LeastConnections, Mode::Sticky];

    /// The program for `balance`, if the kernel can do it.
    pub(crate) fn of(balance: crate::Balance) -> Option<Mode> {
        match balance {
            crate::Balance::RoundRobin => Some(Mode::RoundRobin),
            crate::Balance::LeastConnections => Some(Mode::LeastConnections),
            crate::Balance::Sticky => Some(Mode::Sticky),
            _ => None,
        }
    }

    /// Whether a slot at its connection limit says so: round-robin and
    /// least-connections pass over it, sticky does not (a client waits
    /// for its own slot, in that socket's backlog, as with the acceptor).
    pub(crate) fn publishes_full(self) -> bool {
        self != Mode::Sticky
    }

    #[cfg(target_os = "linux")]
    fn name(self) -> &'static str {
        match self {
            Mode::RoundRobin => "ct_round_robin",
            Mode::LeastConnections => "ct_least_conns",
            Mode::Sticky => "ct_sticky",
        }
    }
}

/// What a worker's listener publishes for its slot: its open connections
/// (and, but for sticky, whether it is at its limit), with plain stores.
pub(crate) struct Publisher {
    steering: Arc<Steering>,
    slot: usize,
    full: bool,
    /// Least-connections: the worker counts what it takes from its queue
    /// (the program counts what it sends there).
    queue: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub(crate) fn new(steering: &Arc<Steering>, slot: usize) -> Publisher {
        Publisher {
            steering: Arc::clone(steering),
            slot,
            full: steering.mode().publishes_full(),
            queue: steering.mode() == Mode::LeastConnections,
        }
    }

    /// The worker took a connection from its slot's socket.
    pub(crate) fn took(&self) {
        if self.queue {
            self.steering.took(self.slot);
        }
    }

    /// The worker found its slot's socket's queue empty.
    pub(crate) fn drained(&self) {
        if self.queue {
            self.steering.drained(self.slot);
        }
    }

    /// The slot's worker has `open` connections on the listener, of `limit`.
    pub(crate) fn publish(&self, open: usize, limit: Option<usize>) {
        self.steering.publish(
            self.slot,
            open,
            self.full && limit.is_some_and(|l| open >= l),
        );
    }
}

/// One reuseport group's kernel steering.
#[cfg(target_os = "linux")]
pub(crate) struct Steering {
    mode: Mode,
    socks: OwnedFd,
    table: Table,
    prog: OwnedFd,
    /// The verifier's statistics for the program.
    stats: String,
}

#[cfg(target_os = "linux")]
impl Steering {
    /// Steering of `mode` made the program of the reuseport group that
    /// `member` belongs to (its other members join later, by [`insert`](Self::insert)).
    pub(crate) fn for_group(mode: Mode, member: BorrowedFd<'_>) -> Result<Steering, Unsupported> {
        probe()?;
        let steering = Steering::new(mode).map_err(|e| unsupported(&e))?;
        steering.attach(member).map_err(|e| unsupported(&e))?;
        tracing::debug!(
            program = mode.name(),
            verifier = steering.verifier_stats(),
            "kernel steering attached"
        );
        Ok(steering)
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Publishes `slot`'s load and whether it is full (a slot past those
    /// the table holds has nothing to publish: the insert said so).
    pub(crate) fn publish(&self, slot: usize, open: usize, full: bool) {
        if let Some(cell) = self.cell(slot) {
            cell.set_load(u32::try_from(open).unwrap_or(u32::MAX));
            cell.set_full(full);
        }
    }

    /// `slot`'s worker took a connection from its queue.
    pub(crate) fn took(&self, slot: usize) {
        if let Some(cell) = self.cell(slot) {
            cell.took();
        }
    }

    /// `slot`'s worker found its queue empty.
    pub(crate) fn drained(&self, slot: usize) {
        if let Some(cell) = self.cell(slot) {
            cell.drained();
        }
    }

    /// The maps and the program for `mode`. Nothing is attached yet.
    pub(crate) fn new(mode: Mode) -> Result<Self, SteerError> {
        Self::build(mode, true)
    }

    /// As [`new`](Self::new); without `migrate`, a closing member's queue is
    /// not the program's to move (the tests' control).
    fn build(mode: Mode, migrate: bool) -> Result<Self, SteerError> {
        let socks = bpf::map_create(
            "ct_steer_socks",
            bpf::MAP_REUSEPORT_SOCKARRAY,
            4,
            8,
            MAX_SLOTS as u32,
            0,
        )?;
        let table = Table::new()?;
        let maps = Maps {
            table: table.fd(),
            socks: socks.as_fd(),
        };
        let insns = match mode {
            Mode::RoundRobin => programs::round_robin(maps),
            Mode::LeastConnections => programs::least_connections(maps),
            Mode::Sticky => programs::sticky(maps),
        };
        let loaded = bpf::load_sk_reuseport(mode.name(), &insns, migrate)?;
        Ok(Steering {
            mode,
            socks,
            table,
            prog: loaded.fd,
            stats: loaded.stats,
        })
    }

    /// Makes this the program of the reuseport group `member` belongs to
    /// (any member will do; it replaces the group's program, if any).
    pub(crate) fn attach(&self, member: BorrowedFd<'_>) -> Result<(), SteerError> {
        bpf::attach_ebpf(member, self.prog.as_fd()).map_err(|source| SteerError::Attach {
            program: self.mode.name(),
            fd: member.as_raw_fd(),
            source,
        })
    }

    /// Puts `socket` (a listening member of the group) in `slot`. A socket
    /// that closes leaves its slot by itself.
    pub(crate) fn insert(&self, slot: usize, socket: BorrowedFd<'_>) -> Result<(), SteerError> {
        let key = self.key(slot)?;
        let fd = socket.as_raw_fd();
        let value = (fd as u64).to_ne_bytes();
        bpf::map_update(self.socks.as_fd(), &key, &value).map_err(|source| SteerError::Insert {
            slot,
            fd,
            source,
        })
    }

    /// Whether new connections may go to `slot` (a worker accepts there).
    /// Clear it before closing the slot's socket.
    pub(crate) fn set_live(&self, slot: usize, live: bool) -> Result<(), SteerError> {
        self.table.set_live(slot, live)
    }

    /// What the verifier said about the program (instructions processed).
    pub(crate) fn verifier_stats(&self) -> &str {
        &self.stats
    }

    /// `slot`'s shared words, for its worker to publish its load and limit.
    pub(crate) fn cell(&self, slot: usize) -> Option<&SlotCell> {
        self.table.cell(slot)
    }

    fn key(&self, slot: usize) -> Result<[u8; 4], SteerError> {
        if slot >= MAX_SLOTS {
            return Err(SteerError::Slot {
                slot,
                max: MAX_SLOTS,
            });
        }
        Ok((slot as u32).to_ne_bytes())
    }
}

/// Takes a steering program off the group of `socket` (one taken over from
/// a process that steered, now accepted on by the acceptor): else its
/// stale table would choose among the old process's slots.
#[cfg(target_os = "linux")]
pub(crate) fn detach(socket: &impl AsFd) {
    match bpf::detach(socket.as_fd()) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
            tracing::debug!(error = %e, "cannot detach the reuseport program");
        }
        _ => {}
    }
}

/// Why this process cannot steer with eBPF: the line to log before falling
/// back to the acceptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unsupported {
    pub(crate) reason: String,
    /// The process lacks the privilege (rather than the kernel a feature,
    /// or a program the verifier's approval).
    pub(crate) denied: bool,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Whether this process may steer with eBPF: it builds every mode's maps
/// and program once (so a kernel without a feature they use says so here;
/// the three verifications take about 50 ms on a 2-vCPU machine). The
/// answer is kept for the process's life.
#[cfg(target_os = "linux")]
pub(crate) fn probe() -> Result<(), Unsupported> {
    static ANSWER: OnceLock<Result<(), Unsupported>> = OnceLock::new();
    ANSWER.get_or_init(probe_now).clone()
}

/// [`probe`], asked again (for a thread whose privileges changed).
#[cfg(target_os = "linux")]
pub(crate) fn probe_now() -> Result<(), Unsupported> {
    for mode in Mode::ALL {
        Steering::new(mode).map_err(|e| unsupported(&e))?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn unsupported(e: &SteerError) -> Unsupported {
    let denied = matches!(e, SteerError::Bpf { source, .. }
        if source.raw_os_error() == Some(libc::EPERM));
    if !denied {
        return Unsupported {
            reason: format!("eBPF steering is not available: {e}"),
            denied,
        };
    }
    let setting = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .map(|s| format!(", kernel.unprivileged_bpf_disabled = {}", s.trim()))
        .unwrap_or_default();
    Unsupported {
        reason: format!(
            "this process may not load eBPF (it needs CAP_BPF and CAP_NET_ADMIN, or root{setting}): {e}"
        ),
        denied,
    }
}
