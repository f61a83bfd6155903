#[cluster_thread::main(max_memory = 64)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
