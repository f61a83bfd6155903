//! The port's steering mode, and what became of a datagram.

/// How a QUIC port's datagrams find their worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuicSteering {
    /// The kernel steers by connection ID (a classic BPF program on the
    /// group), and a datagram that still reaches the wrong worker is
    /// forwarded to the right one. Where the kernel refuses the program,
    /// forwarding alone.
    #[default]
    Cid,
    /// No program: the kernel hashes the 4-tuple, and every datagram that
    /// reaches the wrong worker is forwarded (the fallback alone).
    Forward,
    /// Neither: the kernel's 4-tuple hash decides and nothing is forwarded,
    /// so a client whose address changes loses its connection. Only to
    /// measure what the others save.
    Hash,
}

/// What [`QuicRouter::dispatch`](super::QuicRouter::dispatch) did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dispatched {
    /// It is this endpoint's (its ID is this endpoint's, or names nobody:
    /// a client's first packets).
    Local,
    /// Handed to the endpoint its ID names.
    Forwarded,
    /// Its ID names an endpoint that is gone (or the other's inbox is
    /// full): dropped, never answered with a reset.
    Dropped,
}
