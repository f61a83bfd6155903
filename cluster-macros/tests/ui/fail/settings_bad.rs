// Each wrong setting is an error at its own value, all in one build.
#[cluster_thread::main(
    kill_timeout = "0s",
    listen_timeout = 3,
    min_uptime = "1 fortnight",
    restart_delay = "soon",
    max_restarts = -1,
    pin_workers = "true",
    stack_size = "8MB",
    max_connections = 0,
    connection_cap = "many",
)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
