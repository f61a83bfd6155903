//! The hand-off's framing: bytes with fds attached as `SCM_RIGHTS` on a
//! Unix stream socket, every wait bounded by a [`Deadline`]; the received
//! fds owned at once (none leaks, whatever the peer sends), made
//! close-on-exec and non-blocking. Used by the sockets' hand-off and by
//! migration's connection messages alike.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::error::HandoffError;

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
) -> Result<(), HandoffError> {
    loop {
        let Some(timeout) = deadline.poll_timeout() else {
            return Err(HandoffError::Timeout {
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
            Err(e) => return Err(HandoffError::io(peer, "waiting on the socket", e.into())),
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
) -> Result<(), HandoffError> {
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
            Err(e) => return Err(HandoffError::io(peer, what, e.into())),
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
) -> Result<Fds, HandoffError> {
    recv_message(stream, buf, deadline, peer, what, false)?
        .ok_or_else(|| HandoffError::io(peer, what.1, io::ErrorKind::UnexpectedEof.into()))
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
) -> Result<Option<Fds>, HandoffError> {
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
                    return Err(HandoffError::protocol(peer, "control data truncated"));
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
            Err(e) => return Err(HandoffError::io(peer, doing, e.into())),
        };
        if !fds.is_empty() && got > 0 {
            out.late = true;
        }
        out.fds.extend(fds);
        if bytes == 0 && got == 0 && eof_ok {
            return Ok(None);
        }
        if bytes == 0 {
            return Err(HandoffError::io(
                peer,
                doing,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {got} of {} bytes", buf.len()),
                ),
            ));
        }
        got += bytes;
    }
    Ok(Some(out))
}

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
