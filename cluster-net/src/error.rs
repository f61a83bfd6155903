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
    /// A `unix:` path where something other than a socket already is.
    #[error("cannot listen on unix:{}: the path exists and is not a socket (it is never replaced)", path.display())]
    NotASocket {
        /// The path asked for.
        path: std::path::PathBuf,
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
    /// systemd socket activation variables that do not fit this process.
    #[error("systemd socket activation: {reason}")]
    Systemd {
        /// What is wrong, naming the variable.
        reason: String,
    },
    /// A per-worker port beyond 65535.
    #[error("per-worker port for slot {slot} of base {addr} is beyond 65535")]
    PortOverflow {
        /// The base address.
        addr: String,
        /// The slot.
        slot: usize,
    },
    /// A socket hand-off (hot upgrade) failed: the peer, id or fd at fault.
    #[error(transparent)]
    Handoff(#[from] crate::handoff::HandoffError),
    /// A connection on a PROXY protocol listener without a valid header.
    #[error("PROXY protocol from {peer}: {reason}; connection closed")]
    Proxy {
        /// The balancer's address (the connection's peer).
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// A hot upgrade that cannot start now.
    #[error("hot upgrade refused: {reason}")]
    UpgradeRefused {
        /// Why: another one is in progress, or one already succeeded.
        reason: &'static str,
    },
    /// `KernelSteering::Required`, and the kernel cannot balance this
    /// listener's connections.
    #[error("kernel steering is required for {addr}, but {reason}")]
    KernelSteering {
        /// The address asked for.
        addr: String,
        /// Why not: the privilege, the kernel, the platform.
        reason: String,
    },
    /// A live setting given a value it cannot take.
    #[error("invalid setting `{setting} = {value}`: expected {expected}")]
    BadSetting {
        /// The setting, e.g. `connection_cap`.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_name_the_address() {
        let e = |kind| Error::from_bind("0.0.0.0:80", io::Error::from(kind)).to_string();
        assert_eq!(
            e(io::ErrorKind::AddrInUse),
            "address 0.0.0.0:80 already in use"
        );
        assert_eq!(
            e(io::ErrorKind::PermissionDenied),
            "permission denied binding 0.0.0.0:80 (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        );
        assert!(e(io::ErrorKind::AddrNotAvailable).starts_with("cannot listen on 0.0.0.0:80: "));
    }
}
