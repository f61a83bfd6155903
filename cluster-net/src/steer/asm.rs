//! A small typed eBPF instruction encoder: what `programs.rs` needs and no
//! more. No clang, no libbpf: each program is written as encoder calls that
//! read as its assembly listing, and jumps go to labels resolved at
//! [`Asm::finish`].
//!
//! Encodings are the kernel's (`include/uapi/linux/bpf.h`,
//! `Documentation/bpf/standardization/instruction-set.rst`).

use std::os::fd::{AsRawFd, BorrowedFd};

/// One eBPF instruction as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// `dst_reg:4, src_reg:4`, a C bit-field: low nibble first on little-endian.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Self {
        let (dst, src) = (dst as u8, src as u8);
        #[cfg(target_endian = "little")]
        let regs = dst | src << 4;
        #[cfg(target_endian = "big")]
        let regs = dst << 4 | src;
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
}

/// A register: `r0` returns, `r1`–`r5` are arguments (clobbered by calls),
/// `r6`–`r9` survive calls, `r10` is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub(crate) enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// An ALU or jump operand: a register or a 32-bit immediate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Src {
    Reg(Reg),
    Imm(i32),
}

impl From<Reg> for Src {
    fn from(r: Reg) -> Self {
        Src::Reg(r)
    }
}

impl From<i32> for Src {
    fn from(imm: i32) -> Self {
        Src::Imm(imm)
    }
}

impl Src {
    /// The source bit (`BPF_K` or `BPF_X`), the source register and the immediate.
    fn parts(self) -> (u8, Reg, i32) {
        match self {
            Src::Reg(r) => (X, r, 0),
            Src::Imm(imm) => (K, Reg::R0, imm),
        }
    }
}

/// A memory access's width.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Size {
    /// 4 bytes.
    W = 0x00,
    /// 8 bytes.
    DW = 0x18,
}

/// An ALU operation.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Mod = 0x90,
    Xor = 0xa0,
    Mov = 0xb0,
}

/// A jump's condition (unsigned comparisons).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cond {
    Eq = 0x10,
    Ge = 0x30,
    Ne = 0x50,
    Le = 0xb0,
}

/// A kernel helper, by its number in `enum bpf_func_id`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Helper {
    MapLookupElem = 1,
    SkbLoadBytesRelative = 68,
    SkSelectReuseport = 82,
}

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// Modes.
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const ATOMIC: u8 = 0xc0;
// Sources.
const K: u8 = 0x00;
const X: u8 = 0x08;
// Other operations.
const END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const FETCH: i32 = 0x01;
/// `ld_imm64`'s source register when its immediate is a map's fd.
const PSEUDO_MAP_FD: Reg = Reg::R1;

/// A jump target, bound to a position with [`Asm::bind`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Label(usize);

/// A program being written.
#[derive(Default)]
pub(crate) struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// Jumps waiting for their label: (instruction, label).
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A new, not yet bound, label.
    pub(crate) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub(crate) fn bind(&mut self, label: Label) {
        assert!(self.labels[label.0].is_none(), "label bound twice");
        self.labels[label.0] = Some(self.insns.len());
    }

    /// The instructions, with every jump resolved.
    ///
    /// # Panics
    /// On a jump to an unbound label or farther than 32767 instructions:
    /// mistakes in a program's source, found by its tests.
    pub(crate) fn finish(mut self) -> Vec<Insn> {
        for &(at, label) in &self.jumps {
            let target = self.labels[label.0].expect("every jump's label is bound");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("a jump within 32767 instructions");
        }
        self.insns
    }

    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// `dst op= src` on 64 bits.
    pub(crate) fn alu64(&mut self, op: Alu, dst: Reg, src: impl Into<Src>) {
        let (s, src, imm) = src.into().parts();
        self.push(Insn::new(ALU64 | op as u8 | s, dst, src, 0, imm));
    }

    /// `dst op= src` on the low 32 bits; the high 32 become zero.
    pub(crate) fn alu32(&mut self, op: Alu, dst: Reg, src: impl Into<Src>) {
        let (s, src, imm) = src.into().parts();
        self.push(Insn::new(ALU | op as u8 | s, dst, src, 0, imm));
    }

    /// `dst = src` (64 bits).
    pub(crate) fn mov(&mut self, dst: Reg, src: impl Into<Src>) {
        self.alu64(Alu::Mov, dst, src);
    }

    /// `dst = htobe<bits>(dst)`: network order to a number, on any host.
    pub(crate) fn be(&mut self, dst: Reg, bits: i32) {
        self.push(Insn::new(ALU | END | TO_BE, dst, Reg::R0, 0, bits));
    }

    /// `dst = *(size *)(src + off)`.
    pub(crate) fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) {
        self.push(Insn::new(LDX | MEM | size as u8, dst, src, off, 0));
    }

    /// `*(size *)(dst + off) = src`.
    pub(crate) fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.push(Insn::new(STX | MEM | size as u8, dst, src, off, 0));
    }

    /// `*(size *)(dst + off) = imm`.
    pub(crate) fn st(&mut self, size: Size, dst: Reg, off: i16, imm: i32) {
        self.push(Insn::new(ST | MEM | size as u8, dst, Reg::R0, off, imm));
    }

    /// `src = atomic_fetch_add((u64 *)(dst + off), src)`.
    pub(crate) fn fetch_add64(&mut self, dst: Reg, off: i16, src: Reg) {
        let code = STX | ATOMIC | Size::DW as u8;
        self.push(Insn::new(code, dst, src, off, Alu::Add as i32 | FETCH));
    }

    /// `lock *(u32 *)(dst + off) += src` (no fetch).
    pub(crate) fn atomic_add32(&mut self, dst: Reg, off: i16, src: Reg) {
        let code = STX | ATOMIC | Size::W as u8;
        self.push(Insn::new(code, dst, src, off, Alu::Add as i32));
    }

    /// `dst = <the map whose fd is map>` (`ld_imm64` with `BPF_PSEUDO_MAP_FD`:
    /// the kernel puts the map's address in place of the fd).
    pub(crate) fn ld_map(&mut self, dst: Reg, map: BorrowedFd<'_>) {
        let code = LD | IMM | Size::DW as u8;
        self.push(Insn::new(code, dst, PSEUDO_MAP_FD, 0, map.as_raw_fd()));
        self.push(Insn::new(0, Reg::R0, Reg::R0, 0, 0));
    }

    /// `if dst cond src goto target` (64-bit, unsigned).
    pub(crate) fn jmp(&mut self, cond: Cond, dst: Reg, src: impl Into<Src>, target: Label) {
        let (s, src, imm) = src.into().parts();
        self.jumps.push((self.insns.len(), target));
        self.push(Insn::new(JMP | cond as u8 | s, dst, src, 0, imm));
    }

    /// `goto target`.
    pub(crate) fn ja(&mut self, target: Label) {
        self.jumps.push((self.insns.len(), target));
        self.push(Insn::new(JMP, Reg::R0, Reg::R0, 0, 0));
    }

    /// `r0 = helper(r1, …, r5)`; clobbers `r1`–`r5`.
    pub(crate) fn call(&mut self, helper: Helper) {
        self.push(Insn::new(JMP | CALL, Reg::R0, Reg::R0, 0, helper as i32));
    }

    /// `return r0`.
    pub(crate) fn exit(&mut self) {
        self.push(Insn::new(JMP | EXIT, Reg::R0, Reg::R0, 0, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reg::*;

    /// Bytes worked out by hand from the kernel's instruction-set document
    /// (opcode = operation | source | class; `regs` = src << 4 | dst).
    #[test]
    #[cfg(target_endian = "little")]
    fn encodes_as_the_kernel_reads() {
        let bytes = |i: Insn| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[0] = i.code;
            b[1] = i.regs;
            b[2..4].copy_from_slice(&i.off.to_le_bytes());
            b[4..].copy_from_slice(&i.imm.to_le_bytes());
            b
        };
        let mut a = Asm::new();
        let end = a.label();
        a.mov(R6, R1); // r6 = r1
        a.alu32(Alu::Mul, R3, 0x85eb_ca6b_u32 as i32); // w3 *= -2048144789
        a.ldx(Size::W, R5, R4, 68); // r5 = *(u32 *)(r4 + 68)
        a.stx(Size::DW, R10, -8, R1); // *(u64 *)(r10 - 8) = r1
        a.st(Size::W, R10, -12, 0); // *(u32 *)(r10 - 12) = 0
        a.fetch_add64(R7, 0, R0); // r0 = atomic64_fetch_add((u64 *)(r7 + 0), r0)
        a.be(R2, 16); // r2 = be16 r2
        a.jmp(Cond::Ge, R1, R8, end); // if r1 >= r8 goto +1
        a.call(Helper::SkSelectReuseport); // call 82
        a.bind(end);
        a.exit();
        let got: Vec<[u8; 8]> = a.finish().into_iter().map(bytes).collect();
        let want: Vec<[u8; 8]> = vec![
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0],
            [0x24, 0x03, 0, 0, 0x6b, 0xca, 0xeb, 0x85],
            [0x61, 0x45, 68, 0, 0, 0, 0, 0],
            [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0],
            [0x62, 0x0a, 0xf4, 0xff, 0, 0, 0, 0],
            [0xdb, 0x07, 0, 0, 0x01, 0, 0, 0],
            [0xdc, 0x02, 0, 0, 16, 0, 0, 0],
            [0x3d, 0x81, 1, 0, 0, 0, 0, 0],
            [0x85, 0x00, 0, 0, 82, 0, 0, 0],
            [0x95, 0x00, 0, 0, 0, 0, 0, 0],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_32_bit_atomic_add_encodes_without_fetch() {
        let mut a = Asm::new();
        a.atomic_add32(R0, 12, R1); // lock *(u32 *)(r0 + 12) += r1
        let got = a.finish()[0];
        assert_eq!(got, Insn::new(0xc3, R0, R1, 12, 0));
    }

    #[test]
    #[should_panic(expected = "every jump's label is bound")]
    fn an_unbound_label_is_a_bug_found_at_finish() {
        let mut a = Asm::new();
        let nowhere = a.label();
        a.ja(nowhere);
        let _ = a.finish();
    }
}
