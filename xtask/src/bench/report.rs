//! From samples to figures: medians with min–max over repetitions, ratios
//! between servers within the same repetition, the goals' verdicts, and the
//! markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::run::Run;
use super::sample::{
    Generator, Group, Metric, Placement, Sample, Scenario, GENERATOR_CPU, SERVER_CPU,
};
use super::servers::{self, Kind, Server, PEERS, RUST_PEERS};

/// Median, min and max of one figure over the repetitions.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

impl Stat {
    fn of(mut values: Vec<f64>) -> Option<Stat> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let median = median(&mut values);
        Some(Stat {
            median,
            min: values[0],
            max: values[n - 1],
            n,
        })
    }
}

/// The median of `values` (sorted in place); NaN for none.
pub(crate) fn median(values: &mut [f64]) -> f64 {
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

/// (group, server, metric)
pub(crate) type StatKey = (Group, &'static str, Metric);
/// (group, server, peer, metric): the server's figure over the peer's.
pub(crate) type RatioKey = (Group, &'static str, &'static str, Metric);

/// Every figure of the run, aggregated.
pub(crate) struct Summary {
    pub(crate) stats: BTreeMap<StatKey, Stat>,
    pub(crate) ratios: BTreeMap<RatioKey, Stat>,
}

/// The servers figures are given as ratios to: the peers, the ceiling, and
/// reuseport (round-robin's goal is set against it).
fn ratio_peers() -> impl Iterator<Item = &'static str> {
    PEERS.iter().copied().chain(["raw", "ct-reuseport"])
}

impl Summary {
    pub(crate) fn new(run: &Run) -> Summary {
        let mut values: BTreeMap<StatKey, Vec<f64>> = BTreeMap::new();
        // (group, rep) → server → sample
        let mut reps: BTreeMap<(Group, usize), BTreeMap<&str, &Sample>> = BTreeMap::new();
        for s in &run.samples {
            for (metric, v) in &s.metrics {
                values
                    .entry((s.group, s.server, *metric))
                    .or_default()
                    .push(*v);
            }
            reps.entry((s.group, s.rep))
                .or_default()
                .insert(s.server, s);
        }
        let mut ratio_values: BTreeMap<RatioKey, Vec<f64>> = BTreeMap::new();
        for ((group, _), by_server) in &reps {
            for (server, sample) in by_server {
                for peer in ratio_peers().filter(|p| p != server) {
                    let Some(other) = by_server.get(peer) else {
                        continue;
                    };
                    for (metric, v) in sample.metrics.iter().filter(|(m, _)| m.is_compared()) {
                        if let Some(p) = other.metrics.get(metric).filter(|p| **p > 0.0) {
                            ratio_values
                                .entry((*group, server, peer, *metric))
                                .or_default()
                                .push(v / p);
                        }
                    }
                }
            }
        }
        Summary {
            stats: values
                .into_iter()
                .filter_map(|(k, v)| Some((k, Stat::of(v)?)))
                .collect(),
            ratios: ratio_values
                .into_iter()
                .filter_map(|(k, v)| Some((k, Stat::of(v)?)))
                .collect(),
        }
    }

    pub(crate) fn get(&self, group: Group, server: &str, metric: Metric) -> Option<Stat> {
        self.stats.get(&(group, server, metric)).copied()
    }

    pub(crate) fn ratio(
        &self,
        group: Group,
        server: &str,
        peer: &str,
        metric: Metric,
    ) -> Option<Stat> {
        self.ratios.get(&(group, server, peer, metric)).copied()
    }

    /// Of `candidates`, the one with the lowest median of `metric`.
    fn lowest(
        &self,
        group: Group,
        candidates: impl IntoIterator<Item = &'static str>,
        metric: Metric,
    ) -> Option<(&'static str, Stat)> {
        candidates
            .into_iter()
            .filter_map(|id| Some((id, self.get(group, id, metric)?)))
            .min_by(|a, b| a.1.median.total_cmp(&b.1.median))
    }

    /// The ratio of `a` to `b`: the median of the per-repetition ratios.
    fn ratio_or_medians(
        &self,
        group: Group,
        a: (&str, Stat),
        b: (&str, Stat),
        metric: Metric,
    ) -> f64 {
        self.ratio(group, a.0, b.0, metric)
            .map_or(a.1.median / b.1.median, |r| r.median)
    }
}

/// Ratios within this fraction of a "no worse than" goal are noted as noise.
const NOISE: f64 = 0.05;
/// A panicked slot must serve again within this many milliseconds.
const RESPAWN_TARGET_MS: f64 = 5.0;
/// Round-robin's CPU per request over reuseport's, at most: the acceptor
/// thread's hand-off is what it may cost.
const RR_LIMIT_KEEP_ALIVE: f64 = 1.03;
const RR_LIMIT_CHURN: f64 = 1.10;

/// One goal judged in one scope (a placement and generator, or a server).
#[derive(Clone, Debug)]
pub(crate) struct Verdict {
    pub(crate) goal: String,
    /// `pinned · wrk`, … or a server id.
    pub(crate) scope: String,
    /// Some(true) met, Some(false) missed, None not measured.
    pub(crate) met: Option<bool>,
    pub(crate) detail: String,
}

fn label(id: &str) -> &'static str {
    servers::by_id(id).map_or("?", |s| s.label)
}

fn verdict_le(ratio: f64, limit: f64) -> (bool, &'static str) {
    if ratio <= limit {
        (true, "")
    } else if ratio <= limit * (1.0 + NOISE) {
        (false, " (within 5%: noise)")
    } else {
        (false, "")
    }
}

fn scope(placement: Placement, generator: Generator) -> String {
    format!("{} · {}", placement.name(), generator.name())
}

/// The (placement, generator) pairs with load figures, in report order.
pub(crate) fn load_scopes(run: &Run) -> Vec<(Placement, Generator)> {
    let o = &run.options;
    o.placements
        .iter()
        .flat_map(|p| o.generators.iter().map(move |g| (*p, *g)))
        .filter(|(p, g)| {
            run.samples
                .iter()
                .any(|s| s.group.placement == Some(*p) && s.group.generator == Some(*g))
        })
        .collect()
}

fn cluster_thread_ids(run: &Run) -> Vec<&'static str> {
    run.servers
        .iter()
        .filter(|s| s.is_cluster_thread())
        .map(|s| s.id)
        .collect()
}

/// "The best of `ours` is at most `limit` times the best of `theirs`".
fn best_vs_best(
    summary: &Summary,
    group: Group,
    ours: &[&'static str],
    theirs: &[&'static str],
    metric: Metric,
    limit: f64,
    unit: &str,
) -> (Option<bool>, String) {
    let digits = if metric == Metric::P99Ms { 3 } else { 2 };
    match (
        summary.lowest(group, ours.iter().copied(), metric),
        summary.lowest(group, theirs.iter().copied(), metric),
    ) {
        (Some(a), Some(b)) => {
            let r = summary.ratio_or_medians(group, a, b, metric);
            let (met, note) = verdict_le(r, limit);
            (
                Some(met),
                format!(
                    "{r:.2}×: {} {:.digits$} {unit} vs {} {:.digits$} {unit}{note}",
                    label(a.0),
                    a.1.median,
                    label(b.0),
                    b.1.median
                ),
            )
        }
        _ => (None, "not measured".into()),
    }
}

/// The load goals, for every placement and generator measured.
pub(crate) fn load_goals(run: &Run, summary: &Summary) -> Vec<Verdict> {
    let ct = cluster_thread_ids(run);
    let peers: Vec<&'static str> = PEERS.to_vec();
    let mut out = Vec::new();
    for (placement, generator) in load_scopes(run) {
        let workers = run.options.workers_of(placement);
        let scope = scope(placement, generator);
        for scenario in [Scenario::KeepAlive, Scenario::Churn] {
            if !run.options.wants(scenario) {
                continue;
            }
            let group = Group::load(scenario, placement, generator, workers);
            let name = scenario.name();
            let mut push = |goal: String, (met, detail): (Option<bool>, String)| {
                out.push(Verdict {
                    goal,
                    scope: scope.clone(),
                    met,
                    detail,
                })
            };
            push(
                format!("{name} CPU/req: best cluster_thread mode ≤ best Rust peer"),
                best_vs_best(
                    summary,
                    group,
                    &ct,
                    RUST_PEERS,
                    Metric::CpuUsPerReq,
                    1.0,
                    "µs",
                ),
            );
            push(
                format!("{name} p99: best cluster_thread mode ≤ best peer"),
                best_vs_best(summary, group, &ct, &peers, Metric::P99Ms, 1.0, "ms"),
            );
            let limit = if scenario == Scenario::Churn {
                RR_LIMIT_CHURN
            } else {
                RR_LIMIT_KEEP_ALIVE
            };
            push(
                format!("{name} CPU/req: round-robin ≤ {limit:.2}× reuseport"),
                best_vs_best(
                    summary,
                    group,
                    &["ct-rr"],
                    &["ct-reuseport"],
                    Metric::CpuUsPerReq,
                    limit,
                    "µs",
                ),
            );
        }
    }
    out
}

/// The goals judged per cluster_thread mode: memory, start-up, respawn.
pub(crate) fn mode_goals(run: &Run, summary: &Summary) -> Vec<Verdict> {
    let o = &run.options;
    let mut out = Vec::new();
    for id in cluster_thread_ids(run) {
        let mut push = |goal: &str, met: Option<bool>, detail: String| {
            out.push(Verdict {
                goal: goal.into(),
                scope: id.into(),
                met,
                detail,
            })
        };
        // RSS at 8 workers.
        let memory = Group::of(Scenario::Memory, 8);
        let (met, detail) = match (
            summary.get(memory, id, Metric::RssLoadMib),
            summary.ratio(memory, id, "actix", Metric::RssLoadMib),
        ) {
            (Some(me), Some(r)) => {
                let (met, note) = verdict_le(r.median, 1.0);
                (
                    Some(met),
                    format!(
                        "{:.1} MiB after load, {:.2}× actix-web{note}",
                        me.median, r.median
                    ),
                )
            }
            _ => (None, "not measured at 8 workers".into()),
        };
        push("RSS at 8 workers ≤ actix-web's", met, detail);
        // Start-up.
        let mut parts = Vec::new();
        let mut all = None;
        for &w in &o.startup_workers {
            let g = Group::of(Scenario::Startup, w);
            if let (Some(me), Some(r)) = (
                summary.get(g, id, Metric::StartupMs),
                summary.ratio(g, id, "actix", Metric::StartupMs),
            ) {
                let (met, note) = verdict_le(r.median, 1.0);
                all = Some(all.unwrap_or(true) && met);
                parts.push(format!(
                    "{w} workers {:.1} ms, {:.2}× actix-web{note}",
                    me.median, r.median
                ));
            }
        }
        let detail = if parts.is_empty() {
            "not measured".into()
        } else {
            parts.join("; ")
        };
        push("start-up ≤ actix-web's", all, detail);
        // Respawn.
        let g = Group::of(Scenario::Respawn, o.workers);
        let failures = summary.get(g, id, Metric::Failures).map_or(0.0, |f| f.max);
        let (met, detail) = match summary.get(g, id, Metric::RespawnMs) {
            Some(me) => {
                let worst = summary
                    .get(g, id, Metric::RespawnMaxMs)
                    .map_or(f64::NAN, |m| m.max);
                let mut text = format!("median {:.2} ms, worst {worst:.2} ms", me.median);
                if failures > 0.0 {
                    let _ = write!(text, ", {failures:.0} failed");
                }
                (
                    Some(me.median <= RESPAWN_TARGET_MS && failures == 0.0),
                    text,
                )
            }
            None if summary.get(g, id, Metric::Failures).is_some() => {
                (Some(false), "no respawn observed".into())
            }
            None => (None, "not measured".into()),
        };
        push("a panicked slot serves again within 5 ms", met, detail);
    }
    out
}

/// Every verdict of the run, load goals first.
pub(crate) fn all_goals(run: &Run, summary: &Summary) -> Vec<Verdict> {
    let mut all = load_goals(run, summary);
    all.extend(mode_goals(run, summary));
    all
}

fn si(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".into()
    }
}

/// `median (min–max)`, or just the median for a single repetition.
fn cell(stat: Option<Stat>, fmt: &dyn Fn(f64) -> String) -> String {
    match stat {
        None => "–".into(),
        Some(s) if s.n == 1 || s.min == s.max => fmt(s.median),
        Some(s) => format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max)),
    }
}

fn times(stat: Option<Stat>) -> String {
    stat.map_or("–".into(), |s| format!("{:.2}×", s.median))
}

fn table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn peers_present(run: &Run) -> Vec<&'static Server> {
    PEERS
        .iter()
        .filter_map(|p| run.servers.iter().copied().find(|s| s.id == *p))
        .collect()
}

fn verdict_cell(v: Option<&Verdict>) -> String {
    match v {
        Some(Verdict {
            met: Some(true),
            detail,
            ..
        }) => format!("**MET** {detail}"),
        Some(Verdict {
            met: Some(false),
            detail,
            ..
        }) => format!("**MISSED** {detail}"),
        Some(Verdict { detail, .. }) => format!("n/a: {detail}"),
        None => "–".into(),
    }
}

/// A table of verdicts: a row per goal, a column per scope.
fn verdict_table(out: &mut String, verdicts: &[Verdict], scopes: &[(String, String)]) {
    let mut goals: Vec<&str> = Vec::new();
    for v in verdicts {
        if !goals.contains(&v.goal.as_str()) {
            goals.push(&v.goal);
        }
    }
    let mut header = vec!["goal".to_string()];
    header.extend(scopes.iter().map(|(_, title)| title.clone()));
    let rows: Vec<Vec<String>> = goals
        .iter()
        .map(|goal| {
            let mut row = vec![goal.to_string()];
            row.extend(scopes.iter().map(|(scope, _)| {
                verdict_cell(
                    verdicts
                        .iter()
                        .find(|v| v.goal == *goal && v.scope == *scope),
                )
            }));
            row
        })
        .collect();
    table(out, &header, &rows);
}

/// One placement and generator: the issue's table (CPU per request and p99
/// per scenario, then req/s), the ratios of CPU per request to each peer,
/// and the generator's ceiling.
fn load_section(
    out: &mut String,
    run: &Run,
    summary: &Summary,
    placement: Placement,
    generator: Generator,
) {
    let o = &run.options;
    let workers = o.workers_of(placement);
    let scenarios: Vec<Scenario> = [Scenario::KeepAlive, Scenario::Churn]
        .into_iter()
        .filter(|s| o.wants(*s))
        .collect();
    let group = |s: Scenario| Group::load(s, placement, generator, workers);
    let _ = writeln!(out, "### {}\n", generator.label());
    let mut header = vec!["server".to_string()];
    for what in ["CPU µs/req", "p99 ms", "req/s"] {
        header.extend(scenarios.iter().map(|s| format!("{} {what}", s.name())));
    }
    header.push("errors".into());
    let servers: Vec<&Server> = run
        .servers
        .iter()
        .copied()
        .filter(|s| {
            scenarios
                .iter()
                .any(|sc| summary.get(group(*sc), s.id, Metric::Rps).is_some())
        })
        .collect();
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut row = vec![s.label.to_string()];
            let g = |sc: Scenario, m: Metric| summary.get(group(sc), s.id, m);
            row.extend(
                scenarios
                    .iter()
                    .map(|sc| cell(g(*sc, Metric::CpuUsPerReq), &|v| fixed(v, 2))),
            );
            row.extend(
                scenarios
                    .iter()
                    .map(|sc| cell(g(*sc, Metric::P99Ms), &|v| fixed(v, 3))),
            );
            row.extend(scenarios.iter().map(|sc| cell(g(*sc, Metric::Rps), &si)));
            let errors: f64 = scenarios
                .iter()
                .filter_map(|sc| g(*sc, Metric::Errors).map(|e| e.max))
                .sum();
            row.push(format!("{errors:.0}"));
            row
        })
        .collect();
    table(out, &header, &rows);

    let peers = peers_present(run);
    if !peers.is_empty() {
        let names: Vec<&str> = scenarios.iter().map(|s| s.name()).collect();
        let _ = writeln!(
            out,
            "CPU µs/req over each peer's in the same repetition (median), {}:\n",
            names.join(" · ")
        );
        let mut header = vec!["server".to_string()];
        header.extend(peers.iter().map(|p| p.label.to_string()));
        let rows: Vec<Vec<String>> = servers
            .iter()
            .filter(|s| s.kind != Kind::Raw)
            .map(|s| {
                let mut row = vec![s.label.to_string()];
                row.extend(peers.iter().map(|p| {
                    if p.id == s.id {
                        return "1".into();
                    }
                    scenarios
                        .iter()
                        .map(|sc| times(summary.ratio(group(*sc), s.id, p.id, Metric::CpuUsPerReq)))
                        .collect::<Vec<_>>()
                        .join(" · ")
                }));
                row
            })
            .collect();
        table(out, &header, &rows);
    }
    let ceiling: Vec<String> = scenarios
        .iter()
        .filter_map(|sc| {
            let s = summary.get(group(*sc), "raw", Metric::Rps)?;
            Some(format!("**{}** req/s {}", si(s.median), sc.name()))
        })
        .collect();
    if !ceiling.is_empty() {
        let _ = writeln!(
            out,
            "The generator's ceiling here (`raw`: canned bytes for every read, no HTTP parsing): {}. \
             A server near it is limited by the generator, not by itself: compare CPU µs/req.\n",
            ceiling.join(", ")
        );
    }
}

fn by_workers_section(
    out: &mut String,
    run: &Run,
    summary: &Summary,
    scenario: Scenario,
    worker_counts: &[usize],
    cell_of: &dyn Fn(&str, usize) -> Option<String>,
    ratio_metric: Metric,
) {
    let servers: Vec<&Server> = run
        .servers
        .iter()
        .copied()
        .filter(|s| worker_counts.iter().any(|w| cell_of(s.id, *w).is_some()))
        .collect();
    if servers.is_empty() {
        return;
    }
    let mut header = vec!["server".to_string()];
    header.extend(
        worker_counts
            .iter()
            .map(|w| format!("{w} worker{}", if *w == 1 { "" } else { "s" })),
    );
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut row = vec![s.label.to_string()];
            row.extend(
                worker_counts
                    .iter()
                    .map(|w| cell_of(s.id, *w).unwrap_or("–".into())),
            );
            row
        })
        .collect();
    table(out, &header, &rows);
    let peers = peers_present(run);
    if peers.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Ratio to each peer in the same repetition (median), at {} workers\n",
        worker_counts
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(" · ")
    );
    let mut header = vec!["server".to_string()];
    header.extend(peers.iter().map(|p| p.label.to_string()));
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut row = vec![s.label.to_string()];
            for p in &peers {
                if p.id == s.id {
                    row.push("1".into());
                    continue;
                }
                row.push(
                    worker_counts
                        .iter()
                        .map(|w| {
                            times(summary.ratio(Group::of(scenario, *w), s.id, p.id, ratio_metric))
                        })
                        .collect::<Vec<_>>()
                        .join(" · "),
                );
            }
            row
        })
        .collect();
    table(out, &header, &rows);
}

pub(crate) fn markdown(run: &Run, summary: &Summary) -> String {
    let o = &run.options;
    let m = &run.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# cluster_thread benchmark\n");
    let _ = writeln!(
        out,
        "{} · {}, {} cores, {:.1} GiB, Linux {} · generators: {} · {} · took {:.0} s\n",
        run.started,
        m.cpu,
        m.cores,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        run.generators(),
        if o.quick {
            "--quick (a smoke run: figures are rough)"
        } else {
            "full run"
        },
        run.elapsed.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "Figures are medians over repetitions, with (min–max) when there are several. \
         Servers run interleaved (A B C A B C …). Ratios are taken between servers within \
         the same repetition, then the median of those ratios is shown. CPU is the server's \
         own user + system time over the measured window, summed over its process tree \
         (all threads of one process for the Rust servers, primary + workers for Node). \
         Pinned: each server restricted to CPU {SERVER_CPU} with 1 worker, the generator to CPU \
         {GENERATOR_CPU}. Unpinned: {} workers each, no affinity (the generator shares the cores, so \
         p99 there largely measures the scheduler). Churn: `Connection: close` on every request.\n",
        o.workers
    );
    if !run.notices.is_empty() {
        let _ = writeln!(out, "**Notices**\n");
        for n in &run.notices {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Goals\n");
    let ct = cluster_thread_ids(run);
    if ct.is_empty() {
        let _ = writeln!(out, "Not judged: no cluster_thread server was measured.\n");
    } else {
        let load = load_goals(run, summary);
        if !load.is_empty() {
            let scopes: Vec<(String, String)> = load_scopes(run)
                .into_iter()
                .map(|(p, g)| (scope(p, g), format!("{}, {}", p.name(), g.label())))
                .collect();
            verdict_table(&mut out, &load, &scopes);
        }
        let scopes: Vec<(String, String)> = ct
            .iter()
            .map(|id| (id.to_string(), label(id).to_string()))
            .collect();
        verdict_table(&mut out, &mode_goals(run, summary), &scopes);
    }

    for &placement in &o.placements {
        let scopes: Vec<Generator> = load_scopes(run)
            .into_iter()
            .filter(|(p, _)| *p == placement)
            .map(|(_, g)| g)
            .collect();
        if scopes.is_empty() {
            continue;
        }
        let title = match placement {
            Placement::Pinned => format!(
                "## Pinned: 1 worker on CPU {SERVER_CPU}, the generator on CPU {GENERATOR_CPU}"
            ),
            Placement::Unpinned => {
                format!("## Unpinned: {} workers each, no affinity", o.workers)
            }
        };
        let (wrk_duration, wrk_warmup) = super::load::wrk_seconds(o.duration, o.warmup);
        let wrk_note = if o.generators.contains(&Generator::Wrk)
            && (wrk_duration as f64 != o.duration.as_secs_f64()
                || wrk_warmup as f64 != o.warmup.as_secs_f64())
        {
            format!(" (wrk: {wrk_duration} s after {wrk_warmup} s; it takes whole seconds)")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{title}\n\n{} connections · {:.1} s measured after {:.1} s of warm-up{wrk_note} · {} repetition(s).\n",
            o.connections,
            o.duration.as_secs_f64(),
            o.warmup.as_secs_f64(),
            o.reps
        );
        for generator in scopes {
            load_section(&mut out, run, summary, placement, generator);
        }
    }

    if o.wants(Scenario::Memory) {
        let _ = writeln!(
            out,
            "## Memory\n\nRSS of the whole process tree in MiB, after start / after {:.1} s of keep-alive load \
             ({} connections). Every server is a hello world: cluster_thread's is `examples/hello` built with \
             only the features it uses (`--no-default-features --features macros,net,http`, as the peers \
             leave out what they do not use); `same_port` with every default feature (TLS, the Prometheus \
             exporter) and its logging maps about 1.3 MiB more code. Node's processes each count their shared \
             pages (PSS is in report.json).\n",
            o.memory_load().as_secs_f64(),
            o.connections
        );
        let f = |id: &str, w: usize| {
            let g = Group::of(Scenario::Memory, w);
            let a = summary.get(g, id, Metric::RssStartMib)?;
            let b = summary.get(g, id, Metric::RssLoadMib)?;
            Some(format!("{} / {}", si(a.median), si(b.median)))
        };
        by_workers_section(
            &mut out,
            run,
            summary,
            Scenario::Memory,
            &o.memory_workers,
            &f,
            Metric::RssLoadMib,
        );
    }
    if o.wants(Scenario::Idle) {
        idle_section(&mut out, run, summary);
    }
    if o.wants(Scenario::Startup) {
        let _ = writeln!(
            out,
            "## Start-up\n\nMilliseconds from spawning the process until it has reported every worker \
             up (cluster_thread: N `Worker … started` lines and `listening on`; Node: N workers' \
             `listening` events; the Rust peers: `listening on`, printed once their worker \
             threads run) and `GET /` on a new connection answers 200. Median of {} launch(es) per \
             repetition.\n",
            o.launches
        );
        let f = |id: &str, w: usize| {
            summary
                .get(Group::of(Scenario::Startup, w), id, Metric::StartupMs)
                .map(|s| cell(Some(s), &|v| fixed(v, 1)))
        };
        by_workers_section(
            &mut out,
            run,
            summary,
            Scenario::Startup,
            &o.startup_workers,
            &f,
            Metric::StartupMs,
        );
    }
    if o.wants(Scenario::Respawn) {
        respawn_section(&mut out, run, summary);
    }
    let mut command = String::from("cargo xtask bench");
    for arg in std::env::args().skip(2) {
        command.push(' ');
        command.push_str(&arg);
    }
    let _ = writeln!(
        out,
        "Run: `{command}` · raw data: report.json · chart: report.svg"
    );
    out
}

fn idle_section(out: &mut String, run: &Run, summary: &Summary) {
    let o = &run.options;
    let g = Group::of(Scenario::Idle, o.workers);
    let _ = writeln!(
        out,
        "## Memory per idle keep-alive connection\n\n{} workers each, warmed up by {} connections for 0.3 s; \
         then {} keep-alive connections opened and held: RSS growth of the process tree per \
         connection in KiB, once every connection is accepted (no request yet) and after one \
         request on each (the connections still open). Node's figures move with its garbage \
         collector, and can be below zero.\n",
        o.workers, o.connections, o.idle_connections
    );
    let rows: Vec<Vec<String>> = run
        .servers
        .iter()
        .filter_map(|s| {
            let get = |m: Metric| summary.get(g, s.id, m);
            let after = get(Metric::IdleKibPerConn)?;
            Some(vec![
                s.label.to_string(),
                cell(get(Metric::IdleBaseMib), &|v| fixed(v, 1)),
                cell(get(Metric::IdleKibPerConnOpened), &|v| fixed(v, 1)),
                cell(Some(after), &|v| fixed(v, 1)),
                if s.id == "actix" {
                    "1".into()
                } else {
                    times(summary.ratio(g, s.id, "actix", Metric::IdleKibPerConn))
                },
                get(Metric::IdleConnections).map_or("–".into(), |c| format!("{:.0}", c.min)),
            ])
        })
        .collect();
    table(
        out,
        &strings(&[
            "server",
            "RSS before, MiB",
            "KiB/conn, opened",
            "KiB/conn, after a request",
            "× actix-web",
            "connections held",
        ]),
        &rows,
    );
}

fn respawn_section(out: &mut String, run: &Run, summary: &Summary) {
    let o = &run.options;
    let w = o.workers;
    let _ = writeln!(
        out,
        "## Respawn\n\nA worker crashes (cluster_thread with `--chaos`: `GET /panic`; Node: `kill -9` \
         of a worker process, the primary forks again); milliseconds until a new worker \
         (a higher `x-worker-id`) answers `GET /` on a new connection, probed back to back with as many connections at once as there are workers; \
         a probe unanswered after 50 ms is counted as lost and the next one starts. \
         {} crash(es) per repetition, {w} workers, each on a freshly started server: a slot's \
         first restart (cluster_thread restarts it at once; further crashes of a slot in a row \
         back off from 100 ms, as PM2 does). Servers run without `RUST_BACKTRACE`. The Rust peers: n/a (a panic there \
         does not replace a worker).\n",
        o.respawns
    );
    let g = Group::of(Scenario::Respawn, w);
    let rows: Vec<Vec<String>> = run
        .servers
        .iter()
        .filter(|s| s.kind != Kind::Raw)
        .map(|s| {
            let get = |m: Metric| summary.get(g, s.id, m);
            if !s.can_respawn() {
                let mut row = vec![s.label.to_string()];
                row.extend(["n/a"; 4].map(String::from));
                return row;
            }
            vec![
                s.label.to_string(),
                cell(get(Metric::RespawnMs), &|v| fixed(v, 2)),
                get(Metric::RespawnMaxMs).map_or("–".into(), |m| fixed(m.max, 2)),
                get(Metric::Failures).map_or("–".into(), |f| format!("{:.0}", f.max)),
                get(Metric::LostProbes).map_or("–".into(), |f| format!("{:.0}", f.max)),
            ]
        })
        .collect();
    table(
        out,
        &strings(&["server", "median ms", "worst ms", "failed", "lost probes"]),
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::json;
    use super::super::options::Options;
    use super::super::run::Machine;
    use super::*;

    /// A run of three servers, pinned, one generator, two repetitions, with
    /// made-up figures: what the verdicts must make of them.
    fn run() -> Run {
        let args = [
            "--pin",
            "--generators",
            "wrk",
            "--servers",
            "ct-rr,ct-reuseport,hyper-tpc",
        ];
        let options = Options::parse(lexopt::Parser::from_args(args)).unwrap();
        let mut samples = Vec::new();
        for rep in 0..2 {
            for (scenario, figures) in [
                // (server, CPU µs/req, p99 ms)
                (
                    Scenario::KeepAlive,
                    [
                        ("ct-rr", 10.0, 1.0),
                        ("ct-reuseport", 9.9, 2.0),
                        ("hyper-tpc", 10.0, 1.5),
                    ],
                ),
                (
                    Scenario::Churn,
                    [
                        ("ct-rr", 60.0, 3.0),
                        ("ct-reuseport", 50.0, 3.0),
                        ("hyper-tpc", 45.0, 4.0),
                    ],
                ),
            ] {
                for (server, cpu, p99) in figures {
                    samples.push(Sample {
                        group: Group::load(scenario, Placement::Pinned, Generator::Wrk, 1),
                        server,
                        rep,
                        metrics: BTreeMap::from([
                            (Metric::CpuUsPerReq, cpu + rep as f64 * 0.01),
                            (Metric::P99Ms, p99),
                            (Metric::Rps, 1e6 / cpu),
                        ]),
                        attempts_ms: Vec::new(),
                    });
                }
            }
        }
        Run {
            servers: options.servers.clone(),
            options,
            started: "now".into(),
            machine: Machine {
                cpu: "test".into(),
                cores: 2,
                memory_bytes: 1 << 30,
                kernel: "6".into(),
            },
            notices: Vec::new(),
            samples,
            elapsed: Duration::from_secs(1),
        }
    }

    fn met(verdicts: &[Verdict], goal: &str) -> Option<bool> {
        verdicts
            .iter()
            .find(|v| v.goal == goal && v.scope == "pinned · wrk")
            .unwrap_or_else(|| panic!("no verdict for {goal}"))
            .met
    }

    #[test]
    fn goals_compare_the_best_of_each_side() {
        let run = run();
        let summary = Summary::new(&run);
        let v = load_goals(&run, &summary);
        // reuseport 9.9 ≤ hyper-tpc 10.0; its p99 is worse, but round-robin's is the best.
        assert_eq!(
            met(
                &v,
                "keep-alive CPU/req: best cluster_thread mode ≤ best Rust peer"
            ),
            Some(true)
        );
        assert_eq!(
            met(&v, "keep-alive p99: best cluster_thread mode ≤ best peer"),
            Some(true)
        );
        // 10.0 / 9.9 is within 1.03.
        assert_eq!(
            met(&v, "keep-alive CPU/req: round-robin ≤ 1.03× reuseport"),
            Some(true)
        );
        // 50 > 45; p99 3 ≤ 4; 60 / 50 = 1.2 > 1.10.
        assert_eq!(
            met(
                &v,
                "churn CPU/req: best cluster_thread mode ≤ best Rust peer"
            ),
            Some(false)
        );
        assert_eq!(
            met(&v, "churn p99: best cluster_thread mode ≤ best peer"),
            Some(true)
        );
        assert_eq!(
            met(&v, "churn CPU/req: round-robin ≤ 1.10× reuseport"),
            Some(false)
        );
        let ratio = summary
            .ratio(
                Group::load(Scenario::Churn, Placement::Pinned, Generator::Wrk, 1),
                "ct-rr",
                "ct-reuseport",
                Metric::CpuUsPerReq,
            )
            .unwrap();
        assert_eq!(ratio.n, 2);
        assert!((ratio.median - 1.2).abs() < 0.01);
    }

    #[test]
    fn reports_render_every_part() {
        let run = run();
        let summary = Summary::new(&run);
        let md = markdown(&run, &summary);
        for part in [
            "## Goals",
            "## Pinned: 1 worker on CPU 1, the generator on CPU 0",
            "### wrk",
            "| server | keep-alive CPU µs/req | churn CPU µs/req | keep-alive p99 ms | churn p99 ms |",
            "**MISSED** 1.11×: cluster_thread reuseport 50.0",
        ] {
            assert!(md.contains(part), "no `{part}` in\n{md}");
        }
        assert!(!md.contains("## Unpinned"));
        let goals = all_goals(&run, &summary);
        let text = serde_json::to_string(&json::Report::new(&run, &summary, &goals)).unwrap();
        for part in [
            r#""scenario":"churn","placement":"pinned","generator":"wrk","workers":1,"server":"ct-rr","metric":"cpu_us_per_req","median":60.00"#,
            r#""verdict":"MISSED""#,
            r#""placements":["pinned"]"#,
        ] {
            assert!(text.contains(part), "no `{part}` in {text}");
        }
        assert!(super::super::svg::chart(&run, &summary).contains("churn: CPU µs/req, pinned, wrk"));
    }
}
