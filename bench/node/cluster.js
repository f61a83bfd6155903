// The proposal's demo, in Node.js: the primary forks N workers and each one
// calls http.createServer(...).listen(port): Node's cluster shares the port.
// A worker that exits (crash, kill -9) is forked again, as PM2 would.
//
//   NODE_CLUSTER_SCHED_POLICY=rr|none node bench/node/cluster.js --workers N --port P [--host IP]
//
// Prints `Primary <pid> is running`, then per worker
// `worker <id> pid <pid> listening on <ip>:<port>`.
// GET / answers 200 `hello world\n` with `x-worker-id: <id>` (cluster ids grow
// on every fork, as in cluster_thread). Used by `cargo xtask bench`.
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

function flag(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const workers = parseInt(flag('--workers', String(os.availableParallelism())), 10);
const port = parseInt(flag('--port', '8000'), 10);
const host = flag('--host', '127.0.0.1');
const BODY = 'hello world\n';

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running`);
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', (worker, address) => {
    console.log(`worker ${worker.id} pid ${worker.process.pid} listening on ${address.address}:${address.port}`);
  });
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
  });
  const stop = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const id = String(cluster.worker.id);
  http
    .createServer((req, res) => {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'content-length': BODY.length,
        'x-worker-id': id,
      });
      res.end(BODY);
    })
    .listen(port, host);
}
