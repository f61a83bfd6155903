//! `report.json`: the run as typed records (serde), flat enough for `jq` or
//! a data frame: one row per figure, per ratio, per sample.

use serde::Serialize;

use super::goals::Verdict;
use super::options::Options;
use super::run::{Machine, Run};
use super::sample::{Group, Metric, Sample};
use super::servers::Server;
use super::summary::{Stat, Summary};

#[derive(Serialize)]
pub(crate) struct Report<'a> {
    started: &'a str,
    elapsed_s: f64,
    machine: &'a Machine,
    generators: String,
    options: &'a Options,
    servers: &'a [&'static Server],
    notices: &'a [String],
    goals: Vec<Goal<'a>>,
    /// Median, min and max over the repetitions.
    summary: Vec<StatRow>,
    /// The server's figure over the peer's, per repetition, then the median.
    ratios: Vec<RatioRow>,
    samples: &'a [Sample],
}

#[derive(Serialize)]
struct Goal<'a> {
    goal: &'a str,
    scope: &'a str,
    verdict: &'static str,
    detail: &'a str,
}

#[derive(Serialize)]
struct StatRow {
    #[serde(flatten)]
    group: Group,
    server: &'static str,
    metric: Metric,
    #[serde(flatten)]
    stat: Stat,
}

#[derive(Serialize)]
struct RatioRow {
    #[serde(flatten)]
    group: Group,
    server: &'static str,
    peer: &'static str,
    metric: Metric,
    #[serde(flatten)]
    stat: Stat,
}

fn goal(v: &Verdict) -> Goal<'_> {
    Goal {
        goal: &v.goal,
        scope: &v.scope,
        verdict: match v.met {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "n/a",
        },
        detail: &v.detail,
    }
}

impl<'a> Report<'a> {
    pub(crate) fn new(run: &'a Run, summary: &Summary, verdicts: &'a [Verdict]) -> Report<'a> {
        Report {
            started: &run.started,
            elapsed_s: run.elapsed.as_secs_f64(),
            machine: &run.machine,
            generators: run.generators(),
            options: &run.options,
            servers: &run.servers,
            notices: &run.notices,
            goals: verdicts.iter().map(goal).collect(),
            summary: summary
                .stats
                .iter()
                .map(|(&(group, server, metric), &stat)| StatRow {
                    group,
                    server,
                    metric,
                    stat,
                })
                .collect(),
            ratios: summary
                .ratios
                .iter()
                .map(|(&(group, server, peer, metric), &stat)| RatioRow {
                    group,
                    server,
                    peer,
                    metric,
                    stat,
                })
                .collect(),
            samples: &run.samples,
        }
    }
}
