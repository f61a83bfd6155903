//! The one error type of `cluster-http`.

/// Everything that can go wrong in `cluster-http`. Each message names the
/// address or setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid HTTP setting `{setting} = {value}`: {reason}")]
    BadSetting {
        /// The setting, e.g. `max_header_size`.
        setting: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Two endpoints on one path.
    #[error("invalid HTTP setting `{setting} = {path:?}`: is the same path as {other}")]
    BadPath {
        /// The setting, e.g. `metrics`.
        setting: &'static str,
        /// The path given.
        path: String,
        /// The setting that has it already.
        other: &'static str,
    },
    /// `serve` was called on a thread that is not a cluster worker.
    #[error("cannot serve HTTP on {addr}: not on a cluster worker thread (cluster_core::worker() is None)")]
    NotAWorker {
        /// The listener's address.
        addr: String,
    },
    /// A connection's task panicked (the service panicked) under
    /// [`OnPanic::Restart`](crate::OnPanic::Restart): the worker stopped
    /// accepting, let its other connections finish, and returns this error so
    /// that the cluster's restart policy replaces it.
    #[error(
        "a connection on {addr} panicked: {message}; the worker drained so that it is replaced"
    )]
    ConnectionPanicked {
        /// The listener's address.
        addr: String,
        /// The panic's message.
        message: String,
    },
    /// A TLS PEM file that cannot be read or holds nothing usable.
    #[cfg(feature = "tls")]
    #[error("cannot use the TLS PEM file {}: {reason}", path.display())]
    TlsPem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[cfg(feature = "tls")]
    #[error("cannot use the TLS certificate {} with the key {}: {source}", cert.display(), key.display())]
    Tls {
        /// The certificate chain's file.
        cert: std::path::PathBuf,
        /// The key's file.
        key: std::path::PathBuf,
        /// rustls's reason.
        source: tokio_rustls::rustls::Error,
    },
    /// Listening failed (from `cluster-net`), so that a worker function can
    /// use `?` on both `worker.listen(...)` and `serve(...)`.
    #[error(transparent)]
    Listen(#[from] cluster_net::Error),
    /// The QUIC endpoint for HTTP/3 could not be set up on this address.
    #[cfg(feature = "http3")]
    #[error("cannot serve HTTP/3 on udp://{addr}: {reason}")]
    Http3 {
        /// The UDP address.
        addr: std::net::SocketAddr,
        /// What failed.
        reason: String,
    },
}
