#[cluster_thread::main(workers = auto)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
