#[cluster_thread::main(on_panic = "abort")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
