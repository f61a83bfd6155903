//! `cargo xtask tidy`: checks of the source tree that neither rustc nor
//! clippy makes. Today one: no import cycle between the modules of a crate
//! (ARCHITECTURE.md: "Inside a crate no two modules import each other").

mod modgraph;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use lexopt::prelude::*;

const USAGE: &str = "usage: cargo xtask tidy [--deny-cycles] [--allow-cycles-in CRATE]...

Reports the import cycles between the modules of each workspace crate
(its lib, proc-macro and bin targets; `crate::Name` re-exports followed to
the module that defines the item; #[cfg(test)] items left out).

  --deny-cycles            fail if a crate has a cycle
  --allow-cycles-in CRATE  with --deny-cycles: report CRATE's cycles, do not
                           fail on them (repeatable)";

pub(crate) fn main(mut args: lexopt::Parser) -> anyhow::Result<()> {
    let mut deny = false;
    let mut allowed: Vec<String> = Vec::new();
    while let Some(arg) = args.next()? {
        match arg {
            Long("deny-cycles") => deny = true,
            Long("allow-cycles-in") => allowed.push(args.value()?.string()?),
            Short('h') | Long("help") => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let crates = crate_roots()?;
    if let Some(unknown) = allowed
        .iter()
        .find(|name| !crates.iter().any(|(c, _)| c == *name))
    {
        bail!("--allow-cycles-in {unknown}: no such crate in the workspace");
    }
    let mut failing = Vec::new();
    for (name, root) in &crates {
        let read = |path: &std::path::Path| std::fs::read_to_string(path);
        let graph = modgraph::load(root, &read).with_context(|| format!("crate {name}"))?;
        let cycles = graph.cycles();
        if cycles.is_empty() {
            println!("{name}: no import cycle ({} files)", graph.nodes.len());
            continue;
        }
        for cycle in &cycles {
            println!(
                "{name}: import cycle among {} files: {}",
                cycle.files,
                cycle.round_trip.join(" → ")
            );
            for (from, to, names) in &cycle.edges {
                println!("    {from} → {to}: {}", names.join(", "));
            }
        }
        if deny && !allowed.contains(name) {
            failing.push(name.as_str());
        }
    }
    if !failing.is_empty() {
        bail!(
            "import cycles in {}: move the item that ties each cycle into the module it belongs \
             to (or a leaf module of its own)",
            failing.join(", ")
        );
    }
    Ok(())
}

/// Each workspace crate's root files, from `cargo metadata`: `(name, path)`,
/// a package with a lib and a bin named twice.
fn crate_roots() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(crate::bench::workspace_root())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    let mut roots = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds = target["kind"].as_array().into_iter().flatten();
            if kinds
                .filter_map(|k| k.as_str())
                .any(|k| matches!(k, "lib" | "proc-macro" | "bin"))
            {
                let path = target["src_path"]
                    .as_str()
                    .context("a target without src_path in cargo metadata")?;
                roots.push((name.to_owned(), PathBuf::from(path)));
            }
        }
    }
    roots.sort();
    Ok(roots)
}
