#[cluster_thread::main(setup = 3)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
