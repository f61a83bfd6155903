//! `cluster-thread`: the command line of a running cluster_thread
//! program's control socket, as `pm2` is for Node. See `--help`.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command line program

mod monit;
mod render;
mod target;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use cluster_ctl::client::{self, Client};
use cluster_ctl::protocol::{Body, Command, Reply, Scale};

use crate::target::Target;

/// Operate the running cluster_thread programs of this user: list, watch,
/// scale, restart, reload, upgrade and stop them, read their logs and
/// change their settings, through each program's control socket.
#[derive(Debug, Parser)]
#[command(name = "cluster-thread", version, propagate_version = true)]
struct Cli {
    /// The cluster with this process id.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// The cluster of the program with this name (its executable's file name).
    #[arg(long, global = true)]
    name: Option<String>,
    /// The control socket at this path (instead of looking in the control directory).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<std::path::PathBuf>,
    /// Print the raw JSON reply lines instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One row per live worker: slot, id, state, uptime, restarts, connections, requests, req/s, CPU, memory.
    Ls,
    /// A live view of `ls`, refreshed every second; `q` quits.
    Monit,
    /// The recent log lines of the cluster, or of one slot.
    Logs {
        /// Keep printing new lines as they come (Ctrl-C ends).
        #[arg(short, long)]
        follow: bool,
        /// Only the lines of this slot's workers.
        #[arg(long)]
        slot: Option<usize>,
        /// How many of the last lines.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
    },
    /// Replace every worker gracefully, slot by slot (no connection lost); returns once the old ones drained.
    Reload {
        /// Slots replaced at once.
        #[arg(long, default_value_t = 1)]
        parallel: usize,
    },
    /// Replace one slot's worker gracefully: the new one listens, then the old one drains.
    Restart {
        /// The slot.
        slot: usize,
    },
    /// Grow or shrink the cluster: N, +N, -N or max (one per CPU).
    Scale {
        /// N, +N, -N or max.
        #[arg(allow_hyphen_values = true, value_parser = parse_scale)]
        workers: Scale,
    },
    /// Hot upgrade: a new process (the binary on disk) takes the sockets over, this one drains.
    Upgrade,
    /// Stop the cluster: in-flight requests finish, then the program exits.
    Stop {
        /// Kill the workers instead of letting them drain.
        #[arg(long)]
        now: bool,
    },
    /// The live settings and their values.
    Get,
    /// Change a live setting (see `get`): max_connections, drain_delay, log_level.
    Set {
        /// The setting.
        key: String,
        /// Its new value.
        value: String,
    },
}

fn parse_scale(s: &str) -> Result<Scale, String> {
    s.parse()
        .map_err(|e: cluster_ctl::protocol::BadScale| e.to_string())
}

/// How long `stop` and `upgrade` wait for the old process to exit.
const EXIT_WAIT: Duration = Duration::from_secs(300);

/// How long a request is retried while the socket answers `busy`.
const BUSY_WAIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-thread: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let targets = target::select(cli.socket.as_deref(), cli.pid, cli.name.as_deref())?;
    match &cli.command {
        Cmd::Ls => {
            // Every cluster when several run; one that fails does not hide the others.
            let mut failed = None;
            for (i, target) in targets.iter().enumerate() {
                if i > 0 && !cli.json {
                    println!();
                }
                match call(target, Command::Ls, cli.json) {
                    Ok(Reply {
                        body: Body::Status(status),
                        ..
                    }) if !cli.json => print!("{}", render::status(&status, 80)),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("cluster-thread: {e}");
                        failed = Some(format!("{} of {} clusters failed", 1, targets.len()));
                    }
                }
            }
            failed.map_or(Ok(()), Err)
        }
        Cmd::Monit => monit::run(
            &target::one(targets)?,
            cli.pid.is_none() && cli.socket.is_none(),
        ),
        command => {
            let target = target::one(targets)?;
            let request = match command {
                Cmd::Logs {
                    follow,
                    slot,
                    lines,
                } => Command::Logs {
                    slot: *slot,
                    lines: Some(*lines),
                    follow: *follow,
                },
                Cmd::Reload { parallel } => Command::Reload {
                    parallel: Some(*parallel),
                },
                Cmd::Restart { slot } => Command::Restart { slot: *slot },
                Cmd::Scale { workers } => Command::Scale { workers: *workers },
                Cmd::Upgrade => Command::Upgrade,
                Cmd::Stop { now } => Command::Stop { now: *now },
                Cmd::Get => Command::Get,
                Cmd::Set { key, value } => Command::Set {
                    key: key.clone(),
                    value: value.clone(),
                },
                Cmd::Ls | Cmd::Monit => unreachable!("handled above"),
            };
            let waits_for_exit = matches!(request, Command::Stop { .. } | Command::Upgrade);
            let reply = call(&target, request, cli.json)?;
            if !cli.json {
                match &reply.body {
                    Body::Settings { settings } => print!("{}", render::settings(settings)),
                    Body::Done { message, .. } if !matches!(command, Cmd::Logs { .. }) => {
                        println!("{message}")
                    }
                    _ => {}
                }
            }
            if waits_for_exit {
                wait_exit(target.pid, cli.json)?;
            }
            Ok(())
        }
    }
}

/// Sends `command` to `target`, prints what comes (progress, log lines;
/// each raw line with `json`), and returns the final reply; an `error`
/// reply is an error.
fn call(target: &Target, command: Command, json: bool) -> Result<Reply, String> {
    let started = Instant::now();
    loop {
        let mut client = Client::connect(&target.path)
            .map_err(|e| format!("cannot connect to {}: {e}", target.path.display()))?;
        if matches!(command, Command::Ls | Command::Get | Command::Set { .. }) {
            let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
        }
        let mut printed = false;
        let reply = client
            .call(command.clone(), |reply, text| {
                if client::is_busy(reply) {
                    return;
                }
                if json {
                    println!("{text}");
                    printed = true;
                    return;
                }
                match &reply.body {
                    Body::Progress { message } => println!("{message}"),
                    Body::Log(line) => println!("{}", line.line),
                    _ => {}
                }
            })
            .map_err(|e| format!("{}: {e}", target.path.display()))?;
        let Some(reply) = reply else {
            return Err(format!(
                "{} closed the connection before answering",
                target.path.display()
            ));
        };
        if client::is_busy(&reply) && !printed && started.elapsed() < BUSY_WAIT {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if let Body::Error { error } = &reply.body {
            return Err(error.clone());
        }
        return Ok(reply);
    }
}

/// Waits until the process `pid` has exited (`stop`, and the old process
/// of an `upgrade`, drain first).
fn wait_exit(pid: Option<u32>, json: bool) -> Result<(), String> {
    let Some(pid) = pid else { return Ok(()) };
    let end = Instant::now() + EXIT_WAIT;
    while client::alive(pid) {
        if Instant::now() > end {
            return Err(format!("process {pid} still runs after {EXIT_WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !json {
        println!("process {pid} exited");
    }
    Ok(())
}
