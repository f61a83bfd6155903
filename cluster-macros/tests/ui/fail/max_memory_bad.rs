#[cluster_thread::main(max_memory = "64 parsecs")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
