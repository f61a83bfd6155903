//! The `cluster-thread` command end to end: the `same_port` example as a
//! real child process with its control socket in a directory of the
//! test's own, the command run as a process, real HTTP load meanwhile.
//! One binary, one topic per module.

mod common;
mod logs;
mod memory;
mod monit;
mod operate;
mod privilege;
mod security;
