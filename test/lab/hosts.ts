/**
 * Test lab: several gosync "hosts" on one machine.
 *
 * Every daemon runs in its own private mount namespace in which its own host
 * directory (`<root>/hosts/<name>`, with any mounts below it: --rbind) is bind-mounted at ONE common path
 * (`<root>/mnt`). So `--dst <root>/mnt/dst` names a different directory on every
 * host, as on real machines, while the test process reaches each host's files at
 * `<root>/hosts/<name>/...` (see `Lab.hostPath`). Homes (`<root>/homes/<name>`)
 * live outside the common mount, so the test process can talk to each daemon's
 * `daemon.sock`.
 *
 * Without root or `unshare` (or with GOSYNC_LAB_NO_NS=1) daemons run without mount
 * namespaces: every host then sees the same `<root>/mnt`, `lab.views` is false and
 * tests that need separate views must skip.
 *
 * The bind mounts live only inside the daemons' namespaces: they vanish with the
 * last process of each namespace, nothing is mounted in the test's namespace.
 * Traffic stays on 127.0.0.1 and mDNS is always off unless a caller asks for it
 * (only inside network namespaces; see /work/shared/notes/test-hosts.md).
 *
 * Options for a later network-namespace lab: `wrap` (a command prefix such as
 * `['ip', 'netns', 'exec', 'h1']`), `listen` and `mdns` on `startDaemon`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------
// Paths and the report contract

/** Repository root: this file is compiled to dist/test/lab/hosts.js. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The built CLI (override with GOSYNC_CLI, e.g. to try the lab with a stub). */
export const CLI_PATH = process.env.GOSYNC_CLI ?? path.join(REPO_ROOT, 'dist', 'cli', 'gosync.js');
/** The CLI's first line: `#!/usr/bin/env -S [-u VAR]... node FLAGS`. */
const SHEBANG = /^#!\S*env -S((?:\s+-u\s+\w+)*)\s+node((?:\s+--\S+)*)\s*$/.exec(fs.readFileSync(CLI_PATH, 'utf8').split('\n', 1)[0] ?? '');
/**
 * The node flags of the CLI's first line: daemons here run as `gosync` would. GOSYNC_NODE_FLAGS
 * replaces them (space-separated; empty for none), for comparisons.
 */
export const NODE_FLAGS: string[] = (() => {
  const override = process.env.GOSYNC_NODE_FLAGS;
  if (override !== undefined) return override.split(/\s+/).filter(Boolean);
  return SHEBANG ? SHEBANG[2]!.trim().split(/\s+/).filter(Boolean) : [];
})();
/**
 * For looking inside daemons: GOSYNC_LAB_DAEMON_FLAGS adds node flags to daemons only (e.g. `--trace-opt`,
 * whose output would break the CLI's stdout); GOSYNC_LAB_STDOUT_DIR appends each daemon's stdout to
 * DIR/NAME.out, each line after the epoch ms it arrived at.
 */
const DAEMON_EXTRA_FLAGS = (process.env.GOSYNC_LAB_DAEMON_FLAGS ?? '').split(/\s+/).filter(Boolean);
const STDOUT_DIR = process.env.GOSYNC_LAB_STDOUT_DIR;
/** The variables the CLI's first line removes (`env -u`) before node starts. */
export const UNSET_ENV: string[] = SHEBANG ? [...SHEBANG[1]!.matchAll(/-u\s+(\w+)/g)].map((m) => m[1]!) : [];

/** `env` as the CLI's first line would pass it on to node. */
export function cliEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const v of UNSET_ENV) delete out[v];
  return out;
}

export interface TargetReport {
  peer: string;
  address?: string;
  status: 'ok' | 'unchanged' | 'failed';
  error?: string;
  muxer?: string;
  files: number;
  bytes: number;
  created: number;
  deleted: number;
  updated: number;
  /** no manifest was sent: the target showed it already held this tree */
  treeKnown?: boolean;
  /** cut off by a relay parent for holding the others back; finished in a round of its own */
  laggard?: boolean;
  /** the source probed another target (\`via\`) while this one, its own child, kept it waiting: bytes/s of each */
  probe?: { via: string; rate: number; sentRate: number; sentRateDuring: number; probeRate: number; cut: boolean };
  /** file data taken from the wire; bytes continued from kept parts */
  received?: number;
  resumed?: number;
  receipt?: { digest: string; signature: string; session: string; verified: boolean };
}

export interface SyncReport {
  ok: boolean;
  session: string;
  source: string;
  src: string;
  dst: string;
  /** entries of the source's tree that could not be read (none: absent) */
  unreadable?: number;
  targets: TargetReport[];
  totals: { files: number; bytes: number; seconds: number };
}

// ---------------------------------------------------------------------------
// Child processes: every one is tracked and killed when this process exits.

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Last resort: a test that crashed or forgot cleanup must not leave daemons behind.
    process.on('exit', () => {
      for (const c of live) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    });
  }
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** true when SIGTERM was not enough and SIGKILL had to be sent */
  forced: boolean;
}

function exitPromise(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // spawn failure (ENOENT...): no 'exit' event follows
    child.once('error', () => resolve({ code: child.exitCode, signal: child.signalCode }));
  });
}

/** SIGTERM, then SIGKILL after `graceMs`. Resolves when the process has exited. */
async function terminate(child: ChildProcess, graceMs: number): Promise<ExitStatus> {
  const exited = exitPromise(child);
  if (child.exitCode !== null || child.signalCode !== null) return { ...(await exited), forced: false };
  if (graceMs > 0) {
    child.kill('SIGTERM');
    const timer = delay(graceMs, 'timeout' as const);
    const r = await Promise.race([exited, timer]);
    if (r !== 'timeout') return { ...r, forced: false };
  }
  child.kill('SIGKILL');
  return { ...(await exited), forced: true };
}

/** The tail of a string, for error messages. */
export function tail(s: string, max = 4000): string {
  return s.length <= max ? s : `...[${s.length - max} chars cut]...\n` + s.slice(-max);
}

// ---------------------------------------------------------------------------
// Isolation capabilities

let pdeathsigCache: string[] | undefined;
/**
 * `setpriv --pdeathsig KILL` when available: children then die with this process
 * even when it is SIGKILLed (the exit hook above cannot run then).
 */
function pdeathsigPrefix(): string[] {
  if (pdeathsigCache === undefined) {
    const r = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true'], { stdio: 'ignore', timeout: 10_000 });
    pdeathsigCache = !r.error && r.status === 0 ? ['setpriv', '--pdeathsig', 'KILL'] : [];
  }
  return pdeathsigCache;
}

/** Can we give daemons private mount namespaces? Tries a real bind mount once. */
function probeMountNamespaces(hostDir: string, mnt: string): { ok: boolean; reason?: string } {
  if (process.env.GOSYNC_LAB_NO_NS === '1') return { ok: false, reason: 'GOSYNC_LAB_NO_NS=1' };
  if (process.platform !== 'linux') return { ok: false, reason: `mount namespaces need Linux, not ${process.platform}` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'mount namespaces need root' };
  const r = spawnSync(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$2"', 'sh', hostDir, mnt],
    { encoding: 'utf8', timeout: 10_000 },
  );
  if (r.error) return { ok: false, reason: `unshare unavailable: ${r.error.message}` };
  if (r.status !== 0) return { ok: false, reason: `unshare --mount failed (exit ${r.status}): ${r.stderr.trim()}` };
  return { ok: true };
}

// ---------------------------------------------------------------------------
// Temp roots

export interface TempRoot {
  path: string;
  cleanup(): Promise<void>;
}

/** A fresh unique directory under os.tmpdir(); `cleanup()` removes it (unless GOSYNC_KEEP_LAB=1). */
export async function makeTempRoot(prefix = 'gosync-it-'): Promise<TempRoot> {
  const p = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  return {
    path: p,
    async cleanup() {
      if (process.env.GOSYNC_KEEP_LAB === '1') {
        process.stderr.write(`GOSYNC_KEEP_LAB=1: keeping ${p}\n`);
        return;
      }
      await fsp.rm(p, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

// ---------------------------------------------------------------------------
// Running the CLI

export interface CliOptions {
  /** appended as `--home DIR` */
  home?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** command prefix, e.g. ['ip', 'netns', 'exec', 'h1'] */
  wrap?: string[];
}

export interface CliResult {
  /** printable command line, for assertion messages */
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

export function quoteArgs(args: string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
}

/** `node dist/cli/gosync.js ...args [--home DIR]` with a timeout (SIGKILL, `timedOut: true`). */
export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const full = [...args, ...(opts.home !== undefined ? ['--home', opts.home] : [])];
  const cmd = [...(opts.wrap ?? []), process.execPath, ...NODE_FLAGS, CLI_PATH, ...full];
  const command = `gosync ${quoteArgs(full)}`;
  const started = performance.now();
  const child = spawn(cmd[0]!, cmd.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cliEnv(opts.env),
    cwd: opts.cwd,
  });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 180_000);
  const spawnError = await new Promise<Error | null>((resolve) => {
    child.once('error', (e) => resolve(e));
    child.once('close', () => resolve(null));
  });
  clearTimeout(timer);
  if (spawnError) throw new Error(`cannot run ${command}: ${spawnError.message}`);
  return { command, code: child.exitCode, signal: child.signalCode, stdout, stderr, ms: performance.now() - started, timedOut };
}

/** Everything about a CLI run, for assertion messages. */
export function fmt(r: CliResult): string {
  return (
    `$ ${r.command}\n-> exit ${r.code}${r.signal ? ` signal ${r.signal}` : ''}${r.timedOut ? ' (TIMED OUT)' : ''} ` +
    `after ${(r.ms / 1000).toFixed(1)} s\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`
  );
}

export interface SyncRun extends CliResult {
  report: SyncReport;
}

/** `gosync sync ...args --json`; stdout must be exactly one JSON document. */
export async function syncJson(args: string[], opts: CliOptions = {}): Promise<SyncRun> {
  const r = await runCli(['sync', ...args, '--json'], opts);
  let report: SyncReport;
  try {
    report = JSON.parse(r.stdout) as SyncReport;
  } catch (e) {
    throw new Error(`stdout of sync --json is not one JSON document (${(e as Error).message})\n${fmt(r)}`);
  }
  checkReportShape(report, r);
  return { ...r, report };
}

/** Throws unless `report` has the documented shape. */
export function checkReportShape(report: SyncReport, r?: CliResult): void {
  const problems: string[] = [];
  const want = (cond: boolean, what: string) => {
    if (!cond) problems.push(what);
  };
  want(report !== null && typeof report === 'object', 'report is an object');
  if (problems.length === 0) {
    want(typeof report.ok === 'boolean', 'ok: boolean');
    want(typeof report.session === 'string', 'session: string');
    want(typeof report.source === 'string', 'source: string');
    want(typeof report.src === 'string', 'src: string');
    want(typeof report.dst === 'string', 'dst: string');
    want(Array.isArray(report.targets), 'targets: array');
    want(
      typeof report.totals === 'object' &&
        report.totals !== null &&
        ['files', 'bytes', 'seconds'].every((k) => typeof (report.totals as unknown as Record<string, unknown>)[k] === 'number'),
      'totals: {files, bytes, seconds: number}',
    );
    for (const [i, t] of (Array.isArray(report.targets) ? report.targets : []).entries()) {
      want(typeof t.peer === 'string', `targets[${i}].peer: string`);
      want(['ok', 'unchanged', 'failed'].includes(t.status), `targets[${i}].status in ok|unchanged|failed`);
      for (const k of ['files', 'bytes', 'created', 'deleted', 'updated'] as const) {
        want(typeof t[k] === 'number' && t[k] >= 0, `targets[${i}].${k}: number >= 0`);
      }
      if (t.status === 'failed') want(typeof t.error === 'string' && t.error.length > 0, `targets[${i}].error set when failed`);
    }
  }
  if (problems.length > 0) {
    throw new Error(`sync report lacks ${problems.join(', ')}\n${JSON.stringify(report, null, 2)}${r ? '\n' + fmt(r) : ''}`);
  }
}

/** The report entry of one target; throws (with the report) if it is missing or repeated. */
export function targetOf(report: SyncReport, peer: string | { peerId: string }): TargetReport {
  const id = typeof peer === 'string' ? peer : peer.peerId;
  const found = report.targets.filter((t) => t.peer === id);
  if (found.length !== 1) {
    throw new Error(`expected exactly one report entry for ${id}, found ${found.length}:\n${JSON.stringify(report, null, 2)}`);
  }
  return found[0]!;
}

// ---------------------------------------------------------------------------
// Daemons

export interface DaemonOptions {
  name: string;
  /** PeerIds passed as --trust */
  trust?: string[];
  extraArgs?: string[];
  /** default /ip4/127.0.0.1/tcp/0 */
  listen?: string;
  /** default false: `--no-mdns` is passed. Only ever true inside network namespaces. */
  mdns?: boolean;
  /** default `lab.home(name)` */
  home?: string;
  /** command prefix, e.g. ['ip', 'netns', 'exec', 'h1'] */
  wrap?: string[];
  /** run the daemon as this uid and gid (setpriv, after its mount namespace is made): its home and host dir must be theirs */
  asUser?: number;
  readyTimeoutMs?: number;
  /** environment variables for this daemon only, over the lab's */
  env?: NodeJS.ProcessEnv;
}

export interface Daemon {
  name: string;
  peerId: string;
  /** listen addresses as printed, each ending in /p2p/<peerId> */
  addrs: string[];
  /** the first listen address */
  addr: string;
  /** this host's directory as the test process sees it (mounted at lab.mnt in the daemon) */
  hostDir: string;
  home: string;
  pid: number;
  /** every stdout line so far */
  stdoutLines: string[];
  /** captured stderr (the last 256 KiB) */
  stderr(): string;
  /** resolves when the process exits */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, SIGKILL after graceMs (default 3 s) */
  stop(graceMs?: number): Promise<ExitStatus>;
  /** SIGKILL now */
  kill(): Promise<ExitStatus>;
}

const STDERR_CAP = 256 * 1024;

export class Lab {
  readonly root: string;
  /** the common path: every daemon sees its own host directory here */
  readonly mnt: string;
  /** true when daemons get separate filesystem views */
  readonly views: boolean;
  /** why `views` is false */
  readonly viewsReason: string | undefined;
  /** environment for every process started by the lab (HOME points into the lab) */
  readonly env: NodeJS.ProcessEnv;
  private readonly tmp: TempRoot;
  private readonly daemons = new Set<Daemon>();
  private readonly identities = new Map<string, string>();

  private constructor(tmp: TempRoot, views: boolean, viewsReason: string | undefined) {
    this.tmp = tmp;
    this.root = tmp.path;
    this.mnt = path.join(tmp.path, 'mnt');
    this.views = views;
    this.viewsReason = viewsReason;
    // A flag the CLI ignored must not make it touch the real user's ~/.gosync.
    this.env = { ...process.env, HOME: path.join(tmp.path, 'user-home') };
    delete this.env.GOSYNC_HOME;
  }

  static async create(name = 'lab'): Promise<Lab> {
    const tmp = await makeTempRoot(`gosync-${name}-`);
    try {
      const mnt = path.join(tmp.path, 'mnt');
      const probe = path.join(tmp.path, 'hosts', '.probe');
      await fsp.mkdir(mnt, { recursive: true });
      await fsp.mkdir(probe, { recursive: true });
      await fsp.mkdir(path.join(tmp.path, 'user-home'), { recursive: true });
      const ns = probeMountNamespaces(probe, mnt);
      await fsp.rm(probe, { recursive: true, force: true });
      return new Lab(tmp, ns.ok, ns.reason);
    } catch (e) {
      await tmp.cleanup();
      throw e;
    }
  }

  /** Host `name`'s directory as the test process sees it (its daemon sees it at `mnt`). */
  hostDir(name: string): string {
    return this.views ? path.join(this.root, 'hosts', name) : this.mnt;
  }

  /** A path under the common mount, as daemons name it (e.g. for --src/--dst). */
  common(...rel: string[]): string {
    return path.join(this.mnt, ...rel);
  }

  /** Where the test process finds `common(...rel)` of host `name`. */
  hostPath(name: string, ...rel: string[]): string {
    return path.join(this.hostDir(name), ...rel);
  }

  home(name: string): string {
    return path.join(this.root, 'homes', name);
  }

  /** `gosync id --home <home(name)>`: the PeerId (creates the identity if needed). */
  async identity(name: string, home = this.home(name)): Promise<string> {
    const known = this.identities.get(home);
    if (known) return known;
    await fsp.mkdir(home, { recursive: true });
    const r = await runCli(['id'], { home, env: this.env, timeoutMs: 60_000 });
    const id = r.stdout.split('\n')[0]?.trim() ?? '';
    if (r.code !== 0 || !/^\S{20,}$/.test(id)) throw new Error(`gosync id failed or printed no PeerId\n${fmt(r)}`);
    this.identities.set(home, id);
    return id;
  }

  runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
    return runCli(args, { env: this.env, ...opts });
  }

  syncJson(args: string[], opts: CliOptions = {}): Promise<SyncRun> {
    return syncJson(args, { env: this.env, ...opts });
  }

  /** A source daemon `src` and target daemons that trust it, started in parallel. */
  async startSourceAndTargets(
    names: string[],
    targetOpts: Omit<DaemonOptions, 'name' | 'trust'> = {},
  ): Promise<{ source: Daemon; targets: Daemon[]; sourceId: string }> {
    const sourceId = await this.identity('src');
    const [source, ...targets] = await Promise.all([
      this.startDaemon({ name: 'src' }),
      ...names.map((name) => this.startDaemon({ ...targetOpts, name, trust: [sourceId] })),
    ]);
    return { source: source!, targets, sourceId };
  }

  async startDaemon(opts: DaemonOptions): Promise<Daemon> {
    const { name } = opts;
    const home = opts.home ?? this.home(name);
    const hostDir = this.hostDir(name);
    await fsp.mkdir(home, { recursive: true });
    await fsp.mkdir(hostDir, { recursive: true });
    if (opts.asUser !== undefined) {
      // the user reaches its home and host dir through the lab's directories, and owns both
      for (const d of new Set([this.root, path.dirname(home), path.dirname(hostDir), this.mnt])) {
        const st = await fsp.stat(d);
        await fsp.chmod(d, (st.mode & 0o7777) | 0o711);
      }
      for (const d of [home, hostDir]) await fsp.chown(d, opts.asUser, opts.asUser);
    }

    const args = ['daemon', '--home', home, '--listen', opts.listen ?? '/ip4/127.0.0.1/tcp/0'];
    if (!opts.mdns) args.push('--no-mdns');
    for (const p of opts.trust ?? []) args.push('--trust', p);
    args.push(...(opts.extraArgs ?? []));
    const asUser = opts.asUser !== undefined ? ['setpriv', `--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, '--clear-groups'] : [];
    const node = [...asUser, process.execPath, ...NODE_FLAGS, ...DAEMON_EXTRA_FLAGS, CLI_PATH, ...args];
    const cmd = [
      ...pdeathsigPrefix(),
      ...(opts.wrap ?? []),
      ...(this.views
        ? ['unshare', '--mount', '--propagation', 'private',
           'sh', '-c', 'mount --rbind "$1" "$2" && shift 2 && exec "$@"', 'sh', hostDir, this.mnt, ...node]
        : node),
    ];
    const command = `gosync ${quoteArgs(args)}`;

    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv({ ...this.env, ...opts.env }) });
    track(child);
    const exited = exitPromise(child);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.length > 2 * STDERR_CAP) stderr = stderr.slice(-STDERR_CAP);
    });
    const stdoutLines: string[] = [];
    const rl = createInterface({ input: child.stdout! });
    let peerId: string | undefined;
    const addrs: string[] = [];
    const describe = () =>
      `daemon ${name} (${command})\n--- stdout\n${stdoutLines.join('\n')}\n--- stderr\n${tail(stderr)}`;

    const daemon: Daemon = {
      name,
      get peerId() {
        return peerId!;
      },
      addrs,
      get addr() {
        return addrs[0]!;
      },
      hostDir,
      home,
      pid: child.pid ?? -1,
      stdoutLines,
      stderr: () => stderr.slice(-STDERR_CAP),
      exited,
      stop: (graceMs = 3000) => terminate(child, graceMs),
      kill: () => terminate(child, 0),
    };
    this.daemons.add(daemon);

    const ready = new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () => finish(new Error(`${describe()}\n=> not ready after ${opts.readyTimeoutMs ?? 20_000} ms`)),
        opts.readyTimeoutMs ?? 20_000,
      );
      rl.on('line', (line) => {
        stdoutLines.push(line);
        if (STDOUT_DIR) fs.appendFileSync(path.join(STDOUT_DIR, `${name}.out`), `${Date.now()} ${line}\n`);
        if (done) return;
        let m: RegExpMatchArray | null;
        if ((m = /^peer-id: (\S+)$/.exec(line))) peerId = m[1];
        else if ((m = /^listen: (\S+)$/.exec(line))) addrs.push(m[1]!);
        else if (line === 'ready') {
          if (!peerId) finish(new Error(`${describe()}\n=> "ready" without a "peer-id:" line`));
          else if (addrs.length === 0) finish(new Error(`${describe()}\n=> "ready" without a "listen:" line`));
          else {
            const bad = addrs.filter((a) => !a.endsWith(`/p2p/${peerId}`));
            if (bad.length > 0) finish(new Error(`${describe()}\n=> listen addresses not ending in /p2p/${peerId}: ${bad.join(' ')}`));
            else finish();
          }
        }
      });
      void exited.then(({ code, signal }) =>
        finish(new Error(`${describe()}\n=> exited (code ${code}, signal ${signal}) before "ready"`)),
      );
      child.once('error', (e) => finish(new Error(`${describe()}\n=> cannot start: ${e.message}`)));
    });
    try {
      await ready;
    } catch (e) {
      await terminate(child, 0);
      this.daemons.delete(daemon);
      throw e;
    }
    return daemon;
  }

  /** Stop every daemon (SIGTERM, SIGKILL after 3 s), then remove the temp root. */
  async cleanup(): Promise<void> {
    const all = [...this.daemons];
    this.daemons.clear();
    await Promise.all(all.map((d) => d.stop(3000)));
    await this.tmp.cleanup();
  }
}

// ---------------------------------------------------------------------------
// Network odds and ends

/** A "wedged host": accepts TCP connections on 127.0.0.1 and never answers. */
export async function silentListener(): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const srv = createServer((s) => {
    count++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.resume(); // swallow whatever arrives, say nothing
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    port: (srv.address() as { port: number }).port,
    connections: () => count,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

// ---------------------------------------------------------------------------
// The oracle

/**
 * `rsync -anci --delete SRC/ DST/`: the itemized differences, '' when the trees
 * match in content, types, symlink targets, modes and mtimes (to the second). `extra` goes
 * before the paths (e.g. `--no-o --no-g` for a target that cannot own files as the source does).
 */
export async function rsyncOracle(src: string, dst: string, extra: string[] = []): Promise<string> {
  const args = ['-anci', '--delete', ...extra, src.replace(/\/+$/, '') + '/', dst.replace(/\/+$/, '') + '/'];
  const child = spawn('rsync', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`rsync ${args.join(' ')} exited ${code}\n${tail(stdout)}\n${tail(stderr)}`);
  return stdout;
}

/** `rsync -a --delete SRC/ DST/`, to build fixtures (never as the thing under test). */
export async function rsyncCopy(src: string, dst: string): Promise<void> {
  const r = spawnSync('rsync', ['-a', '--delete', src.replace(/\/+$/, '') + '/', dst.replace(/\/+$/, '') + '/'], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`rsync -a ${src} ${dst} failed: ${r.error?.message ?? r.stderr}`);
}

// ---------------------------------------------------------------------------
// Tree builders

/** seconds since the epoch (fractions allowed), or a Date */
export type Time = number | Date;

export type Entry =
  | { kind: 'file'; content: string | Uint8Array; mode?: number; mtime?: Time }
  | { kind: 'dir'; mode?: number; mtime?: Time }
  | { kind: 'symlink'; target: string; mtime?: Time };

/** relative path -> entry; a string value is a file with that content (mode 0644) */
export type TreeSpec = Record<string, Entry | string>;

export const file = (content: string | Uint8Array, opts: { mode?: number; mtime?: Time } = {}): Entry => ({
  kind: 'file',
  content,
  ...opts,
});
export const dir = (opts: { mode?: number; mtime?: Time } = {}): Entry => ({ kind: 'dir', ...opts });
export const symlink = (target: string, opts: { mtime?: Time } = {}): Entry => ({ kind: 'symlink', target, ...opts });

/**
 * Create `spec` under `root` (created if missing). An existing entry at a spec'd
 * path is replaced whatever its type, so a spec can also be laid over an existing
 * tree. Missing parents are created (0755). Modes and mtimes are applied last,
 * directories deepest first, so creating children does not disturb them.
 */
export async function writeTree(root: string, spec: TreeSpec): Promise<void> {
  await fsp.mkdir(root, { recursive: true });
  const entries = Object.entries(spec)
    .map(([rel, e]) => [rel.replace(/\/+$/, ''), typeof e === 'string' ? file(e) : e] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [rel, e] of entries) {
    if (rel === '' || rel.split('/').includes('..') || path.isAbsolute(rel)) throw new Error(`bad tree path ${rel}`);
    const p = path.join(root, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.rm(p, { recursive: true, force: true });
    if (e.kind === 'file') await fsp.writeFile(p, e.content);
    else if (e.kind === 'dir') await fsp.mkdir(p);
    else await fsp.symlink(e.target, p);
  }
  for (const [rel, e] of entries) {
    const p = path.join(root, rel);
    if (e.kind === 'file') {
      await fsp.chmod(p, e.mode ?? 0o644);
      if (e.mtime !== undefined) await fsp.utimes(p, e.mtime, e.mtime);
    } else if (e.kind === 'symlink' && e.mtime !== undefined) {
      await fsp.lutimes(p, e.mtime, e.mtime);
    }
  }
  const dirs = entries.filter(([, e]) => e.kind === 'dir').reverse(); // deepest first
  for (const [rel, e] of dirs) {
    const p = path.join(root, rel);
    if (e.kind !== 'dir') continue;
    await fsp.chmod(p, e.mode ?? 0o755);
    if (e.mtime !== undefined) await fsp.utimes(p, e.mtime, e.mtime);
  }
}

/** Deterministic pseudo-random bytes: an AES-256-CTR keystream keyed by `seed`. */
export function keystream(seed: string): (n: number) => Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

/** A small deterministic PRNG (mulberry32) for sizes and picks. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A file of `size` pseudo-random bytes written in chunks (8 MiB by default), never
 * all in memory. Returns its sha256.
 */
export async function writeLargeFile(
  p: string,
  size: number,
  opts: { seed?: string; chunk?: number; mode?: number; mtime?: Time } = {},
): Promise<{ size: number; sha256: string }> {
  const chunk = opts.chunk ?? 8 * 1024 * 1024;
  const next = keystream(opts.seed ?? p);
  const hash = createHash('sha256');
  await fsp.mkdir(path.dirname(p), { recursive: true });
  const fh = await fsp.open(p, 'w', opts.mode ?? 0o644);
  try {
    for (let done = 0; done < size; ) {
      const buf = next(Math.min(chunk, size - done));
      hash.update(buf);
      await fh.write(buf, 0, buf.length);
      done += buf.length;
    }
  } finally {
    await fh.close();
  }
  if (opts.mode !== undefined) await fsp.chmod(p, opts.mode);
  if (opts.mtime !== undefined) await fsp.utimes(p, opts.mtime, opts.mtime);
  return { size, sha256: hash.digest('hex') };
}

/**
 * `count` small files of pseudo-random content, sizes uniform in [minSize, maxSize],
 * `perDir` per directory: `<root>/d000/f00000.bin`... Deterministic for a seed.
 * mtimes are left as written (real trees have nanosecond mtimes).
 */
export async function writeManyFiles(
  root: string,
  opts: { count: number; minSize?: number; maxSize?: number; perDir?: number; seed?: number },
): Promise<{ files: string[]; bytes: number }> {
  const { count, minSize = 100, maxSize = 8192, perDir = 100, seed = 1 } = opts;
  const rand = prng(seed);
  const bytesOf = keystream(`many-${seed}`);
  const files: string[] = [];
  let bytes = 0;
  const jobs: Array<{ p: string; data: Buffer }> = [];
  for (let i = 0; i < count; i++) {
    const rel = path.join(`d${String(Math.floor(i / perDir)).padStart(3, '0')}`, `f${String(i).padStart(5, '0')}.bin`);
    const size = minSize + Math.floor(rand() * (maxSize - minSize + 1));
    files.push(rel);
    bytes += size;
    jobs.push({ p: path.join(root, rel), data: bytesOf(size) });
  }
  for (let d = 0; d * perDir < count; d++) {
    await fsp.mkdir(path.join(root, `d${String(d).padStart(3, '0')}`), { recursive: true });
  }
  // a few writers at a time: quick, without thousands of open files
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < jobs.length) {
        const j = jobs[next++]!;
        await fsp.writeFile(j.p, j.data);
      }
    }),
  );
  return { files, bytes };
}

// ---------------------------------------------------------------------------
// Our own walk

export interface NodeInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  /** permission bits (mode & 0o7777) */
  mode: number;
  mtimeNs: bigint;
  /** any write, chmod, utimes or rename of the entry changes it */
  ctimeNs: bigint;
  ino: bigint;
  size: bigint;
  /** files only, when hashed */
  sha256?: string;
  /** symlinks only */
  target?: string;
}

/**
 * relative path ('.' for the root) -> what is there; symlinks are never followed.
 * `hash: false` skips file contents: enough for 'exact' comparisons (ctime/inode).
 */
export async function snapshotTree(root: string, opts: { hash?: boolean } = {}): Promise<Map<string, NodeInfo>> {
  const out = new Map<string, NodeInfo>();
  const toHash: Array<[string, NodeInfo]> = [];
  const visit = async (rel: string): Promise<void> => {
    const p = rel === '.' ? root : path.join(root, rel);
    const st = await fsp.lstat(p, { bigint: true });
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    const info: NodeInfo = {
      type,
      mode: Number(st.mode & 0o7777n),
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      ino: st.ino,
      size: st.size,
    };
    if (type === 'file' && opts.hash !== false) toHash.push([p, info]);
    if (type === 'symlink') info.target = await fsp.readlink(p);
    out.set(rel, info);
    if (type === 'dir') {
      const names = (await fsp.readdir(p)).sort();
      for (const n of names) await visit(rel === '.' ? n : path.join(rel, n));
    }
  };
  await visit('.');
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < toHash.length) {
        const [p, info] = toHash[next++]!;
        info.sha256 = await sha256File(p);
      }
    }),
  );
  return out;
}

export async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await fsp.open(p, 'r');
  try {
    for await (const chunk of fh.createReadStream({ highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/**
 * Differences between two snapshots as readable lines ([] when equal).
 * - 'content' (default): what `rsync -a` preserves — type, content, symlink
 *   target, mode (not of symlinks), mtime to the second (as the oracle compares).
 * - 'exact': "nothing was touched": also nanosecond mtimes, ctimes and inode
 *   numbers; contents are compared only where both snapshots hashed them.
 */
export function diffSnapshots(
  want: Map<string, NodeInfo>,
  got: Map<string, NodeInfo>,
  how: 'content' | 'exact' = 'content',
): string[] {
  const out: string[] = [];
  const sec = (ns: bigint) => ns / 1_000_000_000n;
  for (const [rel, w] of want) {
    const g = got.get(rel);
    if (!g) {
      out.push(`missing ${w.type} ${rel}`);
      continue;
    }
    if (w.type !== g.type) {
      out.push(`${rel}: type ${g.type}, want ${w.type}`);
      continue;
    }
    if (w.type === 'file') {
      if (how === 'content' && (w.sha256 === undefined || g.sha256 === undefined)) {
        throw new Error(`diffSnapshots 'content' needs hashed snapshots (${rel})`);
      }
      const hashed = w.sha256 !== undefined && g.sha256 !== undefined;
      if (w.size !== g.size || (hashed && w.sha256 !== g.sha256)) out.push(`${rel}: content differs (size ${g.size}, want ${w.size})`);
    }
    if (w.type === 'symlink' && w.target !== g.target) out.push(`${rel}: symlink -> ${g.target}, want -> ${w.target}`);
    if (w.type !== 'symlink' && w.mode !== g.mode) out.push(`${rel}: mode ${g.mode.toString(8)}, want ${w.mode.toString(8)}`);
    if (how === 'exact' ? w.mtimeNs !== g.mtimeNs : sec(w.mtimeNs) !== sec(g.mtimeNs)) {
      out.push(`${rel}: mtime ${g.mtimeNs}ns, want ${w.mtimeNs}ns`);
    }
    if (how === 'exact' && w.ino !== g.ino) out.push(`${rel}: inode ${g.ino}, was ${w.ino}`);
    if (how === 'exact' && w.ctimeNs !== g.ctimeNs) out.push(`${rel}: ctime ${g.ctimeNs}ns, was ${w.ctimeNs}ns (written, chmod-ed or touched)`);
  }
  for (const [rel, g] of got) if (!want.has(rel)) out.push(`extra ${g.type} ${rel}`);
  return out;
}

/** A `tree`-like listing: 'd2/' for dirs, 'f3s -> f3.txt' for symlinks, the path for files. Root excluded. */
export async function listTree(root: string): Promise<string[]> {
  const snap = await snapshotTree(root);
  return [...snap]
    .filter(([rel]) => rel !== '.')
    .map(([rel, n]) => (n.type === 'dir' ? `${rel}/` : n.type === 'symlink' ? `${rel} -> ${n.target}` : rel))
    .sort();
}

/** Polls `check` every `intervalMs` until it returns true; false after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean> | boolean, opts: { timeoutMs: number; intervalMs?: number }): Promise<boolean> {
  const deadline = performance.now() + opts.timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() >= deadline) return false;
    await delay(opts.intervalMs ?? 20);
  }
}

/** Bytes in regular files under `root` (0 if it does not exist); symlinks are not followed. */
export async function bytesUnder(root: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await fsp.readdir(root, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) total += await bytesUnder(p);
    else if (e.isFile()) total += (await fsp.lstat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** Bytes in gosync temp files (being written, or kept parts) directly in `dir`. */
export async function tempBytesIn(dir: string): Promise<number> {
  let n = 0;
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith('.gosync-tmp-')) n += (await fsp.stat(path.join(dir, name)).catch(() => ({ size: 0 }))).size;
  }
  return n;
}

/** true if `p` exists (without following a final symlink) */
export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}
