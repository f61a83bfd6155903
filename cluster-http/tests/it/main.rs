//! cluster-http's integration tests, one binary: one module per topic, real
//! sockets, threads and processes; helpers in `common` and `test-support`.
#![allow(dead_code, unreachable_pub)]

mod axum_router;
mod cap;
mod common;
mod drain;
mod drain_signals;
mod endpoints;
mod h2c;
mod http3;
mod keep_alive;
mod limits;
mod listeners;
mod migrate;
mod on_panic;
mod reload;
mod status;
mod tls;
mod tower_services;
mod upgrade;
