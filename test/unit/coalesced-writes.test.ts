// A send on a TCP connection goes to the socket as one write, not one per piece, and the
// bytes arrive intact (plain Noise, and Noise inside a private network).
import '../../src/polyfill.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Libp2p } from '@libp2p/interface';
import { createNode } from '../../src/node/create-node.js';

const PROTOCOL = '/gosync-test/sink/1';
const CHUNK = 40 * 1024;
const CHUNKS = 100;

/** Counts the writes Node makes on sockets to `port` (each is one write or writev syscall, or a queued batch). */
function countSocketWrites(port: number): { count: () => number; restore: () => void } {
  const proto = Socket.prototype as any;
  const write = proto._write;
  const writev = proto._writev;
  let n = 0;
  proto._write = function (this: Socket, ...args: unknown[]) { if (this.remotePort === port) n++; return write.apply(this, args); };
  proto._writev = function (this: Socket, ...args: unknown[]) { if (this.remotePort === port) n++; return writev.apply(this, args); };
  return { count: () => n, restore: () => { proto._write = write; proto._writev = writev; } };
}

async function pair(swarmKey?: Uint8Array): Promise<[Libp2p, Libp2p]> {
  const [ka, kb] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')]);
  const receiver = await createNode({ privateKey: kb, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, swarmKey });
  const sender = await createNode({ privateKey: ka, listen: [], mdns: false, swarmKey });
  return [sender, receiver];
}

/** Sends CHUNKS × CHUNK random bytes in CHUNK-sized sends; returns the sha256 sent, received, and the sender's socket writes. */
async function transfer(sender: Libp2p, receiver: Libp2p): Promise<{ sent: string; received: string; writes: number }> {
  const got = Promise.withResolvers<string>();
  await receiver.handle(PROTOCOL, async (stream) => {
    const h = createHash('sha256');
    for await (const chunk of stream) h.update(chunk.subarray());
    got.resolve(h.digest('hex'));
    await stream.close();
  });
  const addr = receiver.getMultiaddrs()[0]!;
  const conn = await sender.dial(addr);
  const stream = await conn.newStream(PROTOCOL);
  const h = createHash('sha256');
  const counter = countSocketWrites(Number(addr.getComponents().find((c) => c.name === 'tcp')?.value));
  try {
    for (let i = 0; i < CHUNKS; i++) {
      const chunk = randomBytes(CHUNK);
      h.update(chunk);
      if (!stream.send(chunk)) await new Promise((resolve) => stream.addEventListener('drain', resolve, { once: true }));
    }
    await stream.close();
    const received = await got.promise;
    return { sent: h.digest('hex'), received, writes: counter.count() };
  } finally {
    counter.restore();
  }
}

describe('coalesced socket writes', () => {
  const nodes: Libp2p[] = [];
  after(async () => { await Promise.all(nodes.map(async (n) => await n.stop())); });

  for (const [name, key] of [['noise', undefined], ['noise in a private network', randomBytes(32)]] as const) {
    test(`${name}: one socket write per send at most, bytes intact`, async () => {
      const swarmKey = key == null ? undefined : new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${Buffer.from(key).toString('hex')}\n`);
      const [sender, receiver] = await pair(swarmKey);
      nodes.push(sender, receiver);
      const r = await transfer(sender, receiver);
      assert.equal(r.received, r.sent, 'the receiver hashed other bytes than were sent');
      // Each send is a yamux frame, which Noise makes into a 2-byte length, the ciphertext of the
      // header, of the data and the tag: 4 writes a send if written piece by piece (402 here
      // without coalescing); a few more for the stream's opening and closing frames.
      assert.ok(r.writes <= CHUNKS + 5, `${r.writes} socket writes for ${CHUNKS} sends`);
    });
  }
});
