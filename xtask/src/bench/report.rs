//! From samples to figures: medians with min–max over repetitions, ratios to
//! each peer within the same repetition, the targets, markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::servers::{self, Server, PEERS, RUST_PEERS};
use super::{Client, Run, Sample};

/// Median, min and max of one figure over the repetitions.
#[derive(Clone, Copy, Debug)]
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
        let median = super::median(&mut values);
        Some(Stat {
            median,
            min: values[0],
            max: values[n - 1],
            n,
        })
    }
    fn json(&self) -> Value {
        json!({ "median": self.median, "min": self.min, "max": self.max, "n": self.n })
    }
}

/// (scenario, workers, server, metric)
type Key = (&'static str, usize, &'static str, &'static str);
/// (scenario, workers, server, peer, metric)
type RatioKey = (
    &'static str,
    usize,
    &'static str,
    &'static str,
    &'static str,
);

/// Every figure of the run, aggregated.
pub(crate) struct Summary {
    pub(crate) stats: BTreeMap<Key, Stat>,
    pub(crate) ratios: BTreeMap<RatioKey, Stat>,
}

/// The peers a ratio is computed against: the four peers and the ceiling.
fn ratio_peers() -> impl Iterator<Item = &'static str> {
    PEERS.iter().copied().chain(std::iter::once("raw"))
}

impl Summary {
    pub(crate) fn new(run: &Run) -> Summary {
        let mut values: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
        // (scenario, workers, rep) → server → sample
        let mut reps: BTreeMap<(&str, usize, usize), BTreeMap<&str, &Sample>> = BTreeMap::new();
        for s in &run.samples {
            for (metric, v) in &s.metrics {
                values
                    .entry((s.scenario, s.workers, s.server, metric))
                    .or_default()
                    .push(*v);
            }
            reps.entry((s.scenario, s.workers, s.rep))
                .or_default()
                .insert(s.server, s);
        }
        let mut ratio_values: BTreeMap<RatioKey, Vec<f64>> = BTreeMap::new();
        for ((scenario, workers, _), by_server) in &reps {
            for (server, sample) in by_server {
                for peer in ratio_peers() {
                    let Some(other) = by_server.get(peer) else {
                        continue;
                    };
                    for (metric, v) in &sample.metrics {
                        if let Some(p) = other.metrics.get(metric) {
                            if *p > 0.0 {
                                ratio_values
                                    .entry((scenario, *workers, server, peer, metric))
                                    .or_default()
                                    .push(v / p);
                            }
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

    pub(crate) fn get(
        &self,
        scenario: &str,
        workers: usize,
        server: &str,
        metric: &str,
    ) -> Option<Stat> {
        self.stats
            .iter()
            .find(|((s, w, id, m), _)| {
                *s == scenario && *w == workers && *id == server && *m == metric
            })
            .map(|(_, v)| *v)
    }

    pub(crate) fn ratio(
        &self,
        scenario: &str,
        workers: usize,
        server: &str,
        peer: &str,
        metric: &str,
    ) -> Option<Stat> {
        self.ratios
            .iter()
            .find(|((s, w, id, p, m), _)| {
                *s == scenario && *w == workers && *id == server && *p == peer && *m == metric
            })
            .map(|(_, v)| *v)
    }
}

/// Ratios within this fraction of a "no worse than" target are noted as noise.
const NOISE: f64 = 0.05;
/// A panicked slot must serve again within this many milliseconds.
const RESPAWN_TARGET_MS: f64 = 5.0;

/// One target for one cluster_thread mode.
pub(crate) struct Verdict {
    pub(crate) target: &'static str,
    pub(crate) server: &'static str,
    /// Some(true) met, Some(false) missed, None not measured.
    pub(crate) met: Option<bool>,
    pub(crate) text: String,
}

fn label(id: &str) -> &'static str {
    servers::by_id(id).map_or("?", |s| s.label)
}

/// The Rust peer with the best (lowest or highest) median of `metric`.
fn best_peer(
    summary: &Summary,
    scenario: &str,
    workers: usize,
    candidates: &[&'static str],
    metric: &str,
    lower_is_better: bool,
) -> Option<(&'static str, Stat)> {
    candidates
        .iter()
        .filter_map(|p| Some((*p, summary.get(scenario, workers, p, metric)?)))
        .min_by(|a, b| {
            let o = a.1.median.total_cmp(&b.1.median);
            if lower_is_better {
                o
            } else {
                o.reverse()
            }
        })
}

/// The verdict "`metric` of `id` is at most the best Rust peer's".
fn at_most_best_rust_peer(
    summary: &Summary,
    w: usize,
    id: &'static str,
    target: &'static str,
    metric: &str,
    shown: impl Fn(f64) -> String,
) -> Verdict {
    let (met, text) = match (
        summary.get("throughput", w, id, metric),
        best_peer(summary, "throughput", w, RUST_PEERS, metric, true),
    ) {
        (Some(me), Some((peer, _))) => {
            let r = summary
                .ratio("throughput", w, id, peer, metric)
                .map_or(f64::NAN, |s| s.median);
            let (met, note) = verdict_le(r, 1.0);
            (
                Some(met),
                format!("{}, {r:.2}× {}{note}", shown(me.median), label(peer)),
            )
        }
        _ => (None, "not measured".into()),
    };
    Verdict {
        target,
        server: id,
        met,
        text,
    }
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

pub(crate) fn targets(run: &Run, summary: &Summary) -> Vec<Verdict> {
    let w = run.options.workers;
    let rust = RUST_PEERS;
    let node: &[&'static str] = &["node-rr", "node-none"];
    let mut out = Vec::new();
    for ct in run.servers.iter().filter(|s| s.is_cluster_thread()) {
        let id = ct.id;
        // 1. CPU per request.
        out.push(at_most_best_rust_peer(
            summary,
            w,
            id,
            "CPU per request ≤ the best Rust peer's",
            "cpu_us_per_req",
            |v| format!("{v:.1} µs"),
        ));
        // 2. Requests per second.
        let t = "req/s like the best Rust peer and ≥ 2.5× Node";
        let v = match (
            summary.get("throughput", w, id, "rps"),
            best_peer(summary, "throughput", w, rust, "rps", false),
        ) {
            (Some(me), Some((peer, _))) => {
                let r = summary
                    .ratio("throughput", w, id, peer, "rps")
                    .map_or(f64::NAN, |s| s.median);
                let rust_ok = r >= 1.0;
                let mut text = format!("{:.0}/s, {r:.2}× {}", me.median, label(peer));
                if !rust_ok && r >= 1.0 - NOISE {
                    text.push_str(" (within 5%: noise)");
                }
                let node_ok = match best_peer(summary, "throughput", w, node, "rps", false) {
                    Some((n, _)) => {
                        let rn = summary
                            .ratio("throughput", w, id, n, "rps")
                            .map_or(f64::NAN, |s| s.median);
                        let _ = write!(text, ", {rn:.2}× {}", label(n));
                        rn >= 2.5
                    }
                    None => {
                        text.push_str(", Node not measured");
                        true
                    }
                };
                if let Some(c) = summary.ratio("throughput", w, id, "raw", "rps") {
                    let _ = write!(text, ", {:.0}% of ceiling", c.median * 100.0);
                }
                (Some(rust_ok && node_ok), text)
            }
            _ => (None, "not measured".into()),
        };
        out.push(Verdict {
            target: t,
            server: id,
            met: v.0,
            text: v.1,
        });
        // 3. p99.
        out.push(at_most_best_rust_peer(
            summary,
            w,
            id,
            "p99 ≤ the best Rust peer's",
            "p99_ms",
            |v| format!("{v:.2} ms"),
        ));
        // 4. RSS at 8 workers.
        let t = "RSS at 8 workers ≤ actix-web's";
        let v = match (
            summary.get("memory", 8, id, "rss_load_mib"),
            summary.ratio("memory", 8, id, "actix", "rss_load_mib"),
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
        out.push(Verdict {
            target: t,
            server: id,
            met: v.0,
            text: v.1,
        });
        // 5. Start-up.
        let t = "start-up ≤ actix-web's";
        let mut parts = Vec::new();
        let mut all = None;
        for &sw in &run.options.startup_workers {
            if let (Some(me), Some(r)) = (
                summary.get("startup", sw, id, "startup_ms"),
                summary.ratio("startup", sw, id, "actix", "startup_ms"),
            ) {
                let (met, note) = verdict_le(r.median, 1.0);
                all = Some(all.unwrap_or(true) && met);
                parts.push(format!(
                    "{sw} workers {:.1} ms, {:.2}× actix-web{note}",
                    me.median, r.median
                ));
            }
        }
        let text = if parts.is_empty() {
            "not measured".into()
        } else {
            parts.join("; ")
        };
        out.push(Verdict {
            target: t,
            server: id,
            met: all,
            text,
        });
        // 6. Respawn.
        let t = "a panicked slot serves again within 5 ms";
        let v = match summary.get("respawn", w, id, "respawn_ms") {
            Some(me) => {
                let failures = summary
                    .get("respawn", w, id, "failures")
                    .map_or(0.0, |f| f.max);
                let worst = summary
                    .get("respawn", w, id, "respawn_max_ms")
                    .map_or(f64::NAN, |m| m.max);
                let met = me.median <= RESPAWN_TARGET_MS && failures == 0.0;
                let mut text = format!("median {:.2} ms, worst {worst:.2} ms", me.median);
                if failures > 0.0 {
                    let _ = write!(text, ", {failures:.0} failed");
                }
                (Some(met), text)
            }
            None if summary.get("respawn", w, id, "failures").is_some() => {
                (Some(false), "no respawn observed".into())
            }
            None => (None, "not measured".into()),
        };
        out.push(Verdict {
            target: t,
            server: id,
            met: v.0,
            text: v.1,
        });
    }
    out
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

fn peers_present(run: &Run) -> Vec<&'static Server> {
    PEERS
        .iter()
        .filter_map(|p| run.servers.iter().copied().find(|s| s.id == *p))
        .collect()
}

fn load_section(out: &mut String, run: &Run, summary: &Summary, scenario: &str) {
    let w = run.options.workers;
    let servers: Vec<&Server> = run
        .servers
        .iter()
        .copied()
        .filter(|s| summary.get(scenario, w, s.id, "rps").is_some())
        .collect();
    if servers.is_empty() {
        return;
    }
    let o = &run.options;
    let what = if scenario == "throughput" {
        "## Throughput and latency, keep-alive"
    } else {
        "## Connection churn: a new connection per request"
    };
    let _ = writeln!(
        out,
        "{what}\n\n{w} workers each · {} connections · {:.1} s measured after {:.1} s warm-up · {} repetition(s). \
         Unpinned, generator and server share the cores, so p99 largely measures the scheduler \
         (even `raw` shows it); `--pin` separates them.\n",
        o.connections,
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
        o.reps
    );
    let header: Vec<String> = [
        "server",
        "req/s",
        "of ceiling",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "req/CPU-s",
        "errors",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let g = |m: &str| summary.get(scenario, w, s.id, m);
            vec![
                s.label.to_string(),
                cell(g("rps"), &si),
                summary
                    .ratio(scenario, w, s.id, "raw", "rps")
                    .map_or("–".into(), |r| format!("{:.0}%", r.median * 100.0)),
                cell(g("p50_ms"), &|v| fixed(v, 3)),
                cell(g("p99_ms"), &|v| fixed(v, 3)),
                cell(g("cpu_us_per_req"), &|v| fixed(v, 1)),
                cell(g("req_per_cpu_s"), &si),
                g("errors").map_or("–".into(), |e| format!("{:.0}", e.max)),
            ]
        })
        .collect();
    table(out, &header, &rows);
    let peers = peers_present(run);
    if !peers.is_empty() {
        let _ = writeln!(
            out,
            "Ratio to each peer in the same repetition (median): req/s · p99 · CPU µs/req\n"
        );
        let mut header = vec!["server".to_string()];
        header.extend(peers.iter().map(|p| p.label.to_string()));
        let rows: Vec<Vec<String>> = servers
            .iter()
            .filter(|s| s.kind != servers::Kind::Raw)
            .map(|s| {
                let mut row = vec![s.label.to_string()];
                for p in &peers {
                    if p.id == s.id {
                        row.push("1".into());
                        continue;
                    }
                    let r = |m: &str| times(summary.ratio(scenario, w, s.id, p.id, m));
                    row.push(format!(
                        "{} · {} · {}",
                        r("rps"),
                        r("p99_ms"),
                        r("cpu_us_per_req")
                    ));
                }
                row
            })
            .collect();
        table(out, &header, &rows);
    }
}

fn by_workers_section(
    out: &mut String,
    run: &Run,
    summary: &Summary,
    scenario: &str,
    worker_counts: &[usize],
    cell_of: &dyn Fn(&str, usize) -> Option<String>,
    ratio_metric: &str,
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
                        .map(|w| times(summary.ratio(scenario, *w, s.id, p.id, ratio_metric)))
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
        "{} · {}, {} cores, {:.1} GiB, Linux {} · generator: {} · {} · {} · took {:.0} s\n",
        run.started,
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["memory_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
        m["kernel"].as_str().unwrap_or("?"),
        run.generator,
        if m["pinned"].is_null() {
            "not pinned".to_string()
        } else {
            format!(
                "pinned: servers on CPUs {}, generator on {}",
                m["pinned"]["servers"].as_str().unwrap_or("?"),
                m["pinned"]["generator"].as_str().unwrap_or("?")
            )
        },
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
         (all threads of one process for the Rust servers, primary + workers for Node).\n"
    );
    if !run.notices.is_empty() {
        let _ = writeln!(out, "**Notices**\n");
        for n in &run.notices {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }

    let verdicts = targets(run, summary);
    let cts: Vec<&Server> = run
        .servers
        .iter()
        .copied()
        .filter(|s| s.is_cluster_thread())
        .collect();
    let _ = writeln!(out, "## Targets\n");
    if cts.is_empty() {
        let _ = writeln!(out, "Not judged: no cluster_thread server was measured.\n");
    } else {
        let mut header = vec!["target".to_string()];
        header.extend(cts.iter().map(|s| s.label.to_string()));
        let mut names: Vec<&str> = Vec::new();
        for v in &verdicts {
            if !names.contains(&v.target) {
                names.push(v.target);
            }
        }
        let rows: Vec<Vec<String>> = names
            .iter()
            .map(|t| {
                let mut row = vec![t.to_string()];
                for s in &cts {
                    let v = verdicts.iter().find(|v| v.target == *t && v.server == s.id);
                    row.push(match v {
                        Some(Verdict {
                            met: Some(true),
                            text,
                            ..
                        }) => format!("**MET** {text}"),
                        Some(Verdict {
                            met: Some(false),
                            text,
                            ..
                        }) => format!("**MISSED** {text}"),
                        Some(Verdict { text, .. }) => format!("n/a: {text}"),
                        None => "–".into(),
                    });
                }
                row
            })
            .collect();
        table(&mut out, &header, &rows);
    }

    let w = o.workers;
    let ka = summary.get("throughput", w, "raw", "rps");
    let churn = summary.get("churn", w, "raw", "rps");
    let mut reached = Vec::new();
    if let Some(s) = ka {
        reached.push(format!("**{}** req/s keep-alive", si(s.median)));
    }
    if let Some(s) = churn {
        reached.push(format!(
            "**{}** req/s with a new connection per request",
            si(s.median)
        ));
    }
    if !reached.is_empty() {
        let _ = writeln!(
            out,
            "## The generator's ceiling\n\nAgainst `raw` (a server on {w} threads that writes canned \
             bytes for every read, parsing no HTTP) the generator reaches {}. That is the limit on \
             this machine: a server measured near it is limited by the generator and the shared \
             cores, not by itself; compare CPU µs/req there.\n",
            reached.join(" and "),
        );
    }

    load_section(&mut out, run, summary, "throughput");
    load_section(&mut out, run, summary, "churn");

    if o.scenarios.contains(&"memory") {
        let _ = writeln!(
            out,
            "## Memory\n\nRSS of the whole process tree in MiB, after start / after {:.1} s of keep-alive load \
             ({} connections). Node's processes each count their shared pages (PSS is in report.json).\n",
            o.memory_load().as_secs_f64(),
            o.connections
        );
        let f = |id: &str, w: usize| {
            let a = summary.get("memory", w, id, "rss_start_mib")?;
            let b = summary.get("memory", w, id, "rss_load_mib")?;
            Some(format!("{} / {}", si(a.median), si(b.median)))
        };
        by_workers_section(
            &mut out,
            run,
            summary,
            "memory",
            &o.memory_workers,
            &f,
            "rss_load_mib",
        );
    }
    if o.scenarios.contains(&"startup") {
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
                .get("startup", w, id, "startup_ms")
                .map(|s| cell(Some(s), &|v| fixed(v, 1)))
        };
        by_workers_section(
            &mut out,
            run,
            summary,
            "startup",
            &o.startup_workers,
            &f,
            "startup_ms",
        );
    }
    if o.scenarios.contains(&"respawn") {
        let _ = writeln!(
            out,
            "## Respawn\n\nA worker crashes (cluster_thread with `--chaos`: `GET /panic`; Node: `kill -9` \
             of a worker process, the primary forks again); milliseconds until a new worker \
             (a higher `x-worker-id`) answers `GET /` on a new connection, probed back to back with as many connections at once as there are workers; \
             a probe unanswered after 50 ms is counted as lost and the next one starts. \
             {} crash(es) per repetition, {w} workers, each on a freshly started server: a slot's \
             first restart (cluster_thread restarts it at once; further crashes of a slot in a row \
             back off from 100 ms, as PM2 does). Servers run without `RUST_BACKTRACE`. the Rust peers: n/a (a panic there \
             does not replace a worker).\n",
            o.respawns
        );
        let rows: Vec<Vec<String>> = run
            .servers
            .iter()
            .filter(|s| s.kind != servers::Kind::Raw)
            .map(|s| {
                let g = |m: &str| summary.get("respawn", w, s.id, m);
                if !s.can_respawn() {
                    return vec![
                        s.label.to_string(),
                        "n/a".into(),
                        "n/a".into(),
                        "n/a".into(),
                        "n/a".into(),
                    ];
                }
                vec![
                    s.label.to_string(),
                    cell(g("respawn_ms"), &|v| fixed(v, 2)),
                    g("respawn_max_ms").map_or("–".into(), |m| fixed(m.max, 2)),
                    g("failures").map_or("–".into(), |f| format!("{:.0}", f.max)),
                    g("lost_probes").map_or("–".into(), |f| format!("{:.0}", f.max)),
                ]
            })
            .collect();
        table(
            &mut out,
            &["server", "median ms", "worst ms", "failed", "lost probes"].map(String::from),
            &rows,
        );
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

pub(crate) fn json(run: &Run, summary: &Summary) -> Value {
    let o = &run.options;
    let samples: Vec<Value> = run
        .samples
        .iter()
        .map(|s| {
            json!({
                "scenario": s.scenario,
                "server": s.server,
                "workers": s.workers,
                "rep": s.rep,
                "metrics": s.metrics,
                "details": s.details,
            })
        })
        .collect();
    let mut stats = serde_json::Map::new();
    for ((scenario, workers, server, metric), stat) in &summary.stats {
        let path = [
            scenario.to_string(),
            workers.to_string(),
            server.to_string(),
        ];
        nested(&mut stats, &path)[*metric] = stat.json();
    }
    let mut ratios = serde_json::Map::new();
    for ((scenario, workers, server, peer, metric), stat) in &summary.ratios {
        if server == peer {
            continue;
        }
        let path = [
            scenario.to_string(),
            workers.to_string(),
            server.to_string(),
            peer.to_string(),
        ];
        nested(&mut ratios, &path)[*metric] = stat.json();
    }
    let targets: Vec<Value> = targets(run, summary)
        .into_iter()
        .map(|v| {
            json!({
                "target": v.target,
                "server": v.server,
                "verdict": match v.met { Some(true) => "MET", Some(false) => "MISSED", None => "n/a" },
                "detail": v.text,
            })
        })
        .collect();
    json!({
        "started": run.started,
        "elapsed_s": run.elapsed.as_secs_f64(),
        "machine": run.machine,
        "generator": run.generator,
        "options": {
            "quick": o.quick,
            "workers": o.workers,
            "duration_s": o.duration.as_secs_f64(),
            "warmup_s": o.warmup.as_secs_f64(),
            "connections": o.connections,
            "reps": o.reps,
            "scenarios": o.scenarios,
            "client": match o.client { Client::Builtin => "builtin", Client::Wrk => "wrk" },
            "client_threads": o.client_threads,
            "pin": o.pin,
            "memory_workers": o.memory_workers,
            "startup_workers": o.startup_workers,
            "launches": o.launches,
            "respawns": o.respawns,
        },
        "servers": run.servers.iter().map(|s| json!({"id": s.id, "label": s.label})).collect::<Vec<_>>(),
        "notices": run.notices,
        "targets": targets,
        "summary": stats,
        "ratios": ratios,
        "samples": samples,
    })
}

/// The object at `path` in `map`, created (with its parents) if missing.
fn nested<'a>(map: &'a mut serde_json::Map<String, Value>, path: &[String]) -> &'a mut Value {
    let (first, rest) = path.split_first().expect("a non-empty path");
    let mut value = map.entry(first.clone()).or_insert_with(|| json!({}));
    for key in rest {
        value = value
            .as_object_mut()
            .expect("an object")
            .entry(key.clone())
            .or_insert_with(|| json!({}));
    }
    value
}
