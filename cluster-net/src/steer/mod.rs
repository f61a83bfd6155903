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

// Wired into the registry in the next step of issue 24; until then only
// this module's tests use it.
#![cfg_attr(not(test), allow(dead_code, unused_imports))]

mod asm;
mod bpf;
pub(crate) mod classic;
mod error;
pub(crate) mod hash;
mod programs;
mod table;
#[cfg(test)]
mod tests;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

pub(crate) use error::SteerError;
pub(crate) use hash::sticky_slot;
pub(crate) use table::{SlotCell, MAX_SLOTS};

use programs::Maps;
use table::Table;

/// Which program chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    RoundRobin,
    LeastConnections,
    Sticky,
}

impl Mode {
    pub(crate) const ALL: [Mode; 3] = [Mode::RoundRobin, Mode::LeastConnections, Mode::Sticky];

    fn name(self) -> &'static str {
        match self {
            Mode::RoundRobin => "ct_round_robin",
            Mode::LeastConnections => "ct_least_conns",
            Mode::Sticky => "ct_sticky",
        }
    }
}

/// One reuseport group's kernel steering.
pub(crate) struct Steering {
    mode: Mode,
    socks: OwnedFd,
    table: Table,
    prog: OwnedFd,
    /// The verifier's statistics for the program.
    stats: String,
}

impl Steering {
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

    /// `slot`'s shared words, for its worker to publish its load and limit.
    pub(crate) fn cell(&self, slot: usize) -> Option<&SlotCell> {
        self.table.cell(slot)
    }

    /// What the verifier said about the program (instructions processed).
    pub(crate) fn verifier_stats(&self) -> &str {
        &self.stats
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
pub(crate) fn probe() -> Result<(), Unsupported> {
    static ANSWER: OnceLock<Result<(), Unsupported>> = OnceLock::new();
    ANSWER.get_or_init(probe_now).clone()
}

/// [`probe`], asked again (for a thread whose privileges changed).
pub(crate) fn probe_now() -> Result<(), Unsupported> {
    for mode in Mode::ALL {
        Steering::new(mode).map_err(|e| unsupported(&e))?;
    }
    Ok(())
}

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
