//! The examples as a user runs them: real processes, real signals, real
//! HTTP. One binary, one topic per module; helpers from `test-support`.
// Signals and rlimits through libc, on the test's own children and itself.
#![allow(unsafe_code)]

mod deploy;
mod examples;
mod reliability;
mod systemd;
