//! cluster-net's integration tests, one binary: one module per topic, real sockets, threads, processes and signals.
#![allow(dead_code, unreachable_pub)]
// One fork-time setup of a child (`inherited`: an fd at a given number,
// which only `Command::pre_exec` can do); the rest through safe calls.
#![allow(unsafe_code)]

mod accept_errors;
mod backpressure;
mod balance;
mod churn;
mod common;
mod emfile;
mod errors;
mod handle;
mod handoff;
mod inherited;
mod limits;
mod migrate;
mod per_worker;
mod port_zero;
mod privilege;
mod proxy;
mod release;
mod steering;
mod stuck;
mod unix_udp;
mod upgrade;
