// Faults: a dead target, a wedged target and a target that does not trust the
// source must each fail alone, quickly, while the healthy targets still succeed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  bytesUnder,
  Lab,
  type Daemon,
  diffSnapshots,
  dir,
  fmt,
  rsyncOracle,
  silentListener,
  snapshotTree,
  symlink,
  type SyncRun,
  targetOf,
  waitFor,
  writeLargeFile,
  writeManyFiles,
  writeTree,
} from '../lab/hosts.js';

const BOUND_MS = 90_000;
const ctx = (r: SyncRun) => `${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`;

describe('faults', () => {
  let lab: Lab;
  let source: Daemon;
  let t1: Daemon;
  let t2: Daemon;
  let dead: Daemon;
  let victim: Daemon;
  let untrusting: Daemon;
  let sourceId: string;

  before(async () => {
    lab = await Lab.create('faults');
    if (!lab.views) return;
    sourceId = await lab.identity('src');
    const someoneElse = await lab.identity('someone-else');
    [source, t1, t2, dead, victim, untrusting] = await Promise.all([
      lab.startDaemon({ name: 'src' }),
      lab.startDaemon({ name: 't1', trust: [sourceId] }),
      lab.startDaemon({ name: 't2', trust: [sourceId] }),
      lab.startDaemon({ name: 'dead', trust: [sourceId] }),
      lab.startDaemon({ name: 'victim', trust: [sourceId] }),
      lab.startDaemon({ name: 'untrusting', trust: [someoneElse] }),
    ]);
    const src = lab.hostPath('src', 'data');
    await writeTree(src, { 'a.txt': 'a\n', 'dir/b.txt': 'b\n', 'dir/link': symlink('../a.txt'), empty: dir() });
    await writeManyFiles(`${src}/many`, { count: 200, seed: 7 });
    await writeLargeFile(`${src}/big.bin`, 8 * 1024 * 1024, { seed: 'faults' });
    const big = lab.hostPath('src', 'data-big');
    await writeTree(big, { 'small.txt': 'small\n', 'd/link': symlink('../small.txt') });
    await writeLargeFile(`${big}/huge.bin`, 160 * 1024 * 1024, { seed: 'midway' });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  const sync = (targets: string[], dst: string, srcName = 'data') =>
    lab.syncJson(['-t', targets.join(','), '--src', lab.common(srcName), '--dst', lab.common(dst), '-d'], {
      home: source.home,
      timeoutMs: 240_000,
    });

  const assertHealthy = async (r: SyncRun, dst: string, srcName = 'data') => {
    for (const d of [t1, t2]) {
      assert.equal(targetOf(r.report, d).status, 'ok', `${d.name}\n${ctx(r)}`);
      assert.equal(await rsyncOracle(lab.hostPath('src', srcName), lab.hostPath(d.name, dst)), '', `oracle for ${d.name}`);
    }
  };

  test('a target that is down fails alone; the others are synced; exit 1 in bounded time', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const deadAddr = dead.addr;
    await dead.kill(); // its port is closed now
    const r = await sync([t1.addr, deadAddr, t2.addr], 'dst-down');
    assert.ok(r.ms < BOUND_MS, `finished in ${r.ms} ms\n${ctx(r)}`);
    assert.equal(r.code, 1, ctx(r));
    assert.equal(r.report.ok, false, ctx(r));
    assert.equal(r.report.targets.length, 3, ctx(r));
    const tr = targetOf(r.report, dead);
    assert.equal(tr.status, 'failed', ctx(r));
    assert.ok(tr.error && tr.error.length > 0, ctx(r));
    await assertHealthy(r, 'dst-down');
  });

  test('a target that accepts TCP but never answers fails alone, in bounded time', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const wedged = await silentListener();
    try {
      const wedgedId = await lab.identity('wedged');
      const wedgedAddr = `/ip4/127.0.0.1/tcp/${wedged.port}/p2p/${wedgedId}`;
      const r = await sync([t1.addr, t2.addr, wedgedAddr], 'dst-wedged');
      assert.ok(wedged.connections() > 0, 'the source did dial the wedged target');
      assert.ok(r.ms < BOUND_MS, `finished in ${r.ms} ms\n${ctx(r)}`);
      assert.equal(r.code, 1, ctx(r));
      assert.equal(r.report.ok, false, ctx(r));
      const tr = targetOf(r.report, wedgedId);
      assert.equal(tr.status, 'failed', ctx(r));
      assert.ok(tr.error && tr.error.length > 0, ctx(r));
      await assertHealthy(r, 'dst-wedged');
    } finally {
      await wedged.close();
    }
  });

  test('a target killed in the middle of the transfer fails alone; the others still get everything', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    // listed first, so with a chain it is likely the relay the others depend on
    const running = sync([victim.addr, t1.addr, t2.addr], 'dst-midway', 'data-big');
    const started = await waitFor(async () => (await bytesUnder(lab.hostPath('victim', 'dst-midway'))) > 0, {
      timeoutMs: 60_000,
      intervalMs: 10,
    });
    const got = await bytesUnder(lab.hostPath('victim', 'dst-midway'));
    await victim.kill();
    t.diagnostic(`victim killed after receiving ${got} bytes`);
    const r = await running;
    t.diagnostic(`sync took ${(r.ms / 1000).toFixed(1)} s`);
    assert.ok(started, `the victim never received data\n${ctx(r)}`);
    assert.ok(r.ms < BOUND_MS, `finished in ${r.ms} ms\n${ctx(r)}`);
    assert.equal(r.code, 1, ctx(r));
    assert.equal(targetOf(r.report, victim).status, 'failed', ctx(r));
    await assertHealthy(r, 'dst-midway', 'data-big');
    // the survivors kept what they had verified on disk and resumed there: bytes is what
    // they received in the rounds that completed their files (never more than the tree)
    const total = await bytesUnder(lab.hostPath('src', 'data-big'));
    for (const d of [t1, t2]) {
      const got = targetOf(r.report, d).bytes;
      assert.ok(got <= total, `${d.name} received ${got} > ${total}\n${ctx(r)}`);
      t.diagnostic(`${d.name}: ${got} of ${total} bytes sent to it after the relay died (${(100 * (1 - got / total)).toFixed(1)} % resumed from its kept part)`);
    }
  });

  test('a target that does not trust the source refuses it and keeps its files', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    // what the untrusting target has; with -d a sync would delete it
    await writeTree(lab.hostPath('untrusting', 'dst-trust'), { 'mine.txt': 'not from the source\n', 'sub/x.txt': 'x\n' });
    const mine = await snapshotTree(lab.hostPath('untrusting', 'dst-trust'));

    const r = await sync([t1.addr, untrusting.addr], 'dst-trust');
    assert.ok(r.ms < BOUND_MS, `finished in ${r.ms} ms\n${ctx(r)}`);
    assert.equal(r.code, 1, ctx(r));
    assert.equal(r.report.ok, false, ctx(r));
    const tr = targetOf(r.report, untrusting);
    assert.equal(tr.status, 'failed', ctx(r));
    assert.match(tr.error ?? '', /trust/i, ctx(r));
    assert.deepEqual(
      diffSnapshots(mine, await snapshotTree(lab.hostPath('untrusting', 'dst-trust')), 'exact'),
      [],
      'nothing written or deleted on the target that does not trust the source',
    );
    assert.equal(targetOf(r.report, t1).status, 'ok', ctx(r));
    assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), lab.hostPath('t1', 'dst-trust')), '', 'oracle for t1');
  });
});
