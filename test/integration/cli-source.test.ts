// The CLI as the source (no daemon in its --home), identities, and exit codes
// for usage errors (2) and tasks that cannot run (3).
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  Lab,
  type Daemon,
  diffSnapshots,
  dir,
  exists,
  file,
  fmt,
  rsyncOracle,
  snapshotTree,
  symlink,
  type SyncRun,
  targetOf,
  writeManyFiles,
  writeTree,
} from '../lab/hosts.js';

const ctx = (r: SyncRun) => `${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`;

describe('the CLI as the source', () => {
  let lab: Lab;
  let cliHome: string;
  let cliId: string;
  let targets: Daemon[];
  let src: string;

  before(async () => {
    lab = await Lab.create('cli');
    cliHome = lab.home('cli');
    cliId = await lab.identity('cli');
    // with separate views, two targets; otherwise they would share one --dst
    const names = lab.views ? ['t1', 't2'] : ['t1'];
    targets = await Promise.all(names.map((name) => lab.startDaemon({ name, trust: [cliId] })));
    // the CLI runs in the test's own view: --src is a real path
    src = path.join(lab.root, 'cli-src');
    await writeTree(src, {
      'a.txt': file('a\n', { mode: 0o600, mtime: 1_300_000_000 }),
      'd/b.txt': 'b\n',
      'd/link': symlink('../a.txt'),
      'd/dangling': symlink('nowhere'),
      empty: dir({ mode: 0o700 }),
    });
    await writeManyFiles(path.join(src, 'many'), { count: 150, seed: 11 });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test('gosync id is stable and keeps the key private (0600)', { timeout: 60_000 }, async () => {
    const r = await lab.runCli(['id'], { home: cliHome });
    assert.equal(r.code, 0, fmt(r));
    assert.equal(r.stdout.split('\n')[0]!.trim(), cliId, fmt(r));
    const st = await fsp.stat(path.join(cliHome, 'identity.key'));
    assert.equal(st.mode & 0o777, 0o600, `identity.key mode ${(st.mode & 0o777).toString(8)}`);
  });

  test('with no daemon in --home, the CLI itself is the source', { timeout: 300_000 }, async () => {
    assert.equal(await exists(path.join(cliHome, 'daemon.sock')), false, 'fixture: no daemon in the CLI home');
    // seed spelling for -z and -d, documented spelling for the rest
    const r = await lab.syncJson(
      ['-t', targets.map((d) => d.addr).join(','), '--src', src, '--dst', lab.common('dst'), '-d=true', '-z=true'],
      { home: cliHome },
    );
    assert.equal(r.code, 0, ctx(r));
    assert.equal(r.report.ok, true, ctx(r));
    assert.equal(r.report.source, cliId, `the CLI's own PeerId is the source\n${ctx(r)}`);
    assert.equal(r.report.targets.length, targets.length, ctx(r));
    const want = await snapshotTree(src);
    for (const d of targets) {
      assert.equal(targetOf(r.report, d).status, 'ok', ctx(r));
      const dst = lab.hostPath(d.name, 'dst');
      assert.equal(await rsyncOracle(src, dst), '', `oracle for ${d.name}`);
      assert.deepEqual(diffSnapshots(want, await snapshotTree(dst)), [], `own walk of ${d.name}`);
    }
  });

  test('a missing --src is a task that cannot run (3) and deletes nothing', { timeout: 120_000 }, async () => {
    const d = targets[0]!;
    await writeTree(lab.hostPath(d.name, 'dst-keep'), { 'keep.txt': 'with -d and no source, a naive sync deletes this\n' });
    const before = await snapshotTree(lab.hostPath(d.name, 'dst-keep'));
    const r = await lab.runCli(
      ['sync', '-t', d.addr, '--src', path.join(lab.root, 'no-such-dir'), '--dst', lab.common('dst-keep'), '-d'],
      { home: cliHome, timeoutMs: 90_000 },
    );
    assert.notEqual(r.code, 0, fmt(r));
    assert.deepEqual(diffSnapshots(before, await snapshotTree(lab.hostPath(d.name, 'dst-keep')), 'exact'), [], 'target untouched');
    assert.equal(r.code, 3, fmt(r));
  });

  test('a source that cannot read part of its tree deletes nothing, says so and exits 1', { timeout: 300_000 }, async (t) => {
    // root reads everything: the CLI runs as `nobody`, with a directory it may not list
    if (process.getuid?.() !== 0) return t.skip('needs root to run the CLI as another user');
    const asNobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
    const probe = await lab.runCli(['--version'], { wrap: asNobody, timeoutMs: 30_000 });
    if (probe.code !== 0) return t.skip(`cannot run the CLI as nobody: ${fmt(probe)}`);
    const base = await fsp.mkdtemp('/tmp/gosync-nobody-');
    try {
      await fsp.chmod(base, 0o755);
      const home = path.join(base, 'home');
      const src = path.join(base, 'src');
      await writeTree(src, { 'a.txt': 'new a\n', 'keep/k.txt': 'k\n', 'secret/s.txt': 'new s\n' });
      await fsp.mkdir(home, { mode: 0o700 });
      for (const p of [home, src, path.join(src, 'a.txt'), path.join(src, 'keep'), path.join(src, 'keep/k.txt'), path.join(src, 'secret'), path.join(src, 'secret/s.txt')]) await fsp.chown(p, 65534, 65534);
      const idRun = await lab.runCli(['id'], { home, wrap: asNobody, timeoutMs: 60_000 });
      assert.equal(idRun.code, 0, fmt(idRun));
      const d = await lab.startDaemon({ name: 'partial', trust: [idRun.stdout.split('\n')[0]!.trim()] });
      // the target holds extras (one of them where the source cannot read) and an old file
      await writeTree(lab.hostPath(d.name, 'dst'), { 'a.txt': 'old a\n', 'extra.txt': 'extra\n', 'secret/s.txt': 'old s\n', 'secret/old.txt': 'old\n' });
      await fsp.chmod(path.join(src, 'secret'), 0o000);
      const r = await lab.syncJson(['-t', d.addr, '--src', src, '--dst', lab.common('dst'), '-d'], { home, wrap: asNobody });
      assert.equal(r.code, 1, `exit 1: the task ran and is not ok\n${ctx(r)}`);
      assert.equal(r.report.ok, false, ctx(r));
      assert.equal(r.report.unreadable, 1, ctx(r));
      const got = lab.hostPath(d.name, 'dst');
      assert.equal(await fsp.readFile(path.join(got, 'a.txt'), 'utf8'), 'new a\n', 'what could be read was sent');
      assert.equal(await fsp.readFile(path.join(got, 'keep/k.txt'), 'utf8'), 'k\n');
      for (const kept of ['extra.txt', 'secret/s.txt', 'secret/old.txt']) {
        assert.equal(await exists(path.join(got, kept)), true, `${kept} was deleted although the source could not read all of its tree\n${ctx(r)}`);
      }
      // readable again: the same sync deletes the extras and matches the source exactly
      await fsp.chmod(path.join(src, 'secret'), 0o755);
      const r2 = await lab.syncJson(['-t', d.addr, '--src', src, '--dst', lab.common('dst'), '-d'], { home, wrap: asNobody });
      assert.equal(r2.code, 0, ctx(r2));
      assert.equal(r2.report.unreadable, undefined, ctx(r2));
      assert.equal(await rsyncOracle(src, got), '', 'oracle after the complete sync');
    } finally {
      await fsp.rm(base, { recursive: true, force: true });
    }
  });

  describe('usage errors exit 2', () => {
    const addr = () => targets[0]!.addr;
    const cases: Array<[string, () => string[]]> = [
      ['missing --dst', () => ['sync', '-t', addr(), '--src', src]],
      ['missing --src', () => ['sync', '-t', addr(), '--dst', lab.common('x')]],
      ['missing -t', () => ['sync', '--src', src, '--dst', lab.common('x')]],
      ['missing --dst, seed spelling', () => ['sync', `-t=${addr()}`, `-src=${src}`, '-d=true']],
      ['a target that is not a multiaddr', () => ['sync', '-t', 'not-a-multiaddr', '--src', src, '--dst', lab.common('x')]],
      ['a target without /p2p/<PeerId>', () => ['sync', '-t', '/ip4/127.0.0.1/tcp/1', '--src', src, '--dst', lab.common('x')]],
    ];
    for (const [label, args] of cases) {
      test(label, { timeout: 60_000 }, async () => {
        const home = lab.home('usage');
        const r = await lab.runCli(args(), { home, timeoutMs: 30_000 });
        assert.equal(r.code, 2, fmt(r));
        assert.ok(r.stderr.trim().length > 0, `says why on stderr\n${fmt(r)}`);
        for (const d of targets) assert.equal(await exists(lab.hostPath(d.name, 'x')), false, 'nothing created');
      });
    }
  });
});
