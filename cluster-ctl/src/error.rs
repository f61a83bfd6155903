use std::path::PathBuf;

/// Everything that can go wrong in `cluster-ctl`. Each message names the
/// path or setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The control directory exists but is not safe to use.
    #[error("control directory {dir} refused: {reason}")]
    ControlDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file operation on the control directory or socket failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done, e.g. `binding the control socket`.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A live process answers on the socket's path already.
    #[error("control socket {path} is in use by a running process")]
    InUse {
        /// The socket's path.
        path: PathBuf,
    },
    /// Something other than a socket is at the socket's path; it is left alone.
    #[error("{path} exists and is not a socket: not replaced")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The control thread could not be started.
    #[error("could not start the control thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A log setting cannot be used.
    #[error("invalid log filter {value:?}: {reason}")]
    LogFilter {
        /// The filter given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The logs were not set up by this crate (the program installed its
    /// own `tracing` subscriber).
    #[error("the program installed its own tracing subscriber: {0}")]
    NotOurLogs(&'static str),
}
