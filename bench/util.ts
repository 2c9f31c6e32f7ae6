/**
 * Small helpers for the benchmark: cleanup on exit/Ctrl-C, statistics, markdown tables,
 * progress on stderr, and /proc readers (CPU time, RSS, finding a daemon's node pid).
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

// ---------------------------------------------------------------------------
// Cleanup: every resource registers an undo step; they run in reverse order on a
// normal end, on an error and on SIGINT/SIGTERM/SIGHUP.

type Undo = { what: string; fn: () => Promise<void> | void };
const undos: Undo[] = [];
let cleaning: Promise<void> | undefined;

export function onCleanup(what: string, fn: () => Promise<void> | void): () => void {
  const u = { what, fn };
  undos.push(u);
  return () => {
    const i = undos.indexOf(u);
    if (i >= 0) undos.splice(i, 1);
  };
}

/** Runs (and forgets) every registered undo step, newest first; never throws. */
export function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    while (undos.length > 0) {
      const u = undos.pop()!;
      try {
        await u.fn();
      } catch (e) {
        process.stderr.write(`bench: cleanup of ${u.what} failed: ${(e as Error).message}\n`);
      }
    }
  })().finally(() => {
    cleaning = undefined;
  });
  return cleaning;
}

let signalled = false;
export function installSignalHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (signalled) {
        process.stderr.write(`bench: second ${sig}, exiting now (namespaces are still deleted by the exit hook)\n`);
        process.exit(130);
      }
      signalled = true;
      process.stderr.write(`\nbench: ${sig}: cleaning up (daemons, sshd, namespaces, temp dirs)...\n`);
      const hard = setTimeout(() => process.exit(130), 30_000);
      hard.unref();
      void runCleanups().then(() => process.exit(130));
    });
  }
}
export const interrupted = (): boolean => signalled;

// ---------------------------------------------------------------------------
// Numbers and tables

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function fix(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function mdTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

const t0 = performance.now();
export function progress(msg: string): void {
  const s = Math.round((performance.now() - t0) / 1000);
  const mm = String(Math.floor(s / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  process.stderr.write(`[bench ${mm}:${ss}] ${msg}\n`);
}

/** Loud, and remembered: the run ends with exit code 1. */
export const problems: string[] = [];
export function flag(msg: string): void {
  problems.push(msg);
  process.stderr.write(`\n!!!!!!!! ${msg}\n\n`);
}

// ---------------------------------------------------------------------------
// Processes

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion (stdin closed), with a timeout (SIGKILL). */
export function runProc(cmd: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const kill = () => child.kill('SIGKILL');
    process.once('exit', kill);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d.length + stdout.length > 1 << 20 ? '' : d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d.length + stderr.length > 1 << 20 ? '' : d));
    const timer = setTimeout(kill, opts.timeoutMs ?? 600_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      process.off('exit', kill);
      reject(new Error(`cannot run ${cmd[0]}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      process.off('exit', kill);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** `sync(1)`: flush dirty pages between timed runs, so one run's writeback does not land in the next. */
export function syncDisks(): void {
  spawnSync('sync', [], { stdio: 'ignore', timeout: 120_000 });
}

// ---------------------------------------------------------------------------
// /proc

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after "(comm)": index 0 is field 3 (state)
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** utime + stime of a live process, seconds (NaN if gone). */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / CLK_TCK : NaN;
}

/** stime of a live process (kernel time: syscalls, page-cache copies, TCP), seconds. */
export function sysCpuSeconds(pid: number): number {
  const f = statFields(pid);
  return f ? Number(f[12]) / CLK_TCK : NaN;
}

/** cutime + cstime: CPU of the reaped children (and their reaped descendants), seconds. */
export function childrenCpuSeconds(pid: number | 'self'): number {
  const f = statFields(pid);
  return f ? (Number(f[13]) + Number(f[14])) / CLK_TCK : NaN;
}

/** A field of /proc/<pid>/status in kB (VmRSS, VmHWM...), NaN if unavailable. */
export function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
  } catch {
    return [];
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
      } catch {
        /* thread gone */
      }
    }
  } catch {
    /* process gone */
  }
  return out;
}

/**
 * The pid of the process (`pid` itself or a descendant) whose command line satisfies
 * `match`, breadth-first. The lab's daemon pid is the wrapper's (setpriv → ip netns exec →
 * unshare → sh), which all exec, so usually `pid` is already the node process.
 */
export function findProcess(pid: number, match: (argv: string[]) => boolean): number | undefined {
  const queue = [pid];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const p = queue.shift()!;
    if (seen.has(p)) continue;
    seen.add(p);
    if (match(cmdline(p))) return p;
    queue.push(...childrenOf(p));
  }
  return undefined;
}

/** Samples VmRSS of some pids every `everyMs`; `stop()` gives the max per pid (kB). */
export function sampleRss(pids: Record<string, number>, everyMs = 100): { stop(): Record<string, number> } {
  const max: Record<string, number> = {};
  const tick = () => {
    for (const [k, pid] of Object.entries(pids)) {
      const v = statusKb(pid, 'VmRSS');
      if (Number.isFinite(v)) max[k] = Math.max(max[k] ?? 0, v);
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return max;
    },
  };
}
