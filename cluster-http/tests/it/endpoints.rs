//! The opt-in endpoints: `/healthz` answers 200 while serving and 503 once
//! the cluster drains; `/metrics` is Prometheus text whose counters move
//! with the traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{self, eventually, serve_app, start, DEADLINE, H1};
use cluster_core::{Cluster, Phase};
use cluster_http::HttpConfig;
use cluster_net::stats;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> HttpConfig {
    HttpConfig::default()
        .healthz("/healthz")
        .metrics("/metrics")
        .drain_timeout(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_200_while_serving_and_503_while_draining() {
    let running = start(2, |b| b.state(config()), serve_app(None)).await;
    let addr = running.addr;
    let cluster = running.cluster.clone();

    let reply = common::get(addr, "/healthz").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "ok\n");
    // Other methods and paths go to the service.
    assert_eq!(
        common::get(addr, "/healthz/x").await.unwrap().status,
        StatusCode::NOT_FOUND
    );

    // A request whose head is half sent when the drain begins: the server has
    // it, so it is answered, and answered 503.
    let accepted: u64 = stats(&cluster).iter().map(|s| s.accepted).sum();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    eventually(
        || stats(&cluster).iter().map(|s| s.accepted).sum::<u64>() > accepted,
        "the connection accepted by a worker",
    )
    .await;
    let stopping = disconnect_until_draining(&cluster).await;
    stream.write_all(b"\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("no answer before the deadline")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer:?}"
    );
    assert!(answer.ends_with("\r\n\r\ndraining\n"), "{answer:?}");
    // ... and then closed (read_to_end returned): the drain ends.
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the cluster did not stop before the deadline")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_through_the_drain_delay_while_requests_are_served() {
    // Long enough that the requests below, made at once, fall inside it.
    let delay = Duration::from_secs(3);
    let running = start(2, |b| b.state(config()).drain_delay(delay), serve_app(None)).await;
    let (addr, cluster) = (running.addr, running.cluster.clone());
    assert_eq!(
        common::get(addr, "/healthz").await.unwrap().status,
        StatusCode::OK
    );
    let stopping = disconnect_until_draining(&cluster).await;
    // The load balancer is told to go away, and whatever still comes, on
    // new connections, is served.
    let health = common::get(addr, "/healthz").await.unwrap();
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    );
    for _ in 0..4 {
        let page = common::get(addr, "/").await.unwrap();
        assert_eq!(
            (page.status, page.body.as_str()),
            (StatusCode::OK, "hello world\n")
        );
    }
    assert!(cluster.workers().iter().all(|w| w.is_connected()));
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the cluster did not stop before the deadline")
        .unwrap();
}

/// One sample: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A small parser of the Prometheus text format: comments (`# HELP`,
/// `# TYPE`) and samples `name{k="v",...} value`.
fn parse(text: &str) -> Vec<Sample> {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name, rest) = (words.next(), words.next(), words.next());
            assert!(
                matches!(kind, Some("HELP" | "TYPE")),
                "bad comment {line:?}"
            );
            let name = name.unwrap_or_else(|| panic!("no metric name in {line:?}"));
            if kind == Some("TYPE") {
                let t = rest.unwrap_or_default();
                assert!(
                    ["counter", "gauge", "histogram", "summary"].contains(&t),
                    "bad type in {line:?}"
                );
                types.insert(name.to_owned(), t.to_owned());
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels = labels
                    .split(',')
                    .map(|pair| {
                        let (k, v) = pair
                            .split_once('=')
                            .unwrap_or_else(|| panic!("bad label in {line:?}"));
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("unquoted label in {line:?}"));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| {
                matches!(
                    types.get(*base).map(String::as_str),
                    Some("histogram" | "summary")
                )
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no TYPE before {line:?}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

fn value(samples: &[Sample], name: &str) -> f64 {
    let found: Vec<_> = samples.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].value
}

/// The samples of `name` by their `slot` label.
fn by_slot(samples: &[Sample], name: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels["slot"].clone(), s.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scrape_shows_every_slot_and_counters_survive_a_restart() {
    let running = start(2, |b| b.state(config()), serve_app(None)).await;
    let addr = running.addr;

    // One keep-alive connection: every request reaches the same worker.
    let mut conn = H1::connect(addr).await.unwrap();
    let worker = conn.get("/").await.unwrap().worker();
    let first = conn.get("/metrics").await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let before = parse(&first.body);
    let slot = running
        .cluster
        .worker(worker)
        .expect("the worker that answered")
        .slot()
        .to_string();
    // Both slots in one scrape, whichever worker answered; the worker id
    // only in its info series.
    let workers: BTreeMap<String, String> = before
        .iter()
        .filter(|s| s.name == "cluster_thread_slot_worker")
        .map(|s| (s.labels["slot"].clone(), s.labels["worker"].clone()))
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert_eq!(workers[&slot], worker.to_string());
    for s in before
        .iter()
        .filter(|s| s.name != "cluster_thread_slot_worker")
    {
        assert!(!s.labels.contains_key("worker"), "{s:?}");
    }
    for name in [
        "cluster_thread_requests_total",
        "cluster_thread_connections_active",
        "cluster_thread_connections_accepted_total",
        "cluster_thread_slot_restarts_total",
        "cluster_thread_slot_draining",
        "cluster_thread_request_duration_seconds_count",
        "cluster_thread_memory_recycles_total",
    ] {
        assert_eq!(by_slot(&before, name).len(), 2, "{name}");
    }
    // Nothing tells each worker's memory here (no jemalloc arenas): no
    // series rather than a made-up one.
    assert!(
        !before
            .iter()
            .any(|s| s.name == "cluster_thread_worker_memory_bytes"),
        "memory per worker is unknown"
    );
    assert_eq!(
        by_slot(&before, "cluster_thread_memory_recycles_total")
            .values()
            .sum::<f64>(),
        0.0
    );
    assert_eq!(value(&before, "cluster_thread_workers"), 2.0);
    assert_eq!(value(&before, "cluster_thread_restarts_total"), 0.0);
    let phases: BTreeMap<_, _> = before
        .iter()
        .filter(|s| s.name == "cluster_thread_phase")
        .map(|s| (s.labels["phase"].clone(), s.value))
        .collect();
    assert_eq!(phases.len(), 5, "{phases:?}");
    assert_eq!(phases["listening"], 1.0, "{phases:?}");
    assert_eq!(phases.values().sum::<f64>(), 1.0, "{phases:?}");
    let requests = by_slot(&before, "cluster_thread_requests_total");
    assert!(requests[&slot] >= 2.0, "{requests:?}");
    assert!(by_slot(&before, "cluster_thread_connections_active")[&slot] >= 1.0);
    // The first request's latency was recorded by the time of the scrape.
    assert!(by_slot(&before, "cluster_thread_request_duration_seconds_count")[&slot] >= 1.0);
    assert_eq!(
        value(&before, "cluster_thread_cluster_requests_total"),
        requests.values().sum::<f64>()
    );

    // Traffic on this connection moves this slot's counters.
    for _ in 0..5 {
        assert_eq!(conn.get("/").await.unwrap().status, StatusCode::OK);
    }
    let after = parse(&conn.get("/metrics").await.unwrap().body);
    assert_eq!(
        by_slot(&after, "cluster_thread_requests_total")[&slot],
        requests[&slot] + 6.0
    );
    let buckets: Vec<f64> = after
        .iter()
        .filter(|s| {
            s.name == "cluster_thread_request_duration_seconds_bucket" && s.labels["slot"] == slot
        })
        .map(|s| s.value)
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );

    // The worker panics and is replaced: its slot's counters go on, its
    // info series names the new worker.
    let _ = conn.get("/panic").await;
    let end = tokio::time::Instant::now() + DEADLINE;
    let later = loop {
        let reply = common::get(addr, "/metrics").await.unwrap();
        let later = parse(&reply.body);
        let now = later
            .iter()
            .find(|s| s.name == "cluster_thread_slot_worker" && s.labels["slot"] == slot)
            .map(|s| s.labels["worker"].clone());
        if now.is_some_and(|w| w != worker.to_string()) {
            break later;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "slot {slot} never got a new worker"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(by_slot(&later, "cluster_thread_requests_total")[&slot] >= requests[&slot] + 7.0);
    assert_eq!(
        by_slot(&later, "cluster_thread_slot_restarts_total")[&slot],
        1.0
    );
    assert_eq!(value(&later, "cluster_thread_restarts_total"), 1.0);
    common::stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_passes_promtool_and_carries_the_users_metrics() {
    let running = start(
        2,
        |b| {
            // As the docs say: in the setup, so that the workers count from
            // their very start (before any server installs the recorder).
            let _ = cluster_http::metrics_handle();
            b.state(config())
        },
        |w: cluster_core::Worker| async move {
            // The user's own metrics, through the `metrics` facade, from
            // each worker: the only increments of this series.
            metrics::counter!("app_jobs_total", "kind" => "worker").increment(1);
            serve_app(None)(w).await
        },
    )
    .await;
    // Some traffic first, so that every series has samples.
    for _ in 0..10 {
        assert_eq!(
            common::get(running.addr, "/").await.unwrap().status,
            StatusCode::OK
        );
    }
    metrics::describe_counter!("app_jobs_total", "Jobs the workers did.");
    let body = common::get(running.addr, "/metrics").await.unwrap().body;
    let samples = parse(&body);
    let jobs = samples
        .iter()
        .find(|s| s.name == "app_jobs_total")
        .unwrap_or_else(|| panic!("no app_jobs_total in\n{body}"));
    // One per worker.
    assert_eq!(jobs.value, 2.0, "{jobs:?}");
    assert_eq!(jobs.labels["kind"], "worker");
    match test_support::tool(&["promtool"], "prometheus") {
        None => {}
        Some(promtool) => {
            let mut child = std::process::Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}\n{body}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    common::stop(&running.cluster).await;
}

/// Starts disconnecting the cluster and returns once it drains (its
/// `disconnect`, still running, is the handle).
async fn disconnect_until_draining(cluster: &Cluster) -> tokio::task::JoinHandle<()> {
    let stopping = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.disconnect().await }
    });
    let mut phases = cluster.phases();
    tokio::time::timeout(DEADLINE, phases.wait_for(|p| *p >= Phase::Draining))
        .await
        .expect("the cluster drains before the deadline");
    stopping
}
