//! cluster-net's integration tests, one binary: one module per topic, real sockets, threads, processes and signals.
#![allow(dead_code, unreachable_pub)]
// Raw fds, fork-time setup of children (pre_exec), signals and socket
// calls through libc, on what the tests own.
#![allow(unsafe_code)]

mod accept_errors;
mod backpressure;
mod balance;
mod churn;
mod common;
mod emfile;
mod errors;
mod handoff;
mod inherited;
mod limits;
mod migrate;
mod per_worker;
mod port_zero;
mod proxy;
mod release;
mod stuck;
mod unix_udp;
mod upgrade;
