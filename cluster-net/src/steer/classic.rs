//! Sticky in classic BPF: the fallback for a process that may not load
//! eBPF (`SO_ATTACH_REUSEPORT_CBPF` needs no privilege). Classic BPF keeps
//! no state, so only sticky has a classic form; it computes the same
//! rendezvous hash as the eBPF program and `sticky_slot` (see
//! [`hash`](super::hash)), unrolled over the live slots, which are baked
//! into the program: re-attach it when the live set changes.
//!
//! A classic reuseport program returns an index into the group's socket
//! array, which is the order the members started listening in, and closing
//! a member moves the last one into its place. The caller says, per live
//! slot, where its socket is.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::bpf;
use super::error::SteerError;
use super::hash::{FMIX_M1, FMIX_M2, GOLDEN, SEED6};
use super::table::MAX_SLOTS;

// Opcodes (uapi/linux/bpf_common.h, filter.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const MEM: u16 = 0x60;
const K: u16 = 0x00;
const X: u16 = 0x08;
const A: u16 = 0x10;
const MUL: u16 = 0x20;
const AND: u16 = 0x50;
const RSH: u16 = 0x70;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const TAX: u16 = 0x00;

/// Loads relative to the network header (`SKF_NET_OFF`).
const fn net(off: u32) -> u32 {
    libc::SKF_NET_OFF as u32 + off
}

/// An index past every socket: the kernel's hash decides.
const KERNEL_CHOOSES: u32 = u32::MAX;

// Scratch memory: the key, the best score, its socket's index.
const M_KEY: u32 = 0;
const M_BEST: u32 = 1;
const M_INDEX: u32 = 2;

#[derive(Clone, Copy)]
struct Label(usize);

/// A classic program being written; jumps forward to labels.
#[derive(Default)]
struct Classic {
    insns: Vec<libc::sock_filter>,
    labels: Vec<Option<usize>>,
    /// (instruction, jump if true, jump if false); `None` is the next one.
    jumps: Vec<(usize, Option<Label>, Option<Label>)>,
}

impl Classic {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn op(&mut self, code: u16, k: u32) {
        self.insns.push(libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }

    /// `if A <cond> k goto jt else goto jf` (`None`: the next instruction).
    fn jump(&mut self, cond: u16, k: u32, jt: Option<Label>, jf: Option<Label>) {
        self.jumps.push((self.insns.len(), jt, jf));
        self.op(JMP | cond, k);
    }

    fn ja(&mut self, to: Label) {
        self.jump(JA, 0, Some(to), None);
    }

    /// `A = fmix32(A)`, X as scratch.
    fn fmix32(&mut self) {
        for (shift, mul) in [(16, Some(FMIX_M1)), (13, Some(FMIX_M2)), (16, None)] {
            self.op(MISC | TAX, 0); // tax
            self.op(ALU | RSH | K, shift); // rsh #shift
            self.op(ALU | XOR | X, 0); // xor x
            if let Some(m) = mul {
                self.op(ALU | MUL | K, m); // mul #m
            }
        }
    }

    /// # Panics
    /// On an unbound label or a conditional jump farther than 255: mistakes
    /// in this file, found by its tests.
    fn finish(mut self) -> Vec<libc::sock_filter> {
        let at = |l: Option<Label>, from: usize| -> usize {
            l.map_or(0, |l| {
                self.labels[l.0].expect("every label is bound") - from - 1
            })
        };
        for &(i, jt, jf) in &self.jumps {
            let (t, f) = (at(jt, i), at(jf, i));
            if self.insns[i].code == JMP | JA {
                self.insns[i].k = t as u32;
            } else {
                self.insns[i].jt = u8::try_from(t).expect("a jump within 255");
                self.insns[i].jf = u8::try_from(f).expect("a jump within 255");
            }
        }
        self.insns
    }
}

/// The program: each client to the rendezvous winner among `members`,
/// given as (slot, its socket's index in the group).
///
/// ```text
///     ldb [net + 0] ; and #0xf0       ; the IP version
///     jeq #0x40, v4
///     jeq #0x60, v6
///     ret #-1                         ; neither: the kernel's hash
/// v6:                                 ; ::ffff:a.b.c.d is a.b.c.d
///     ld [net + 8]  ; jeq #0, 0, key6
///     ld [net + 12] ; jeq #0, 0, key6
///     ld [net + 16] ; jeq #0xffff, 0, key6
///     ld [net + 20] ; ja v4key
/// key6:
///     ld #SEED6 ; st M[key]
///     ldx M[key] ; ld [net + 8 + 4k] ; xor x ; <fmix32> ; st M[key]   ; k = 0..3
///     ja scan
/// v4:
///     ld [net + 12]
/// v4key:
///     <fmix32> ; st M[key]
/// scan:                               ; per member, by slot:
///     ld M[key] ; xor #(slot + 1) * GOLDEN ; <fmix32>
///     ldx M[best] ; jgt x, 0, 3       ; (not for the first member)
///     st M[best] ; ld #index ; st M[index]
///     ...
///     ld M[index] ; ret a
/// ```
pub(crate) fn sticky(members: &[(usize, u32)]) -> Result<Vec<libc::sock_filter>, SteerError> {
    let mut members = members.to_vec();
    members.sort_unstable();
    if let Some(&(slot, _)) = members.iter().find(|&&(slot, _)| slot >= MAX_SLOTS) {
        return Err(SteerError::Slot {
            slot,
            max: MAX_SLOTS,
        });
    }
    let mut c = Classic::default();
    if members.is_empty() {
        c.op(RET | K, KERNEL_CHOOSES);
        return Ok(c.finish());
    }
    let (v6, key6, v4, v4key, scan) = (c.label(), c.label(), c.label(), c.label(), c.label());
    c.op(LD | B | ABS, net(0));
    c.op(ALU | AND | K, 0xf0);
    c.jump(JEQ, 0x40, Some(v4), None);
    c.jump(JEQ, 0x60, Some(v6), None);
    c.op(RET | K, KERNEL_CHOOSES);

    c.bind(v6);
    for (off, want) in [(8, 0), (12, 0), (16, 0xffff)] {
        c.op(LD | W | ABS, net(off));
        c.jump(JEQ, want, None, Some(key6));
    }
    c.op(LD | W | ABS, net(20));
    c.ja(v4key);
    c.bind(key6);
    c.op(LD | IMM, SEED6);
    c.op(ST, M_KEY);
    for k in 0..4 {
        c.op(LDX | MEM, M_KEY);
        c.op(LD | W | ABS, net(8 + 4 * k));
        c.op(ALU | XOR | X, 0);
        c.fmix32();
        c.op(ST, M_KEY);
    }
    c.ja(scan);
    c.bind(v4);
    c.op(LD | W | ABS, net(12));
    c.bind(v4key);
    c.fmix32();
    c.op(ST, M_KEY);

    c.bind(scan);
    for (n, &(slot, index)) in members.iter().enumerate() {
        c.op(LD | MEM, M_KEY);
        c.op(ALU | XOR | K, (slot as u32 + 1).wrapping_mul(GOLDEN));
        c.fmix32();
        let skip = c.label();
        if n > 0 {
            // Strictly greater: on a tie the lower slot, as `sticky_slot`.
            c.op(LDX | MEM, M_BEST);
            c.jump(JGT | X, 0, None, Some(skip));
        }
        c.op(ST, M_BEST);
        c.op(LD | IMM, index);
        c.op(ST, M_INDEX);
        c.bind(skip);
    }
    c.op(LD | MEM, M_INDEX);
    c.op(RET | A, 0);
    Ok(c.finish())
}

/// Makes the classic sticky program over `members` the program of the
/// reuseport group `socket` belongs to. Needs no privilege.
pub(crate) fn attach_sticky(
    socket: BorrowedFd<'_>,
    members: &[(usize, u32)],
) -> Result<(), SteerError> {
    let program = sticky(members)?;
    bpf::attach_cbpf(socket, &program).map_err(|source| SteerError::Attach {
        program: "classic sticky",
        fd: socket.as_raw_fd(),
        source,
    })
}

const JSET: u16 = 0x40;
const MOD: u16 = 0x90;

/// QUIC by destination connection ID: the socket at index `word mod
/// modulus`, where `word` is the big-endian u32 at `offset` into the DCID
/// (see `quic::cid`). A reuseport program sees the UDP payload from offset
/// 0: a long header's DCID starts at byte 6, a short header's at byte 1.
/// An index past the group's sockets falls back to the kernel's hash; a
/// datagram too short for the load returns 0 (the first socket).
///
/// ```text
///     ldb [0]
///     jset #0x80, long, 0       ; the long-header bit
///     ld [1 + offset]
///     ja route
/// long:
///     ld [6 + offset]
/// route:
///     mod #modulus
///     ret a
/// ```
pub(crate) fn quic_cid(offset: u32, modulus: u32) -> Vec<libc::sock_filter> {
    let mut c = Classic::default();
    let (long, route) = (c.label(), c.label());
    c.op(LD | B | ABS, 0);
    c.jump(JSET, 0x80, Some(long), None);
    c.op(LD | W | ABS, 1 + offset);
    c.ja(route);
    c.bind(long);
    c.op(LD | W | ABS, 6 + offset);
    c.bind(route);
    c.op(ALU | MOD | K, modulus);
    c.op(RET | A, 0);
    c.finish()
}

/// Makes [`quic_cid`] the program of the reuseport group `socket` belongs
/// to. Needs no privilege.
pub(crate) fn attach_quic(
    socket: BorrowedFd<'_>,
    offset: u32,
    modulus: u32,
) -> Result<(), SteerError> {
    bpf::attach_cbpf(socket, &quic_cid(offset, modulus)).map_err(|source| SteerError::Attach {
        program: "classic QUIC connection ID",
        fd: socket.as_raw_fd(),
        source,
    })
}
