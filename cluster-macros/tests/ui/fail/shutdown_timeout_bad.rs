#[cluster_thread::main(shutdown_timeout = "30 seconds")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
