// The source dies (kill -9) in the middle of a transfer. Targets keep their old files
// intact (nothing half-written at a final path) and keep the file they were receiving as a
// part; a re-run moves only what is still missing: the resumed file continues from its part.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, waitFor, writeLargeFile, writeTree, tempBytesIn } from '../lab/hosts.js';

const BIG = 96 * 1024 * 1024;

describe('the source dies mid-transfer', () => {
  let lab: Lab;
  let source: Daemon;
  let target: Daemon;
  let sourceId: string;

  before(async () => {
    lab = await Lab.create('srcdeath');
    if (!lab.views) return;
    sourceId = await lab.identity('src');
    [source, target] = await Promise.all([lab.startDaemon({ name: 'src' }), lab.startDaemon({ name: 't1', trust: [sourceId], extraArgs: ['--stall-timeout', '5'] })]);
    const src = lab.hostPath('src', 'data');
    await writeTree(src, { 'a.txt': 'new a\n', 'keep.txt': 'new keep\n' });
    await writeLargeFile(path.join(src, 'big.bin'), BIG, { seed: 'srcdeath' });
    // the target has an old version of some files
    await writeTree(lab.hostPath('t1', 'copy'), { 'keep.txt': 'old keep\n', 'big.bin': 'old big\n' });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('old files stay intact, the partial file is kept, and a re-run resumes it', { timeout: 240_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const args = ['-t', target.addr, '--src', lab.common('data'), '--dst', lab.common('copy')];
    const dst = lab.hostPath('t1', 'copy');
    const running = lab.syncJson(args, { home: source.home, timeoutMs: 120_000 });
    const started = await waitFor(async () => (await tempBytesIn(dst)) > 4 * 1024 * 1024, { timeoutMs: 60_000, intervalMs: 5 });
    await source.kill();
    const first = await running.catch((e: Error) => e);
    assert.ok(started, 'the target never received data');
    t.diagnostic(`first run: ${first instanceof Error ? first.message.slice(0, 200) : `exit ${first.code}`}`);
    // nothing half-written at a final path: big.bin is still the old one
    assert.equal(await fsp.readFile(path.join(dst, 'big.bin'), 'utf8'), 'old big\n');
    // the target notices the dead source within its stall timeout and keeps the part
    assert.ok(await waitFor(async () => (await fsp.readdir(dst)).some((n) => n.startsWith('.gosync-tmp-part-')), { timeoutMs: 30_000, intervalMs: 100 }), `no part kept: ${(await fsp.readdir(dst)).join(' ')}`);
    const kept = await tempBytesIn(dst);

    source = await lab.startDaemon({ name: 'src' });
    const r = await lab.syncJson(args, { home: source.home, timeoutMs: 120_000 });
    assert.equal(r.code, 0, fmt(r));
    const tr = targetOf(r.report, target);
    assert.equal(tr.status, 'ok', fmt(r));
    assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), dst), '');
    assert.deepEqual((await fsp.readdir(dst)).filter((n) => n.startsWith('.gosync-tmp-')), [], 'no temp or part left');
    // the re-run sent what was missing: the big file minus the kept part (plus small files)
    assert.ok(kept > 0);
    assert.ok(tr.bytes <= BIG - kept + 100, `re-run moved ${tr.bytes} bytes; big file ${BIG}, kept part ${kept}\n${fmt(r)}`);
    t.diagnostic(`kept ${kept} bytes; the re-run moved ${tr.bytes} of ${BIG + 15} bytes (${(100 * kept / BIG).toFixed(1)} % resumed)`);
  });
});
