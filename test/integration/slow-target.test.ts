// One slow host in a chain of fast ones (network namespaces: h4 on a 20 Mbit/s link, the
// others on 200 Mbit/s). Credit is end to end, so without more the slow host would pace
// every host of the chain. Its relay parent finds it holding the tree back, cuts it off, and
// the source re-attaches it (and, in a round of their own, the hosts below it): every host
// passes the rsync oracle, the slow one is reported as `laggard`, no fast one is, and the
// fast hosts above it are done long before it. The source's home remembers the laggard: the
// next task sends to it alone from the start. With --atomic, a laggard cut off stages in its
// own round and every host switches together. (The tests run in order: the second reads the
// memory the first left.)
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { NetLab } from '../lab/netns.js';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeLargeFile, writeTree } from '../lab/hosts.js';

const avail = NetLab.available();
const SIZE = 32 * 1024 * 1024;

describe('a slow host in a chain of fast ones', { skip: avail.ok ? false : `network namespaces unavailable: ${avail.reason}` }, () => {
  let net: NetLab;
  let lab: Lab;
  let source: Daemon;
  let targets: Daemon[] = [];

  before(async () => {
    net = NetLab.create({ hosts: 5, rateMbit: 200, rateMbitOf: { h4: 20 } });
    lab = await Lab.create('slow');
    const sourceId = await lab.identity('h1');
    source = await lab.startDaemon({ name: 'h1', wrap: net.wrap('h1'), listen: net.listen('h1') });
    targets = await Promise.all(['h2', 'h3', 'h4', 'h5'].map(async (name) =>
      await lab.startDaemon({ name, wrap: net.wrap(name), listen: net.listen(name), trust: [sourceId] })));
    const src = lab.hostPath('h1', 'data');
    await writeTree(src, { 'README': 'one big file\n' });
    await writeLargeFile(`${src}/big.bin`, SIZE, { seed: 'slow host' });
  }, { timeout: 180_000 });

  after(async () => {
    await lab?.cleanup();
    net?.destroy();
  });

  test('the slow host is cut off and finishes alone; everyone passes the oracle', { timeout: 300_000 }, async () => {
    if (!lab.views) return;
    // chain h1 → h2 → h3 → h4 → h5 (fan-out 1, in the order given): h4 is interior and slow
    const [h2, h3, h4, h5] = targets as [Daemon, Daemon, Daemon, Daemon];
    const r = await lab.syncJson(['-t', targets.map(t => t.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy')], { home: source.home, timeoutMs: 240_000 });
    assert.equal(r.code, 0, fmt(r));
    for (const t of targets) {
      assert.equal(targetOf(r.report, t).status, 'ok', fmt(r));
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'copy')), '', `oracle on ${t.name}`);
    }
    assert.equal(targetOf(r.report, h4).laggard, true, `h4 (20 Mbit/s) was not found slow\n${JSON.stringify(r.report, null, 2)}`);
    for (const t of [h2, h3, h5]) assert.notEqual(targetOf(r.report, t).laggard, true, `${t.name} (200 Mbit/s) was called slow`);
    // When each host renamed the file into place: the fast hosts above the slow one went on
    // at their pace (without the cut they finished 1.7 and 3.5 s before h4 did, each a 4 MiB
    // window ahead of the next; with it, ~8 s before, the 32 MiB at 20 Mbit/s being 13.4 s).
    const done = async (t: Daemon): Promise<number> => (await fsp.stat(lab.hostPath(t.name, 'copy/big.bin'))).ctimeMs;
    const [d2, d3, d4] = [await done(h2), await done(h3), await done(h4)];
    const lines = [`# finished before h4 (s): h2 ${((d4 - d2) / 1000).toFixed(1)}, h3 ${((d4 - d3) / 1000).toFixed(1)}; h4's received ${targetOf(r.report, h4).received} resumed ${targetOf(r.report, h4).resumed}`];
    console.log(lines.join('\n'));
    // the 4 MiB windows alone put h3 ~1.7 s ahead of h4
    assert.ok(d4 - d3 > 4000, `h3 finished only ${(d4 - d3) / 1000} s before the slow h4: it was held back`);
  });

  test('the next task sends to the known laggard alone from the start', { timeout: 300_000 }, async () => {
    if (!lab.views) return;
    const [h2, h3, h4, h5] = targets as [Daemon, Daemon, Daemon, Daemon];
    // the source's home remembers whom a relay cut off
    const memory = JSON.parse(await fsp.readFile(`${source.home}/laggards.json`, 'utf8')) as Record<string, number>;
    assert.deepEqual(Object.keys(memory), [h4.peerId]);
    // new content: 8 MiB, 0.34 s at 200 Mbit/s, 3.4 s at 20 (less than a relay takes to judge)
    await writeLargeFile(lab.hostPath('h1', 'data2/big.bin'), SIZE / 4, { seed: 'slow host, again' });
    const r = await lab.syncJson(['-t', targets.map(t => t.addr).join(','), '--src', lab.common('data2'), '--dst', lab.common('copy2')], { home: source.home, timeoutMs: 240_000 });
    assert.equal(r.code, 0, fmt(r));
    for (const t of targets) {
      assert.equal(targetOf(r.report, t).status, 'ok', fmt(r));
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data2'), lab.hostPath(t.name, 'copy2')), '', `oracle on ${t.name}`);
    }
    const slow = targetOf(r.report, h4);
    assert.equal(slow.laggard, true, JSON.stringify(slow));
    // planned alone: never cut, so nothing continued from a kept part and nothing sent twice
    assert.equal(slow.resumed ?? 0, 0, JSON.stringify(slow));
    assert.ok((slow.received ?? 0) < SIZE / 4 + 4096, JSON.stringify(slow));
    for (const t of [h2, h3, h5]) assert.notEqual(targetOf(r.report, t).laggard, true, `${t.name} was called slow`);
    const done = async (t: Daemon): Promise<number> => (await fsp.stat(lab.hostPath(t.name, 'copy2/big.bin'))).ctimeMs;
    const [d3, d4, d5] = [await done(h3), await done(h4), await done(h5)];
    console.log(`# 8 MiB, known laggard alone: finished before h4 (s): h3 ${((d4 - d3) / 1000).toFixed(1)}, h5 ${((d4 - d5) / 1000).toFixed(1)}`);
    // in the chain, h5 (below h4) would finish after h4; alone, h4 takes 3.4 s for 8 MiB, the chain ~0.4 s
    assert.ok(d4 - d5 > 1500, `h5 finished only ${(d4 - d5) / 1000} s before the slow h4: it was held back`);
  });

  test('--atomic: the laggard is cut off and staged in a round of its own; all switch together', { timeout: 300_000 }, async () => {
    if (!lab.views) return;
    const [h2, h3, h4, h5] = targets as [Daemon, Daemon, Daemon, Daemon];
    // a first meeting again: the relay above h4 has to find it
    await fsp.rm(`${source.home}/laggards.json`);
    await writeLargeFile(lab.hostPath('h1', 'data3/big.bin'), SIZE, { seed: 'slow host, atomic' });
    await writeTree(lab.hostPath('h1', 'data3'), { 'etc/app.conf': 'x = 3\n' });
    const r = await lab.syncJson(['-t', targets.map(t => t.addr).join(','), '--src', lab.common('data3'), '--dst', lab.common('copy3'), '--atomic'], { home: source.home, timeoutMs: 240_000 });
    assert.equal(r.code, 0, fmt(r));
    const report = r.report as typeof r.report & { switched?: boolean };
    assert.equal(report.switched, true, fmt(r));
    assert.equal(targetOf(r.report, h4).laggard, true, JSON.stringify(targetOf(r.report, h4)));
    for (const t of [h2, h3, h5]) assert.notEqual(targetOf(r.report, t).laggard, true, `${t.name} was called slow`);
    for (const t of targets) {
      assert.equal(targetOf(r.report, t).status, 'ok', fmt(r));
      assert.equal(targetOf(r.report, t).receipt?.verified, true, `${t.name}: ${JSON.stringify(targetOf(r.report, t))}`);
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data3'), lab.hostPath(t.name, 'copy3')), '', `oracle on ${t.name}`);
    }
  });
});
