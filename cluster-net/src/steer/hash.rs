//! Sticky's rendezvous hash, defined once so that every path computes it
//! alike: this Rust function (the acceptor's dispatch), the eBPF program
//! and the classic BPF fallback; fixed constants, never std's
//! `DefaultHasher` (which may change between Rust releases), so a hot
//! upgrade to a binary built by another toolchain keeps clients on their
//! slots (`the_hash_is_stable` pins the values). Moving a cluster between those paths (a
//! hot upgrade, a privilege lost) keeps each client on its slot.
//!
//! Only 32-bit multiplies, xors and shifts, since classic BPF has nothing
//! wider; murmur3's `fmix32` finaliser mixes.
//!
//! - the client's key: IPv4 `fmix32(addr)`, the address as a big-endian
//!   number; IPv6 `h = SEED6; for w in the 4 big-endian words: h = fmix32(h ^ w)`.
//!   An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, an IPv4 client of a
//!   dual-stack socket) counts as the IPv4 address.
//! - a slot's score: `fmix32(key ^ (slot + 1) * GOLDEN)` (wrapping).
//! - the client's slot: the live slot with the highest score, the lowest
//!   slot on a tie. A slot leaving moves only its own clients.

use std::cmp::Reverse;
use std::net::IpAddr;

/// murmur3's `fmix32` multipliers.
pub(crate) const FMIX_M1: u32 = 0x85eb_ca6b;
pub(crate) const FMIX_M2: u32 = 0xc2b2_ae35;
/// Spreads slot numbers before they are mixed with the key (2³²/φ).
pub(crate) const GOLDEN: u32 = 0x9e37_79b9;
/// Where an IPv6 key starts, so that `::a.b.c.d` and `a.b.c.d` differ.
pub(crate) const SEED6: u32 = 0x0000_0006;

/// murmur3's 32-bit finaliser: every input bit flips each output bit with
/// probability about ½.
pub(crate) const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(FMIX_M1);
    h ^= h >> 13;
    h = h.wrapping_mul(FMIX_M2);
    h ^= h >> 16;
    h
}

/// The client's key.
pub(crate) fn client_key(ip: IpAddr) -> u32 {
    match ip.to_canonical() {
        IpAddr::V4(a) => fmix32(u32::from(a)),
        IpAddr::V6(a) => a
            .octets()
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .fold(SEED6, |h, w| fmix32(h ^ w)),
    }
}

/// Slot `slot`'s score for the client with key `key`.
pub(crate) const fn score(key: u32, slot: u32) -> u32 {
    fmix32(key ^ slot.wrapping_add(1).wrapping_mul(GOLDEN))
}

/// The slot among `slots` that the client at `ip` belongs to, as the
/// kernel's sticky programs choose it; `None` if `slots` is empty.
pub(crate) fn sticky_slot(ip: IpAddr, slots: impl IntoIterator<Item = usize>) -> Option<usize> {
    let key = client_key(ip);
    slots
        .into_iter()
        .max_by_key(|&slot| (score(key, slot as u32), Reverse(slot)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Fixed values: the function is a wire contract between releases (and
    /// between this code and the kernel programs), so a change must show.
    #[test]
    fn the_hash_is_stable() {
        assert_eq!(fmix32(0), 0);
        assert_eq!(fmix32(1), 0x514e_28b7);
        assert_eq!(
            client_key(Ipv4Addr::new(127, 0, 0, 1).into()),
            fmix32(0x7f00_0001)
        );
        let v6 = Ipv6Addr::LOCALHOST;
        let want = [0, 0, 0, 1].into_iter().fold(SEED6, |h, w| fmix32(h ^ w));
        assert_eq!(client_key(v6.into()), want);
    }

    #[test]
    fn a_mapped_address_counts_as_its_ipv4_address() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            client_key(v4.to_ipv6_mapped().into()),
            client_key(v4.into())
        );
        assert_ne!(
            client_key(v4.to_ipv6_compatible().into()),
            client_key(v4.into())
        );
    }

    /// Rendezvous: removing a slot moves only the clients it had, and
    /// spreads them over the others.
    #[test]
    fn a_slot_leaving_moves_only_its_clients() {
        let clients: Vec<IpAddr> = (0..4000u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i).into())
            .collect();
        let before: Vec<usize> = clients
            .iter()
            .map(|&ip| sticky_slot(ip, 0..4).unwrap())
            .collect();
        let after: Vec<usize> = clients
            .iter()
            .map(|&ip| sticky_slot(ip, [0, 1, 3]).unwrap())
            .collect();
        let mut counts = [0usize; 4];
        for (&b, &a) in before.iter().zip(&after) {
            counts[b] += 1;
            if b != 2 {
                assert_eq!(a, b, "a client of a remaining slot moved");
            }
        }
        // Each slot has about a quarter.
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(sticky_slot(clients[0], []), None);
    }
}
