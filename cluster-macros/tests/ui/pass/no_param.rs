// `async fn main()` without the worker parameter: `cluster_thread::worker()`
// gives it.
#[cluster_thread::main(workers = 2)]
async fn main() {
    let worker = cluster_thread::worker().expect("running in a worker thread");
    assert!(cluster_thread::is_worker());
    assert!(worker.slot() < 2);
}
