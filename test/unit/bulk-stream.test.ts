// The sending end of a relay stream (asBulkSender): its writes leave as muxer frames of at most
// BULK_MUXER_FRAME bytes, every byte arrives in order under yamux and mplex, and a stream that
// shares its connection still gets its turn while the bulk stream has data queued. The
// receiving end (asBulkReceiver) grants yamux window in batches.
import '../../src/polyfill.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import { asBulkReceiver, asBulkSender, BULK_MUXER_FRAME } from '../../src/node/bulk-stream.js';
import { createNode, type MuxerName } from '../../src/node/create-node.js';

const BULK = '/gosync-test/bulk/1';
const SMALL = '/gosync-test/small/1';
/** Three relay frames' worth, sent as three writes of 512 KiB. */
const WRITE = 512 * 1024;
const WRITES = 3;

const nodes: Libp2p[] = [];
after(async () => { await Promise.all(nodes.map(async (n) => await n.stop())); });

async function pair(muxer: MuxerName): Promise<[Libp2p, Libp2p]> {
  const [ka, kb] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')]);
  const receiver = await createNode({ privateKey: kb, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, muxers: [muxer] });
  const sender = await createNode({ privateKey: ka, listen: [], mdns: false, muxers: [muxer] });
  nodes.push(sender, receiver);
  return [sender, receiver];
}

async function drained(stream: Stream): Promise<void> {
  await new Promise((resolve) => stream.addEventListener('drain', resolve, { once: true }));
}

/** The sizes of the messages the receiver's stream delivers, the SHA-256 of what was sent and received, and the window updates the receiver sent. */
async function transfer(muxer: MuxerName, opts: { bulk: boolean, writes?: number }): Promise<{ sizes: number[], sent: string, received: string, windowUpdates: number }> {
  const [sender, receiver] = await pair(muxer);
  const got = Promise.withResolvers<{ sizes: number[], received: string }>();
  let windowUpdates = 0;
  await receiver.handle(BULK, async (stream: Stream) => {
    // count the window updates this end sends (yamux frame type 1)
    const s = stream as unknown as { sendFrame?: (header: { type: number }, data?: unknown) => boolean };
    if (typeof s.sendFrame === 'function') {
      const own = s.sendFrame;
      s.sendFrame = (header, data) => { if (header.type === 1) windowUpdates++; return own(header, data); };
    }
    if (opts.bulk) asBulkReceiver(stream);
    const h = createHash('sha256');
    const sizes: number[] = [];
    for await (const chunk of stream) { sizes.push(chunk.byteLength); h.update(chunk.subarray()); }
    got.resolve({ sizes, received: h.digest('hex') });
    await stream.close();
  });
  const conn = await sender.dial(receiver.getMultiaddrs()[0]!);
  const stream = await conn.newStream(BULK);
  if (opts.bulk) asBulkSender(stream);
  const h = createHash('sha256');
  for (let i = 0; i < (opts.writes ?? WRITES); i++) {
    const data = randomBytes(WRITE);
    h.update(data);
    if (!stream.send(data)) await drained(stream);
  }
  await stream.close();
  const { sizes, received } = await got.promise;
  return { sizes, sent: h.digest('hex'), received, windowUpdates };
}

/**
 * Keeps 8 MiB queued on a bulk stream until `stop`, while another stream on the same connection
 * opens and sends one small message the other end echoes. Resolves with the echo's time in ms,
 * or null if it did not come while the bulk stream was busy (`limitMs`).
 */
async function smallWhileBulk(bulk: boolean, limitMs: number): Promise<{ echoMs: number | null, bulkBytes: number }> {
  const [sender, receiver] = await pair('yamux');
  await receiver.handle(BULK, async (stream: Stream) => {
    for await (const _ of stream) { /* discard */ }
    await stream.close();
  });
  await receiver.handle(SMALL, async (stream: Stream) => {
    for await (const chunk of stream) { stream.send(chunk); break; }
    await stream.close();
  });
  const conn: Connection = await sender.dial(receiver.getMultiaddrs()[0]!);
  const big = await conn.newStream(BULK);
  if (bulk) asBulkSender(big);
  let stop = false;
  let bulkBytes = 0;
  const chunk = randomBytes(1024 * 1024);
  const feeding = (async () => {
    while (!stop) {
      // never wait for drain: the write buffer is never empty when the connection drains
      while (big.writeBufferLength < 8 * 1024 * 1024) { big.send(chunk); bulkBytes += chunk.byteLength; }
      await new Promise((resolve) => setImmediate(resolve));
    }
    big.abort(new Error('done'));
  })();
  // let the bulk stream fill the connection first
  await new Promise((resolve) => setTimeout(resolve, 200));
  const start = performance.now();
  const signal = AbortSignal.timeout(limitMs);
  let echoMs: number | null = null;
  try {
    const small = await conn.newStream(SMALL, { signal });
    const echoed = new Promise<void>((resolve, reject) => {
      small.addEventListener('message', () => { resolve(); }, { once: true });
      signal.addEventListener('abort', () => { reject(signal.reason); }, { once: true });
    });
    small.send(new TextEncoder().encode('ping'));
    await echoed;
    echoMs = performance.now() - start;
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    stop = true;
    await feeding;
  }
  return { echoMs, bulkBytes };
}

describe('asBulkSender / asBulkReceiver', { timeout: 60_000 }, () => {
  test('yamux: a 512 KiB write arrives in pieces of at most BULK_MUXER_FRAME bytes, every byte intact', async () => {
    const { sizes, sent, received } = await transfer('yamux', { bulk: true });
    assert.equal(received, sent);
    assert.equal(sizes.reduce((a, b) => a + b, 0), WRITE * WRITES);
    assert.ok(Math.max(...sizes) <= BULK_MUXER_FRAME, `largest message ${Math.max(...sizes)} bytes`);
    assert.ok(sizes.length >= WRITES * Math.ceil(WRITE / BULK_MUXER_FRAME), `${sizes.length} messages`);
  });

  test('yamux without them: each 512 KiB write is one message (what the cap changes)', async () => {
    const { sizes, sent, received } = await transfer('yamux', { bulk: false });
    assert.equal(received, sent);
    assert.ok(Math.max(...sizes) >= WRITE, `largest message ${Math.max(...sizes)} bytes`);
  });

  test('mplex: pieces of at most BULK_MUXER_FRAME bytes, every byte intact', async () => {
    const { sizes, sent, received } = await transfer('mplex', { bulk: true });
    assert.equal(received, sent);
    assert.ok(Math.max(...sizes) <= BULK_MUXER_FRAME, `largest message ${Math.max(...sizes)} bytes`);
  });

  test('yamux: the receiver grants window once per half window, not per frame; every byte intact', async () => {
    const writes = 96; // 48 MiB
    const batched = await transfer('yamux', { bulk: true, writes });
    assert.equal(batched.received, batched.sent);
    const perFrame = await transfer('yamux', { bulk: false, writes });
    assert.equal(perFrame.received, perFrame.sent);
    // 48 MiB in a window of 4–16 MiB, granted at each half: at most ~24 updates
    assert.ok(batched.windowUpdates <= 30, `${batched.windowUpdates} window updates (batched)`);
    assert.ok(perFrame.windowUpdates > 2 * batched.windowUpdates, `${perFrame.windowUpdates} per frame against ${batched.windowUpdates} batched`);
  });

  test('the muxer\'s smaller value still applies (0: the send window is used up)', () => {
    const s = { maxMessageSize: 4 * 1024 * 1024 } as unknown as Stream & { maxMessageSize: number };
    asBulkSender(s);
    assert.equal(s.maxMessageSize, BULK_MUXER_FRAME);
    s.maxMessageSize = 1000;
    assert.equal(s.maxMessageSize, 1000);
    s.maxMessageSize = 0;
    assert.equal(s.maxMessageSize, 0);
    s.maxMessageSize = 16 * 1024 * 1024;
    assert.equal(s.maxMessageSize, BULK_MUXER_FRAME);
  });

  test('another stream on the connection gets its turn while the bulk stream has data queued', async () => {
    const { echoMs, bulkBytes } = await smallWhileBulk(true, 5000);
    assert.ok(echoMs != null, `no echo within 5 s while ${(bulkBytes / 1048576).toFixed(0)} MiB were queued in bulk`);
    assert.ok(bulkBytes > 16 * 1024 * 1024, `the bulk stream moved only ${bulkBytes} bytes`);
  });
});
