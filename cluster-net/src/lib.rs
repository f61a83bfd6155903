//! Listeners for `cluster_thread` workers: every way a worker listens.
//!
//! The primary owns the sockets (a registry kept per cluster), so workers
//! asking for the same address share one socket, a restarted worker finds its
//! socket again, and connections wait in the backlog while a slot restarts
//! instead of being refused.
//!
//! | mode | who accepts | choose it for |
//! |---|---|---|
//! | [`Balance::RoundRobin`] (default) | the next worker (under its limit), chosen by the kernel or by one acceptor thread | even spread of short connections, as Node's SCHED_RR |
//! | [`Balance::LeastConnections`] | the worker with the fewest open connections, chosen likewise | long-lived connections (WebSocket, gRPC) |
//! | [`Balance::Os`] | every worker accepts on a clone of one socket | the least overhead per connection |
//! | [`Balance::ReusePort`] | every worker its own `SO_REUSEPORT` socket; the kernel hashes | many connections per second on Linux |
//! | [`Balance::Sticky`] | each client IP's live slot, chosen likewise | session-bound protocols |
//!
//! Round-robin, least-connections and sticky are chosen by the kernel where
//! the process may load eBPF (Linux, root or CAP_BPF): every worker accepts
//! on its own socket of a reuseport group and a small `SK_REUSEPORT`
//! program picks the socket, so no thread hands connections on. Elsewhere,
//! or with [`NetConfig::kernel_steering`]`(`[`KernelSteering::Off`]`)`, the
//! acceptor thread accepts and hands each connection to its worker (in a
//! one-slot cluster the worker accepts itself).
//!
//! ```no_run
//! use cluster_core::Cluster;
//! use cluster_net::{Balance, NetConfig, WorkerExt};
//! use tokio::io::AsyncWriteExt;
//!
//! fn main() -> Result<(), cluster_core::Error> {
//!     Cluster::builder()
//!         .workers(4)
//!         .state(NetConfig::default().balance(Balance::LeastConnections))
//!         .run(|worker| async move {
//!             let listener = worker.listen("127.0.0.1:7000").await?;
//!             loop {
//!                 tokio::select! {
//!                     mut conn = listener.accept() => {
//!                         tokio::task::spawn_local(async move {
//!                             let _ = conn.write_all(b"hello\n").await;
//!                         });
//!                     }
//!                     () = worker.disconnected() => return Ok::<_, Box<dyn std::error::Error>>(()),
//!                 }
//!             }
//!         })
//! }
//! ```
#![warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
// Sockets by fd (inherited, systemd, received over SCM_RIGHTS) and the
// hot upgrade's fork need `unsafe`; each block says why it is sound.
#![allow(unsafe_code)]

mod accept;
mod acceptor;

mod bind;
mod builder;
mod cap;
mod conn;
mod count;
mod dispatch;
mod error;
pub mod handoff;
#[doc(hidden)]
pub mod hooks;
mod listen;
mod listener;
mod migrate;
mod plan;
mod proxy;
pub mod quic;
mod registry;
mod spec;
mod stats;
mod steer;
mod systemd;
pub mod upgrade;

pub use builder::ClusterBuilderExt;
pub use conn::Connection;
pub use error::Error;
pub use listen::WorkerExt;
pub use listener::Listener;
pub use proxy::Cidr;
pub use quic::{QuicRouter, QuicSocket, QuicSteering};
pub use spec::{
    Balance, KernelSteering, Listen, ListenSpec, NetConfig, Ports, ToListen, UnknownBalance,
    BALANCE_ENV, KERNEL_STEERING_ENV,
};
pub use stats::{
    cap_stats, quic_stats, set_connection_cap, stats, CapStats, ListenerStats, QuicStats,
};
pub use systemd::{notify_systemd, SystemdSockets};
