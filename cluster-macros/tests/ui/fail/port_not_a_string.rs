#[cluster_thread::main(port = shared)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
