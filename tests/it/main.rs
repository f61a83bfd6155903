//! The examples as a user runs them: real processes, real signals, real
//! HTTP. One binary, one topic per module; helpers from `test-support`.
// Signals and rlimits through test-support's safe calls.
#![forbid(unsafe_code)]

mod deploy;
mod examples;
mod reliability;
mod systemd;
