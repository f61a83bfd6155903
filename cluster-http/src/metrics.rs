//! This server's counters, and the Prometheus text the metrics endpoint shows.

use std::cell::Cell;
use std::fmt::Write;

use cluster_core::{Phase, Worker};

/// Counts of one server (one listener on one worker). The connection counts
/// are the server's own; while it has its listener, the metrics show the
/// listener's (which the primary's `cluster_net::stats` shows too).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: Cell<u64>,
    pub(crate) active: Cell<usize>,
    pub(crate) requests: Cell<u64>,
}

impl Counters {
    pub(crate) fn accepted(&self) {
        self.accepted.set(self.accepted.get() + 1);
    }

    pub(crate) fn set_active(&self, n: usize) {
        self.active.set(n);
    }

    pub(crate) fn request(&self) {
        self.requests.set(self.requests.get() + 1);
    }
}

/// Every phase, to show each as a gauge (1 for the current one).
const PHASES: [Phase; 5] = [
    Phase::Starting,
    Phase::Listening,
    Phase::Draining,
    Phase::Stopping,
    Phase::Stopped,
];

/// The metrics in Prometheus text format (version 0.0.4).
pub(crate) fn render(
    connections: (u64, usize),
    requests: u64,
    worker: &Worker,
    draining: bool,
) -> String {
    let (accepted, active) = connections;
    let labels = format!("worker=\"{}\",slot=\"{}\"", worker.id(), worker.slot());
    let info = worker.cluster_info();
    let mut out = String::with_capacity(1536);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        let _ = writeln!(out, "# HELP cluster_thread_{name} {help}");
        let _ = writeln!(out, "# TYPE cluster_thread_{name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "cluster_thread_{name} {value}");
            } else {
                let _ = writeln!(out, "cluster_thread_{name}{{{labels}}} {value}");
            }
        }
    };
    metric(
        "connections_accepted_total",
        "counter",
        "Connections this worker accepted on this listener.",
        &[(&labels, accepted.to_string())],
    );
    metric(
        "connections_active",
        "gauge",
        "Connections of this worker on this listener open now.",
        &[(&labels, active.to_string())],
    );
    metric(
        "requests_total",
        "counter",
        "Requests this worker received on this listener.",
        &[(&labels, requests.to_string())],
    );
    metric(
        "slot_restarts_total",
        "counter",
        "Restarts of this worker's slot before this worker.",
        &[(&labels, worker.restarts().to_string())],
    );
    metric(
        "worker_draining",
        "gauge",
        "1 while this worker drains (or the cluster does), else 0.",
        &[(&labels, u8::from(draining).to_string())],
    );
    metric(
        "workers",
        "gauge",
        "Workers of the cluster alive now.",
        &[("", info.workers.to_string())],
    );
    metric(
        "restarts_total",
        "counter",
        "Workers the cluster's restart policy replaced.",
        &[("", info.restarts.to_string())],
    );
    let phases: Vec<(String, String)> = PHASES
        .iter()
        .map(|p| {
            (
                format!("phase=\"{p}\""),
                u8::from(*p == info.phase).to_string(),
            )
        })
        .collect();
    let phases: Vec<(&str, String)> = phases
        .iter()
        .map(|(l, v)| (l.as_str(), v.clone()))
        .collect();
    metric(
        "phase",
        "gauge",
        "The cluster's phase: 1 for the current one.",
        &phases,
    );
    out
}
