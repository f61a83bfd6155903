#[cluster_thread::main(threads = 4)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
