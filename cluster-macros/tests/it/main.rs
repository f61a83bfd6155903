//! cluster-macros' integration tests, one binary: compile errors (trybuild) and a macro program run as a child process.
#![allow(dead_code, unreachable_pub)]

mod child_process;
mod ui;
