#[cluster_thread::main(healthz = "healthz", metrics = "/metrics", status = "/metrics", healthz2 = 1)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}

#[cluster_thread::main(status = status)]
async fn other(worker: cluster_thread::Worker) {
    let _ = worker;
}
