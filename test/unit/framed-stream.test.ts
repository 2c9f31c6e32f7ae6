import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { streamPair } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { z } from 'zod/v3'
import type { Stream } from '@libp2p/interface'
import {
  FramedStream, FrameTooLargeError, UnexpectedEOFError, ReadBufferOverflowError, StreamClosedError
} from '../../protocols/framing/framed-stream.js'
import { readJson, expectJson, writeJson, ProtocolError } from '../../protocols/framing/json.js'

const enc = new TextEncoder()
const bytes = (n: number, seed = 0): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff)
const frame = (payload: Uint8Array): Uint8Array => {
  const p = varint.encode(payload.byteLength)
  const out = new Uint8Array(p.byteLength + payload.byteLength)
  out.set(p)
  out.set(payload, p.byteLength)
  return out
}

/** Fail (instead of leaving a promise pending forever) when `p` does not settle in time. */
async function within<T> (p: Promise<T>, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function pair (maxFrameBytes = 1024, opts: { highWaterBytes?: number, maxBufferBytes?: number } = {}): Promise<{ a: Stream, b: Stream, fa: FramedStream, fb: FramedStream }> {
  const [a, b] = await streamPair()
  return { a, b, fa: new FramedStream(a, { maxFrameBytes }), fb: new FramedStream(b, { maxFrameBytes, ...opts }) }
}

async function readBytes (fs: FramedStream, signal?: AbortSignal): Promise<Uint8Array | null> {
  const f = await fs.read(signal)
  return f == null ? null : f.subarray()
}

describe('FramedStream', { timeout: 5000 }, () => {
  test('round trip of several frames, then clean EOF returns null', async () => {
    const { fa, fb } = await pair()
    const sent = [enc.encode('hello'), new Uint8Array(0), bytes(1024, 1), bytes(200, 2)]
    for (const s of sent) await fa.write(s)
    await fa.write([enc.encode('ab'), new Uint8Array(0), enc.encode('cd')])
    await fa.closeWrite()
    for (const s of sent) assert.deepEqual(await within(readBytes(fb)), s)
    assert.deepEqual(await within(readBytes(fb)), enc.encode('abcd'))
    assert.equal(await within(fb.read()), null)
    assert.equal(await within(fb.read()), null, 'EOF is sticky')
    assert.equal(fb.buffered, 0)
  })

  test('frames split across messages and several frames in one message', async () => {
    const { a, fb } = await pair()
    const big = bytes(300, 3) // 2-byte varint prefix
    const f1 = frame(big)
    const f2 = frame(enc.encode('second'))
    const f3 = frame(enc.encode('third'))
    // split inside the length prefix, then inside the payload, then two frames and a half in one message
    a.send(f1.subarray(0, 1))
    a.send(f1.subarray(1, 100))
    const rest = new Uint8Array(f1.byteLength - 100 + f2.byteLength + 3)
    rest.set(f1.subarray(100))
    rest.set(f2, f1.byteLength - 100)
    rest.set(f3.subarray(0, 3), f1.byteLength - 100 + f2.byteLength)
    a.send(rest)
    const first = readBytes(fb)
    assert.deepEqual(await within(first), big)
    assert.deepEqual(await within(readBytes(fb)), enc.encode('second'))
    const third = readBytes(fb)
    await sleep(10)
    a.send(f3.subarray(3))
    assert.deepEqual(await within(third), enc.encode('third'))
    await a.close()
    assert.equal(await within(fb.read()), null)
  })

  test('readThrough hands on an accepted frame while it arrives, each byte once, prefix first', async () => {
    const { a, b, fb } = await pair(1 << 20)
    // kind byte 2 is passed on, kind 5 is not
    const big = bytes(200_000, 4)
    big[0] = 2
    const small = Uint8Array.of(2, 7, 7)
    const end = Uint8Array.of(5)
    const passed: Uint8Array[] = []
    let body = 0
    let calls = 0
    const pass = { accepts: (k: number) => k === 2, onBytes: (pieces: Uint8Array[], n: number) => { calls++; passed.push(...pieces); body += n } }
    const f1 = frame(big)
    const reading = fb.readThrough(pass)
    a.send(f1.subarray(0, 100_000))
    // the first half is passed on before the rest of the frame exists
    for (let i = 0; i < 100 && body === 0; i++) await sleep(5)
    assert.ok(body > 0, 'nothing was passed on before the frame was whole')
    assert.equal(Buffer.concat(passed).byteLength, body + varint.encodingLength(big.byteLength))
    a.send(f1.subarray(100_000))
    assert.deepEqual((await within(reading))!.subarray(), big)
    assert.equal(body, big.byteLength)
    assert.ok(calls >= 2)
    // a small accepted frame and one not accepted, in one message
    const both = Buffer.concat([frame(small), frame(end)])
    a.send(both)
    assert.deepEqual((await within(fb.readThrough(pass)))!.subarray(), small)
    assert.deepEqual((await within(fb.readThrough(pass)))!.subarray(), end)
    assert.deepEqual(Buffer.concat(passed), Buffer.concat([f1, frame(small)]), 'the frame not accepted was passed on')
    assert.equal(body, big.byteLength + small.byteLength)
    // what was passed on is valid framing for the next hop: writeBytes sends it as is
    const [c, d] = await streamPair()
    const fc = new FramedStream(c, { maxFrameBytes: 1 << 20 })
    const fd = new FramedStream(d, { maxFrameBytes: 1 << 20 })
    await fc.writeBytes(passed)
    assert.deepEqual((await within(fd.read()))!.subarray(), big)
    assert.deepEqual((await within(fd.read()))!.subarray(), small)
    void b
  })

  test('readThrough with the length prefix split byte by byte and the body in uneven pieces', async () => {
    const { a, fb } = await pair(1 << 20)
    const payload = bytes(200_000, 6) // 3-byte varint prefix
    payload[0] = 6
    const f1 = frame(payload)
    const passed: Uint8Array[] = []
    let body = 0
    const reading = fb.readThrough({ accepts: (k) => k === 6, onBytes: (pieces, n) => { passed.push(...pieces); body += n } })
    for (let i = 0; i < 3; i++) { a.send(f1.subarray(i, i + 1)); await sleep(2) }
    for (let at = 3; at < f1.byteLength;) {
      const n = Math.min(f1.byteLength - at, [1, 40_000, 7, 33_000, 70_000][at % 5]!)
      a.send(f1.subarray(at, at + n))
      at += n
    }
    assert.deepEqual((await within(reading))!.subarray(), payload)
    assert.deepEqual(Buffer.concat(passed), Buffer.from(f1))
    assert.equal(body, payload.byteLength)
  })

  test('readThrough passes on fewer than 32 KiB of an incomplete frame only when the frame is whole', async () => {
    const { a, fb } = await pair(1 << 20)
    const payload = bytes(20_000, 5)
    payload[0] = 2
    const f1 = frame(payload)
    let calls = 0
    const reading = fb.readThrough({ accepts: () => true, onBytes: () => { calls++ } })
    a.send(f1.subarray(0, 10_000))
    await sleep(20)
    assert.equal(calls, 0, 'a 10 kB piece was sent on its own')
    a.send(f1.subarray(10_000))
    assert.deepEqual((await within(reading))!.subarray(), payload)
    assert.equal(calls, 1)
  })

  test('a read waiting before the data arrives is woken', async () => {
    const { fa, fb } = await pair()
    const pending = readBytes(fb)
    await sleep(20)
    await fa.write(enc.encode('late'))
    assert.deepEqual(await within(pending), enc.encode('late'))
  })

  test('EOF in the middle of a frame throws UnexpectedEOFError', async () => {
    const { a, fb } = await pair()
    a.send(frame(enc.encode('complete')))
    a.send(frame(bytes(50)).subarray(0, 20))
    await a.close()
    assert.deepEqual(await within(readBytes(fb)), enc.encode('complete'))
    await assert.rejects(within(fb.read()), UnexpectedEOFError)
  })

  test('EOF inside a length prefix throws UnexpectedEOFError', async () => {
    const { a, fb } = await pair()
    a.send(Uint8Array.of(0x80))
    await a.close()
    await assert.rejects(within(fb.read()), UnexpectedEOFError)
  })

  test('a length prefix above maxFrameBytes throws FrameTooLargeError', async () => {
    const { a, fb } = await pair(1000)
    a.send(varint.encode(1001)) // only the prefix: the limit applies before the payload arrives
    await assert.rejects(within(fb.read()), FrameTooLargeError)
  })

  test('a frame of exactly maxFrameBytes is accepted', async () => {
    const { fa, fb } = await pair(1000)
    const b = bytes(1000, 9)
    await fa.write(b)
    assert.deepEqual(await within(readBytes(fb)), b)
  })

  test('a malformed (over-long) varint throws FrameTooLargeError', async () => {
    const { a, fb } = await pair(1000)
    a.send(new Uint8Array(12).fill(0xff))
    await assert.rejects(within(fb.read()), FrameTooLargeError)
  })

  test('read honours an AbortSignal, and the stream stays usable', async () => {
    const { fa, fb } = await pair()
    await assert.rejects(within(fb.read(AbortSignal.abort(new Error('pre-aborted')))), /pre-aborted/)
    const ac = new AbortController()
    const reason = new Error('stop waiting')
    const pending = fb.read(ac.signal)
    await sleep(10)
    ac.abort(reason)
    await assert.rejects(within(pending), (err: unknown) => err === reason)
    await fa.write(enc.encode('after abort'))
    assert.deepEqual(await within(readBytes(fb)), enc.encode('after abort'))
  })

  test('an AbortSignal that is never aborted does not affect reads', async () => {
    const { fa, fb } = await pair()
    const ac = new AbortController()
    const pending = readBytes(fb, ac.signal)
    await fa.write(enc.encode('x'))
    assert.deepEqual(await within(pending), enc.encode('x'))
    ac.abort()
  })

  test('more unread bytes than maxBufferBytes fails the read with ReadBufferOverflowError', async () => {
    const { a, fb } = await pair(1000, { highWaterBytes: 10, maxBufferBytes: 20 })
    const partial = frame(bytes(500)).subarray(0, 40) // an incomplete frame, 40 bytes > 20
    a.send(partial)
    await assert.rejects(within(fb.read()), ReadBufferOverflowError)
  })

  test('above the high-water mark the stream is paused, and resumed by read', async () => {
    const { a, fb, b } = await pair(1000, { highWaterBytes: 64, maxBufferBytes: 100_000 })
    const f = frame(bytes(900, 4))
    a.send(f.subarray(0, 100))
    await sleep(20)
    assert.equal(b.readStatus, 'paused')
    a.send(f.subarray(100))
    assert.deepEqual(await within(readBytes(fb)), bytes(900, 4))
    assert.notEqual(b.readStatus, 'paused')
  })

  test('write after closeWrite throws StreamClosedError', async () => {
    const { fa } = await pair()
    await fa.closeWrite()
    await assert.rejects(fa.write(enc.encode('x')), StreamClosedError)
  })
})

describe('readJson', { timeout: 5000 }, () => {
  const Msg = z.object({ type: z.literal('ping'), n: z.number().int() })

  test('valid JSON of the right shape is returned; clean EOF is null', async () => {
    const { fa, fb } = await pair()
    await writeJson(fa, { type: 'ping', n: 3 })
    await fa.closeWrite()
    assert.deepEqual(await within(readJson(fb, Msg)), { type: 'ping', n: 3 })
    assert.equal(await within(readJson(fb, Msg)), null)
  })

  test('invalid JSON is a ProtocolError', async () => {
    const { fa, fb } = await pair()
    await fa.write(enc.encode('{"type": "ping", '))
    await assert.rejects(within(readJson(fb, Msg)), ProtocolError)
  })

  test('invalid UTF-8 is a ProtocolError', async () => {
    const { fa, fb } = await pair()
    await fa.write(Uint8Array.of(0x22, 0xff, 0xfe, 0x22)) // "\xff\xfe"
    await assert.rejects(within(readJson(fb, z.string())), ProtocolError)
  })

  test('the wrong shape is a ProtocolError', async () => {
    const { fa, fb } = await pair()
    await writeJson(fa, { type: 'ping', n: 1.5 })
    await writeJson(fa, { type: 'pong', n: 1 })
    await writeJson(fa, [1, 2])
    await assert.rejects(within(readJson(fb, Msg)), (err: unknown) => err instanceof ProtocolError && /n/.test(err.message))
    await assert.rejects(within(readJson(fb, Msg)), ProtocolError)
    await assert.rejects(within(readJson(fb, Msg)), ProtocolError)
  })

  test('expectJson turns EOF into a ProtocolError', async () => {
    const { fa, fb } = await pair()
    await fa.closeWrite()
    await assert.rejects(within(expectJson(fb, Msg)), ProtocolError)
  })
})
