// /gosync/probe/1 between two in-process nodes (TCP on loopback): the source of a session a
// target serves measures how fast it can send there; anyone else, an unknown session, a second
// probe at once, more probes than a session allows, frames over the limit and data beyond what
// a probe may send are refused or cut, and the target keeps nothing of what it read.
import '../../src/polyfill.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Libp2p } from '@libp2p/interface';
import * as varint from 'uint8-varint';
import { createNode } from '../../src/node/create-node.js';
import { SessionRegistry } from '../../src/sync/sessions.js';
import { TargetSession } from '../../src/sync/target-session.js';
import { handleProbeStream } from '../../protocols/probe/handler.js';
import { probeSendRate, ProbeRefusedError } from '../../protocols/probe/probe.js';
import { PROBE_FRAME_BYTES, PROBE_PROTOCOL, PROBE_READ_LIMIT, PROBES_PER_SESSION } from '../../protocols/probe/consts.js';
import { FramedStream } from '../../protocols/framing/framed-stream.js';
import { expectJson, writeJson } from '../../protocols/framing/json.js';
import { ProbeReplyMsg } from '../../protocols/probe/messages.js';

const nodes: Libp2p[] = [];
let target: Libp2p;
let source: Libp2p;
let stranger: Libp2p;
const sessions = new SessionRegistry();

function addSession(sourcePeer: string): string {
  const id = randomBytes(16).toString('hex');
  sessions.add(new TargetSession({ id, sourcePeer, dst: '/nonexistent/probe-test', delete: false, dryRun: false, compress: false, manifest: { root: { mode: 0o755, mtime: 0, mtimeNsec: 0 } as never, entries: [], digest: '' } }));
  return id;
}

const targetInfo = () => ({ peer: target.peerId.toString(), addrs: target.getMultiaddrs().map((a) => a.toString()) });

before(async () => {
  const keys = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')));
  target = await createNode({ privateKey: keys[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false });
  source = await createNode({ privateKey: keys[1]!, listen: [], mdns: false });
  stranger = await createNode({ privateKey: keys[2]!, listen: [], mdns: false });
  nodes.push(target, source, stranger);
  await target.handle(PROBE_PROTOCOL, async (stream, connection) => { await handleProbeStream(stream, connection, sessions); }, { maxInboundStreams: 8 });
});
after(async () => { await Promise.all(nodes.map(async (n) => await n.stop())); });

describe('probe', () => {
  test('the session\'s source measures a rate: bytes acknowledged within the limits', async () => {
    const id = addSession(source.peerId.toString());
    const r = await probeSendRate(source, targetInfo(), id, { maxBytes: 4 * 1024 * 1024, ms: 2000 });
    assert.ok(r.bytes >= PROBE_FRAME_BYTES && r.bytes <= 4 * 1024 * 1024 + 1024 * 1024, JSON.stringify(r));
    assert.ok(r.ms > 0 && r.bytesPerSecond > 0, JSON.stringify(r));
    assert.ok(Math.abs(r.bytesPerSecond - r.bytes * 1000 / r.ms) < 1, JSON.stringify(r));
  });

  test('a peer that is not the session\'s source is refused', async () => {
    const id = addSession(source.peerId.toString());
    await assert.rejects(probeSendRate(stranger, targetInfo(), id), (err: Error) => err instanceof ProbeRefusedError && /this session's source is/.test(err.message));
  });

  test('an unknown session is refused', async () => {
    await assert.rejects(probeSendRate(source, targetInfo(), randomBytes(16).toString('hex')), (err: Error) => err instanceof ProbeRefusedError && /unknown session/.test(err.message));
  });

  test('one probe at a time, and no more than a session allows', async () => {
    const id = addSession(source.peerId.toString());
    const results = await Promise.allSettled([probeSendRate(source, targetInfo(), id, { ms: 300 }), probeSendRate(source, targetInfo(), id, { ms: 300 })]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results));
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.match((refused.reason as Error).message, /already running/);
    // let the handler release the first probe
    await new Promise((resolve) => setTimeout(resolve, 100));
    // the refused one took none
    for (let i = 1; i < PROBES_PER_SESSION; i++) await probeSendRate(source, targetInfo(), id, { ms: 50 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await assert.rejects(probeSendRate(source, targetInfo(), id, { ms: 50 }), new RegExp(`took its ${PROBES_PER_SESSION} probes`));
  });

  /** A probe stream opened by hand: past `ready`, the caller sends what it likes. */
  async function rawProbe(id: string): Promise<FramedStream> {
    const conn = await source.dial(target.getMultiaddrs()[0]!);
    const stream = await conn.newStream(PROBE_PROTOCOL);
    const fs = new FramedStream(stream, { maxFrameBytes: 4096 });
    await writeJson(fs, { type: 'probe', session: id });
    const m = await expectJson(fs, ProbeReplyMsg);
    assert.equal(m.type, 'ready');
    return fs;
  }

  /** Whether the target ends the stream (reset) within 5 s: well before its 10 s deadline. */
  async function endsWithin(fs: FramedStream): Promise<boolean> {
    const deadline = AbortSignal.timeout(5000);
    try {
      for (;;) if (await fs.read(deadline) == null) return true;
    } catch {
      return !deadline.aborted;
    }
  }

  test('a frame over the limit is cut at once', async () => {
    const fs = await rawProbe(addSession(source.peerId.toString()));
    await fs.stream.send(varint.encode(PROBE_FRAME_BYTES + 1));
    assert.equal(await endsWithin(fs), true);
  });

  test('more data than a probe may send, acknowledgements ignored, is cut', async () => {
    const started = performance.now();
    const fs = await rawProbe(addSession(source.peerId.toString()));
    const chunk = new Uint8Array(PROBE_FRAME_BYTES);
    let sent = 0;
    try {
      while (sent <= PROBE_READ_LIMIT + PROBE_FRAME_BYTES) { await fs.write(chunk, AbortSignal.timeout(5000)); sent += chunk.byteLength; }
    } catch {
      // cut while sending
    }
    assert.equal(await endsWithin(fs), true);
    // by the byte limit, not by the deadline
    assert.ok(performance.now() - started < 5000, `${performance.now() - started} ms`);
  });
});
