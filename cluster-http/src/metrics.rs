//! The metrics endpoint's text: every slot's series, the cluster's totals,
//! then (feature `metrics`) what the user recorded through the `metrics`
//! facade, in the Prometheus text format (version 0.0.4).

use std::fmt::Write;

use cluster_core::{hooks, Phase, Worker};

use crate::histogram::BUCKETS_US;
use crate::slots::{self, Snapshot};

/// Every phase, to show each as a gauge (1 for the current one).
const PHASES: [Phase; 5] = [
    Phase::Starting,
    Phase::Listening,
    Phase::Draining,
    Phase::Stopping,
    Phase::Stopped,
];

/// One metric family: its HELP and TYPE lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP cluster_thread_{name} {help}");
    let _ = writeln!(out, "# TYPE cluster_thread_{name} {kind}");
}

/// The metrics in Prometheus text format, as seen from `worker`.
pub(crate) fn render(worker: &Worker) -> String {
    let all = slots::snapshots(worker);
    let live: Vec<&Snapshot> = all.iter().filter(|s| s.live()).collect();
    let info = worker.cluster_info();
    let mut out = String::with_capacity(2048 + live.len() * 2048);
    let per_slot = |out: &mut String,
                    name: &str,
                    kind: &str,
                    help: &str,
                    value: &dyn Fn(&Snapshot) -> String| {
        family(out, name, kind, help);
        for s in &live {
            let _ = writeln!(
                out,
                "cluster_thread_{name}{{slot=\"{}\"}} {}",
                s.slot,
                value(s)
            );
        }
    };
    // The worker's id goes in a label of this series only: the others
    // keep one series per slot across restarts.
    family(
        &mut out,
        "slot_worker",
        "gauge",
        "The worker serving the slot now (its id in the label), always 1.",
    );
    for s in &live {
        let _ = writeln!(
            out,
            "cluster_thread_slot_worker{{slot=\"{}\",worker=\"{}\"}} 1",
            s.slot, s.current.id
        );
    }
    per_slot(
        &mut out,
        "connections_accepted_total",
        "counter",
        "Connections the slot's workers accepted (one moved in from another worker counts again).",
        &|s| s.accepted.to_string(),
    );
    per_slot(
        &mut out,
        "connections_migrated_total",
        "counter",
        "Open connections the slot's draining workers handed to live workers instead of closing them.",
        &|s| s.migrated.to_string(),
    );
    // Only on clusters that serve TLS.
    if live.iter().any(|s| s.tls.iter().any(|&n| n > 0)) {
        family(
            &mut out,
            "tls_handshakes_total",
            "counter",
            "TLS handshakes the slot's workers completed, by whether a session (of any worker) was resumed.",
        );
        for s in &live {
            for (resumed, n) in [("false", s.tls[0]), ("true", s.tls[1])] {
                let _ = writeln!(
                    out,
                    "cluster_thread_tls_handshakes_total{{slot=\"{}\",resumed=\"{resumed}\"}} {n}",
                    s.slot
                );
            }
        }
        per_slot(
            &mut out,
            "tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out on the slot's workers.",
            &|s| s.tls[2].to_string(),
        );
    }
    per_slot(
        &mut out,
        "connections_active",
        "gauge",
        "Connections of the slot's workers open now.",
        &|s| s.active.to_string(),
    );
    per_slot(
        &mut out,
        "requests_total",
        "counter",
        "Requests the slot's workers received.",
        &|s| s.requests.to_string(),
    );
    #[cfg(feature = "http3")]
    for (name, kind, help, value) in [
        ("quic_connections_accepted_total", "counter", "HTTP/3: QUIC connections the slot's workers accepted (also in connections_accepted_total).", (|s| s.quic.accepted) as fn(&crate::slots::Snapshot) -> u64),
        ("quic_connections_active", "gauge", "HTTP/3: QUIC connections of the slot's workers open now (also in connections_active).", |s| s.quic.active),
        ("quic_streams_total", "counter", "HTTP/3: request streams the slot's workers received.", |s| s.quic.streams),
        ("quic_datagrams_forwarded_total", "counter", "HTTP/3: datagrams that reached the slot's socket and were forwarded to the worker their connection ID names.", |s| s.quic.forwarded),
        ("quic_retries_total", "counter", "HTTP/3: clients asked to prove their address first (Retry) under a flood of handshakes.", |s| s.quic.retries),
    ] {
        per_slot(&mut out, name, kind, help, &|s| value(s).to_string());
    }
    per_slot(
        &mut out,
        "slot_restarts_total",
        "counter",
        "Restarts of the slot before its current worker.",
        &|s| s.current.restarts.to_string(),
    );
    per_slot(
        &mut out,
        "slot_draining",
        "gauge",
        "1 while the slot's current worker drains, else 0.",
        &|s| u8::from(s.current.draining).to_string(),
    );
    per_slot(
        &mut out,
        "slot_uptime_seconds",
        "gauge",
        "How long the slot's current worker has served.",
        &|s| format!("{:.3}", s.uptime().unwrap_or_default().as_secs_f64()),
    );
    let memory = hooks::extension::<hooks::WorkerMemory>(worker);
    // Only where an allocator tells each worker's memory (the facade's
    // `jemalloc`): no series is better than a made-up one.
    if memory.known() {
        family(
            &mut out,
            "worker_memory_bytes",
            "gauge",
            "Memory the slot's current worker holds: bytes allocated from its allocator arena since it started.",
        );
        for s in &live {
            if let Some(bytes) = memory.bytes(s.current.id) {
                let _ = writeln!(
                    out,
                    "cluster_thread_worker_memory_bytes{{slot=\"{}\"}} {bytes}",
                    s.slot
                );
            }
        }
    }
    per_slot(
        &mut out,
        "memory_recycles_total",
        "counter",
        "Workers of the slot replaced for going over max_memory.",
        &|s| memory.recycles(s.slot).to_string(),
    );
    family(
        &mut out,
        "request_duration_seconds",
        "histogram",
        "Time from a request's head to the end of its response, per slot.",
    );
    for s in &live {
        let mut cumulative = 0;
        for (i, n) in s.buckets.iter().enumerate() {
            cumulative += n;
            let le = match BUCKETS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(
                out,
                "cluster_thread_request_duration_seconds_bucket{{slot=\"{}\",le=\"{le}\"}} {cumulative}",
                s.slot
            );
        }
        let _ = writeln!(
            out,
            "cluster_thread_request_duration_seconds_sum{{slot=\"{}\"}} {}",
            s.slot,
            s.sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "cluster_thread_request_duration_seconds_count{{slot=\"{}\"}} {cumulative}",
            s.slot
        );
    }
    // Totals over every slot ever (a scaled-down slot's counts stay in).
    let total = |f: fn(&Snapshot) -> u64| all.iter().map(f).sum::<u64>();
    for (name, kind, help, value) in [
        (
            "cluster_requests_total",
            "counter",
            "Requests the cluster received, all slots together.",
            total(|s| s.requests),
        ),
        (
            "cluster_connections_accepted_total",
            "counter",
            "Connections the cluster accepted, all slots together.",
            total(|s| s.accepted),
        ),
        (
            "cluster_connections_migrated_total",
            "counter",
            "Open connections handed from draining workers to live ones, all slots together.",
            total(|s| s.migrated),
        ),
        (
            "cluster_connections_active",
            "gauge",
            "Connections of the cluster open now, all slots together.",
            total(|s| s.active),
        ),
        (
            "workers",
            "gauge",
            "Workers of the cluster alive now.",
            info.workers as u64,
        ),
        (
            "restarts_total",
            "counter",
            "Workers the cluster's restart policy replaced.",
            info.restarts,
        ),
    ] {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "cluster_thread_{name} {value}");
    }
    family(
        &mut out,
        "phase",
        "gauge",
        "The cluster's phase: 1 for the current one.",
    );
    for p in PHASES {
        let _ = writeln!(
            out,
            "cluster_thread_phase{{phase=\"{p}\"}} {}",
            u8::from(p == info.phase)
        );
    }
    #[cfg(feature = "metrics")]
    if let Some(handle) = user::handle() {
        // Histograms and summaries of the exporter need it before a render.
        handle.run_upkeep();
        out.push_str(&handle.render());
    }
    out
}

/// The user's metrics: the `metrics` facade's Prometheus recorder.
#[cfg(feature = "metrics")]
pub(crate) mod user {
    use std::sync::OnceLock;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    /// Process-wide, as the facade's recorder is: every worker thread
    /// records into it, and every scrape shows it.
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

    pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
        HANDLE
            .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "the metrics endpoint shows no `metrics` facade metrics: another recorder was installed first (give its handle with cluster_http::set_metrics_handle)");
                    None
                }
            })
            .as_ref()
    }

    pub(crate) fn set(handle: PrometheusHandle) -> bool {
        HANDLE.set(Some(handle)).is_ok()
    }
}

/// The recorder of the `metrics` facade whose metrics the metrics endpoint
/// shows after its own (feature `metrics`): `metrics::counter!("jobs_total")`
/// from any worker (or the primary) lands in the same scrape. Installed
/// as the process's recorder on first use, which is when a server with a
/// metrics path starts, or this call: make it in your setup to count from
/// the very start. `None` when another recorder was installed before (then
/// give its handle with [`set_metrics_handle`]).
#[cfg(feature = "metrics")]
pub fn metrics_handle() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    user::handle()
}

/// Shows the metrics of `handle`, a Prometheus recorder you installed
/// yourself (with your own buckets, say), instead of installing one.
/// False when a handle was already in use.
#[cfg(feature = "metrics")]
pub fn set_metrics_handle(handle: metrics_exporter_prometheus::PrometheusHandle) -> bool {
    user::set(handle)
}
