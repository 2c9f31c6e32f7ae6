// Stream muxers: a source limited to mplex still syncs to a default target
// (yamux+mplex), and the report says which muxer carried the data. A source
// limited to yamux is the control, so the field cannot be a constant.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  Lab,
  type Daemon,
  dir,
  fmt,
  rsyncOracle,
  symlink,
  type SyncRun,
  targetOf,
  writeLargeFile,
  writeManyFiles,
  writeTree,
} from '../lab/hosts.js';

const ctx = (r: SyncRun) => `${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`;

describe('muxers', () => {
  let lab: Lab;
  let mplexSource: Daemon;
  let yamuxSource: Daemon;
  let target: Daemon;

  before(async () => {
    lab = await Lab.create('mplex');
    const ids = [await lab.identity('src-mplex'), await lab.identity('src-yamux')];
    [mplexSource, yamuxSource, target] = await Promise.all([
      lab.startDaemon({ name: 'src-mplex', extraArgs: ['--muxer', 'mplex'] }),
      lab.startDaemon({ name: 'src-yamux', extraArgs: ['--muxer', 'yamux'] }),
      lab.startDaemon({ name: 'target', trust: ids }),
    ]);
    // Both sources read the same tree: in their own views, or the shared one.
    for (const name of lab.views ? ['src-mplex', 'src-yamux'] : ['src-mplex']) {
      const src = lab.hostPath(name, 'data');
      await writeTree(src, { 'a.txt': 'a\n', 'd/b.txt': 'b\n', 'd/l': symlink('../a.txt'), e: dir() });
      await writeManyFiles(path.join(src, 'many'), { count: 300, seed: 3 });
      // big enough to need flow control (mplex has none of its own)
      await writeLargeFile(path.join(src, 'big.bin'), 24 * 1024 * 1024, { seed: 'mplex' });
    }
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  for (const [label, muxer] of [['mplex', /mplex/], ['yamux', /yamux/]] as const) {
    test(`a source limited to ${label} syncs, and the report names ${label}`, { timeout: 300_000 }, async () => {
      const source = label === 'mplex' ? mplexSource : yamuxSource;
      const dst = `dst-${label}`;
      const r = await lab.syncJson(
        ['-t', target.addr, '--src', lab.common('data'), '--dst', lab.common(dst), '-d'],
        { home: source.home },
      );
      assert.equal(r.code, 0, ctx(r));
      const tr = targetOf(r.report, target);
      assert.equal(tr.status, 'ok', ctx(r));
      assert.match(tr.muxer ?? '(no muxer field)', muxer, ctx(r));
      assert.equal(await rsyncOracle(lab.hostPath(source.name, 'data'), lab.hostPath('target', dst)), '');
    });
  }
});
