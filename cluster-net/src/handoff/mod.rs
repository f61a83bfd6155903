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

//!
//! The format is built and checked in `handoff/wire.rs`, the `SCM_RIGHTS`
//! framing and deadlines are `handoff/scm.rs`, the two sides' protocol is
//! here, and every failure is a [`HandoffError`] (`handoff/error.rs`).

mod error;
pub(crate) mod scm;
pub(crate) mod wire;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use socket2::{Domain, SockRef, Type};

pub use error::HandoffError;
pub use wire::{MAX_LABEL, MAX_SOCKETS};

use scm::{describe_peer, prepare, recv_exact, send_all, Deadline};
use wire::{encode, encode_ack, parse_ack, parse_body, parse_header, ACK_LEN, HEADER_LEN};

/// What receiving the sockets waits for, and what it does.
const SOCKETS: (&str, &str) = ("the sockets", "receiving the sockets");

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
/// acknowledgement); on expiry the error is [`HandoffError::Timeout`] naming
/// the peer. Ids must be unique ([`HandoffError::DuplicateId`]) and non-empty,
/// ids and addresses at most [`MAX_LABEL`] bytes, at most [`MAX_SOCKETS`]
/// sockets ([`HandoffError::Invalid`]); these are checked before anything is
/// sent. If the receiver closes the connection without acknowledging, the
/// error is [`HandoffError::Io`] at once. Works whether `stream` is blocking or
/// not, and leaves its mode unchanged.
///
/// The receiver makes its fds non-blocking; that flag belongs to the open
/// socket, so the sender's copies become non-blocking too.
pub fn send(
    stream: &UnixStream,
    sockets: &[Outgoing<'_>],
    ack_timeout: Duration,
) -> Result<(), HandoffError> {
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
        return Err(HandoffError::protocol(
            &peer,
            "file descriptors sent with the acknowledgement",
        ));
    }
    parse_ack(&ack, entries.len()).map_err(|reason| HandoffError::protocol(&peer, reason))
}

/// Receives the sockets the process at the other end of `stream` hands off
/// with [`send`], waiting at most `timeout` for all of them.
///
/// The fds are close-on-exec and non-blocking. The sender is still waiting:
/// take the sockets over, then call [`Incoming::acknowledge`]. Anything
/// malformed is an [`HandoffError::Protocol`] naming the peer and what was
/// wrong; the fds received with it are closed.
pub fn receive(stream: UnixStream, timeout: Duration) -> Result<Incoming, HandoffError> {
    let peer = describe_peer(&stream);
    let deadline = Deadline::after(timeout);

    let mut header = [0u8; HEADER_LEN];
    let mut got = recv_exact(&stream, &mut header, &deadline, &peer, SOCKETS)?;
    let (count, body_len) =
        parse_header(&header).map_err(|reason| HandoffError::protocol(&peer, reason))?;
    let mut body = vec![0u8; body_len];
    let rest = recv_exact(&stream, &mut body, &deadline, &peer, SOCKETS)?;
    if got.late || !rest.fds.is_empty() {
        return Err(HandoffError::protocol(
            &peer,
            "file descriptors arrived after the first byte of the message",
        ));
    }
    let labels =
        parse_body(&body, count).map_err(|reason| HandoffError::protocol(&peer, reason))?;
    if got.fds.len() != count {
        return Err(HandoffError::protocol(
            &peer,
            format!(
                "{count} sockets announced but {} file descriptors received",
                got.fds.len()
            ),
        ));
    }
    for fd in &got.fds {
        prepare(fd.as_fd()).map_err(|source| {
            HandoffError::io(
                &peer,
                "setting close-on-exec and non-blocking on a received fd",
                source,
            )
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
    pub fn into_tcp_listener(self) -> Result<std::net::TcpListener, HandoffError> {
        self.check(
            |domain| domain == Domain::IPV4 || domain == Domain::IPV6,
            "a listening TCP socket",
        )?;
        Ok(std::net::TcpListener::from(self.fd))
    }

    /// The socket as a Unix-domain listener; an error naming the id if it is
    /// not a listening Unix stream socket.
    pub fn into_unix_listener(self) -> Result<UnixListener, HandoffError> {
        self.check(|domain| domain == Domain::UNIX, "a listening Unix socket")?;
        Ok(UnixListener::from(self.fd))
    }

    fn check(
        &self,
        domain_ok: impl Fn(Domain) -> bool,
        expected: &'static str,
    ) -> Result<(), HandoffError> {
        let kind = |found: String| HandoffError::SocketKind {
            id: self.id.clone(),
            expected,
            found,
        };
        let fd_error = |source: io::Error| {
            if source.raw_os_error() == Some(libc::ENOTSOCK) {
                kind("not a socket".to_string())
            } else {
                HandoffError::Fd {
                    id: self.id.clone(),
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
    pub fn acknowledge(&mut self) -> Result<(), HandoffError> {
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
