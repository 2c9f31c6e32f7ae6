import { constants } from 'node:fs'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { fileWorker, workerError, type WorkerReply } from './file-worker.js'

/**
 * Large files are written with O_DIRECT: straight from our buffers to the disk, not through
 * the page cache. Buffered, every page of a new file is first allocated and copied in the
 * kernel, then written back: on this project's VMs 2.1-3.0 CPU-s of kernel time per GiB
 * written into memory not touched before (direct: 0.03 s, measured side by side). A
 * one-to-many push also should not evict the working set of the hosts it deploys to.
 * Small files stay buffered: they are written in batches and made durable by one `sync -f`.
 */

/** Files at least this large are written with O_DIRECT (when the file system takes it). */
export const DIRECT_IO_MIN = 8 * 1024 * 1024
/** File offsets and lengths of direct writes are multiples of this (every common device's block). */
export const DIRECT_ALIGN = 4096
/** One direct write: the bytes staged before they go to the disk. */
const SLOT_SIZE = 1024 * 1024
/** Staging buffers of the whole process: bounds the memory (4 MiB) and the writes in flight. */
const SLOTS = 4

let enabled = process.env.GOSYNC_DIRECT_IO !== '0'

/** `gosync daemon --no-direct-io`: every file through the page cache. */
export function setDirectIo (on: boolean): void { enabled = on }

/** Whether a new file of this size is written with O_DIRECT. */
export function wantsDirectIo (size: number): boolean {
  return enabled && size >= DIRECT_IO_MIN && constants.O_DIRECT != null
}

/**
 * The process's staging buffers (plain memory: a copy into shared memory runs byte by byte
 * when the source is not 8-byte aligned, 13 times slower here). A full one is transferred
 * to the file worker, which hashes it, copies it into its own page-aligned memory (O_DIRECT
 * refuses unaligned memory) and writes it, then transfers it back.
 */
class StagingBuffers {
  private readonly free: Buffer[] = []
  private readonly waiters: Array<(slot: Buffer) => void> = []

  constructor () {
    for (let i = 0; i < SLOTS; i++) this.free.push(Buffer.allocUnsafeSlow(SLOT_SIZE))
  }

  /** A free slot, at once when there is one (no promise on the usual path). */
  tryTake (): Buffer | undefined { return this.free.pop() }

  async take (): Promise<Buffer> {
    return this.free.pop() ?? await new Promise<Buffer>(resolve => { this.waiters.push(resolve) })
  }

  /** A slot back; `undefined` when its memory was lost with a failed worker (replaced). */
  give (slot: ArrayBuffer | undefined): void {
    const b = slot != null && slot.byteLength === SLOT_SIZE ? Buffer.from(slot) : Buffer.allocUnsafeSlow(SLOT_SIZE)
    const w = this.waiters.shift()
    if (w != null) w(b)
    else this.free.push(b)
  }
}

/** Page-aligned memory for the probe write (a WebAssembly.Memory is mapped page-aligned). */
let probeBlock: Uint8Array | undefined

let slots: StagingBuffers | undefined
let nextFile = 0

/**
 * Creates `path` (O_CREAT|O_EXCL, like 'wx') for direct writes, and checks with one aligned
 * write that the file system takes them. Undefined when it does not (tmpfs before Linux 6.6,
 * some FUSE and network file systems): the caller creates the file buffered instead.
 */
export async function createDirect (path: string, mode: number): Promise<FileHandle | undefined> {
  let fh: FileHandle
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_DIRECT, mode)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return undefined
    throw err
  }
  probeBlock ??= new Uint8Array(new WebAssembly.Memory({ initial: 1, maximum: 1 }).buffer, 0, DIRECT_ALIGN)
  try {
    await fh.write(probeBlock, 0, DIRECT_ALIGN, 0)
    await fh.truncate(0)
    return fh
  } catch (err) {
    await fh.close().catch(() => {})
    await unlink(path).catch(() => {})
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return undefined
    throw err
  }
}

/**
 * Appends a file's bytes through 1 MiB staging slots. A full slot goes to the file worker,
 * which hashes it (SHA-256, in file order) and writes it to the disk while the main thread
 * fills the next one: the target's main thread keeps decrypting. finish() has the last,
 * partial block written padded with zeros, cuts the file to its size and returns the
 * digest. A failed write is reported by the next append() or by finish().
 */
export class DirectAppender {
  private readonly file = nextFile++
  private slot?: Buffer
  private fill = 0
  /** file offset of the slot being filled */
  private slotAt = 0
  private error?: Error
  private readonly writing = new Set<Promise<void>>()
  /** appends waiting for a free slot, in order */
  private queue?: Promise<void>
  private closed?: Promise<string | undefined>

  constructor (private readonly fh: FileHandle) {
    slots ??= new StagingBuffers()
    this.track(fileWorker({ op: 'direct-open', file: this.file, fd: fh.fd }))
  }

  /** Staged and written bytes: the next append's file offset. */
  get appended (): number { return this.slotAt + this.fill }

  /** Settles once the bytes are copied into a slot (the caller may reuse its buffers). */
  async append (parts: readonly Uint8Array[]): Promise<void> {
    if (this.queue != null) {
      const next: Promise<void> = this.queue.then(async () => { await this.copyIn(parts) })
      this.queue = next
      try { await next } finally { if (this.queue === next) this.queue = undefined }
      return
    }
    if (this.error != null) throw this.error
    // the usual path: copy at once
    const pending = this.copyIn(parts)
    if (pending == null) return
    this.queue = pending
    try { await pending } finally { if (this.queue === pending) this.queue = undefined }
  }

  /** Copies parts into slots; a promise only when it has to wait for a free slot. */
  private copyIn (parts: readonly Uint8Array[], from = 0, offset = 0): Promise<void> | undefined {
    for (let i = from; i < parts.length; i++) {
      const p = parts[i]
      let off = i === from ? offset : 0
      while (off < p.byteLength) {
        if (this.slot == null) {
          const s = slots!.tryTake()
          if (s == null) {
            const at = off
            return slots!.take().then(async (s) => {
              this.slot = s
              if (this.error != null) throw this.error
              await this.copyIn(parts, i, at)
            })
          }
          this.slot = s
        }
        const n = Math.min(SLOT_SIZE - this.fill, p.byteLength - off)
        this.slot.set(off === 0 && n === p.byteLength ? p : p.subarray(off, off + n), this.fill)
        this.fill += n
        off += n
        if (this.fill === SLOT_SIZE) this.issue()
      }
    }
    return undefined
  }

  /** Hands the current slot to the worker (transferred): its `fill` bytes hashed and written. */
  private issue (): void {
    const slot = this.slot!
    const req = { op: 'direct-write' as const, file: this.file, data: slot.buffer as ArrayBuffer, bytes: this.fill, position: this.slotAt }
    this.slot = undefined
    this.slotAt += this.fill
    this.fill = 0
    let back: ArrayBuffer | undefined
    this.track(fileWorker(req, [req.data]).then((r) => { back = r.data; return r }), () => { slots!.give(back) })
  }

  private track (reply: Promise<WorkerReply>, done?: () => void): void {
    const p: Promise<void> = reply
      .then((r) => { const e = r.results?.[0]; if (e?.error != null) throw workerError(e) })
      .catch((err: Error) => { this.error ??= err })
      .finally(() => { this.writing.delete(p); done?.() })
    this.writing.add(p)
  }

  /**
   * Every byte on the disk (not yet durable: the caller fsyncs), the file exactly `appended`
   * bytes long: returns the SHA-256 of those bytes, or throws the first write error.
   */
  async finish (): Promise<string> {
    this.closed ??= this.close(true)
    const digest = await this.closed
    if (this.error != null) throw this.error
    return digest!
  }

  /** Gives the slots back without caring about the bytes (the file is being removed). */
  async release (): Promise<void> {
    this.closed ??= this.close(false)
    await this.closed.catch(() => {})
  }

  private async close (digest: boolean): Promise<string | undefined> {
    await this.queue?.catch(() => {})
    const size = this.appended
    const padded = this.fill % DIRECT_ALIGN !== 0
    if (this.slot != null) {
      if (this.fill > 0 && digest && this.error == null) {
        this.issue()
      } else {
        slots!.give(this.slot.buffer as ArrayBuffer)
        this.slot = undefined
      }
    }
    while (this.writing.size > 0) await Promise.all(this.writing)
    const r = await fileWorker({ op: 'direct-close', file: this.file, digest })
    if (!digest || this.error != null) return undefined
    if (padded) await this.fh.truncate(size)
    return r.results?.[0]?.hash
  }
}
