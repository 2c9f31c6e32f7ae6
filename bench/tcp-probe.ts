/**
 * Raw TCP throughput between two hosts of the lab, the ceiling any tool can reach on a
 * link. Run inside namespaces by the benchmark:
 *   node dist/bench/tcp-probe.js server IP PORT BYTES   → prints "listening", then exits after one transfer
 *   node dist/bench/tcp-probe.js client IP PORT BYTES   → prints {"bytes":…, "seconds":…}
 * The client sends BYTES in 1 MiB writes; the server answers one byte once it has them all,
 * so the time covers delivery, not just queuing in the sender's socket buffer.
 */
import { connect, createServer } from 'node:net';

const [mode, host, portS, bytesS] = process.argv.slice(2);
const port = Number(portS);
const total = Number(bytesS);

if (mode === 'server') {
  const srv = createServer((s) => {
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= total) {
        s.end('k');
        srv.close();
      }
    });
    s.on('error', () => process.exit(1));
  });
  srv.listen(port, host, () => process.stdout.write('listening\n'));
  setTimeout(() => process.exit(2), 300_000).unref();
} else if (mode === 'client') {
  const buf = Buffer.alloc(1024 * 1024, 7);
  const started = performance.now();
  const s = connect(port, host, () => {
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(buf.length, total - sent);
        sent += n;
        if (!s.write(n === buf.length ? buf : buf.subarray(0, n))) {
          s.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
  s.once('data', () => {
    process.stdout.write(JSON.stringify({ bytes: total, seconds: (performance.now() - started) / 1000 }) + '\n');
    s.destroy();
  });
  s.on('error', (e) => {
    process.stderr.write(`tcp-probe: ${e.message}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write('usage: tcp-probe.js server|client IP PORT BYTES\n');
  process.exit(2);
}
