/**
 * rsync over ssh as the baseline: one sshd per target network namespace (own config,
 * own host key, own pid file, all in a temp dir), a generated client key, and
 * `rsync -a --delete -e 'ssh …'` run from the source namespace to all targets in parallel.
 *
 * sshd runs in the target's network namespace but NOT in its mount namespace: rsync
 * destinations are real host paths (lab.hostPath(name, …)).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { makeTempRoot, type TempRoot } from '../test/lab/hosts.js';
import type { NetHost } from '../test/lab/netns.js';
import { childrenCpuSeconds, onCleanup, progress, runProc } from './util.js';

function which(cmd: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin']) {
    if (dir && existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return undefined;
}

/** The absolute path of sshd, installing openssh-server with apt if needed; or why not. */
export function ensureSshd(): { sshd?: string; reason?: string } {
  let sshd = which('sshd');
  if (!sshd) {
    progress('sshd is missing: apt-get install openssh-server (for the rsync-over-ssh baseline)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const up = spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8', env, timeout: 300_000 });
    const inst = up.status === 0
      ? spawnSync('apt-get', ['install', '-y', '-qq', 'openssh-server'], { encoding: 'utf8', env, timeout: 600_000 })
      : up;
    sshd = which('sshd');
    if (!sshd) {
      return { reason: `openssh-server could not be installed (apt-get exit ${inst.status}): ${(inst.stderr ?? inst.error?.message ?? '').trim().slice(-300)}` };
    }
  }
  for (const tool of ['ssh', 'ssh-keygen', 'rsync']) if (!which(tool)) return { reason: `${tool} is missing` };
  // sshd refuses to start without its privilege-separation directory (made by systemd normally)
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755, recursive: true });
  return { sshd };
}

interface Sshd {
  host: NetHost;
  child: ChildProcess;
  pid: number;
  stderr: () => string;
}

export interface RsyncRun {
  seconds: number;
  /** CPU seconds of the rsync+ssh client processes (in the source namespace) */
  clientCpu: number;
  /** CPU seconds of the sshd sessions + rsync servers on the targets */
  serverCpu: number;
}

export class SshFleet {
  private readonly daemons = new Map<string, Sshd>();
  private unregister?: () => void;
  /** the cipher ssh negotiated (from ssh -v), for the report */
  cipher = 'unknown';

  private constructor(private readonly tmp: TempRoot, readonly sshd: string, private readonly srcWrap: string[]) {}

  get key(): string {
    return path.join(this.tmp.path, 'client_key');
  }

  /** The `-e` argument of rsync: the brief's options plus -F /dev/null (ignore ~/.ssh/config) and quiet logs. */
  get sshCommand(): string {
    return `ssh -F /dev/null -i ${this.key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
  }

  /** sshd in each of `targets`; `srcWrap` runs commands in the source namespace. */
  static async start(sshd: string, targets: NetHost[], srcWrap: string[]): Promise<SshFleet> {
    const tmp = await makeTempRoot('gosync-bench-ssh-');
    const fleet = new SshFleet(tmp, sshd, srcWrap);
    fleet.unregister = onCleanup('sshd fleet', () => fleet.stop());
    try {
      await fleet.setUp(targets);
    } catch (e) {
      await fleet.stop();
      throw e;
    }
    return fleet;
  }

  private async setUp(targets: NetHost[]): Promise<void> {
    const fleet = this;
    const tmp = this.tmp;
    const srcWrap = this.srcWrap;
    const kg = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'gosync-bench', '-f', fleet.key], { encoding: 'utf8' });
    if (kg.status !== 0) throw new Error(`ssh-keygen (client key) failed: ${kg.stderr}`);
    await fsp.copyFile(`${fleet.key}.pub`, path.join(tmp.path, 'authorized_keys'));
    await Promise.all(targets.map((h) => fleet.startOne(h)));
    // every sshd must answer a real login before it is used
    await Promise.all(targets.map((h) => fleet.waitLogin(h)));
    const v = await runProc([...srcWrap, ...fleet.sshCommand.replace('LogLevel=ERROR', 'LogLevel=DEBUG').split(' '), `root@${targets[0]!.ip}`, 'true'], { timeoutMs: 30_000 });
    const m = /kex: server->client cipher: (\S+)/.exec(v.stderr);
    if (m) fleet.cipher = m[1]!;
  }

  private async startOne(h: NetHost): Promise<void> {
    const dir = this.tmp.path;
    const hostKey = path.join(dir, `host_${h.name}`);
    const kg = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `bench-${h.name}`, '-f', hostKey], { encoding: 'utf8' });
    if (kg.status !== 0) throw new Error(`ssh-keygen (host key ${h.name}) failed: ${kg.stderr}`);
    const cfg = path.join(dir, `sshd_config_${h.name}`);
    await fsp.writeFile(cfg, [
      'Port 22',
      `ListenAddress ${h.ip}`,
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, `sshd_${h.name}.pid`)}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'UseDNS no',
      'PrintMotd no',
      'PrintLastLog no',
      'MaxStartups 64',
      'LogLevel ERROR',
      '',
    ].join('\n'));
    const cmd = ['setpriv', '--pdeathsig', 'KILL', 'ip', 'netns', 'exec', h.ns, this.sshd, '-D', '-e', '-f', cfg];
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8000)));
    const kill = () => child.kill('SIGKILL');
    process.once('exit', kill);
    child.once('exit', () => process.off('exit', kill));
    this.daemons.set(h.name, { host: h, child, pid: child.pid ?? -1, stderr: () => stderr });
  }

  private async waitLogin(h: NetHost): Promise<void> {
    let last = '';
    for (let i = 0; i < 50; i++) {
      const d = this.daemons.get(h.name)!;
      if (d.child.exitCode !== null) throw new Error(`sshd in ${h.name} exited (${d.child.exitCode}): ${d.stderr()}`);
      const r = await runProc([...this.srcWrap, ...this.sshCommand.split(' '), `root@${h.ip}`, 'true'], { timeoutMs: 20_000 });
      if (r.code === 0) return;
      last = r.stderr.trim();
      await delay(200);
    }
    throw new Error(`cannot log in to sshd in ${h.name} (${h.ip}): ${last}\nsshd: ${this.daemons.get(h.name)!.stderr()}`);
  }

  /**
   * `rsync -a --delete -e 'ssh …' SRC/ root@IP:DST/` from the source namespace to every
   * target at once; resolves when the last one is done. Throws if any fails.
   */
  async push(src: string, dests: Array<{ host: NetHost; dir: string }>, timeoutMs: number): Promise<RsyncRun> {
    const cpu0 = childrenCpuSeconds('self');
    const srv0 = dests.map((d) => childrenCpuSeconds(this.daemons.get(d.host.name)!.pid));
    const started = performance.now();
    const results = await Promise.all(dests.map((d) =>
      runProc([...this.srcWrap, 'rsync', '-a', '--delete', '-e', this.sshCommand, src.replace(/\/+$/, '') + '/', `root@${d.host.ip}:${d.dir.replace(/\/+$/, '')}/`], { timeoutMs })));
    const seconds = (performance.now() - started) / 1000;
    const bad = results.map((r, i) => ({ r, d: dests[i]! })).filter(({ r }) => r.code !== 0);
    if (bad.length > 0) {
      throw new Error(`rsync failed: ${bad.map(({ r, d }) => `${d.host.name}: exit ${r.code} ${r.signal ?? ''} ${r.stderr.trim().slice(-500)}`).join('; ')}`);
    }
    // the sshd masters reap their session children just after the client sees the end
    await delay(300);
    const clientCpu = childrenCpuSeconds('self') - cpu0;
    const serverCpu = dests.reduce((s, d, i) => s + childrenCpuSeconds(this.daemons.get(d.host.name)!.pid) - srv0[i]!, 0);
    return { seconds, clientCpu, serverCpu };
  }

  async stop(): Promise<void> {
    for (const d of this.daemons.values()) {
      if (d.child.exitCode === null && d.child.signalCode === null) {
        const gone = new Promise((r) => d.child.once('exit', r));
        d.child.kill('SIGTERM');
        await Promise.race([gone, delay(2000)]);
        if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
      }
    }
    this.daemons.clear();
    await this.tmp.cleanup();
    this.unregister?.();
  }
}
