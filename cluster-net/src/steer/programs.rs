//! The `SK_REUSEPORT` programs. Each runs when a connection arrives for a
//! reuseport group (and when a closing member's queued connections need a
//! new home: they are attached as `SELECT_OR_MIGRATE`), chooses a slot from
//! the shared [table](super::table), and selects that slot's socket from the
//! group's `REUSEPORT_SOCKARRAY`. Whatever they cannot decide they leave to
//! the kernel's hash by returning `SK_PASS` without a selection; they never
//! return `SK_DROP`, so nothing is refused that would otherwise be queued.
//!
//! Each is written as its assembly listing: one encoder call per line, the
//! line in the comment. Conventions: `r10 - 8` holds the context (so that
//! `r6` is free in loops); loops are bounded by `MAX_SLOTS`, which the
//! verifier walks; per-slot decisions are computed without branches where
//! possible so that the verifier has one state per iteration.

use std::os::fd::BorrowedFd;

use super::asm::{Alu, Asm, Cond, Helper, Insn, Label, Reg, Reg::*, Size};
use super::hash::{FMIX_M1, FMIX_M2, GOLDEN, SEED6};
use super::table::{CHOSEN, COUNTER, FULL, LIVE, LOAD, MAX_SLOTS, SPAN, STRIDE_SHIFT, TAKEN};

/// `SK_PASS`: go on (with the selected socket, or the kernel's choice).
const SK_PASS: i32 = 1;
const STRIDE: i32 = 1 << STRIDE_SHIFT;
const MAX: i32 = MAX_SLOTS as i32;

// `struct sk_reuseport_md` and `struct bpf_sock` offsets (uapi/linux/bpf.h).
const MD_ETH_PROTOCOL: i16 = 20;
const MD_MIGRATING_SK: i16 = 48;
const SOCK_FAMILY: i16 = 4;
const SOCK_DST_IP4: i16 = 52;
const SOCK_DST_IP6: i16 = 56;
const ETH_P_IP: i32 = 0x0800;
const ETH_P_IPV6: i32 = 0x86dd;
const BPF_HDR_START_NET: i32 = 1;

// The stack.
const CTX: i16 = -8;
const TABLE_KEY: i16 = -12;
const SLOT_KEY: i16 = -16;
/// The client's address, 4 words in network order (IPv4: the last word).
const ADDR: i16 = -32;
const ADDR_V4: i16 = ADDR + 12;

/// The maps a program refers to.
#[derive(Clone, Copy)]
pub(crate) struct Maps<'a> {
    /// The shared table (one value, key 0).
    pub(crate) table: BorrowedFd<'a>,
    /// The group's sockets by slot.
    pub(crate) socks: BorrowedFd<'a>,
}

/// ```text
///     *(u32 *)(r10 - 12) = 0
///     r2 = r10
///     r2 += -12
///     r1 = map[table]
///     call map_lookup_elem            ; r0 = &table[0]
///     if r0 == 0 goto pass
///     r7 = r0
/// ```
fn lookup_table(a: &mut Asm, maps: Maps<'_>, pass: Label) {
    a.st(Size::W, R10, TABLE_KEY, 0);
    a.mov(R2, R10);
    a.alu64(Alu::Add, R2, i32::from(TABLE_KEY));
    a.ld_map(R1, maps.table);
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, R0, 0, pass);
    a.mov(R7, R0);
}

/// Selects slot `slot`'s socket, then passes (binds `select` and `pass`).
///
/// ```text
/// select:                             ; slot in `slot`
///     *(u32 *)(r10 - 16) = slot
///     r1 = *(u64 *)(r10 - 8)
///     r2 = map[socks]
///     r3 = r10
///     r3 += -16
///     r4 = 0
///     call sk_select_reuseport        ; an error (no socket in the slot,
///                                     ; it closed) leaves it to the kernel
/// pass:
///     r0 = SK_PASS
///     exit
/// ```
fn select_and_pass(a: &mut Asm, maps: Maps<'_>, slot: Reg, select: Label, pass: Label) {
    a.bind(select);
    a.stx(Size::W, R10, SLOT_KEY, slot);
    a.ldx(Size::DW, R1, R10, CTX);
    a.ld_map(R2, maps.socks);
    a.mov(R3, R10);
    a.alu64(Alu::Add, R3, i32::from(SLOT_KEY));
    a.mov(R4, 0);
    a.call(Helper::SkSelectReuseport);
    a.bind(pass);
    a.mov(R0, SK_PASS);
    a.exit();
}

/// `r = fmix32(r)` with `t` as scratch (murmur3's finaliser, 32-bit ALU).
///
/// ```text
///     w_t = w_r ; w_t >>= 16 ; w_r ^= w_t ; w_r *= M1
///     w_t = w_r ; w_t >>= 13 ; w_r ^= w_t ; w_r *= M2
///     w_t = w_r ; w_t >>= 16 ; w_r ^= w_t
/// ```
fn fmix32(a: &mut Asm, r: Reg, t: Reg) {
    for (shift, mul) in [(16, Some(FMIX_M1)), (13, Some(FMIX_M2)), (16, None)] {
        a.alu32(Alu::Mov, t, r);
        a.alu32(Alu::Rsh, t, shift);
        a.alu32(Alu::Xor, r, t);
        if let Some(m) = mul {
            a.alu32(Alu::Mul, r, m as i32);
        }
    }
}

/// Round-robin: exact rotation over the live slots that are not full; over
/// all live slots when every one is full (so the connection still queues
/// on a live worker's socket, in turn, instead of landing by hash on a
/// socket whose worker is gone); the kernel's hash when none is live.
///
/// ```text
///     *(u64 *)(r10 - 8) = r1          ; keep the context
///     <lookup_table>                  ; r7 = table
///     r8 = *(u32 *)(r7 + SPAN)
///     r1 = 0                          ; i
///     r2 = 0                          ; live slots not full
///     r3 = 0                          ; live slots
///     r4 = r7                         ; slot i's cell (minus SLOTS)
/// count:
///     if r1 >= MAX goto counted
///     if r1 >= r8 goto counted
///     r5 = *(u32 *)(r4 + LIVE)
///     r5 &= 1
///     r3 += r5
///     r0 = *(u32 *)(r4 + FULL)
///     r0 &= 1
///     r0 ^= 1
///     r0 &= r5                        ; live and not full
///     r2 += r0
///     r1 += 1
///     r4 += STRIDE
///     goto count
/// counted:                           ; no branch on the counts (see below)
///     r9 = r2
///     r9 += MAX - 1
///     r9 >>= log2(MAX)                ; 1 if some live slot is not full:
///                                     ; then pass over full slots
///     r0 = r2
///     r0 -= r3
///     r5 = 0
///     r5 -= r9
///     r0 &= r5
///     r3 += r0                        ; r3 = r9 ? r2 : r3, the eligible slots
///     r0 = 1
///     r0 = atomic_fetch_add((u64 *)(r7 + COUNTER), r0)
///     r0 %= r3                        ; take the r0-th eligible slot (none
///                                     ; live: r3 = 0, r0 stays, none is taken)
///     r1 = 0
///     r4 = r7
/// pick:
///     if r1 >= MAX goto pass
///     r2 = *(u32 *)(r7 + SPAN)        ; read again, not r8: the verifier
///     if r1 >= r2 goto pass           ; knows r8 exactly at each exit above,
///                                     ; and would walk this loop per exit
///     r5 = *(u32 *)(r4 + LIVE)
///     r5 &= 1
///     r2 = *(u32 *)(r4 + FULL)
///     r2 &= r9
///     r2 &= 1
///     r2 ^= 1
///     r5 &= r2                        ; eligible
///     r2 = r5
///     r2 ^= 1
///     r2 |= r0
///     if r2 == 0 goto select          ; eligible and r0 == 0
///     r0 -= r5
///     r1 += 1
///     r4 += STRIDE
///     goto pick
///     <select_and_pass r1>
/// ```
pub(crate) fn round_robin(maps: Maps<'_>) -> Vec<Insn> {
    let mut a = Asm::new();
    let (pass, select) = (a.label(), a.label());
    let (count, counted, pick) = (a.label(), a.label(), a.label());
    a.stx(Size::DW, R10, CTX, R1);
    lookup_table(&mut a, maps, pass);
    a.ldx(Size::W, R8, R7, SPAN);
    a.mov(R1, 0);
    a.mov(R2, 0);
    a.mov(R3, 0);
    a.mov(R4, R7);
    a.bind(count);
    a.jmp(Cond::Ge, R1, MAX, counted);
    a.jmp(Cond::Ge, R1, R8, counted);
    a.ldx(Size::W, R5, R4, LIVE);
    a.alu64(Alu::And, R5, 1);
    a.alu64(Alu::Add, R3, R5);
    a.ldx(Size::W, R0, R4, FULL);
    a.alu64(Alu::And, R0, 1);
    a.alu64(Alu::Xor, R0, 1);
    a.alu64(Alu::And, R0, R5);
    a.alu64(Alu::Add, R2, R0);
    a.alu64(Alu::Add, R1, 1);
    a.alu64(Alu::Add, R4, STRIDE);
    a.ja(count);
    a.bind(counted);
    a.mov(R9, R2);
    a.alu64(Alu::Add, R9, MAX - 1);
    a.alu64(Alu::Rsh, R9, MAX.trailing_zeros() as i32);
    a.mov(R0, R2);
    a.alu64(Alu::Sub, R0, R3);
    a.mov(R5, 0);
    a.alu64(Alu::Sub, R5, R9);
    a.alu64(Alu::And, R0, R5);
    a.alu64(Alu::Add, R3, R0);
    a.mov(R0, 1);
    a.fetch_add64(R7, COUNTER, R0);
    a.alu64(Alu::Mod, R0, R3);
    a.mov(R1, 0);
    a.mov(R4, R7);
    a.bind(pick);
    a.jmp(Cond::Ge, R1, MAX, pass);
    a.ldx(Size::W, R2, R7, SPAN);
    a.jmp(Cond::Ge, R1, R2, pass);
    a.ldx(Size::W, R5, R4, LIVE);
    a.alu64(Alu::And, R5, 1);
    a.ldx(Size::W, R2, R4, FULL);
    a.alu64(Alu::And, R2, R9);
    a.alu64(Alu::And, R2, 1);
    a.alu64(Alu::Xor, R2, 1);
    a.alu64(Alu::And, R5, R2);
    a.mov(R2, R5);
    a.alu64(Alu::Xor, R2, 1);
    a.alu64(Alu::Or, R2, R0);
    a.jmp(Cond::Eq, R2, 0, select);
    a.alu64(Alu::Sub, R0, R5);
    a.alu64(Alu::Add, R1, 1);
    a.alu64(Alu::Add, R4, STRIDE);
    a.ja(pick);
    select_and_pass(&mut a, maps, R1, select, pass);
    a.finish()
}

/// Least-connections: the live slot with the fewest connections (open, as
/// its worker published them, plus those the program sent it that its
/// worker has not taken yet), a slot that is not full before one that is;
/// ties go round (the scan starts at a rotating slot). So a burst that
/// arrives before the workers accept spreads instead of piling on the
/// least loaded one. The program counts each slot it chooses. The
/// kernel's hash when no slot is live.
///
/// A slot's rank is `!live << 33 | full << 32 | (load + queued)`, with
/// `queued = chosen - taken` (32-bit, 0 if negative: the worker counted an
/// accept the program did not choose): lower is better.
///
/// ```text
///     *(u64 *)(r10 - 8) = r1          ; keep the context
///     <lookup_table>                  ; r7 = table
///     r8 = *(u32 *)(r7 + SPAN)
///     r3 = 1
///     r3 = atomic_fetch_add((u64 *)(r7 + COUNTER), r3)
///     r3 %= r8                        ; where the scan starts
///     r9 = 1 << 33                    ; best rank so far: none
///     r6 = MAX                        ; its slot: none
///     r1 = 0                          ; i
/// scan:
///     if r1 >= MAX goto scanned
///     if r1 >= r8 goto scanned
///     r2 = r3
///     r2 += r1
///     r2 -= r8                        ; d = start + i - span
///     r4 = r2
///     r4 >>= 63
///     r5 = 0
///     r5 -= r4
///     r5 &= r8
///     r2 += r5                        ; j = d < 0 ? d + span : d
///     r2 &= MAX - 1                   ; (for the verifier: j < MAX)
///     r4 = r2
///     r4 <<= STRIDE_SHIFT
///     r0 = r7
///     r0 += r4                        ; slot j's cell (minus SLOTS)
///     r5 = *(u32 *)(r0 + LIVE)
///     r5 &= 1
///     r5 ^= 1
///     r5 <<= 33
///     r4 = *(u32 *)(r0 + FULL)
///     r4 &= 1
///     r4 <<= 32
///     r5 |= r4
///     r4 = *(u32 *)(r0 + LOAD)
///     r5 |= r4
///     r4 = *(u32 *)(r0 + CHOSEN)
///     r0 = *(u32 *)(r0 + TAKEN)
///     w4 -= w0                        ; queued
///     r0 = r4
///     r0 >>= 31
///     r0 -= 1
///     r4 &= r0                        ; 0 if negative
///     r5 += r4                        ; slot j's rank
///     if r5 >= r9 goto next
///     r9 = r5
///     r6 = r2
/// next:
///     r1 += 1
///     goto scan
/// scanned:
///     if r6 >= MAX goto select        ; none live: the helper refuses
///     r0 = r6                         ; MAX, the kernel chooses
///     r0 &= MAX - 1
///     r0 <<= STRIDE_SHIFT
///     r0 += r7
///     r1 = 1
///     lock *(u32 *)(r0 + CHOSEN) += r1
///     <select_and_pass r6>
/// ```
pub(crate) fn least_connections(maps: Maps<'_>) -> Vec<Insn> {
    const NONE: i32 = 1 << 30; // loaded as NONE << 3
    let mut a = Asm::new();
    let (pass, select) = (a.label(), a.label());
    let (scan, next, scanned) = (a.label(), a.label(), a.label());
    a.stx(Size::DW, R10, CTX, R1);
    lookup_table(&mut a, maps, pass);
    a.ldx(Size::W, R8, R7, SPAN);
    a.mov(R3, 1);
    a.fetch_add64(R7, COUNTER, R3);
    a.alu64(Alu::Mod, R3, R8);
    // r9 = 1 << 33, built from a 32-bit immediate.
    a.mov(R9, NONE);
    a.alu64(Alu::Lsh, R9, 3);
    a.mov(R6, MAX);
    a.mov(R1, 0);
    a.bind(scan);
    a.jmp(Cond::Ge, R1, MAX, scanned);
    a.jmp(Cond::Ge, R1, R8, scanned);
    a.mov(R2, R3);
    a.alu64(Alu::Add, R2, R1);
    a.alu64(Alu::Sub, R2, R8);
    a.mov(R4, R2);
    a.alu64(Alu::Rsh, R4, 63);
    a.mov(R5, 0);
    a.alu64(Alu::Sub, R5, R4);
    a.alu64(Alu::And, R5, R8);
    a.alu64(Alu::Add, R2, R5);
    a.alu64(Alu::And, R2, MAX - 1);
    a.mov(R4, R2);
    a.alu64(Alu::Lsh, R4, STRIDE_SHIFT);
    a.mov(R0, R7);
    a.alu64(Alu::Add, R0, R4);
    a.ldx(Size::W, R5, R0, LIVE);
    a.alu64(Alu::And, R5, 1);
    a.alu64(Alu::Xor, R5, 1);
    a.alu64(Alu::Lsh, R5, 33);
    a.ldx(Size::W, R4, R0, FULL);
    a.alu64(Alu::And, R4, 1);
    a.alu64(Alu::Lsh, R4, 32);
    a.alu64(Alu::Or, R5, R4);
    a.ldx(Size::W, R4, R0, LOAD);
    a.alu64(Alu::Or, R5, R4);
    a.ldx(Size::W, R4, R0, CHOSEN);
    a.ldx(Size::W, R0, R0, TAKEN);
    a.alu32(Alu::Sub, R4, R0);
    a.mov(R0, R4);
    a.alu64(Alu::Rsh, R0, 31);
    a.alu64(Alu::Sub, R0, 1);
    a.alu64(Alu::And, R4, R0);
    a.alu64(Alu::Add, R5, R4);
    a.jmp(Cond::Ge, R5, R9, next);
    a.mov(R9, R5);
    a.mov(R6, R2);
    a.bind(next);
    a.alu64(Alu::Add, R1, 1);
    a.ja(scan);
    a.bind(scanned);
    a.jmp(Cond::Ge, R6, MAX, select);
    a.mov(R0, R6);
    a.alu64(Alu::And, R0, MAX - 1);
    a.alu64(Alu::Lsh, R0, STRIDE_SHIFT);
    a.alu64(Alu::Add, R0, R7);
    a.mov(R1, 1);
    a.atomic_add32(R0, CHOSEN, R1);
    select_and_pass(&mut a, maps, R6, select, pass);
    a.finish()
}

/// Sticky: rendezvous hashing of the client's address over the live slots
/// (see [`hash`](super::hash): the same function as the Rust side's
/// `sticky_slot`), a slot that is not full before one that is. The
/// address comes from the packet's IP header, or, when a closing socket's
/// connection migrates, from that connection's socket (its remote address).
/// The kernel's hash for anything that is neither IPv4 nor IPv6, or when no
/// slot is live.
///
/// A slot's score is `(2 + !full) << 32 | score(key, slot)`: higher is
/// better, and any live slot beats the initial 0.
///
/// ```text
///     *(u64 *)(r10 - 8) = r1
///     r6 = r1
///     r1 = *(u64 *)(r6 + migrating_sk)
///     if r1 != 0 goto from_sock
///     r2 = *(u32 *)(r6 + eth_protocol)
///     r2 = be16 r2
///     if r2 == ETH_P_IP goto skb4
///     if r2 != ETH_P_IPV6 goto pass
///     r1 = r6 ; r2 = 8 ; r3 = r10 ; r3 += ADDR ; r4 = 16 ; r5 = BPF_HDR_START_NET
///     call skb_load_bytes_relative    ; the IPv6 source address
///     if r0 != 0 goto pass
///     goto v6
/// skb4:
///     r1 = r6 ; r2 = 12 ; r3 = r10 ; r3 += ADDR_V4 ; r4 = 4 ; r5 = BPF_HDR_START_NET
///     call skb_load_bytes_relative    ; the IPv4 source address
///     if r0 != 0 goto pass
///     goto v4
/// from_sock:                          ; the migrating connection's socket
///     r2 = *(u32 *)(r1 + family)
///     if r2 == AF_INET goto sock4
///     if r2 != AF_INET6 goto pass
///     r2 = *(u32 *)(r1 + dst_ip6 + 4k) ; *(u32 *)(r10 + ADDR + 4k) = r2   ; k = 0..3
///     goto v6
/// sock4:
///     r2 = *(u32 *)(r1 + dst_ip4) ; *(u32 *)(r10 + ADDR_V4) = r2
///     goto v4
/// v6:                                 ; ::ffff:a.b.c.d is a.b.c.d
///     r2 = *(u32 *)(r10 + ADDR) ; if r2 != 0 goto key6
///     r2 = *(u32 *)(r10 + ADDR + 4) ; if r2 != 0 goto key6
///     r2 = *(u32 *)(r10 + ADDR + 8) ; r2 = be32 r2 ; if r2 == 0xffff goto v4
/// key6:
///     w8 = SEED6
///     r2 = *(u32 *)(r10 + ADDR + 4k) ; r2 = be32 r2 ; w8 ^= w2 ; <fmix32 r8, r2>   ; k = 0..3
///     goto scan
/// v4:
///     r8 = *(u32 *)(r10 + ADDR_V4) ; r8 = be32 r8 ; <fmix32 r8, r2>
/// scan:                               ; r8 = the client's key
///     <lookup_table>                  ; r7 = table
///     r2 = *(u32 *)(r7 + SPAN)
///     r9 = 0                          ; best score
///     r6 = MAX                        ; its slot: none
///     r1 = 0                          ; i
///     r4 = r7                         ; slot i's cell (minus SLOTS)
/// loop:
///     if r1 >= MAX goto done
///     if r1 >= r2 goto done
///     r5 = *(u32 *)(r4 + LIVE)
///     r5 &= 1
///     if r5 == 0 goto next
///     w3 = w1 ; w3 += 1 ; w3 *= GOLDEN ; w3 ^= w8 ; <fmix32 r3, r0>   ; score(key, i)
///     r0 = *(u32 *)(r4 + FULL)
///     r0 &= 1
///     r0 ^= 1
///     r0 += 2
///     r0 <<= 32
///     r3 |= r0
///     if r3 <= r9 goto next
///     r9 = r3
///     r6 = r1
/// next:
///     r1 += 1
///     r4 += STRIDE
///     goto loop
/// done:                              ; r6 = MAX (none live): the helper
///     <select_and_pass r6>            ; refuses it, the kernel chooses
/// ```
pub(crate) fn sticky(maps: Maps<'_>) -> Vec<Insn> {
    let mut a = Asm::new();
    let (pass, select) = (a.label(), a.label());
    let (from_sock, skb4, sock4, v6, key6, v4) = (
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
    );
    let (scan, next, done, lp) = (a.label(), a.label(), a.label(), a.label());

    a.stx(Size::DW, R10, CTX, R1);
    a.mov(R6, R1);
    a.ldx(Size::DW, R1, R6, MD_MIGRATING_SK);
    a.jmp(Cond::Ne, R1, 0, from_sock);
    a.ldx(Size::W, R2, R6, MD_ETH_PROTOCOL);
    a.be(R2, 16);
    a.jmp(Cond::Eq, R2, ETH_P_IP, skb4);
    a.jmp(Cond::Ne, R2, ETH_P_IPV6, pass);
    load_source(&mut a, 8, ADDR, 16);
    a.jmp(Cond::Ne, R0, 0, pass);
    a.ja(v6);
    a.bind(skb4);
    load_source(&mut a, 12, ADDR_V4, 4);
    a.jmp(Cond::Ne, R0, 0, pass);
    a.ja(v4);

    a.bind(from_sock);
    a.ldx(Size::W, R2, R1, SOCK_FAMILY);
    a.jmp(Cond::Eq, R2, libc::AF_INET, sock4);
    a.jmp(Cond::Ne, R2, libc::AF_INET6, pass);
    for k in 0..4 {
        a.ldx(Size::W, R2, R1, SOCK_DST_IP6 + 4 * k);
        a.stx(Size::W, R10, ADDR + 4 * k, R2);
    }
    a.ja(v6);
    a.bind(sock4);
    a.ldx(Size::W, R2, R1, SOCK_DST_IP4);
    a.stx(Size::W, R10, ADDR_V4, R2);
    a.ja(v4);

    a.bind(v6);
    a.ldx(Size::W, R2, R10, ADDR);
    a.jmp(Cond::Ne, R2, 0, key6);
    a.ldx(Size::W, R2, R10, ADDR + 4);
    a.jmp(Cond::Ne, R2, 0, key6);
    a.ldx(Size::W, R2, R10, ADDR + 8);
    a.be(R2, 32);
    a.jmp(Cond::Eq, R2, 0xffff, v4);
    a.bind(key6);
    a.alu32(Alu::Mov, R8, SEED6 as i32);
    for k in 0..4 {
        a.ldx(Size::W, R2, R10, ADDR + 4 * k);
        a.be(R2, 32);
        a.alu32(Alu::Xor, R8, R2);
        fmix32(&mut a, R8, R2);
    }
    a.ja(scan);
    a.bind(v4);
    a.ldx(Size::W, R8, R10, ADDR_V4);
    a.be(R8, 32);
    fmix32(&mut a, R8, R2);

    a.bind(scan);
    lookup_table(&mut a, maps, pass);
    a.ldx(Size::W, R2, R7, SPAN);
    a.mov(R9, 0);
    a.mov(R6, MAX);
    a.mov(R1, 0);
    a.mov(R4, R7);
    a.bind(lp);
    a.jmp(Cond::Ge, R1, MAX, done);
    a.jmp(Cond::Ge, R1, R2, done);
    a.ldx(Size::W, R5, R4, LIVE);
    a.alu64(Alu::And, R5, 1);
    a.jmp(Cond::Eq, R5, 0, next);
    a.alu32(Alu::Mov, R3, R1);
    a.alu32(Alu::Add, R3, 1);
    a.alu32(Alu::Mul, R3, GOLDEN as i32);
    a.alu32(Alu::Xor, R3, R8);
    fmix32(&mut a, R3, R0);
    a.ldx(Size::W, R0, R4, FULL);
    a.alu64(Alu::And, R0, 1);
    a.alu64(Alu::Xor, R0, 1);
    a.alu64(Alu::Add, R0, 2);
    a.alu64(Alu::Lsh, R0, 32);
    a.alu64(Alu::Or, R3, R0);
    a.jmp(Cond::Le, R3, R9, next);
    a.mov(R9, R3);
    a.mov(R6, R1);
    a.bind(next);
    a.alu64(Alu::Add, R1, 1);
    a.alu64(Alu::Add, R4, STRIDE);
    a.ja(lp);
    a.bind(done);
    select_and_pass(&mut a, maps, R6, select, pass);
    a.finish()
}

/// `r0 = bpf_skb_load_bytes_relative(ctx = r6, offset, r10 + to, len,
/// BPF_HDR_START_NET)`: bytes of the IP header.
fn load_source(a: &mut Asm, offset: i32, to: i16, len: i32) {
    a.mov(R1, R6);
    a.mov(R2, offset);
    a.mov(R3, R10);
    a.alu64(Alu::Add, R3, i32::from(to));
    a.mov(R4, len);
    a.mov(R5, BPF_HDR_START_NET);
    a.call(Helper::SkbLoadBytesRelative);
}
