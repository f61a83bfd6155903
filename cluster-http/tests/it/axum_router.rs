//! An axum `Router` served unchanged, with state shared by every worker
//! (an `Arc<AtomicU64>` hit counter given to the cluster).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::{self, start, stop};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use cluster_core::Worker;
use cluster_net::WorkerExt;
use http::StatusCode;

type Hits = Arc<AtomicU64>;

fn router(worker: &Worker) -> Router {
    let hits: Hits = worker
        .state::<Hits>()
        .map(|h| (*h).clone())
        .expect("the cluster's hit counter");
    let id = worker.id();
    Router::new()
        .route(
            "/hit",
            get(move |State(hits): State<Hits>| async move {
                let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                let mut headers = HeaderMap::new();
                headers.insert("x-worker-id", id.into());
                (headers, n.to_string())
            }),
        )
        .route(
            "/hello/{name}",
            get(move |Path(name): Path<String>| async move { format!("hello {name} from {id}") }),
        )
        .with_state(hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_is_served_unchanged_and_sees_the_shared_state() {
    let hits: Hits = Arc::new(AtomicU64::new(0));
    let running = start(
        3,
        |b| b.state(Arc::clone(&hits)),
        |w: Worker| async move {
            let listener = w.listen("127.0.0.1:0").await?;
            cluster_http::serve(listener, router(&w)).await
        },
    )
    .await;
    let addr = running.addr;

    let mut seen = BTreeSet::new();
    let mut counts = Vec::new();
    while seen.len() < 3 || counts.len() < 30 {
        assert!(counts.len() < 300, "only workers {seen:?} answered");
        let reply = common::get(addr, "/hit").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        seen.insert(reply.worker());
        counts.push(reply.body.parse::<u64>().unwrap());
    }
    // One counter for all workers: each hit saw the count so far.
    let expected: Vec<u64> = (1..=counts.len() as u64).collect();
    assert_eq!(counts, expected);
    assert_eq!(hits.load(Ordering::SeqCst), counts.len() as u64);

    let reply = common::get(addr, "/hello/axum").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.starts_with("hello axum from "), "{reply:?}");
    let reply = common::get(addr, "/nowhere").await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    stop(&running.cluster).await;
}
