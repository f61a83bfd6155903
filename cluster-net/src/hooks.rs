//! What `cluster-http` needs of `cluster-net` and its users do not: the
//! connection cap's idle marks, connection migration, the state a moving
//! connection carries, and the PROXY header read on the connection's own
//! task. Hidden from the docs, as `cluster_core::hooks`; it changes without
//! notice.

pub use crate::cap::IdleHandle;
pub use crate::migrate::Migrator;

use crate::conn::Connection;
use crate::error::Error;
use crate::listener::Listener;

/// What hands `listener`'s connections to the other live workers of its
/// socket, or to a hot upgrade's new process; `None` for a
/// `Listen::Handle`. It outlives `close`, for the drain.
pub fn migrator(listener: &Listener) -> Option<Migrator> {
    listener.migrator()
}

/// The handle through which the protocol served on `conn` says whether it
/// has sent a whole request yet and when it is idle between requests, so
/// that the cluster's connection cap may close it to admit a new client.
/// Every call gives the same connection's handle.
pub fn idle_handle(conn: &Connection) -> IdleHandle {
    conn.idle_handle()
}

/// On a listener that expects the PROXY protocol: reads the load
/// balancer's header (within 5 s, or 1.25 s while the connection cap is
/// three quarters full), so that `peer_addr` is the client's. Call it
/// before reading. Does nothing on other listeners, or when the acceptor
/// already read it (sticky mode, whose key it is). A missing, malformed or
/// late header is an [`Error::Proxy`]: close the connection (it is counted
/// in `ListenerStats::proxy_rejected`).
pub async fn read_proxy_header(conn: &mut Connection) -> Result<(), Error> {
    conn.read_proxy_header().await
}

/// Leaves the state of the protocol served on `conn` (a TLS session, with
/// the plaintext already decrypted) with it, for a [`Migrator`] to move to
/// another worker of this process, whose listener takes it back with
/// [`take_attached`]. Such a connection never goes to a hot upgrade's new
/// process (the state cannot be serialised).
pub fn attach(conn: &mut Connection, state: Box<dyn std::any::Any + Send>) {
    conn.attach(state);
}

/// The state [`attach`]ed to `conn` by the worker it moved from, if any.
pub fn take_attached(conn: &mut Connection) -> Option<Box<dyn std::any::Any + Send>> {
    conn.take_attached()
}
