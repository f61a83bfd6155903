//! The connection-ID layout: which slot (and which generation of its
//! worker) a QUIC connection ID names, readable by the kernel's classic BPF
//! and by any worker, and by nobody outside without the key.
//!
//! ```text
//! byte  0      config rotation (3 bits, 0; QUIC-LB's 0b111 = unroutable) + 5 random bits
//! bytes 1..5   route word, big-endian: slot + ROUTE_MODULUS × random
//! bytes 5..9   generation word: generation + GEN_MODULUS × random
//! bytes 9..12  tag: a keyed hash of bytes 0..9 (this cluster's IDs from a client's)
//! ```
//!
//! No byte is the same across two IDs of one slot: each word is its
//! residue plus a random multiple of the modulus, so only `word mod
//! modulus` carries meaning (the classic program computes it in one
//! instruction). The route word's quotient leaves room for a host id
//! (`slot + ROUTE_MODULUS × (host + HOSTS × random)`).

use std::hash::{BuildHasher, RandomState};

/// The length of the connection IDs this cluster issues.
pub const CID_LEN: usize = 12;
/// Where the route word starts in the ID (the classic program's offset).
pub(crate) const ROUTE_AT: usize = 1;
const GEN_AT: usize = 5;
const TAG_AT: usize = 9;
/// The route word's modulus: the most slots a group addresses. Prime, as
/// the generation's: with a power of two, the low bits of the word would
/// be the residue itself, a fixed (linkable) byte.
pub(crate) const ROUTE_MODULUS: u32 = 131;
/// Generations wrap at this.
pub(crate) const GEN_MODULUS: u32 = 4099;
const CONFIG_MASK: u8 = 0b1110_0000;

/// Who issued an ID: a slot, and the generation of the endpoint there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
}

/// A group's layout: its tag key.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    key: RandomState,
}

impl Layout {
    pub(crate) fn new() -> Layout {
        Layout {
            key: RandomState::new(),
        }
    }

    /// An ID for `owner`, from 16 random bytes.
    pub(crate) fn encode(&self, owner: Owner, random: [u8; 16]) -> [u8; CID_LEN] {
        let word = |at: usize| {
            u32::from_be_bytes([random[at], random[at + 1], random[at + 2], random[at + 3]])
        };
        let mut cid = [0u8; CID_LEN];
        cid[0] = random[0] & !CONFIG_MASK;
        let slot = owner.slot as u32 % ROUTE_MODULUS;
        cid[ROUTE_AT..GEN_AT].copy_from_slice(&residue(slot, ROUTE_MODULUS, word(1)).to_be_bytes());
        let generation = owner.generation % GEN_MODULUS;
        cid[GEN_AT..TAG_AT]
            .copy_from_slice(&residue(generation, GEN_MODULUS, word(5)).to_be_bytes());
        let tag = self.tag(&cid[..TAG_AT]);
        cid[TAG_AT..].copy_from_slice(&tag);
        cid
    }

    /// The owner of `cid`, if this group issued it.
    pub(crate) fn decode(&self, cid: &[u8]) -> Option<Owner> {
        if cid.len() != CID_LEN
            || cid[0] & CONFIG_MASK != 0
            || self.tag(&cid[..TAG_AT]) != cid[TAG_AT..]
        {
            return None;
        }
        let word = |at: usize| u32::from_be_bytes([cid[at], cid[at + 1], cid[at + 2], cid[at + 3]]);
        Some(Owner {
            slot: (word(ROUTE_AT) % ROUTE_MODULUS) as usize,
            generation: word(GEN_AT) % GEN_MODULUS,
        })
    }

    fn tag(&self, head: &[u8]) -> [u8; CID_LEN - TAG_AT] {
        let h = self.key.hash_one(head).to_le_bytes();
        [h[0], h[1], h[2]]
    }
}

/// `r + m × q` for a random `q`: ≡ `r` (mod `m`), otherwise random.
fn residue(r: u32, m: u32, random: u32) -> u32 {
    let (r, m) = (u64::from(r), u64::from(m));
    let w = u64::from(random) / m * m + r;
    // Past 2^32 only in the last, partial multiple: one multiple lower.
    u32::try_from(w).unwrap_or((w - m) as u32)
}

/// The destination connection ID of a QUIC datagram: a long header's
/// (its length byte says how long), or a short header's, which has none
/// and is ours only at our length.
pub(crate) fn dcid(datagram: &[u8]) -> Option<&[u8]> {
    let first = *datagram.first()?;
    if first & 0x80 != 0 {
        let len = usize::from(*datagram.get(5)?);
        datagram.get(6..6 + len)
    } else {
        datagram.get(1..1 + CID_LEN)
    }
}

/// Unpredictable bytes: SipHash under a random key over a counter (the
/// std library's keyed hash; no RNG crate in this one).
#[derive(Debug)]
pub(crate) struct Random {
    key: RandomState,
    counter: std::sync::atomic::AtomicU64,
}

impl Random {
    pub(crate) fn new() -> Random {
        Random {
            key: RandomState::new(),
            counter: Default::default(),
        }
    }

    pub(crate) fn bytes16(&self) -> [u8; 16] {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let a = self.key.hash_one((n, 0u8)).to_le_bytes();
        let b = self.key.hash_one((n, 1u8)).to_le_bytes();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a);
        out[8..].copy_from_slice(&b);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_owner_and_no_byte_is_fixed() {
        let layout = Layout::new();
        let random = Random::new();
        let owner = Owner {
            slot: 3,
            generation: 77,
        };
        let ids: Vec<_> = (0..64)
            .map(|_| layout.encode(owner, random.bytes16()))
            .collect();
        for id in &ids {
            assert_eq!(layout.decode(id), Some(owner));
        }
        for byte in 0..CID_LEN {
            let first = ids[0][byte];
            assert!(
                ids.iter().any(|id| id[byte] != first),
                "byte {byte} is the same in 64 IDs"
            );
        }
    }

    #[test]
    fn another_groups_or_a_clients_id_is_not_ours() {
        let (a, b) = (Layout::new(), Layout::new());
        let id = a.encode(
            Owner {
                slot: 1,
                generation: 1,
            },
            Random::new().bytes16(),
        );
        assert_eq!(b.decode(&id), None);
        let mut flipped = id;
        flipped[2] ^= 1;
        assert_eq!(a.decode(&flipped), None);
        assert_eq!(a.decode(&id[..8]), None);
    }

    #[test]
    fn the_dcid_is_found_in_both_header_forms() {
        let mut long = vec![0xc0, 0, 0, 0, 1, 12];
        long.extend_from_slice(&[7; 12]);
        long.push(0);
        assert_eq!(dcid(&long), Some(&[7u8; 12][..]));
        let mut short = vec![0x40];
        short.extend_from_slice(&[9; 12]);
        assert_eq!(dcid(&short), Some(&[9u8; 12][..]));
        assert_eq!(dcid(&[]), None);
        assert_eq!(dcid(&[0xc0, 0, 0, 0, 1, 20, 1]), None);
    }
}
