//! The opt-in endpoints: `/healthz` answers 200 while serving and 503 once
//! the cluster drains; `/metrics` is Prometheus text whose counters move
//! with the traffic.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::Phase;
use cluster_http::HttpConfig;
use cluster_net::stats;
use common::{eventually, serve_app, start, DEADLINE, H1};
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
    let stopping = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.disconnect().await }
    });
    let mut phases = cluster.phases();
    tokio::time::timeout(DEADLINE, phases.wait_for(|p| *p >= Phase::Draining))
        .await
        .unwrap();
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
    let stopping = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.disconnect().await }
    });
    let mut phases = cluster.phases();
    tokio::time::timeout(DEADLINE, phases.wait_for(|p| *p >= Phase::Draining))
        .await
        .unwrap();
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
                assert!(["counter", "gauge"].contains(&t), "bad type in {line:?}");
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
        assert!(types.contains_key(name), "no TYPE before {line:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_and_move_with_traffic() {
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
    for s in &before {
        assert!(s.name.starts_with("cluster_thread_"), "{s:?}");
    }
    let slot = running
        .cluster
        .worker(worker)
        .expect("the worker that answered")
        .slot();
    for s in before.iter().filter(|s| s.labels.contains_key("worker")) {
        assert_eq!(s.labels["worker"], worker.to_string(), "{s:?}");
        assert_eq!(s.labels["slot"], slot.to_string(), "{s:?}");
    }
    assert_eq!(value(&before, "cluster_thread_workers"), 2.0);
    assert_eq!(value(&before, "cluster_thread_restarts_total"), 0.0);
    assert_eq!(value(&before, "cluster_thread_slot_restarts_total"), 0.0);
    assert_eq!(value(&before, "cluster_thread_worker_draining"), 0.0);
    let phases: BTreeMap<_, _> = before
        .iter()
        .filter(|s| s.name == "cluster_thread_phase")
        .map(|s| (s.labels["phase"].clone(), s.value))
        .collect();
    assert_eq!(phases.len(), 5, "{phases:?}");
    assert_eq!(phases["listening"], 1.0, "{phases:?}");
    assert_eq!(phases.values().sum::<f64>(), 1.0, "{phases:?}");
    assert!(value(&before, "cluster_thread_connections_active") >= 1.0);
    assert!(value(&before, "cluster_thread_connections_accepted_total") >= 1.0);
    assert!(value(&before, "cluster_thread_requests_total") >= 2.0);

    // Traffic on this connection moves this worker's counters.
    for _ in 0..5 {
        assert_eq!(conn.get("/").await.unwrap().status, StatusCode::OK);
    }
    let after = parse(&conn.get("/metrics").await.unwrap().body);
    assert_eq!(
        value(&after, "cluster_thread_requests_total"),
        value(&before, "cluster_thread_requests_total") + 6.0
    );
    // Fresh connections: the accepted count of whichever worker answers grows.
    let mut grown = false;
    for _ in 0..100 {
        let mut c = H1::connect(addr).await.unwrap();
        let reply = c.get("/metrics").await.unwrap();
        if reply.worker_opt() == Some(worker) {
            let later = parse(&reply.body);
            grown = value(&later, "cluster_thread_connections_accepted_total")
                > value(&after, "cluster_thread_connections_accepted_total");
            assert!(value(&later, "cluster_thread_connections_active") >= 2.0);
            break;
        }
    }
    assert!(
        grown,
        "worker {worker} never answered on a fresh connection"
    );
    drop(conn);
    common::stop(&running.cluster).await;
}

trait WorkerOpt {
    fn worker_opt(&self) -> Option<u64>;
}

impl WorkerOpt for common::Reply {
    /// The endpoints answer before the service: no `x-worker-id`; tell the
    /// worker by its metrics' label.
    fn worker_opt(&self) -> Option<u64> {
        parse(&self.body)
            .iter()
            .find_map(|s| s.labels.get("worker").and_then(|w| w.parse().ok()))
    }
}
