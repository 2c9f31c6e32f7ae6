// A LAN of real hosts: network namespaces on a bridge, every link shaped to 200 Mbit/s,
// a daemon in each (own network stack, own filesystem view). One source, four targets.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { NetLab } from '../lab/netns.js';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeLargeFile, writeManyFiles, writeTree, dir, symlink } from '../lab/hosts.js';

const avail = NetLab.available();

describe('shaped LAN of network namespaces', { skip: avail.ok ? false : `network namespaces unavailable: ${avail.reason}` }, () => {
  let net: NetLab;
  let lab: Lab;
  let source: Daemon;
  let targets: Daemon[] = [];

  before(async () => {
    net = NetLab.create({ hosts: 5, rateMbit: 200 });
    lab = await Lab.create('netlab');
    const sourceId = await lab.identity('h1');
    source = await lab.startDaemon({ name: 'h1', wrap: net.wrap('h1'), listen: net.listen('h1'), mdns: true });
    targets = await Promise.all(['h2', 'h3', 'h4', 'h5'].map(async (name) =>
      await lab.startDaemon({ name, wrap: net.wrap(name), listen: net.listen(name), mdns: true, trust: [sourceId] })));
    const src = lab.hostPath('h1', 'data');
    await writeTree(src, { 'etc/app.conf': 'x = 1\n', 'etc/link': symlink('app.conf'), 'var/empty': dir() });
    await writeManyFiles(`${src}/small`, { count: 500, seed: 11 });
    await writeLargeFile(`${src}/blob.bin`, 24 * 1024 * 1024, { seed: 'netlab' });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
    net?.destroy();
  });

  test('a sync to 4 shaped hosts by multiaddr passes the rsync oracle on every host', { timeout: 300_000 }, async () => {
    if (!lab.views) return;
    const r = await lab.syncJson(['-t', targets.map(t => t.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '-d'], { home: source.home, timeoutMs: 240_000 });
    assert.equal(r.code, 0, fmt(r));
    for (const t of targets) {
      assert.equal(targetOf(r.report, t).status, 'ok', fmt(r));
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'copy')), '', `oracle on ${t.name}`);
    }
    // S = 24 MiB + small files over 200 Mbit/s links: about 1.1 s per host if sent one by one
    process.stdout.write(`# 4 shaped targets: ${r.report.totals.seconds.toFixed(2)} s for ${(r.report.totals.bytes / 4 / 1048576).toFixed(1)} MiB each\n`);
  });

  test('mDNS finds the peers inside the namespaces: a sync by bare PeerIds and by names works, peers lists them, and nothing reaches the host namespace', { timeout: 300_000 }, async () => {
    if (!lab.views) return;
    // listen (never send) for mDNS in the machine's own namespace during the sync
    const sock = createSocket({ type: 'udp4', reuseAddr: true });
    let leaked = 0;
    sock.on('message', () => { leaked++; });
    await new Promise<void>((resolve) => sock.bind(5353, () => resolve()));
    try { sock.addMembership('224.0.0.251'); } catch { /* no multicast-capable interface: nothing can arrive anyway */ }
    try {
      let r;
      // discovery takes a moment after start: retry until every PeerId resolves
      for (let i = 0; i < 15; i++) {
        r = await lab.syncJson(['-t', targets.map(t => t.peerId).join(','), '--src', lab.common('data'), '--dst', lab.common('by-id')], { home: source.home, timeoutMs: 120_000 });
        if (r.code === 0) break;
        await new Promise(res => setTimeout(res, 1000));
      }
      assert.equal(r!.code, 0, fmt(r!));
      for (const t of targets) {
        assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'by-id')), '', `oracle on ${t.name}`);
      }
      // the source lists them, found by mDNS, with their trust as seen from the source
      const p = await lab.runCli(['peers', '--json'], { home: source.home });
      assert.equal(p.code, 0, fmt(p));
      const listed = JSON.parse(p.stdout) as { daemon: boolean; peers: Array<{ peer: string; how: string[]; addrs: string[] }> };
      assert.equal(listed.daemon, true);
      for (const t of targets) {
        const row = listed.peers.find((x) => x.peer === t.peerId);
        assert.ok(row != null && row.how.includes('mdns') && row.addrs.some((a) => a.includes('/ip4/10.99.0.')), `${t.name} listed as found by mDNS\n${p.stdout}`);
      }
      // names from the address book work as targets
      await lab.runCli(['peers', 'add', 'web-a', targets[0]!.peerId], { home: source.home });
      await lab.runCli(['peers', 'add', 'web-b', targets[1]!.addr], { home: source.home });
      const n = await lab.syncJson(['-t', 'web-a,web-b', '--src', lab.common('data'), '--dst', lab.common('by-name')], { home: source.home, timeoutMs: 120_000 });
      assert.equal(n.code, 0, fmt(n));
      for (const t of targets.slice(0, 2)) {
        assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'by-name')), '', `oracle on ${t.name} (by name)`);
      }
    } finally {
      sock.close();
    }
    assert.equal(leaked, 0, 'mDNS packets reached the host namespace');
  });
});
