/**
 * The benchmark's parts. Each returns its results (for bench-results.json) and a markdown
 * table (for stdout). Timed runs alternate gosync and rsync-over-ssh; between runs, dirty
 * pages are flushed (sync) and the previous destinations removed, untimed.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { rsyncOracle, writeLargeFile, writeManyFiles } from '../test/lab/hosts.js';
import { Cluster, type GosyncRun } from './cluster.js';
import type { RsyncRun } from './ssh.js';
import { noiseCipher, noiseCrypto } from '../src/node/noise-crypto.js';
import { fix, flag, GiB, interrupted, mdTable, median, MiB, progress, sampleRss, statusKb, syncDisks } from './util.js';

export interface Options {
  sizes: number[];
  ns: number[];
  runs: number;
  /** part 1: untimed runs per row before the timed ones (each row brings in daemons that never relayed) */
  warmup: number;
  parts: number[];
  largeMiB: number;
  files: number;
  rssMiB: number;
  rateMbit: number;
  rsync: boolean;
  out: string;
  quick: boolean;
  /** keep the source's hash cache between runs (default: emptied before every first sync) */
  warmHashCache: boolean;
  /** children per node in gosync's relay trees (default: gosync's own, a chain) */
  fanout?: number;
  /** part 5: the slow host's link, Mbit/s (default a tenth of --rate) */
  slowMbit?: number;
  /** part 5: which of h2–h5 is slow (default h3, a relay in the middle; h2 is the source's own child) */
  slowHost?: string;
}

export interface PartResult {
  table: string;
  data: unknown;
}

/** Source data written just now is "racily clean" for gosync's hash cache (2 s window): wait it out. */
const settle = () => delay(2500);

/** With --warm-hash-cache: one untimed sync first, so the source's hash cache holds every file. */
async function warmUp(c: Cluster, o: Options, target: string, srcRel: string, bytes: number): Promise<void> {
  if (!o.warmHashCache) return;
  const r = await c.gosync([target], srcRel, 'warm-up', timeoutFor(bytes, 20), { coldHashCache: false });
  checkGosync(`warm-up sync of ${srcRel}`, r, 'ok', 1);
  await c.remove([target], 'warm-up');
}

const isRsyncRun = (r: RsyncRun | { error: string }): r is RsyncRun => !('error' in r);

function checkInterrupted(): void {
  if (interrupted()) throw new Error('interrupted');
}

/** Time for the whole data at `MBps` plus slack, as a process timeout. */
const timeoutFor = (bytes: number, MBps: number, n = 1) => Math.round(120_000 + (4 * n * bytes) / (MBps * 1e6) * 1000);

/** A gosync run that is not ok, or whose statuses are not all `want`, is flagged loudly. */
function checkGosync(what: string, r: GosyncRun, want: 'ok' | 'unchanged', n: number): boolean {
  if (r.ok && r.statuses.length === n && r.statuses.every((s) => s === want)) return true;
  flag(`gosync FAILED in ${what}: statuses [${r.statuses.join(', ')}] (want ${n} × ${want})\n${r.error ?? ''}`);
  return false;
}

async function oracle(what: string, src: string, dst: string): Promise<boolean> {
  try {
    const out = await rsyncOracle(src, dst);
    if (out === '') return true;
    flag(`WRONG RESULT in ${what}: rsync -anci --delete ${src}/ ${dst}/ reports differences:\n${out.slice(0, 2000)}`);
  } catch (e) {
    flag(`WRONG RESULT in ${what}: the oracle failed: ${(e as Error).message.slice(0, 1000)}`);
  }
  return false;
}

// ---------------------------------------------------------------------------
// Machine baselines: what one core does, and the disk

export async function machineBaselines(scratch: string, quick: boolean): Promise<PartResult> {
  const bytes = (quick ? 256 : 512) * MiB;
  const buf = randomBytes(MiB);
  const rate = (fn: () => void) => {
    const t = performance.now();
    for (let done = 0; done < bytes; done += MiB) fn();
    return bytes / ((performance.now() - t) / 1000) / 1e6;
  };
  const h = createHash('sha256');
  const sha256 = rate(() => h.update(buf));
  h.digest();
  const c = createCipheriv('chacha20-poly1305', randomBytes(32), randomBytes(12), { authTagLength: 16 });
  const chacha = rate(() => c.update(buf));
  const a = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
  const aesgcm = rate(() => a.update(buf));
  // the cipher gosync's Noise sessions use, as noise calls it: one message of at most 65519 bytes at a time
  const key = randomBytes(32);
  const nonce = new Uint8Array(12);
  const noAd = new Uint8Array(0);
  const noiseRate = rate(() => { for (let at = 0; at < MiB; at += 65519) noiseCrypto.chaCha20Poly1305Encrypt(buf.subarray(at, Math.min(MiB, at + 65519)), nonce, noAd, key); });
  // disk: write + fsync, like a gosync target (rsync does not fsync)
  await fsp.mkdir(scratch, { recursive: true });
  const f = path.join(scratch, 'disk-probe.bin');
  const writeRate = async (doSync: boolean) => {
    syncDisks();
    const t = performance.now();
    const fh = await fsp.open(f, 'w');
    for (let done = 0; done < bytes; done += 4 * MiB) await fh.write(buf4);
    if (doSync) await fh.sync();
    await fh.close();
    const MBps = bytes / ((performance.now() - t) / 1000) / 1e6;
    await fsp.rm(f, { force: true });
    return MBps;
  };
  const buf4 = Buffer.concat([buf, buf, buf, buf]);
  // twice each, alternating, best of two: the first write into a cold page cache is slow
  const diskNoSync = Math.max(await writeRate(false), 0);
  const diskFsync = await writeRate(true);
  const diskNoSync2 = await writeRate(false);
  const diskFsync2 = await writeRate(true);
  syncDisks();
  const data = { probeMiB: bytes / MiB, sha256MBps: sha256, chacha20poly1305MBps: chacha, noiseCipher, noiseCipherMBps: noiseRate, aes256gcmMBps: aesgcm, diskWriteMBps: [diskNoSync, diskNoSync2], diskWriteFsyncMBps: [diskFsync, diskFsync2] };
  const table = mdTable(['what (one core, node:crypto / fs)', 'MB/s'], [
    ['SHA-256', fix(sha256, 0)],
    ['ChaCha20-Poly1305, node:crypto (one cipher object, 1 MiB updates)', fix(chacha, 0)],
    [`ChaCha20-Poly1305 as gosync's Noise runs it (${noiseCipher.name}: ${noiseCipher.detail}; 64 KiB messages)`, fix(noiseRate, 0)],
    ['AES-256-GCM', fix(aesgcm, 0)],
    [`write ${bytes / MiB} MiB to the lab's filesystem, no fsync (two tries)`, `${fix(diskNoSync, 0)}, ${fix(diskNoSync2, 0)}`],
    [`write ${bytes / MiB} MiB + fsync (two tries)`, `${fix(diskFsync, 0)}, ${fix(diskFsync2, 0)}`],
  ]);
  return { table, data };
}

// ---------------------------------------------------------------------------
// Part 1: one-to-many over shaped links

export async function part1(o: Options, sshd: string | undefined, sshReason: string | undefined): Promise<PartResult> {
  const maxN = Math.max(...o.ns);
  const B = (o.rateMbit * 1e6) / 8;
  progress(`part 1: ${maxN + 1} hosts on ${o.rateMbit} Mbit/s links, daemons${o.rsync ? ' and sshd' : ''} starting`);
  const c = await Cluster.create('p1', maxN + 1, o.rateMbit);
  try {
    const all = c.net.hosts.map((h) => h.name);
    const targetsAll = all.slice(1);
    await c.startDaemons(all);
    if (o.rsync) await c.startSsh(sshd, targetsAll, sshReason);
    else c.sshSkipReason = '--no-rsync';
    const probe = await c.tcpProbe('h2', 64 * MiB);
    progress(`part 1: raw TCP h1→h2 over the shaped link: ${'error' in probe ? probe.error : `${fix(probe.MBps, 1)} MB/s`}`);
    const rows: string[][] = [];
    const data: Record<string, unknown>[] = [];
    for (const sizeMiB of o.sizes) {
      const S = sizeMiB * MiB;
      const srcRel = `src-${sizeMiB}`;
      progress(`part 1: writing a ${sizeMiB} MiB random file`);
      await writeLargeFile(c.lab.hostPath('h1', srcRel, 'blob.bin'), S, { seed: `bench-${sizeMiB}` });
      await settle();
      await warmUp(c, o, 'h2', srcRel, S);
      const perN = new Map<number, { g: number; r: number }>();
      for (const n of o.ns) {
        const targets = targetsAll.slice(0, n);
        const leaf = targets[targets.length - 1]!;
        const g: GosyncRun[] = [];
        const r: Array<RsyncRun | { error: string }> = [];
        let gCorrect: boolean | undefined;
        let rCorrect: boolean | undefined;
        // Untimed first: the daemons new in this row compile their relay path during their first
        // transfer (~0.5 CPU-s each on this VM, nine daemons sharing 2 cores). Reported, not in the median.
        const gWarm: number[] = [];
        const rWarm: number[] = [];
        for (let w = 1; w <= o.warmup; w++) {
          checkInterrupted();
          syncDisks();
          const gr = await c.gosync(targets, srcRel, `g-warm${w}`, timeoutFor(S, 20, n), { coldHashCache: !o.warmHashCache, fanout: o.fanout });
          gWarm.push(checkGosync(`part 1, ${sizeMiB} MiB to N=${n}, warm-up ${w}`, gr, 'ok', n) ? gr.seconds : NaN);
          await c.remove(targets, `g-warm${w}`);
          let rs = '';
          if (c.ssh) {
            syncDisks();
            const rr = await c.rsync(targets, srcRel, `r-warm${w}`, timeoutFor(S, 10, n));
            rWarm.push(isRsyncRun(rr) ? rr.seconds : NaN);
            await c.remove(targets, `r-warm${w}`);
            rs = `, rsync-ssh ${isRsyncRun(rr) ? fix(rr.seconds) : 'FAILED'} s`;
          }
          progress(`part 1: ${sizeMiB} MiB → N=${n} warm-up ${w}/${o.warmup} (not in the median): gosync ${fix(gr.seconds)} s${rs}`);
        }
        for (let run = 1; run <= o.runs; run++) {
          checkInterrupted();
          const gDst = `g-${sizeMiB}-n${n}-r${run}`;
          syncDisks();
          const gr = await c.gosync(targets, srcRel, gDst, timeoutFor(S, 20, n), { coldHashCache: !o.warmHashCache, fanout: o.fanout });
          const gOk = checkGosync(`part 1, ${sizeMiB} MiB to N=${n}, run ${run}`, gr, 'ok', n);
          if (!gOk) gr.seconds = NaN;
          if (run === 1) gCorrect = gOk && (await oracle(`part 1 gosync ${sizeMiB} MiB N=${n} (leaf ${leaf})`, c.lab.hostPath('h1', srcRel), c.lab.hostPath(leaf, gDst)));
          // the source's probes of its child (none is slow here: a cut is a false one)
          const probes = (gr.report?.targets ?? []).filter((t) => t.probe != null).map((t) => ({ host: c.hostOf(t.peer), ...t.probe! }));
          delete gr.report;
          g.push({ ...gr, ...(probes.length > 0 ? { probes } : {}) });
          await c.remove(targets, gDst);
          const probeNote = probes.map((p) => `; probed ${p.host}: ${p.cut ? 'CUT' : 'kept'} (the source sent ${fix(p.sentRate / 1e6, 1)} MB/s, ${fix(p.sentRateDuring / 1e6, 1)} with the probe)`).join('');
          progress(`part 1: ${sizeMiB} MiB → N=${n} run ${run}/${o.runs}: gosync ${fix(gr.seconds)} s (report ${fix(gr.reportSeconds)} s)${probeNote}`);
          if (c.ssh) {
            checkInterrupted();
            const rDst = `rsync-${sizeMiB}-n${n}-r${run}`;
            syncDisks();
            const rr = await c.rsync(targets, srcRel, rDst, timeoutFor(S, 10, n));
            if (!isRsyncRun(rr)) flag(`rsync FAILED in part 1, ${sizeMiB} MiB N=${n}: ${rr.error}`);
            else if (run === 1) rCorrect = await oracle(`part 1 rsync ${sizeMiB} MiB N=${n} (${leaf})`, c.lab.hostPath('h1', srcRel), c.lab.hostPath(leaf, rDst));
            r.push(rr);
            await c.remove(targets, rDst);
            progress(`part 1: ${sizeMiB} MiB → N=${n} run ${run}/${o.runs}: rsync-ssh ${isRsyncRun(rr) ? fix(rr.seconds) : 'FAILED'} s`);
          }
        }
        const gMed = median(g.map((x) => x.seconds));
        const gRep = median(g.map((x) => x.reportSeconds));
        const rMed = median(r.filter(isRsyncRun).map((x) => x.seconds));
        perN.set(n, { g: gMed, r: rMed });
        const t1 = perN.get(1) ?? perN.get(Math.min(...o.ns));
        const bound = S / B;
        rows.push([
          String(sizeMiB), String(n), gWarm.length > 0 ? fix(gWarm[0]!) : '–', fix(gMed), fix(gRep), c.ssh ? fix(rMed) : 'skipped',
          perN.has(1) ? fix(gMed / t1!.g) : '–', perN.has(1) && c.ssh ? fix(rMed / t1!.r) : '–',
          fix(gMed / bound), fix(gRep / bound),
          `${gCorrect ? 'ok' : 'WRONG'}${c.ssh ? ` / ${rCorrect ? 'ok' : 'WRONG'}` : ''}`,
        ]);
        data.push({
          sizeMiB, n, boundSeconds: bound,
          gosync: { medianSeconds: gMed, medianReportSeconds: gRep, warmupSeconds: gWarm, runs: g, correct: gCorrect },
          rsync: c.ssh ? { medianSeconds: rMed, warmupSeconds: rWarm, runs: r, correct: rCorrect } : { skipped: c.sshSkipReason },
        });
      }
      await c.remove(['h1'], srcRel);
    }
    const header = ['size MiB', 'N', 'gosync 1st run s', 'gosync s', 'gosync report s', 'rsync-ssh s', 'gosync T(N)/T(1)', 'rsync T(N)/T(1)', 'gosync T(N)/(S/B)', 'report T(N)/(S/B)', 'correct (g / r)'];
    const linkNote = 'error' in probe ? '' : `Raw TCP over one link: ${fix(probe.MBps, 1)} MB/s (B = ${fix(B / 1e6, 1)} MB/s), i.e. ${fix((64 * MiB) / probe.MBps / 1e6)} s for 64 MiB.\n`;
    const warmNote = o.warmup > 0
      ? `Medians of ${o.runs} timed runs per row, after ${o.warmup} untimed warm-up run(s) of each tool; "1st run" is gosync's first, with the row's new daemons cold.\n`
      : `Medians of ${o.runs} runs per row, no warm-up run.\n`
    const sshNote = c.ssh ? `rsync-ssh: ${o.ns.length > 0 ? 'all N targets in parallel' : ''}, cipher ${c.ssh.cipher}.\n` : `rsync-ssh skipped: ${c.sshSkipReason}\n`;
    return {
      table: `${linkNote}${sshNote}${warmNote}\n${mdTable(header, rows)}`,
      data: { rateMbit: o.rateMbit, B, tcpProbe: probe, cipher: c.ssh?.cipher, pids: c.pidNotes(), rows: data },
    };
  } finally {
    progress('part 1: tearing down');
    await c.destroy();
  }
}

// ---------------------------------------------------------------------------
// Parts 2–4 share one unshaped LAN: h1 → h2 (parts 2, 3), h1 → h2 → h3 (part 4)

export async function unshapedParts(o: Options, sshd: string | undefined, sshReason: string | undefined): Promise<Record<string, PartResult>> {
  const want = (p: number) => o.parts.includes(p);
  const hosts = want(4) ? 3 : 2;
  progress(`parts ${o.parts.filter((p) => p > 1).join(',')}: ${hosts} hosts, unshaped links`);
  const c = await Cluster.create('p234', hosts, undefined);
  const out: Record<string, PartResult> = {};
  try {
    await c.startDaemons(c.net.hosts.map((h) => h.name));
    if (o.rsync && (want(2) || want(3))) await c.startSsh(sshd, ['h2'], sshReason);
    else c.sshSkipReason = '--no-rsync';
    const probe = await c.tcpProbe('h2', 1 * GiB);
    progress(`unshaped: raw TCP h1→h2: ${'error' in probe ? probe.error : `${fix(probe.MBps, 0)} MB/s`}`);
    out.fixed = await fixedCost(c, o);
    if (want(2)) out.part2 = await part2(c, o, probe);
    if (want(3)) out.part3 = await part3(c, o);
    if (want(4)) out.part4 = await part4(c, o);
  } finally {
    progress('unshaped parts: tearing down');
    await c.destroy();
  }
  return out;
}

/** The fixed cost of one sync: a 1-byte tree to one target (CLI start, dial, handshake, manifest round trips). */
async function fixedCost(c: Cluster, o: Options): Promise<PartResult> {
  await fsp.mkdir(c.lab.hostPath('h1', 'tiny'), { recursive: true });
  await fsp.writeFile(c.lab.hostPath('h1', 'tiny', 'f'), 'x');
  const g: number[] = [];
  const gRep: number[] = [];
  const gCli: number[] = [];
  const r: number[] = [];
  for (let run = 1; run <= Math.max(3, o.runs); run++) {
    const gr = await c.gosync(['h2'], 'tiny', `tiny-g${run}`, 60_000, { coldHashCache: false });
    if (checkGosync('fixed-cost sync', gr, 'ok', 1)) g.push(gr.seconds), gRep.push(gr.reportSeconds), gCli.push(gr.cpu.cli);
    if (c.ssh) {
      const rr = await c.rsync(['h2'], 'tiny', `tiny-r${run}`, 60_000);
      if (isRsyncRun(rr)) r.push(rr.seconds);
    }
  }
  for (let run = 1; run <= Math.max(3, o.runs); run++) await c.remove(['h2'], `tiny-g${run}`).then(() => c.remove(['h2'], `tiny-r${run}`));
  progress(`fixed cost of one sync (1 byte, 1 target): gosync ${fix(median(g))} s, rsync-ssh ${fix(median(r))} s`);
  return {
    table: mdTable(['1-byte tree, 1 target', 'gosync s (wall)', 'gosync report s', 'gosync CLI process CPU s', 'rsync-ssh s'],
      [[`median of ${g.length}`, fix(median(g)), fix(median(gRep)), fix(median(gCli)), c.ssh ? fix(median(r)) : 'skipped']]),
    data: { gosyncSeconds: g, gosyncReportSeconds: gRep, gosyncCliCpuSeconds: gCli, rsyncSeconds: r },
  };
}

async function part2(c: Cluster, o: Options, probe: unknown): Promise<PartResult> {
  const S = o.largeMiB * MiB;
  progress(`part 2: writing a ${o.largeMiB} MiB random file`);
  await writeLargeFile(c.lab.hostPath('h1', 'large', 'big.bin'), S, { seed: 'bench-large' });
  await settle();
  await warmUp(c, o, 'h2', 'large', S);
  const g: GosyncRun[] = [];
  const r: Array<RsyncRun | { error: string }> = [];
  let gCorrect: boolean | undefined;
  let rCorrect: boolean | undefined;
  // Copies are removed only after the last run. This VM hands freed memory back to its host
  // within seconds (virtio-balloon free page reporting), and page cache built on such memory
  // costs ~3 s of kernel time per GiB written instead of ~0.35 s: a run that starts soon after
  // the previous copy was deleted writes into warm memory, a later one into cold memory, and
  // the order of the two tools decided which. Kept copies make every run write into memory
  // not recently freed.
  const made: string[] = [];
  for (let run = 1; run <= o.runs; run++) {
    checkInterrupted();
    syncDisks();
    made.push(`large-g${run}`);
    const gr = await c.gosync(['h2'], 'large', `large-g${run}`, timeoutFor(S, 20), { coldHashCache: !o.warmHashCache, fanout: o.fanout });
    const gOk = checkGosync(`part 2 run ${run}`, gr, 'ok', 1);
    if (!gOk) gr.seconds = NaN;
    if (run === 1) gCorrect = gOk && (await oracle('part 2 gosync', c.lab.hostPath('h1', 'large'), c.lab.hostPath('h2', `large-g${run}`)));
    delete gr.report;
    g.push(gr);
    progress(`part 2: ${o.largeMiB} MiB run ${run}/${o.runs}: gosync ${fix(gr.seconds)} s = ${fix(S / gr.seconds / 1e6, 0)} MB/s (CPU s: source ${fix(gr.cpu.source)}, target ${fix(gr.cpu.targets[0])})`);
    if (c.ssh) {
      checkInterrupted();
      syncDisks();
      made.push(`large-r${run}`);
      const rr = await c.rsync(['h2'], 'large', `large-r${run}`, timeoutFor(S, 20));
      if (!isRsyncRun(rr)) flag(`rsync FAILED in part 2: ${rr.error}`);
      else if (run === 1) rCorrect = await oracle('part 2 rsync', c.lab.hostPath('h1', 'large'), c.lab.hostPath('h2', `large-r${run}`));
      r.push(rr);
      progress(`part 2: run ${run}/${o.runs}: rsync-ssh ${isRsyncRun(rr) ? `${fix(rr.seconds)} s = ${fix(S / rr.seconds / 1e6, 0)} MB/s (CPU s: client ${fix(rr.clientCpu)}, server ${fix(rr.serverCpu)})` : 'FAILED'}`);
    }
  }
  for (const d of made) await c.remove(['h2'], d);
  await c.remove(['h1'], 'large');
  const gMed = median(g.map((x) => x.seconds));
  const rr = r.filter(isRsyncRun);
  const rMed = median(rr.map((x) => x.seconds));
  const gCpu = {
    source: median(g.map((x) => x.cpu.source)), target: median(g.map((x) => x.cpu.targets[0]!)), cli: median(g.map((x) => x.cpu.cli)),
    sourceSys: median(g.map((x) => x.sys?.source ?? NaN)), targetSys: median(g.map((x) => x.sys?.targets[0] ?? NaN)),
  };
  const rCpu = { client: median(rr.map((x) => x.clientCpu)), server: median(rr.map((x) => x.serverCpu)) };
  const table = mdTable(
    ['size MiB', 'gosync s', 'gosync MB/s', 'rsync-ssh s', 'rsync-ssh MB/s', 'gosync / rsync (speed)', 'gosync CPU s (source / target; kernel part)', 'rsync CPU s (client / server)', 'correct (g / r)'],
    [[
      String(o.largeMiB), fix(gMed), fix(S / gMed / 1e6, 0), c.ssh ? fix(rMed) : 'skipped', c.ssh ? fix(S / rMed / 1e6, 0) : '–', c.ssh ? fix(rMed / gMed) : '–',
      `${fix(gCpu.source)} / ${fix(gCpu.target)}; ${fix(gCpu.sourceSys)} / ${fix(gCpu.targetSys)}`, c.ssh ? `${fix(rCpu.client)} / ${fix(rCpu.server)}` : '–',
      `${gCorrect ? 'ok' : 'WRONG'}${c.ssh ? ` / ${rCorrect ? 'ok' : 'WRONG'}` : ''}`,
    ]],
  );
  return {
    table,
    data: { sizeMiB: o.largeMiB, tcpProbe: probe, gosync: { medianSeconds: gMed, MBps: S / gMed / 1e6, cpu: gCpu, runs: g, correct: gCorrect }, rsync: c.ssh ? { medianSeconds: rMed, MBps: S / rMed / 1e6, cpu: rCpu, runs: r, correct: rCorrect } : { skipped: c.sshSkipReason } },
  };
}

async function part3(c: Cluster, o: Options): Promise<PartResult> {
  progress(`part 3: writing ${o.files} small files`);
  const { bytes } = await writeManyFiles(c.lab.hostPath('h1', 'many'), { count: o.files, seed: 3 });
  await settle();
  await warmUp(c, o, 'h2', 'many', bytes);
  const g: Array<{ first: GosyncRun; noop: GosyncRun }> = [];
  const r: Array<{ first: RsyncRun | { error: string }; noop?: RsyncRun | { error: string } }> = [];
  let gCorrect: boolean | undefined;
  let rCorrect: boolean | undefined;
  // Copies are removed only after the last run: on ext4 without a journal (this VM's disk), a
  // file created soon after a mass deletion costs far more kernel time (find_inode_bit skips
  // every inode deleted in the last minutes), so each run would pay for the one before it.
  const made: string[] = [];
  for (let run = 1; run <= o.runs; run++) {
    checkInterrupted();
    const gDst = `many-g${run}`;
    made.push(gDst);
    syncDisks();
    const first = await c.gosync(['h2'], 'many', gDst, 600_000, { coldHashCache: !o.warmHashCache, fanout: o.fanout });
    const fOk = checkGosync(`part 3 first sync, run ${run}`, first, 'ok', 1);
    if (!fOk) first.seconds = NaN;
    if (run === 1) gCorrect = fOk && (await oracle('part 3 gosync', c.lab.hostPath('h1', 'many'), c.lab.hostPath('h2', gDst)));
    syncDisks();
    // a no-op re-sync finds the hash cache as the first sync left it
    const noop = await c.gosync(['h2'], 'many', gDst, 600_000, { coldHashCache: false });
    if (!checkGosync(`part 3 no-op re-sync, run ${run}`, noop, 'unchanged', 1)) noop.seconds = NaN;
    delete first.report;
    delete noop.report;
    g.push({ first, noop });
    progress(`part 3: ${o.files} files run ${run}/${o.runs}: gosync first ${fix(first.seconds)} s, no-op ${fix(noop.seconds)} s`);
    if (c.ssh) {
      checkInterrupted();
      const rDst = `many-r${run}`;
      made.push(rDst);
      syncDisks();
      const rf = await c.rsync(['h2'], 'many', rDst, 600_000);
      let rn: RsyncRun | { error: string } | undefined;
      if (!isRsyncRun(rf)) flag(`rsync FAILED in part 3: ${rf.error}`);
      else {
        if (run === 1) rCorrect = await oracle('part 3 rsync', c.lab.hostPath('h1', 'many'), c.lab.hostPath('h2', rDst));
        syncDisks();
        rn = await c.rsync(['h2'], 'many', rDst, 600_000);
        if (!isRsyncRun(rn)) flag(`rsync no-op FAILED in part 3: ${rn.error}`);
      }
      r.push({ first: rf, noop: rn });
      progress(`part 3: run ${run}/${o.runs}: rsync-ssh first ${isRsyncRun(rf) ? fix(rf.seconds) : 'FAILED'} s, no-op ${rn && isRsyncRun(rn) ? fix(rn.seconds) : '–'} s`);
    }
  }
  for (const d of made) await c.remove(['h2'], d);
  await c.remove(['h1'], 'many');
  const gf = median(g.map((x) => x.first.seconds));
  const gn = median(g.map((x) => x.noop.seconds));
  const rf = median(r.map((x) => x.first).filter(isRsyncRun).map((x) => x.seconds));
  const rn = median(r.map((x) => x.noop).filter((x): x is RsyncRun => x !== undefined && isRsyncRun(x)).map((x) => x.seconds));
  const gCpu = { source: median(g.map((x) => x.first.cpu.source)), target: median(g.map((x) => x.first.cpu.targets[0]!)) };
  const gCpuNoop = { source: median(g.map((x) => x.noop.cpu.source)), target: median(g.map((x) => x.noop.cpu.targets[0]!)) };
  const rFirst = r.map((x) => x.first).filter(isRsyncRun);
  const rCpu = { client: median(rFirst.map((x) => x.clientCpu)), server: median(rFirst.map((x) => x.serverCpu)) };
  const table = mdTable(
    ['files', 'MB', 'gosync first s', 'rsync-ssh first s', 'gosync/rsync (time)', 'gosync no-op s', 'rsync-ssh no-op s', 'gosync/rsync (time)', 'gosync CPU s first (src / tgt)', 'rsync CPU s first (client / server)', 'gosync CPU s no-op (src / tgt)', 'correct (g / r)'],
    [[
      String(o.files), fix(bytes / 1e6, 1), fix(gf), c.ssh ? fix(rf) : 'skipped', c.ssh ? fix(gf / rf) : '–', fix(gn), c.ssh ? fix(rn) : 'skipped', c.ssh ? fix(gn / rn) : '–',
      `${fix(gCpu.source)} / ${fix(gCpu.target)}`, c.ssh ? `${fix(rCpu.client)} / ${fix(rCpu.server)}` : '–', `${fix(gCpuNoop.source)} / ${fix(gCpuNoop.target)}`,
      `${gCorrect ? 'ok' : 'WRONG'}${c.ssh ? ` / ${rCorrect ? 'ok' : 'WRONG'}` : ''}`,
    ]],
  );
  return {
    table,
    data: {
      files: o.files, bytes,
      gosync: { medianFirstSeconds: gf, medianNoopSeconds: gn, cpuFirst: gCpu, cpuNoop: gCpuNoop, runs: g, correct: gCorrect },
      rsync: c.ssh ? { medianFirstSeconds: rf, medianNoopSeconds: rn, cpuFirst: rCpu, runs: r, correct: rCorrect } : { skipped: c.sshSkipReason },
    },
  };
}

async function part4(c: Cluster, o: Options): Promise<PartResult> {
  const S = o.rssMiB * MiB;
  progress(`part 4: writing a ${o.rssMiB} MiB random file`);
  await writeLargeFile(c.lab.hostPath('h1', 'huge', 'huge.bin'), S, { seed: 'bench-rss' });
  await settle();
  await warmUp(c, o, 'h2', 'huge', S);
  const roles = { source: 'h1', relay: 'h2', leaf: 'h3' } as const;
  const runs: Array<Record<string, unknown>> = [];
  let correct: boolean | undefined;
  const mb = (kb: number) => (kb * 1024) / 1e6;
  for (let run = 1; run <= o.runs; run++) {
    checkInterrupted();
    // fresh daemons: VmHWM is then this run's peak (plus start-up)
    await c.startDaemons(['h1', 'h2', 'h3']);
    await delay(1000);
    const pids = Object.fromEntries(Object.entries(roles).map(([k, h]) => [k, c.nodePid.get(h)!]));
    const idle = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, statusKb(p, 'VmRSS')]));
    syncDisks();
    const sampler = sampleRss(pids, 100);
    const gr = await c.gosync(['h2', 'h3'], 'huge', `huge-r${run}`, timeoutFor(S, 10, 2), { coldHashCache: !o.warmHashCache, fanout: o.fanout });
    const sampled = sampler.stop();
    const hwm = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, statusKb(p, 'VmHWM')]));
    const ok = checkGosync(`part 4 run ${run}`, gr, 'ok', 2);
    if (!ok) gr.seconds = NaN;
    if (run === 1) correct = ok && (await oracle('part 4 gosync (leaf)', c.lab.hostPath('h1', 'huge'), c.lab.hostPath('h3', `huge-r${run}`)));
    delete gr.report;
    await c.remove(['h2', 'h3'], `huge-r${run}`);
    runs.push({ seconds: gr.seconds, reportSeconds: gr.reportSeconds, cpu: gr.cpu, idleRssKb: idle, sampledMaxRssKb: sampled, vmHwmKb: hwm, pids });
    progress(`part 4: ${o.rssMiB} MiB through h1→h2→h3 run ${run}/${o.runs}: ${fix(gr.seconds)} s; VmHWM MB source ${fix(mb(hwm.source!), 0)}, relay ${fix(mb(hwm.relay!), 0)}, leaf ${fix(mb(hwm.leaf!), 0)} (idle ${fix(mb(idle.relay!), 0)})`);
  }
  await c.remove(['h1'], 'huge');
  const med = (f: (r: Record<string, unknown>) => number) => median(runs.map(f));
  const get = (key: string, role: string) => (r: Record<string, unknown>) => (r[key] as Record<string, number>)[role]!;
  const secs = med((r) => r.seconds as number);
  const rows = (['source', 'relay', 'leaf'] as const).map((role) => [
    role, c.net.host(roles[role]).name, fix(mb(med(get('idleRssKb', role))), 0), fix(mb(med(get('vmHwmKb', role))), 0), fix(mb(med(get('sampledMaxRssKb', role))), 0),
  ]);
  const table = `${o.rssMiB} MiB file, chain h1 → h2 → h3 (unshaped), median of ${o.runs}: ${fix(secs)} s = ${fix(S / secs / 1e6, 0)} MB/s, correct: ${correct ? 'ok' : 'WRONG'}\n\n` +
    mdTable(['role', 'host', 'idle RSS MB', 'peak RSS MB (VmHWM)', 'max sampled VmRSS MB (100 ms)'], rows);
  return { table, data: { sizeMiB: o.rssMiB, medianSeconds: secs, correct, runs, pids: c.pidNotes() } };
}

// ---------------------------------------------------------------------------
// Part 5: one slow host among fast ones

/**
 * h1 → h2 → h3 → h4 → h5 (gosync's chain, in -t order), every link at --rate except h3's (or
 * --slow-host's) at --slow-mbit: when does each host have the file? Credit is end to end, so
 * without the laggard rule (protocols/relay/laggard.ts) the slow host paces all. rsync-ssh sends to all four at once
 * from h1. Times are each host's rename of the file into place (its ctime), from the CLI's start.
 */
export async function part5(o: Options, sshd: string | undefined, sshReason: string | undefined): Promise<PartResult> {
  const slow = o.slowMbit ?? Math.max(1, Math.round(o.rateMbit / 10));
  const sizeMiB = o.sizes[0]!;
  const S = sizeMiB * MiB;
  const targets = ['h2', 'h3', 'h4', 'h5'];
  const slowHost = o.slowHost ?? 'h3';
  progress(`part 5: 5 hosts on ${o.rateMbit} Mbit/s links, ${slowHost} on ${slow} Mbit/s, ${sizeMiB} MiB`);
  const c = await Cluster.create('p5', 5, o.rateMbit, { [slowHost]: slow });
  try {
    await c.startDaemons(['h1', ...targets]);
    if (o.rsync) await c.startSsh(sshd, targets, sshReason);
    else c.sshSkipReason = '--no-rsync';
    const srcRel = 'src-slow';
    await writeLargeFile(c.lab.hostPath('h1', srcRel, 'blob.bin'), S, { seed: `bench-slow-${sizeMiB}` });
    await settle();
    const doneAt = async (dst: string, t0: number) => await Promise.all(targets.map(async (t) =>
      ((await fsp.stat(c.lab.hostPath(t, dst, 'blob.bin'))).ctimeMs - t0) / 1000));
    const timeout = timeoutFor(S, (slow * 1e6) / 8 / 1e6 / 2, 1);
    type G = { seconds: number; done: number[]; laggards: string[] };
    const g: G[] = [];
    const gKnown: G[] = [];
    const r: Array<{ seconds: number; done: number[] } | { error: string }> = [];
    /** one gosync push; `known`: the source still remembers the laggard of the push before */
    const push = async (run: number, known: boolean): Promise<G> => {
      const gDst = `g-slow-r${run}${known ? '-known' : ''}`;
      syncDisks();
      const t0 = Date.now();
      const gr = await c.gosync(targets, srcRel, gDst, timeout, { coldHashCache: !o.warmHashCache, fanout: o.fanout, knownLaggards: known });
      const gOk = checkGosync(`part 5, run ${run}${known ? ' (laggard known)' : ''}`, gr, 'ok', targets.length);
      const done = gOk ? await doneAt(gDst, t0) : targets.map(() => NaN);
      const laggards = (gr.report?.targets ?? []).filter((t) => t.laggard === true).map((t) => c.hostOf(t.peer));
      if (run === 1 && gOk) {
        for (const t of targets) await oracle(`part 5 gosync (${t})`, c.lab.hostPath('h1', srcRel), c.lab.hostPath(t, gDst));
      }
      await c.remove(targets, gDst);
      progress(`part 5: ${run >= 1 ? `run ${run}/${o.runs}` : 'warm-up (not in the median)'}${known ? ', laggard known' : ''}: gosync ${fix(gr.seconds)} s; done at ${done.map((x) => fix(x)).join(' / ')} s; laggards ${laggards.join(',') || 'none'}`);
      return { seconds: gr.seconds, done, laggards };
    };
    for (let run = 1 - o.warmup; run <= o.runs; run++) {
      checkInterrupted();
      const timed = run >= 1;
      // first as on a first meeting (the source remembers no laggard), then as the next task does
      const first = await push(run, false);
      const next = await push(run, true);
      if (timed) { g.push(first); gKnown.push(next); }
      if (c.ssh && timed) {
        checkInterrupted();
        const rDst = `r-slow-r${run}`;
        syncDisks();
        const t1 = Date.now();
        const rr = await c.rsync(targets, srcRel, rDst, timeout);
        if (!isRsyncRun(rr)) flag(`rsync FAILED in part 5: ${rr.error}`);
        const rDone = isRsyncRun(rr) ? await doneAt(rDst, t1) : targets.map(() => NaN);
        r.push(isRsyncRun(rr) ? { seconds: rr.seconds, done: rDone } : rr);
        await c.remove(targets, rDst);
        progress(`part 5: run ${run}/${o.runs}: rsync-ssh ${isRsyncRun(rr) ? fix(rr.seconds) : 'FAILED'} s; done at ${rDone.map((x) => fix(x)).join(' / ')} s`);
      }
    }
    const fast = targets.map((_t, i) => i).filter((i) => targets[i] !== slowHost);
    const row = (tool: string, runs: Array<{ seconds: number; done: number[] }>, extra: string) => [
      tool, ...targets.map((_t, i) => fix(median(runs.map((x) => x.done[i]!)))),
      fix(median(runs.map((x) => Math.max(...fast.map((i) => x.done[i]!))))), fix(median(runs.map((x) => x.seconds))), extra,
    ];
    const rOk = r.filter((x): x is { seconds: number; done: number[] } => !('error' in x));
    const rows = [
      row('gosync, first task (slow host found and cut off)', g, g.map((x) => x.laggards.join(',') || 'none').join(' / ')),
      row('gosync, next task (slow host known: alone from the start)', gKnown, gKnown.map((x) => x.laggards.join(',') || 'none').join(' / ')),
    ];
    if (c.ssh) rows.push(row('rsync-ssh', rOk, '–'));
    const header = ['tool', ...targets.map((t) => (t === slowHost ? `${t} s (${slow} Mbit/s)` : `${t} s`)), 'fast hosts done s', 'all done s', 'laggards (per run)'];
    const bound = { fast: S / ((o.rateMbit * 1e6) / 8), slow: S / ((slow * 1e6) / 8) };
    const note = `S/B: ${fix(bound.fast)} s on a ${o.rateMbit} Mbit/s link, ${fix(bound.slow)} s on ${slow} Mbit/s. Medians of ${o.runs} runs${o.warmup > 0 ? ` after ${o.warmup} untimed gosync run(s)` : ''}; each host's time is its rename of the file into place, from the start of the command. "First task": the source's memory of laggards emptied before; "next task": right after, with the memory the first one left.\n${c.ssh ? '' : `rsync-ssh skipped: ${c.sshSkipReason}\n`}`;
    return { table: `${note}\n${mdTable(header, rows)}`, data: { rateMbit: o.rateMbit, slowMbit: slow, slowHost, sizeMiB, bound, gosync: g, gosyncKnown: gKnown, rsync: c.ssh ? r : { skipped: c.sshSkipReason } } };
  } finally {
    progress('part 5: tearing down');
    await c.destroy();
  }
}
