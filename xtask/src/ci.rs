//! `cargo xtask ci`: what CI runs, in order, stopping at the first failure.
//! `.ci/run` prepares the machine (toolchain components, wrk) and calls it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use lexopt::prelude::*;

/// Each step: what it is, then cargo's arguments (see [`step_env`]).
const STEPS: &[(&str, &[&str])] = &[
    ("cargo fmt", &["fmt", "--all", "--", "--check"]),
    (
        "cargo xtask tidy (no import cycle between the modules of any crate)",
        &["xtask", "tidy", "--deny-cycles"],
    ),
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
    (
        "cargo clippy of the facade with `jemalloc` (not a default feature; its code is its own)",
        &[
            "clippy",
            "-p",
            "cluster-thread",
            "--all-targets",
            "--features",
            "jemalloc",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    ),
    (
        "cargo doc (every intra-doc link resolves; the command's crate is left out: its \
         binary and the facade share a file name)",
        &[
            "doc",
            "--workspace",
            "--exclude",
            "cluster-cli",
            "--no-deps",
            "--all-features",
            "--locked",
            "--config",
            "build.rustdocflags=[\"-D\", \"warnings\"]",
        ],
    ),
    ("cargo test", &["test", "--workspace", "--locked"]),
    (
        "cargo test -p cluster-net with CLUSTER_THREAD_KERNEL_STEERING=off (every balance \
         test through the acceptor thread too; the run above steers in the kernel, as root)",
        &["test", "-p", "cluster-net", "--locked"],
    ),
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

/// The environment a step runs with, beyond CI's own.
fn step_env(cargo_args: &[&str]) -> &'static [(&'static str, &'static str)] {
    if cargo_args.starts_with(&["test", "-p", "cluster-net"]) {
        &[("CLUSTER_THREAD_KERNEL_STEERING", "off")]
    } else {
        &[]
    }
}

/// Whether this is the workspace's test run, before which the composition
/// checks run.
fn workspace_tests(cargo_args: &[&str]) -> bool {
    cargo_args.starts_with(&["test", "--workspace"])
}

/// The facade's features and what each turns on (its Cargo.toml).
const FACADE_FEATURES: [(&str, &[&str]); 7] = [
    ("macros", &[]),
    ("net", &[]),
    ("http", &["net"]),
    ("tls", &["http"]),
    ("http3", &["tls"]),
    ("metrics", &["http"]),
    ("axum", &["http"]),
];

/// Every distinct set of the facade's features a user can ask for: the
/// powerset, each set closed under what its features turn on.
fn feature_sets() -> Vec<Vec<&'static str>> {
    let mut sets = BTreeSet::new();
    for mask in 0u32..1 << FACADE_FEATURES.len() {
        let mut on: BTreeSet<&str> = FACADE_FEATURES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, (name, _))| *name)
            .collect();
        loop {
            let before = on.len();
            for (name, implied) in FACADE_FEATURES {
                if on.contains(name) {
                    on.extend(implied);
                }
            }
            if on.len() == before {
                break;
            }
        }
        sets.insert(on.into_iter().collect::<Vec<_>>());
    }
    sets.into_iter().collect()
}

/// Composing only what you need, checked (`cargo check`, fast): the facade
/// with every feature set (its examples and tests where their
/// `required-features` allow), and each sub-crate alone.
fn composition_checks() -> Vec<Vec<String>> {
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let mut checks: Vec<Vec<String>> = feature_sets()
        .into_iter()
        .map(|set| {
            let mut args = owned(&[
                "check",
                "--locked",
                "-p",
                "cluster-thread",
                "--all-targets",
                "--no-default-features",
            ]);
            if !set.is_empty() {
                args.extend(["--features".to_owned(), set.join(",")]);
            }
            args
        })
        .collect();
    // `jemalloc` builds C, so it joins two sets only rather than doubling
    // the powerset: alone, and with the defaults.
    checks.push(owned(&[
        "check",
        "--locked",
        "-p",
        "cluster-thread",
        "--all-targets",
        "--no-default-features",
        "--features",
        "jemalloc",
    ]));
    checks.push(owned(&[
        "check",
        "--locked",
        "-p",
        "cluster-thread",
        "--all-targets",
        "--features",
        "jemalloc",
    ]));
    for krate in [
        "cluster-core",
        "cluster-macros",
        "cluster-net",
        "cluster-http",
    ] {
        checks.push(owned(&[
            "check",
            "--locked",
            "-p",
            krate,
            "--no-default-features",
        ]));
        checks.push(owned(&["check", "--locked", "-p", krate, "--all-features"]));
    }
    checks
}

pub(crate) fn main(mut args: lexopt::Parser) -> anyhow::Result<()> {
    if let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => {
                eprintln!("usage: cargo xtask ci\n\nRuns, from the workspace root, stopping at the first failure:");
                for (_, cargo_args) in STEPS {
                    if workspace_tests(cargo_args) {
                        for check in composition_checks() {
                            eprintln!("  cargo {}", check.join(" "));
                        }
                    }
                    let env: String = step_env(cargo_args)
                        .iter()
                        .map(|(k, v)| format!("{k}={v} "))
                        .collect();
                    eprintln!("  {env}cargo {}", cargo_args.join(" "));
                }
                return Ok(());
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = crate::bench::workspace_root();
    for (title, cargo_args) in STEPS {
        if workspace_tests(cargo_args) {
            // After clippy, before the long test run.
            let checks = composition_checks();
            println!(
                "== feature combinations and sub-crates alone ({} cargo check runs)",
                checks.len()
            );
            for check in checks {
                println!("-- cargo {}", check.join(" "));
                let status = Command::new(&cargo)
                    .current_dir(&root)
                    .args(&check)
                    .status()
                    .context("running cargo check")?;
                if !status.success() {
                    bail!("cargo {} failed ({status})", check.join(" "));
                }
            }
        }
        println!("== {title}");
        if cargo_args[0] == "package" {
            forget_unpacked_packages()?;
        }
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(*cargo_args)
            .envs(step_env(cargo_args).iter().copied())
            .status()
            .with_context(|| format!("running {title}"))?;
        if !status.success() {
            bail!("{title} failed ({status})");
        }
    }
    Ok(())
}

/// Our crates as cargo unpacked them from its temporary registry in an
/// earlier `cargo package`: cargo reuses an unpacked copy whose directory
/// exists, so verification would build a crate against an older version of
/// its sibling (on a CI machine whose cargo home outlives the clone, it did:
/// `Migrator::possible` not found). The temporary registry's copies live in
/// `registry/src/-<hash>/`; crates.io's in `index.crates.io-<hash>/`.
fn forget_unpacked_packages() -> anyhow::Result<()> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = cargo_home.join("registry/src");
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(()); // nothing unpacked yet
    };
    for registry in registries {
        let registry = registry.with_context(|| format!("reading {}", src.display()))?;
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let dir = registry.path();
        for unpacked in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let unpacked = unpacked
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            // Every published crate of ours is `cluster-*`.
            if unpacked
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cluster-"))
            {
                std::fs::remove_dir_all(&unpacked)
                    .with_context(|| format!("removing {}", unpacked.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_set_once_closed_under_what_it_turns_on() {
        let sets = feature_sets();
        // macros or not, times: nothing, net alone, or http with no TLS,
        // tls, or tls and http3, each with any of metrics, axum.
        assert_eq!(sets.len(), 2 * (1 + 1 + 3 * 4), "{sets:?}");
        assert!(sets.contains(&vec![]));
        assert!(sets.contains(&vec!["net"]));
        assert!(sets.contains(&vec!["http", "net", "tls"]));
        assert!(sets
            .iter()
            .all(|s| !s.contains(&"http") || s.contains(&"net")));
        assert!(!sets.contains(&vec!["tls"]), "tls turns on http and net");
        assert!(sets.contains(&vec!["http", "http3", "net", "tls"]));
        assert!(sets
            .iter()
            .all(|s| !s.contains(&"http3") || s.contains(&"tls")));
    }
}
