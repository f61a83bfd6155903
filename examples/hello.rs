//! The smallest clustered HTTP server: every worker answers `hello world`
//! on the same port. What a user writes first, and what the benchmark's
//! memory figures measure (the peers there are hello worlds too).
//!
//! Run:  cargo run --release --example hello                       (port 8000, a worker per core)
//!       PORT=9000 CLUSTER_THREAD_WORKERS=4 CLUSTER_THREAD_BALANCE=os cargo run --release --example hello
//!       (only the features it uses, as the benchmark builds it:
//!       cargo run --release --example hello --no-default-features --features macros,net,http)
//! Try:  curl -i localhost:8000/     # x-worker-id: the worker that answered
//! Stop: Ctrl-C or `kill -TERM <pid>`: in-flight requests finish, exit status 0.

use std::convert::Infallible;

use bytes::Bytes;
use cluster_thread::http::{Request, Server};
use cluster_thread::Worker;
use http_body_util::Full;

const X_WORKER_ID: http::HeaderName = http::HeaderName::from_static("x-worker-id");

#[cluster_thread::main(workers = "auto", port = "shared")]
async fn main(worker: Worker) -> anyhow::Result<()> {
    // `HOST` and `PORT` as Node programs read them.
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    let listener = worker.listen(format!("{host}:{port}")).await?;
    println!(
        "worker {} listening on {}",
        worker.id(),
        listener.local_addr()
    );
    let id = http::HeaderValue::from(worker.id());
    Server::new(listener)
        .serve(move |_req: Request| {
            let mut response = http::Response::new(Full::new(Bytes::from_static(b"hello world\n")));
            response.headers_mut().insert(X_WORKER_ID, id.clone());
            std::future::ready(Ok::<_, Infallible>(response))
        })
        .await?;
    Ok(())
}
