// The seed README's before/after example, to two targets, with the seed's own
// flag spelling: -t=A,B -src=... -dst=... -d=true
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  Lab,
  type Daemon,
  diffSnapshots,
  dir,
  file,
  fmt,
  listTree,
  rsyncOracle,
  snapshotTree,
  symlink,
  targetOf,
  type TreeSpec,
  writeManyFiles,
  writeTree,
} from '../lab/hosts.js';

const OLD = Date.UTC(2020, 0, 2, 3, 4, 5) / 1000; // the targets' copies are older

// Distinct contents; d1/f1.txt and f4.txt differ on the target with the same size.
const SOURCE: TreeSpec = {
  'd1/f1s': symlink('f1.txt'),
  'd1/f1.txt': 'd1/f1 v2\n',
  'd1/f2.txt': 'd1/f2 same on both\n',
  'd1/f3s': symlink('f3.txt'),
  'd1/f3.txt': 'd1/f3 new in source\n',
  d2: dir(),
  f3s: symlink('f3.txt'),
  'f3.txt': 'f3 same on both\n',
  'f4.txt': 'f4 new\n',
  f5s: symlink('f5.txt'),
  'f5.txt': 'f5 only in source\n',
};

const TARGET_BEFORE: TreeSpec = {
  'd1/f1s': symlink('f1.txt'),
  'd1/f1.txt': file('d1/f1 v1\n', { mtime: OLD }),
  'd1/f2.txt': file('d1/f2 same on both\n', { mtime: OLD }),
  'd1/f4s': symlink('f4.txt'),
  'd1/f4.txt': file('d1/f4 only on target\n', { mtime: OLD }),
  d3: dir({ mtime: OLD }),
  f3s: symlink('f3.txt'),
  'f3.txt': file('f3 same on both\n', { mtime: OLD }),
  'f4.txt': file('f4 old\n', { mtime: OLD }),
  f6s: symlink('f6.txt'),
  'f6.txt': file('f6 only on target\n', { mtime: OLD }),
};

const AFTER = [
  'd1/',
  'd1/f1s -> f1.txt',
  'd1/f1.txt',
  'd1/f2.txt',
  'd1/f3s -> f3.txt',
  'd1/f3.txt',
  'd2/',
  'f3s -> f3.txt',
  'f3.txt',
  'f4.txt',
  'f5s -> f5.txt',
  'f5.txt',
].sort();

describe('seed README example', () => {
  let lab: Lab;
  let source: Daemon;
  let targets: Daemon[] = [];

  before(async () => {
    lab = await Lab.create('seed');
    if (!lab.views) return;
    let sourceId: string;
    ({ source, targets, sourceId } = await lab.startSourceAndTargets(['t1', 't2']));
    assert.equal(source.peerId, sourceId, '`gosync id` and the daemon agree on the PeerId');
    await writeTree(lab.hostPath('src', 'testsrc'), SOURCE);
    for (const t of targets) await writeTree(lab.hostPath(t.name, 'testdst'), TARGET_BEFORE);
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  const seedArgs = () => [
    `-t=${targets.map((t) => t.addr).join(',')}`,
    `-src=${lab.common('testsrc')}`,
    `-dst=${lab.common('testdst')}`,
    '-d=true',
  ];

  test('sync with the seed spelling turns "before" into "after" on both targets', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    assert.deepEqual(await listTree(lab.hostPath('t1', 'testdst')), [
      'd1/', 'd1/f1.txt', 'd1/f1s -> f1.txt', 'd1/f2.txt', 'd1/f4.txt', 'd1/f4s -> f4.txt', 'd3/',
      'f3.txt', 'f3s -> f3.txt', 'f4.txt', 'f6.txt', 'f6s -> f6.txt',
    ].sort(), 'fixture: the "before" tree');

    const r = await lab.runCli(['sync', ...seedArgs()], { home: source.home });
    assert.equal(r.code, 0, fmt(r));
    for (const d of targets) {
      assert.ok(r.stdout.includes(d.peerId) || r.stdout.includes(d.addr), `a line for ${d.name} (${d.peerId})\n${fmt(r)}`);
    }

    const want = await snapshotTree(lab.hostPath('src', 'testsrc'));
    for (const d of targets) {
      const dst = lab.hostPath(d.name, 'testdst');
      assert.equal(await rsyncOracle(lab.hostPath('src', 'testsrc'), dst), '', `oracle for ${d.name}`);
      assert.deepEqual(await listTree(dst), AFTER, `listing of ${d.name}`);
      assert.deepEqual(diffSnapshots(want, await snapshotTree(dst)), [], `own walk of ${d.name}`);
    }
    // the source is read, never written
    assert.deepEqual(diffSnapshots(want, await snapshotTree(lab.hostPath('src', 'testsrc')), 'exact'), []);
  });

  test('the same sync again: every target unchanged, nothing sent', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const r = await lab.syncJson(seedArgs(), { home: source.home });
    const ctx = `${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`;
    assert.equal(r.code, 0, ctx);
    assert.equal(r.report.ok, true, ctx);
    assert.equal(r.report.source, source.peerId, ctx);
    assert.equal(r.report.targets.length, 2, ctx);
    for (const d of targets) {
      const tr = targetOf(r.report, d);
      assert.equal(tr.status, 'unchanged', ctx);
      assert.equal(tr.files, 0, ctx);
      assert.equal(tr.bytes, 0, ctx);
      assert.equal(await rsyncOracle(lab.hostPath('src', 'testsrc'), lab.hostPath(d.name, 'testdst')), '');
    }
  });

  test('two syncs at once from one daemon do not mix their trees', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    // the original changed the process-wide cwd during a walk: concurrent tasks crossed
    const other: TreeSpec = { 'only-in-other.txt': 'other tree\n', 'd1/f1.txt': 'other d1/f1\n', x: dir() };
    await writeTree(lab.hostPath('src', 'othersrc'), other);
    await writeManyFiles(lab.hostPath('src', 'othersrc', 'many'), { count: 300, seed: 5 });
    const addrs = targets.map((d) => d.addr).join(',');
    const [r1, r2] = await Promise.all([
      lab.runCli(['sync', '-t', addrs, '--src', lab.common('testsrc'), '--dst', lab.common('conc1')], { home: source.home }),
      lab.runCli(['sync', '-t', addrs, '--src', lab.common('othersrc'), '--dst', lab.common('conc2')], { home: source.home }),
    ]);
    assert.equal(r1.code, 0, fmt(r1));
    assert.equal(r2.code, 0, fmt(r2));
    for (const d of targets) {
      assert.equal(await rsyncOracle(lab.hostPath('src', 'testsrc'), lab.hostPath(d.name, 'conc1')), '', `conc1 on ${d.name}`);
      assert.equal(await rsyncOracle(lab.hostPath('src', 'othersrc'), lab.hostPath(d.name, 'conc2')), '', `conc2 on ${d.name}`);
    }
  });

  test('daemons exit 0 on SIGTERM', { timeout: 60_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    for (const d of [source, ...targets]) {
      const st = await d.stop(10_000);
      assert.deepEqual(st, { code: 0, signal: null, forced: false }, `${d.name} on SIGTERM\n${d.stderr()}`);
    }
  });
});
