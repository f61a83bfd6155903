use std::io;

/// Everything that can go wrong in `cluster-net`. Each message names the
/// address, fd or setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another socket holds the address.
    #[error("address {addr} already in use")]
    AddrInUse {
        /// The address asked for.
        addr: String,
    },
    /// Binding was refused, typically a port below 1024 without privileges.
    #[error(
        "permission denied binding {addr} (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    )]
    PermissionDenied {
        /// The address asked for.
        addr: String,
    },
    /// Another error while creating, binding or listening.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// A listen spec that does not parse.
    #[error("invalid listen address {spec:?}: {reason}")]
    BadAddress {
        /// The text given.
        spec: String,
        /// What is accepted.
        reason: &'static str,
    },
    /// An inherited fd that is not a listening socket.
    #[error("fd {fd} is not a listening socket")]
    NotListening {
        /// The fd.
        fd: i32,
    },
    /// An inherited fd that cannot be used.
    #[error("fd {fd} cannot be used: {source}")]
    Fd {
        /// The fd.
        fd: i32,
        /// The OS error.
        source: io::Error,
    },
    /// `listen` was called outside a worker thread.
    #[error("listen({addr}) must be called on a worker thread")]
    NotAWorker {
        /// The address asked for.
        addr: String,
    },
    /// An environment variable holds a value that cannot be used.
    #[error("invalid environment variable {name}={value:?}: expected {expected}")]
    BadEnv {
        /// The variable.
        name: &'static str,
        /// The value found.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A per-worker port beyond 65535.
    #[error("per-worker port for slot {slot} of base {addr} is beyond 65535")]
    PortOverflow {
        /// The base address.
        addr: String,
        /// The slot.
        slot: usize,
    },
}

impl Error {
    pub(crate) fn from_bind(addr: impl ToString, source: io::Error) -> Error {
        let addr = addr.to_string();
        match source.kind() {
            io::ErrorKind::AddrInUse => Error::AddrInUse { addr },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { addr },
            _ => Error::Listen { addr, source },
        }
    }
}
