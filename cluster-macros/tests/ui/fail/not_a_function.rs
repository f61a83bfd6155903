#[cluster_thread::main]
struct Server;

fn main() {}
