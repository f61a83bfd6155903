#[cluster_thread::main]
fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
