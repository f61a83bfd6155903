//! `cargo xtask <task>`: development tasks.
//!
//! - `bench`: cluster_thread against actix-web, hyper and Node's cluster
//!   (throughput, churn, memory, start-up, respawn); `cargo xtask bench --help`.
//! - `soak --seconds N`: the `same_port` example under mixed load with random
//!   crashes and reloads; requests, failures, restarts, RSS at start and end.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod soak;

use std::process::Command;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  bench    benchmark cluster_thread against actix-web, hyper and Node's cluster
           (cargo xtask bench --help)
  soak     [--seconds N] [--workers N]: mixed load with random crashes and
           reloads; prints requests, failures, restarts and RSS";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            eprintln!("{USAGE}");
            Ok(())
        }
        Some("bench") => {
            if cfg!(debug_assertions) {
                return reexec_release(&args);
            }
            bench::main(&args[1..])
        }
        Some("soak") => {
            if cfg!(debug_assertions) {
                return reexec_release(&args);
            }
            soak::main(&args[1..])
        }
        Some(other) => anyhow::bail!("unknown task `{other}`; see `cargo xtask help`"),
    }
}

/// `cargo xtask` builds xtask in the dev profile; the load generator must not
/// be the bottleneck, so build xtask in release and run that instead.
fn reexec_release(args: &[String]) -> anyhow::Result<()> {
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
    let err = Command::new(&exe).args(args).exec();
    Err(err).with_context(|| format!("running {}", exe.display()))
}
