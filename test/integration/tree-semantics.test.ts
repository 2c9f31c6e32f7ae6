// `rsync -a --delete` semantics on a tree with every kind of entry, to three
// targets that start from different states (so they fall into different classes):
//   tA: --dst does not exist
//   tB: a partial, older copy (files missing, stale, truncated, wrong mode/mtime)
//   tC: conflicting types everywhere, extras to delete, symlinks pointing outside --dst
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  Lab,
  type Daemon,
  diffSnapshots,
  dir,
  exists,
  file,
  fmt,
  type NodeInfo,
  rsyncCopy,
  rsyncOracle,
  snapshotTree,
  symlink,
  type SyncRun,
  targetOf,
  type TreeSpec,
  writeLargeFile,
  writeManyFiles,
  writeTree,
} from '../lab/hosts.js';

const MiB = 1024 * 1024;
const BIG = 101 * MiB;
const MANY = 3000;
const T1 = 1_000_000_000; // 2001-09-09
const T2 = 1_234_567_890;
const T3 = 1_500_000_000.5;
const OLD = 1_400_000_000;

const SOURCE: TreeSpec = {
  'modes/private.txt': file('only for the owner\n', { mode: 0o600, mtime: T1 }),
  'modes/tool.sh': file('#!/bin/sh\necho gosync\n', { mode: 0o755, mtime: T2 }),
  'modes/readonly.txt': file('read only\n', { mode: 0o444 }),
  'modes/private-dir': dir({ mode: 0o700, mtime: T2 }),
  'modes/private-dir/inner.txt': 'inside a 0700 dir\n',
  'modes/private-empty': dir({ mode: 0o700 }),
  empty: dir({ mtime: T1 }),
  'empty/nested/deeper': dir(),
  'links/dangling': symlink('../does/not/exist'),
  'links/abs-dangling': symlink('/nonexistent/gosync-target'),
  'links/to-dir': symlink('../modes'),
  'links/to-file': symlink('../modes/private.txt', { mtime: T1 }),
  'links/loop': symlink('loop'),
  'flip/file-was-dir': 'a file; tB has a symlink here, tC a directory\n',
  'flip/dir-was-file/child.txt': 'a directory; tB has a symlink here, tC a file\n',
  'flip/link-was-file': symlink('../modes/tool.sh'),
  'flip/link-retarget': symlink('new-target'),
  'flip/empty-dir-was-link': dir(),
  'flip/dir-via-link/inside.txt': "belongs in a real directory, not behind tC's symlink\n",
  'times/old.txt': file('old\n', { mtime: T1 }),
  'times/frac.txt': file('fraction of a second\n', { mtime: T3 }),
  'times/link': symlink('old.txt', { mtime: T2 }),
  'times/dir': dir({ mtime: T2 }),
  'times/dir/child.txt': file('child\n', { mtime: T1 }),
  'names/sp ace.txt': 'space\n',
  'names/ünïcødé.txt': 'unicode\n',
  'names/-dash.txt': 'dash\n',
  'names/.hidden': 'hidden\n',
  'zero.txt': '',
};

interface Counts {
  files: number;
  zeroFiles: number;
  bytes: number;
}
function countFiles(snap: Map<string, NodeInfo>): Counts {
  const c = { files: 0, zeroFiles: 0, bytes: 0 };
  for (const n of snap.values()) {
    if (n.type !== 'file') continue;
    c.files++;
    c.bytes += Number(n.size);
    if (n.size === 0n) c.zeroFiles++;
  }
  return c;
}

const ctx = (r: SyncRun) => `${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`;
const took = (r: SyncRun) => `sync took ${(r.ms / 1000).toFixed(1)} s (report: ${r.report.totals.seconds} s)`;

describe('tree semantics: rsync -a --delete to three differently stale targets', () => {
  let lab: Lab;
  let source: Daemon;
  let tA: Daemon;
  let tB: Daemon;
  let tC: Daemon;
  let srcDir: string;
  let outsideBefore: Map<string, NodeInfo>;

  const syncArgs = (...more: string[]) => [
    '-t', [tA, tB, tC].map((d) => d.addr).join(','),
    '--src', lab.common('data'),
    '--dst', lab.common('dst'),
    '-d',
    ...more,
  ];

  before(async () => {
    lab = await Lab.create('tree');
    if (!lab.views) return;
    const sourceId = await lab.identity('src');
    [source, tA, tB, tC] = await Promise.all([
      lab.startDaemon({ name: 'src' }),
      lab.startDaemon({ name: 'tA', trust: [sourceId] }),
      lab.startDaemon({ name: 'tB', trust: [sourceId] }),
      lab.startDaemon({ name: 'tC', trust: [sourceId] }),
    ]);

    // --- source
    srcDir = lab.hostPath('src', 'data');
    await writeTree(srcDir, SOURCE);
    if (process.getuid?.() === 0) {
      // as root, owners and groups are part of the tree (rsync -a as root compares them too)
      await writeTree(srcDir, { 'owners/file.txt': 'owned by 1234:2345\n', 'owners/dir': dir(), 'owners/link': symlink('file.txt') });
      await fsp.chown(path.join(srcDir, 'owners/file.txt'), 1234, 2345);
      await fsp.chown(path.join(srcDir, 'owners/dir'), 4321, 5432);
      await fsp.lchown(path.join(srcDir, 'owners/link'), 777, 888);
    }
    await writeLargeFile(path.join(srcDir, 'big/big.bin'), BIG, { seed: 'big', mode: 0o640 });
    const many = await writeManyFiles(path.join(srcDir, 'many'), { count: MANY, minSize: 100, maxSize: 8192, perDir: 100 });

    // --- tA: nothing at all (its host dir exists, --dst does not)

    // --- tB: an older, partial copy
    const bDst = lab.hostPath('tB', 'dst');
    await rsyncCopy(srcDir, bDst);
    for (const [i, rel] of many.files.entries()) {
      const p = path.join(bDst, 'many', rel);
      if (i === 7 || i === 307 || i === 1507) {
        // same size, other bytes, an mtime 1-2 ms off: only the hash comparison notices. (Put back
        // through a Date, the mtime is rounded to the millisecond, and the kernel's coarse clock
        // often stamps files ~1.5 µs before a millisecond: that came back within the diff's 2 µs,
        // so the file passed the size-and-mtime check as unchanged, as with rsync -a.)
        const st = await fsp.stat(p);
        const buf = await fsp.readFile(p);
        buf[0] = buf[0]! ^ 0xff;
        await fsp.writeFile(p, buf);
        await fsp.utimes(p, st.atime, new Date(Math.floor(st.mtimeMs) - 1));
      } else if (i % 3 === 0) {
        await fsp.rm(p);
      } else if (i % 10 === 1) {
        const buf = await fsp.readFile(p);
        buf.reverse();
        await fsp.writeFile(p, buf);
        await fsp.utimes(p, OLD, OLD);
      } else if (i % 15 === 2) {
        await fsp.utimes(p, OLD, OLD); // same content, stale mtime
      } else if (i % 20 === 3) {
        await fsp.chmod(p, 0o600); // same content, wrong mode
      }
    }
    await fsp.truncate(path.join(bDst, 'big/big.bin'), 60 * MiB);
    await fsp.utimes(path.join(bDst, 'big/big.bin'), OLD, OLD);
    await fsp.rm(path.join(bDst, 'empty'), { recursive: true });
    await fsp.rm(path.join(bDst, 'times'), { recursive: true });
    await writeTree(bDst, {
      'flip/file-was-dir': symlink('somewhere'),
      'flip/dir-was-file': symlink('../modes'),
      'flip/link-was-file': dir(),
      'flip/link-was-file/sub/x.txt': 'a directory where the source has a symlink\n',
      'flip/link-retarget': symlink('old-target'),
      'many/d000/stale.bin': 'not in the source\n',
      'modes/tool.sh': file('#!/bin/sh\necho gosync\n', { mode: 0o644, mtime: T2 }),
    });

    // --- tC: conflicting types, extras, and symlinks leading outside --dst
    const cDst = lab.hostPath('tC', 'dst');
    await writeTree(lab.hostPath('tC', 'outside'), {
      'keep.txt': 'outside --dst: must survive untouched\n',
      'sub/keep2.txt': 'also outside\n',
    });
    outsideBefore = await snapshotTree(lab.hostPath('tC', 'outside'));
    await writeTree(cDst, {
      'big/big.bin/chunk0': 'a directory where the source has a big file\n',
      many: dir(),
      'many/d005': 'a file where the source has a directory\n',
      'modes/private.txt': file('only for the owner\n', { mode: 0o777, mtime: T1 }),
      'modes/tool.sh': file('#!/bin/sh\necho gosync\n', { mode: 0o600, mtime: T2 }),
      'modes/private-dir': dir({ mode: 0o755 }),
      'flip/file-was-dir/sub/deep.txt': 'a directory where the source has a file\n',
      'flip/dir-was-file': 'a file where the source has a directory\n',
      'flip/link-was-file': 'a file where the source has a symlink\n',
      'flip/link-retarget': symlink('old-target'),
      // a naive sync follows these: it would delete keep.txt or write inside.txt outside --dst
      'flip/empty-dir-was-link': symlink(lab.common('outside')),
      'flip/dir-via-link': symlink(lab.common('outside')),
      'extra.txt': 'extra\n',
      'extra-dir/a/b/c.txt': 'extra, deep\n',
      'extra-link': symlink('nowhere'),
      'ro-dir': dir({ mode: 0o555 }),
      'ro-dir/inner-extra.txt': 'inside a read-only directory\n',
      'names/old name.txt': 'gone after the sync\n',
      'zero.txt/inner': 'a directory where the source has an empty file\n',
      'links/dangling': 'a file where the source has a dangling symlink\n',
      'empty/nested/deeper/extra.txt': 'extra inside a directory that is empty in the source\n',
    });
    await rsyncCopy(path.join(srcDir, 'many/d010'), path.join(cDst, 'many/d010'));
  }, { timeout: 240_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('first sync: all three targets end up equal to the source', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const want = await snapshotTree(srcDir);
    const counts = countFiles(want);
    assert.equal(await exists(lab.hostPath('tA', 'dst')), false, 'fixture: tA has no --dst');

    const r = await lab.syncJson(syncArgs(), { home: source.home });
    t.diagnostic(took(r));
    assert.equal(r.code, 0, ctx(r));
    assert.equal(r.report.ok, true, ctx(r));
    assert.equal(r.report.source, source.peerId, ctx(r));
    assert.equal(r.report.src, lab.common('data'), ctx(r));
    assert.equal(r.report.dst, lab.common('dst'), ctx(r));
    assert.equal(r.report.targets.length, 3, ctx(r));
    const [a, b, c] = [tA, tB, tC].map((d) => targetOf(r.report, d));
    for (const tr of [a!, b!, c!]) assert.equal(tr.status, 'ok', ctx(r));

    // tA had nothing: it received every file body, nothing to delete
    assert.equal(a!.bytes, counts.bytes, `tA receives every byte\n${ctx(r)}`);
    assert.ok(a!.files >= counts.files - counts.zeroFiles && a!.files <= counts.files, `tA receives every file\n${ctx(r)}`);
    assert.equal(a!.deleted, 0, ctx(r));
    assert.ok(a!.created > 0, ctx(r));
    // tB reused what it had
    assert.ok(b!.bytes < a!.bytes, `tB (partial copy) receives less than tA (empty)\n${ctx(r)}`);
    // tC had extras to delete (-d)
    assert.ok(c!.deleted > 0, `tC deletes its extras\n${ctx(r)}`);

    for (const d of [tA, tB, tC]) {
      const dst = lab.hostPath(d.name, 'dst');
      assert.equal(await rsyncOracle(srcDir, dst), '', `oracle for ${d.name}`);
      assert.deepEqual(diffSnapshots(want, await snapshotTree(dst)), [], `own walk of ${d.name}`);
    }
    assert.deepEqual(
      diffSnapshots(outsideBefore, await snapshotTree(lab.hostPath('tC', 'outside')), 'exact'),
      [],
      "tC's directory outside --dst (reachable through symlinks it had) is untouched",
    );
    assert.deepEqual(diffSnapshots(want, await snapshotTree(srcDir, { hash: false }), 'exact'), [], 'the source is not modified');
  });

  test('the same sync again: all unchanged, no file bodies sent', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const before = new Map<string, Map<string, NodeInfo>>();
    for (const d of [tA, tB, tC]) before.set(d.name, await snapshotTree(lab.hostPath(d.name, 'dst'), { hash: false }));

    const r = await lab.syncJson(syncArgs(), { home: source.home });
    t.diagnostic(took(r));
    assert.equal(r.code, 0, ctx(r));
    assert.equal(r.report.ok, true, ctx(r));
    assert.equal(r.report.targets.length, 3, ctx(r));
    for (const d of [tA, tB, tC]) {
      const tr = targetOf(r.report, d);
      assert.equal(tr.status, 'unchanged', `${d.name}\n${ctx(r)}`);
      assert.deepEqual(
        { files: tr.files, bytes: tr.bytes, created: tr.created, deleted: tr.deleted, updated: tr.updated },
        { files: 0, bytes: 0, created: 0, deleted: 0, updated: 0 },
        `${d.name}\n${ctx(r)}`,
      );
      const dst = lab.hostPath(d.name, 'dst');
      assert.equal(await rsyncOracle(srcDir, dst), '', `oracle for ${d.name}`);
      assert.deepEqual(diffSnapshots(before.get(d.name)!, await snapshotTree(dst, { hash: false }), 'exact'), [], `${d.name} untouched`);
    }
  });

  test('-n (dry run) on a changed source writes nothing', { timeout: 300_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    await writeTree(srcDir, {
      'dry/new.txt': 'new since the last sync\n',
      'modes/private.txt': file('changed since the last sync\n', { mode: 0o600 }),
    });
    await fsp.rm(path.join(srcDir, 'zero.txt'));
    const before = new Map<string, Map<string, NodeInfo>>();
    for (const d of [tA, tB, tC]) before.set(d.name, await snapshotTree(lab.hostPath(d.name, 'dst'), { hash: false }));

    const r = await lab.syncJson(syncArgs('-n'), { home: source.home });
    t.diagnostic(took(r));
    assert.equal(r.code, 0, ctx(r));
    for (const d of [tA, tB, tC]) {
      assert.notEqual(targetOf(r.report, d).status, 'failed', ctx(r));
      const dst = lab.hostPath(d.name, 'dst');
      assert.deepEqual(diffSnapshots(before.get(d.name)!, await snapshotTree(dst, { hash: false }), 'exact'), [], `${d.name} untouched by -n`);
      const diff = await rsyncOracle(srcDir, dst);
      for (const rel of ['dry/new.txt', 'modes/private.txt', 'zero.txt']) {
        assert.ok(diff.includes(rel), `the oracle still sees ${rel} differ on ${d.name}:\n${diff}`);
      }
    }
  });
});
