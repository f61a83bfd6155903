//! What each command does to the cluster, with the progress lines it
//! streams on the way, and the figures `ls` shows (rates and CPU over the
//! last five seconds, from a sample taken every second).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cluster_core::{hooks, Cluster, ClusterEvent, Events, WorkerHandle};

use crate::conn::Conn;
use crate::protocol::{Body, Command, Setting, Status, WorkerRow};
use crate::provided::{Identity, LiveSetting, Providers, Stats};

/// How far back `ls`'s rates and CPU look.
const WINDOW: Duration = Duration::from_secs(5);

/// How long `scale` waits for each new worker to listen.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Lines `logs` sends unless asked for another number.
const DEFAULT_LINES: usize = 100;

pub(crate) struct Ctx {
    pub(crate) cluster: Cluster,
    identity: Identity,
    providers: Providers,
    started: Instant,
    samples: Mutex<VecDeque<Sample>>,
    /// One changing command (reload, restart, scale, upgrade) at a time.
    ops: tokio::sync::Mutex<()>,
}

/// What one second's sample saw.
struct Sample {
    at: Instant,
    /// Requests per slot.
    requests: BTreeMap<usize, u64>,
    /// CPU clock ticks per worker id.
    cpu: BTreeMap<u64, u64>,
}

impl Ctx {
    pub(crate) fn new(cluster: Cluster, identity: Identity, providers: Providers) -> Ctx {
        Ctx {
            cluster,
            identity,
            providers,
            started: Instant::now(),
            samples: Mutex::default(),
            ops: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn handed_over(&self) -> bool {
        self.providers
            .handed_over
            .as_ref()
            .is_some_and(|f| f(&self.cluster))
    }

    fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for provider in &self.providers.stats {
            provider(&self.cluster, &mut stats);
        }
        stats
    }

    fn sample(&self, workers: &[WorkerHandle], stats: &Stats) -> Sample {
        Sample {
            at: Instant::now(),
            requests: workers
                .iter()
                .filter_map(|w| Some((w.slot(), stats.requests(w.slot())?)))
                .collect(),
            cpu: workers
                .iter()
                .filter_map(|w| Some((w.id(), cpu_ticks(w.os_tid()?)?)))
                .collect(),
        }
    }

    fn record(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back(sample);
        while samples.len() > 1 && samples[0].at.elapsed() > WINDOW + Duration::from_secs(1) {
            samples.pop_front();
        }
    }

    /// The cluster and its workers now.
    fn status(&self) -> Status {
        let cluster = &self.cluster;
        let info = cluster.info();
        let workers: Vec<WorkerHandle> = cluster
            .workers()
            .into_iter()
            .filter(|w| !w.is_dead())
            .collect();
        let stats = self.stats();
        let now = self.sample(&workers, &stats);
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        // The oldest sample within the window that saw `value`: the base of
        // its rate, and how long ago it was taken.
        let base = |value: &dyn Fn(&Sample) -> Option<u64>| {
            samples
                .iter()
                .filter(|s| now.at.duration_since(s.at) <= WINDOW + Duration::from_millis(500))
                .find_map(|s| Some((value(s)?, now.at.duration_since(s.at).as_secs_f64())))
        };
        let ticks = clock_ticks();
        // Known only where an allocator tells it (the facade's `jemalloc`).
        let memory = hooks::cluster_extension::<hooks::WorkerMemory>(cluster);
        let rows = workers
            .iter()
            .map(|w| {
                let (slot, id) = (w.slot(), w.id());
                let figures = stats.of(slot, id);
                let requests_per_second = now.requests.get(&slot).and_then(|&n| {
                    let (n0, dt) = base(&|s| s.requests.get(&slot).copied())?;
                    (dt >= 0.5).then(|| n.saturating_sub(n0) as f64 / dt)
                });
                let cpu_percent = now.cpu.get(&id).and_then(|&t| {
                    let ticks = ticks? as f64;
                    // New since the last sample: since its fork.
                    let (t0, dt) =
                        base(&|s| s.cpu.get(&id).copied()).unwrap_or((0, w.uptime().as_secs_f64()));
                    (dt > 0.0).then(|| t.saturating_sub(t0) as f64 / ticks / dt * 100.0)
                });
                WorkerRow {
                    slot,
                    id,
                    state: state(w).to_owned(),
                    uptime_seconds: round(w.uptime().as_secs_f64()),
                    restarts: w.restarts(),
                    connections: figures.connections,
                    requests: figures.requests,
                    requests_per_second: requests_per_second.map(round),
                    cpu_percent: cpu_percent.map(round),
                    memory_bytes: memory.bytes(id),
                }
            })
            .collect();
        let balances: BTreeSet<&str> = stats.listeners.iter().map(|l| l.balance.as_str()).collect();
        Status {
            name: self.identity.name.clone(),
            pid: std::process::id(),
            program_version: self.identity.version.clone(),
            cluster_thread: env!("CARGO_PKG_VERSION").to_owned(),
            phase: info.phase.to_string(),
            size: info.slots,
            uptime_seconds: round(self.started.elapsed().as_secs_f64()),
            restarts: info.restarts,
            balance: (!balances.is_empty())
                .then(|| balances.into_iter().collect::<Vec<_>>().join(",")),
            listeners: stats.listeners,
            memory_bytes: resident_bytes(),
            workers: rows,
        }
    }

    /// Every live setting: the core's, the logs', then the providers'.
    fn settings(&self) -> Vec<LiveSetting> {
        let mut all = vec![
            LiveSetting::new(
                "drain_delay",
                "how long a graceful stop serves on while health checks fail (2s, 500ms, 0s)",
                |c| humantime::format_duration(c.drain_delay()).to_string(),
                |c, v| {
                    let d = humantime::parse_duration(v.trim())
                        .map_err(|e| format!("{v:?}: {e} (such as 2s or 500ms)"))?;
                    c.set_drain_delay(d);
                    Ok(())
                },
            ),
            LiveSetting::new(
                "log_level",
                "the log filter, as RUST_LOG (info, debug, info,cluster_http=debug)",
                |_| crate::logs::log_level().unwrap_or_else(|e| e.to_string()),
                |_, v| crate::logs::set_log_level(v).map_err(|e| e.to_string()),
            ),
        ];
        for s in &self.providers.settings {
            all.retain(|b| b.key != s.key);
            all.push(s.clone());
        }
        all
    }
}

fn setting(cluster: &Cluster, s: &LiveSetting) -> Setting {
    Setting {
        key: s.key.clone(),
        value: (s.get)(cluster),
        help: s.help.clone(),
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn state(w: &WorkerHandle) -> &'static str {
    if !w.is_connected() {
        "draining"
    } else if w.is_ready() {
        "listening"
    } else if w.is_online() {
        "online"
    } else {
        "starting"
    }
}

/// A thread's user and system CPU time so far, in clock ticks.
fn cpu_ticks(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // After the command name (which may hold spaces): the state is field 3,
    // utime field 14 and stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> Option<u64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    u64::try_from(ticks).ok().filter(|&t| t > 0)
}

/// The process's resident memory (`/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some(pages * u64::try_from(page).ok()?)
}

/// Takes a sample each second, for the rates of `ls`.
pub(crate) async fn sample_every_second(ctx: std::sync::Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let workers: Vec<WorkerHandle> = ctx.cluster.workers();
        let stats = ctx.stats();
        let sample = ctx.sample(&workers, &stats);
        ctx.record(sample);
    }
}

/// Runs one command, streaming its lines to `conn`.
pub(crate) async fn run(ctx: &Ctx, command: Command, uid: u32, conn: &mut Conn) {
    let cluster = &ctx.cluster;
    if !matches!(command, Command::Ls | Command::Get | Command::Logs { .. }) {
        tracing::info!(uid, ?command, "control: command");
    }
    match command {
        Command::Ls => {
            conn.send(Body::Status(ctx.status())).await;
        }
        Command::Get => {
            let settings = ctx.settings().iter().map(|s| setting(cluster, s)).collect();
            conn.send(Body::Settings { settings }).await;
        }
        Command::Set { key, value } => {
            let all = ctx.settings();
            let body = match all.iter().find(|s| s.key == key) {
                None => Body::Error {
                    error: format!(
                        "unknown setting {key:?}; the settings are {}",
                        all.iter()
                            .map(|s| s.key.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                Some(s) => match (s.set)(cluster, &value) {
                    Ok(()) => Body::Settings {
                        settings: vec![setting(cluster, s)],
                    },
                    Err(e) => Body::Error {
                        error: format!("set {key}: {e}"),
                    },
                },
            };
            conn.send(body).await;
        }
        Command::Logs {
            slot,
            lines,
            follow,
        } => logs(slot, lines.unwrap_or(DEFAULT_LINES), follow, conn).await,
        Command::Stop { now } => {
            let how = if now { "now" } else { "gracefully" };
            conn.send(Body::Done {
                message: format!("stopping {how}"),
                pid: None,
            })
            .await;
            let cluster = cluster.clone();
            tokio::spawn(async move { cluster.stop(!now).await });
        }
        Command::Reload { parallel } => {
            let _one = exclusive(ctx, conn).await;
            let events = hooks::later_events(cluster);
            let n = parallel.unwrap_or(1).max(1);
            let size = cluster.size();
            let body = match with_progress(conn, events, cluster.reload_parallel(n)).await {
                Ok(()) => done(format!("reloaded: {size} workers replaced, {n} at a time")),
                Err(e) => error(e),
            };
            conn.send(body).await;
        }
        Command::Restart { slot } => {
            let _one = exclusive(ctx, conn).await;
            let events = hooks::later_events(cluster);
            let old = live_in(cluster, slot);
            let body = match with_progress(conn, events, cluster.restart_slot(slot)).await {
                Ok(()) => done(format!(
                    "slot {slot} restarted: worker {} replaced by {}",
                    old.map_or_else(|| "?".into(), |w| w.id().to_string()),
                    live_in(cluster, slot).map_or_else(|| "?".into(), |w| w.id().to_string()),
                )),
                Err(e) => error(e),
            };
            conn.send(body).await;
        }
        Command::Scale { workers } => {
            let _one = exclusive(ctx, conn).await;
            let current = cluster.size();
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let target = match workers.target(current, cpus) {
                Ok(n) => n,
                Err(e) => {
                    conn.send(Body::Error { error: e }).await;
                    return;
                }
            };
            let events = hooks::later_events(cluster);
            let before: HashSet<u64> = cluster.workers().iter().map(WorkerHandle::id).collect();
            let scaled = async {
                cluster.scale(target).await.map_err(|e| e.to_string())?;
                // Done once the new ones listen (or said they are ready).
                for w in cluster
                    .workers()
                    .iter()
                    .filter(|w| !before.contains(&w.id()))
                {
                    match tokio::time::timeout(LISTEN_WAIT, w.ready()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(format!("worker {} exited: {e}", w.id())),
                        // A program that never listens: online is all it does.
                        Err(_) => {}
                    }
                }
                Ok::<_, String>(())
            };
            let body = match with_progress(conn, events, scaled).await {
                Ok(()) => done(format!("scaled from {current} to {target} workers")),
                Err(e) => error(e),
            };
            conn.send(body).await;
        }
        Command::Upgrade => {
            let Some(upgrade) = ctx.providers.upgrade.clone() else {
                conn.send(error(
                    "this program has no hot upgrade (cluster_net::ClusterBuilderExt::hot_upgrade)",
                ))
                .await;
                return;
            };
            let _one = exclusive(ctx, conn).await;
            conn.send(Body::Progress {
                message: format!("process {}: starting the new process", std::process::id()),
            })
            .await;
            let events = hooks::later_events(cluster);
            let body = match with_progress(conn, events, upgrade(cluster.clone())).await {
                Ok(pid) => Body::Done {
                    message: format!(
                        "upgraded: process {pid} serves now; process {} drains",
                        std::process::id()
                    ),
                    pid: Some(pid),
                },
                Err(e) => error(format!("hot upgrade failed: {e}; this process serves on")),
            };
            conn.send(body).await;
        }
    }
}

fn done(message: String) -> Body {
    Body::Done { message, pid: None }
}

fn error(e: impl ToString) -> Body {
    Body::Error {
        error: e.to_string(),
    }
}

fn live_in(cluster: &Cluster, slot: usize) -> Option<WorkerHandle> {
    cluster
        .workers()
        .into_iter()
        .find(|w| w.slot() == slot && w.is_connected())
}

/// Waits for the changing command under way, if any, saying so.
async fn exclusive<'a>(ctx: &'a Ctx, conn: &mut Conn) -> tokio::sync::MutexGuard<'a, ()> {
    if let Ok(guard) = ctx.ops.try_lock() {
        return guard;
    }
    conn.send(Body::Progress {
        message: "waiting for the command under way to finish".into(),
    })
    .await;
    ctx.ops.lock().await
}

/// Drives `op` to its end (never dropped half way, even if the client
/// leaves), sending a progress line for each worker event meanwhile.
async fn with_progress<T, E>(
    conn: &mut Conn,
    mut events: Events,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::pin!(op);
    loop {
        tokio::select! {
            biased;
            result = &mut op => {
                while let Some(event) = events.try_recv() {
                    progress(conn, &event).await;
                }
                return result;
            }
            Some(event) = events.recv() => progress(conn, &event).await,
        }
    }
}

async fn progress(conn: &mut Conn, event: &ClusterEvent) {
    let at = |w: &WorkerHandle| format!("slot {}: worker {}", w.slot(), w.id());
    let message = match event {
        ClusterEvent::Fork { worker } => format!("{} started", at(worker)),
        ClusterEvent::Listening { worker, address } => {
            format!("{} listening on {address}", at(worker))
        }
        ClusterEvent::Ready { worker } => format!("{} ready", at(worker)),
        ClusterEvent::Disconnect { worker } => format!("{} draining", at(worker)),
        ClusterEvent::Exit { worker, reason } => format!("{} exited ({reason})", at(worker)),
        ClusterEvent::Restarting { slot, delay } => {
            format!("slot {slot}: restarting in {delay:?}")
        }
        ClusterEvent::Errored { slot, last, .. } => {
            format!("slot {slot}: errored, no more restarts ({last})")
        }
        ClusterEvent::Phase(phase) => format!("cluster {phase}"),
        ClusterEvent::MemoryLimit {
            worker,
            bytes,
            limit,
        } => format!(
            "{} over max_memory ({bytes} bytes > {limit}): replacing it",
            at(worker)
        ),
        _ => return,
    };
    conn.send(Body::Progress { message }).await;
}

/// `logs`: the last `n` lines, then (`follow`) each new one until the
/// client closes.
async fn logs(slot: Option<usize>, n: usize, follow: bool, conn: &mut Conn) {
    let ring = crate::logs::logs();
    // Lines after this are followed; those before, in the backlog.
    let mut last = ring.last_seq();
    let backlog = ring.lines(slot, 0, n);
    let sent = backlog.len();
    for line in backlog {
        last = last.max(line.seq);
        if !conn.send(Body::Log(line)).await {
            return;
        }
    }
    if !follow {
        conn.send(done(format!("{sent} lines"))).await;
        return;
    }
    loop {
        let new_line = ring.new_line.notified();
        tokio::pin!(new_line);
        new_line.as_mut().enable();
        for line in ring.lines(slot, last, usize::MAX) {
            last = line.seq;
            if !conn.send(Body::Log(line)).await {
                return;
            }
        }
        tokio::select! {
            () = new_line => {}
            () = conn.closed() => return,
        }
    }
}
