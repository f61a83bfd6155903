//! The memory a group's program and its workers share: one `BPF_F_MMAPABLE`
//! array map with a single value laid out as [`Layout`], mapped into the
//! process. The workers publish with plain stores (no system call per
//! change); the program reads on each new connection.
//!
//! Each word has one writer: the registry writes `live` and `span`, a
//! slot's worker its `full`, `load` and `taken`, the program the counter
//! and each slot's `chosen` (with atomic adds, as every CPU runs it). Each slot has a cache line of its own
//! so that workers do not bounce lines between them.

use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::bpf::{self, Mapping};
use super::error::SteerError;

/// How many slots a group can steer among; the programs' loops are bounded
/// by it. A power of two: the least-connections program masks with it.
pub(crate) const MAX_SLOTS: usize = 128;

/// What the program writes and the registry bounds.
#[repr(C, align(64))]
pub(crate) struct Header {
    /// Connections chosen so far: round-robin's position, least-connections'
    /// tie-breaker. Written by the program only.
    counter: AtomicU64,
    /// The programs look at slots `0..span` only.
    span: AtomicU32,
}

/// One slot's words.
#[repr(C, align(64))]
pub(crate) struct SlotCell {
    /// 1 while a worker accepts on the slot's socket (the registry writes it).
    live: AtomicU32,
    /// 1 while the slot's worker is at its connection limit: the programs
    /// pass it over unless every live slot is full.
    full: AtomicU32,
    /// The slot's open connections, for least-connections.
    load: AtomicU32,
    /// Connections the program sent to the slot's socket so far (wrapping).
    chosen: AtomicU32,
    /// Of those, how many the slot's worker has taken from its queue (its
    /// worker counts each accept, and catches up with `chosen` whenever it
    /// finds its queue empty). `chosen - taken` are queued, not yet in
    /// `load`: least-connections counts them, so a burst that comes before
    /// the worker accepts spreads instead of piling on the least loaded.
    taken: AtomicU32,
}

/// The array's one value.
#[repr(C)]
pub(crate) struct Layout {
    header: Header,
    slots: [SlotCell; MAX_SLOTS],
}

// The offsets the programs use, from the layout itself.
pub(crate) const COUNTER: i16 = (offset_of!(Layout, header) + offset_of!(Header, counter)) as i16;
pub(crate) const SPAN: i16 = (offset_of!(Layout, header) + offset_of!(Header, span)) as i16;
const SLOTS: usize = offset_of!(Layout, slots);
/// A slot's `live`, `full` and `load`, from the address of its cell minus `SLOTS`.
pub(crate) const LIVE: i16 = (SLOTS + offset_of!(SlotCell, live)) as i16;
pub(crate) const FULL: i16 = (SLOTS + offset_of!(SlotCell, full)) as i16;
pub(crate) const LOAD: i16 = (SLOTS + offset_of!(SlotCell, load)) as i16;
pub(crate) const CHOSEN: i16 = (SLOTS + offset_of!(SlotCell, chosen)) as i16;
pub(crate) const TAKEN: i16 = (SLOTS + offset_of!(SlotCell, taken)) as i16;
/// `log2(size_of::<SlotCell>())`: slot `i`'s cell is `i << STRIDE_SHIFT` further.
pub(crate) const STRIDE_SHIFT: i32 = size_of::<SlotCell>().trailing_zeros() as i32;
const _: () = assert!(1 << STRIDE_SHIFT == size_of::<SlotCell>());
const _: () = assert!(MAX_SLOTS.is_power_of_two());
const _: () = assert!(size_of::<Layout>() < i16::MAX as usize);

impl SlotCell {
    /// Publishes the slot's open connections.
    pub(crate) fn set_load(&self, open: u32) {
        self.load.store(open, Ordering::Relaxed);
    }

    /// What [`set_load`](Self::set_load) published last.
    #[cfg(test)]
    pub(crate) fn load(&self) -> u32 {
        self.load.load(Ordering::Relaxed)
    }

    /// The slot's worker took one connection from its socket's queue.
    pub(crate) fn took(&self) {
        let taken = self.taken.load(Ordering::Relaxed);
        self.taken.store(taken.wrapping_add(1), Ordering::Relaxed);
    }

    /// The slot's worker found its socket's queue empty: it has taken all
    /// the program sent it (connections lost before their accept, or
    /// counted before an accept that failed, no longer count).
    pub(crate) fn drained(&self) {
        let chosen = self.chosen.load(Ordering::Relaxed);
        self.taken.store(chosen, Ordering::Relaxed);
    }

    /// Publishes whether the slot's worker is at its limit.
    pub(crate) fn set_full(&self, full: bool) {
        self.full.store(full.into(), Ordering::Relaxed);
    }
}

/// The map and its mapping.
pub(crate) struct Table {
    map: OwnedFd,
    mapping: Mapping,
}

impl Table {
    const NAME: &'static str = "ct_steer_table";

    pub(crate) fn new() -> Result<Self, SteerError> {
        let map = bpf::map_create(
            Self::NAME,
            bpf::MAP_ARRAY,
            4,
            size_of::<Layout>() as u32,
            1,
            bpf::F_MMAPABLE,
        )?;
        let mapping = Mapping::new(map.as_fd(), size_of::<Layout>(), Self::NAME)?;
        Ok(Table { map, mapping })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }

    fn layout(&self) -> &Layout {
        // SAFETY: the mapping is page-aligned (so aligned for `Layout`), at
        // least `size_of::<Layout>()` long (zeroed by the kernel: a valid
        // `Layout`, all atomics), and lives as long as `self`. Every field
        // is an atomic, so shared references are sound while the kernel
        // and other threads write the same memory.
        unsafe { &*self.mapping.as_ptr().cast::<Layout>() }
    }

    pub(crate) fn cell(&self, slot: usize) -> Option<&SlotCell> {
        self.layout().slots.get(slot)
    }

    /// Marks `slot` live or not, and widens the span the programs scan to it.
    pub(crate) fn set_live(&self, slot: usize, live: bool) -> Result<(), SteerError> {
        let cell = self.cell(slot).ok_or(SteerError::Slot {
            slot,
            max: MAX_SLOTS,
        })?;
        if live {
            self.layout()
                .header
                .span
                .fetch_max(slot as u32 + 1, Ordering::Relaxed);
        }
        cell.live.store(live.into(), Ordering::Relaxed);
        Ok(())
    }
}
