// `crate = "..."`: the facade renamed with `extern crate ... as`.
extern crate cluster_thread as ct;

#[ct::main(crate = "ct", workers = 1)]
async fn main(worker: ct::Worker) {
    let _ = worker.id();
}
