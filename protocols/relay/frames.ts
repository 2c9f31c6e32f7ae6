import { z } from 'zod/v3'

/**
 * Data frames of /gosync/relay/1 (parent → child), after the JSON hello. Each is one
 * length-prefixed frame whose first byte is its kind. Integers are big-endian.
 *   BEGIN  0x01 u32 fileIndex, u64 offset   the next file of the class starts
 *   DATA   0x02 bytes                        raw content of the current file
 *   DATAZ  0x03 bytes                        the same, deflate-raw compressed (-z)
 *   SKIP   0x04 u32 fileIndex, utf8 reason   the source cannot provide this file
 *   END    0x05                              every file of the class was sent
 *   FILES  0x06 { u32 fileIndex, u32 length, bytes }…  whole small files, each from offset 0
 * (FILES: protocol version 4; one frame carries a run of small files that BEGIN + DATA would
 * take two frames each for: per-frame work dominated trees of small files.)
 */
export const enum FrameKind { Begin = 1, Data = 2, DataZ = 3, Skip = 4, End = 5, Files = 6 }

/** Largest file a FILES record may carry (a bigger file goes as BEGIN + DATA). */
export const FILES_RECORD_MAX = 64 * 1024
export const FILES_RECORD_HEADER_BYTES = 8

export type DataFrame =
  | { kind: FrameKind.Begin, index: number, offset: number }
  | { kind: FrameKind.Data | FrameKind.DataZ, data: Uint8Array }
  | { kind: FrameKind.Skip, index: number, reason: string }
  | { kind: FrameKind.End }
  | { kind: FrameKind.Files, files: WholeFile[] }

/** One record of a FILES frame. */
export interface WholeFile { index: number, data: Uint8Array }

export class BadFrameError extends Error {
  override name = 'BadFrameError'
}

export function encodeBegin (index: number, offset: number): Uint8Array {
  const b = new Uint8Array(13)
  const v = new DataView(b.buffer)
  b[0] = FrameKind.Begin
  v.setUint32(1, index)
  v.setBigUint64(5, BigInt(offset))
  return b
}
export const DATA_HEADER = Uint8Array.of(FrameKind.Data)
export const DATAZ_HEADER = Uint8Array.of(FrameKind.DataZ)
export function encodeSkip (index: number, reason: string): Uint8Array {
  const r = new TextEncoder().encode(reason.slice(0, 1000))
  const b = new Uint8Array(5 + r.byteLength)
  b[0] = FrameKind.Skip
  new DataView(b.buffer).setUint32(1, index)
  b.set(r, 5)
  return b
}
export const END_FRAME = Uint8Array.of(FrameKind.End)
export const FILES_HEADER = Uint8Array.of(FrameKind.Files)
/** The 8 bytes before a FILES record's content, written into `into` at `at`. */
export function writeFileRecordHeader (into: Uint8Array, at: number, index: number, length: number): void {
  const v = new DataView(into.buffer, into.byteOffset + at, FILES_RECORD_HEADER_BYTES)
  v.setUint32(0, index)
  v.setUint32(4, length)
}
export function encodeFileRecordHeader (index: number, length: number): Uint8Array {
  const b = new Uint8Array(FILES_RECORD_HEADER_BYTES)
  writeFileRecordHeader(b, 0, index, length)
  return b
}

/**
 * The records of a FILES frame given as the chunks it arrived in (kind byte included): record
 * contents that lie within one chunk are views of it, not copies; only one that spans chunks is copied.
 */
export function decodeFilesFrame (chunks: readonly Uint8Array[]): WholeFile[] {
  const files: WholeFile[] = []
  let c = 0 // current chunk
  let at = 1 // position in it (after the kind byte, which is in the first non-empty chunk)
  while (c < chunks.length && chunks[c].byteLength === 0) c++
  if (c === chunks.length || chunks[c][0] !== FrameKind.Files) throw new BadFrameError('not a FILES frame')
  /** the next `n` bytes, as a view when they lie in one chunk; undefined if the frame ends first */
  const take = (n: number): Uint8Array | undefined => {
    while (c < chunks.length && at === chunks[c].byteLength) { c++; at = 0 }
    if (n === 0) return new Uint8Array(0)
    if (c === chunks.length) return undefined
    const chunk = chunks[c]
    if (chunk.byteLength - at >= n) { at += n; return chunk.subarray(at - n, at) }
    const out = new Uint8Array(n)
    let got = 0
    while (got < n) {
      if (c === chunks.length) return undefined
      const piece = chunks[c].subarray(at, at + Math.min(n - got, chunks[c].byteLength - at))
      out.set(piece, got)
      got += piece.byteLength
      at += piece.byteLength
      if (at === chunks[c].byteLength) { c++; at = 0 }
    }
    return out
  }
  const more = (): boolean => {
    while (c < chunks.length && at === chunks[c].byteLength) { c++; at = 0 }
    return c < chunks.length
  }
  while (more()) {
    const h = take(FILES_RECORD_HEADER_BYTES)
    if (h == null) throw new BadFrameError('FILES frame ends inside a record header')
    const v = new DataView(h.buffer, h.byteOffset, FILES_RECORD_HEADER_BYTES)
    const index = v.getUint32(0)
    const length = v.getUint32(4)
    if (length > FILES_RECORD_MAX) throw new BadFrameError(`FILES record of ${length} bytes (at most ${FILES_RECORD_MAX})`)
    const data = take(length)
    if (data == null) throw new BadFrameError('FILES frame ends inside a record')
    files.push({ index, data })
  }
  if (files.length === 0) throw new BadFrameError('FILES frame without a record')
  return files
}

/** Bytes of a SKIP frame's reason that a receiver keeps (gosync sends at most 1000 characters). */
export const SKIP_REASON_MAX_BYTES = 4096

export function decodeFrame (b: Uint8Array): DataFrame {
  if (b.byteLength < 1) throw new BadFrameError('empty frame')
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  switch (b[0]) {
    case FrameKind.Begin:
      if (b.byteLength !== 13) throw new BadFrameError('BEGIN frame must be 13 bytes')
      return { kind: FrameKind.Begin, index: v.getUint32(1), offset: Number(v.getBigUint64(5)) }
    case FrameKind.Data:
    case FrameKind.DataZ:
      return { kind: b[0], data: b.subarray(1) }
    case FrameKind.Skip:
      if (b.byteLength < 5) throw new BadFrameError('SKIP frame too short')
      // the reason is for a report line: a parent cannot make this node keep megabytes of it
      return { kind: FrameKind.Skip, index: v.getUint32(1), reason: new TextDecoder().decode(b.subarray(5, 5 + SKIP_REASON_MAX_BYTES)) }
    case FrameKind.End:
      return { kind: FrameKind.End }
    case FrameKind.Files:
      return { kind: FrameKind.Files, files: decodeFilesFrame([b]) }
    default:
      throw new BadFrameError(`unknown frame kind ${b[0]}`)
  }
}

/** JSON frames: the parent's hello, and everything the child sends back. */
export const HelloMsg = z.object({ type: z.literal('hello'), session: z.string().regex(/^[0-9a-f]{32}$/), classId: z.number().int().nonnegative() })
export const ChildMsg = z.discriminatedUnion('type', [
  z.object({ type: z.literal('accept'), window: z.number().int().positive() }),
  z.object({ type: z.literal('refuse'), error: z.string().max(4096) }),
  /**
   * bytes of frames the child has fully processed (stored locally and forwarded); `held`: ms the
   * child has waited so far for its own children's credit (a relay); `queued`: ms its main thread
   * has waited for a CPU (run-queue.ts). Both cumulative, both for judging laggards (laggard.ts).
   */
  z.object({ type: z.literal('credit'), bytes: z.number().int().positive(), held: z.number().nonnegative().optional(), queued: z.number().nonnegative().optional(), ran: z.number().nonnegative().optional() }),
  z.object({ type: z.literal('done'), ok: z.boolean(), error: z.string().max(65536).optional() })
])
export type ChildMsg = z.infer<typeof ChildMsg>
