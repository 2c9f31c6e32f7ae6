/**
 * One benchmark "LAN": a NetLab (network namespaces on a bridge, optionally tbf-shaped),
 * a Lab (a gosync daemon per host, each in its own mount namespace), and optionally one
 * sshd per target for the rsync-over-ssh baseline. h1 is always the source.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { CLI_PATH, Lab, fmt, type Daemon, type SyncReport } from '../test/lab/hosts.js';
import { NetLab, type NetHost } from '../test/lab/netns.js';
import { SshFleet, type RsyncRun } from './ssh.js';
import { childrenCpuSeconds, cpuSeconds, sysCpuSeconds, findProcess, flag, onCleanup, progress, runProc } from './util.js';

export interface GosyncRun {
  /** wall time of the CLI call, seconds */
  seconds: number;
  /** report.totals.seconds */
  reportSeconds: number;
  ok: boolean;
  statuses: string[];
  bytes: number;
  /** CPU seconds during the run: source daemon, each target daemon (in -t order), the CLI process */
  cpu: { source: number; targets: number[]; cli: number };
  /** the kernel (system) part of the daemons' CPU seconds */
  sys?: { source: number; targets: number[] };
  /** whether the source's hash cache was emptied before the run */
  coldHashCache: boolean;
  error?: string;
  report?: SyncReport;
}

export class Cluster {
  readonly daemons = new Map<string, Daemon>();

  /** The host name of a daemon's PeerId (the PeerId itself if none has it). */
  hostOf(peer: string): string {
    for (const [name, d] of this.daemons) if (d.peerId === peer) return name;
    return peer;
  }
  /** the node process of each daemon (not the setpriv/ip/unshare/sh wrapper) */
  readonly nodePid = new Map<string, number>();
  ssh?: SshFleet;
  sshSkipReason?: string;
  private sourceId = '';
  private undo: Array<() => void> = [];

  private constructor(readonly name: string, readonly net: NetLab, readonly lab: Lab) {}

  static async create(name: string, hosts: number, rateMbit: number | undefined, rateMbitOf?: Record<string, number>): Promise<Cluster> {
    const net = NetLab.create({ hosts, rateMbit, rateMbitOf });
    const undoNet = onCleanup(`namespaces of ${name}`, () => net.destroy());
    let lab: Lab;
    try {
      lab = await Lab.create(`bench-${name}`);
    } catch (e) {
      net.destroy();
      undoNet();
      throw e;
    }
    const c = new Cluster(name, net, lab);
    c.undo.push(undoNet, onCleanup(`daemons and temp dir of ${name}`, () => lab.cleanup()));
    if (!lab.views) throw new Error(`per-host mount namespaces are unavailable (${lab.viewsReason}): the benchmark needs separate filesystems per host`);
    c.sourceId = await lab.identity('h1');
    return c;
  }

  host(name: string): NetHost {
    return this.net.host(name);
  }

  /** Starts (or restarts) the daemons of `names`; targets trust h1. */
  async startDaemons(names: string[]): Promise<void> {
    await Promise.all(names.map(async (name) => {
      const old = this.daemons.get(name);
      if (old) await old.stop(5000);
      const d = await this.lab.startDaemon({
        name,
        wrap: this.net.wrap(name),
        listen: this.net.listen(name),
        mdns: false,
        trust: name === 'h1' ? [] : [this.sourceId],
        readyTimeoutMs: 60_000,
      });
      this.daemons.set(name, d);
      const isNode = (argv: string[]) => argv.includes(CLI_PATH) && argv.includes('daemon');
      const pid = findProcess(d.pid, isNode);
      if (pid === undefined) {
        flag(`cannot find the node process of daemon ${name} under pid ${d.pid}: CPU/RSS figures for it are the wrapper's`);
        this.nodePid.set(name, d.pid);
      } else {
        this.nodePid.set(name, pid);
        if (pid !== d.pid) progress(`daemon ${name}: wrapper pid ${d.pid}, node process ${pid}`);
      }
    }));
  }

  /** Whether the lab's pid of each daemon was the node process itself (the wrappers exec). */
  pidNotes(): string[] {
    return [...this.daemons].map(([n, d]) => `${n}: lab pid ${d.pid} ${this.nodePid.get(n) === d.pid ? 'is' : 'is NOT'} the node process (${this.nodePid.get(n)})`);
  }

  async startSsh(sshd: string | undefined, targets: string[], skipReason?: string): Promise<void> {
    if (!sshd) {
      this.sshSkipReason = skipReason ?? 'sshd unavailable';
      return;
    }
    try {
      this.ssh = await SshFleet.start(sshd, targets.map((t) => this.host(t)), this.net.wrap('h1'));
    } catch (e) {
      this.sshSkipReason = `sshd could not be started: ${(e as Error).message.slice(0, 400)}`;
      flag(`rsync-over-ssh columns skipped: ${this.sshSkipReason}`);
    }
  }

  /** `gosync sync -t <targets in order> --src common(src) --dst common(dst) --json`, through h1's daemon. */
  async gosync(targets: string[], src: string, dst: string, timeoutMs: number, opts: { coldHashCache: boolean, fanout?: number, knownLaggards?: boolean }): Promise<GosyncRun> {
    const coldHashCache = opts.coldHashCache;
    // the source remembers for an hour whom a relay cut off as too slow (<home>/laggards.json):
    // forgotten before each run unless asked, so runs do not depend on the ones before
    if (opts.knownLaggards !== true) await fsp.rm(path.join(this.daemons.get('h1')!.home, 'laggards.json'), { force: true });
    // the source daemon keeps <home>/hashcache (path, size, mtime, inode -> SHA-256); emptied,
    // the source hashes every file again, as on the first push of new content
    if (coldHashCache) await fsp.rm(path.join(this.daemons.get('h1')!.home, 'hashcache'), { recursive: true, force: true });
    const addrs = targets.map((t) => this.daemons.get(t)!.addr).join(',');
    const cpuOf = () => ({
      source: cpuSeconds(this.nodePid.get('h1')!),
      targets: targets.map((t) => cpuSeconds(this.nodePid.get(t)!)),
      cli: childrenCpuSeconds('self'),
    });
    const sysOf = () => ({ source: sysCpuSeconds(this.nodePid.get('h1')!), targets: targets.map((t) => sysCpuSeconds(this.nodePid.get(t)!)) });
    const c0 = cpuOf();
    const s0 = sysOf();
    const args = ['-t', addrs, '--src', this.lab.common(src), '--dst', this.lab.common(dst), ...(opts.fanout != null ? ['--fanout', String(opts.fanout)] : [])];
    let r;
    try {
      r = await this.lab.syncJson(args, { home: this.daemons.get('h1')!.home, wrap: this.net.wrap('h1'), timeoutMs });
    } catch (e) {
      return { seconds: NaN, reportSeconds: NaN, ok: false, statuses: [], bytes: 0, cpu: { source: NaN, targets: [], cli: NaN }, coldHashCache, error: (e as Error).message.slice(0, 2000) };
    }
    const c1 = cpuOf();
    const s1 = sysOf();
    const sys = { source: s1.source - s0.source, targets: s1.targets.map((x, i) => x - s0.targets[i]!) };
    const cpu = { source: c1.source - c0.source, targets: c1.targets.map((x, i) => x - c0.targets[i]!), cli: c1.cli - c0.cli };
    const ok = r.code === 0 && r.report.ok;
    return {
      seconds: r.ms / 1000,
      reportSeconds: r.report.totals.seconds,
      ok,
      statuses: r.report.targets.map((t) => t.status),
      bytes: r.report.totals.bytes,
      cpu,
      sys,
      coldHashCache,
      error: ok ? undefined : fmt(r).slice(0, 3000),
      report: r.report,
    };
  }

  async rsync(targets: string[], src: string, dst: string, timeoutMs: number): Promise<RsyncRun | { error: string }> {
    if (!this.ssh) return { error: this.sshSkipReason ?? 'no sshd' };
    try {
      return await this.ssh.push(this.lab.hostPath('h1', src), targets.map((t) => ({ host: this.host(t), dir: this.lab.hostPath(t, dst) })), timeoutMs);
    } catch (e) {
      return { error: (e as Error).message.slice(0, 2000) };
    }
  }

  /** Removes `rel` on every host given (untimed housekeeping between runs). */
  async remove(hosts: string[], rel: string): Promise<void> {
    await Promise.all(hosts.map((h) => fsp.rm(this.lab.hostPath(h, rel), { recursive: true, force: true })));
  }

  /** Raw TCP throughput from h1 to `to` (bytes in one connection), the link's ceiling. */
  async tcpProbe(to: string, bytes: number): Promise<{ seconds: number; MBps: number } | { error: string }> {
    const probe = CLI_PATH.replace(/cli\/gosync\.js$/, 'bench/tcp-probe.js');
    const ip = this.host(to).ip;
    const port = '5999';
    const { spawn } = await import('node:child_process');
    const srv = spawn('setpriv', ['--pdeathsig', 'KILL', ...this.net.wrap(to), process.execPath, probe, 'server', ip, port, String(bytes)], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        srv.stdout!.setEncoding('utf8').on('data', (d: string) => { if (d.includes('listening')) resolve(); });
        srv.once('exit', (code) => reject(new Error(`probe server exited ${code}`)));
        setTimeout(() => reject(new Error('probe server not listening after 20 s')), 20_000).unref();
      });
      const r = await runProc([...this.net.wrap('h1'), process.execPath, probe, 'client', ip, port, String(bytes)], { timeoutMs: 300_000 });
      if (r.code !== 0) return { error: `probe client exit ${r.code}: ${r.stderr}` };
      const j = JSON.parse(r.stdout) as { seconds: number };
      return { seconds: j.seconds, MBps: bytes / j.seconds / 1e6 };
    } catch (e) {
      return { error: (e as Error).message };
    } finally {
      srv.kill('SIGKILL');
    }
  }

  async destroy(): Promise<void> {
    await this.ssh?.stop();
    await this.lab.cleanup();
    this.net.destroy();
    for (const u of this.undo) u();
    this.undo = [];
  }
}
