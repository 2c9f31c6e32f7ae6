// A re-sync of a tree the target still holds sends no manifest (`tree` / `manifest-known`),
// and any change on the target (mtime, mode, an extra file, a replaced inode) or on the
// source makes the next sync a full one that repairs the tree.
import assert from 'node:assert/strict';
import { chmod, copyFile, rename, stat, utimes, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeTree, file, dir } from '../lab/hosts.js';

describe('re-sync of a known tree', () => {
  let lab: Lab;
  let source: Daemon;
  let target: Daemon;

  before(async () => {
    lab = await Lab.create('known');
    if (!lab.views) return;
    const started = await lab.startSourceAndTargets(['t1']);
    source = started.source;
    target = started.targets[0]!;
    // every file's hash is deferred on a first push (it reaches the target after the data);
    // the files are old enough for the source's hash cache to keep the hashes it computes
    // while sending (a file changed in the last 2 s is not cached, so its hash stays deferred
    // and the source's digest cannot equal the target's record)
    // whole seconds: a time with a fraction drifts by a microsecond each time it passes through
    // utimes as float seconds (here and in the test's own copy below), and the diff allows 2 µs
    const old = new Date(Math.floor(Date.now() / 1000 - 3600) * 1000);
    await writeTree(lab.hostPath('src', 'data'), {
      'a.txt': file('alpha\n', { mtime: old }),
      'sub/': dir({ mode: 0o750 }),
      'sub/b.txt': file('bravo\n', { mode: 0o600, mtime: old }),
      'sub/link': { kind: 'symlink', target: 'b.txt' },
      'big.bin': file(randomBytes(3 * 1024 * 1024), { mtime: old }),
    });
    // the root too: the test copies the target root's times below, and a fraction could drift
    await utimes(lab.hostPath('src', 'data'), old, old);
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('no manifest while the tree is unchanged; a full sync after any change', { timeout: 180_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const src = lab.hostPath('src', 'data');
    const dst = lab.hostPath('t1', 'copy');
    const args = (...extra: string[]) => ['-t', target.addr, '--src', lab.common('data'), '--dst', lab.common('copy'), ...extra];
    let extras = false;
    const run = async (what: string, want: 'ok' | 'unchanged', known: boolean, ...extra: string[]) => {
      const r = await lab.syncJson(args(...extra), { home: source.home });
      assert.equal(r.code, 0, `${what}: ${fmt(r)}`);
      const tr = targetOf(r.report, target);
      assert.equal(tr.status, want, `${what}: ${fmt(r)}`);
      assert.equal(tr.treeKnown === true, known, `${what}: treeKnown ${tr.treeKnown}`);
      assert.equal(tr.receipt?.verified, extra.includes('-n') ? undefined : true, `${what}: receipt`);
      // (the oracle runs with --delete: only for runs that delete too, or with no extras there)
      if (!extra.includes('-n') && (extra.includes('-d') || !extras)) assert.equal(await rsyncOracle(src, dst), '', `${what}: oracle`);
      return tr;
    };

    await run('first sync', 'ok', false, '-d');
    await run('re-sync', 'unchanged', true, '-d');
    await run('dry run', 'unchanged', true, '-n');
    await run('--atomic always sends its manifest', 'unchanged', false, '--atomic');

    // the target's tree changes behind gosync's back
    const b = join(dst, 'sub', 'b.txt');
    await utimes(b, new Date(), new Date(Date.now() - 3_600_000));
    await run('after a touch on the target', 'ok', false, '-d');
    await run('then known again', 'unchanged', true, '-d');

    await chmod(join(dst, 'a.txt'), 0o666);
    await run('after a chmod on the target', 'ok', false, '-d');

    await writeFile(join(dst, 'extra.txt'), 'not from the source\n');
    extras = true;
    // (ok: the root's mtime, changed by the new file, is set back)
    await run('an extra file without --delete: full sync', 'ok', false);
    // recorded as not exact: known without --delete, not with it
    const r = await lab.syncJson(args(), { home: source.home });
    assert.equal(targetOf(r.report, target).treeKnown, true, fmt(r));
    const d = await run('--delete removes the extra file', 'ok', false, '-d');
    assert.equal(d.deleted, 1);

    // same content, same mtime, another inode (cp -p and rename): not the recorded tree
    const a = join(dst, 'a.txt');
    const st = await stat(a, { bigint: true });
    const rootSt = await stat(dst, { bigint: true });
    const secs = (ns: bigint) => Number(ns) / 1e9; // sub-microsecond: the diff compares within 2 µs
    await copyFile(a, `${a}.copy`);
    await utimes(`${a}.copy`, secs(st.atimeNs), secs(st.mtimeNs));
    await chmod(`${a}.copy`, Number(st.mode) & 0o7777);
    await rename(`${a}.copy`, a);
    await utimes(dst, secs(rootSt.atimeNs), secs(rootSt.mtimeNs)); // only the inode differs now
    await run('a replaced inode', 'unchanged', false, '-d');
    await run('then known again', 'unchanged', true, '-d');

    // the source changes: another digest
    await writeFile(join(src, 'a.txt'), 'alpha, changed\n');
    await utimes(join(src, 'a.txt'), new Date(), new Date(Math.floor(Date.now() / 1000 - 60) * 1000));
    await run('after a change on the source', 'ok', false, '-d');
    await run('then known again', 'unchanged', true, '-d');
  });
});
