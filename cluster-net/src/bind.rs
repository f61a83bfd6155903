//! Creating listening sockets, with the options the balance modes need.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use cluster_core::Address;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::Error;

/// A listening socket held by the primary (the registry), in std form.
#[derive(Debug)]
pub(crate) enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(UnixListener),
}

impl std::os::fd::AsRawFd for StdListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            StdListener::Tcp(l) => l.as_raw_fd(),
            StdListener::Unix(l) => l.as_raw_fd(),
        }
    }
}

impl std::os::fd::AsFd for StdListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            StdListener::Tcp(l) => l.as_fd(),
            StdListener::Unix(l) => l.as_fd(),
        }
    }
}

impl StdListener {
    /// A listening socket received in a hot upgrade.
    pub(crate) fn from_received(received: crate::handoff::Received) -> Result<StdListener, Error> {
        let unix = SockRef::from(&received.fd).domain().ok() == Some(Domain::UNIX);
        Ok(if unix {
            StdListener::Unix(received.into_unix_listener()?)
        } else {
            StdListener::Tcp(received.into_tcp_listener()?)
        })
    }

    pub(crate) fn try_clone(&self) -> io::Result<StdListener> {
        Ok(match self {
            StdListener::Tcp(l) => StdListener::Tcp(l.try_clone()?),
            StdListener::Unix(l) => StdListener::Unix(l.try_clone()?),
        })
    }

    pub(crate) fn address(&self) -> io::Result<Address> {
        Ok(match self {
            StdListener::Tcp(l) => Address::Tcp(l.local_addr()?),
            StdListener::Unix(l) => Address::Unix(
                l.local_addr()?
                    .as_pathname()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            ),
        })
    }
}

/// A TCP listener on `addr`; with `reuseport`, one of a `SO_REUSEPORT` group.
pub(crate) fn tcp(
    addr: SocketAddr,
    reuseport: bool,
    backlog: i32,
) -> Result<std::net::TcpListener, Error> {
    let fail = |e| Error::from_bind(addr, e);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    // Restarts must not wait for TIME_WAIT to clear.
    socket.set_reuse_address(true).map_err(fail)?;
    if reuseport {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&SockAddr::from(addr)).map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(socket.into())
}

/// A Unix-domain listener on `path`, replacing a stale socket file nobody
/// listens on.
pub(crate) fn unix(path: &Path, backlog: i32) -> Result<UnixListener, Error> {
    let shown = format!("unix:{}", path.display());
    let fail = |e| Error::from_bind(&shown, e);
    // Only a stale socket is replaced: connect() is refused for a regular
    // file, a FIFO or a symlink too, which must never be deleted.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::NotASocket {
                path: path.to_path_buf(),
            });
        }
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(Error::AddrInUse {
                    addr: shown.clone(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(fail)?;
            }
            Err(e) => return Err(fail(e)),
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket
        .bind(&SockAddr::unix(path).map_err(fail)?)
        .map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(socket.into())
}

/// Takes the process's fd `fd`, which must be a listening stream socket.
pub(crate) fn inherited(fd: RawFd) -> Result<StdListener, Error> {
    let fail = |source| Error::Fd { fd, source };
    if fd < 0 {
        return Err(fail(io::Error::from_raw_os_error(libc::EBADF)));
    }
    // SAFETY: only borrowed for the checks below; ownership is taken after.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&borrowed);
    match socket.is_listener() {
        Ok(true) => {}
        Ok(false) => return Err(Error::NotListening { fd }),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Err(Error::NotListening { fd })
        }
        Err(e) => return Err(fail(e)),
    }
    let domain = socket.domain().map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.set_cloexec(true).map_err(fail)?;
    // SAFETY: the fd is open (checked above) and from now on owned here only:
    // `Listen::Fd(n)` hands fd n over to the cluster, as Node's `listen({fd})`.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(if domain == Domain::UNIX {
        StdListener::Unix(UnixListener::from(owned))
    } else {
        StdListener::Tcp(std::net::TcpListener::from(owned))
    })
}
