// Kill -9 an interior relay during a 256 MiB transfer over shaped links (network
// namespaces, 200 Mbit/s each). The relay's descendants are re-attached at once (fed
// from the source, continuing each from the part it kept) while the rest of the chain
// goes on; everyone but the dead relay passes the rsync oracle, and the bytes sent again
// are a small fraction of the file.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { NetLab } from '../lab/netns.js';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, waitFor, writeLargeFile, writeTree, tempBytesIn } from '../lab/hosts.js';

const avail = NetLab.available();
const SIZE = 256 * 1024 * 1024;

describe('an interior relay dies mid-transfer on shaped links', { skip: avail.ok ? false : `network namespaces unavailable: ${avail.reason}` }, () => {
  let net: NetLab;
  let lab: Lab;
  let source: Daemon;
  let chain: Daemon[] = [];

  before(async () => {
    net = NetLab.create({ hosts: 5, rateMbit: 200 });
    lab = await Lab.create('splice');
    const sourceId = await lab.identity('h1');
    source = await lab.startDaemon({ name: 'h1', wrap: net.wrap('h1'), listen: net.listen('h1') });
    chain = await Promise.all(['h2', 'h3', 'h4', 'h5'].map(async (name) =>
      await lab.startDaemon({ name, wrap: net.wrap(name), listen: net.listen(name), trust: [sourceId], extraArgs: ['--stall-timeout', '5'] })));
    const src = lab.hostPath('h1', 'data');
    await writeTree(src, { 'README': 'one big file\n' });
    await writeLargeFile(`${src}/big.bin`, SIZE, { seed: 'splice' });
  }, { timeout: 180_000 });

  after(async () => {
    await lab?.cleanup();
    net?.destroy();
  });

  test('the others finish, pass the oracle, and little is sent again', { timeout: 300_000 }, async () => {
    if (!lab.views) return;
    // chain h1 → h2 → h3 → h4 → h5 (fan-out 1, in the order given); h3 is interior
    const [h2, h3, h4, h5] = chain as [Daemon, Daemon, Daemon, Daemon];
    const running = lab.syncJson(['-t', chain.map(t => t.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy')], { home: source.home, timeoutMs: 240_000 });
    const dst4 = lab.hostPath('h4', 'copy');
    const reached = await waitFor(async () => (await tempBytesIn(dst4)) >= SIZE / 4, { timeoutMs: 120_000, intervalMs: 20 });
    assert.ok(reached, 'h4 never received a quarter of the file');
    const atKill = await tempBytesIn(dst4);
    await h3.kill();
    const r = await running;
    assert.equal(r.code, 1, fmt(r));
    assert.equal(targetOf(r.report, h3).status, 'failed');
    for (const t of [h2, h4, h5]) {
      assert.equal(targetOf(r.report, t).status, 'ok', `${t.name}\n${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`);
      assert.equal(await rsyncOracle(lab.hostPath('h1', 'data'), lab.hostPath(t.name, 'copy')), '', `oracle on ${t.name}`);
      assert.deepEqual((await fsp.readdir(lab.hostPath(t.name, 'copy'))).filter(n => n.startsWith('.gosync-tmp-')), [], `${t.name}: temp files left`);
      // equal links: nobody holds the others back (~10 s of 200 Mbit/s: three laggard windows)
      assert.notEqual(targetOf(r.report, t).laggard, true, `${t.name} was called slow on an equal link`);
    }
    const lines = [`# relay h3 killed with h4 at ${(atKill / 1048576).toFixed(0)} MiB of ${SIZE / 1048576} MiB; run took ${r.report.totals.seconds.toFixed(1)} s`];
    for (const t of [h4, h5]) {
      const tr = targetOf(r.report, t) as ReturnType<typeof targetOf> & { received?: number; resumed?: number };
      assert.ok(tr.received != null && tr.resumed != null, JSON.stringify(tr));
      // the file did not exist on the target: everything beyond its size was sent twice
      const resent = tr.received - (SIZE + 'one big file\n'.length);
      lines.push(`# ${t.name}: received ${tr.received} bytes for ${SIZE} (re-sent ${resent} = ${(100 * resent / SIZE).toFixed(2)} %), continued ${(tr.resumed / 1048576).toFixed(1)} MiB from its kept part`);
      assert.ok(tr.resumed > 0, `${t.name} did not continue from its part`);
      assert.ok(resent >= 0 && resent < SIZE * 0.05, `${t.name} re-sent ${resent} bytes`);
    }
    process.stdout.write(lines.join('\n') + '\n');
  });
});
