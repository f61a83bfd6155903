//! `cargo xtask bench` options: the flags (lexopt), then the defaults, which
//! depend on `--quick`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use lexopt::prelude::*;
use serde::{Serialize, Serializer};

use super::sample::{Generator, Placement, Scenario};
use super::servers::{self, Server};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [options]

Builds the servers (release) and measures them side by side: every server is
started once per placement, then the runs go round-robin over the servers
(A B C A B C ...) for each repetition, placement, scenario and generator.
Prints a markdown report and writes target/bench/report.{md,json,svg}.
On 2 cores the defaults take about 40 minutes; --quick about 2 minutes once
built (about 4 more from a cold target directory).

Load scenarios, each measured by both generators (the built-in one and wrk)
and in both placements:
  keep-alive  --connections keep-alive connections, one request after another
  churn       the same with `Connection: close`: a new connection per request
  pinned      the server restricted to CPU 1 with 1 worker, the generator to CPU 0
  unpinned    --workers workers, no affinity
  tls-keep-alive, tls-churn, tls-resumed
              the same over HTTPS against the TLS servers only: keep-alive;
              churn with full handshakes (the client offers no session);
              churn resuming the sessions the server gave (built-in only:
              wrk keeps no session)
Server CPU per request is the user + system time of the server's whole
process tree over the measured window (/proc).
Other scenarios: memory (RSS per worker count), idle (memory per idle
keep-alive connection), startup, respawn.

servers: ct-rr ct-lc ct-os ct-reuseport (examples/same_port, one per balance
mode; round-robin and least-connections steered by the kernel where eBPF may
be loaded), ct-rr-acceptor ct-lc-acceptor (the same two through the acceptor
thread: CLUSTER_THREAD_KERNEL_STEERING=off), actix, hyper (multi-thread), hyper-tpc (thread per core), axum
(bench/peers), node-rr node-none (bench/node/cluster.js, when node is on
PATH), raw (canned bytes: the load generator's ceiling); over TLS (the
tls-* scenarios only, rustls with ring everywhere, a certificate made for the
run): ct-rr-tls ct-reuseport-tls (same_port --tls-cert/--tls-key), actix-tls
(actix-web + rustls), hyper-tpc-tls (hyper + tokio-rustls, thread per core).

options:
  --quick                  CI smoke run: 1 rep, short runs, small counts: checks the harness, not the figures
  --pin                    load scenarios pinned only
  --no-pin                 load scenarios unpinned only [default: both]
  --generators LIST        builtin,wrk [both; wrk is skipped with a notice when not installed]
  --scenarios LIST         keep-alive,churn,tls-keep-alive,tls-churn,tls-resumed,
                           memory,idle,startup,respawn [all]
  --servers LIST           server ids to run [all that can be built]
  --workers N              workers (threads or processes) per server when unpinned [2]
  --duration SECS          measured seconds per load run [5; quick 0.5] (wrk: rounded up to whole seconds)
  --warmup SECS            unmeasured load before each run [1; quick 0.2] (wrk: whole seconds, 0 skips)
  --connections N          concurrent connections [50; quick 16]
  --generator-threads N    generator threads (wrk -t) [1]
  --reps N                 repetitions of every measurement [3; quick 1]
  --memory-workers LIST    worker counts for the memory scenario [1,2,4,8,16; quick 8]
  --idle-connections N     keep-alive connections the idle scenario holds [2000; quick 200]
  --startup-workers LIST   worker counts for the start-up scenario [2,8; quick 2]
  --launches N             start-ups per server and repetition [3; quick 1]
  --respawns N             crashes per server and repetition [5; quick 2]
  --same-port-bin PATH     use this same_port binary instead of building the example
  --out DIR                where the report goes [target/bench]
";

/// Everything a run is configured by.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) placements: Vec<Placement>,
    pub(crate) generators: Vec<Generator>,
    pub(crate) scenarios: Vec<Scenario>,
    pub(crate) servers: Vec<&'static Server>,
    pub(crate) workers: usize,
    #[serde(rename = "duration_s", serialize_with = "seconds")]
    pub(crate) duration: Duration,
    #[serde(rename = "warmup_s", serialize_with = "seconds")]
    pub(crate) warmup: Duration,
    pub(crate) connections: usize,
    pub(crate) generator_threads: usize,
    pub(crate) reps: usize,
    pub(crate) memory_workers: Vec<usize>,
    pub(crate) idle_connections: usize,
    pub(crate) startup_workers: Vec<usize>,
    pub(crate) launches: usize,
    pub(crate) respawns: usize,
    #[serde(skip)]
    pub(crate) same_port_bin: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) out: Option<PathBuf>,
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The flags as given, before the defaults.
#[derive(Default)]
struct Given {
    quick: bool,
    pin: bool,
    no_pin: bool,
    generators: Option<String>,
    scenarios: Option<String>,
    servers: Option<String>,
    workers: Option<usize>,
    duration: Option<Duration>,
    warmup: Option<Duration>,
    connections: Option<usize>,
    generator_threads: Option<usize>,
    reps: Option<usize>,
    memory_workers: Option<String>,
    idle_connections: Option<usize>,
    startup_workers: Option<String>,
    launches: Option<usize>,
    respawns: Option<usize>,
    same_port_bin: Option<PathBuf>,
    out: Option<PathBuf>,
}

impl Given {
    fn parse(mut args: lexopt::Parser) -> anyhow::Result<Given> {
        let mut g = Given::default();
        while let Some(arg) = args.next()? {
            match arg {
                Long("help") | Short('h') => {
                    eprint!("{USAGE}");
                    std::process::exit(0);
                }
                Long("quick") => g.quick = true,
                Long("pin") => g.pin = true,
                Long("no-pin") => g.no_pin = true,
                Long("generators") => g.generators = Some(args.value()?.string()?),
                Long("scenarios") => g.scenarios = Some(args.value()?.string()?),
                Long("servers") => g.servers = Some(args.value()?.string()?),
                Long("workers") => g.workers = Some(count(&mut args, "--workers")?),
                Long("duration") => {
                    let d = secs(&mut args, "--duration")?;
                    if d.is_zero() {
                        bail!("--duration must be more than 0");
                    }
                    g.duration = Some(d);
                }
                Long("warmup") => g.warmup = Some(secs(&mut args, "--warmup")?),
                Long("connections") => g.connections = Some(count(&mut args, "--connections")?),
                Long("generator-threads") => {
                    g.generator_threads = Some(count(&mut args, "--generator-threads")?)
                }
                Long("reps") => g.reps = Some(count(&mut args, "--reps")?),
                Long("memory-workers") => g.memory_workers = Some(args.value()?.string()?),
                Long("idle-connections") => {
                    g.idle_connections = Some(count(&mut args, "--idle-connections")?)
                }
                Long("startup-workers") => g.startup_workers = Some(args.value()?.string()?),
                Long("launches") => g.launches = Some(count(&mut args, "--launches")?),
                Long("respawns") => g.respawns = Some(count(&mut args, "--respawns")?),
                Long("same-port-bin") => g.same_port_bin = Some(args.value()?.into()),
                Long("out") => g.out = Some(args.value()?.into()),
                other => bail!("{}\n\n{USAGE}", other.unexpected()),
            }
        }
        Ok(g)
    }
}

/// The option's value as a count of at least 1.
fn count(args: &mut lexopt::Parser, flag: &str) -> anyhow::Result<usize> {
    let n: usize = args.value()?.parse().with_context(|| flag.to_string())?;
    if n == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(n)
}

/// The option's value as seconds (`1.5` or `1.5s`), at most an hour.
fn secs(args: &mut lexopt::Parser, flag: &str) -> anyhow::Result<Duration> {
    let secs: f64 = args
        .value()?
        .parse_with(|v| v.trim_end_matches('s').parse::<f64>())
        .with_context(|| flag.to_string())?;
    if !(0.0..=3600.0).contains(&secs) {
        bail!("{flag}: {secs} s is out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A comma-separated list, each item looked up by `find`, in the order of
/// `order` and without repeats.
fn names<T: Copy + PartialEq>(
    flag: &str,
    value: &str,
    order: &[T],
    find: impl Fn(&str) -> Option<T>,
    known: &[&str],
) -> anyhow::Result<Vec<T>> {
    let mut wanted = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = find(name)
            .with_context(|| format!("{flag}: unknown `{name}` (known: {})", known.join(", ")))?;
        wanted.push(item);
    }
    if wanted.is_empty() {
        bail!("{flag}: an empty list");
    }
    Ok(order
        .iter()
        .copied()
        .filter(|x| wanted.contains(x))
        .collect())
}

/// Comma-separated worker counts, each at least 1.
fn worker_counts(flag: &str, value: &str) -> anyhow::Result<Vec<usize>> {
    let counts = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{flag}: `{s}` is not a worker count of at least 1"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if counts.is_empty() {
        bail!("{flag}: an empty list");
    }
    Ok(counts)
}

impl Options {
    pub(crate) fn parse(args: lexopt::Parser) -> anyhow::Result<Options> {
        let g = Given::parse(args)?;
        let quick = g.quick;
        let pick = |full: usize, fast: usize| if quick { fast } else { full };
        let placements = match (g.pin, g.no_pin) {
            (true, true) => bail!("--pin and --no-pin: choose one (neither runs both)"),
            (true, false) => vec![Placement::Pinned],
            (false, true) => vec![Placement::Unpinned],
            (false, false) => vec![Placement::Pinned, Placement::Unpinned],
        };
        let generators = match g.generators.as_deref() {
            None => Generator::ALL.to_vec(),
            Some(v) => names(
                "--generators",
                v,
                &Generator::ALL,
                |n| Generator::ALL.into_iter().find(|g| g.name() == n),
                &Generator::ALL.map(Generator::name),
            )?,
        };
        let scenarios = match g.scenarios.as_deref() {
            None => Scenario::ALL.to_vec(),
            Some(v) => names(
                "--scenarios",
                v,
                &Scenario::ALL,
                Scenario::by_name,
                &Scenario::ALL.map(Scenario::name),
            )?,
        };
        let all: Vec<&'static Server> = servers::ALL.iter().collect();
        let servers = match g.servers.as_deref() {
            None => all,
            Some(v) => names(
                "--servers",
                v,
                &all,
                servers::by_id,
                &servers::ALL.iter().map(|s| s.id).collect::<Vec<_>>(),
            )?,
        };
        Ok(Options {
            quick,
            placements,
            generators,
            scenarios,
            servers,
            workers: g.workers.unwrap_or(2),
            duration: g.duration.unwrap_or(Duration::from_secs(pick(5, 1) as u64)),
            warmup: g.warmup.unwrap_or(if quick {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            }),
            connections: g.connections.unwrap_or(pick(50, 16)),
            generator_threads: g.generator_threads.unwrap_or(1),
            reps: g.reps.unwrap_or(pick(3, 1)),
            memory_workers: match &g.memory_workers {
                Some(v) => worker_counts("--memory-workers", v)?,
                None if quick => vec![8],
                None => vec![1, 2, 4, 8, 16],
            },
            idle_connections: g.idle_connections.unwrap_or(pick(2000, 200)),
            startup_workers: match &g.startup_workers {
                Some(v) => worker_counts("--startup-workers", v)?,
                None if quick => vec![2],
                None => vec![2, 8],
            },
            launches: g.launches.unwrap_or(pick(3, 1)),
            respawns: g.respawns.unwrap_or(pick(5, 2)),
            same_port_bin: g.same_port_bin,
            out: g.out,
        })
    }

    /// How long the memory scenario loads each server.
    pub(crate) fn memory_load(&self) -> Duration {
        if self.quick {
            Duration::from_millis(500)
        } else {
            self.duration.min(Duration::from_secs(1))
        }
    }

    /// Worker count of a placement.
    pub(crate) fn workers_of(&self, placement: Placement) -> usize {
        match placement {
            Placement::Pinned => 1,
            Placement::Unpinned => self.workers,
        }
    }

    pub(crate) fn wants(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(lexopt::Parser::from_args(args.iter().copied()))
    }

    #[test]
    fn defaults_run_everything_both_ways() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.placements, [Placement::Pinned, Placement::Unpinned]);
        assert_eq!(o.generators, Generator::ALL);
        assert_eq!(o.scenarios, Scenario::ALL);
        assert_eq!((o.reps, o.connections, o.workers), (3, 50, 2));
        assert_eq!(o.servers.len(), servers::ALL.len());
    }

    #[test]
    fn lists_keep_the_table_order() {
        let o = parse(&[
            "--no-pin",
            "--generators=wrk",
            "--servers",
            "raw,ct-rr,raw",
            "--scenarios",
            "churn,keep-alive",
        ])
        .unwrap();
        assert_eq!(o.placements, [Placement::Unpinned]);
        assert_eq!(o.generators, [Generator::Wrk]);
        assert_eq!(o.scenarios, [Scenario::KeepAlive, Scenario::Churn]);
        let ids: Vec<_> = o.servers.iter().map(|s| s.id).collect();
        assert_eq!(ids, ["ct-rr", "raw"]);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["--pin", "--no-pin"]).is_err());
        assert!(parse(&["--generators", "ab"]).is_err());
        assert!(parse(&["--workers", "0"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--memory-workers", "2,0"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["stray"]).is_err());
        assert_eq!(
            parse(&["--warmup", "1.5s"]).unwrap().warmup.as_millis(),
            1500
        );
    }
}
