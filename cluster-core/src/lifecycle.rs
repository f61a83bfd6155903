//! The words of a worker's and the cluster's life, below every module that
//! uses them: the cluster's [`Phase`], how a worker ended ([`ExitReason`]),
//! and the [`Address`] a worker listens on.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// Its function returned `()` or `Ok(())`.
    Returned,
    /// Its function returned an error; the text is the error's `Display` (`{:#}`).
    Error(String),
    /// Its function panicked; the text is the panic payload.
    Panicked(String),
    /// It was killed: its runtime was dropped at its next await.
    Killed,
    /// It did not stop within the kill timeout; its thread was abandoned.
    Unresponsive,
}

impl ExitReason {
    /// True for `Returned` only.
    pub fn is_success(&self) -> bool {
        matches!(self, ExitReason::Returned)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Returned => f.write_str("returned"),
            ExitReason::Error(e) => write!(f, "returned an error: {e}"),
            ExitReason::Panicked(p) => write!(f, "panicked: {p}"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Unresponsive => f.write_str("unresponsive after kill; thread abandoned"),
        }
    }
}

/// The phases a cluster moves through, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Workers are being forked.
    Starting,
    /// Every worker is online and listening (or ready); the cluster serves.
    Listening,
    /// Workers were asked to stop and are finishing their work.
    Draining,
    /// The shutdown deadline passed (or an immediate stop was asked): workers are killed.
    Stopping,
    /// Every worker has exited.
    Stopped,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Listening => "listening",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
        })
    }
}

/// An address a worker listens on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A TCP socket.
    Tcp(SocketAddr),
    /// A UDP socket.
    Udp(SocketAddr),
    /// A Unix-domain socket.
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Udp(a) => write!(f, "udp://{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}
