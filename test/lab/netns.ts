/**
 * A LAN of real hosts on one machine: one network namespace per host, each joined by a
 * veth pair to a bridge in a "switch" namespace, every link shaped with tc (rate both
 * ways, optional delay). Daemons run inside with `wrap(name)` (ip netns exec) and, via
 * Lab, in their own mount namespace too. See /work/shared/notes/test-hosts.md.
 *
 * Addresses are 10.99.0.(i+1)/24 inside namespaces this lab made; nothing is sent on the
 * machine's real interfaces. Multicast (mDNS) is routed only to each host's own veth.
 * destroy() kills every process left in the namespaces and deletes them; an exit hook
 * does the same if the test process dies first.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface NetLabOptions {
  hosts: number;
  /** per-host link rate in Mbit/s, both directions; undefined = unshaped */
  rateMbit?: number;
  /** per-host rates that replace rateMbit for the hosts named (e.g. { h4: 20 }: one slow host) */
  rateMbitOf?: Record<string, number>;
  /** one-way delay added on each host's uplink, ms (needs netem: see netemAvailable) */
  delayMs?: number;
}

export interface NetHost {
  name: string;
  ns: string;
  ip: string;
}

function run(cmd: string[], check = true): { code: number; out: string } {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8' });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (check && r.status !== 0) throw new Error(`${cmd.join(' ')} failed (${r.status}): ${out}`);
  return { code: r.status ?? -1, out };
}

const liveLabs = new Set<NetLab>();
let hookInstalled = false;

export class NetLab {
  readonly hosts: NetHost[] = [];
  private readonly namespaces: string[] = [];

  private constructor(readonly prefix: string) {}

  /** Whether namespaces can be made here; the reason when not. */
  static available(): { ok: boolean; reason?: string } {
    if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root' };
    if (process.env.GOSYNC_LAB_NO_NETNS === '1') return { ok: false, reason: 'GOSYNC_LAB_NO_NETNS=1' };
    const probe = `gsprobe${randomBytes(3).toString('hex')}`;
    const r = run(['ip', 'netns', 'add', probe], false);
    if (r.code !== 0) return { ok: false, reason: `ip netns add failed: ${r.out.trim()}` };
    run(['ip', 'netns', 'del', probe], false);
    if (run(['tc', '-V'], false).code !== 0) return { ok: false, reason: 'tc (iproute2) is missing' };
    return { ok: true };
  }

  /** Whether this kernel has netem (link delay); this machine's does not. */
  static netemAvailable(): boolean {
    const probe = `gsprobe${randomBytes(3).toString('hex')}`;
    if (run(['ip', 'netns', 'add', probe], false).code !== 0) return false;
    try {
      return run(['ip', 'netns', 'exec', probe, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], false).code === 0;
    } finally {
      run(['ip', 'netns', 'del', probe], false);
    }
  }

  /** A new, empty lab, destroyed by an exit hook if the test process dies first. */
  private static fresh(): NetLab {
    const lab = new NetLab(`g${randomBytes(2).toString('hex')}`);
    liveLabs.add(lab);
    if (!hookInstalled) {
      hookInstalled = true;
      process.on('exit', () => { for (const l of liveLabs) l.destroy(); });
    }
    return lab;
  }

  /** A switch namespace with a bridge br0. */
  private addSwitch(ns: string): void {
    this.addNs(ns);
    run(['ip', '-n', ns, 'link', 'add', 'br0', 'type', 'bridge']);
    run(['ip', '-n', ns, 'link', 'set', 'br0', 'up']);
  }

  static create(opts: NetLabOptions): NetLab {
    const lab = NetLab.fresh();
    try {
      lab.build(opts);
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  private addNs(ns: string): void {
    run(['ip', 'netns', 'add', ns]);
    this.namespaces.push(ns);
    run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }

  private build(opts: NetLabOptions): void {
    const p = this.prefix;
    const sw = `${p}sw`;
    this.addSwitch(sw);
    for (let i = 0; i < opts.hosts; i++) {
      const name = `h${i + 1}`;
      const ns = `${p}${name}`;
      const ip = `10.99.0.${i + 1}`;
      this.addNs(ns);
      const hostEnd = `${p}e${i}`;
      const swEnd = `${p}s${i}`;
      run(['ip', 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', swEnd]);
      run(['ip', 'link', 'set', hostEnd, 'netns', ns]);
      run(['ip', 'link', 'set', swEnd, 'netns', sw]);
      run(['ip', '-n', ns, 'link', 'set', hostEnd, 'name', 'eth0']);
      run(['ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
      run(['ip', '-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
      run(['ip', '-n', sw, 'link', 'set', swEnd, 'master', 'br0']);
      run(['ip', '-n', sw, 'link', 'set', swEnd, 'up']);
      const rate = opts.rateMbitOf?.[name] ?? opts.rateMbit;
      if (rate != null) {
        const tbf = ['tbf', 'rate', `${rate}mbit`, 'burst', '256kb', 'latency', '100ms'];
        // upload: the host's own egress (behind the delay, if any)
        if (opts.delayMs != null && opts.delayMs > 0) {
          run(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'handle', '1:', 'netem', 'delay', `${opts.delayMs}ms`]);
          run(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'parent', '1:', 'handle', '2:', ...tbf]);
        } else {
          run(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', ...tbf]);
        }
        // download: the switch port's egress towards the host
        run(['ip', 'netns', 'exec', sw, 'tc', 'qdisc', 'add', 'dev', swEnd, 'root', ...tbf]);
      } else if (opts.delayMs != null && opts.delayMs > 0) {
        run(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem', 'delay', `${opts.delayMs}ms`]);
      }
      this.hosts.push({ name, ns, ip });
    }
  }

  /**
   * Two subnets with no route between them: hosts a1..aN on 10.99.1.0/24 (bridge A),
   * b1..bM on 10.99.2.0/24 (bridge B), and a host `relay` with one leg in each
   * (10.99.1.254 and 10.99.2.254) that does not forward IP. Only an application-level
   * relay on `relay` can connect the two sides.
   */
  static createTwoSubnets(opts: { a: number; b: number }): NetLab {
    const lab = NetLab.fresh();
    try {
      const p = lab.prefix;
      const sw = { a: `${p}swa`, b: `${p}swb` };
      lab.addSwitch(sw.a);
      lab.addSwitch(sw.b);
      let k = 0;
      const attach = (ns: string, side: 'a' | 'b', ifname: string, ip: string): void => {
        const hostEnd = `${p}e${k}`;
        const swEnd = `${p}s${k}`;
        k++;
        run(['ip', 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', swEnd]);
        run(['ip', 'link', 'set', hostEnd, 'netns', ns]);
        run(['ip', 'link', 'set', swEnd, 'netns', sw[side]]);
        run(['ip', '-n', ns, 'link', 'set', hostEnd, 'name', ifname]);
        run(['ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', ifname]);
        run(['ip', '-n', ns, 'link', 'set', ifname, 'up']);
        run(['ip', '-n', sw[side], 'link', 'set', swEnd, 'master', 'br0']);
        run(['ip', '-n', sw[side], 'link', 'set', swEnd, 'up']);
      };
      const relayNs = `${p}relay`;
      lab.addNs(relayNs);
      run(['ip', 'netns', 'exec', relayNs, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0']);
      attach(relayNs, 'a', 'eth0', '10.99.1.254');
      attach(relayNs, 'b', 'eth1', '10.99.2.254');
      lab.hosts.push({ name: 'relay', ns: relayNs, ip: '10.99.1.254' });
      for (const [side, n] of [['a', opts.a], ['b', opts.b]] as const) {
        for (let i = 0; i < n; i++) {
          const name = `${side}${i + 1}`;
          const ns = `${p}${name}`;
          lab.addNs(ns);
          const ip = `10.99.${side === 'a' ? 1 : 2}.${i + 1}`;
          attach(ns, side, 'eth0', ip);
          lab.hosts.push({ name, ns, ip });
        }
      }
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  host(name: string): NetHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** Command prefix that runs a command inside host `name`. */
  wrap(name: string): string[] {
    return ['ip', 'netns', 'exec', this.host(name).ns];
  }

  /** Listen multiaddr for a daemon in host `name`. */
  listen(name: string, port = 4001): string {
    return `/ip4/${this.host(name).ip}/tcp/${port}`;
  }

  /** Kill whatever still runs in the namespaces, then delete them. Idempotent. */
  destroy(): void {
    for (const ns of this.namespaces.splice(0)) {
      const pids = run(['ip', 'netns', 'pids', ns], false).out.split(/\s+/).filter((x) => /^\d+$/.test(x));
      for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
      run(['ip', 'netns', 'del', ns], false);
    }
    liveLabs.delete(this);
  }
}
