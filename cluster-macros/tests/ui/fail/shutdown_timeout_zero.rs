#[cluster_thread::main(shutdown_timeout = "0s")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
