// Two subnets with no route between them; one host with a leg in each runs
// `gosync daemon --relay-service`. Every other daemon knows only that relay
// (--bootstrap, no mDNS). A sync from subnet A to targets in subnet B named by PeerId only
// must find them (DHT through the relay), reach them through the relay (circuit v2,
// end-to-end Noise between source and target), and pass the rsync oracle.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NetLab } from '../lab/netns.js';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeLargeFile, writeTree } from '../lab/hosts.js';

const avail = NetLab.available();

describe('across networks through a relay', { skip: avail.ok ? false : `network namespaces unavailable: ${avail.reason}` }, () => {
  let net: NetLab;
  let lab: Lab;
  let relay: Daemon;
  let source: Daemon;
  let targets: Daemon[] = [];

  before(async () => {
    net = NetLab.createTwoSubnets({ a: 1, b: 2 });
    lab = await Lab.create('relaynet');
    if (!lab.views) return;
    const sourceId = await lab.identity('a1');
    relay = await lab.startDaemon({ name: 'relay', wrap: net.wrap('relay'), listen: '/ip4/0.0.0.0/tcp/4001', extraArgs: ['--relay-service'] });
    const relayId = relay.peerId;
    const via = (side: 'a' | 'b'): string => `/ip4/10.99.${side === 'a' ? 1 : 2}.254/tcp/4001/p2p/${relayId}`;
    source = await lab.startDaemon({ name: 'a1', wrap: net.wrap('a1'), listen: net.listen('a1'), extraArgs: ['--bootstrap', via('a')] });
    targets = await Promise.all(['b1', 'b2'].map(async (name) => await lab.startDaemon({ name, wrap: net.wrap(name), listen: net.listen(name), trust: [sourceId], extraArgs: ['--bootstrap', via('b')] })));
    await writeTree(lab.hostPath('a1', 'data'), { 'etc/app.conf': 'across\n', 'etc/link': { kind: 'symlink', target: 'app.conf' } as never });
    await writeLargeFile(lab.hostPath('a1', 'data', 'blob.bin'), 3 * 1024 * 1024, { seed: 'across' });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
    net?.destroy();
  });

  test('a sync by PeerIds from one subnet to the other succeeds through the relay', { timeout: 240_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    let r;
    // reservations and DHT entries take a moment after start: retry until found
    for (let i = 0; i < 20; i++) {
      r = await lab.syncJson(['-t', targets.map((d) => d.peerId).join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '--stall-timeout', '10'], { home: source.home, timeoutMs: 120_000 });
      if (r.code === 0) break;
      t.diagnostic(`attempt ${i + 1}: ${r.report.targets.map((x) => `${x.status} ${x.error ?? ''}`).join(' | ')}`);
      await new Promise((res) => setTimeout(res, 1500));
    }
    assert.equal(r!.code, 0, fmt(r!));
    for (const d of targets) {
      assert.equal(targetOf(r!.report, d).status, 'ok', fmt(r!));
      assert.equal(await rsyncOracle(lab.hostPath('a1', 'data'), lab.hostPath(d.name, 'copy')), '', `oracle on ${d.name}`);
    }
  });
});
