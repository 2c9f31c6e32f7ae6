// Noise's cipher: daemons on the system's libcrypto (native/openssl-aead.c) and daemons on
// Node's own cipher (GOSYNC_NOISE_CIPHER=node, as where the module is not built) are the same
// on the wire. A chain source → t1 → t2 crosses both kinds on each hop, with a large file
// (many full 64 KiB Noise messages) and small ones; every copy passes the rsync oracle.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeLargeFile, writeManyFiles } from '../lab/hosts.js';

describe('Noise cipher implementations talk to each other', () => {
  let lab: Lab;
  let source: Daemon;
  let t1: Daemon;
  let t2: Daemon;

  before(async () => {
    lab = await Lab.create('cipher');
    const sourceId = await lab.identity('src');
    source = await lab.startDaemon({ name: 'src' });
    // t1 (the relay) on Node's cipher between two daemons on the system's
    [t1, t2] = await Promise.all([
      lab.startDaemon({ name: 't1', trust: [sourceId], env: { GOSYNC_NOISE_CIPHER: 'node' } }),
      lab.startDaemon({ name: 't2', trust: [sourceId] }),
    ]);
    const src = lab.hostPath('src', 'data');
    await writeLargeFile(path.join(src, 'big.bin'), 24 * 1024 * 1024, { seed: 'cipher' });
    await writeManyFiles(path.join(src, 'small'), { count: 300, seed: 7, minSize: 1, maxSize: 9000 });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('a chain across both ciphers delivers every byte', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    // each daemon says which cipher it runs when it is not the system's
    assert.match(t1.stderr(), /Noise runs on Node's own ChaCha20-Poly1305 \(GOSYNC_NOISE_CIPHER=node\)/);
    if (process.platform === 'linux') {
      assert.doesNotMatch(t2.stderr(), /Noise runs on Node's own/, 'the native cipher was not loaded');
      assert.doesNotMatch(source.stderr(), /Noise runs on Node's own/, 'the native cipher was not loaded');
    }
    const r = await lab.syncJson(['-t', `${t1.addr},${t2.addr}`, '--src', lab.common('data'), '--dst', lab.common('copy')], { home: source.home });
    assert.equal(r.code, 0, fmt(r));
    for (const d of [t1, t2]) {
      assert.equal(targetOf(r.report, d).status, 'ok', fmt(r));
      assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), lab.hostPath(d.name, 'copy')), '', `oracle on ${d.name}`);
    }
  });
});
