//! The hand-off's wire format (the table in the [module docs](super)): the
//! sockets' message (`CTH1`, count, body length, labelled entries) and the
//! acknowledgement (`CTHA`, count), built and checked as bytes; no I/O. The
//! helpers (`Cursor`, `Shown`, `be_u32`) also serve migration's `CTHC`
//! connection message.

use std::collections::HashSet;
use std::fmt;

use super::error::HandoffError;

/// The most sockets one hand-off carries.
pub const MAX_SOCKETS: usize = 64;
/// The longest id or address, in bytes.
pub const MAX_LABEL: usize = 1024;

const MAGIC: [u8; 4] = *b"CTH1";
const ACK_MAGIC: [u8; 4] = *b"CTHA";
pub(super) const HEADER_LEN: usize = 12;
pub(super) const ACK_LEN: usize = 8;
/// The largest body a valid header can announce.
const MAX_BODY: usize = MAX_SOCKETS * 2 * (2 + MAX_LABEL);
/// The smallest entry: a one-byte id and an empty address.
const MIN_ENTRY: usize = 2 + 1 + 2;

/// The whole message for `entries`, checking what the receiver will check.
pub(super) fn encode(entries: &[(&str, &str)]) -> Result<Vec<u8>, HandoffError> {
    let invalid = |reason: String| HandoffError::Invalid { reason };
    if entries.len() > MAX_SOCKETS {
        return Err(invalid(format!(
            "{} sockets given, at most {MAX_SOCKETS} can be handed off",
            entries.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut body = Vec::new();
    for &(id, address) in entries {
        if id.is_empty() {
            return Err(invalid(format!("empty id for address {address:?}")));
        }
        if id.len() > MAX_LABEL {
            return Err(invalid(format!(
                "id {:?}… is {} bytes, at most {MAX_LABEL}",
                truncate(id),
                id.len()
            )));
        }
        if address.len() > MAX_LABEL {
            return Err(invalid(format!(
                "address of id {id:?} is {} bytes, at most {MAX_LABEL}",
                address.len()
            )));
        }
        if !seen.insert(id) {
            return Err(HandoffError::DuplicateId { id: id.to_string() });
        }
        for label in [id, address] {
            // Checked above: at most MAX_LABEL, which fits in a u16.
            let len = u16::try_from(label.len()).unwrap_or(u16::MAX);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(label.as_bytes());
        }
    }
    // Both at most MAX_BODY (checked above), far below u32::MAX.
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut message = Vec::with_capacity(HEADER_LEN + body.len());
    message.extend_from_slice(&MAGIC);
    message.extend_from_slice(&count.to_be_bytes());
    message.extend_from_slice(&body_len.to_be_bytes());
    message.extend_from_slice(&body);
    Ok(message)
}

/// The first characters of a long label, for error messages.
pub(crate) fn truncate(label: &str) -> &str {
    let mut end = label.len().min(40);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// The socket count and body length a header announces, both within limits.
pub(super) fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(usize, usize), String> {
    let (magic, rest) = header.split_at(4);
    if magic != MAGIC {
        return Err(format!(
            "bad magic {:?}, expected {:?}",
            Shown(magic),
            Shown(&MAGIC)
        ));
    }
    let (count, body_len) = rest.split_at(4);
    let count = be_u32(count);
    let body_len = be_u32(body_len);
    if count > MAX_SOCKETS as u64 {
        return Err(format!("{count} sockets announced, at most {MAX_SOCKETS}"));
    }
    if body_len > MAX_BODY as u64 {
        return Err(format!(
            "a body of {body_len} bytes announced, at most {MAX_BODY}"
        ));
    }
    // Both bounded above, so they fit in usize.
    let (count, body_len) = (count as usize, body_len as usize);
    if body_len < count * MIN_ENTRY {
        return Err(format!(
            "a body of {body_len} bytes cannot hold {count} entries"
        ));
    }
    Ok((count, body_len))
}

/// The `count` (id, address) pairs of `body`, which they must fill exactly.
pub(super) fn parse_body(body: &[u8], count: usize) -> Result<Vec<(String, String)>, String> {
    let mut cursor = Cursor(body);
    let mut entries: Vec<(String, String)> = Vec::with_capacity(count.min(MAX_SOCKETS));
    for index in 0..count {
        let id = cursor
            .label()
            .map_err(|e| format!("entry {index}: id {e}"))?;
        if id.is_empty() {
            return Err(format!("entry {index}: empty id"));
        }
        let address = cursor
            .label()
            .map_err(|e| format!("entry {index} ({id:?}): address {e}"))?;
        if entries.iter().any(|(seen, _)| *seen == id) {
            return Err(format!("duplicate id {id:?}"));
        }
        entries.push((id, address));
    }
    if !cursor.0.is_empty() {
        return Err(format!(
            "{} bytes after the last of {count} entries",
            cursor.0.len()
        ));
    }
    Ok(entries)
}

pub(super) fn encode_ack(count: usize) -> [u8; ACK_LEN] {
    let mut ack = [0u8; ACK_LEN];
    ack[..4].copy_from_slice(&ACK_MAGIC);
    ack[4..].copy_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes());
    ack
}

pub(super) fn parse_ack(ack: &[u8; ACK_LEN], expected: usize) -> Result<(), String> {
    let (magic, count) = ack.split_at(4);
    if magic != ACK_MAGIC {
        return Err(format!(
            "bad acknowledgement {:?}, expected {:?}",
            Shown(magic),
            Shown(&ACK_MAGIC)
        ));
    }
    let count = be_u32(count);
    if count != expected as u64 {
        return Err(format!("{count} sockets acknowledged, {expected} sent"));
    }
    Ok(())
}

/// A big-endian u32 from exactly 4 bytes (0 otherwise), widened.
pub(crate) fn be_u32(bytes: &[u8]) -> u64 {
    <[u8; 4]>::try_from(bytes).map_or(0, |b| u64::from(u32::from_be_bytes(b)))
}

/// Reads length-prefixed labels off the front of a slice.
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl Cursor<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    pub(crate) fn label(&mut self) -> Result<String, String> {
        let len = self
            .take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or("length truncated")?;
        if len > MAX_LABEL {
            return Err(format!("of {len} bytes, at most {MAX_LABEL}"));
        }
        let bytes = self
            .take(len)
            .ok_or_else(|| format!("of {len} bytes truncated"))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "not UTF-8".to_string())
    }
}

/// Bytes shown as text where printable, escaped otherwise.
pub(crate) struct Shown<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: &[u8; 4], count: u32, body_len: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(magic);
        h[4..8].copy_from_slice(&count.to_be_bytes());
        h[8..].copy_from_slice(&body_len.to_be_bytes());
        h
    }

    /// Parses a whole message as the receiver does.
    fn parse(message: &[u8]) -> Result<Vec<(String, String)>, String> {
        let header: &[u8; HEADER_LEN] = message
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or("header truncated")?;
        let (count, body_len) = parse_header(header)?;
        let body = &message[HEADER_LEN..];
        if body.len() != body_len {
            return Err(format!(
                "body of {} bytes, {body_len} announced",
                body.len()
            ));
        }
        parse_body(body, count)
    }

    #[test]
    fn round_trip() {
        let entries = [
            ("http", "127.0.0.1:8000"),
            ("admin", "unix:/run/x.sock"),
            ("é", ""),
        ];
        let message = encode(&entries).unwrap();
        assert_eq!(&message[..4], b"CTH1");
        let parsed = parse(&message).unwrap();
        let expected: Vec<(String, String)> = entries
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(parsed, expected);
        assert_eq!(parse(&encode(&[]).unwrap()).unwrap(), vec![]);
    }

    #[test]
    fn encode_refuses_bad_input() {
        let err = encode(&[("a", "x"), ("b", "y"), ("a", "z")]).unwrap_err();
        assert_eq!(err.to_string(), "socket hand-off: duplicate id \"a\"");
        let err = encode(&[("", "127.0.0.1:1")]).unwrap_err();
        assert!(err.to_string().contains("empty id"), "{err}");
        let long = "x".repeat(MAX_LABEL + 1);
        let err = encode(&[(long.as_str(), "")]).unwrap_err();
        assert!(err.to_string().contains("1025 bytes"), "{err}");
        let err = encode(&[("a", long.as_str())]).unwrap_err();
        assert!(err.to_string().contains("address of id \"a\""), "{err}");
        let ids: Vec<String> = (0..=MAX_SOCKETS).map(|i| i.to_string()).collect();
        let many: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), "")).collect();
        let err = encode(&many).unwrap_err();
        assert!(err.to_string().contains("65 sockets"), "{err}");
    }

    #[test]
    fn the_largest_message_parses() {
        let ids: Vec<String> = (0..MAX_SOCKETS)
            .map(|i| format!("{i:0>width$}", width = MAX_LABEL))
            .collect();
        let address = "a".repeat(MAX_LABEL);
        let entries: Vec<(&str, &str)> =
            ids.iter().map(|i| (i.as_str(), address.as_str())).collect();
        let message = encode(&entries).unwrap();
        assert_eq!(message.len(), HEADER_LEN + MAX_BODY);
        assert_eq!(parse(&message).unwrap().len(), MAX_SOCKETS);
    }

    #[test]
    fn bad_headers() {
        let cases: &[([u8; HEADER_LEN], &str)] = &[
            (
                header(b"CTH2", 1, 10),
                "bad magic \"CTH2\", expected \"CTH1\"",
            ),
            (header(b"\0\xffHT", 1, 10), "bad magic \"\\x00\\xffHT\""),
            (
                header(b"CTH1", 65, 10_000),
                "65 sockets announced, at most 64",
            ),
            (
                header(b"CTH1", u32::MAX, 10),
                "4294967295 sockets announced",
            ),
            (
                header(b"CTH1", 1, MAX_BODY as u32 + 1),
                "a body of 131329 bytes announced",
            ),
            (header(b"CTH1", 1, u32::MAX), "at most 131328"),
            (
                header(b"CTH1", 3, 14),
                "a body of 14 bytes cannot hold 3 entries",
            ),
        ];
        for (h, expected) in cases {
            let err = parse_header(h).unwrap_err();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
        assert_eq!(parse_header(&header(b"CTH1", 0, 0)), Ok((0, 0)));
        assert_eq!(parse_header(&header(b"CTH1", 2, 10)), Ok((2, 10)));
    }

    #[test]
    fn bad_bodies() {
        let label = |s: &[u8]| {
            let mut v = (s.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(s);
            v
        };
        let entry = |id: &[u8], addr: &[u8]| [label(id), label(addr)].concat();
        let cases: Vec<(Vec<u8>, usize, &str)> = vec![
            (vec![], 1, "entry 0: id length truncated"),
            (vec![0], 1, "entry 0: id length truncated"),
            (vec![0, 5, b'a'], 1, "entry 0: id of 5 bytes truncated"),
            (label(b"a"), 1, "entry 0 (\"a\"): address length truncated"),
            (
                [label(b"a"), vec![0, 9, b'x']].concat(),
                1,
                "address of 9 bytes truncated",
            ),
            (
                [vec![0x04, 0x01], vec![b'x'; 1025]].concat(),
                1,
                "entry 0: id of 1025 bytes, at most 1024",
            ),
            (
                [vec![0xff, 0xff], vec![b'x'; 10]].concat(),
                1,
                "id of 65535 bytes, at most 1024",
            ),
            (entry(b"", b"x"), 1, "entry 0: empty id"),
            (entry(b"\xff\xfe", b"x"), 1, "entry 0: id not UTF-8"),
            (
                entry(b"a", b"\xc3"),
                1,
                "entry 0 (\"a\"): address not UTF-8",
            ),
            (
                [entry(b"a", b"x"), entry(b"a", b"y")].concat(),
                2,
                "duplicate id \"a\"",
            ),
            (
                [entry(b"a", b"x"), vec![0]].concat(),
                1,
                "1 bytes after the last of 1 entries",
            ),
            (entry(b"a", b"x"), 0, "6 bytes after the last of 0 entries"),
            (entry(b"a", b"x"), 2, "entry 1: id length truncated"),
        ];
        for (body, count, expected) in cases {
            let err = parse_body(&body, count).unwrap_err();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn acks() {
        assert_eq!(parse_ack(&encode_ack(3), 3), Ok(()));
        assert_eq!(
            parse_ack(&encode_ack(2), 3).unwrap_err(),
            "2 sockets acknowledged, 3 sent"
        );
        let err = parse_ack(b"CTH1\0\0\0\x03", 3).unwrap_err();
        assert!(err.starts_with("bad acknowledgement \"CTH1\""), "{err}");
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn random_mutations_never_panic_and_valid_ones_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let n = rng.below(6);
            let ids: Vec<String> = (0..n)
                .map(|i| format!("id{i}-{}", rng.below(100)))
                .collect();
            let addrs: Vec<String> = (0..n).map(|_| "x".repeat(rng.below(40))).collect();
            let entries: Vec<(&str, &str)> = ids
                .iter()
                .zip(&addrs)
                .map(|(i, a)| (i.as_str(), a.as_str()))
                .collect();
            let mut message = encode(&entries).unwrap();
            assert_eq!(parse(&message).unwrap().len(), n);
            match rng.below(4) {
                0 => message.truncate(rng.below(message.len())),
                1 => {
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(message.len());
                        message[i] = rng.next() as u8;
                    }
                }
                2 => message.extend((0..=rng.below(8)).map(|_| rng.next() as u8)),
                _ => {
                    let keep = rng.below(message.len());
                    message = message[..keep]
                        .iter()
                        .copied()
                        .chain((0..rng.below(64)).map(|_| rng.next() as u8))
                        .collect();
                }
            }
            // Whatever the outcome, no panic; a success is well-formed.
            if let Ok(parsed) = parse(&message) {
                assert!(parsed.len() <= MAX_SOCKETS);
                assert!(parsed.iter().all(|(id, a)| !id.is_empty()
                    && id.len() <= MAX_LABEL
                    && a.len() <= MAX_LABEL));
            }
        }
    }
}
