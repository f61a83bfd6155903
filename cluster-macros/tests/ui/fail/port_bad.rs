#[cluster_thread::main(port = "per_worker")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
