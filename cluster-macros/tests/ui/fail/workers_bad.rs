#[cluster_thread::main(workers = "many")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
