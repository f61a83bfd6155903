//! cluster-ctl's integration tests: a builder program's control socket in
//! this process, spoken to with the client; the log ring fed through a
//! real `tracing` subscriber. One binary, one topic per module.

mod builder;
mod ring;
