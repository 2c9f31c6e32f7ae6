import { hash as hashOnce } from 'node:crypto'
import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { deflateRaw } from 'node:zlib'
import type { Libp2p } from '@libp2p/interface'
import type { ChildLink, ChildTarget } from '../../protocols/relay/child-link.js'
import { linksTo } from '../../protocols/relay/early-links.js'
import { DATA_HEADER, DATAZ_HEADER, encodeBegin, encodeSkip, FILES_HEADER, FILES_RECORD_HEADER_BYTES, FILES_RECORD_MAX, writeFileRecordHeader } from '../../protocols/relay/frames.js'
import type { Entry } from '../manifest/types.js'
import { readSmallFileInto, readSmallFileSync, SYNC_READ_MAX } from '../fs/read-small.js'
import { LargeFileReader } from '../fs/large-file-reader.js'
import { changeSinceScan } from '../fs/changed-since-scan.js'
import { trace } from '../trace.js'

const deflate = promisify(deflateRaw)

/** Small files read ahead of the sender: hides open/read/close latency per file. */
const LOOKAHEAD_FILES = 64

/** A whole small file, or the error to report; any change since the scan (`e`) is an error. */
async function readWhole (path: string, e: Entry): Promise<Buffer | Error> {
  let fh: FileHandle | undefined
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
    const buf = Buffer.allocUnsafe(e.size + 1)
    let got = 0
    while (got < buf.byteLength) {
      const { bytesRead } = await fh.read(buf, got, buf.byteLength - got, got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    if (got !== e.size) return new Error('file changed size since the scan')
    // after the read: a write during it shows in the times
    const changed = changeSinceScan(await fh.stat(), e)
    return changed == null ? buf.subarray(0, e.size) : new Error(changed)
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
  /** links to the children opened while the plans went out (openLinks), by peer */
  opened?: ReadonlyMap<string, Promise<ChildLink>>
  /** the links, once open: a cancelled task cuts them */
  onLinks?: (links: readonly ChildLink[]) => void
}

/**
 * The source's part of one class: read each needed file once and send it, frame by frame,
 * to the source's children in the class tree. A fresh buffer per frame: a buffer is never
 * reused while a send may still hold it.
 */
export async function sendClass (node: Libp2p, srcRoot: string, entries: readonly Entry[], files: readonly number[], children: ChildTarget[], opts: SendClassOptions): Promise<void> {
  const links = await linksTo(node, children, opts.opened, opts.session, opts.classId, opts.stallMs, opts.onChildFailed)
  opts.onLinks?.(links)
  trace(`source: class ${opts.classId}: ${links.length} links ready`)
  const sender = new ClassSender(links, srcRoot, entries, opts)
  await sender.sendFiles(files)
  await sender.flush()
  trace(`source: class ${opts.classId}: every frame sent`)
  const verdicts = await Promise.all(links.map(async l => ({ peer: l.peer, ...(await l.finish()) })))
  for (const v of verdicts) if (!v.ok) opts.onChildFailed(v.peer, v.error ?? 'failed')
}

/** The per-file work of sendClass. (Its loop in a method of its own: docs/ARCHITECTURE.md, "Hot loops".) */
class ClassSender {
  /** frames of small files are batched into one send (one muxer frame, one encryption) */
  private batch: Uint8Array[][] = []
  private batchBytes = 0
  /**
   * whole small files go out as records of one FILES frame of up to frameBytes, read straight
   * into the frame's buffer: no object per file lives until the frame is sent
   */
  private filesFrame: Buffer | undefined = undefined
  private filesBytes = 0
  /** files of at most one frame are read ahead, in parallel, while earlier ones are sent */
  private readonly ahead = new Map<number, Promise<Buffer | Error>>()

  constructor (
    private readonly links: ChildLink[],
    private readonly srcRoot: string,
    private readonly entries: readonly Entry[],
    private readonly opts: SendClassOptions
  ) {}

  async sendFiles (files: readonly number[]): Promise<void> {
    const opts = this.opts
    for (let k = 0; k < files.length; k++) {
      if (!this.anyAlive()) break
      const index = files[k]
      const e = this.entries[index]
      this.prefetch(files, k)
      const offset = opts.offsets?.get(index) ?? 0
      if (this.isSmall(e) && offset === 0 && !opts.compress && e.size <= FILES_RECORD_MAX && e.size <= SYNC_READ_MAX) {
        if (this.filesFrame != null && this.filesBytes + FILES_RECORD_HEADER_BYTES + e.size > opts.frameBytes) {
          this.closeFiles()
          if (this.batchBytes >= opts.frameBytes) await this.flush()
        }
        const err = this.addRecord(index, e)
        if (err != null) await this.skip(index, err)
      } else if (this.isSmall(e) && offset === 0) {
        await this.sendSmall(k, index, e)
      } else {
        await this.sendLarge(index, e, offset)
      }
    }
  }

  /** Send the batched frames to every child. */
  async flush (): Promise<void> {
    this.closeFiles()
    if (this.batch.length === 0) return
    this.opts.beforeSend?.()
    const frames = this.batch
    this.batch = []
    this.batchBytes = 0
    await Promise.all(this.links.map(async l => { await l.send(frames) }))
  }

  private closeFiles (): void {
    if (this.filesFrame == null) return
    this.batch.push([this.filesFrame.subarray(0, this.filesBytes)])
    this.batchBytes += this.filesBytes
    this.filesFrame = undefined
    this.filesBytes = 0
  }

  private async sendAll (parts: Uint8Array[]): Promise<void> {
    this.closeFiles()
    this.batch.push(parts)
    for (const p of parts) this.batchBytes += p.byteLength
    if (this.batchBytes >= this.opts.frameBytes) await this.flush()
  }

  /** Tell the children file `index` will not come: an error's code (or message), or a reason. */
  private async skip (index: number, why: NodeJS.ErrnoException | string): Promise<void> {
    await this.sendAll([encodeSkip(index, typeof why === 'string' ? why : why.code ?? why.message)])
  }

  private anyAlive (): boolean {
    return this.links.some(l => l.alive)
  }

  private isSmall (e: Entry): boolean {
    return e.size <= this.opts.frameBytes
  }

  private async sendData (chunk: Buffer): Promise<void> {
    if (this.opts.compress) await this.sendAll([DATAZ_HEADER, await deflate(chunk, { level: 1 })])
    else await this.sendAll([DATA_HEADER, chunk])
  }

  /** Files before this position of the list were looked at by prefetch() already. */
  private prefetchedTo = 0

  /** Start reading the files of the next LOOKAHEAD_FILES positions that take the read-ahead path (each looked at once). */
  private prefetch (files: readonly number[], k: number): void {
    const end = Math.min(files.length, k + LOOKAHEAD_FILES)
    for (let j = Math.max(k, this.prefetchedTo); j < end; j++) {
      const e = this.entries[files[j]]
      if (this.isSmall(e) && e.size > SYNC_READ_MAX && (this.opts.offsets?.get(files[j]) ?? 0) === 0) this.ahead.set(j, readWhole(join(this.srcRoot, e.path), e))
    }
    this.prefetchedTo = Math.max(this.prefetchedTo, end)
  }

  /** A whole small file as a record of the FILES frame being filled (read straight into it); or why it cannot be read. */
  private addRecord (index: number, e: Entry): NodeJS.ErrnoException | undefined {
    // room for the largest record and the byte that shows a file grew
    const frame = this.filesFrame ??= Buffer.allocUnsafe(Math.max(this.opts.frameBytes, FILES_HEADER.byteLength + FILES_RECORD_HEADER_BYTES + FILES_RECORD_MAX) + 1)
    if (this.filesBytes === 0) { frame.set(FILES_HEADER, 0); this.filesBytes = FILES_HEADER.byteLength }
    const at = this.filesBytes + FILES_RECORD_HEADER_BYTES
    // a synchronous read is cheaper than any read-ahead for files this small
    const got = readSmallFileInto(join(this.srcRoot, e.path), e.size, frame, at, e)
    if (got instanceof Error) return got
    writeFileRecordHeader(frame, this.filesBytes, index, e.size)
    this.filesBytes = at + e.size
    if (e.hash == null) this.opts.onFileHash?.(index, hashOnce('sha256', frame.subarray(at, at + e.size), 'hex'))
    return undefined
  }

  /** A file of at most one frame, as BEGIN and one DATA frame (compressed, or read ahead). */
  private async sendSmall (k: number, index: number, e: Entry): Promise<void> {
    // tiny files: a synchronous read is cheaper than any read-ahead
    const content = e.size <= SYNC_READ_MAX ? readSmallFileSync(join(this.srcRoot, e.path), e.size, e) : await this.ahead.get(k)!
    this.ahead.delete(k)
    if (content instanceof Error) {
      await this.skip(index, content)
      return
    }
    await this.sendAll([encodeBegin(index, 0)])
    if (e.size > 0) await this.sendData(content)
    if (e.hash == null) this.opts.onFileHash?.(index, hashOnce('sha256', content, 'hex'))
  }

  /** A larger file, frame by frame from `offset` on, reading one frame ahead. */
  private async sendLarge (index: number, e: Entry, offset: number): Promise<void> {
    let file: LargeFileReader
    try {
      // deferred hash: computed over what is read and sent, the kept prefix included
      file = await LargeFileReader.open(join(this.srcRoot, e.path), e.hash == null ? offset : undefined)
    } catch (err) {
      await this.skip(index, err as Error)
      return
    }
    let next: Promise<Buffer> | undefined
    /** bytes of the file handed to the children (a SKIP after all of them would be out of sequence) */
    let handedOn = -1
    /** a SKIP went out for it already (a failure after that needs no second one) */
    let skipped = false
    try {
      await this.sendAll([encodeBegin(index, offset)])
      let sent = offset
      handedOn = offset
      // read ahead one frame while the previous one is being sent
      next = file.read(sent, Math.min(this.opts.frameBytes, e.size - sent))
      // (every child gone, a cancelled task say: the rest of the file is not read for nobody)
      while (next != null && this.anyAlive()) {
        const chunk: Buffer = await next
        if (chunk.byteLength === 0) {
          skipped = true
          await this.skip(index, 'file shrank while being sent')
          break
        }
        sent += chunk.byteLength
        next = sent < e.size ? file.read(sent, Math.min(this.opts.frameBytes, e.size - sent)) : undefined
        // every byte is read: before the last frame goes, make sure no write came while
        // reading (a torn copy would verify against the hash computed while sending it)
        const changed = next == null ? file.changeSinceScan(e) : undefined
        if (changed != null) {
          skipped = true
          await this.skip(index, changed)
          break
        }
        await this.sendData(chunk)
        handedOn = sent
      }
      const digest = await file.close()
      if (digest != null && handedOn === e.size) this.opts.onFileHash?.(index, digest)
    } catch (err) {
      // every byte went out (closing failed): the file is complete for the children, and a SKIP
      // now would be out of sequence; without its deferred hash it fails there by itself. Or
      // its SKIP went out already.
      if (handedOn === e.size || skipped) return
      // mid-file: the message says more than a bare code
      await this.skip(index, (err as Error).message)
    } finally {
      // a read ahead still under way when a send failed: its outcome no longer matters
      next?.catch(() => {})
      await file.close().catch(() => {})
    }
  }
}
