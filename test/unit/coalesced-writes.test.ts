// A send on a TCP connection goes to the socket as one write, not one per piece, and the
// bytes arrive intact; a full socket says so and then drains. The private-network case is not
// patched (pnet writes each send as one buffer already): it checks that this stays so.
import '../../src/polyfill.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, Socket, type AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Libp2p } from '@libp2p/interface';
import { coalesceSocketWrites } from '../../src/node/coalesced-writes.js';
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
    test(`${name}: one socket write per send at most, bytes intact`, { timeout: 30_000 }, async () => {
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

  test('a full socket answers false, then drains; nothing is lost', { timeout: 30_000 }, async () => {
    // a reader that does not read at first: the kernel's buffers fill, then Node's
    const received: Buffer[] = [];
    let peer: Socket | undefined;
    const server = createServer((s) => { peer = s; s.pause(); s.on('data', (d) => received.push(d)); });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket = new Socket();
    await new Promise<void>((resolve) => socket.connect((server.address() as AddressInfo).port, '127.0.0.1', resolve));
    try {
      const conn = { socket, sendData: (): never => { throw new Error('the original sendData was called'); } };
      coalesceSocketWrites(conn as any);
      const sent = createHash('sha256');
      let sends = 0;
      let result = { sentBytes: 0, canSendMore: true };
      while (result.canSendMore && sends < 2_000) {
        const pieces = [randomBytes(2), randomBytes(CHUNK), randomBytes(16)];
        for (const p of pieces) sent.update(p);
        result = (conn as any).sendData(pieces);
        assert.equal(result.sentBytes, CHUNK + 18);
        sends++;
      }
      assert.equal(result.canSendMore, false, `still accepting after ${sends} sends to a reader that does not read`);
      const drained = new Promise((resolve) => socket.once('drain', resolve));
      peer!.resume();
      await drained;
      socket.end();
      await new Promise((resolve) => peer!.once('end', resolve));
      assert.equal(createHash('sha256').update(Buffer.concat(received)).digest('hex'), sent.digest('hex'));
    } finally {
      socket.destroy();
      server.close();
    }
  });
});
