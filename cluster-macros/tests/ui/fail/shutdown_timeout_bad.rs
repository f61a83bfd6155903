#[cluster_thread::main(shutdown_timeout = "30 parsecs")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
