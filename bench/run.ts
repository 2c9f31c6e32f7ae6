/**
 * gosync benchmark: `npm run bench [-- options]`. Markdown tables on stdout, progress on
 * stderr, everything measured in bench-results.json (in the cwd). Needs root (network and
 * mount namespaces); traffic stays inside namespaces this run creates; mDNS is off.
 *
 *   --parts 1,2,3,4,5   which parts (1 shaped one-to-many, 2 large file, 3 small files, 4 relay RSS,
 *                       5 one slow host in the chain)
 *   --sizes 64,256      part 1 file sizes, MiB (part 5: the first)
 *   --ns 1,2,4,8        part 1 target counts
 *   --runs 3            runs per configuration (medians are reported)
 *   --rate 200          part 1 and 5 link rate, Mbit/s
 *   --slow-mbit N       part 5: the slow host's link rate (default a tenth of --rate)
 *   --slow-host hN      part 5: which of h1–h5 is slow (default h3; h2 is the source's own child, h1 the source)
 *   --large-mib 1024    part 2 file size
 *   --files 20000       part 3 file count
 *   --rss-mib 2048      part 4 file size
 *   --no-rsync          skip the rsync-over-ssh baseline
 *   --fanout N          children per node in gosync's relay trees (default: a chain)
 *   --warm-hash-cache   keep the source daemon's hash cache (after one untimed warm-up sync);
 *                       by default it is emptied before every timed first sync, so the
 *                       source hashes its files as on the first push of new content
 *   --out FILE          results file (default bench-results.json)
 *   --quick             64 MiB, N 1,2,4, 1 run, 256 MiB large file, 5,000 files, 512 MiB RSS file
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTempRoot, REPO_ROOT } from '../test/lab/hosts.js';
import { NetLab } from '../test/lab/netns.js';
import { machineBaselines, part1, part5, unshapedParts, type Options, type PartResult } from './parts.js';
import { ensureSshd } from './ssh.js';
import { installSignalHandlers, interrupted, onCleanup, problems, progress, runCleanups } from './util.js';

function usage(msg?: string): never {
  if (msg) process.stderr.write(`bench: ${msg}\n`);
  process.stderr.write('usage: npm run bench -- [--quick] [--parts 1,2,3,4,5] [--sizes 64,256] [--ns 1,2,4,8] [--runs 3] [--warmup 1] [--rate 200]\n' +
    '                        [--large-mib 1024] [--files 20000] [--rss-mib 2048] [--slow-mbit 20] [--slow-host h3] [--no-rsync] [--warm-hash-cache] [--out bench-results.json]\n');
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const o: Options = quick
    ? { sizes: [64], ns: [1, 2, 4], runs: 1, warmup: 0, parts: [1, 2, 3, 4, 5], largeMiB: 256, files: 5000, rssMiB: 512, rateMbit: 200, rsync: true, out: 'bench-results.json', quick, warmHashCache: false }
    : { sizes: [64], ns: [1, 2, 4, 8], runs: 3, warmup: 1, parts: [1, 2, 3, 4, 5], largeMiB: 1024, files: 20000, rssMiB: 2048, rateMbit: 200, rsync: true, out: 'bench-results.json', quick, warmHashCache: false };
  const list = (v: string | undefined, name: string) => {
    const xs = (v ?? '').split(',').map(Number);
    if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x <= 0)) usage(`${name} wants a comma-separated list of positive integers`);
    return xs;
  };
  const int = (v: string | undefined, name: string) => list(v, name)[0]!;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const val = () => inline ?? argv[++i];
    switch (flag) {
      case '--quick': break;
      case '--sizes': o.sizes = list(val(), flag); break;
      case '--ns': o.ns = list(val(), flag); break;
      case '--runs': o.runs = int(val(), flag); break;
      case '--warmup': { const v = val(); o.warmup = v === '0' ? 0 : int(v, flag); break; }
      case '--parts': o.parts = list(val(), flag); if (o.parts.some((p) => p > 5)) usage('parts are 1 to 5'); break;
      case '--slow-mbit': o.slowMbit = int(val(), flag); break;
      case '--slow-host': { const v = val(); if (!/^h[1-5]$/.test(v)) usage('--slow-host is one of h1 (the source), h2, h3, h4, h5'); o.slowHost = v; break; }
      case '--rate': o.rateMbit = int(val(), flag); break;
      case '--large-mib': o.largeMiB = int(val(), flag); break;
      case '--files': o.files = int(val(), flag); break;
      case '--rss-mib': o.rssMiB = int(val(), flag); break;
      case '--no-rsync': o.rsync = false; break;
      case '--warm-hash-cache': o.warmHashCache = true; break;
      case '--fanout': o.fanout = int(val(), flag); break;
      case '--out': o.out = val() ?? usage('--out wants a file'); break;
      case '-h': case '--help': usage();
      default: usage(`unknown option ${a}`);
    }
  }
  o.ns = [...new Set(o.ns)].sort((a, b) => a - b);
  if (o.ns.some((n) => n > 60)) usage('--ns: at most 60 targets');
  return o;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: REPO_ROOT });
  return (r.stdout ?? '').trim();
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  installSignalHandlers();
  // one exit hook per sshd and per running child (each removed when it ends): more than the default 10 at N = 8
  process.setMaxListeners(64);
  const avail = NetLab.available();
  if (!avail.ok) {
    process.stderr.write(`bench: cannot run: network namespaces unavailable (${avail.reason}). The benchmark needs root, iproute2 and tc.\n`);
    return 3;
  }
  const outPath = path.resolve(o.out);
  const dirty = sh('git', ['status', '--porcelain', '--', 'src', 'cli', 'protocols']);
  const results: Record<string, unknown> = {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(),
      commit: sh('git', ['rev-parse', 'HEAD']),
      uncommittedSourceChanges: dirty === '' ? [] : dirty.split('\n'),
      rsync: sh('rsync', ['--version']).split('\n')[0],
      ssh: spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim(),
      options: o,
    },
  };
  const save = () => writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
  const print = (title: string, r: PartResult) => {
    process.stdout.write(`\n### ${title}\n\n${r.table}\n`);
    results[title.split(':')[0]!.toLowerCase().replace(/[^a-z0-9]+/g, '-')] = r.data;
    save();
  };
  progress(`options: ${JSON.stringify(o)}`);
  process.stdout.write(`# gosync benchmark, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC\n\n` +
    `${os.cpus().length} cores (${os.cpus()[0]?.model}), Node ${process.version}, kernel ${os.release()}, ` +
    `network namespaces on one machine${dirty ? ' — NOTE: uncommitted changes in src/cli/protocols' : ''}\n`);

  let sshd: string | undefined;
  let sshReason: string | undefined;
  if (o.rsync && o.parts.some((p) => p <= 3 || p === 5)) {
    const s = ensureSshd();
    sshd = s.sshd;
    sshReason = s.reason;
    if (!sshd) process.stderr.write(`\nbench: rsync-over-ssh columns SKIPPED: ${sshReason}\n\n`);
  }

  const scratch = await makeTempRoot('gosync-bench-scratch-');
  const undoScratch = onCleanup('scratch dir', () => scratch.cleanup());
  progress('machine baselines (hash, cipher, disk)');
  print('Baselines: one core and the disk', await machineBaselines(scratch.path, o.quick));
  await scratch.cleanup();
  undoScratch();

  if (o.parts.includes(1)) {
    print(`Part 1: one-to-many over ${o.rateMbit} Mbit/s links (medians of ${o.runs})`, await part1(o, sshd, sshReason));
  }
  if (o.parts.some((p) => p > 1 && p < 5)) {
    const r = await unshapedParts(o, sshd, sshReason);
    if (r.fixed) print('Fixed cost: one 1-byte sync, unshaped', r.fixed);
    if (r.part2) print(`Part 2: one large file, one target, unshaped (medians of ${o.runs})`, r.part2);
    if (r.part3) print(`Part 3: ${o.files} small files, one target, unshaped (medians of ${o.runs})`, r.part3);
    if (r.part4) print(`Part 4: peak RSS through a chain source → relay → leaf`, r.part4);
  }
  if (o.parts.includes(5)) {
    print('Part 5: one slow host in the chain', await part5(o, sshd, sshReason));
  }
  results.problems = problems;
  save();
  process.stderr.write(`\nbench: results in ${outPath}\n`);
  if (problems.length > 0) {
    process.stderr.write(`\nbench: ${problems.length} PROBLEM(S):\n${problems.map((p) => `  - ${p.split('\n')[0]}`).join('\n')}\n`);
    process.stdout.write(`\n**${problems.length} problem(s) — see stderr and ${path.basename(outPath)}:**\n${problems.map((p) => `- ${p.split('\n')[0]}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}

main()
  .then(async (code) => {
    await runCleanups();
    process.exit(code);
  })
  .catch(async (e: Error) => {
    if (interrupted()) {
      await runCleanups();
      process.exit(130);
    }
    process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
    await runCleanups();
    process.exit(3);
  });
