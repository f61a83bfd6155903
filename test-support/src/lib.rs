//! What the workspace's tests share (not published): bounded waits, real
//! child processes, a raw HTTP/1.1 client, steady load, free ports. Every
//! wait is bounded by [`DEADLINE`].
#![allow(missing_docs, clippy::missing_panics_doc)]
// Signals to child processes go through libc::kill.
#![allow(unsafe_code)]

mod child;
mod http;
mod load;
mod ports;
mod wait;

use std::time::Duration;

pub use child::{alive, example, limit_fds, signal, this_test, wait_gone, which, Run};
pub use http::{closed_before_response, exchange, get, local, Response};
pub use load::{seconds, Counts, Load};
pub use ports::{accept_backlog, free_port_run};
pub use wait::{drain, eventually, eventually_blocking, until};

/// Every wait in the tests is bounded by this: long enough for a loaded
/// 2-core machine, short enough to fail a stuck test.
pub const DEADLINE: Duration = Duration::from_secs(60);
