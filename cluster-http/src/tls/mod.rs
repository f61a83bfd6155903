//! HTTPS: rustls (ring provider), with tokio-rustls doing the record layer.
//!
//! - `config.rs`: [`TlsConfig`], where the certificate comes from.
//! - `listener.rs`: [`TlsListener`], TLS over any [`Listener`](crate::Listener).
//! - `stream.rs`: [`TlsStream`], a connection of it: the inner listener's own
//!   step (a PROXY header) then the TLS handshake, both on the connection's
//!   own task under their timeouts, then TLS.
//! - `tickets.rs`: the cluster's session ticket keys, rotated, carried
//!   across a hot upgrade.

pub(crate) mod config;
pub(crate) mod listener;
pub(crate) mod stream;
pub(crate) mod tickets;
