// 50 randomized rounds: each round mutates the source at random (create, modify, delete,
// type flips, renames, modes, times, symlinks), takes a random target down now and then,
// syncs with -d, and checks every target that was up with the rsync oracle. A target that
// was down catches up in a later round. Zero differences allowed.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab, type Daemon, fmt, prng, rsyncOracle, targetOf } from '../lab/hosts.js';

const ROUNDS = Number(process.env.GOSYNC_RANDOM_ROUNDS ?? 50);
const SEED = Number(process.env.GOSYNC_RANDOM_SEED ?? 20261124);
const NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];

async function lexists(p: string): Promise<boolean> {
  return await fsp.lstat(p).then(() => true, () => false);
}

/** Every path below root (relative), without following symlinks. */
async function walk(root: string, rel = ''): Promise<Array<{ rel: string; kind: 'file' | 'dir' | 'link' }>> {
  const out: Array<{ rel: string; kind: 'file' | 'dir' | 'link' }> = [];
  for (const name of await fsp.readdir(path.join(root, rel)).catch(() => [] as string[])) {
    const r = rel === '' ? name : `${rel}/${name}`;
    const st = await fsp.lstat(path.join(root, r));
    if (st.isSymbolicLink()) out.push({ rel: r, kind: 'link' });
    else if (st.isDirectory()) { out.push({ rel: r, kind: 'dir' }); out.push(...await walk(root, r)); }
    else out.push({ rel: r, kind: 'file' });
  }
  return out;
}

async function mutate(root: string, rand: () => number): Promise<string[]> {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const randomPath = (): string => Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(NAMES)).join('/');
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  const size = (): number => (rand() < 0.1 ? 200_000 + Math.floor(rand() * 800_000) : Math.floor(rand() * 5000));
  const ensureParent = async (rel: string): Promise<boolean> => {
    // the parent chain must be real directories; give up on this op otherwise
    const parts = rel.split('/').slice(0, -1);
    let cur = root;
    for (const p of parts) {
      cur = path.join(cur, p);
      const st = await fsp.lstat(cur).catch(() => undefined);
      if (st == null) await fsp.mkdir(cur);
      else if (!st.isDirectory() || st.isSymbolicLink()) return false;
    }
    return true;
  };
  const log: string[] = [];
  const ops = 1 + Math.floor(rand() * 6);
  for (let i = 0; i < ops; i++) {
    const entries = await walk(root);
    const op = Math.floor(rand() * 10);
    const some = entries.length > 0 ? pick(entries) : undefined;
    const abs = (rel: string): string => path.join(root, rel);
    try {
      if (op === 0 || some == null) {
        const rel = randomPath();
        if (await lexists(abs(rel)) || !(await ensureParent(rel))) continue;
        await fsp.writeFile(abs(rel), bytes(size()), { mode: pick([0o644, 0o600, 0o755]) });
        log.push(`create ${rel}`);
      } else if (op === 1 && some.kind === 'file') {
        await fsp.writeFile(abs(some.rel), bytes(size()));
        log.push(`rewrite ${some.rel}`);
      } else if (op === 2 && some.kind === 'file') {
        await fsp.appendFile(abs(some.rel), bytes(1 + Math.floor(rand() * 3000)));
        log.push(`append ${some.rel}`);
      } else if (op === 3) {
        await fsp.rm(abs(some.rel), { recursive: true, force: true });
        log.push(`delete ${some.rel}`);
      } else if (op === 4) {
        // type flip in place
        await fsp.rm(abs(some.rel), { recursive: true, force: true });
        if (some.kind === 'file') { await fsp.mkdir(abs(some.rel)); log.push(`file->dir ${some.rel}`); }
        else if (some.kind === 'dir') { await fsp.symlink(pick(['a', '../b', 'nowhere']), abs(some.rel)); log.push(`dir->link ${some.rel}`); }
        else { await fsp.writeFile(abs(some.rel), bytes(size())); log.push(`link->file ${some.rel}`); }
      } else if (op === 5) {
        const to = randomPath();
        if (to === some.rel || to.startsWith(some.rel + '/') || await lexists(abs(to)) || !(await ensureParent(to))) continue;
        await fsp.rename(abs(some.rel), abs(to));
        log.push(`rename ${some.rel} -> ${to}`);
      } else if (op === 6 && some.kind !== 'link') {
        await fsp.chmod(abs(some.rel), some.kind === 'dir' ? pick([0o755, 0o700, 0o750]) : pick([0o644, 0o600, 0o640, 0o755, 0o444]));
        log.push(`chmod ${some.rel}`);
      } else if (op === 7) {
        const t = 1_600_000_000 + Math.floor(rand() * 100_000_000) + rand();
        if (some.kind === 'link') await fsp.lutimes(abs(some.rel), t, t); else await fsp.utimes(abs(some.rel), t, t);
        log.push(`touch ${some.rel}`);
      } else if (op === 8) {
        const rel = randomPath();
        if (await lexists(abs(rel)) || !(await ensureParent(rel))) continue;
        await fsp.symlink(pick(['a', 'b/c', '../d', '/nonexistent/x', '.']), abs(rel));
        log.push(`symlink ${rel}`);
      } else if (op === 9) {
        const rel = randomPath();
        if (await lexists(abs(rel)) || !(await ensureParent(rel))) continue;
        await fsp.mkdir(abs(rel));
        log.push(`mkdir ${rel}`);
      }
    } catch (e) {
      log.push(`(skipped: ${(e as Error).message})`);
    }
  }
  return log;
}

describe('randomized rounds', () => {
  let lab: Lab;
  let source: Daemon;
  let sourceId: string;
  const targets: Daemon[] = [];

  before(async () => {
    lab = await Lab.create('random');
    if (!lab.views) return;
    sourceId = await lab.identity('src');
    source = await lab.startDaemon({ name: 'src', extraArgs: ['--stall-timeout', '10'] });
    for (const name of ['t1', 't2', 't3']) targets.push(await lab.startDaemon({ name, trust: [sourceId] }));
    await fsp.mkdir(lab.hostPath('src', 'data'), { recursive: true });
  }, { timeout: 120_000 });

  after(async () => {
    await lab?.cleanup();
  });

  test(`${ROUNDS} rounds of random changes and random targets down: the oracle finds zero differences`, { timeout: 900_000 }, async (t) => {
    if (!lab.views) return t.skip(`needs a separate filesystem view per host: ${lab.viewsReason}`);
    const rand = prng(SEED);
    const srcDir = lab.hostPath('src', 'data');
    let downs = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const changes = await mutate(srcDir, rand);
      // now and then one target is down for this round
      const down = rand() < 0.2 ? Math.floor(rand() * targets.length) : -1;
      if (down >= 0) { await targets[down]!.kill(); downs++; }
      const r = await lab.syncJson(['-t', targets.map((d) => d.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '-d', '--stall-timeout', '10'], { home: source.home, timeoutMs: 120_000 });
      const where = `round ${round} (seed ${SEED}); changes: ${changes.join('; ')}\n${fmt(r)}`;
      for (const [i, d] of targets.entries()) {
        const tr = targetOf(r.report, d);
        if (i === down) {
          assert.equal(tr.status, 'failed', where);
          continue;
        }
        assert.notEqual(tr.status, 'failed', where);
        assert.equal(await rsyncOracle(srcDir, lab.hostPath(d.name, 'copy')), '', `oracle for ${d.name} in ${where}`);
      }
      assert.equal(r.code, down >= 0 ? 1 : 0, where);
      if (down >= 0) targets[down] = await lab.startDaemon({ name: targets[down]!.name, trust: [sourceId] });
    }
    t.diagnostic(`${ROUNDS} rounds, ${downs} with a target down`);
    // everyone catches up
    const last = await lab.syncJson(['-t', targets.map((d) => d.addr).join(','), '--src', lab.common('data'), '--dst', lab.common('copy'), '-d'], { home: source.home });
    assert.equal(last.code, 0, fmt(last));
    for (const d of targets) assert.equal(await rsyncOracle(srcDir, lab.hostPath(d.name, 'copy')), '', `final oracle for ${d.name}`);
  });
});
