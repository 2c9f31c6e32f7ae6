// --atomic: every target stages the new tree and switches only when all have staged it.
// One target down: nobody switches (trees untouched, staged files kept); with every
// target up again all switch, the staged files are re-used (not sent again), and each
// target's receipt verifies against its PeerId.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { peerIdFromString } from '@libp2p/peer-id';
import {
  Lab, type Daemon, diffSnapshots, file, fmt, rsyncCopy, rsyncOracle, runCli, snapshotTree, symlink, targetOf, waitFor, writeLargeFile, writeTree,
} from '../lab/hosts.js';

const BIG = 24 * 1024 * 1024;
const STAGE = '.gosync-tmp-stage';

/** The tree as a user sees it: the stage (a gosync temp name) left out. */
async function visible(root: string) {
  const snap = await snapshotTree(root);
  for (const k of [...snap.keys()]) if (k.startsWith('.gosync-tmp-')) snap.delete(k);
  return snap;
}

/** Independent check of a receipt: the documented payload, verified with the key inside the PeerId. */
async function receiptVerifies(peer: string, session: string, dst: string, r: { digest: string; signature: string }): Promise<boolean> {
  const payload = new TextEncoder().encode(`gosync-receipt/1\n${session}\n${dst}\n${r.digest}\n`);
  return await peerIdFromString(peer).publicKey!.verify(payload, Buffer.from(r.signature, 'base64'));
}

describe('--atomic', () => {
  let lab: Lab;
  let source: Daemon;
  let targets: Daemon[];
  let sourceId: string;

  before(async () => {
    lab = await Lab.create('atomic');
    if (!lab.views) return;
    ({ source, targets, sourceId } = await lab.startSourceAndTargets(['t1', 't2', 't3'], { extraArgs: ['--stall-timeout', '5'] }));
    const old = lab.hostPath('src', 'old');
    await writeTree(old, {
      'same.txt': 'unchanged\n',
      'edit.txt': 'old text\n',
      'gone.txt': 'deleted by -d\n',
      'flip/inner.txt': 'a dir that becomes a file\n',
      'link': symlink('same.txt'),
      'ro.txt': file('mode changes\n', { mode: 0o644 }),
    });
    const src = lab.hostPath('src', 'data');
    // older than the hash cache's 2 s racy window: the hashes the source computes while sending
    // (every new file's hash is deferred) are kept, so the second run knows the staged contents
    const mtime = new Date(Math.floor(Date.now() / 1000 - 3600) * 1000);
    await writeTree(src, {
      'same.txt': file('unchanged\n', { mtime }),
      'edit.txt': file('new text\n', { mtime }),
      'flip': file('now a file\n', { mtime }),
      'link': symlink('edit.txt'),
      'ro.txt': file('mode changes\n', { mode: 0o444, mtime }),
      'new/dir/a.txt': file('twin content\n', { mtime }),
      'new/dir/b.txt': file('twin content\n', { mtime }),
    });
    // an mtime outside the hash cache's racy window: the source keeps the hash it computes while sending
    await writeLargeFile(path.join(src, 'new', 'big.bin'), BIG, { seed: 'atomic', mtime: 1_700_000_000 });
    for (const t of ['t1', 't2', 't3']) await rsyncCopy(old, lab.hostPath(t, 'copy'));
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  const args = () => ['-t', targets.map((t) => t.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '-d', '--atomic'];

  test('one target down: no target switches, trees untouched, the stage is kept', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const before = await Promise.all(['t1', 't2'].map((n) => visible(lab.hostPath(n, 'copy'))));
    await targets[2]!.stop();
    const r = await lab.syncJson(args(), { home: source.home, timeoutMs: 90_000 });
    assert.equal(r.code, 1, fmt(r));
    const report = r.report as typeof r.report & { atomic?: boolean; switched?: boolean };
    assert.equal(report.atomic, true);
    assert.equal(report.switched, false);
    for (const [k, name] of ['t1', 't2'].entries()) {
      const tr = targetOf(report, targets[k]!);
      assert.equal(tr.status, 'failed', fmt(r));
      assert.match(tr.error ?? '', /staged and verified, not switched/);
      const after = await visible(lab.hostPath(name, 'copy'));
      // nothing changed, not even a timestamp (the root's ctime moves when the stage appears)
      assert.deepEqual(diffSnapshots(before[k]!, after, 'content'), [], `${name} changed`);
      before[k]!.delete('.');
      after.delete('.');
      assert.deepEqual(diffSnapshots(before[k]!, after, 'exact'), [], `${name} touched`);
      // the new contents sit in the stage, verified, one copy per content key (edit, flip, big,
      // and both twins: their hashes were deferred, so each is keyed by its path and mtime)
      const staged = await fsp.readdir(path.join(lab.hostPath(name, 'copy'), STAGE));
      assert.equal(staged.filter((n) => /^[0-9a-f]{64}$/.test(n)).length, 5, staged.join(' '));
    }
    assert.equal(targetOf(report, targets[2]!).status, 'failed');
  });

  test('all targets up: every target switches, staged files are not sent again, receipts verify', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    targets[2] = await lab.startDaemon({ name: 't3', trust: [sourceId], extraArgs: ['--stall-timeout', '5'] });
    const r = await lab.syncJson(args(), { home: source.home, timeoutMs: 90_000 });
    assert.equal(r.code, 0, fmt(r));
    const report = r.report as typeof r.report & { atomic?: boolean; switched?: boolean; digest?: string };
    assert.equal(report.switched, true);
    for (const [k, name] of ['t1', 't2', 't3'].entries()) {
      const dst = lab.hostPath(name, 'copy');
      assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), dst), '', `${name} differs from the source`);
      assert.ok(!(await fsp.readdir(dst)).includes(STAGE), `${name}: stage left behind`);
      const tr = targetOf(report, targets[k]!) as ReturnType<typeof targetOf> & { receipt?: { digest: string; signature: string; verified: boolean } };
      assert.equal(tr.status, 'ok', fmt(r));
      assert.ok(tr.receipt, `${name}: no receipt`);
      // every hash is known this time (cached in the first run): the receipt binds the manifest digest
      assert.equal(tr.receipt.digest, report.digest);
      assert.equal(tr.receipt.verified, true);
      assert.ok(await receiptVerifies(targets[k]!.peerId, report.session, lab.common('copy'), tr.receipt), `${name}: receipt does not verify`);
      // a receipt is bound to its signer and to the tree
      assert.equal(await receiptVerifies(targets[(k + 1) % 3]!.peerId, report.session, lab.common('copy'), tr.receipt), false);
      assert.equal(await receiptVerifies(targets[k]!.peerId, report.session, lab.common('copy'), { ...tr.receipt, digest: '0'.repeat(64) }), false);
      t.diagnostic(`${name}: received ${tr.bytes} bytes`);
      // t1 and t2 staged everything in the first run: only t3 receives data now
      if (name === 't3') assert.ok(tr.bytes >= BIG, `t3 received ${tr.bytes}`);
      else assert.equal(tr.bytes, 0, `${name} received its staged files again`);
    }
  });

  test('the text report shows a verified receipt per target', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const r = await runCli(['sync', ...args()], { home: source.home, timeoutMs: 90_000 });
    assert.equal(r.code, 0, fmt(r));
    assert.equal(r.stdout.match(/receipt: tree [0-9a-f]{16}… signed .*\(signature verified\)/g)?.length, 3, r.stdout);
    assert.match(r.stdout, /atomic: all 3 targets switched/);
  });
});

describe('--atomic: a target lost after it staged', () => {
  let lab: Lab;
  let source: Daemon;
  let targets: Daemon[];

  before(async () => {
    lab = await Lab.create('atomic-lost');
    if (!lab.views) return;
    ({ source, targets } = await lab.startSourceAndTargets(['t1', 't2', 't3'], { extraArgs: ['--stall-timeout', '5'] }));
    const src = lab.hostPath('src', 'data');
    await writeTree(src, { 'small.txt': 'new small\n' });
    await writeLargeFile(path.join(src, 'big.bin'), 320 * 1024 * 1024, { seed: 'lost', mtime: 1_700_000_000 });
    // t1 and t2 already have big.bin: they stage one small file at once; t3 needs all of it
    for (const t of ['t1', 't2']) {
      await writeTree(lab.hostPath(t, 'copy'), { 'small.txt': 'old small\n' });
      await writeLargeFile(path.join(lab.hostPath(t, 'copy'), 'big.bin'), 320 * 1024 * 1024, { seed: 'lost', mtime: 1_700_000_000 });
    }
  }, { timeout: 180_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('a staged target killed while another is still receiving: nobody switches', { timeout: 180_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const before = await visible(lab.hostPath('t2', 'copy'));
    // every target straight from the source, so killing t1 cuts nobody's data
    const running = lab.syncJson(['-t', targets.map((d) => d.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '--atomic', '--fanout', '3'], { home: source.home, timeoutMs: 150_000 });
    const stage1 = path.join(lab.hostPath('t1', 'copy'), STAGE);
    const staged = await waitFor(async () => (await fsp.readdir(stage1).catch(() => [] as string[])).some((n) => /^[0-9a-f]{64}$/.test(n)), { timeoutMs: 60_000, intervalMs: 10 });
    assert.ok(staged, 't1 never staged');
    const t3Dst = lab.hostPath('t3', 'copy');
    const t3Busy = (await fsp.readdir(path.join(t3Dst, STAGE)).catch(() => [] as string[])).length > 0;
    await targets[0]!.kill();
    const r = await running;
    t.diagnostic(`t3 was still receiving when t1 died: ${t3Busy}`);
    assert.equal(r.code, 1, fmt(r));
    const report = r.report as typeof r.report & { switched?: boolean };
    assert.equal(report.switched, false, fmt(r));
    assert.equal(targetOf(report, targets[0]!).status, 'failed');
    for (const d of [targets[1]!, targets[2]!]) {
      assert.match(targetOf(report, d).error ?? '', /not switched/, fmt(r));
    }
    // t2 staged its small file but did not switch; t3 never had the tree
    assert.deepEqual(diffSnapshots(before, await visible(lab.hostPath('t2', 'copy')), 'content'), []);
    assert.deepEqual((await fsp.readdir(t3Dst)).filter((n) => !n.startsWith('.gosync-tmp-')), []);
  });
});
