//! The examples as a user runs them: real processes, real signals, real
//! HTTP. One binary, one topic per module; helpers from `test-support`.

mod deploy;
mod examples;
mod reliability;
mod systemd;
