import { createHash, hash as hashOnce, type Hash } from 'node:crypto'
import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { deflateRaw } from 'node:zlib'
import type { Libp2p } from '@libp2p/interface'
import { ChildLink, type ChildTarget } from '../../protocols/relay/child-link.js'
import { DATA_HEADER, DATAZ_HEADER, encodeBegin, encodeSkip, FILES_HEADER, FILES_RECORD_HEADER_BYTES, FILES_RECORD_MAX, writeFileRecordHeader } from '../../protocols/relay/frames.js'
import type { Entry } from '../manifest/types.js'
import { readSmallFileInto, readSmallFileSync, SYNC_READ_MAX } from '../fs/read-small.js'

const deflate = promisify(deflateRaw)

/** Small files read ahead of the sender: hides open/read/close latency per file. */
const LOOKAHEAD_FILES = 64

/** A whole small file, or the error to report; a size other than the manifest's is an error. */
async function readWhole (path: string, size: number): Promise<Buffer | Error> {
  let fh: FileHandle | undefined
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
    const buf = Buffer.allocUnsafe(size + 1)
    let got = 0
    while (got < buf.byteLength) {
      const { bytesRead } = await fh.read(buf, got, buf.byteLength - got, got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    return got === size ? buf.subarray(0, size) : new Error('file changed size since the scan')
  } catch (err) {
    return err as Error
  } finally {
    await fh?.close().catch(() => {})
  }
}

export interface SendClassOptions {
  session: string
  classId: number
  frameBytes: number
  compress: boolean
  stallMs: number
  onChildFailed: (peer: string, error: string) => void
  /** files the class continues from a kept part: index → offset */
  offsets?: ReadonlyMap<number, number>
  /** a file with a deferred hash was read to its end: the SHA-256 of exactly what was sent */
  onFileHash?: (index: number, hash: string) => void
  /** frames are about to be sent: hashes reported so far should go out first */
  beforeSend?: () => void
}

/** SHA-256 of the first `length` bytes of an open file (the part a target continues after). */
async function hashPrefix (fh: FileHandle, length: number, into: Hash): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(length, 1 << 20) || 1)
  let pos = 0
  while (pos < length) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - pos), pos)
    if (bytesRead === 0) throw new Error('file shrank while being sent')
    into.update(buf.subarray(0, bytesRead))
    pos += bytesRead
  }
}

/**
 * The source's part of one class: read each needed file once and send it, frame by frame,
 * to the source's children in the class tree. A fresh buffer per frame: a buffer is never
 * reused while a send may still hold it.
 */
export async function sendClass (node: Libp2p, srcRoot: string, entries: readonly Entry[], files: readonly number[], children: ChildTarget[], opts: SendClassOptions): Promise<void> {
  const links = (await Promise.all(children.map(async (c) => {
    try {
      return await ChildLink.open(node, c, opts.session, opts.classId, opts.stallMs)
    } catch (err) {
      opts.onChildFailed(c.peer, `cannot open relay stream: ${(err as Error).message}`)
      return undefined
    }
  }))).filter((l): l is ChildLink => l != null)
  // frames of small files are batched into one send (one muxer frame, one encryption)
  let batch: Uint8Array[][] = []
  let batchBytes = 0
  const flush = async (): Promise<void> => {
    closeFiles()
    if (batch.length === 0) return
    opts.beforeSend?.()
    const frames = batch
    batch = []
    batchBytes = 0
    await Promise.all(links.map(async l => { await l.send(frames) }))
  }
  // whole small files go out as records of one FILES frame of up to frameBytes, read straight
  // into the frame's buffer: no object per file lives until the frame is sent
  let filesFrame: Buffer | undefined
  let filesBytes = 0
  const closeFiles = (): void => {
    if (filesFrame == null) return
    batch.push([filesFrame.subarray(0, filesBytes)])
    batchBytes += filesBytes
    filesFrame = undefined
    filesBytes = 0
  }
  const sendAll = async (parts: Uint8Array[]): Promise<void> => {
    closeFiles()
    batch.push(parts)
    for (const p of parts) batchBytes += p.byteLength
    if (batchBytes >= opts.frameBytes) await flush()
  }
  const anyAlive = (): boolean => links.some(l => l.alive)

  const sendData = async (chunk: Buffer): Promise<void> => {
    if (opts.compress) await sendAll([DATAZ_HEADER, await deflate(chunk, { level: 1 })])
    else await sendAll([DATA_HEADER, chunk])
  }
  // files of at most one frame are read ahead, in parallel, while earlier ones are sent
  const isSmall = (e: Entry): boolean => e.size <= opts.frameBytes
  const ahead = new Map<number, Promise<Buffer | Error>>()
  const prefetch = (k: number): void => {
    for (let j = k; j < Math.min(files.length, k + LOOKAHEAD_FILES); j++) {
      const e = entries[files[j]]
      if (!ahead.has(j) && isSmall(e) && e.size > SYNC_READ_MAX && (opts.offsets?.get(files[j]) ?? 0) === 0) ahead.set(j, readWhole(join(srcRoot, e.path), e.size))
    }
  }

  for (let k = 0; k < files.length; k++) {
    if (!anyAlive()) break
    const index = files[k]
    const e = entries[index]
    prefetch(k)
    const offset = opts.offsets?.get(index) ?? 0
    if (isSmall(e) && offset === 0 && !opts.compress && e.size <= FILES_RECORD_MAX && e.size <= SYNC_READ_MAX) {
      if (filesFrame != null && filesBytes + FILES_RECORD_HEADER_BYTES + e.size > opts.frameBytes) {
        closeFiles()
        if (batchBytes >= opts.frameBytes) await flush()
      }
      // room for the largest record and the byte that shows a file grew
      filesFrame ??= Buffer.allocUnsafe(Math.max(opts.frameBytes, FILES_HEADER.byteLength + FILES_RECORD_HEADER_BYTES + FILES_RECORD_MAX) + 1)
      if (filesBytes === 0) { filesFrame.set(FILES_HEADER, 0); filesBytes = FILES_HEADER.byteLength }
      const at = filesBytes + FILES_RECORD_HEADER_BYTES
      // a synchronous read is cheaper than any read-ahead for files this small
      const got = readSmallFileInto(join(srcRoot, e.path), e.size, filesFrame, at)
      if (got instanceof Error) {
        await sendAll([encodeSkip(index, (got as NodeJS.ErrnoException).code ?? got.message)])
        continue
      }
      writeFileRecordHeader(filesFrame, filesBytes, index, e.size)
      filesBytes = at + e.size
      if (e.hash == null) opts.onFileHash?.(index, hashOnce('sha256', filesFrame.subarray(at, at + e.size), 'hex'))
      continue
    }
    if (isSmall(e) && offset === 0) {
      // tiny files: a synchronous read is cheaper than any read-ahead
      const content = e.size <= SYNC_READ_MAX ? readSmallFileSync(join(srcRoot, e.path), e.size) : await ahead.get(k)!
      ahead.delete(k)
      if (content instanceof Error) {
        await sendAll([encodeSkip(index, (content as NodeJS.ErrnoException).code ?? content.message)])
        continue
      }
      await sendAll([encodeBegin(index, 0)])
      if (e.size > 0) await sendData(content)
      if (e.hash == null) opts.onFileHash?.(index, hashOnce('sha256', content, 'hex'))
      continue
    }
    let fh: FileHandle | undefined
    try {
      fh = await open(join(srcRoot, e.path), constants.O_RDONLY | constants.O_NOFOLLOW)
    } catch (err) {
      await sendAll([encodeSkip(index, (err as NodeJS.ErrnoException).code ?? (err as Error).message)])
      continue
    }
    try {
      // deferred hash: computed over what is read and sent, the kept prefix included
      const hash = e.hash == null ? createHash('sha256') : undefined
      if (hash != null && offset > 0) await hashPrefix(fh, offset, hash)
      await sendAll([encodeBegin(index, offset)])
      let sent = offset
      // read ahead one frame while the previous one is being sent
      const readChunk = async (): Promise<Buffer> => {
        const want = Math.min(opts.frameBytes, e.size - sent)
        const buf = Buffer.allocUnsafe(want)
        let got = 0
        while (got < want) {
          const { bytesRead } = await fh!.read(buf, got, want - got, sent + got)
          if (bytesRead === 0) break
          got += bytesRead
        }
        return buf.subarray(0, got)
      }
      let next: Promise<Buffer> | undefined = readChunk()
      while (next != null) {
        const chunk: Buffer = await next
        if (chunk.byteLength === 0) {
          await sendAll([encodeSkip(index, 'file shrank while being sent')])
          break
        }
        sent += chunk.byteLength
        next = sent < e.size ? readChunk() : undefined
        hash?.update(chunk)
        await sendData(chunk)
      }
      if (hash != null && sent === e.size) opts.onFileHash?.(index, hash.digest('hex'))
    } catch (err) {
      await sendAll([encodeSkip(index, (err as Error).message)])
    } finally {
      await fh.close().catch(() => {})
    }
  }
  await flush()
  const verdicts = await Promise.all(links.map(async l => ({ peer: l.peer, ...(await l.finish()) })))
  for (const v of verdicts) if (!v.ok) opts.onChildFailed(v.peer, v.error ?? 'failed')
}
