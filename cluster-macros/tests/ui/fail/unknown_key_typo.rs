#[cluster_thread::main(worker = 4)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
