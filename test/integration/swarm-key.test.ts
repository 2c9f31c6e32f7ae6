// A private swarm (libp2p pnet): with <home>/swarm.key, a daemon talks only to holders of
// the same key. Peers with another key or none cannot even connect.
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeTree } from '../lab/hosts.js';

describe('private swarm key', () => {
  let lab: Lab;
  let source: Daemon;
  let same: Daemon;
  let other: Daemon;
  let none: Daemon;

  before(async () => {
    lab = await Lab.create('swarm');
    if (!lab.views) return;
    const sourceId = await lab.identity('src');
    const key = await lab.runCli(['swarm-key'], { home: lab.home('src') });
    assert.equal(key.code, 0, fmt(key));
    await mkdir(lab.home('same'), { recursive: true });
    await copyFile(join(lab.home('src'), 'swarm.key'), join(lab.home('same'), 'swarm.key'));
    assert.equal((await lab.runCli(['swarm-key'], { home: lab.home('other') })).code, 0);
    [source, same, other, none] = await Promise.all([
      lab.startDaemon({ name: 'src' }),
      lab.startDaemon({ name: 'same', trust: [sourceId] }),
      lab.startDaemon({ name: 'other', trust: [sourceId] }),
      lab.startDaemon({ name: 'none', trust: [sourceId] }),
    ]);
    await writeTree(lab.hostPath('src', 'data'), { 'a.txt': 'inside the swarm\n', 'd/b.txt': 'b\n' });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('only the holder of the same key is synced; the others cannot connect', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const r = await lab.syncJson(['-t', [same.addr, other.addr, none.addr].join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '--stall-timeout', '5'], { home: source.home });
    assert.equal(r.code, 1, fmt(r));
    assert.equal(targetOf(r.report, same).status, 'ok', fmt(r));
    assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), lab.hostPath('same', 'copy')), '');
    for (const d of [other, none]) {
      assert.equal(targetOf(r.report, d).status, 'failed', fmt(r));
      assert.notEqual(await rsyncOracle(lab.hostPath('src', 'data'), lab.hostPath(d.name, 'copy')), '', `${d.name} got nothing`);
    }
  });
});
