//! The cluster's TLS session ticket keys, ours (rustls' ring ticketer
//! cannot be read out): ChaCha20-Poly1305 keys rotated on a schedule, the
//! previous one kept to decrypt, so a ticket stays good for one to two
//! rotation periods; a hot upgrade hands them to the new process
//! (`to_bytes`, `from_bytes`), whose clients then resume too. A leaf.

use std::fmt;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use tokio_rustls::rustls::server::ProducesTickets;

/// How often a new key takes over (as rustls' own ticketer: 6 hours).
pub(crate) const ROTATION: Duration = Duration::from_secs(6 * 3600);

const NAME_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// The format of `to_bytes`: its first byte.
const VERSION: u8 = 1;

/// One key: its name (written in front of each ticket, so decryption finds
/// the key) and the AEAD key.
struct Key {
    name: [u8; NAME_LEN],
    secret: [u8; KEY_LEN],
    aead: LessSafeKey,
}

impl Key {
    fn new(name: [u8; NAME_LEN], secret: [u8; KEY_LEN]) -> Option<Key> {
        let aead = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &secret).ok()?);
        Some(Key { name, secret, aead })
    }

    fn random(rng: &SystemRandom) -> Option<Key> {
        let mut name = [0u8; NAME_LEN];
        let mut secret = [0u8; KEY_LEN];
        rng.fill(&mut name).ok()?;
        rng.fill(&mut secret).ok()?;
        Key::new(name, secret)
    }
}

struct Keys {
    current: Key,
    previous: Option<Key>,
    /// When `current` took over, in seconds since the epoch (wall clock:
    /// the schedule carries over to a new process).
    since: u64,
}

/// The ticket keys of the cluster: one for every worker's config.
pub(crate) struct TicketKeys {
    keys: RwLock<Keys>,
    rotation: Duration,
    rng: SystemRandom,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("TicketKeys")
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TicketKeys {
    /// A fresh key, rotated every `rotation`; `None` without randomness.
    pub(crate) fn new(rotation: Duration) -> Option<TicketKeys> {
        let rng = SystemRandom::new();
        let current = Key::random(&rng)?;
        Some(TicketKeys {
            keys: RwLock::new(Keys {
                current,
                previous: None,
                since: now(),
            }),
            rotation,
            rng,
        })
    }

    /// The keys `to_bytes` wrote (another process's), rotated every
    /// `rotation`; `None` if malformed.
    pub(crate) fn from_bytes(bytes: &[u8], rotation: Duration) -> Option<TicketKeys> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (since, rest) = rest.split_first_chunk::<8>()?;
        let key = |rest: &[u8]| -> Option<Key> {
            let (name, rest) = rest.split_first_chunk::<NAME_LEN>()?;
            let secret = rest.first_chunk::<KEY_LEN>()?;
            Key::new(*name, *secret)
        };
        let current = key(rest)?;
        let rest = &rest[NAME_LEN + KEY_LEN..];
        let previous = match rest.len() {
            0 => None,
            n if n == NAME_LEN + KEY_LEN => Some(key(rest)?),
            _ => return None,
        };
        Some(TicketKeys {
            keys: RwLock::new(Keys {
                current,
                previous,
                since: u64::from_be_bytes(*since),
            }),
            rotation,
            rng: SystemRandom::new(),
        })
    }

    /// The keys and their schedule, for the new process of a hot upgrade
    /// (secret: only over its private channel).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(1 + 8 + 2 * (NAME_LEN + KEY_LEN));
        out.push(VERSION);
        out.extend_from_slice(&keys.since.to_be_bytes());
        for key in std::iter::once(&keys.current).chain(&keys.previous) {
            out.extend_from_slice(&key.name);
            out.extend_from_slice(&key.secret);
        }
        out
    }

    /// A new key takes over once the current one is `rotation` old; the
    /// current one becomes the previous (the one before is forgotten).
    fn rotate_if_due(&self) {
        let due = |keys: &Keys| now().saturating_sub(keys.since) >= self.rotation.as_secs();
        if !due(&self.keys.read().unwrap_or_else(PoisonError::into_inner)) {
            return;
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if !due(&keys) {
            return;
        }
        let Some(fresh) = Key::random(&self.rng) else {
            return;
        };
        let old = std::mem::replace(&mut keys.current, fresh);
        keys.previous = Some(old);
        keys.since = now();
        tracing::debug!("TLS session ticket key rotated");
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.rotation.as_secs()).unwrap_or(u32::MAX)
    }

    /// `name || nonce || ciphertext || tag`, the key's name as the
    /// associated data.
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.rotate_if_due();
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = &keys.current;
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut sealed,
            )
            .ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.rotate_if_due();
        let (name, rest) = cipher.split_first_chunk::<NAME_LEN>()?;
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = std::iter::once(&keys.current)
            .chain(&keys.previous)
            .find(|k| k.name == *name)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(name),
                &mut buf,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_opened_by_the_keys_carried_to_another_process() {
        let keys = TicketKeys::new(ROTATION).unwrap();
        let ticket = keys.encrypt(b"session state").unwrap();
        assert_eq!(
            keys.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        let carried = TicketKeys::from_bytes(&keys.to_bytes(), ROTATION).unwrap();
        assert_eq!(
            carried.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        // A stranger's keys open nothing; a forged ticket fails.
        let other = TicketKeys::new(ROTATION).unwrap();
        assert_eq!(other.decrypt(&ticket), None);
        let mut forged = ticket.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(carried.decrypt(&forged), None);
        assert_eq!(carried.decrypt(&ticket[..20]), None);
        assert!(TicketKeys::from_bytes(&[], ROTATION).is_none());
        assert!(TicketKeys::from_bytes(&keys.to_bytes()[..40], ROTATION).is_none());
    }

    #[test]
    fn after_a_rotation_the_previous_key_still_decrypts_and_the_one_before_not() {
        // Rotated at each use.
        let keys = TicketKeys::new(Duration::ZERO).unwrap();
        let first = keys.encrypt(b"one").unwrap();
        let second = keys.encrypt(b"two").unwrap();
        assert_ne!(first[..NAME_LEN], second[..NAME_LEN], "a new key");
        // `decrypt` rotates first: `second`'s key is the previous one then.
        assert_eq!(keys.decrypt(&second).as_deref(), Some(&b"two"[..]));
        assert_eq!(keys.decrypt(&first), None);
        // Carried with both keys: a ticket of the previous key opens there.
        let ticket = keys.encrypt(b"three").unwrap();
        keys.rotate_if_due();
        let bytes = keys.to_bytes();
        assert_eq!(bytes.len(), 1 + 8 + 2 * (NAME_LEN + KEY_LEN));
        let carried = TicketKeys::from_bytes(&bytes, ROTATION).unwrap();
        assert_eq!(carried.decrypt(&ticket).as_deref(), Some(&b"three"[..]));
        assert_eq!(carried.lifetime(), 6 * 3600);
    }
}
