#[cluster_thread::main(restart = "sometimes")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
