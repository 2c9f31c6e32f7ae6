// A target whose destination fills up: it is reported failed with a clear error, no file on
// it is ever half-written (each is the old version or the new one), no temp file is left,
// and the other target in the same class (downstream of it in the chain) still finishes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeLargeFile, writeTree } from '../lab/hosts.js';

describe('a destination that fills up', () => {
  let lab: Lab;
  let source: Daemon;
  let full: Daemon;
  let fine: Daemon;
  let tmpfs: string | undefined;
  let why: string | undefined;

  before(async () => {
    lab = await Lab.create('diskfull');
    if (!lab.views) return;
    // a 6 MiB tmpfs as the destination of one host; rbind makes it visible in its view
    tmpfs = lab.hostPath('full', 'copy');
    await fsp.mkdir(tmpfs, { recursive: true });
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', tmpfs], { encoding: 'utf8' });
    if (m.status !== 0) { why = `cannot mount a tmpfs: ${m.stderr}`; tmpfs = undefined; return; }
    const sourceId = await lab.identity('src');
    [source, full, fine] = await Promise.all([
      lab.startDaemon({ name: 'src' }),
      lab.startDaemon({ name: 'full', trust: [sourceId] }),
      lab.startDaemon({ name: 'fine', trust: [sourceId] }),
    ]);
    const src = lab.hostPath('src', 'data');
    await writeTree(src, { 'a-small.txt': 'new small\n', 'z-last.txt': 'new last\n' });
    await writeLargeFile(path.join(src, 'm-big.bin'), 10 * 1024 * 1024, { seed: 'full' });
    // the same names, old contents, on both targets
    for (const d of ['full', 'fine']) {
      await writeTree(lab.hostPath(d, 'copy'), { 'a-small.txt': 'old small\n', 'm-big.bin': 'old big\n', 'z-last.txt': 'old last\n' });
    }
  }, { timeout: 120_000 });

  after(async () => {
    // detach the tmpfs first (lazily: the daemon's namespace may still hold it), then clean up
    if (tmpfs) spawnSync('umount', ['-l', tmpfs]);
    await lab?.cleanup();
  });

  test('the full target fails with ENOSPC, keeps whole files only; the target after it in the chain finishes', { timeout: 180_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    if (!tmpfs) return t.skip(why ?? 'no tmpfs');
    // full is first in -t, so it is the relay for fine (chain): it must keep forwarding
    const r = await lab.syncJson(['-t', [full.addr, fine.addr].join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '--stall-timeout', '10'], { home: source.home, timeoutMs: 120_000 });
    assert.equal(r.code, 1, fmt(r));
    const f = targetOf(r.report, full);
    assert.equal(f.status, 'failed', fmt(r));
    assert.match(f.error ?? '', /ENOSPC|no space/i, fmt(r));
    assert.equal(targetOf(r.report, fine).status, 'ok', fmt(r));
    assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), lab.hostPath('fine', 'copy')), '');
    // on the full host: every file is whole, old or new, and no temp file is left
    for (const [name, fresh] of [['a-small.txt', 'new small\n'], ['z-last.txt', 'new last\n']] as const) {
      const got = await fsp.readFile(path.join(tmpfs, name), 'utf8');
      assert.ok(got === fresh || got === fresh.replace('new', 'old'), `${name} is whole: ${JSON.stringify(got)}`);
    }
    assert.equal(await fsp.readFile(path.join(tmpfs, 'm-big.bin'), 'utf8'), 'old big\n', 'the file that did not fit keeps its old content');
    assert.deepEqual((await fsp.readdir(tmpfs)).filter((n) => n.startsWith('.gosync-tmp-')), []);
  });
});
