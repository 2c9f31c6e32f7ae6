// Temp files left by a session that died (kill -9, crash, power loss) are removed by the
// next session that holds the destination; a dry run leaves them alone.
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, rsyncOracle, targetOf, writeTree } from '../lab/hosts.js';

describe('stale temp files', () => {
  let lab: Lab;
  let source: Daemon;
  let target: Daemon;

  before(async () => {
    lab = await Lab.create('stale');
    if (!lab.views) return;
    const sourceId = await lab.identity('src');
    [source, target] = await Promise.all([lab.startDaemon({ name: 'src' }), lab.startDaemon({ name: 't1', trust: [sourceId] })]);
    await writeTree(lab.hostPath('src', 'data'), { 'a.txt': 'a\n', 'sub/b.txt': 'b\n' });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('leftover .gosync-tmp-* files are removed by the next sync, not by a dry run', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const dst = lab.hostPath('t1', 'copy');
    await mkdir(join(dst, 'sub'), { recursive: true });
    await writeFile(join(dst, '.gosync-tmp-deadbeef000001'), 'half a file');
    await writeFile(join(dst, 'sub', '.gosync-tmp-deadbeef000002'), 'another half');
    const args = ['-t', target.addr, '--src', lab.common('data'), '--dst', lab.common('copy'), '-d'];

    const dry = await lab.syncJson([...args, '-n'], { home: source.home });
    assert.equal(dry.code, 0, fmt(dry));
    assert.ok((await readdir(dst)).includes('.gosync-tmp-deadbeef000001'), 'a dry run changes nothing');

    const r = await lab.syncJson(args, { home: source.home });
    assert.equal(r.code, 0, fmt(r));
    assert.equal(targetOf(r.report, target).status, 'ok', fmt(r));
    assert.deepEqual((await readdir(dst)).filter((n) => n.startsWith('.gosync-tmp-')), []);
    assert.deepEqual((await readdir(join(dst, 'sub'))).filter((n) => n.startsWith('.gosync-tmp-')), []);
    assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), dst), '');
  });

  test('a source file under the reserved .gosync-tmp- prefix is not sent, and the CLI says so', { timeout: 120_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const src = lab.hostPath('src', 'reserved');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, '.gosync-tmp-mine'), 'a name gosync keeps for itself');
    await writeFile(join(src, 'ok.txt'), 'ok');
    const r = await lab.runCli(['sync', '-t', target.addr, '--src', lab.common('reserved'), '--dst', lab.common('reserved-copy'), '--home', source.home]);
    assert.equal(r.code, 0, fmt(r));
    assert.match(r.stderr, /skipping \.gosync-tmp-mine: names starting with \.gosync-tmp- are reserved/, fmt(r));
    const dst = lab.hostPath('t1', 'reserved-copy');
    assert.deepEqual((await readdir(dst)).sort(), ['ok.txt']);
    assert.equal(await rsyncOracle(src, dst, ['--exclude=.gosync-tmp-*']), '');
  });
});
