#[cluster_thread::main(workers = -2)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
