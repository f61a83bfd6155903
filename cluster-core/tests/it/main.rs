//! cluster-core's integration tests, one binary: one module per topic, real threads and signals.
#![allow(dead_code, unreachable_pub)]

mod affinity;
mod common;
mod cycles;
mod drain_delay;
mod kill;
mod lifecycle;
mod messages;
mod reload;
mod restart;
mod scale;
mod settings;
mod signals;
mod worker_events;
