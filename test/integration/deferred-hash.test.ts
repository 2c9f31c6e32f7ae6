// Deferred hashing: new large content is hashed by the source while it is sent, and each
// target verifies it against the hash that comes on the control stream. A target that has
// the same content under another mtime says so (needs.have) and gets a metadata fix only.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeLargeFile, writeTree } from '../lab/hosts.js';

const MiB = 1024 * 1024;

describe('deferred hashes', () => {
  let lab: Lab;
  let source: Daemon;
  let targets: Daemon[];
  const sums: Record<string, string> = {};

  before(async () => {
    lab = await Lab.create('deferred');
    if (!lab.views) return;
    ({ source, targets } = await lab.startSourceAndTargets(['t1', 't2']));
    const src = lab.hostPath('src', 'data');
    await writeTree(src, { 'small.txt': 'small\n' });
    sums['new.bin'] = (await writeLargeFile(path.join(src, 'new.bin'), 3 * MiB, { seed: 'new', mtime: 1_700_000_000 })).sha256;
    sums['deep/big.bin'] = (await writeLargeFile(path.join(src, 'deep', 'big.bin'), 4 * MiB, { seed: 'deep', mtime: 1_700_000_000 })).sha256;
    sums['touched.bin'] = (await writeLargeFile(path.join(src, 'touched.bin'), 2 * MiB, { seed: 'same', mtime: 1_700_000_000 })).sha256;
    sums['changed.bin'] = (await writeLargeFile(path.join(src, 'changed.bin'), 2 * MiB, { seed: 'changed', mtime: 1_700_000_000 })).sha256;
    // t1 has the same touched.bin under another mtime, and a changed.bin of the same size
    const t1 = lab.hostPath('t1', 'copy');
    await writeLargeFile(path.join(t1, 'touched.bin'), 2 * MiB, { seed: 'same', mtime: 1_600_000_000 });
    await writeLargeFile(path.join(t1, 'changed.bin'), 2 * MiB, { seed: 'old', mtime: 1_600_000_000 });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('new content is verified against the hash sent after it; same content is not sent again', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const t1Touched = path.join(lab.hostPath('t1', 'copy'), 'touched.bin');
    const inodeBefore = (await fsp.stat(t1Touched)).ino;
    const r = await lab.syncJson(['-t', targets.map((d) => d.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy')], { home: source.home });
    assert.equal(r.code, 0, fmt(r));
    for (const d of targets) {
      assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), lab.hostPath(d.name, 'copy')), '', `oracle on ${d.name}`);
    }
    // receipts bind the hashes the targets learnt for deferred files, not only the manifest
    for (const d of targets) {
      const tr = targetOf(r.report, d);
      assert.equal(tr.receipt?.verified, true, fmt(r));
      assert.notEqual(tr.receipt?.digest, (r.report as { digest?: string }).digest, 'the receipt binds more than the manifest');
    }
    const r1 = targetOf(r.report, targets[0]!) as ReturnType<typeof targetOf> & { received?: number };
    const r2 = targetOf(r.report, targets[1]!) as ReturnType<typeof targetOf> & { received?: number };
    // t1: new.bin, deep/big.bin, changed.bin and small.txt; touched.bin only got its mtime
    assert.equal(r1.received, 9 * MiB + 6, JSON.stringify(r1));
    assert.equal((await fsp.stat(t1Touched)).ino, inodeBefore, 'touched.bin was not rewritten');
    assert.equal(r2.received, 11 * MiB + 6, JSON.stringify(r2));
    // the hashes computed while sending are kept by the source for its next scan
    // (the daemon writes them after its report: wait for the file to say so)
    const cacheDir = path.join(source.home, 'hashcache');
    const readCache = async () => JSON.stringify(await Promise.all((await fsp.readdir(cacheDir)).map(async (f) => JSON.parse(await fsp.readFile(path.join(cacheDir, f), 'utf8')))));
    let cached = await readCache();
    for (const deadline = Date.now() + 10_000; Object.values(sums).some((sum) => !cached.includes(sum)) && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      cached = await readCache();
    }
    for (const [p, sum] of Object.entries(sums)) assert.ok(cached.includes(sum), `hash of ${p} not in the source's cache`);

    const again = await lab.syncJson(['-t', targets.map((d) => d.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy')], { home: source.home });
    assert.equal(again.code, 0, fmt(again));
    for (const d of targets) assert.equal(targetOf(again.report, d).status, 'unchanged');
  });
});
