// Hostile input: an attacker node speaks the wire protocols directly to real daemons.
// It sends garbage, oversized and truncated frames, messages out of order, manifests
// that try to write outside the destination, relay streams it has no right to, bad
// relay data as a (trusted) relay parent, and streams that never say anything. Each
// case must end with a clear error or a closed stream in bounded time, the daemon must
// stay alive, nothing may appear outside the destination, and a normal sync must still
// work afterwards.
import '../../src/polyfill.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import type { Libp2p, Stream } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import * as varint from 'uint8-varint';
import { z } from 'zod/v3';
import { CONTROL_PROTOCOL, MAX_CONTROL_FRAME, PROTOCOL_VERSION, SCAN_MAX_AGE_MS } from '../../protocols/control/consts.js';
import { toEntry, toRoot, type WireEntry } from '../../protocols/control/messages.js';
import { FramedStream } from '../../protocols/framing/framed-stream.js';
import { readJson, writeJson } from '../../protocols/framing/json.js';
import { ACCEPT_TIMEOUT_MS, RELAY_PROTOCOL } from '../../protocols/relay/consts.js';
import { DATA_HEADER, DATAZ_HEADER, encodeBegin, encodeFileRecordHeader, encodeSkip, END_FRAME, FILES_HEADER } from '../../protocols/relay/frames.js';
import { TASK_PROTOCOL } from '../../protocols/task/index.js';
import { loadOrCreateKey, peerIdOf } from '../../src/identity/identity.js';
import { manifestDigest } from '../../src/manifest/digest.js';
import { createNode } from '../../src/node/create-node.js';
import {
  type Daemon,
  type DaemonOptions,
  diffSnapshots,
  dir,
  exists,
  file,
  fmt,
  Lab,
  type NodeInfo,
  rsyncOracle,
  snapshotTree,
  symlink,
  targetOf,
  writeTree,
} from '../lab/hosts.js';

/** Every case must be over within this (the daemons run with a 5 s stall timeout). */
const BOUND_MS = 35_000;
const STALL_S = 5;
const T0 = 1_700_000_000;
const ROOT = { mode: 0o755, mtime: T0, nsec: 0 };

// ---------------------------------------------------------------------------
// Wire helpers

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const newSession = () => randomBytes(16).toString('hex');
const wdir = (p: string): WireEntry => ({ path: p, type: 'dir', mode: 0o755, mtime: T0, nsec: 0 });
const wfile = (p: string, content: string | Uint8Array): WireEntry => {
  const b = typeof content === 'string' ? Buffer.from(content) : content;
  return { path: p, type: 'file', mode: 0o644, mtime: T0, nsec: 0, size: b.byteLength, hash: sha256(b) };
};
const wlink = (p: string, target: string): WireEntry => ({ path: p, type: 'symlink', mode: 0o777, mtime: T0, nsec: 0, target });
/** The digest the target computes for this manifest (so only the check under test can fail). */
const digestOf = (entries: WireEntry[], root = ROOT) => manifestDigest(toRoot(root), entries.map(toEntry));

const openMsg = (dst: string, extra: Record<string, unknown> = {}) => ({
  type: 'open',
  version: PROTOCOL_VERSION,
  session: newSession(),
  dst,
  delete: false,
  dryRun: false,
  compress: false,
  root: ROOT,
  ...extra,
});

/**
 * openMsg carries the manifest's start for brevity; on the wire (protocol 3 on) they are two
 * messages, `open` and `manifest`, with the source's scan in between (protocol 5: entries follow
 * `manifest` while the source walks its tree, until `manifest-end`).
 */
const splitOpen = (m: ReturnType<typeof openMsg>) => {
  const { root, ...open } = m;
  return [open, { type: 'manifest', root }];
};
async function writeOpen(fs: FramedStream, m: ReturnType<typeof openMsg>): Promise<void> {
  for (const x of splitOpen(m)) await writeJson(fs, x);
}

/** A length-prefixed frame, as bytes. */
function frame(payload: Uint8Array): Uint8Array {
  const p = varint.encode(payload.byteLength);
  const out = new Uint8Array(p.byteLength + payload.byteLength);
  out.set(p);
  out.set(payload, p.byteLength);
  return out;
}

/** Raw bytes on the stream; false if the stream no longer takes them (reset by the daemon). */
function rawSend(stream: Stream, data: Uint8Array): boolean {
  try {
    stream.send(data);
    return true;
  } catch {
    return false;
  }
}

const AnyMsg = z.object({ type: z.string() }).passthrough();
type Msg = z.infer<typeof AnyMsg> & Record<string, any>;

type Outcome =
  | { kind: 'message'; msg: Msg; ms: number }
  | { kind: 'eof'; ms: number }
  | { kind: 'reset'; error: string; ms: number }
  | { kind: 'timeout'; ms: number };

const show = (o: Outcome) =>
  o.kind === 'message' ? `message ${JSON.stringify(o.msg).slice(0, 2000)} after ${o.ms.toFixed(0)} ms`
  : o.kind === 'reset' ? `stream reset (${o.error}) after ${o.ms.toFixed(0)} ms`
  : `${o.kind} after ${o.ms.toFixed(0)} ms`;

/** The next message (heartbeats, credits and the target's tree announcements skipped), or how the stream ended, within `timeoutMs`. */
async function next(fs: FramedStream, timeoutMs = BOUND_MS, skip = ['heartbeat', 'credit', 'tree', 'tree-check']): Promise<Outcome> {
  const started = performance.now();
  const signal = AbortSignal.timeout(timeoutMs);
  for (;;) {
    const ms = () => performance.now() - started;
    try {
      const m = (await readJson(fs, AnyMsg, signal)) as Msg | null;
      if (m == null) return { kind: 'eof', ms: ms() };
      if (skip.includes(m.type)) continue;
      return { kind: 'message', msg: m, ms: ms() };
    } catch (err) {
      if (signal.aborted) return { kind: 'timeout', ms: ms() };
      const e = err as Error;
      return { kind: 'reset', error: `${e.name}: ${e.message}`, ms: ms() };
    }
  }
}

/** After an error or refusal the daemon must end the stream (close its write half or reset). */
async function assertEnds(fs: FramedStream, what: string, timeoutMs = 15_000): Promise<Outcome> {
  for (;;) {
    const o = await next(fs, timeoutMs);
    if (o.kind === 'eof' || o.kind === 'reset') return o;
    assert.ok(o.kind !== 'timeout', `${what}: the daemon did not close the stream within ${timeoutMs} ms`);
  }
}

// ---------------------------------------------------------------------------
// The daemon process, as the kernel sees it

/** The node process of a daemon: `pid` itself or a descendant whose command line is `node …/gosync.js daemon`. */
function daemonNodePid(pid: number): number | undefined {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
  const script = argv.findIndex((a) => a.endsWith('gosync.js')); // node flags may come first
  if (
    script >= 1 &&
    path.basename(argv[0]!).startsWith('node') &&
    argv[script + 1] === 'daemon'
  ) {
    return pid;
  }
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  for (const t of tasks) {
    let children: number[] = [];
    try {
      children = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      continue;
    }
    for (const c of children) {
      const found = daemonNodePid(c);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** VmRSS of a process, in bytes. */
function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------

describe('hostile input', () => {
  let lab: Lab;
  let attacker: Libp2p;
  let attackerId: string;
  let src: Daemon; // a normal source
  let victim: Daemon; // trusts the attacker (and the normal source)
  let stranger: Daemon; // trusts the normal source only
  let good: Daemon; // trusts the normal source only, never attacked
  let fenced: Daemon; // trusts the attacker, but only under --allow-root <mnt>/allowed
  const deaths = new Map<Daemon, string>();
  const startOpts = new Map<Daemon, DaemonOptions>();
  /** names of daemons that crashed and were started again */
  const restarts: string[] = [];
  const nodePids = new Map<Daemon, number>();

  // what the victim host holds outside any destination
  let sentinel: Map<string, NodeInfo>;
  let victimTop: Set<string>;
  /** top-level names the attacker's accepted sessions may create on the victim */
  const victimAllowedTop = new Set<string>();
  const tmpTraps: string[] = [];

  before(async () => {
    lab = await Lab.create('hostile');
    if (!lab.views) return;
    const key = await loadOrCreateKey(lab.home('attacker'));
    attackerId = peerIdOf(key);
    const srcId = await lab.identity('src');
    const stall = ['--stall-timeout', String(STALL_S)];
    [src, victim, stranger, good, fenced] = await Promise.all([
      start({ name: 'src', extraArgs: stall }),
      start({ name: 'victim', trust: [attackerId, srcId], extraArgs: stall }),
      start({ name: 'stranger', trust: [srcId], extraArgs: stall }),
      start({ name: 'good', trust: [srcId], extraArgs: stall }),
      start({ name: 'fenced', trust: [attackerId], extraArgs: [...stall, '--allow-root', lab.common('allowed')] }),
    ]);
    attacker = await createNode({ privateKey: key, listen: [], mdns: false });

    // the normal source's tree
    await writeTree(lab.hostPath('src', 'data'), {
      'a.txt': 'a\n',
      'dir/b.txt': 'b\n',
      'dir/link': symlink('../a.txt'),
      empty: dir(),
      'deep/er/c.bin': file(randomBytes(200_000)),
    });
    // things outside every destination of the victim: must never change
    await writeTree(lab.hostPath('victim', 'sentinel'), {
      'keep.txt': 'keep me\n',
      'target.txt': 'do not overwrite\n',
      'sub/deep.txt': 'deep\n',
      emptydir: dir(),
    });
    // a destination that already holds symlinks pointing at the sentinel
    await writeTree(lab.hostPath('victim', 'dst-reused'), {
      sub: symlink(lab.common('sentinel')),
      'top.txt': symlink(lab.common('sentinel', 'target.txt')),
      'keep.txt': 'keep\n',
    });
    await writeTree(lab.hostPath('fenced', 'outside'), { 'keep.txt': 'outside the allowed root\n' });
    await fsp.mkdir(lab.hostPath('fenced', 'allowed'), { recursive: true });
    sentinel = await snapshotTree(lab.hostPath('victim', 'sentinel'));
    victimTop = new Set(await fsp.readdir(lab.hostDir('victim')));
  }, { timeout: 120_000 });

  after(async () => {
    if (attacker) await Promise.resolve(attacker.stop()).catch(() => undefined);
    for (const p of tmpTraps) await fsp.rm(p, { recursive: true, force: true }).catch(() => {});
    await lab?.cleanup();
  });

  /** Start a daemon and watch it: its exit is recorded, its node process found. */
  async function start(opts: DaemonOptions): Promise<Daemon> {
    const d = await lab.startDaemon(opts);
    startOpts.set(d, opts);
    void d.exited.then(({ code, signal }) => deaths.set(d, `exited with code ${code}, signal ${signal}`));
    const pid = daemonNodePid(d.pid);
    assert.ok(pid !== undefined, `cannot find the node process of daemon ${d.name} below pid ${d.pid}`);
    nodePids.set(d, pid);
    return d;
  }

  /** A daemon that crashed is started again (same home, same PeerId, new port), so later cases still test something. */
  async function revived(d: Daemon): Promise<Daemon> {
    if (!deaths.has(d)) return d;
    restarts.push(d.name);
    return await start(startOpts.get(d)!);
  }

  const skipReason = () => (lab.views ? undefined : `needs a separate filesystem view per host: ${lab.viewsReason}`);

  async function dial(d: Daemon, protocol: string, maxFrameBytes = MAX_CONTROL_FRAME): Promise<{ stream: Stream; fs: FramedStream }> {
    const stream = await attacker.dialProtocol(multiaddr(d.addr), protocol, { signal: AbortSignal.timeout(15_000) });
    return { stream, fs: new FramedStream(stream, { maxFrameBytes }) };
  }
  const drop = (stream: Stream) => stream.abort(new Error('attacker hangs up'));

  function assertAlive(...ds: Daemon[]): void {
    for (const d of ds) {
      assert.ok(!deaths.has(d), `daemon ${d.name} died: ${deaths.get(d)}\n--- stderr\n${d.stderr().slice(-4000)}`);
      const pid = nodePids.get(d)!;
      let status = '';
      try {
        status = readFileSync(`/proc/${pid}/status`, 'utf8');
      } catch {
        assert.fail(`daemon ${d.name} (pid ${pid}) is gone\n--- stderr\n${d.stderr().slice(-4000)}`);
      }
      assert.notEqual(/^State:\s+(\S)/m.exec(status)?.[1], 'Z', `daemon ${d.name} (pid ${pid}) is a zombie`);
    }
  }

  /** Nothing appeared or changed on the victim host outside the destinations it may write. */
  async function assertNothingOutside(what: string): Promise<void> {
    assert.deepEqual(
      diffSnapshots(sentinel, await snapshotTree(lab.hostPath('victim', 'sentinel')), 'exact'),
      [],
      `${what}: the sentinel directory next to the destination changed`,
    );
    const extra = (await fsp.readdir(lab.hostDir('victim'))).filter((n) => !victimTop.has(n) && !victimAllowedTop.has(n));
    assert.deepEqual(extra, [], `${what}: unexpected entries in the victim's host directory`);
    for (const p of tmpTraps) assert.equal(await exists(p), false, `${what}: ${p} was created`);
  }

  /** An `error` message with this code (and a message matching `re`), then the end of the stream. */
  async function expectError(fs: FramedStream, code: string, re: RegExp, what: string, timeoutMs = BOUND_MS): Promise<Msg> {
    const o = await next(fs, timeoutMs);
    assert.equal(o.kind, 'message', `${what}: expected error ${code}, got ${show(o)}`);
    const m = (o as { msg: Msg }).msg;
    assert.equal(m.type, 'error', `${what}: expected error ${code}, got ${show(o)}`);
    assert.equal(m.code, code, `${what}: ${show(o)}`);
    assert.equal(typeof m.message, 'string', `${what}: ${show(o)}`);
    assert.match(m.message, re, `${what}: ${show(o)}`);
    await assertEnds(fs, what);
    return m;
  }

  /** Open, entries, manifest-end, then the error that must follow. */
  async function refusedManifest(
    d: Daemon,
    dstName: string,
    entries: WireEntry[],
    code: string,
    re: RegExp,
    what: string,
    digest = digestOf(entries),
  ): Promise<void> {
    const { stream, fs } = await dial(d, CONTROL_PROTOCOL);
    try {
      await writeOpen(fs, openMsg(lab.common(dstName)));
      if (entries.length > 0) await writeJson(fs, { type: 'entries', entries });
      await writeJson(fs, { type: 'manifest-end', digest });
      await expectError(fs, code, re, what);
    } finally {
      drop(stream);
    }
    assert.equal(await exists(lab.hostPath(d.name, dstName)), false, `${what}: the refused session created its destination`);
  }

  /** A full control session up to `ready`, with the plan `relayOf(needs)`. */
  async function sessionToReady(
    d: Daemon,
    dst: string,
    entries: WireEntry[],
    relayOf: (needs: Msg) => unknown,
    what: string,
  ): Promise<{ stream: Stream; fs: FramedStream; session: string; needs: Msg }> {
    const { stream, fs } = await dial(d, CONTROL_PROTOCOL);
    const open = openMsg(dst);
    await writeOpen(fs, open);
    if (entries.length > 0) await writeJson(fs, { type: 'entries', entries });
    await writeJson(fs, { type: 'manifest-end', digest: digestOf(entries) });
    const n = await next(fs);
    assert.ok(n.kind === 'message' && n.msg.type === 'needs', `${what}: expected needs, got ${show(n)}`);
    await writeJson(fs, { type: 'plan', relay: relayOf(n.msg) });
    const r = await next(fs);
    assert.ok(r.kind === 'message' && r.msg.type === 'ready', `${what}: expected ready, got ${show(r)}`);
    return { stream, fs, session: open.session, needs: n.msg };
  }

  /** Whether the daemon died, and the tail of its stderr: for assertion messages. */
  async function postmortem(d: Daemon): Promise<string> {
    await new Promise((r) => setTimeout(r, 200)); // let an exit be noticed
    return deaths.has(d) ? `\n!!! daemon ${d.name} DIED: ${deaths.get(d)}\n--- the end of its stderr\n${d.stderr().slice(-1500)}` : '';
  }

  async function expectResult(fs: FramedStream, what: string, d: Daemon = victim): Promise<Msg> {
    const o = await next(fs);
    if (!(o.kind === 'message' && o.msg.type === 'result')) {
      assert.fail(`${what}: expected result, got ${show(o)}${await postmortem(d)}`);
    }
    return o.msg;
  }

  async function relayHello(d: Daemon, session: string, classId: number): Promise<{ stream: Stream; fs: FramedStream; answer: Outcome }> {
    const { stream, fs } = await dial(d, RELAY_PROTOCOL, 1 * MiB);
    await writeJson(fs, { type: 'hello', session, classId });
    return { stream, fs, answer: await next(fs, 20_000) };
  }

  async function expectRefuse(d: Daemon, session: string, classId: number, re: RegExp, what: string): Promise<void> {
    const { stream, fs, answer } = await relayHello(d, session, classId);
    try {
      assert.ok(answer.kind === 'message' && answer.msg.type === 'refuse', `${what}: expected refuse, got ${show(answer)}`);
      assert.match(String(answer.msg.error), re, `${what}: ${show(answer)}`);
      await assertEnds(fs, what);
    } finally {
      drop(stream);
    }
  }

  async function tempFilesUnder(root: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (p: string): Promise<void> => {
      for (const e of await fsp.readdir(p, { withFileTypes: true }).catch(() => [])) {
        if (e.name.startsWith('.gosync-tmp-')) out.push(path.join(p, e.name));
        if (e.isDirectory()) await walk(path.join(p, e.name));
      }
    };
    await walk(root);
    return out;
  }

  // -------------------------------------------------------------------------

  test('1. garbage bytes on control: error or closed stream, daemon alive', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    // 64 KiB of random bytes, the write half left open
    {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        rawSend(stream, randomBytes(64 * 1024));
        const o = await next(fs);
        t.diagnostic(`random garbage -> ${show(o)}`);
        assert.notEqual(o.kind, 'timeout', `no reaction to 64 KiB of garbage within ${BOUND_MS} ms`);
        if (o.kind === 'message') {
          assert.equal(o.msg.type, 'error', show(o));
          assert.ok(typeof o.msg.message === 'string' && o.msg.message.length > 0, show(o));
          await assertEnds(fs, 'random garbage');
        }
      } finally {
        drop(stream);
      }
    }
    // a well-formed frame that holds no JSON, and one that is not UTF-8
    for (const [what, payload, re] of [
      ['random frame', randomBytes(100), /JSON|UTF-8/],
      ['invalid UTF-8', Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d), /JSON|UTF-8/],
      ['not JSON', Buffer.from('{"type":"open",'), /JSON/],
      ['JSON that is not an object', Buffer.from('[1,2,3]'), /unexpected|expected/i],
    ] as const) {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        rawSend(stream, frame(payload));
        await expectError(fs, 'failed', re, what);
      } finally {
        drop(stream);
      }
    }
    assertAlive(victim);
    await assertNothingOutside('garbage');
  });

  test('2. a length prefix over the limit aborts the stream at once; memory stays bounded', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const pid = nodePids.get(victim)!;
    const rssBefore = rssBytes(pid);
    const gib = varint.encode(1024 * MiB);
    // control: announce 1 GiB, then keep sending
    {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        rawSend(stream, gib);
        for (let i = 0; i < 8; i++) if (!rawSend(stream, randomBytes(MiB))) break;
        const o = await next(fs);
        t.diagnostic(`control, 1 GiB prefix -> ${show(o)}`);
        const aborted = o.kind === 'reset' || (o.kind === 'message' && o.msg.type === 'error' && /exceed|limit|large/i.test(o.msg.message));
        assert.ok(aborted, `expected the stream to be aborted for FrameTooLarge, got ${show(o)}`);
        // a daemon that only gave up at its stall timeout (5 s) would be too late
        assert.ok(o.ms < STALL_S * 1000 - 500, `aborted only after ${o.ms.toFixed(0)} ms: ${show(o)}`);
        if (o.kind === 'message') await assertEnds(fs, 'control, 1 GiB prefix');
      } finally {
        drop(stream);
      }
    }
    // a prefix that never ends (10 bytes with the continuation bit) is malformed
    {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        rawSend(stream, new Uint8Array(12).fill(0xff));
        const o = await next(fs);
        t.diagnostic(`control, endless varint -> ${show(o)}`);
        assert.ok(o.kind === 'reset' || (o.kind === 'message' && o.msg.type === 'error'), show(o));
        assert.ok(o.ms < STALL_S * 1000 - 500, `reacted only after ${o.ms.toFixed(0)} ms: ${show(o)}`);
        if (o.kind === 'message') await assertEnds(fs, 'endless varint');
      } finally {
        drop(stream);
      }
    }
    // relay, before any hello
    {
      const { stream, fs } = await dial(victim, RELAY_PROTOCOL, MiB);
      try {
        rawSend(stream, gib);
        rawSend(stream, randomBytes(MiB));
        const o = await next(fs);
        t.diagnostic(`relay, 1 GiB prefix -> ${show(o)}`);
        assert.ok(o.kind === 'reset' || o.kind === 'eof', `expected the relay stream to be aborted, got ${show(o)}`);
        assert.ok(o.ms < STALL_S * 1000 - 500, `aborted only after ${o.ms.toFixed(0)} ms`);
      } finally {
        drop(stream);
      }
    }
    const rssAfter = rssBytes(pid);
    t.diagnostic(`victim VmRSS ${(rssBefore / MiB).toFixed(1)} MiB -> ${(rssAfter / MiB).toFixed(1)} MiB`);
    assert.ok(rssAfter - rssBefore < 64 * MiB, `VmRSS grew by ${((rssAfter - rssBefore) / MiB).toFixed(1)} MiB`);
    assertAlive(victim);
    await assertNothingOutside('oversized frames');
  });

  test('3. a truncated frame, then end of stream: error', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const open = Buffer.from(JSON.stringify(openMsg(lab.common('dst-trunc'))));
    for (const [what, bytes] of [
      ['half an open frame', frame(open).subarray(0, 2 + Math.floor(open.byteLength / 2))],
      ['a length prefix only', varint.encode(100)],
      ['half a length prefix', Uint8Array.of(0x80)],
    ] as const) {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        rawSend(stream, bytes);
        await stream.close();
        const o = await next(fs);
        t.diagnostic(`${what} -> ${show(o)}`);
        assert.ok(o.kind !== 'timeout', `${what}: no reaction`);
        if (o.kind === 'message') {
          assert.equal(o.msg.type, 'error', show(o));
          assert.equal(o.msg.code, 'failed', show(o));
          assert.match(o.msg.message, /end|frame|closed/i, show(o));
          assert.ok(o.ms < STALL_S * 1000 - 500, `${what}: error only after ${o.ms.toFixed(0)} ms (stall timeout?)`);
          await assertEnds(fs, what);
        }
      } finally {
        drop(stream);
      }
    }
    // after a complete open, the stream ends before the announced entries
    {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        await writeOpen(fs, openMsg(lab.common('dst-trunc')));
        await writeJson(fs, { type: 'entries', entries: [wdir('a')] });
        await stream.close();
        await expectError(fs, 'failed', /ended|end of stream|before/i, 'end of stream inside the manifest');
      } finally {
        drop(stream);
      }
    }
    assert.equal(await exists(lab.hostPath('victim', 'dst-trunc')), false, 'a truncated session created its destination');
    assertAlive(victim);
    await assertNothingOutside('truncated frames');
  });

  test('4. messages out of order and bad opens: error with a code and a message', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const dst = (n: string) => lab.common(`dst-order-${n}`);
    const entries = [wdir('a'), wfile('a/f.txt', 'f\n')];
    const cases: Array<{ what: string; msgs: unknown[]; code: string; re: RegExp; dstName?: string }> = [
      { what: 'entries before open', msgs: [{ type: 'entries', entries }], code: 'failed', re: /unexpected|type|expected/i },
      { what: 'manifest-end before open', msgs: [{ type: 'manifest-end', digest: digestOf([]) }], code: 'failed', re: /unexpected|type|expected/i },
      { what: 'plan before open', msgs: [{ type: 'plan', relay: null }], code: 'failed', re: /unexpected|type|expected/i },
      { what: 'unknown message type', msgs: [{ type: 'hello', session: newSession(), classId: 0 }], code: 'failed', re: /unexpected|type|expected/i },
      {
        what: 'plan before manifest-end',
        msgs: [...splitOpen(openMsg(dst('1'))), { type: 'entries', entries }, { type: 'plan', relay: null }],
        code: 'failed',
        re: /unexpected|type|expected/i,
        dstName: 'dst-order-1',
      },
      {
        what: 'manifest-known inside the manifest',
        msgs: [...splitOpen(openMsg(dst('2'))), { type: 'entries', entries }, { type: 'manifest-known', digest: digestOf(entries) }],
        code: 'failed',
        re: /unexpected|type|expected/i,
        dstName: 'dst-order-2',
      },
      {
        what: 'a second open instead of entries',
        msgs: [...splitOpen(openMsg(dst('3'))), openMsg(dst('3'))],
        code: 'failed',
        re: /unexpected|type|expected/i,
        dstName: 'dst-order-3',
      },
      {
        // each batch is checked as it comes: order holds across batches too
        what: 'entries out of order across two batches',
        msgs: [...splitOpen(openMsg(dst('4'))), { type: 'entries', entries: [wdir('b')] }, { type: 'entries', entries: [wdir('a')] }],
        code: 'bad-manifest',
        re: /out of order/,
        dstName: 'dst-order-4',
      },
      { what: 'version 1', msgs: [...splitOpen(openMsg(dst('5'), { version: 1 }))], code: 'version', re: /version 1/, dstName: 'dst-order-5' },
      { what: 'relative destination', msgs: [...splitOpen(openMsg('relative/dst'))], code: 'bad-destination', re: /absolute/ },
      { what: 'NUL in destination', msgs: [...splitOpen(openMsg(`${dst('6')}\0x`))], code: 'bad-destination', re: /NUL/, dstName: 'dst-order-6' },
      {
        what: 'a batch over the 100,000 entries of one message',
        msgs: [...splitOpen(openMsg(dst('7'))), { type: 'entries', entries: Array.from({ length: 100_001 }, (_, i) => wdir(`d${String(i).padStart(6, '0')}`)) }],
        code: 'failed',
        re: /entries|unexpected/,
        dstName: 'dst-order-7',
      },
      { what: 'session id that is not 32 hex', msgs: [...splitOpen(openMsg(dst('9'), { session: '../../etc' }))], code: 'failed', re: /session|unexpected/, dstName: 'dst-order-9' },
      {
        what: 'manifest-known for a tree the target did not announce',
        msgs: [splitOpen(openMsg(dst('11')))[0], { type: 'manifest-known', digest: 'ab'.repeat(32) }],
        code: 'bad-manifest',
        re: /did not announce/,
        dstName: 'dst-order-11',
      },
      {
        what: 'entries with a bad field type',
        msgs: [...splitOpen(openMsg(dst('10'))), { type: 'entries', entries: [{ ...wdir('a'), mode: 'rwx' }] }],
        code: 'failed',
        re: /mode|unexpected/,
        dstName: 'dst-order-10',
      },
    ];
    for (const c of cases) {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        for (const m of c.msgs) await writeJson(fs, m);
        const m = await expectError(fs, c.code, c.re, c.what);
        t.diagnostic(`${c.what} -> ${m.code}: ${m.message}`);
      } finally {
        drop(stream);
      }
      if (c.dstName) assert.equal(await exists(lab.hostPath('victim', c.dstName)), false, `${c.what}: destination created`);
    }
    assertAlive(victim);
    await assertNothingOutside('out of order');
  });

  test('5. manifests that try to leave the destination are refused; nothing is written', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const tmpAbs = `/tmp/gosync-hostile-abs-${randomBytes(6).toString('hex')}`;
    const tmpName = `gosync-hostile-link-${randomBytes(6).toString('hex')}`;
    tmpTraps.push(tmpAbs, path.join('/tmp', tmpName));
    const bad = 'bad-manifest';
    const cases: Array<{ what: string; entries: WireEntry[]; re: RegExp }> = [
      { what: '../escape', entries: [wfile('../escape.txt', 'x\n')], re: /'\.\.' segment/ },
      { what: 'dir/../../escape', entries: [wdir('d'), wfile('d/../../escape.txt', 'x\n')], re: /'\.\.' segment/ },
      { what: 'a bare ..', entries: [wdir('..')], re: /'\.\.' segment/ },
      { what: '/abs/path into the sentinel', entries: [wfile(lab.common('sentinel', 'abs.txt'), 'x\n')], re: /absolute/ },
      { what: '/tmp absolute dir', entries: [wdir(tmpAbs)], re: /absolute/ },
      { what: 'a//b', entries: [wdir('a'), wfile('a//b', 'x\n')], re: /empty segment/ },
      { what: 'a/./b', entries: [wdir('a'), wfile('a/./b', 'x\n')], re: /'\.' segment/ },
      { what: 'trailing slash', entries: [wdir('a/')], re: /empty segment/ },
      { what: 'NUL in a path', entries: [wfile('a\0/../../escape.txt', 'x\n')], re: /NUL/ },
      { what: 'a segment over 255 bytes', entries: [wfile('x'.repeat(256), 'x\n')], re: /longer than 255/ },
      { what: 'duplicate file', entries: [wfile('a', 'x\n'), wfile('a', 'y\n')], re: /out of order or duplicated/ },
      { what: 'duplicate dir then file', entries: [wdir('a'), wfile('a', 'y\n')], re: /out of order or duplicated/ },
      { what: 'out of order', entries: [wfile('b', 'x\n'), wfile('a', 'y\n')], re: /out of order or duplicated/ },
      {
        what: 'entry below a symlink entry (-> sentinel)',
        entries: [wlink('link', lab.common('sentinel')), wfile('link/x.txt', 'pwned\n')],
        re: /parent of "link\/x\.txt" is not a directory/,
      },
      {
        what: 'entry below a symlink entry (-> /tmp)',
        entries: [wlink('link', '/tmp'), wdir(`link/${tmpName}`)],
        re: /is not a directory of the manifest/,
      },
      { what: 'entry below a file entry', entries: [wfile('f', 'x\n'), wfile('f/x', 'y\n')], re: /is not a directory of the manifest/ },
      { what: 'entry without its parent', entries: [wfile('nodir/x', 'y\n')], re: /is not a directory of the manifest/ },
      { what: 'NUL in a symlink target', entries: [wlink('l', 'a\0b')], re: /bad symlink target/ },
      { what: 'empty symlink target', entries: [wlink('l', '')], re: /bad symlink target/ },
      { what: 'symlink without target', entries: [{ path: 'l', type: 'symlink', mode: 0o777, mtime: T0, nsec: 0 }], re: /bad symlink target/ },
      { what: 'file without size', entries: [{ path: 'f', type: 'file', mode: 0o644, mtime: T0, nsec: 0, hash: sha256('') }], re: /bad size/ },
      { what: 'file with a bad hash', entries: [{ ...wfile('f', 'x\n'), hash: 'zz' }], re: /bad hash/ },
      { what: 'mode out of range', entries: [{ ...wdir('a'), mode: 0o17777 }], re: /bad mode/ },
      // two lone surrogates are one name on disk (U+FFFD): a directory checked as one, replaced by a
      // symlink to the sentinel as the other, and a file written through it
      {
        what: 'lone surrogates: a dir and a symlink that are one name on disk',
        entries: [wdir('a\ud800'), wfile('a\ud800/target.txt', 'pwned\n'), wlink('a\ud801', lab.common('sentinel'))],
        re: /not valid Unicode/,
      },
      { what: 'a lone surrogate in a symlink target', entries: [wlink('l', 'x\udc00')], re: /bad symlink target/ },
      { what: 'nsec out of range', entries: [{ ...wdir('a'), nsec: 1_000_000_000 }], re: /bad mtime/ },
    ];
    for (const [i, c] of cases.entries()) {
      await refusedManifest(victim, `m-${i}`, c.entries, bad, c.re, c.what);
      t.diagnostic(`${c.what}: refused`);
      await assertNothingOutside(c.what);
    }
    // digests
    const fine = [wdir('a'), wfile('a/x.txt', 'x\n'), wlink('l', 'a/x.txt')];
    await refusedManifest(victim, 'm-digest-1', fine, 'bad-digest', /digest mismatch/, 'a wrong digest', '0'.repeat(64));
    await refusedManifest(victim, 'm-digest-2', fine, 'bad-digest', /digest mismatch/, 'the digest of another manifest', digestOf(fine.slice(0, 2)));
    await refusedManifest(victim, 'm-digest-3', fine, 'bad-digest', /digest mismatch/, 'the digest with another root', digestOf(fine, { ...ROOT, mode: 0o777 }));
    assertAlive(victim);
    await assertNothingOutside('bad manifests');
    for (const p of tmpTraps) assert.equal(await exists(p), false, `${p} was created`);
  });

  test('5b. --allow-root: lexical escapes are refused', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const outside = await snapshotTree(lab.hostPath('fenced', 'outside'));
    for (const [what, dst] of [
      ['.. out of the allowed root', `${lab.common('allowed')}/../outside/x`],
      ['a sibling sharing the prefix', `${lab.common('allowed')}-evil/x`],
      ['the parent of the allowed root', lab.common()],
    ] as const) {
      const { stream, fs } = await dial(fenced, CONTROL_PROTOCOL);
      try {
        await writeOpen(fs, openMsg(dst));
        await writeJson(fs, { type: 'entries', entries: [wdir('d')] });
        await writeJson(fs, { type: 'manifest-end', digest: digestOf([wdir('d')]) });
        const m = await expectError(fs, 'destination-not-allowed', /outside the allowed roots/, what);
        t.diagnostic(`${what}: ${m.message}`);
      } finally {
        drop(stream);
      }
    }
    assert.deepEqual(diffSnapshots(outside, await snapshotTree(lab.hostPath('fenced', 'outside')), 'exact'), []);
    assert.equal(await exists(lab.hostPath('fenced', 'allowed-evil')), false);
    assertAlive(fenced);
  });

  test('5c. --allow-root: a trusted source cannot escape through a symlink it planted', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const outside = await snapshotTree(lab.hostPath('fenced', 'outside'));
    // session 1 (legitimate on its own): a symlink inside the allowed root pointing outside it
    {
      const { stream, fs } = await sessionToReady(fenced, lab.common('allowed', 'plant'), [wlink('out', lab.common('outside'))], () => null, 'plant');
      const r = await expectResult(fs, 'plant');
      assert.equal(r.status, 'ok', JSON.stringify(r));
      drop(stream);
    }
    assert.equal((await fsp.lstat(lab.hostPath('fenced', 'allowed', 'plant', 'out'))).isSymbolicLink(), true);
    // sessions 2 and 3: destinations that lie lexically inside the allowed root but resolve outside it
    const problems: string[] = [];
    for (const [what, dst, name] of [
      ['destination below the planted symlink', lab.common('allowed', 'plant', 'out', 'pwned'), 'pwned'],
      ['the planted symlink as destination', lab.common('allowed', 'plant', 'out'), 'd2'],
    ] as const) {
      const entries = name === 'pwned' ? [wdir('d')] : [wdir('d2')];
      const { stream, fs } = await dial(fenced, CONTROL_PROTOCOL);
      let outcome: string;
      try {
        await writeOpen(fs, openMsg(dst));
        await writeJson(fs, { type: 'entries', entries });
        await writeJson(fs, { type: 'manifest-end', digest: digestOf(entries) });
        const o = await next(fs);
        outcome = show(o);
        if (o.kind === 'message' && o.msg.type === 'needs') {
          await writeJson(fs, { type: 'plan', relay: null });
          const r = await next(fs);
          const res = r.kind === 'message' && r.msg.type === 'ready' ? await next(fs) : r;
          outcome += `; then ${show(r)}; then ${show(res)}`;
        } else {
          assert.ok(o.kind !== 'timeout', `${what}: no answer`);
        }
      } finally {
        drop(stream);
      }
      t.diagnostic(`${what} (${dst}) -> ${outcome}`);
      if (await exists(lab.hostPath('fenced', 'outside', name))) {
        problems.push(`${what}: dst ${dst} was accepted and ${lab.common('outside', name)} (outside --allow-root ${lab.common('allowed')}) was created; daemon said: ${outcome}`);
      }
    }
    const changed = diffSnapshots(outside, await snapshotTree(lab.hostPath('fenced', 'outside')), 'exact');
    assertAlive(fenced);
    assert.deepEqual(problems, [], `writes escaped the allowed root:\n${problems.join('\n')}\nchanges outside: ${changed.join(', ')}`);
    assert.deepEqual(changed, [], 'the directory outside the allowed root changed');
  });

  test('5d. --allow-root: two spellings of one directory are one lock (no escape through a planted alias)', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const outside = await snapshotTree(lab.hostPath('fenced', 'outside'));
    // plant allowed/q/alias -> allowed (legitimate on its own: a link inside the root, to the root)
    {
      const { stream, fs } = await sessionToReady(fenced, lab.common('allowed', 'q'), [wlink('alias', lab.common('allowed'))], () => null, 'plant alias');
      const r = await expectResult(fs, 'plant alias');
      assert.equal(r.status, 'ok', JSON.stringify(r));
      drop(stream);
    }
    // session A holds allowed/x/y (not there yet) and waits for its manifest
    const a = await dial(fenced, CONTROL_PROTOCOL);
    try {
      const openA = openMsg(lab.common('allowed', 'x', 'y'));
      await writeJson(a.fs, splitOpen(openA)[0]);
      await new Promise((r) => setTimeout(r, 300));
      // session B names allowed/q/alias: the same directory as allowed, which holds A's destination.
      // Accepted, it could make allowed/x/y a symlink to `outside`, and A would then write there.
      const entries = [wdir('x'), wlink('x/y', lab.common('outside'))];
      const b = await dial(fenced, CONTROL_PROTOCOL);
      try {
        await writeOpen(b.fs, openMsg(lab.common('allowed', 'q', 'alias')));
        await writeJson(b.fs, { type: 'entries', entries });
        await writeJson(b.fs, { type: 'manifest-end', digest: digestOf(entries) });
        const m = await expectError(b.fs, 'busy', /in use by session/, 'the alias of a locked destination\'s parent');
        t.diagnostic(`alias: ${m.message}`);
      } finally {
        drop(b.stream);
      }
    } finally {
      drop(a.stream);
    }
    assert.equal(await exists(lab.hostPath('fenced', 'allowed', 'x', 'y')), false, 'allowed/x/y was created');
    assert.deepEqual(diffSnapshots(outside, await snapshotTree(lab.hostPath('fenced', 'outside')), 'exact'), []);
    assertAlive(fenced);
  });

  test('6. an untrusted attacker is refused with `untrusted` before anything is read', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    {
      const { stream, fs } = await dial(stranger, CONTROL_PROTOCOL);
      try {
        // a complete, valid manifest right away: none of it may be acted on
        const entries = [wdir('a'), wfile('a/x.txt', 'x\n')];
        await writeOpen(fs, openMsg(lab.common('dst-untrusted')));
        await writeJson(fs, { type: 'entries', entries });
        await writeJson(fs, { type: 'manifest-end', digest: digestOf(entries) });
        const m = await expectError(fs, 'untrusted', new RegExp(`${attackerId}.*not trusted`), 'untrusted control', 5_000);
        t.diagnostic(`control: ${m.message}`);
      } finally {
        drop(stream);
      }
    }
    {
      const { stream, fs } = await dial(stranger, CONTROL_PROTOCOL);
      try {
        // says nothing at all: the refusal must not wait for the stall timeout
        const o = await next(fs, 4_000);
        assert.ok(o.kind === 'message' && o.msg.type === 'error' && o.msg.code === 'untrusted', `silent untrusted control: ${show(o)}`);
      } finally {
        drop(stream);
      }
    }
    // a flood instead of a greeting: refused, then cut as soon as more than 64 KiB waits unread,
    // not read on (up to 64 MiB per stream) for the 5 s a refused stream stays open; relay streams
    // alike before `hello`. What the muxer's window lets through before the cut is what was taken.
    for (const protocol of [CONTROL_PROTOCOL, TASK_PROTOCOL, RELAY_PROTOCOL]) {
      const { stream, fs } = await dial(stranger, protocol);
      try {
        const started = performance.now();
        let written = 0;
        try {
          for (let i = 0; i < 32; i++) {
            await fs.writeBytes([randomBytes(MiB)], AbortSignal.timeout(10_000));
            written += MiB;
          }
        } catch {}
        const end = await assertEnds(fs, `${protocol} flooded by an untrusted peer`, 10_000);
        t.diagnostic(`${protocol}: ${written / MiB} of 32 MiB from an untrusted peer taken -> ${show(end)}, ${(performance.now() - started).toFixed(0)} ms`);
        assert.ok(written <= 16 * MiB, `${protocol}: the daemon read ${written / MiB} MiB from an untrusted peer`);
      } finally {
        drop(stream);
      }
    }
    {
      const { stream, fs } = await dial(stranger, TASK_PROTOCOL);
      try {
        await writeJson(fs, { type: 'task', task: { src: '/', dst: '/tmp/x', targets: [attackerId], delete: true, compress: false, dryRun: false } });
        const m = await expectError(fs, 'untrusted', /not trusted/, 'untrusted task', 5_000);
        t.diagnostic(`task: ${m.message}`);
      } finally {
        drop(stream);
      }
    }
    assert.equal(await exists(lab.hostPath('stranger', 'dst-untrusted')), false, 'the untrusted manifest created its destination');
    assertAlive(stranger);
  });

  test('6b. a trusted peer\'s task may not read the daemon\'s home, nor outside --allow-root, nor what a session writes; no session writes in or over the home', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    // a link to the victim's home, inside a directory it may otherwise read
    await fsp.symlink(lab.home('victim'), lab.hostPath('victim', 'homelink'));
    victimAllowedTop.add('homelink');
    /** The task's first answer: an `error`, or (accepted) events until the report. */
    const task = async (d: Daemon, src: string): Promise<Msg> => {
      const { stream, fs } = await dial(d, TASK_PROTOCOL);
      try {
        await writeJson(fs, { type: 'task', task: { src, dst: '/tmp/never', targets: [attackerId], delete: false, compress: false, dryRun: true } });
        for (;;) {
          const o = await next(fs);
          assert.ok(o.kind === 'message', `task ${src}: ${show(o)}`);
          if (o.msg.type !== 'event') return o.msg;
        }
      } finally {
        drop(stream);
      }
    };
    for (const [what, d, src, re] of [
      ['the home itself', victim, lab.home('victim'), /daemon's home/],
      ['a directory holding the home', victim, path.dirname(lab.home('victim')), /daemon's home/],
      ['a symlink to the home', victim, lab.common('homelink'), /daemon's home/],
      ['outside --allow-root', fenced, lab.common('outside'), /outside this daemon's allowed roots/],
    ] as const) {
      const m = await task(d, src);
      assert.equal(m.type, 'error', `${what}: ${JSON.stringify(m)}`);
      assert.equal(m.code, 'task', `${what}: ${JSON.stringify(m)}`);
      assert.match(String(m.message), re, what);
      t.diagnostic(`${what}: ${m.message}`);
    }
    // under the allowed root the task runs (its one target, the attacker, is no daemon: it fails)
    const ok = await task(fenced, lab.common('allowed'));
    assert.equal(ok.type, 'report', JSON.stringify(ok));
    // a source that a session is writing now (it could swap a directory for a link to the home
    // after the check): refused; a task's source is held like a destination while it runs
    const held = await dial(victim, CONTROL_PROTOCOL);
    try {
      await writeJson(held.fs, splitOpen(openMsg(lab.common('held')))[0]);
      victimAllowedTop.add('held');
      await new Promise((r) => setTimeout(r, 300));
      const m = await task(victim, lab.common('held', 'sub'));
      assert.equal(m.type, 'error', JSON.stringify(m));
      assert.match(String(m.message), /being written by a session now/, JSON.stringify(m));
      t.diagnostic(`a source being written: ${m.message}`);
    } finally {
      drop(held.stream);
    }
    // nor may a session write in the daemon's home, or over it
    for (const [what, dst] of [['in the home', path.join(lab.home('victim'), 'x')], ['over the home', path.dirname(lab.home('victim'))]] as const) {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        await writeOpen(fs, openMsg(dst));
        await writeJson(fs, { type: 'manifest-end', digest: digestOf([]) });
        const m = await expectError(fs, 'destination-not-allowed', /this daemon's home/, `a destination ${what}`);
        t.diagnostic(`a destination ${what}: ${m.message}`);
      } finally {
        drop(stream);
      }
    }
    assertAlive(victim, fenced);
  });

  test('7. relay streams: unknown session, wrong parent, wrong class, second stream → refuse', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    await expectRefuse(victim, newSession(), 0, /unknown session/, 'unknown session (victim)');
    await expectRefuse(stranger, newSession(), 0, /unknown session/, 'unknown session (stranger)');

    // a real session whose plan names another peer (the normal source) as relay parent
    victimAllowedTop.add('dst-wrong-parent');
    const entries = [wfile('f.txt', 'hello\n')];
    const s = await sessionToReady(
      victim,
      lab.common('dst-wrong-parent'),
      entries,
      () => ({ classId: 0, parent: src.peerId, children: [], frameBytes: 65536 }),
      'wrong parent',
    );
    try {
      await expectRefuse(victim, s.session, 0, new RegExp(`relay stream from ${attackerId}, but the source named ${src.peerId} as parent`), 'not the named parent');
      // the session gives up on its parent by itself after the stall timeout
      const r = await expectResult(s.fs, 'wrong parent');
      t.diagnostic(`wrong-parent session result: ${JSON.stringify(r)}`);
      assert.equal(r.status, 'failed', JSON.stringify(r));
      assert.match(String(r.error), /did not connect/, JSON.stringify(r));
    } finally {
      drop(s.stream);
    }
    assert.equal(await exists(lab.hostPath('victim', 'dst-wrong-parent', 'f.txt')), false);
    // once the session is over, its id is unknown
    await expectRefuse(victim, s.session, 0, /unknown session/, 'finished session');
    assertAlive(victim);
    await assertNothingOutside('relay refusals');
  });

  test('7b. the attacker as named parent: class and attach checks; pre-existing symlinks in dst are replaced, never followed', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    victimAllowedTop.add('dst-reused');
    const evil = 'evil\n';
    const top = 'top\n';
    const entries = [wdir('sub'), wfile('sub/evil.txt', evil), wfile('top.txt', top)];
    const content = new Map<number, string>([[1, evil], [2, top]]);
    const s = await sessionToReady(
      victim,
      lab.common('dst-reused'),
      entries,
      () => ({ classId: 0, parent: attackerId, children: [], frameBytes: 65536 }),
      'attacker as parent',
    );
    try {
      assert.deepEqual(s.needs.files, [1, 2], JSON.stringify(s.needs));
      // the symlinks were replaced before any data: nothing went through them
      assert.equal((await fsp.lstat(lab.hostPath('victim', 'dst-reused', 'sub'))).isDirectory(), true, 'sub is a real directory now');
      await assertNothingOutside('structure over symlinks');

      await expectRefuse(victim, s.session, 1, /wrong class id/, 'wrong class id');
      const r = await relayHello(victim, s.session, 0);
      try {
        assert.ok(r.answer.kind === 'message' && r.answer.msg.type === 'accept', `expected accept, got ${show(r.answer)}`);
        await expectRefuse(victim, s.session, 0, /already attached/, 'second relay stream');
        const frames: Uint8Array[][] = [];
        for (const i of s.needs.files as number[]) frames.push([encodeBegin(i, 0)], [DATA_HEADER, Buffer.from(content.get(i)!)]);
        await r.fs.writeFrames(frames);
        await r.fs.writeFrames([[END_FRAME]]);
        const done = await next(r.fs);
        assert.ok(done.kind === 'message' && done.msg.type === 'done' && done.msg.ok === true, `expected done ok, got ${show(done)}`);
        await r.stream.close();
      } finally {
        drop(r.stream);
      }
      const res = await expectResult(s.fs, 'attacker as parent');
      assert.equal(res.status, 'ok', JSON.stringify(res));
    } finally {
      drop(s.stream);
    }
    const dst = lab.hostPath('victim', 'dst-reused');
    assert.equal(await fsp.readFile(path.join(dst, 'sub', 'evil.txt'), 'utf8'), evil);
    assert.equal((await fsp.lstat(path.join(dst, 'top.txt'))).isFile(), true, 'top.txt is a regular file, not the old symlink');
    assert.equal(await fsp.readFile(path.join(dst, 'top.txt'), 'utf8'), top);
    assert.equal(await fsp.readFile(path.join(dst, 'keep.txt'), 'utf8'), 'keep\n', 'untouched without --delete');
    assertAlive(victim);
    await assertNothingOutside('writes over pre-existing symlinks');
  });

  test('7d. a relay stream that comes before the plan waits for it and is judged by it', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const body = 'early\n';
    const entries = [wfile('e.txt', body)];
    for (const [dstName, parent, accepted] of [['dst-early-wrong', src.peerId, false], ['dst-early-right', attackerId, true]] as const) {
      victimAllowedTop.add(dstName);
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      const open = openMsg(lab.common(dstName));
      await writeOpen(fs, open);
      await writeJson(fs, { type: 'entries', entries });
      await writeJson(fs, { type: 'manifest-end', digest: digestOf(entries) });
      const n = await next(fs);
      assert.ok(n.kind === 'message' && n.msg.type === 'needs', `${dstName}: expected needs, got ${show(n)}`);
      // the hello goes first: a parent opens its links when it has its own plan
      const hello = relayHello(victim, open.session, 0);
      const early = await Promise.race([hello.then(() => 'answered'), new Promise((resolve) => setTimeout(() => resolve('waiting'), 500))]);
      assert.equal(early, 'waiting', `${dstName}: the relay stream was answered before the plan`);
      await writeJson(fs, { type: 'plan', relay: { classId: 0, parent, children: [], frameBytes: 65536 } });
      const ready = await next(fs);
      assert.ok(ready.kind === 'message' && ready.msg.type === 'ready', `${dstName}: expected ready, got ${show(ready)}`);
      const r = await hello;
      try {
        if (!accepted) {
          assert.ok(r.answer.kind === 'message' && r.answer.msg.type === 'refuse', `${dstName}: expected refuse, got ${show(r.answer)}`);
          assert.match(String(r.answer.msg.error), new RegExp(`relay stream from ${attackerId}, but the source named ${src.peerId} as parent`));
        } else {
          assert.ok(r.answer.kind === 'message' && r.answer.msg.type === 'accept', `${dstName}: expected accept, got ${show(r.answer)}`);
          await r.fs.writeFrames([[encodeBegin(0, 0)], [DATA_HEADER, Buffer.from(body)], [END_FRAME]]);
          const done = await next(r.fs);
          assert.ok(done.kind === 'message' && done.msg.type === 'done' && done.msg.ok === true, `expected done ok, got ${show(done)}`);
          const res = await expectResult(fs, dstName);
          assert.equal(res.status, 'ok', JSON.stringify(res));
        }
      } finally {
        drop(r.stream);
        drop(stream);
      }
      const written = await fsp.readFile(lab.hostPath('victim', dstName, 'e.txt'), 'utf8').catch(() => undefined);
      assert.equal(written, accepted ? body : undefined, dstName);
    }
    assertAlive(victim);
    await assertNothingOutside('relay streams before the plan');
  });

  test('7c. bad relay data from the named parent fails the session; no file, no temp file, daemon alive', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const zeros = new Uint8Array(64 * MiB);
    const credited = randomBytes(72 * 300 * 1024);
    const cases: Array<{
      what: string;
      entries: WireEntry[];
      frameBytes?: number;
      send: (fs: FramedStream, stream: Stream, files: number[]) => Promise<void>;
      /** the relay stream must end without `done ok` */
      fatal: boolean;
      re: RegExp;
    }> = [
      {
        what: 'content that does not match the hash',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs, _s, files) => fs.writeFrames([[encodeBegin(files[0]!, 0)], [DATA_HEADER, Buffer.from('bbbb\n')], [END_FRAME]]),
        fatal: false,
        re: /a\.txt: SHA-256 .* does not match/,
      },
      {
        what: 'more data than the size',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs, _s, files) => fs.writeFrames([[encodeBegin(files[0]!, 0)], [DATA_HEADER, Buffer.from('aaaa\nEXTRA-EXTRA')]]),
        fatal: true,
        re: /more data than/,
      },
      {
        what: 'a file index that is not next',
        entries: [wfile('a.txt', 'aaaa\n'), wfile('b.txt', 'bbbb\n')],
        send: async (fs, _s, files) => fs.writeFrames([[encodeBegin(files[1]!, 0)], [DATA_HEADER, Buffer.from('bbbb\n')]]),
        fatal: true,
        re: /unexpected file index/,
      },
      {
        what: 'a SKIP of a file that is not next',
        entries: [wfile('a.txt', 'aaaa\n'), wfile('b.txt', 'bbbb\n')],
        send: async (fs, _s, files) => fs.writeFrames([[encodeSkip(files[1]!, 'no reason')]]),
        fatal: true,
        re: /unexpected SKIP of file index/,
      },
      {
        what: 'BEGIN at a nonzero offset',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs, _s, files) => fs.writeFrames([[encodeBegin(files[0]!, 2)]]),
        fatal: true,
        re: /offset/,
      },
      {
        what: 'a FILES record that does not match the hash',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs, _s, files) => fs.writeFrames([[FILES_HEADER, encodeFileRecordHeader(files[0]!, 5), Buffer.from('AAAA\n')], [END_FRAME]]),
        fatal: false,
        re: /a\.txt: SHA-256 .* does not match/,
      },
      {
        what: 'a FILES record whose length is not the file size',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs, _s, files) => fs.writeFrames([[FILES_HEADER, encodeFileRecordHeader(files[0]!, 3), Buffer.from('aaa')]]),
        fatal: true,
        re: /FILES record of 3 bytes, but the file has 5/,
      },
      {
        what: 'a FILES record out of order',
        entries: [wfile('a.txt', 'aaaa\n'), wfile('b.txt', 'bbbb\n')],
        send: async (fs, _s, files) => fs.writeFrames([[FILES_HEADER, encodeFileRecordHeader(files[1]!, 5), Buffer.from('bbbb\n')]]),
        fatal: true,
        re: /unexpected file index/,
      },
      {
        what: 'a FILES frame cut inside a record',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs, _s, files) => fs.writeFrames([[FILES_HEADER, encodeFileRecordHeader(files[0]!, 5), Buffer.from('aa')]]),
        fatal: true,
        re: /FILES frame ends inside a record/,
      },
      {
        what: 'END with files missing',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs) => fs.writeFrames([[END_FRAME]]),
        fatal: true,
        re: /END after 0 of 1 files/,
      },
      {
        what: 'an unknown frame kind',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (fs) => fs.writeFrames([[Uint8Array.of(0x09, 1, 2, 3)]]),
        fatal: true,
        re: /unknown frame kind/,
      },
      {
        what: 'DATAZ that inflates past frameBytes (64 MiB of zeros, plan frameBytes 16 KiB)',
        entries: [wfile('z.bin', zeros)],
        frameBytes: 16 * 1024,
        send: async (fs, _s, files) => fs.writeFrames([[encodeBegin(files[0]!, 0)], [DATAZ_HEADER, deflateRawSync(zeros)]]),
        fatal: true,
        re: /.+/,
      },
      {
        // 72 files of 300 KiB without a hash (deferred, and never sent): 32 of them wait for
        // theirs, so the target stores nothing more and credits nothing more; the parent goes on
        what: 'a parent that ignores its credit (21 MiB while the target cannot store)',
        entries: Array.from({ length: 72 }, (_, i) => ({ ...wfile(`f${String(i).padStart(2, '0')}.bin`, credited.subarray(i * 300 * 1024, (i + 1) * 300 * 1024)), hash: undefined })),
        send: async (fs, _s, files) => {
          await fs.writeFrames(files.flatMap((f, i) => [[encodeBegin(f, 0)], [DATA_HEADER, credited.subarray(i * 300 * 1024, (i + 1) * 300 * 1024)]]));
        },
        fatal: true,
        re: /beyond the credit it was given/,
      },
      {
        what: 'a SKIP whose reason is 4 MiB long',
        entries: [wfile('a.txt', 'aaaa\n')],
        // (encodeSkip cuts a reason to 1000 characters: this frame is made by hand)
        send: async (fs, _s, files) => fs.writeFrames([[encodeSkip(files[0]!, ''), Buffer.alloc(4 * MiB - 16, 'x')], [END_FRAME]]),
        fatal: false,
        re: /^a\.txt: not sent by the source \(x{100,4096}\)$/,
      },
      {
        what: 'a relay frame over the limit (1 GiB prefix)',
        entries: [wfile('a.txt', 'aaaa\n')],
        send: async (_fs, stream) => {
          rawSend(stream, varint.encode(1024 * MiB));
          rawSend(stream, randomBytes(MiB));
        },
        fatal: true,
        re: /exceeds the limit/,
      },
      {
        // a byte every 250 ms: never silent for the stall timeout, but 20 bytes in 5 s (a file
        // of one frame: held in memory, so no kept part is left for a next session to continue)
        what: 'a parent that trickles one byte at a time',
        entries: [wfile('t.bin', randomBytes(60 * 1024))],
        send: async (fs, _s, files) => {
          await fs.writeFrames([[encodeBegin(files[0]!, 0)]]);
          for (let i = 0; i < 4 * 4 * STALL_S; i++) {
            await new Promise((resolve) => setTimeout(resolve, 250));
            await fs.writeFrames([[DATA_HEADER, Buffer.from('x')]]);
          }
        },
        fatal: true,
        re: /sent only \d+ bytes in \d+ ms: too little to go on/,
      },
    ];
    const problems: string[] = [];
    for (const [i, c] of cases.entries()) {
      const dstName = `dst-badrelay-${i}`;
      victimAllowedTop.add(dstName);
      const pid = nodePids.get(victim)!;
      const rssBefore = rssBytes(pid);
      try {
        const started = performance.now();
        const s = await sessionToReady(
          victim,
          lab.common(dstName),
          c.entries,
          () => ({ classId: 0, parent: attackerId, children: [], frameBytes: c.frameBytes ?? 65536 }),
          c.what,
        );
        let result: Msg;
        try {
          const r = await relayHello(victim, s.session, 0);
          try {
            assert.ok(r.answer.kind === 'message' && r.answer.msg.type === 'accept', `expected accept, got ${show(r.answer)}`);
            await c.send(r.fs, r.stream, s.needs.files as number[]).catch(() => {});
            const o = await next(r.fs);
            t.diagnostic(`${c.what}: relay -> ${show(o)}`);
            if (c.fatal) assert.ok(o.kind === 'reset' || o.kind === 'eof', `expected the relay stream to be aborted, got ${show(o)}`);
            else assert.ok(o.kind === 'message' && o.msg.type === 'done' && o.msg.ok === false, `expected done ok:false, got ${show(o)}`);
          } finally {
            drop(r.stream);
          }
          result = await expectResult(s.fs, c.what);
        } finally {
          drop(s.stream);
        }
        const ms = performance.now() - started;
        t.diagnostic(`${c.what}: result ${JSON.stringify(result)} after ${ms.toFixed(0)} ms`);
        assert.equal(result.status, 'failed', JSON.stringify(result));
        assert.match(String(result.error), c.re, JSON.stringify(result));
        assert.ok(ms < BOUND_MS, `took ${ms} ms`);
        const dst = lab.hostPath('victim', dstName);
        for (const e of c.entries) {
          if (e.type === 'file') assert.equal(await exists(path.join(dst, e.path)), false, `${e.path} exists after a failed transfer`);
        }
        assert.deepEqual(await tempFilesUnder(dst), [], 'temp files left behind');
        assertAlive(victim);
        const rssAfter = rssBytes(pid);
        t.diagnostic(`${c.what}: victim VmRSS ${(rssBefore / MiB).toFixed(1)} MiB -> ${(rssAfter / MiB).toFixed(1)} MiB`);
        assert.ok(rssAfter - rssBefore < 64 * MiB, `VmRSS grew by ${((rssAfter - rssBefore) / MiB).toFixed(1)} MiB`);
        await assertNothingOutside(c.what);
      } catch (err) {
        const msg = (err as Error).message;
        problems.push(`--- ${c.what}:\n${msg}${msg.includes('DIED') ? '' : await postmortem(victim)}`);
      }
      if (deaths.has(victim)) {
        t.diagnostic(`${c.what}: the victim daemon crashed; starting it again for the remaining cases`);
        victim = await revived(victim);
      }
    }
    if (problems.length > 0) assert.fail(`${problems.length} of ${cases.length} bad relay inputs were not handled:\n${problems.join('\n')}`);
  });

  test('7e. a plan whose frameBytes is out of range is refused (it bounds what a compressed frame may inflate to)', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    for (const frameBytes of [2 ** 32, 0]) {
      const entries = [wfile('a.txt', 'aaaa\n')];
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        await writeOpen(fs, openMsg(lab.common(`dst-framebytes-${frameBytes}`)));
        victimAllowedTop.add(`dst-framebytes-${frameBytes}`);
        await writeJson(fs, { type: 'entries', entries });
        await writeJson(fs, { type: 'manifest-end', digest: digestOf(entries) });
        const n = await next(fs);
        assert.ok(n.kind === 'message' && n.msg.type === 'needs', show(n));
        await writeJson(fs, { type: 'plan', relay: { classId: 0, parent: attackerId, children: [], frameBytes } });
        const m = await expectError(fs, 'bad-plan', /frameBytes .* is outside/, `frameBytes ${frameBytes}`);
        t.diagnostic(`frameBytes ${frameBytes}: ${m.message}`);
      } finally {
        drop(stream);
      }
    }
    assertAlive(victim);
  });

  test('8. silent streams are closed: control after the stall timeout, relay after the accept timeout; locks are released', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    victimAllowedTop.add('dst-locked');
    const lockedDst = lab.common('dst-locked');
    const silentControl = (async () => {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        const o = await next(fs);
        assert.ok(o.kind === 'message' && o.msg.type === 'error', `silent control: expected an error, got ${show(o)}`);
        assert.equal(o.msg.code, 'failed', show(o));
        assert.match(o.msg.message, /timeout|timed out/i, show(o));
        assert.ok(o.ms >= STALL_S * 1000 - 250, `silent control: closed after ${o.ms.toFixed(0)} ms, before the stall timeout`);
        assert.ok(o.ms < BOUND_MS, show(o));
        const end = await assertEnds(fs, 'silent control');
        return `error after ${o.ms.toFixed(0)} ms (${o.msg.message}), then ${show(end)}`;
      } finally {
        drop(stream);
      }
    })();
    const silentRelay = (async () => {
      const { stream, fs } = await dial(victim, RELAY_PROTOCOL, MiB);
      try {
        const o = await next(fs, BOUND_MS);
        assert.ok(o.kind === 'reset' || o.kind === 'eof', `silent relay: expected the stream to be closed, got ${show(o)}`);
        assert.ok(o.ms >= ACCEPT_TIMEOUT_MS - 1000, `silent relay: closed after ${o.ms.toFixed(0)} ms, before the accept timeout`);
        return show(o);
      } finally {
        drop(stream);
      }
    })();
    // a session that opens, locks its destination, then falls silent
    const silentAfterOpen = (async () => {
      const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
      try {
        await writeOpen(fs, openMsg(lockedDst));
        // meanwhile the destination is busy
        await new Promise((r) => setTimeout(r, 500));
        const b = await dial(victim, CONTROL_PROTOCOL);
        try {
          await writeOpen(b.fs, openMsg(lockedDst));
          await writeJson(b.fs, { type: 'manifest-end', digest: digestOf([]) });
          await expectError(b.fs, 'busy', /in use/, 'second session on a locked destination');
        } finally {
          drop(b.stream);
        }
        const o = await next(fs);
        assert.ok(o.kind === 'message' && o.msg.type === 'error' && o.msg.code === 'failed', `silent after open: ${show(o)}`);
        assert.ok(o.ms >= STALL_S * 1000 - 1000, `silent after open: error after ${o.ms.toFixed(0)} ms`);
        await assertEnds(fs, 'silent after open');
      } finally {
        drop(stream);
      }
      // the lock is gone: a new session on the same destination gets to needs
      const s = await sessionToReady(victim, lockedDst, [wdir('d')], () => null, 'after the lock was released');
      try {
        const r = await expectResult(s.fs, 'after the lock was released');
        assert.equal(r.status, 'ok', JSON.stringify(r));
      } finally {
        drop(s.stream);
      }
      return 'busy while locked, usable after the timeout';
    })();
    const [c, r, l] = await Promise.all([silentControl, silentRelay, silentAfterOpen]);
    t.diagnostic(`silent control: ${c}`);
    t.diagnostic(`silent relay: ${r}`);
    t.diagnostic(`lock: ${l}`);
    assertAlive(victim);
    await assertNothingOutside('silent streams');
  });

  test('8b. a manifest long after the open (a slow source scan): the destination is scanned again', { timeout: 120_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    const dstName = 'dst-late-manifest';
    const dst = lab.hostPath('victim', dstName);
    victimAllowedTop.add(dstName);
    await writeTree(dst, { 'old.txt': 'old\n' });
    const { stream, fs } = await dial(victim, CONTROL_PROTOCOL);
    try {
      const [open, start] = splitOpen(openMsg(lab.common(dstName), { delete: true, dryRun: true }));
      await writeJson(fs, open);
      const first = await next(fs, 5_000, ['heartbeat']);
      assert.ok(first.kind === 'message' && first.msg.type === 'tree' && first.msg.digest === null, `expected tree null first, got ${show(first)}`);
      // after the target's scan, the destination changes while the source is still "scanning"
      // (its heartbeats keep the session: longer than the stall timeout, longer than SCAN_MAX_AGE_MS)
      await new Promise((r) => setTimeout(r, 1_000));
      await fsp.writeFile(path.join(dst, 'new.txt'), 'new\n');
      const until = Date.now() + SCAN_MAX_AGE_MS + 1_000;
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, 1_500));
        await writeJson(fs, { type: 'heartbeat' });
      }
      await writeJson(fs, start);
      await writeJson(fs, { type: 'manifest-end', digest: digestOf([]) });
      const n = await next(fs, 10_000);
      assert.ok(n.kind === 'message' && n.msg.type === 'needs', `expected needs, got ${show(n)}`);
      // both files: the scan the diff used is newer than the change
      assert.equal(n.msg.changes.deleted, 2, `the diff used a scan older than the manifest: ${show(n)}`);
    } finally {
      drop(stream);
    }
    assertAlive(victim);
  });

  test('9. afterwards a normal sync to the attacked daemons and a fresh one succeeds', { timeout: 180_000 }, async (t) => {
    const why = skipReason();
    if (why) return t.skip(why);
    if (restarts.length > 0) t.diagnostic(`note: daemons restarted after crashing earlier: ${restarts.join(', ')}`);
    assertAlive(src, victim, stranger, good, fenced);
    // dst-reused on the victim holds what the attacker wrote there: -d must clean it up
    const r = await lab.syncJson(
      ['-t', [victim.addr, stranger.addr, good.addr].join(','), '--src', lab.common('data'), '--dst', lab.common('dst-reused'), '-d'],
      { home: src.home, timeoutMs: 120_000 },
    );
    const ctx = `${JSON.stringify(r.report, null, 2)}\n${fmt(r)}`;
    t.diagnostic(`normal sync took ${(r.ms / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, ctx);
    assert.equal(r.report.ok, true, ctx);
    for (const d of [victim, stranger, good]) {
      assert.equal(targetOf(r.report, d).status, 'ok', `${d.name}\n${ctx}`);
      assert.equal(await rsyncOracle(lab.hostPath('src', 'data'), lab.hostPath(d.name, 'dst-reused')), '', `oracle for ${d.name}`);
    }
    assertAlive(src, victim, stranger, good, fenced);
    await assertNothingOutside('the normal sync');
  });
});
