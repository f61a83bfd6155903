//! Handing listening sockets to another process: hot upgrade of the binary.
//!
//! The old process sends its listening sockets to the new one over a
//! Unix-domain stream socket (`SCM_RIGHTS`), as nginx (on `USR2`) and pingora
//! do, and in addition:
//!
//! - every socket carries a unique **id** and its **address** (such as
//!   `127.0.0.1:8000` or `unix:/run/app.sock`), so the new process finds each
//!   socket by name instead of by position; a duplicate id is refused before
//!   anything is sent;
//! - the received fds are **close-on-exec** (set atomically with
//!   `MSG_CMSG_CLOEXEC` where the OS has it) and **non-blocking**;
//! - the new process **acknowledges** once it has taken the sockets over, and
//!   [`send`] returns only after that acknowledgement: only then may the old
//!   process stop accepting and drain. Until then both processes hold the same
//!   kernel sockets, so a connection waits in the shared backlog instead of
//!   being refused, whichever process accepts it.
//!
//! Both sides are blocking calls bounded by a timeout; from async code run
//! them on a blocking thread (`tokio::task::spawn_blocking`).
//!
//! ```no_run
//! use std::os::unix::net::{UnixListener, UnixStream};
//! use std::time::Duration;
//! use cluster_net::handoff::{self, Outgoing};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The old process: it listens on a control socket, starts the new binary,
//! // and hands its sockets to whoever connects.
//! let http = std::net::TcpListener::bind("127.0.0.1:8000")?;
//! let control = UnixListener::bind("/run/app/upgrade.sock")?;
//! let (stream, _) = control.accept()?;
//! handoff::send(
//!     &stream,
//!     &[Outgoing::new("http", "127.0.0.1:8000", &http)],
//!     Duration::from_secs(10),
//! )?;
//! // Acknowledged: stop accepting, drain, exit.
//!
//! // The new process.
//! let stream = UnixStream::connect("/run/app/upgrade.sock")?;
//! let mut incoming = handoff::receive(stream, Duration::from_secs(10))?;
//! let http = incoming.take("http").ok_or("no socket `http`")?.into_tcp_listener()?;
//! // ... start accepting on `http`, then:
//! incoming.acknowledge()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Wire format
//!
//! All integers are big-endian. The sender writes one message:
//!
//! | bytes | content |
//! |---|---|
//! | 4 | magic `CTH1` |
//! | 4 | `count`: the number of sockets, at most [`MAX_SOCKETS`] |
//! | 4 | `body_len`: the number of bytes that follow |
//! | `body_len` | `count` entries: u16 id length, id (UTF-8, 1 to [`MAX_LABEL`] bytes), u16 address length, address (UTF-8, 0 to [`MAX_LABEL`] bytes) |
//!
//! The `count` fds travel as one `SCM_RIGHTS` control message in the same
//! order as the entries, attached to the first byte of the message (so they
//! arrive with the first `recvmsg` that returns data; fds arriving later are
//! refused). The receiver answers with 8 bytes: magic `CTHA` and the `count`
//! it received. Every length is checked before anything is allocated.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use socket2::{Domain, SockRef, Type};

use crate::Error;

/// The most sockets one hand-off carries.
pub const MAX_SOCKETS: usize = 64;
/// The longest id or address, in bytes.
pub const MAX_LABEL: usize = 1024;

const MAGIC: [u8; 4] = *b"CTH1";
const ACK_MAGIC: [u8; 4] = *b"CTHA";
const HEADER_LEN: usize = 12;
const ACK_LEN: usize = 8;
/// The largest body a valid header can announce.
const MAX_BODY: usize = MAX_SOCKETS * 2 * (2 + MAX_LABEL);
/// The smallest entry: a one-byte id and an empty address.
const MIN_ENTRY: usize = 2 + 1 + 2;
/// Linux's `SCM_MAX_FD`, the most fds one message can carry: the control
/// buffer holds that many, so a peer sending too many fds is not truncated
/// (truncated fds could not be closed) but counted and refused.
const SCM_MAX_FD: usize = 253;
/// Room for other control messages (credentials) besides the fds.
const CMSG_SLACK: usize = 128;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL.union(MsgFlags::MSG_DONTWAIT);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_DONTWAIT;

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
const RECV_FLAGS: MsgFlags = MsgFlags::MSG_CMSG_CLOEXEC.union(MsgFlags::MSG_DONTWAIT);
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
const RECV_FLAGS: MsgFlags = MsgFlags::MSG_DONTWAIT;

/// One socket to hand off: its id, its address, and the socket itself.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// A unique, non-empty name the receiver finds the socket by.
    pub id: &'a str,
    /// The socket's address, as text (`127.0.0.1:8000`, `unix:/run/x.sock`).
    pub address: &'a str,
    /// The socket.
    pub fd: BorrowedFd<'a>,
}

impl<'a> Outgoing<'a> {
    /// The socket `socket` under `id`, at `address`.
    pub fn new(id: &'a str, address: &'a str, socket: &'a impl AsFd) -> Outgoing<'a> {
        Outgoing {
            id,
            address,
            fd: socket.as_fd(),
        }
    }
}

/// Hands `sockets` to the process at the other end of `stream` and waits for
/// its acknowledgement: once this returns `Ok`, the receiver holds the
/// sockets and the caller may stop accepting on its own copies.
///
/// `ack_timeout` bounds the whole exchange (sending, then waiting for the
/// acknowledgement); on expiry the error is [`Error::HandoffTimeout`] naming
/// the peer. Ids must be unique ([`Error::DuplicateLabel`]) and non-empty,
/// ids and addresses at most [`MAX_LABEL`] bytes, at most [`MAX_SOCKETS`]
/// sockets ([`Error::HandoffInvalid`]); these are checked before anything is
/// sent. If the receiver closes the connection without acknowledging, the
/// error is [`Error::Handoff`] at once. Works whether `stream` is blocking or
/// not, and leaves its mode unchanged.
///
/// The receiver makes its fds non-blocking; that flag belongs to the open
/// socket, so the sender's copies become non-blocking too.
pub fn send(
    stream: &UnixStream,
    sockets: &[Outgoing<'_>],
    ack_timeout: Duration,
) -> Result<(), Error> {
    let entries: Vec<(&str, &str)> = sockets.iter().map(|s| (s.id, s.address)).collect();
    let message = encode(&entries)?;
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.fd.as_raw_fd()).collect();
    let peer = describe_peer(stream);
    let deadline = Deadline::after(ack_timeout);

    send_all(
        stream,
        &message,
        &fds,
        &deadline,
        &peer,
        "sending the sockets",
    )?;

    let mut ack = [0u8; ACK_LEN];
    let extra = recv_exact(
        stream,
        &mut ack,
        &deadline,
        &peer,
        ("the acknowledgement", "receiving the acknowledgement"),
    )?;
    if !extra.fds.is_empty() {
        return Err(protocol(
            &peer,
            "file descriptors sent with the acknowledgement",
        ));
    }
    parse_ack(&ack, entries.len()).map_err(|reason| protocol(&peer, reason))
}

/// Receives the sockets the process at the other end of `stream` hands off
/// with [`send`], waiting at most `timeout` for all of them.
///
/// The fds are close-on-exec and non-blocking. The sender is still waiting:
/// take the sockets over, then call [`Incoming::acknowledge`]. Anything
/// malformed is an [`Error::HandoffProtocol`] naming the peer and what was
/// wrong; the fds received with it are closed.
pub fn receive(stream: UnixStream, timeout: Duration) -> Result<Incoming, Error> {
    let peer = describe_peer(&stream);
    let deadline = Deadline::after(timeout);

    let mut header = [0u8; HEADER_LEN];
    let mut got = recv_exact(&stream, &mut header, &deadline, &peer, SOCKETS)?;
    let (count, body_len) = parse_header(&header).map_err(|reason| protocol(&peer, reason))?;
    let mut body = vec![0u8; body_len];
    let rest = recv_exact(&stream, &mut body, &deadline, &peer, SOCKETS)?;
    if got.late || !rest.fds.is_empty() {
        return Err(protocol(
            &peer,
            "file descriptors arrived after the first byte of the message",
        ));
    }
    let labels = parse_body(&body, count).map_err(|reason| protocol(&peer, reason))?;
    if got.fds.len() != count {
        return Err(protocol(
            &peer,
            format!(
                "{count} sockets announced but {} file descriptors received",
                got.fds.len()
            ),
        ));
    }
    for fd in &got.fds {
        prepare(fd.as_fd()).map_err(|source| Error::Handoff {
            peer: peer.clone(),
            what: "setting close-on-exec and non-blocking on a received fd",
            source,
        })?;
    }
    let sockets = labels
        .into_iter()
        .zip(got.fds.drain(..))
        .map(|((id, address), fd)| Received { id, address, fd })
        .collect();
    Ok(Incoming {
        sockets,
        count,
        stream,
        peer,
        timeout,
        acknowledged: false,
    })
}

/// One received socket: its id, its address as the sender gave it, and the
/// fd (close-on-exec, non-blocking).
#[derive(Debug)]
pub struct Received {
    /// The id the sender gave it.
    pub id: String,
    /// The address the sender gave it.
    pub address: String,
    /// The socket.
    pub fd: OwnedFd,
}

impl Received {
    /// The socket as a TCP listener; an error naming the id if it is not a
    /// listening TCP socket.
    pub fn into_tcp_listener(self) -> Result<std::net::TcpListener, Error> {
        self.check(
            |domain| domain == Domain::IPV4 || domain == Domain::IPV6,
            "a listening TCP socket",
        )?;
        Ok(std::net::TcpListener::from(self.fd))
    }

    /// The socket as a Unix-domain listener; an error naming the id if it is
    /// not a listening Unix stream socket.
    pub fn into_unix_listener(self) -> Result<UnixListener, Error> {
        self.check(|domain| domain == Domain::UNIX, "a listening Unix socket")?;
        Ok(UnixListener::from(self.fd))
    }

    fn check(
        &self,
        domain_ok: impl Fn(Domain) -> bool,
        expected: &'static str,
    ) -> Result<(), Error> {
        let kind = |found: String| Error::HandoffSocketKind {
            id: self.id.clone(),
            expected,
            found,
        };
        let fd_error = |source: io::Error| {
            if source.raw_os_error() == Some(libc::ENOTSOCK) {
                kind("not a socket".to_string())
            } else {
                Error::Fd {
                    fd: self.fd.as_raw_fd(),
                    source,
                }
            }
        };
        let socket = SockRef::from(&self.fd);
        let domain = socket.domain().map_err(fd_error)?;
        let ty = socket.r#type().map_err(fd_error)?;
        let listening = if ty == Type::STREAM {
            socket.is_listener().map_err(fd_error)?
        } else {
            false
        };
        if domain_ok(domain) && ty == Type::STREAM && listening {
            Ok(())
        } else {
            let state = if listening { "an" } else { "a non-listening" };
            Err(kind(format!("{state} {domain:?} {ty:?} socket")))
        }
    }
}

/// The sockets received from [`receive`], until acknowledged.
///
/// Dropping it without [`acknowledge`](Incoming::acknowledge) closes the
/// connection, which the sender's [`send`] reports as an error at once.
#[derive(Debug)]
pub struct Incoming {
    sockets: Vec<Received>,
    count: usize,
    stream: UnixStream,
    peer: String,
    timeout: Duration,
    acknowledged: bool,
}

impl Incoming {
    /// The sockets not taken yet, in the sender's order.
    pub fn sockets(&self) -> &[Received] {
        &self.sockets
    }

    /// The socket with id `id`, if not taken yet.
    pub fn get(&self, id: &str) -> Option<&Received> {
        self.sockets.iter().find(|s| s.id == id)
    }

    /// Takes the socket with id `id` out; `None` if there is none (or it was
    /// taken already).
    pub fn take(&mut self, id: &str) -> Option<Received> {
        let index = self.sockets.iter().position(|s| s.id == id)?;
        Some(self.sockets.remove(index))
    }

    /// The sender's Unix socket, as errors name it.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Tells the sender this process has taken the sockets over, so it may
    /// stop accepting. Call it once the sockets are in use. A second call
    /// does nothing. The write is bounded by the timeout given to
    /// [`receive`].
    pub fn acknowledge(&mut self) -> Result<(), Error> {
        if self.acknowledged {
            return Ok(());
        }
        let ack = encode_ack(self.count);
        let deadline = Deadline::after(self.timeout);
        send_all(
            &self.stream,
            &ack,
            &[],
            &deadline,
            &self.peer,
            "sending the acknowledgement",
        )?;
        self.acknowledged = true;
        Ok(())
    }

    /// The sockets not taken yet and the stream, for further talk with the
    /// sender (such as waiting for it to exit).
    pub fn into_parts(self) -> (Vec<Received>, UnixStream) {
        (self.sockets, self.stream)
    }
}

// ---------------------------------------------------------------------------
// Wire format.

/// The whole message for `entries`, checking what the receiver will check.
fn encode(entries: &[(&str, &str)]) -> Result<Vec<u8>, Error> {
    let invalid = |reason: String| Error::HandoffInvalid { reason };
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
            return Err(Error::DuplicateLabel { id: id.to_string() });
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
fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(usize, usize), String> {
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
fn parse_body(body: &[u8], count: usize) -> Result<Vec<(String, String)>, String> {
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

fn encode_ack(count: usize) -> [u8; ACK_LEN] {
    let mut ack = [0u8; ACK_LEN];
    ack[..4].copy_from_slice(&ACK_MAGIC);
    ack[4..].copy_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes());
    ack
}

fn parse_ack(ack: &[u8; ACK_LEN], expected: usize) -> Result<(), String> {
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

// ---------------------------------------------------------------------------
// I/O, bounded by a deadline.

pub(crate) struct Deadline {
    /// `None`: a timeout too large to represent, i.e. none.
    at: Option<Instant>,
    timeout: Duration,
}

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(timeout),
            timeout,
        }
    }

    /// What is left, rounded up to whole milliseconds for poll; `None` when
    /// the deadline has passed.
    fn poll_timeout(&self) -> Option<PollTimeout> {
        let Some(at) = self.at else {
            return Some(PollTimeout::MAX);
        };
        let left = at.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let millis = left.as_nanos().div_ceil(1_000_000);
        Some(PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX))
    }
}

/// Waits until `stream` is ready for `events` or the deadline passes.
fn ready(
    stream: &UnixStream,
    events: PollFlags,
    deadline: &Deadline,
    peer: &str,
    what: &'static str,
) -> Result<(), Error> {
    loop {
        let Some(timeout) = deadline.poll_timeout() else {
            return Err(Error::HandoffTimeout {
                peer: peer.to_string(),
                what,
                timeout: deadline.timeout,
            });
        };
        let mut fds = [PollFd::new(stream.as_fd(), events)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => continue,
            // Ready, or hung up / in error: the next call reports which.
            Ok(_) => return Ok(()),
            Err(e) => {
                return Err(Error::Handoff {
                    peer: peer.to_string(),
                    what: "waiting on the socket",
                    source: e.into(),
                })
            }
        }
    }
}

/// Writes all of `bytes`, with `fds` attached to the first byte.
pub(crate) fn send_all(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[RawFd],
    deadline: &Deadline,
    peer: &str,
    what: &'static str,
) -> Result<(), Error> {
    let raw = stream.as_raw_fd();
    let rights = [ControlMessage::ScmRights(fds)];
    let mut sent = 0;
    while sent < bytes.len() {
        ready(
            stream,
            PollFlags::POLLOUT,
            deadline,
            peer,
            "the peer to read",
        )?;
        let iov = [IoSlice::new(&bytes[sent..])];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !fds.is_empty() {
            &rights
        } else {
            &[]
        };
        match sendmsg::<()>(raw, &iov, cmsgs, SEND_FLAGS, None) {
            Ok(n) => sent += n,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => {
                return Err(Error::Handoff {
                    peer: peer.to_string(),
                    what,
                    source: e.into(),
                })
            }
        }
    }
    Ok(())
}

/// The fds that came with a read.
pub(crate) struct Fds {
    pub(crate) fds: Vec<OwnedFd>,
    /// Some arrived after the first byte.
    pub(crate) late: bool,
}

/// Fills `buf`, keeping every fd that comes along (so none leaks).
pub(crate) fn recv_exact(
    stream: &UnixStream,
    buf: &mut [u8],
    deadline: &Deadline,
    peer: &str,
    what: (&'static str, &'static str),
) -> Result<Fds, Error> {
    recv_message(stream, buf, deadline, peer, what, false)?.ok_or_else(|| Error::Handoff {
        peer: peer.to_string(),
        what: what.1,
        source: io::ErrorKind::UnexpectedEof.into(),
    })
}

/// [`recv_exact`], or `None` if `eof_ok` and the stream ends before the
/// first byte.
pub(crate) fn recv_message(
    stream: &UnixStream,
    buf: &mut [u8],
    deadline: &Deadline,
    peer: &str,
    (waiting_for, doing): (&'static str, &'static str),
    eof_ok: bool,
) -> Result<Option<Fds>, Error> {
    let raw = stream.as_raw_fd();
    let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    cmsg.resize(cmsg.len() + CMSG_SLACK, 0);
    let mut out = Fds {
        fds: Vec::new(),
        late: false,
    };
    let mut got = 0;
    while got < buf.len() {
        ready(stream, PollFlags::POLLIN, deadline, peer, waiting_for)?;
        let mut iov = [IoSliceMut::new(&mut buf[got..])];
        let (bytes, fds) = match recvmsg::<()>(raw, &mut iov, Some(&mut cmsg), RECV_FLAGS) {
            Ok(msg) => {
                let mut fds = Vec::new();
                // Truncated control data cannot be read (nor its fds closed);
                // the buffer holds the most fds a message can carry, so only
                // other control messages could overflow it.
                let Ok(cmsgs) = msg.cmsgs() else {
                    return Err(protocol(peer, "control data truncated"));
                };
                for message in cmsgs {
                    if let ControlMessageOwned::ScmRights(raw_fds) = message {
                        // SAFETY: the kernel just installed these fds in this
                        // process for this message; nothing else owns them.
                        fds.extend(
                            raw_fds
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                (msg.bytes, fds)
            }
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => {
                return Err(Error::Handoff {
                    peer: peer.to_string(),
                    what: doing,
                    source: e.into(),
                })
            }
        };
        if !fds.is_empty() && got > 0 {
            out.late = true;
        }
        out.fds.extend(fds);
        if bytes == 0 && got == 0 && eof_ok {
            return Ok(None);
        }
        if bytes == 0 {
            return Err(Error::Handoff {
                peer: peer.to_string(),
                what: doing,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {got} of {} bytes", buf.len()),
                ),
            });
        }
        got += bytes;
    }
    Ok(Some(out))
}

pub(crate) fn protocol(peer: &str, reason: impl Into<String>) -> Error {
    Error::HandoffProtocol {
        peer: peer.to_string(),
        reason: reason.into(),
    }
}

/// What receiving the sockets waits for, and what it does.
const SOCKETS: (&str, &str) = ("the sockets", "receiving the sockets");

/// Close-on-exec (where `MSG_CMSG_CLOEXEC` did not already set it) and
/// non-blocking.
pub(crate) fn prepare(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fd_flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    if !fd_flags.contains(FdFlag::FD_CLOEXEC) {
        fcntl(fd, FcntlArg::F_SETFD(fd_flags | FdFlag::FD_CLOEXEC))?;
    }
    let status = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    if !status.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(status | OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

/// The other end of `stream` as errors name it: a path and a pid where known.
pub(crate) fn describe_peer(stream: &UnixStream) -> String {
    let path = |addr: io::Result<std::os::unix::net::SocketAddr>| {
        addr.ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
    };
    let mut shown = path(stream.peer_addr())
        .or_else(|| path(stream.local_addr()))
        .unwrap_or_else(|| "an unnamed Unix socket".to_string());
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(cred) =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
    {
        shown.push_str(&format!(" (pid {})", cred.pid()));
    }
    shown
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
