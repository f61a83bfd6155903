//! `cargo xtask <task>`: development tasks.
//!
//! - `bench`: cluster_thread against actix-web, hyper, axum and Node's cluster
//!   (CPU per request, latency, churn, memory, start-up, respawn);
//!   `cargo xtask bench --help`.
//! - `soak --seconds N`: the `same_port` example under mixed load with random
//!   crashes and reloads; requests, failures, restarts, RSS at start and end.
//! - `tidy [--deny-cycles]`: the import cycles between a crate's modules.
//! - `ci`: what CI runs (fmt, tidy, clippy, tests, package, the bench's
//!   smoke run).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// CPUs, rlimits and signals go through nix's safe calls.
#![forbid(unsafe_code)]

mod bench;
mod ci;
mod soak;
mod tidy;

use std::process::Command;

use lexopt::prelude::*;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  bench    benchmark cluster_thread against actix-web, hyper, axum and Node's
           cluster (cargo xtask bench --help)
  soak     [--seconds N] [--workers N]: mixed load with random crashes and
           reloads; prints requests, failures, restarts and RSS
  tidy     [--deny-cycles] [--allow-cycles-in CRATE]: the import cycles
           between each crate's modules (cargo xtask tidy --help)
  ci       cargo fmt --check, cargo xtask tidy, clippy -D warnings, cargo test
           --workspace --locked, cargo package (the published crates), cargo
           xtask bench --quick; stops at the first failure (cargo xtask ci
           --help)";

fn main() -> anyhow::Result<()> {
    let mut args = lexopt::Parser::from_env();
    let task = match args.next()? {
        None | Some(Short('h') | Long("help")) => {
            eprintln!("{USAGE}");
            return Ok(());
        }
        Some(Value(task)) => task.string()?,
        Some(other) => return Err(other.unexpected().into()),
    };
    match task.as_str() {
        "help" => {
            eprintln!("{USAGE}");
            Ok(())
        }
        "bench" if cfg!(debug_assertions) => reexec_release(),
        "bench" => bench::main(args),
        "soak" if cfg!(debug_assertions) => reexec_release(),
        "soak" => soak::main(args),
        "tidy" => tidy::main(args),
        "ci" => ci::main(args),
        other => anyhow::bail!("unknown task `{other}`; see `cargo xtask help`"),
    }
}

/// `cargo xtask` builds xtask in the dev profile; the load generator must not
/// be the bottleneck, so build xtask in release and run that instead, with
/// the same arguments.
fn reexec_release() -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    let target = bench::target_dir()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            "xtask",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .context("building xtask in release")?;
    if !status.success() {
        anyhow::bail!("building xtask in release failed ({status})");
    }
    let exe = target.join("release").join("xtask");
    let err = Command::new(&exe).args(std::env::args_os().skip(1)).exec();
    Err(err).with_context(|| format!("running {}", exe.display()))
}
