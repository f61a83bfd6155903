//! A worker that leaks, kept in check by `max_memory`: every request adds
//! `LEAK_KIB` KiB (default 1024) to a cache its worker never empties, so
//! each worker passes 64 MiB after about 64 requests; it is then replaced
//! gracefully (its replacement listens first, it drains, its idle
//! connections move over) and no request fails. Needs the `jemalloc`
//! feature: jemalloc becomes the global allocator, with an arena per
//! worker thread whose bytes are that worker's memory.
//!
//! Run:  cargo run --release --example memory_limit --features jemalloc
//!       (HOST, PORT as the hello example; CLUSTER_THREAD_MAX_MEMORY=32MiB to change the limit)
//! Try:  for i in $(seq 200); do curl -s localhost:8000/ >/dev/null; done
//!       cluster-thread ls                         # each worker's memory
//!       curl -s localhost:8000/metrics | grep memory
//!       cluster-thread set max_memory 16MiB       # live
//! Stop: Ctrl-C.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use cluster_thread::http::{Request, Server};
use cluster_thread::Worker;
use http_body_util::Full;

const X_WORKER_ID: http::HeaderName = http::HeaderName::from_static("x-worker-id");

#[cluster_thread::main(
    workers = 2,
    max_memory = "64MiB",
    metrics = "/metrics",
    status = "/status"
)]
async fn main(worker: Worker) -> anyhow::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    let leak: usize = std::env::var("LEAK_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        * 1024;
    let listener = worker.listen(format!("{host}:{port}")).await?;
    println!("listening on {}", listener.local_addr());
    let id = http::HeaderValue::from(worker.id());
    // The worker's own: freed when it ends, as a real cache would be.
    let cache: Rc<RefCell<Vec<Box<[u8]>>>> = Rc::default();
    Server::new(listener)
        .serve(move |_req: Request| {
            // Written, so that the pages are really used.
            cache.borrow_mut().push(vec![1u8; leak].into_boxed_slice());
            let mut response = http::Response::new(Full::new(Bytes::from_static(b"hello world\n")));
            response.headers_mut().insert(X_WORKER_ID, id.clone());
            std::future::ready(Ok::<_, Infallible>(response))
        })
        .await?;
    Ok(())
}
