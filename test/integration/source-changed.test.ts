// A source file written to while it is being sent. Its hash is computed as it is read (a new
// file's hash is deferred), so a torn copy would verify as exactly the bytes read: the source
// checks the file after its last read against the scan's size, times and inode, and sends a
// SKIP instead of the last frame. Each target (the relay h2 and the host below it, h3) drops
// the file, keeps everything else and reports why; the next task brings the file as it is now.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NetLab } from '../lab/netns.js';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, waitFor, writeLargeFile, writeTree } from '../lab/hosts.js';

const avail = NetLab.available();
const MiB = 1024 * 1024;
// 8 MiB over 20 Mbit/s: ~3.4 s, time enough to write to it mid-way
const SIZE = 8 * MiB;

describe('a source file changed while it is sent', { skip: avail.ok ? false : `network namespaces unavailable: ${avail.reason}` }, () => {
  let net: NetLab;
  let lab: Lab;
  let source: Daemon;
  let targets: Daemon[] = [];

  before(async () => {
    net = NetLab.create({ hosts: 3, rateMbit: 20 });
    lab = await Lab.create('changed');
    const sourceId = await lab.identity('h1');
    source = await lab.startDaemon({ name: 'h1', wrap: net.wrap('h1'), listen: net.listen('h1') });
    targets = await Promise.all(['h2', 'h3'].map(async (name) =>
      await lab.startDaemon({ name, wrap: net.wrap(name), listen: net.listen(name), trust: [sourceId] })));
    await writeTree(lab.hostPath('h1', 'data'), { 'README': 'one big file that changes\n', 'etc/app.conf': 'x = 1\n' });
    await writeLargeFile(lab.hostPath('h1', 'data/big.bin'), SIZE, { seed: 'before', mtime: 1_700_000_000 });
  }, { timeout: 180_000 });

  after(async () => {
    await lab?.cleanup();
    net?.destroy();
  });

  test('the torn file is dropped by every target and reported; the next task brings it', { timeout: 240_000 }, async () => {
    if (!lab.views) return;
    const args = ['-t', targets.map(t => t.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy')]; // a chain (the default fan-out): h1 → h2 → h3
    const running = lab.syncJson(args, { home: source.home, timeoutMs: 120_000 });
    // once the last host holds a MiB of the file in its temp, write into the source's file
    const lastCopy = lab.hostPath('h3', 'copy');
    const partway = await waitFor(async () => {
      const names = await fsp.readdir(lastCopy).catch(() => [] as string[]);
      for (const n of names.filter(n => n.startsWith('.gosync-tmp-'))) {
        if (((await fsp.stat(path.join(lastCopy, n)).catch(() => undefined))?.size ?? 0) >= MiB) return true;
      }
      return false;
    }, { timeoutMs: 60_000, intervalMs: 20 });
    assert.ok(partway, 'h3 never held part of big.bin');
    const fh = await fsp.open(lab.hostPath('h1', 'data/big.bin'), 'r+');
    await fh.write(Buffer.from('written while sent'), 0, undefined, SIZE - 4096);
    await fh.close();
    const r = await running;
    assert.equal(r.code, 1, fmt(r));
    for (const t of targets) {
      const tr = targetOf(r.report, t);
      assert.equal(tr.status, 'failed', fmt(r));
      assert.match(tr.error ?? '', /big\.bin.*changed since the scan/, `${t.name}: ${JSON.stringify(tr)}`);
      const copy = lab.hostPath(t.name, 'copy');
      // the rest of the tree is there; of big.bin, nothing: no final file, no temp left
      assert.equal(await fsp.readFile(path.join(copy, 'etc/app.conf'), 'utf8'), 'x = 1\n');
      assert.equal(await fsp.readFile(path.join(copy, 'README'), 'utf8'), 'one big file that changes\n');
      const names = await fsp.readdir(copy);
      assert.deepEqual(names.filter(n => n === 'big.bin' || n.startsWith('.gosync-tmp-')), [], `${t.name}: ${names.join(' ')}`);
    }
    // the file as it is now, whole and verified
    const again = await lab.syncJson(args, { home: source.home, timeoutMs: 120_000 });
    assert.equal(again.code, 0, fmt(again));
    for (const t of targets) {
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'copy')), '', `oracle on ${t.name}`);
    }
  });
});
