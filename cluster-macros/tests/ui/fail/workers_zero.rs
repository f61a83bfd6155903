#[cluster_thread::main(workers = 0)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
