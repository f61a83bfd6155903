// The body is compiled as written: its own errors point into it.
#[cluster_thread::main(workers = 1)]
async fn main(worker: cluster_thread::Worker) {
    let n: u32 = worker;
}
