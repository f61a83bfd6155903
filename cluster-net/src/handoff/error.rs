//! What can go wrong in a socket hand-off, on either side. A leaf: the
//! wire format, the framing and the protocol all report through it.

use std::io;
use std::time::Duration;

/// A socket hand-off (hot upgrade) that failed. Each message names the peer
/// (its Unix socket's path and pid where known), the id or the fd at fault.
/// Outside this module it travels as [`crate::Error::Handoff`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoffError {
    /// The operating system failed a step (send, receive, poll, connect), or
    /// the peer closed the connection early.
    #[error("socket hand-off with {peer}: {what}: {source}")]
    Io {
        /// The other process's Unix socket: its path and pid where known.
        peer: String,
        /// The step that failed, e.g. "sending the sockets".
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The peer sent something that is not the protocol.
    #[error("socket hand-off with {peer}: protocol error: {reason}")]
    Protocol {
        /// The other process's Unix socket: its path and pid where known.
        peer: String,
        /// What was wrong with what it sent.
        reason: String,
    },
    /// Two sockets given under the same id.
    #[error("socket hand-off: duplicate id {id:?}")]
    DuplicateId {
        /// The id given twice.
        id: String,
    },
    /// The peer did not answer in time.
    #[error("socket hand-off with {peer}: timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// The other process's Unix socket: its path and pid where known.
        peer: String,
        /// What was awaited, e.g. "the acknowledgement".
        what: &'static str,
        /// The time allowed.
        timeout: Duration,
    },
    /// Sockets that cannot be handed off as given (too many, an empty or too
    /// long id or address).
    #[error("cannot hand off sockets: {reason}")]
    Invalid {
        /// What is wrong, naming the id.
        reason: String,
    },
    /// A received socket is not of the kind it was taken as.
    #[error("handed-off socket {id:?} is {found}, not {expected}")]
    SocketKind {
        /// The socket's id.
        id: String,
        /// The kind asked for.
        expected: &'static str,
        /// The kind it is.
        found: String,
    },
    /// A received socket whose kind cannot be read.
    #[error("handed-off socket {id:?} (fd {fd}) cannot be used: {source}")]
    Fd {
        /// The socket's id.
        id: String,
        /// The fd.
        fd: i32,
        /// The OS error.
        source: io::Error,
    },
}

impl HandoffError {
    /// A protocol error of `peer`.
    pub(crate) fn protocol(peer: &str, reason: impl Into<String>) -> HandoffError {
        HandoffError::Protocol {
            peer: peer.to_string(),
            reason: reason.into(),
        }
    }

    /// The OS failed `what` with `peer`.
    pub(crate) fn io(peer: &str, what: &'static str, source: io::Error) -> HandoffError {
        HandoffError::Io {
            peer: peer.to_string(),
            what,
            source,
        }
    }
}
