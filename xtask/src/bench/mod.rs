//! `cargo xtask bench`: cluster_thread against actix-web, hyper, axum and Node's
//! cluster, on this machine. See `cargo xtask bench --help`.

mod load;
pub(crate) mod procfs;
mod report;
pub(crate) mod servers;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lexopt::ValueExt as _;
use serde_json::{json, Value};

use servers::{Programs, Running, Server};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [options]

Builds the servers (release), runs the scenarios interleaved (A B C A B C ...),
prints a markdown report and writes target/bench/report.{md,json,svg}.
On 2 cores the defaults take about 13 minutes; --quick about 40 s once built
(about 2 minutes from a cold target directory).

servers: ct-rr ct-lc ct-os ct-reuseport (examples/same_port, one per balance
mode), actix, hyper (multi-thread), hyper-tpc (thread per core), axum
(bench/peers), node-rr node-none (bench/node/cluster.js, when node is on
PATH), raw (canned bytes: the load generator's ceiling).

options:
  --quick                 CI smoke run: 1 rep, 1 s runs, memory and start-up at 2 workers
  --workers N             workers (threads or processes) per server [available cores]
  --duration SECS         measured seconds per load run [10; quick 1]
  --warmup SECS           unmeasured seconds before each run [1; quick 0.3]
  --connections N         concurrent connections [64; quick 32]
  --reps N                repetitions of every measurement [3; quick 1]
  --scenarios LIST        throughput,churn,memory,startup,respawn [all]
  --servers LIST          server ids to run [all that can be built]
  --client builtin|wrk    load generator [builtin]
  --client-threads N      generator threads [all cores; with --pin the generator's half]
  --pin                   servers on the first half of the cores, generator on the rest (taskset)
  --memory-workers LIST   worker counts for the memory scenario [1,2,4,8,16; quick 2]
  --startup-workers LIST  worker counts for the start-up scenario [2,8; quick 2]
  --launches N            start-ups per server and repetition [3; quick 1]
  --respawns N            crashes per server and repetition [5; quick 2]
  --same-port-bin PATH    use this same_port binary instead of building the example
  --out DIR               where the report goes [target/bench]
";

/// The scenarios, in run order.
pub(crate) const SCENARIOS: &[&str] = &["throughput", "churn", "memory", "startup", "respawn"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    Builtin,
    Wrk,
}

/// Everything a run is configured by.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) workers: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) connections: usize,
    pub(crate) reps: usize,
    pub(crate) scenarios: Vec<&'static str>,
    pub(crate) servers: Vec<&'static Server>,
    pub(crate) client: Client,
    pub(crate) client_threads: usize,
    pub(crate) pin: bool,
    pub(crate) memory_workers: Vec<usize>,
    pub(crate) startup_workers: Vec<usize>,
    pub(crate) launches: usize,
    pub(crate) respawns: usize,
    pub(crate) same_port_bin: Option<PathBuf>,
    pub(crate) out: Option<PathBuf>,
}

fn parse_list<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<Vec<T>> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: cannot read `{s}`"))
        })
        .collect()
}

/// The flags as given, before the defaults (which depend on `--quick`).
#[derive(Default)]
struct Given {
    quick: bool,
    pin: bool,
    workers: Option<usize>,
    duration: Option<Duration>,
    warmup: Option<Duration>,
    connections: Option<usize>,
    reps: Option<usize>,
    scenarios: Option<String>,
    servers: Option<String>,
    client: Option<String>,
    client_threads: Option<usize>,
    memory_workers: Option<String>,
    startup_workers: Option<String>,
    launches: Option<usize>,
    respawns: Option<usize>,
    same_port_bin: Option<PathBuf>,
    out: Option<PathBuf>,
}

impl Given {
    fn parse(mut args: lexopt::Parser) -> anyhow::Result<Given> {
        use lexopt::prelude::*;
        let mut g = Given::default();
        while let Some(arg) = args.next()? {
            match arg {
                Long("quick") => g.quick = true,
                Long("pin") => g.pin = true,
                Long("help") | Short('h') => {
                    eprint!("{USAGE}");
                    std::process::exit(0);
                }
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
                Long("reps") => g.reps = Some(count(&mut args, "--reps")?),
                Long("scenarios") => g.scenarios = Some(args.value()?.string()?),
                Long("servers") => g.servers = Some(args.value()?.string()?),
                Long("client") => g.client = Some(args.value()?.string()?),
                Long("client-threads") => {
                    g.client_threads = Some(count(&mut args, "--client-threads")?)
                }
                Long("memory-workers") => g.memory_workers = Some(args.value()?.string()?),
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

impl Options {
    fn parse(args: lexopt::Parser) -> anyhow::Result<Options> {
        let g = Given::parse(args)?;
        let quick = g.quick;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pick = |full: f64, fast: f64| if quick { fast } else { full };
        let mut o = Options {
            quick,
            workers: g.workers.unwrap_or(cores),
            duration: g
                .duration
                .unwrap_or(Duration::from_secs_f64(pick(10.0, 1.0))),
            warmup: g.warmup.unwrap_or(Duration::from_secs_f64(pick(1.0, 0.3))),
            connections: g.connections.unwrap_or(pick(64.0, 32.0) as usize),
            reps: g.reps.unwrap_or(pick(3.0, 1.0) as usize),
            scenarios: SCENARIOS.to_vec(),
            servers: servers::ALL.iter().collect(),
            client: Client::Builtin,
            client_threads: g.client_threads.unwrap_or(if g.pin {
                (cores - cores / 2).max(1)
            } else {
                cores
            }),
            pin: g.pin,
            memory_workers: if quick { vec![2] } else { vec![1, 2, 4, 8, 16] },
            startup_workers: if quick { vec![2] } else { vec![2, 8] },
            launches: g.launches.unwrap_or(pick(3.0, 1.0) as usize),
            respawns: g.respawns.unwrap_or(pick(5.0, 2.0) as usize),
            same_port_bin: g.same_port_bin,
            out: g.out,
        };
        if let Some(v) = g.client.as_deref() {
            o.client = match v {
                "builtin" => Client::Builtin,
                "wrk" => Client::Wrk,
                other => bail!("--client: builtin or wrk, not `{other}`"),
            };
        }
        if let Some(v) = g.scenarios.as_deref() {
            let wanted: Vec<String> = parse_list("--scenarios", v)?;
            o.scenarios = Vec::new();
            for w in wanted {
                let s = SCENARIOS.iter().find(|s| **s == w).with_context(|| {
                    format!("--scenarios: unknown `{w}` (known: {SCENARIOS:?})")
                })?;
                o.scenarios.push(s);
            }
            o.scenarios
                .sort_by_key(|s| SCENARIOS.iter().position(|x| x == s));
        }
        if let Some(v) = g.servers.as_deref() {
            let wanted: Vec<String> = parse_list("--servers", v)?;
            o.servers = Vec::new();
            for w in wanted {
                let s = servers::by_id(&w).with_context(|| {
                    let ids: Vec<_> = servers::ALL.iter().map(|s| s.id).collect();
                    format!("--servers: unknown `{w}` (known: {})", ids.join(", "))
                })?;
                o.servers.push(s);
            }
            o.servers
                .sort_by_key(|s| servers::ALL.iter().position(|x| x.id == s.id));
            o.servers.dedup_by_key(|s| s.id);
        }
        for (flag, given, list) in [
            ("--memory-workers", &g.memory_workers, &mut o.memory_workers),
            (
                "--startup-workers",
                &g.startup_workers,
                &mut o.startup_workers,
            ),
        ] {
            if let Some(v) = given {
                *list = parse_list(flag, v)?;
                if list.is_empty() || list.contains(&0) {
                    bail!("{flag}: worker counts of at least 1");
                }
            }
        }
        Ok(o)
    }
}

impl Options {
    /// How long the memory scenario loads each server.
    pub(crate) fn memory_load(&self) -> Duration {
        if self.quick {
            Duration::from_millis(500)
        } else {
            self.duration.min(Duration::from_secs(1))
        }
    }
}

/// One measurement of one server in one repetition.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) scenario: &'static str,
    pub(crate) server: &'static str,
    pub(crate) workers: usize,
    pub(crate) rep: usize,
    pub(crate) metrics: BTreeMap<&'static str, f64>,
    pub(crate) details: Value,
}

/// What the report is made of.
pub(crate) struct Run {
    pub(crate) options: Options,
    pub(crate) started: String,
    pub(crate) machine: Value,
    pub(crate) notices: Vec<String>,
    /// Servers that were measured (built and selected), in table order.
    pub(crate) servers: Vec<&'static Server>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) generator: String,
    pub(crate) elapsed: Duration,
}

fn notice(notices: &mut Vec<String>, text: String) {
    eprintln!("bench: notice: {text}");
    notices.push(text);
}

/// The workspace root (xtask's parent directory).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The cargo target directory this xtask binary was built into.
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/xtask
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("cannot tell the target directory from the xtask binary's path")
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// `cargo xtask bench ...`
pub(crate) fn main(args: lexopt::Parser) -> anyhow::Result<()> {
    let began = Instant::now();
    let options = Options::parse(args)?;
    let root = workspace_root();
    let target = target_dir()?;
    let out = options.out.clone().unwrap_or_else(|| target.join("bench"));
    let mut notices = Vec::new();

    // Build what can be built.
    let mut programs = Programs::default();
    let wants = |pred: fn(&Server) -> bool| options.servers.iter().any(|s| pred(s));
    if wants(|s| !s.is_cluster_thread() && !s.is_node()) {
        eprintln!("bench: building bench/peers (release)");
        programs.peers = Some(servers::build_peers(&root, &target)?);
    }
    if wants(Server::is_cluster_thread) {
        match &options.same_port_bin {
            Some(bin) if bin.is_file() => programs.same_port = Some(bin.clone()),
            Some(bin) => bail!("--same-port-bin {}: no such file", bin.display()),
            None => {
                eprintln!("bench: building examples/same_port (release)");
                match servers::build_same_port(&root, &target) {
                    Ok(bin) => programs.same_port = Some(bin),
                    Err(why) => notice(&mut notices, format!("cluster_thread rows skipped: {why}")),
                }
            }
        }
    }
    if wants(Server::is_node) {
        match servers::find_node() {
            Some(node) => programs.node = Some((node, root.join("bench/node/cluster.js"))),
            None => notice(
                &mut notices,
                "node is not on PATH: the Node cluster rows are skipped".into(),
            ),
        }
    }
    if options.client == Client::Wrk && !load::wrk_available() {
        bail!("--client wrk: wrk is not installed (apt-get install -y wrk), or use the built-in client");
    }

    let (model, cores, mem, kernel) = procfs::machine();
    if options.pin {
        if cores < 2 {
            notice(
                &mut notices,
                "--pin needs at least 2 cores: not pinned".into(),
            );
        } else {
            let split = cores / 2;
            let range = |a: usize, b: usize| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            };
            programs.pin = Some(range(0, split - 1));
            let generator: Vec<usize> = (split..cores).collect();
            procfs::pin_self(&generator).context("pinning the load generator")?;
        }
    }
    let generator = match options.client {
        Client::Builtin => format!(
            "built-in (tokio, {} thread{})",
            options.client_threads,
            if options.client_threads == 1 { "" } else { "s" }
        ),
        Client::Wrk => format!("wrk ({} threads)", options.client_threads),
    };

    let measured: Vec<&'static Server> = options
        .servers
        .iter()
        .copied()
        .filter(|s| programs.available(s))
        .collect();
    let mut run = Run {
        started: date(),
        machine: json!({
            "cpu": model,
            "cores": cores,
            "memory_bytes": mem,
            "kernel": kernel,
            "pinned": programs.pin.as_ref().map(|cpus| json!({
                "servers": cpus,
                "generator": if cores / 2 == cores - 1 { (cores - 1).to_string() } else { format!("{}-{}", cores / 2, cores - 1) },
            })),
        }),
        notices,
        servers: measured.clone(),
        samples: Vec::new(),
        generator,
        options: options.clone(),
        elapsed: Duration::ZERO,
    };
    let logs = out.join("logs");
    let mut bench = Bench {
        options: &options,
        programs: &programs,
        logs: &logs,
        samples: &mut run.samples,
        notices: &mut run.notices,
    };
    let load_scenarios: Vec<&'static str> = options
        .scenarios
        .iter()
        .copied()
        .filter(|s| *s == "throughput" || *s == "churn")
        .collect();
    if !load_scenarios.is_empty() {
        bench.load_scenarios(&measured, &load_scenarios)?;
    }
    let not_raw: Vec<&'static Server> = measured
        .iter()
        .copied()
        .filter(|s| s.kind != servers::Kind::Raw)
        .collect();
    if options.scenarios.contains(&"memory") {
        bench.memory(&not_raw)?;
    }
    if options.scenarios.contains(&"startup") {
        bench.startup(&not_raw)?;
    }
    if options.scenarios.contains(&"respawn") {
        let crashable: Vec<&'static Server> = not_raw
            .iter()
            .copied()
            .filter(|s| s.can_respawn())
            .collect();
        bench.respawn(&crashable)?;
    }
    run.elapsed = began.elapsed();

    let summary = report::Summary::new(&run);
    let markdown = report::markdown(&run, &summary);
    println!("{markdown}");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.md"), &markdown)?;
    let value = report::json(&run, &summary);
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&value)? + "\n",
    )?;
    std::fs::write(out.join("report.svg"), svg::chart(&run, &summary))?;
    eprintln!(
        "bench: done in {:.0} s; wrote {}/report.md, report.json, report.svg",
        run.elapsed.as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// The scenarios' shared state.
struct Bench<'a> {
    options: &'a Options,
    programs: &'a Programs,
    logs: &'a Path,
    samples: &'a mut Vec<Sample>,
    notices: &'a mut Vec<String>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Bench<'_> {
    fn start(&mut self, server: &Server, workers: usize, chaos: bool) -> anyhow::Result<Running> {
        let mut running = servers::spawn(self.programs, server, workers, chaos, self.logs)?;
        running.wait_ready(READY_TIMEOUT).with_context(|| {
            format!(
                "starting {} (stderr in {}/{}.stderr)",
                server.label,
                self.logs.display(),
                server.id
            )
        })?;
        Ok(running)
    }

    fn load(
        &self,
        running: &Running,
        churn: bool,
        duration: Duration,
        warmup: Duration,
    ) -> anyhow::Result<load::LoadResult> {
        let spec = load::LoadSpec {
            addr: running.addr,
            connections: self.options.connections,
            threads: self.options.client_threads,
            warmup,
            duration,
            churn,
        };
        match self.options.client {
            Client::Builtin => load::run_builtin(&spec, running.pid()),
            Client::Wrk => load::run_wrk(&spec, running.pid()),
        }
    }

    /// Throughput (keep-alive) and churn: every server started once with the
    /// same worker count, then runs interleaved A B C A B C ...
    fn load_scenarios(
        &mut self,
        list: &[&'static Server],
        scenarios: &[&'static str],
    ) -> anyhow::Result<()> {
        let workers = self.options.workers;
        let mut running = Vec::new();
        for server in list {
            eprintln!("bench: starting {} ({workers} workers)", server.label);
            running.push(self.start(server, workers, false)?);
        }
        for &scenario in scenarios {
            let churn = scenario == "churn";
            for rep in 0..self.options.reps {
                for r in &running {
                    let result = self.load(r, churn, self.options.duration, self.options.warmup)?;
                    let rps = result.requests as f64 / result.window;
                    let mut metrics = BTreeMap::new();
                    metrics.insert("rps", rps);
                    metrics.insert("p50_ms", result.p50_ms);
                    metrics.insert("p90_ms", result.p90_ms);
                    metrics.insert("p99_ms", result.p99_ms);
                    if let Some(p) = result.p999_ms {
                        metrics.insert("p999_ms", p);
                    }
                    metrics.insert("max_ms", result.max_ms);
                    metrics.insert("errors", result.errors as f64);
                    metrics.insert("requests", result.requests as f64);
                    metrics.insert("server_cpu_s", result.server_cpu);
                    if let Some(c) = result.client_cpu {
                        metrics.insert("client_cpu_s", c);
                    }
                    if result.requests > 0 && result.server_cpu > 0.0 {
                        metrics.insert(
                            "cpu_us_per_req",
                            result.server_cpu * 1e6 / result.requests as f64,
                        );
                        metrics.insert("req_per_cpu_s", result.requests as f64 / result.server_cpu);
                    }
                    eprintln!(
                        "bench: {scenario} rep {}/{}: {:<34} {:>9.0} req/s  p99 {:>7.3} ms  CPU {:>6.1} µs/req  errors {}",
                        rep + 1,
                        self.options.reps,
                        r.server.label,
                        rps,
                        result.p99_ms,
                        metrics.get("cpu_us_per_req").copied().unwrap_or(f64::NAN),
                        result.errors
                    );
                    self.samples.push(Sample {
                        scenario,
                        server: r.server.id,
                        workers,
                        rep,
                        metrics,
                        details: Value::Null,
                    });
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        for r in running {
            r.stop();
        }
        Ok(())
    }

    /// RSS of each server's process tree after start and after a short
    /// keep-alive load, per worker count.
    fn memory(&mut self, list: &[&'static Server]) -> anyhow::Result<()> {
        let load_time = self.options.memory_load();
        for &workers in &self.options.memory_workers {
            for rep in 0..self.options.reps {
                for server in list {
                    let running = self.start(server, workers, false)?;
                    std::thread::sleep(Duration::from_millis(100));
                    let started = procfs::tree_memory(running.pid());
                    let result = self.load(&running, false, load_time, Duration::ZERO)?;
                    let loaded = procfs::tree_memory(running.pid());
                    running.stop();
                    eprintln!(
                        "bench: memory {workers} workers rep {}/{}: {:<34} RSS {:>7.1} MiB after start, {:>7.1} MiB after load ({} processes)",
                        rep + 1,
                        self.options.reps,
                        server.label,
                        mib(started.rss),
                        mib(loaded.rss),
                        loaded.processes
                    );
                    let mut metrics = BTreeMap::new();
                    metrics.insert("rss_start_mib", mib(started.rss));
                    metrics.insert("rss_load_mib", mib(loaded.rss));
                    metrics.insert("pss_start_mib", mib(started.pss));
                    metrics.insert("pss_load_mib", mib(loaded.pss));
                    metrics.insert("processes", loaded.processes as f64);
                    metrics.insert("load_requests", result.requests as f64);
                    self.samples.push(Sample {
                        scenario: "memory",
                        server: server.id,
                        workers,
                        rep,
                        metrics,
                        details: Value::Null,
                    });
                }
            }
        }
        Ok(())
    }

    /// From spawn until the process reported all workers up and `GET /`
    /// answered 200 on a new connection.
    fn startup(&mut self, list: &[&'static Server]) -> anyhow::Result<()> {
        for &workers in &self.options.startup_workers {
            for rep in 0..self.options.reps {
                for server in list {
                    let mut times = Vec::new();
                    for _ in 0..self.options.launches {
                        let mut running =
                            servers::spawn(self.programs, server, workers, false, self.logs)?;
                        let took = running.wait_ready(READY_TIMEOUT)?;
                        running.stop();
                        times.push(took.as_secs_f64() * 1000.0);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let mut sorted = times.clone();
                    let value = median(&mut sorted);
                    eprintln!(
                        "bench: startup {workers} workers rep {}/{}: {:<34} {:>8.2} ms",
                        rep + 1,
                        self.options.reps,
                        server.label,
                        value
                    );
                    let mut metrics = BTreeMap::new();
                    metrics.insert("startup_ms", value);
                    self.samples.push(Sample {
                        scenario: "startup",
                        server: server.id,
                        workers,
                        rep,
                        metrics,
                        details: json!({ "launches_ms": times }),
                    });
                }
            }
        }
        Ok(())
    }

    /// A worker crashes; the time until a new worker (a higher worker id)
    /// answers `GET /` on a new connection.
    fn respawn(&mut self, list: &[&'static Server]) -> anyhow::Result<()> {
        let workers = self.options.workers;
        for rep in 0..self.options.reps {
            for server in list {
                let mut times = Vec::new();
                let mut failures = 0usize;
                let mut lost = 0usize;
                // A fresh server for every crash: each measures a slot's first
                // restart, which cluster_thread makes at once (further ones in
                // a row back off, as PM2's do).
                for _ in 0..self.options.respawns {
                    let mut running = self.start(server, workers, true)?;
                    let mut newest = workers as u64;
                    match crash_and_wait(&mut running, &mut newest, &mut lost) {
                        Ok(took) => times.push(took.as_secs_f64() * 1000.0),
                        Err(e) => {
                            failures += 1;
                            notice(
                                self.notices,
                                format!("respawn of {} (rep {}): {e:#}", server.label, rep + 1),
                            );
                        }
                    }
                    running.stop();
                }
                let mut sorted = times.clone();
                let value = median(&mut sorted);
                let max = sorted.last().copied().unwrap_or(f64::NAN);
                eprintln!(
                    "bench: respawn rep {}/{}: {:<34} median {:>8.2} ms, max {:>8.2} ms, {} failed",
                    rep + 1,
                    self.options.reps,
                    server.label,
                    value,
                    max,
                    failures
                );
                let mut metrics = BTreeMap::new();
                if !times.is_empty() {
                    metrics.insert("respawn_ms", value);
                    metrics.insert("respawn_max_ms", max);
                }
                metrics.insert("failures", failures as f64);
                metrics.insert("lost_probes", lost as f64);
                self.samples.push(Sample {
                    scenario: "respawn",
                    server: server.id,
                    workers,
                    rep,
                    metrics,
                    details: json!({ "attempts_ms": times }),
                });
            }
        }
        Ok(())
    }
}

/// How long a respawn probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);

/// Crash one worker (cluster_thread: `GET /panic` with `--chaos`; node: kill -9
/// a worker process) and wait until a worker with an id above `newest`
/// answers; the time from the crash to that answer.
///
/// Probes give up after [`PROBE_TIMEOUT`] and are counted in `lost`: a
/// connection handed to the dead worker (Node's SCHED_RR does that) never
/// answers, and waiting for it would measure the probe, not the respawn.
fn crash_and_wait(
    running: &mut Running,
    newest: &mut u64,
    lost: &mut usize,
) -> anyhow::Result<Duration> {
    // Learn the highest id in service first (ids only grow).
    for _ in 0..(4 * running.workers) {
        if let Ok(p) = load::probe(running.addr, "/", Duration::from_secs(1)) {
            if let Some(id) = p.worker_id {
                *newest = (*newest).max(id);
            }
        }
    }
    let mut _panic_connection = None;
    let crashed_at = if running.server.is_node() {
        let victim = running
            .node_worker_pids()
            .into_iter()
            .filter(|(_, pid)| Path::new(&format!("/proc/{pid}")).exists())
            .min_by_key(|(id, _)| *id)
            .context("no live node worker to kill")?;
        procfs::signal(victim.1, libc::SIGKILL);
        Instant::now()
    } else {
        _panic_connection = Some(load::send_only(running.addr, "/panic")?);
        Instant::now()
    };
    let deadline = crashed_at + Duration::from_secs(10);
    let parallel = running.workers.max(2);
    loop {
        let mut answers = load::probe_many(running.addr, parallel, PROBE_TIMEOUT);
        answers.sort_by_key(|(at, _)| *at);
        for (at, probe) in answers {
            match probe {
                Ok(p) => match p.worker_id {
                    Some(id) if id > *newest => {
                        *newest = id;
                        return Ok(at - crashed_at);
                    }
                    Some(_) => {}
                    None => bail!("no x-worker-id header in the answer to GET /"),
                },
                Err(e) => {
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) {
                        *lost += 1;
                    }
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no new worker answered within 10 s");
        }
        if let Some(status) = running.child.try_wait()? {
            bail!("the server exited ({status})");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
