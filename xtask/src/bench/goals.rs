//! The goals, judged: each a verdict per scope (a placement and generator,
//! or a cluster_thread mode) with the figures it was judged by.

use std::fmt::Write as _;

use super::run::Run;
use super::sample::{Generator, Group, Metric, Placement, Scenario};
use super::servers::{self, PEERS, RUST_PEERS, TLS_PEERS};
use super::summary::{Stat, Summary};

/// Ratios within this fraction of a "no worse than" goal are noted as noise.
const NOISE: f64 = 0.05;
/// A panicked slot must serve again within this many milliseconds.
const RESPAWN_TARGET_MS: f64 = 5.0;
/// Round-robin's CPU per request over reuseport's, at most: the acceptor
/// thread's hand-off is what it may cost.
const RR_LIMIT_KEEP_ALIVE: f64 = 1.03;
const RR_LIMIT_CHURN: f64 = 1.10;
/// Full-handshake churn over TLS: the handshake's crypto dominates, so the
/// goal is to be level with the best peer, within this.
const TLS_FULL_LIMIT: f64 = 1.05;

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

pub(crate) fn label(id: &str) -> &'static str {
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

pub(crate) fn scope(placement: Placement, generator: Generator) -> String {
    format!("{} · {}", placement.name(), generator.name())
}

/// A paired ratio as the goal rows print it: the median of the ratios
/// within each repetition, with their min–max when there are several.
fn ratio_text(r: Stat) -> String {
    if r.n > 1 {
        format!("{:.2}× ({:.2}–{:.2})", r.median, r.min, r.max)
    } else {
        format!("{:.2}×", r.median)
    }
}

/// "The best of `ours` is at most `limit` times the best of `theirs`",
/// judged on their ratio within each repetition. The row shows that ratio
/// alone: the medians of the two servers' values, taken separately, can
/// disagree with it (the tables below have them).
fn best_vs_best(
    summary: &Summary,
    group: Group,
    ours: &[&'static str],
    theirs: &[&'static str],
    metric: Metric,
    limit: f64,
    unit: &str,
) -> (Option<bool>, String) {
    let (Some(a), Some(b)) = (
        summary.lowest(group, ours.iter().copied(), metric),
        summary.lowest(group, theirs.iter().copied(), metric),
    ) else {
        return (None, "not measured".into());
    };
    let pair = format!("{} over {}", label(a.0), label(b.0));
    match summary.ratio(group, a.0, b.0, metric) {
        Some(r) => {
            let (met, note) = verdict_le(r.median, limit);
            (Some(met), format!("{}: {pair}{note}", ratio_text(r)))
        }
        // Never measured in the same repetition: the ratio of the medians,
        // said as such.
        None => {
            let digits = if metric == Metric::P99Ms { 3 } else { 2 };
            let r = a.1.median / b.1.median;
            let (met, note) = verdict_le(r, limit);
            (
                Some(met),
                format!(
                    "{r:.2}× of the medians ({:.digits$} / {:.digits$} {unit}): {pair}{note}",
                    a.1.median, b.1.median
                ),
            )
        }
    }
}

/// The load goals, for every placement and generator measured.
pub(crate) fn load_goals(run: &Run, summary: &Summary) -> Vec<Verdict> {
    let ct = run.cluster_thread_ids();
    let peers: Vec<&'static str> = PEERS.to_vec();
    let mut out = Vec::new();
    for (placement, generator) in run.load_scopes() {
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
        let ct_tls = run.cluster_thread_ids_of(true);
        for scenario in [
            Scenario::TlsKeepAlive,
            Scenario::TlsResumed,
            Scenario::TlsChurn,
        ] {
            if !run.options.wants(scenario)
                || (generator == Generator::Wrk && scenario == Scenario::TlsResumed)
            {
                continue;
            }
            let group = Group::load(scenario, placement, generator, workers);
            let limit = if scenario == Scenario::TlsChurn {
                TLS_FULL_LIMIT
            } else {
                1.0
            };
            let goal = if scenario == Scenario::TlsChurn {
                format!(
                    "{} CPU/req (full handshakes): best cluster_thread ≤ {limit:.2}× best TLS peer",
                    scenario.name()
                )
            } else {
                format!(
                    "{} CPU/req: best cluster_thread ≤ best TLS peer",
                    scenario.name()
                )
            };
            out.push(Verdict {
                goal,
                scope: scope.clone(),
                ..verdict(best_vs_best(
                    summary,
                    group,
                    &ct_tls,
                    TLS_PEERS,
                    Metric::CpuUsPerReq,
                    limit,
                    "µs",
                ))
            });
        }
    }
    out
}

/// A verdict's outcome, its goal and scope to be filled in.
fn verdict((met, detail): (Option<bool>, String)) -> Verdict {
    Verdict {
        goal: String::new(),
        scope: String::new(),
        met,
        detail,
    }
}

/// The goals judged per cluster_thread mode: memory, start-up, respawn.
pub(crate) fn mode_goals(run: &Run, summary: &Summary) -> Vec<Verdict> {
    let o = &run.options;
    let mut out = Vec::new();
    for id in run.cluster_thread_ids() {
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
                        "{} actix-web; {:.1} MiB after load{note}",
                        ratio_text(r),
                        me.median
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
                    "{w} workers: {} actix-web, {:.1} ms{note}",
                    ratio_text(r),
                    me.median
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::run::tests::example as run;
    use super::super::sample::Sample;
    use super::*;

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
    fn a_goal_row_shows_the_ratio_it_was_judged_by() {
        // Round-robin over hyper, per repetition: 0.91×, 1.05×, 0.91×. The
        // goal is met on their median, 0.91×, though round-robin's median
        // CPU (20) is above hyper's (19): the row must not set those two
        // beside it.
        let mut run = run();
        let group = Group::load(Scenario::KeepAlive, Placement::Pinned, Generator::Wrk, 1);
        run.samples = [(10.0, 11.0), (20.0, 19.0), (30.0, 33.0)]
            .into_iter()
            .enumerate()
            .flat_map(|(rep, (ours, theirs))| {
                [("ct-rr", ours), ("hyper-tpc", theirs)].map(|(server, cpu)| Sample {
                    group,
                    server,
                    rep,
                    metrics: BTreeMap::from([(Metric::CpuUsPerReq, cpu)]),
                    attempts_ms: Vec::new(),
                })
            })
            .collect();
        let summary = Summary::new(&run);
        let v = load_goals(&run, &summary);
        let row = v
            .iter()
            .find(|v| v.goal == "keep-alive CPU/req: best cluster_thread mode ≤ best Rust peer")
            .expect("the goal is judged");
        assert_eq!(row.met, Some(true));
        assert_eq!(
            row.detail,
            "0.91× (0.91–1.05): cluster_thread round-robin over hyper 1 (thread per core)"
        );
    }
}
