//! What the workspace's tests share (not published): bounded waits, real
//! child processes, a small HTTP/1.1 client (over TLS too), steady load,
//! free ports, the fd limit. Every wait is bounded by [`DEADLINE`].
#![allow(missing_docs, clippy::missing_panics_doc)]
// Signals and limits go through nix's safe calls.
#![forbid(unsafe_code)]

mod child;
mod http;
mod limits;
mod load;
mod ports;
mod tls;
mod wait;

use std::time::Duration;

pub use child::{
    alive, example, python_module, s_client, signal, this_test, tool, try_signal, wait_exit,
    wait_gone, wait_timeout, which, Run, LONG_SHUTDOWN, REQUIRE_TOOLS_ENV, SHUTDOWN_TIMEOUT_ENV,
};
pub use http::{
    closed_before_response, exchange, get, local, parse_head, read_response, Head, Response,
};
pub use limits::{is_root, lower_fd_limit, raise_fd_limit};
pub use load::{seconds, Counts, Load};
pub use ports::{accept_backlog, free_port_run};
pub use tls::{tls_client_config, tls_connect, tls_get, TlsConn, SERVER_NAME};
pub use wait::{drain, eventually, eventually_blocking, until};

/// Every wait in the tests is bounded by this: long enough for a loaded
/// 2-core machine, short enough to fail a stuck test.
pub const DEADLINE: Duration = Duration::from_secs(60);
