//! `cargo xtask bench`: cluster_thread against actix-web, hyper, axum and Node's
//! cluster, on this machine. See `cargo xtask bench --help`.

mod goals;
mod json;
mod load;
mod markdown;
mod options;
pub(crate) mod procfs;
mod run;
mod sample;
pub(crate) mod servers;
mod summary;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use options::Options;
use run::{Machine, Run};
use sample::{Generator, Group, Metric, Placement, Sample, Scenario, GENERATOR_CPU, SERVER_CPU};
use servers::{Launch, Programs, Running, Server};
use summary::median;

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

/// Now, to the minute: `2025-01-31 12:34 UTC`.
fn date() -> String {
    // `2025-01-31T12:34:56Z`
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    format!(
        "{} UTC",
        now.get(..16).unwrap_or(&now).replacen('T', " ", 1)
    )
}

/// Builds (or finds) every program the selected servers need; what cannot
/// be had is a notice, and its rows are skipped.
fn programs(options: &Options, notices: &mut Vec<String>) -> anyhow::Result<Programs> {
    let root = workspace_root();
    let target = target_dir()?;
    let mut programs = Programs::default();
    let wants = |pred: fn(&Server) -> bool| options.servers.iter().any(|s| pred(s));
    if wants(|s| s.tls) && options.scenarios.iter().any(|s| s.is_tls()) {
        let dir = options
            .out
            .clone()
            .unwrap_or(target.join("bench"))
            .join("tls");
        programs.tls = Some(servers::TlsFiles::make(&dir).context("making the TLS certificate")?);
    }
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
                    Err(why) => notice(notices, format!("cluster_thread rows skipped: {why}")),
                }
            }
        }
        if options.wants(Scenario::Memory) {
            eprintln!("bench: building examples/hello (release, only the features it uses)");
            match servers::build_hello(&root, &target) {
                Ok(bin) => programs.hello = Some(bin),
                Err(why) => notice(
                    notices,
                    format!("cluster_thread memory rows skipped: {why}"),
                ),
            }
        }
    }
    if wants(Server::is_node) {
        match servers::find_node() {
            Some(node) => programs.node = Some((node, root.join("bench/node/cluster.js"))),
            None => notice(
                notices,
                "node is not on PATH: the Node cluster rows are skipped".into(),
            ),
        }
    }
    Ok(programs)
}

/// `cargo xtask bench ...`
pub(crate) fn main(args: lexopt::Parser) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut options = Options::parse(args)?;
    let out = match &options.out {
        Some(dir) => dir.clone(),
        None => target_dir()?.join("bench"),
    };
    let mut notices = Vec::new();
    let programs = programs(&options, &mut notices)?;

    let wants_load = options.scenarios.iter().any(|s| s.is_load());
    if wants_load && options.generators.contains(&Generator::Wrk) && !load::wrk_available() {
        if options.generators == [Generator::Wrk] {
            bail!("--generators wrk: wrk is not installed (apt-get install -y wrk)");
        }
        notice(
            &mut notices,
            "wrk is not installed (apt-get install -y wrk): only the built-in generator was run"
                .into(),
        );
        options.generators.retain(|g| *g != Generator::Wrk);
    }
    let (cpu, cores, memory_bytes, kernel) = procfs::machine();
    if wants_load && cores <= SERVER_CPU && options.placements.contains(&Placement::Pinned) {
        if options.placements == [Placement::Pinned] {
            bail!("--pin needs at least 2 cores");
        }
        notice(
            &mut notices,
            "one core only: the pinned runs are skipped".into(),
        );
        options.placements.retain(|p| *p != Placement::Pinned);
    }
    if options.wants(Scenario::Idle) {
        let limit =
            test_support::raise_fd_limit(u64::MAX).context("raising the open files limit")?;
        // Both ends of every connection, plus what the servers hold anyway.
        let needed = 2 * options.idle_connections as u64 + 256;
        if limit < needed {
            notice(
                &mut notices,
                format!(
                    "open files limited to {limit}: the idle scenario may hold fewer connections"
                ),
            );
        }
    }

    let measured: Vec<&'static Server> = options
        .servers
        .iter()
        .copied()
        .filter(|s| programs.available(s))
        .collect();
    let mut run = Run {
        started: date(),
        machine: Machine {
            cpu,
            cores,
            memory_bytes,
            kernel,
        },
        notices,
        servers: measured.clone(),
        samples: Vec::new(),
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
    bench.load_scenarios(&measured)?;
    // The other scenarios are plaintext: the TLS servers are only measured
    // under load.
    let not_raw: Vec<&'static Server> = measured
        .iter()
        .copied()
        .filter(|s| s.kind != servers::Kind::Raw && !s.tls)
        .collect();
    if options.wants(Scenario::Memory) {
        let lean: Vec<&'static Server> = not_raw
            .iter()
            .copied()
            .filter(|s| !s.is_cluster_thread() || programs.hello.is_some())
            .collect();
        bench.memory(&lean)?;
    }
    if options.wants(Scenario::Idle) {
        bench.idle(&not_raw)?;
    }
    if options.wants(Scenario::Startup) {
        bench.startup(&not_raw)?;
    }
    if options.wants(Scenario::Respawn) {
        let crashable: Vec<&'static Server> = not_raw
            .iter()
            .copied()
            .filter(|s| s.can_respawn())
            .collect();
        bench.respawn(&crashable)?;
    }
    run.elapsed = began.elapsed();

    let summary = summary::Summary::new(&run);
    let markdown = markdown::markdown(&run, &summary);
    println!("{markdown}");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.md"), &markdown)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&json::Report::new(
            &run,
            &summary,
            &goals::all_goals(&run, &summary),
        ))? + "\n",
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

/// The figures of one load run.
fn load_metrics(result: &load::LoadResult) -> BTreeMap<Metric, f64> {
    let mut metrics = BTreeMap::from([
        (Metric::Rps, result.requests as f64 / result.window),
        (Metric::P50Ms, result.p50_ms),
        (Metric::P90Ms, result.p90_ms),
        (Metric::P99Ms, result.p99_ms),
        (Metric::MaxMs, result.max_ms),
        (Metric::Errors, result.errors as f64),
        (Metric::Requests, result.requests as f64),
        (Metric::ServerCpuS, result.server_cpu),
    ]);
    if let Some(p) = result.p999_ms {
        metrics.insert(Metric::P999Ms, p);
    }
    if let Some(c) = result.client_cpu {
        metrics.insert(Metric::ClientCpuS, c);
    }
    if let Some((handshakes, resumed)) = result.handshakes.filter(|(h, _)| *h > 0) {
        metrics.insert(Metric::ResumedShare, resumed as f64 / handshakes as f64);
    }
    if result.requests > 0 && result.server_cpu > 0.0 {
        metrics.insert(
            Metric::CpuUsPerReq,
            result.server_cpu * 1e6 / result.requests as f64,
        );
        metrics.insert(
            Metric::ReqPerCpuS,
            result.requests as f64 / result.server_cpu,
        );
    }
    metrics
}

impl Bench<'_> {
    fn start(&mut self, server: &Server, launch: Launch) -> anyhow::Result<Running> {
        let mut running = servers::spawn(self.programs, server, launch, self.logs)?;
        running.wait_ready(READY_TIMEOUT).with_context(|| {
            format!(
                "starting {} (stderr in {})",
                server.label,
                servers::log_path(self.logs, server, launch).display()
            )
        })?;
        Ok(running)
    }

    fn load(
        &self,
        running: &Running,
        generator: Generator,
        scenario: Scenario,
        cpu: Option<usize>,
        duration: Duration,
        warmup: Duration,
    ) -> anyhow::Result<load::LoadResult> {
        // A session cache of its own for every run (filled in the warm-up),
        // none at all where every handshake is to be a full one.
        let tls = running.tls.as_ref().map(|config| {
            let mut config = tokio_rustls::rustls::ClientConfig::clone(config);
            config.resumption = if scenario == Scenario::TlsChurn {
                tokio_rustls::rustls::client::Resumption::disabled()
            } else {
                tokio_rustls::rustls::client::Resumption::in_memory_sessions(256)
            };
            std::sync::Arc::new(config)
        });
        let spec = load::LoadSpec {
            addr: running.addr,
            connections: self.options.connections,
            threads: self.options.generator_threads,
            cpu,
            warmup,
            duration,
            churn: scenario.is_churn(),
            tls,
        };
        match generator {
            Generator::Builtin => load::run_builtin(&spec, running.pid()),
            Generator::Wrk => load::run_wrk(&spec, running.pid()),
        }
    }

    /// Keep-alive and churn: every server started once per placement and
    /// kept up; then, for each repetition, placement, scenario and
    /// generator, one run of each server in turn (A B C A B C ...).
    fn load_scenarios(&mut self, list: &[&'static Server]) -> anyhow::Result<()> {
        let o = self.options;
        let scenarios: Vec<Scenario> = o
            .scenarios
            .iter()
            .copied()
            .filter(|s| s.is_load())
            .collect();
        if scenarios.is_empty() {
            return Ok(());
        }
        // A TLS server only where a TLS scenario is run, and the other way round.
        let list: Vec<&'static Server> = list
            .iter()
            .copied()
            .filter(|s| scenarios.iter().any(|sc| sc.is_tls() == s.tls))
            .collect();
        let mut running: Vec<(Placement, Running)> = Vec::new();
        for &placement in &o.placements {
            let launch = Launch {
                cpu: (placement == Placement::Pinned).then_some(SERVER_CPU),
                ..Launch::workers(o.workers_of(placement))
            };
            for server in &list {
                eprintln!(
                    "bench: starting {} ({}, {} workers)",
                    server.label,
                    placement.name(),
                    launch.workers
                );
                running.push((placement, self.start(server, launch)?));
            }
        }
        for rep in 0..o.reps {
            for &placement in &o.placements {
                let workers = o.workers_of(placement);
                let cpu = (placement == Placement::Pinned).then_some(GENERATOR_CPU);
                for &scenario in &scenarios {
                    for &generator in &o.generators {
                        // wrk keeps no session to offer: it has no resumed churn.
                        if generator == Generator::Wrk && scenario == Scenario::TlsResumed {
                            continue;
                        }
                        let group = Group::load(scenario, placement, generator, workers);
                        let here = running
                            .iter()
                            .filter(|(p, r)| *p == placement && r.server.tls == scenario.is_tls());
                        for (_, r) in here {
                            let result =
                                self.load(r, generator, scenario, cpu, o.duration, o.warmup)?;
                            let metrics = load_metrics(&result);
                            eprintln!(
                                "bench: {} {} {} rep {}/{}: {:<34} {:>9.0} req/s  p99 {:>7.3} ms  CPU {:>6.1} µs/req  errors {}",
                                placement.name(),
                                scenario.name(),
                                generator.name(),
                                rep + 1,
                                o.reps,
                                r.server.label,
                                metrics[&Metric::Rps],
                                result.p99_ms,
                                metrics.get(&Metric::CpuUsPerReq).copied().unwrap_or(f64::NAN),
                                result.errors
                            );
                            self.samples.push(Sample {
                                group,
                                server: r.server.id,
                                rep,
                                metrics,
                                attempts_ms: Vec::new(),
                            });
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }
        }
        for (_, r) in running {
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
                    // Hello worlds all: cluster_thread's lean `hello`.
                    let launch = Launch {
                        lean: true,
                        ..Launch::workers(workers)
                    };
                    let running = self.start(server, launch)?;
                    std::thread::sleep(Duration::from_millis(100));
                    let started = procfs::tree_memory(running.pid());
                    let result = self.load(
                        &running,
                        Generator::Builtin,
                        Scenario::KeepAlive,
                        None,
                        load_time,
                        Duration::ZERO,
                    )?;
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
                    self.samples.push(Sample {
                        group: Group::of(Scenario::Memory, workers),
                        server: server.id,
                        rep,
                        metrics: BTreeMap::from([
                            (Metric::RssStartMib, mib(started.rss)),
                            (Metric::RssLoadMib, mib(loaded.rss)),
                            (Metric::PssStartMib, mib(started.pss)),
                            (Metric::PssLoadMib, mib(loaded.pss)),
                            (Metric::Processes, loaded.processes as f64),
                            (Metric::LoadRequests, result.requests as f64),
                        ]),
                        attempts_ms: Vec::new(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Memory per idle keep-alive connection: after a short warm-up load,
    /// RSS before, with `--idle-connections` connections open (no request
    /// yet) and after one request on each (still open).
    fn idle(&mut self, list: &[&'static Server]) -> anyhow::Result<()> {
        let o = self.options;
        let workers = o.workers;
        let warmup = Duration::from_millis(300);
        for rep in 0..o.reps {
            for server in list {
                let running = self.start(server, Launch::workers(workers))?;
                let pid = running.pid();
                // Every worker has served before the baseline: what grows
                // afterwards is the connections' own memory.
                self.load(
                    &running,
                    Generator::Builtin,
                    Scenario::KeepAlive,
                    None,
                    warmup,
                    Duration::ZERO,
                )?;
                std::thread::sleep(Duration::from_millis(200));
                let fds = procfs::tree_fds(pid);
                let base = procfs::tree_memory(pid).rss;
                let mut streams = load::open_idle(running.addr, o.idle_connections);
                let held = streams.len();
                let accepted = wait_for_fds(pid, fds + held, Duration::from_secs(5));
                let opened = procfs::tree_memory(pid).rss;
                let answered = load::request_each(running.addr, &mut streams);
                std::thread::sleep(Duration::from_millis(100));
                let after = procfs::tree_memory(pid).rss;
                drop(streams);
                running.stop();
                if !accepted || answered < held || held < o.idle_connections {
                    notice(
                        self.notices,
                        format!(
                            "idle, {} (rep {}): {held} of {} connections opened, {answered} answered{}",
                            server.label,
                            rep + 1,
                            o.idle_connections,
                            if accepted { "" } else { ", not all accepted within 5 s" }
                        ),
                    );
                }
                let per_conn = |rss: u64| (rss as f64 - base as f64) / 1024.0 / held.max(1) as f64;
                eprintln!(
                    "bench: idle rep {}/{}: {:<34} base {:>6.1} MiB, {:>6.1} KiB per connection opened, {:>6.1} KiB after a request ({held} held)",
                    rep + 1,
                    o.reps,
                    server.label,
                    mib(base),
                    per_conn(opened),
                    per_conn(after)
                );
                self.samples.push(Sample {
                    group: Group::of(Scenario::Idle, workers),
                    server: server.id,
                    rep,
                    metrics: BTreeMap::from([
                        (Metric::IdleBaseMib, mib(base)),
                        (Metric::IdleConnections, held as f64),
                        (Metric::IdleKibPerConnOpened, per_conn(opened)),
                        (Metric::IdleKibPerConn, per_conn(after)),
                    ]),
                    attempts_ms: Vec::new(),
                });
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
                        let mut running = servers::spawn(
                            self.programs,
                            server,
                            Launch::workers(workers),
                            self.logs,
                        )?;
                        let took = running.wait_ready(READY_TIMEOUT)?;
                        running.stop();
                        times.push(took.as_secs_f64() * 1000.0);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let value = median(&mut times.clone());
                    eprintln!(
                        "bench: startup {workers} workers rep {}/{}: {:<34} {:>8.2} ms",
                        rep + 1,
                        self.options.reps,
                        server.label,
                        value
                    );
                    self.samples.push(Sample {
                        group: Group::of(Scenario::Startup, workers),
                        server: server.id,
                        rep,
                        metrics: BTreeMap::from([(Metric::StartupMs, value)]),
                        attempts_ms: times,
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
                    let launch = Launch {
                        chaos: true,
                        ..Launch::workers(workers)
                    };
                    let mut running = self.start(server, launch)?;
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
                let mut metrics = BTreeMap::from([
                    (Metric::Failures, failures as f64),
                    (Metric::LostProbes, lost as f64),
                ]);
                if !times.is_empty() {
                    metrics.insert(Metric::RespawnMs, value);
                    metrics.insert(Metric::RespawnMaxMs, max);
                }
                self.samples.push(Sample {
                    group: Group::of(Scenario::Respawn, workers),
                    server: server.id,
                    rep,
                    metrics,
                    attempts_ms: times,
                });
            }
        }
        Ok(())
    }
}

/// Waits until the tree under `pid` holds at least `fds` descriptors (every
/// connection accepted); false if it did not within `timeout`.
fn wait_for_fds(pid: u32, fds: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while procfs::tree_fds(pid) < fds {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The last connections' tasks set up after their accept.
    std::thread::sleep(Duration::from_millis(100));
    true
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_utc_to_the_minute() {
        let date = super::date();
        let shape: String = date
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99 99:99 UTC", "{date}");
    }
}
