//! `cargo xtask ci`: what CI runs, in order, stopping at the first failure.
//! `.ci/run` prepares the machine (toolchain components, wrk) and calls it.

use std::process::Command;

use anyhow::{bail, Context};
use lexopt::prelude::*;

/// Each step: what it is, then cargo's arguments.
const STEPS: &[(&str, &[&str])] = &[
    ("cargo fmt", &["fmt", "--all", "--", "--check"]),
    (
        "cargo clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    ),
    ("cargo test", &["test", "--workspace", "--locked"]),
    (
        "cargo package (every published crate, in dependency order, each built from its package)",
        // xtask and test-support are `publish = false`.
        &[
            "package",
            "--workspace",
            "--exclude",
            "xtask",
            "--exclude",
            "test-support",
            "--locked",
        ],
    ),
    (
        "cargo xtask bench --quick (a smoke test of the harness; no timing assertions)",
        &["xtask", "bench", "--quick"],
    ),
];

pub(crate) fn main(mut args: lexopt::Parser) -> anyhow::Result<()> {
    if let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => {
                eprintln!("usage: cargo xtask ci\n\nRuns, from the workspace root, stopping at the first failure:");
                for (_, cargo_args) in STEPS {
                    eprintln!("  cargo {}", cargo_args.join(" "));
                }
                return Ok(());
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = crate::bench::workspace_root();
    for (title, cargo_args) in STEPS {
        println!("== {title}");
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(*cargo_args)
            .status()
            .with_context(|| format!("running {title}"))?;
        if !status.success() {
            bail!("{title} failed ({status})");
        }
    }
    Ok(())
}
