// The source's own child is the slow host (network namespaces). A relay judges its children by
// how long they keep it waiting; the source cannot, alone: a child on a slow link and the
// source's own slow uplink look the same from the source. So it probes another target of the
// task and compares (src/sync/source-judge.ts):
// - h2, the first host of the chain, on a 20 Mbit/s link, the others on 200: the probe to h3
//   goes several times faster than h2 takes data, h2 is cut off and finishes alone, and h3 and
//   h4 are done long before it;
// - the source's own link at 20 Mbit/s, the targets' at 200: h2 keeps the source waiting just
//   as much, but the probe shares the uplink with it and goes no faster: nobody is cut.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { NetLab } from '../lab/netns.js';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeLargeFile, writeTree } from '../lab/hosts.js';

const avail = NetLab.available();
const skip = avail.ok ? false : `network namespaces unavailable: ${avail.reason}`;

/** Four hosts, h1 the source, with the rates given; `size` bytes in data/ on h1. */
async function setUp(name: string, rateMbitOf: Record<string, number>, size: number): Promise<{ net: NetLab; lab: Lab; source: Daemon; targets: Daemon[] }> {
  const net = NetLab.create({ hosts: 4, rateMbit: 200, rateMbitOf });
  const lab = await Lab.create(name);
  const sourceId = await lab.identity('h1');
  const source = await lab.startDaemon({ name: 'h1', wrap: net.wrap('h1'), listen: net.listen('h1') });
  const targets = await Promise.all(['h2', 'h3', 'h4'].map(async (host) =>
    await lab.startDaemon({ name: host, wrap: net.wrap(host), listen: net.listen(host), trust: [sourceId] })));
  const src = lab.hostPath('h1', 'data');
  await writeTree(src, { 'README': 'one big file\n' });
  await writeLargeFile(`${src}/big.bin`, size, { seed: name });
  return { net, lab, source, targets };
}

describe('the source\'s own child on a slow link', { skip }, () => {
  const SIZE = 32 * 1024 * 1024;
  let env: Awaited<ReturnType<typeof setUp>> | undefined;
  before(async () => { env = await setUp('slowfirst', { h2: 20 }, SIZE); }, { timeout: 180_000 });
  after(async () => {
    await env?.lab.cleanup();
    env?.net.destroy();
  });

  test('a probe to h3 shows room on the uplink: h2 is cut off, h3 and h4 finish long before it', { timeout: 300_000 }, async () => {
    const { lab, source, targets } = env!;
    if (!lab.views) return;
    const [h2, h3, h4] = targets as [Daemon, Daemon, Daemon];
    const r = await lab.syncJson(['-t', targets.map(t => t.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy')], { home: source.home, timeoutMs: 240_000 });
    assert.equal(r.code, 0, fmt(r));
    for (const t of targets) {
      assert.equal(targetOf(r.report, t).status, 'ok', fmt(r));
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'copy')), '', `oracle on ${t.name}`);
    }
    const slow = targetOf(r.report, h2);
    assert.equal(slow.laggard, true, `h2 (20 Mbit/s) was not found slow\n${JSON.stringify(r.report, null, 2)}`);
    assert.equal(slow.probe?.cut, true, JSON.stringify(slow));
    // the rates as the links allow: h2 took at most 20 Mbit/s (2.5 MB/s), and the source sent
    // several times that with the probe (its own link: 200 Mbit/s, 25 MB/s; the probe and h2's
    // credits are timed over spans a few ms apart, so up to a fifth more)
    const p = slow.probe;
    assert.ok(p.rate > 1.5e6 && p.rate <= 2.5e6 && p.sentRate >= p.rate && p.sentRate <= 2.5e6, JSON.stringify(p));
    assert.ok(p.sentRateDuring >= 3 * p.sentRate && p.sentRateDuring <= 25e6 * 1.2 && p.probeRate <= p.sentRateDuring, JSON.stringify(p));
    for (const t of [h3, h4]) assert.notEqual(targetOf(r.report, t).laggard, true, `${t.name} (200 Mbit/s) was called slow`);
    const done = async (t: Daemon): Promise<number> => (await fsp.stat(lab.hostPath(t.name, 'copy/big.bin'))).ctimeMs;
    const [d2, d3, d4] = [await done(h2), await done(h3), await done(h4)];
    console.log(`# finished before h2 (s): h3 ${((d2 - d3) / 1000).toFixed(1)}, h4 ${((d2 - d4) / 1000).toFixed(1)}; probe ${JSON.stringify(slow.probe)}`);
    // uncut, h3 and h4 finish with h2 (a 4 MiB window behind it: 1.7 s at 20 Mbit/s); the
    // 32 MiB take h2 13.4 s at 20 Mbit/s, h3 and h4 1.3 s at 200
    assert.ok(d2 - d4 > 4000, `h4 finished only ${(d2 - d4) / 1000} s before the slow h2: it was held back`);
    // the source remembers h2 for the next tasks
    const memory = JSON.parse(await fsp.readFile(`${source.home}/laggards.json`, 'utf8')) as Record<string, number>;
    assert.deepEqual(Object.keys(memory), [h2.peerId]);
  });
});

describe('the source\'s own uplink is the slow link', { skip }, () => {
  const SIZE = 16 * 1024 * 1024;
  let env: Awaited<ReturnType<typeof setUp>> | undefined;
  before(async () => { env = await setUp('slowsource', { h1: 20 }, SIZE); }, { timeout: 180_000 });
  after(async () => {
    await env?.lab.cleanup();
    env?.net.destroy();
  });

  test('the probe shares the uplink with h2 and goes no faster: nobody is cut', { timeout: 300_000 }, async () => {
    const { lab, source, targets } = env!;
    if (!lab.views) return;
    const [h2] = targets as [Daemon, Daemon, Daemon];
    const r = await lab.syncJson(['-t', targets.map(t => t.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy')], { home: source.home, timeoutMs: 240_000 });
    assert.equal(r.code, 0, fmt(r));
    for (const t of targets) {
      const rep = targetOf(r.report, t);
      assert.equal(rep.status, 'ok', fmt(r));
      assert.notEqual(rep.laggard, true, `${t.name} was called slow, but the source's uplink is the slow link\n${JSON.stringify(r.report, null, 2)}`);
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'copy')), '', `oracle on ${t.name}`);
    }
    // h2 kept the source waiting for all of it (6.7 s for 16 MiB at 20 Mbit/s): it was probed, and kept
    const first = targetOf(r.report, h2);
    assert.equal(first.probe?.cut, false, `h2 was not probed, or was cut: ${JSON.stringify(first)}`);
    // the source's 20 Mbit/s (2.5 MB/s), all to h2 before the probe, shared with it after
    const p = first.probe;
    assert.ok(p.rate > 1.5e6 && p.rate <= 2.5e6 && p.sentRate <= 2.5e6, JSON.stringify(p));
    assert.ok(p.sentRateDuring < 3 * p.sentRate && p.sentRateDuring <= 2.5e6 * 1.2, JSON.stringify(p));
    console.log(`# probe ${JSON.stringify(first.probe)}`);
    await assert.rejects(fsp.readFile(`${source.home}/laggards.json`, 'utf8'));
  });
});
