//! `cargo xtask soak --seconds N`: the `same_port` example (release, with
//! `--chaos`) under mixed load for N seconds while workers crash and the
//! cluster reloads at random; prints requests, failures, restarts and RSS at
//! start and end (a leak shows as growth). Fails if any request failed.
//! `--no-migrate` runs the server with connection migration off, for the
//! figures before and after it side by side.

use std::time::{Duration, Instant};

use anyhow::bail;
use test_support::{Load, Run};

use crate::bench::{self, procfs, servers};

const USAGE: &str = "usage: cargo xtask soak [--seconds N] [--workers N] [--no-migrate]";

pub(crate) fn main(mut args: lexopt::Parser) -> anyhow::Result<()> {
    use lexopt::prelude::*;
    let (mut seconds, mut workers, mut migrate) = (60u64, 2usize, true);
    while let Some(arg) = args.next()? {
        match arg {
            Long("seconds") => seconds = args.value()?.parse()?,
            Long("workers") => workers = args.value()?.parse()?,
            Long("no-migrate") => migrate = false,
            Short('h') | Long("help") => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            other => bail!("{}\n{USAGE}", other.unexpected()),
        }
    }
    let root = bench::workspace_root();
    let target = bench::target_dir()?;
    let bin = servers::build_same_port(&root, &target).map_err(anyhow::Error::msg)?;
    let mut command = std::process::Command::new(&bin);
    command
        .args(["--workers", &workers.to_string(), "--port", "0", "--chaos"])
        .args((!migrate).then_some("--no-migrate"))
        .env_remove("RUST_BACKTRACE");
    // Killed when dropped, if this task fails before it stops it.
    let mut server = Run::command("same_port", command);
    let pid = server.pid();
    let line = server.line(|l| l.starts_with("listening on "));
    let addr = test_support::local(&line["listening on ".len()..]);

    // 3 keep-alive and 3 new-connection clients.
    let loads = [Load::start(addr, 3, true), Load::start(addr, 3, false)];
    std::thread::sleep(Duration::from_secs(2));
    let rss_start = procfs::tree_memory(pid).rss;
    let end = Instant::now() + Duration::from_secs(seconds);
    let (mut panics, mut reloads, mut seed) = (0u64, 0u64, 0x2545_F491_4F6C_DD1Du64);
    while Instant::now() < end {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Longer apart than the cluster's min_uptime (1 s): crashes of
        // running workers, not a crash loop (which the cluster would answer
        // with back-off, and tests cover).
        std::thread::sleep(Duration::from_millis(1200 + seed % 1800));
        match seed % 10 {
            0..=5 => {
                // The panicking request itself fails; it is not counted.
                let _ = test_support::get(addr, "/panic");
                panics += 1;
            }
            6..=8 => {
                procfs::signal(pid, libc::SIGHUP);
                reloads += 1;
            }
            _ => {}
        }
    }
    let (mut ok, mut failed, mut closed) = (0, 0, 0);
    for load in loads {
        let (o, f, c) = load.finish();
        (ok, failed, closed) = (ok + o, failed + f, closed + c);
    }
    let rss_end = procfs::tree_memory(pid).rss;
    procfs::signal(pid, libc::SIGTERM);
    let status = server.exit_status();
    // Read what it printed last: then every line is in `seen`.
    while server.try_line(Duration::from_secs(1)).is_some() {}
    let started = server
        .seen
        .iter()
        .filter(|l| l.ends_with(" started"))
        .count();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("| soak | value |\n|---|---:|");
    println!(
        "| duration | {seconds} s, {workers} workers, 3 keep-alive + 3 new-connection clients |"
    );
    println!(
        "| connection migration | {} |",
        if migrate { "on" } else { "off (--no-migrate)" }
    );
    println!("| requests served | {ok} |");
    println!("| requests failed | {failed} |");
    println!("| idle keep-alive closes seen by clients | {closed} |");
    println!("| workers crashed (GET /panic) | {panics} |");
    println!("| reloads (SIGHUP) | {reloads} |");
    println!("| workers started (initial and replacements) | {started} |");
    println!(
        "| RSS after warm-up / at the end | {:.1} MiB / {:.1} MiB |",
        mib(rss_start),
        mib(rss_end)
    );
    println!("| exit status after SIGTERM | {status} |");
    if failed > 0 || !status.success() {
        bail!("{failed} requests failed; exit status {status}");
    }
    Ok(())
}
