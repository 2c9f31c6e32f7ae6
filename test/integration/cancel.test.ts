// Ctrl-C on `gosync sync`: the task stops everywhere (also when a daemon runs it for the CLI),
// the CLI exits 130, each target keeps what it received, and the next sync continues from it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CLI_PATH,
  cliEnv,
  Lab,
  type Daemon,
  exists,
  fmt,
  NODE_FLAGS,
  rsyncOracle,
  targetOf,
  tempBytesIn,
  waitFor,
  writeLargeFile,
} from '../lab/hosts.js';

const MiB = 1024 * 1024;
const SIZE = 512 * MiB;

describe('Ctrl-C on gosync sync', () => {
  let lab: Lab;
  let source: Daemon;
  let target: Daemon;

  before(async () => {
    lab = await Lab.create('cancel');
    ({ source, targets: [target!] } = await lab.startSourceAndTargets(['t1']));
    await writeLargeFile(lab.hostPath('src', 'tree', 'big.bin'), SIZE, { seed: 'cancel' });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('cancels the task its daemon runs; exit 130; the next sync continues from the kept part', { timeout: 180_000 }, async (t) => {
    const dst = lab.hostPath(target.name, 'dst');
    const args = ['sync', '-t', target.addr, '--src', lab.common('tree'), '--dst', lab.common('dst'), '--home', source.home];
    const child = spawn(process.execPath, [...NODE_FLAGS, CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv(lab.env) });
    let stderr = '';
    let stdout = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal != null ? -1 : null))));
    // interrupt once the data flows (a new temp file has a 4 KiB probe block at once: wait for more)
    const flowing = await waitFor(async () => (await tempBytesIn(dst)) >= 16 * MiB, { timeoutMs: 60_000, intervalMs: 10 });
    assert.ok(flowing, `no data reached the target\n${stderr}`);
    const atInterrupt = await tempBytesIn(dst);
    const sent = performance.now();
    child.kill('SIGINT');
    const code = await exited;
    const ms = performance.now() - sent;
    t.diagnostic(`interrupted at ${(atInterrupt / MiB).toFixed(0)} MiB; exit ${code} after ${ms.toFixed(0)} ms; stderr: ${stderr.trim()}`);
    assert.equal(code, 130, `${stderr}\n--- stdout\n${stdout}`);
    assert.ok(ms < 10_000, `the CLI took ${ms} ms to stop`);
    assert.match(stderr, /interrupted: cancelling the task/);
    // the daemon's task stopped: the target's part stops growing and the file never appears
    let last = -1;
    assert.ok(await waitFor(async () => {
      const now = await tempBytesIn(dst);
      const still = now === last;
      last = now;
      return still;
    }, { timeoutMs: 30_000, intervalMs: 1000 }), 'the target kept receiving');
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await exists(path.join(dst, 'big.bin')), false, 'the cancelled task went on to the end');
    const kept = await tempBytesIn(dst);
    t.diagnostic(`kept part: ${(kept / MiB).toFixed(0)} MiB of ${SIZE / MiB}`);
    assert.ok(kept > 0 && kept < SIZE, `kept ${kept} bytes`);

    // the next sync is not refused as busy, and continues the file
    const r = await lab.syncJson(['-t', target.addr, '--src', lab.common('tree'), '--dst', lab.common('dst')], { home: source.home });
    assert.equal(r.code, 0, fmt(r));
    const tr = targetOf(r.report, target);
    t.diagnostic(`second sync: ${JSON.stringify(tr)}`);
    assert.ok((tr.resumed ?? 0) > 0, `the second sync did not continue from the kept part: ${JSON.stringify(tr)}`);
    assert.equal(await rsyncOracle(lab.hostPath('src', 'tree'), dst), '', 'oracle');
  });
});
