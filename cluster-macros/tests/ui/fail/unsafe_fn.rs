#[cluster_thread::main]
async unsafe fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
