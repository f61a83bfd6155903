//! The control socket of `cluster_thread`: what the `cluster-thread`
//! command (crate `cluster-cli`) talks to, as `pm2` talks to its daemon,
//! but inside the program itself.
//!
//! A cluster opened with [`ControlExt::control`] (every
//! `#[cluster_thread::main]` program, by default) binds
//! `<name>-<pid>.sock`, mode 0600, in a directory only its user may enter
//! ([`control_dir`]), and serves it from its start on a thread of its
//! own. Every peer's uid is read with `SO_PEERCRED`: only the same user or
//! root is answered. One JSON [`Request`] per line, [`Reply`] lines back
//! ([`protocol`]): `ls`, `reload`, `restart`, `scale`, `upgrade`, `stop`,
//! `get`, `set`, `logs`.
//!
//! The log ring ([`logs`]) keeps the recent lines of each slot, byte
//! capped; the default subscriber of macro programs
//! ([`install_default_logs`]) writes to stderr and to it, and a program
//! with its own subscriber adds [`log_layer`].
//!
//! [`client`] is the other side, used by the command and the tests.
#![warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

pub mod client;
mod commands;
mod conn;
mod control;
mod dir;
mod error;
mod logs;
pub mod protocol;
mod provided;
mod server;

pub use control::{Control, ControlExt};
pub use dir::{control_dir, parse_socket_name, CONTROL_ENV};
pub use error::Error;
pub use logs::{
    install_default_logs, log_layer, log_level, logs, set_log_level, set_ring_cap, Logs,
    DEFAULT_RING_BYTES,
};
pub use protocol::{Body, Command, Reply, Request, Scale};
pub use provided::{LiveSetting, SlotFigures, Stats, UpgradeFuture};
pub use server::MAX_CONNECTIONS;
