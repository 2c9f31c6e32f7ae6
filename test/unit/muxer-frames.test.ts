// A relay stream's writes leave as muxer frames of at most RELAY_MUXER_FRAME bytes, so the
// receiver gets a large write piece by piece as it arrives (not as one message at its end);
// every byte arrives, in order, under yamux and mplex.
import '../../src/polyfill.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Libp2p, Stream } from '@libp2p/interface';
import { capMuxerFrames, RELAY_MUXER_FRAME } from '../../src/node/muxer-frames.js';
import { createNode, type MuxerName } from '../../src/node/create-node.js';

const PROTOCOL = '/gosync-test/frames/1';
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

/** The sizes of the messages the receiver's stream delivers, and the SHA-256 of what was sent and received. */
async function transfer(muxer: MuxerName, cap: boolean): Promise<{ sizes: number[]; sent: string; received: string }> {
  const [sender, receiver] = await pair(muxer);
  const got = Promise.withResolvers<{ sizes: number[]; received: string }>();
  await receiver.handle(PROTOCOL, async (stream: Stream) => {
    const h = createHash('sha256');
    const sizes: number[] = [];
    for await (const chunk of stream) { sizes.push(chunk.byteLength); h.update(chunk.subarray()); }
    got.resolve({ sizes, received: h.digest('hex') });
    await stream.close();
  });
  const conn = await sender.dial(receiver.getMultiaddrs()[0]!);
  const stream = await conn.newStream(PROTOCOL);
  if (cap) capMuxerFrames(stream, RELAY_MUXER_FRAME);
  const h = createHash('sha256');
  for (let i = 0; i < WRITES; i++) {
    const data = randomBytes(WRITE);
    h.update(data);
    if (!stream.send(data)) await new Promise((resolve) => stream.addEventListener('drain', resolve, { once: true }));
  }
  await stream.close();
  const { sizes, received } = await got.promise;
  return { sizes, sent: h.digest('hex'), received };
}

describe('capMuxerFrames', { timeout: 30_000 }, () => {
  test('yamux: a 512 KiB write arrives in pieces of at most RELAY_MUXER_FRAME bytes, every byte intact', async () => {
    const { sizes, sent, received } = await transfer('yamux', true);
    assert.equal(received, sent);
    assert.equal(sizes.reduce((a, b) => a + b, 0), WRITE * WRITES);
    assert.ok(Math.max(...sizes) <= RELAY_MUXER_FRAME, `largest message ${Math.max(...sizes)} bytes`);
    assert.ok(sizes.length >= WRITES * Math.ceil(WRITE / RELAY_MUXER_FRAME), `${sizes.length} messages`);
  });

  test('yamux without the cap: each 512 KiB write is one message (what the cap changes)', async () => {
    const { sizes, sent, received } = await transfer('yamux', false);
    assert.equal(received, sent);
    assert.ok(Math.max(...sizes) >= WRITE, `largest message ${Math.max(...sizes)} bytes`);
  });

  test('mplex: pieces of at most RELAY_MUXER_FRAME bytes, every byte intact', async () => {
    const { sizes, sent, received } = await transfer('mplex', true);
    assert.equal(received, sent);
    assert.ok(Math.max(...sizes) <= RELAY_MUXER_FRAME, `largest message ${Math.max(...sizes)} bytes`);
  });

  test('the muxer\'s smaller value still applies (0: the send window is used up)', () => {
    const s = { maxMessageSize: 4 * 1024 * 1024 } as unknown as Stream & { maxMessageSize: number };
    capMuxerFrames(s, RELAY_MUXER_FRAME);
    assert.equal(s.maxMessageSize, RELAY_MUXER_FRAME);
    s.maxMessageSize = 1000;
    assert.equal(s.maxMessageSize, 1000);
    s.maxMessageSize = 0;
    assert.equal(s.maxMessageSize, 0);
    s.maxMessageSize = 16 * 1024 * 1024;
    assert.equal(s.maxMessageSize, RELAY_MUXER_FRAME);
  });
});
