#[cluster_thread::main(control = "off", log = "quiet")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
