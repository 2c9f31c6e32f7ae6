// A target daemon that is not root: read-only directories (0555) in the tree, files its owner
// may not read (0200, 0000), and subtrees of read-only directories to delete.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, file, fmt, rsyncOracle, type SyncRun, targetOf, writeTree } from '../lab/hosts.js';

const NOBODY = 65534;
const ctx = (r: SyncRun) => `${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`;

describe('a target daemon that is not root', () => {
  let lab: Lab;
  let source: Daemon;
  let target: Daemon | undefined;
  let why: string | undefined;
  let src: string;

  before(async () => {
    lab = await Lab.create('nonroot');
    if (process.getuid?.() !== 0) { why = 'needs root to start a daemon as another user'; return; }
    if (!lab.views) { why = `needs a separate filesystem view per host: ${lab.viewsReason}`; return; }
    const srcId = await lab.identity('src');
    source = await lab.startDaemon({ name: 'src' });
    target = await lab.startDaemon({ name: 't1', trust: [srcId], asUser: NOBODY });
    src = lab.hostPath('src', 'tree');
  }, { timeout: 120_000 });

  after(async () => {
    // the tree holds 0555 directories: root removes them anyway
    await lab?.cleanup();
  });

  async function sync(what: string, extra: string[] = []): Promise<SyncRun> {
    const r = await lab.syncJson(['-t', target!.addr, '--src', lab.common('tree'), '--dst', lab.common('dst'), '-d', ...extra], { home: source.home });
    assert.equal(r.code, 0, `${what}\n${ctx(r)}`);
    assert.notEqual(targetOf(r.report, target!).status, 'failed', `${what}\n${ctx(r)}`);
    // owners: a daemon that is not root keeps its own (as rsync run by that user does)
    assert.equal(await rsyncOracle(src, lab.hostPath('t1', 'dst'), ['--no-o', '--no-g']), '', `${what}: the oracle`);
    return r;
  }

  test('read-only directories, unreadable files and read-only subtrees to delete sync exactly, twice', { timeout: 180_000 }, async (t) => {
    if (why) return t.skip(why);
    const dst = lab.hostPath('t1', 'dst');
    await writeTree(src, {
      'ro/a.txt': 'a\n',
      'ro/sub/b.txt': 'b\n',
      'gone/inner/c.txt': 'c\n',
      'wo.txt': file('write only\n', { mode: 0o200 }),
      'plain.txt': 'plain\n',
    });
    for (const d of ['ro/sub', 'ro', 'gone/inner', 'gone']) await fsp.chmod(path.join(src, d), 0o555);
    await sync('first sync');
    const st = await fsp.stat(path.join(dst, 'ro'));
    assert.equal(st.uid, NOBODY, 'the target daemon runs as nobody');
    assert.equal(st.mode & 0o777, 0o555);

    // into a read-only directory: a new file, a removal; a read-only subtree removed whole;
    // a mode change on a file its owner may not read
    await fsp.chmod(path.join(src, 'ro'), 0o755);
    await fsp.chmod(path.join(src, 'ro/sub'), 0o755);
    await fsp.writeFile(path.join(src, 'ro/new.txt'), 'new\n');
    await fsp.rm(path.join(src, 'ro/sub/b.txt'));
    await fsp.chmod(path.join(src, 'ro/sub'), 0o555);
    await fsp.chmod(path.join(src, 'ro'), 0o555);
    await fsp.chmod(path.join(src, 'gone/inner'), 0o755);
    await fsp.chmod(path.join(src, 'gone'), 0o755);
    await fsp.rm(path.join(src, 'gone'), { recursive: true });
    await fsp.chmod(path.join(src, 'wo.txt'), 0o000);
    const r = await sync('second sync');
    t.diagnostic(JSON.stringify(targetOf(r.report, target!)));
    assert.equal(targetOf(r.report, target!).deleted, 2, ctx(r));

    // --atomic into the same tree with its root read-only (0555 on the target first): the stage is
    // made in it, a file switches into a read-only directory, and the directory modes come back
    await fsp.chmod(src, 0o555);
    try {
      await sync('the root made read-only');
      assert.equal((await fsp.stat(dst)).mode & 0o777, 0o555, 'the root is read-only on the target');
      await fsp.chmod(path.join(src, 'ro'), 0o755);
      await fsp.writeFile(path.join(src, 'ro/atomic.txt'), 'staged\n');
      await fsp.chmod(path.join(src, 'ro'), 0o555);
      await sync('--atomic sync into a read-only root', ['--atomic']);
      assert.equal((await fsp.stat(dst)).mode & 0o777, 0o555, 'the root keeps its mode');
    } finally {
      await fsp.chmod(src, 0o755);
    }
  });
});
