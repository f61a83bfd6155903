#[cluster_thread::main(workers)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
