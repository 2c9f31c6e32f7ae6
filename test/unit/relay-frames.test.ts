import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import {
  encodeBegin, encodeSkip, decodeFrame, END_FRAME, DATA_HEADER, DATAZ_HEADER, FrameKind, BadFrameError, HelloMsg, ChildMsg,
  FILES_HEADER, FILES_RECORD_MAX, encodeFileRecordHeader, decodeFilesFrame
} from '../../protocols/relay/frames.js'

const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.byteLength }
  return out
}

/** Copy `b` into the middle of a larger buffer so byteOffset != 0. */
const offsetCopy = (b: Uint8Array): Uint8Array => {
  const big = new Uint8Array(b.byteLength + 16).fill(0xee)
  big.set(b, 7)
  return big.subarray(7, 7 + b.byteLength)
}

describe('relay frames', () => {
  test('BEGIN round trip, big-endian layout', () => {
    const b = encodeBegin(0x01020304, 2 ** 40 + 5)
    assert.equal(b.byteLength, 13)
    assert.deepEqual([...b.subarray(0, 5)], [1, 1, 2, 3, 4])
    assert.deepEqual(decodeFrame(b), { kind: FrameKind.Begin, index: 0x01020304, offset: 2 ** 40 + 5 })
    assert.deepEqual(decodeFrame(encodeBegin(0, 0)), { kind: FrameKind.Begin, index: 0, offset: 0 })
    assert.deepEqual(decodeFrame(encodeBegin(0xffffffff, Number.MAX_SAFE_INTEGER)), { kind: FrameKind.Begin, index: 0xffffffff, offset: Number.MAX_SAFE_INTEGER })
    assert.deepEqual(decodeFrame(offsetCopy(encodeBegin(42, 7))), { kind: FrameKind.Begin, index: 42, offset: 7 })
  })

  test('SKIP round trip (UTF-8 reason, reason truncated to 1000 chars)', () => {
    assert.deepEqual(decodeFrame(encodeSkip(9, 'no such file: é 😀')), { kind: FrameKind.Skip, index: 9, reason: 'no such file: é 😀' })
    assert.deepEqual(decodeFrame(encodeSkip(1, '')), { kind: FrameKind.Skip, index: 1, reason: '' })
    assert.deepEqual(decodeFrame(offsetCopy(encodeSkip(77, 'gone'))), { kind: FrameKind.Skip, index: 77, reason: 'gone' })
    const long = decodeFrame(encodeSkip(2, 'x'.repeat(5000)))
    assert.equal(long.kind, FrameKind.Skip)
    assert.equal((long as { reason: string }).reason.length, 1000)
  })

  test('END round trip', () => {
    assert.deepEqual([...END_FRAME], [FrameKind.End])
    assert.deepEqual(decodeFrame(END_FRAME), { kind: FrameKind.End })
  })

  test('DATA and DATAZ round trip', () => {
    const payload = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    const d = decodeFrame(concat(DATA_HEADER, payload))
    assert.equal(d.kind, FrameKind.Data)
    assert.deepEqual((d as { data: Uint8Array }).data, payload)
    const z = decodeFrame(offsetCopy(concat(DATAZ_HEADER, payload)))
    assert.equal(z.kind, FrameKind.DataZ)
    assert.deepEqual((z as { data: Uint8Array }).data, payload)
    const empty = decodeFrame(DATA_HEADER)
    assert.equal((empty as { data: Uint8Array }).data.byteLength, 0)
  })

  test('FILES round trip: records in order, empty files, big-endian headers', () => {
    const a = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    const big = new Uint8Array(FILES_RECORD_MAX).fill(7)
    const frame = concat(FILES_HEADER, encodeFileRecordHeader(3, 300), a, encodeFileRecordHeader(4, 0), encodeFileRecordHeader(0x01020304, FILES_RECORD_MAX), big)
    assert.deepEqual([...encodeFileRecordHeader(0x01020304, 0x0a0b0c0d)], [1, 2, 3, 4, 10, 11, 12, 13])
    for (const b of [frame, offsetCopy(frame)]) {
      const f = decodeFrame(b)
      assert.equal(f.kind, FrameKind.Files)
      const files = (f as { files: Array<{ index: number, data: Uint8Array }> }).files
      assert.deepEqual(files.map(x => [x.index, x.data.byteLength]), [[3, 300], [4, 0], [0x01020304, FILES_RECORD_MAX]])
      assert.deepEqual(files[0].data, a)
      assert.deepEqual(files[2].data, big)
    }
  })

  test('FILES from chunks: the same records wherever the chunks are cut; views where a record lies in one chunk', () => {
    const recs = [[1, 5000], [2, 0], [3, 1], [4, 700], [5, FILES_RECORD_MAX]] as const
    const parts: Uint8Array[] = [FILES_HEADER]
    for (const [i, n] of recs) parts.push(encodeFileRecordHeader(i, n), Uint8Array.from({ length: n }, (_, k) => (k * 7 + i) & 0xff))
    const whole = concat(...parts)
    const want = decodeFrame(whole)
    for (const cut of [1, 3, 8, 9, 64, 1000, 4096, whole.byteLength]) {
      const chunks: Uint8Array[] = [new Uint8Array(0)]
      for (let o = 0; o < whole.byteLength; o += cut) chunks.push(whole.subarray(o, o + cut), new Uint8Array(0))
      assert.deepEqual({ kind: FrameKind.Files, files: decodeFilesFrame(chunks) }, want, `cut ${cut}`)
    }
    const one = decodeFilesFrame([whole])
    assert.equal(one[0].data.buffer, whole.buffer, 'a record inside one chunk is a view, not a copy')
    // records end at 1 + 8 + 5000 + (8: the empty one) and + (8 + 1): those cuts are whole frames
    for (let cut = 1; cut < 40; cut++) {
      if (cut === 8 || cut === 17) continue
      const bad = whole.subarray(0, 1 + 8 + 5000 + cut)
      assert.throws(() => decodeFilesFrame([bad.subarray(0, 7), bad.subarray(7)]), BadFrameError, `truncated after ${bad.byteLength}`)
    }
  })

  test('bad frames throw BadFrameError', () => {
    const bad: Array<[string, Uint8Array]> = [
      ['empty', new Uint8Array(0)],
      ['kind 0', Uint8Array.of(0)],
      ['kind 7', Uint8Array.of(7, 1, 2)],
      ['FILES without a record', FILES_HEADER],
      ['FILES cut in a record header', concat(FILES_HEADER, encodeFileRecordHeader(1, 2).subarray(0, 6))],
      ['FILES cut in a record', concat(FILES_HEADER, encodeFileRecordHeader(1, 4), Uint8Array.of(1, 2, 3))],
      ['FILES record over the maximum', concat(FILES_HEADER, encodeFileRecordHeader(1, FILES_RECORD_MAX + 1), new Uint8Array(FILES_RECORD_MAX + 1))],
      ['kind 255', Uint8Array.of(255)],
      ['short BEGIN', encodeBegin(1, 2).subarray(0, 12)],
      ['BEGIN with only a kind', Uint8Array.of(FrameKind.Begin)],
      ['long BEGIN', concat(encodeBegin(1, 2), Uint8Array.of(0))],
      ['short SKIP', Uint8Array.of(FrameKind.Skip, 0, 0, 1)]
    ]
    for (const [name, b] of bad) {
      assert.throws(() => decodeFrame(b), (err: unknown) => err instanceof BadFrameError && err.name === 'BadFrameError', name)
    }
  })

  test('hello and child message schemas', () => {
    assert.equal(HelloMsg.safeParse({ type: 'hello', session: 'ab'.repeat(16), classId: 0 }).success, true)
    assert.equal(HelloMsg.safeParse({ type: 'hello', session: 'AB'.repeat(16), classId: 0 }).success, false)
    assert.equal(HelloMsg.safeParse({ type: 'hello', session: 'ab'.repeat(16), classId: -1 }).success, false)
    assert.equal(ChildMsg.safeParse({ type: 'accept', window: 1024 }).success, true)
    assert.equal(ChildMsg.safeParse({ type: 'accept', window: 0 }).success, false)
    assert.equal(ChildMsg.safeParse({ type: 'credit', bytes: 1.5 }).success, false)
    assert.equal(ChildMsg.safeParse({ type: 'done', ok: true }).success, true)
    assert.equal(ChildMsg.safeParse({ type: 'nope' }).success, false)
  })
})
