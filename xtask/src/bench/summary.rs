//! From samples to figures: medians with min–max over repetitions, and
//! ratios between servers within the same repetition.

use std::collections::BTreeMap;

use serde::Serialize;

use super::run::Run;
use super::sample::{Group, Metric, Sample};
use super::servers::{PEERS, TLS_PEERS};

/// Median, min and max of one figure over the repetitions.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

impl Stat {
    pub(crate) fn of(mut values: Vec<f64>) -> Option<Stat> {
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

/// The servers figures are given as ratios to: the peers (plain and TLS),
/// the ceiling, and reuseport (round-robin's goal is set against it).
fn ratio_peers() -> impl Iterator<Item = &'static str> {
    PEERS
        .iter()
        .chain(TLS_PEERS)
        .copied()
        .chain(["raw", "ct-reuseport"])
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
    pub(crate) fn lowest(
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
}
