#[cluster_thread::main(primary = watch)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}

async fn watch(port: u16) {
    let _ = port;
}
