import { constants } from 'node:fs'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { createHash } from 'node:crypto'

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
/** Staging slots of the whole process: bounds the memory (4 MiB) and the writes in flight. */
const SLOTS = 4

let enabled = process.env.GOSYNC_DIRECT_IO !== '0'

/** `gosync daemon --no-direct-io`: every file through the page cache. */
export function setDirectIo (on: boolean): void { enabled = on }

/** Whether a new file of this size is written with O_DIRECT. */
export function wantsDirectIo (size: number): boolean {
  return enabled && size >= DIRECT_IO_MIN && constants.O_DIRECT != null
}

/**
 * The process's staging slots: page-aligned memory (each slot its own WebAssembly.Memory,
 * which is mapped page-aligned), as O_DIRECT wants, so a full slot is written as it is.
 * SLOTS are shared; beyond them, every open direct file may have one slot of its own, so a
 * file whose sender is slow (holding a half-filled slot) never makes another session's file wait.
 */
class StagingSlots {
  private readonly free: Uint8Array[] = []
  private readonly waiters: Array<(slot: Uint8Array) => void> = []
  private allocated = 0
  /** open direct files (DirectAppender instances not yet closed) */
  openFiles = 0

  constructor () {
    for (let i = 0; i < SLOTS; i++) this.free.push(this.allocate())
  }

  private allocate (): Uint8Array {
    this.allocated++
    return alignedBlock(SLOT_SIZE)
  }

  /** A free slot, at once when there is one or another may be allocated (no promise on the usual path). */
  tryTake (): Uint8Array | undefined {
    return this.free.pop() ?? (this.allocated < SLOTS + this.openFiles ? this.allocate() : undefined)
  }

  async take (): Promise<Uint8Array> {
    return this.tryTake() ?? await new Promise<Uint8Array>(resolve => { this.waiters.push(resolve) })
  }

  fileClosed (): void {
    this.openFiles--
    this.trim()
  }

  give (slot: Uint8Array): void {
    const w = this.waiters.shift()
    if (w != null) { w(slot); return }
    this.free.push(slot)
    this.trim()
  }

  /** Free slots beyond what the open files may hold go back to the system. */
  private trim (): void {
    while (this.allocated > SLOTS + this.openFiles && this.free.length > 0) { this.free.pop(); this.allocated-- }
  }
}

/** `bytes` of page-aligned memory (a multiple of 64 KiB: WebAssembly pages). */
function alignedBlock (bytes: number): Uint8Array {
  const pages = Math.ceil(bytes / 65536)
  return new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer, 0, bytes)
}

/** Page-aligned memory for the probe write. */
let probeBlock: Uint8Array | undefined

let slots: StagingSlots | undefined

/**
 * Creates `path` (O_CREAT|O_EXCL, like 'wx') for direct writes, and checks with one aligned
 * write that the file system takes them. Undefined when it does not (tmpfs before Linux 6.6,
 * some FUSE and network file systems): the caller creates the file buffered instead.
 */
export async function createDirect (path: string, mode: number): Promise<FileHandle | undefined> {
  // memory first: nothing to undo on the disk when it cannot be had
  probeBlock ??= alignedBlock(DIRECT_ALIGN)
  slots ??= new StagingSlots()
  let fh: FileHandle
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_DIRECT, mode)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') {
      // Linux creates the file before it refuses O_DIRECT: the name is ours (O_EXCL), free it
      // for the buffered create
      await unlink(path).catch(() => {})
      return undefined
    }
    throw err
  }
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
 * Appends a file's bytes through the 1 MiB staging slots. A full slot is hashed (SHA-256, in
 * file order) and written by libuv's thread pool while the next one fills: the copy into the
 * slot is the only copy, and no worker thread is needed (one costs ~11 MB of memory).
 * finish() writes the last, partial block padded with zeros, cuts the file to its size and
 * returns the digest. A failed write is reported by the next append() or by finish().
 */
export class DirectAppender {
  private readonly hash = createHash('sha256')
  private slot?: Uint8Array
  private fill = 0
  /** file offset of the slot being filled */
  private slotAt = 0
  private error?: Error
  private readonly writing = new Set<Promise<void>>()
  /** appends waiting for a free slot, in order */
  private queue?: Promise<void>
  private closed?: Promise<string | undefined>

  constructor (private readonly fh: FileHandle) {
    slots ??= new StagingSlots()
    slots.openFiles++
  }

  /** Staged and written bytes: the next append's file offset. */
  get appended (): number { return this.slotAt + this.fill }

  /** Settles once the bytes are copied into a slot (the caller may reuse its buffers). */
  async append (parts: readonly Uint8Array[]): Promise<void> {
    if (this.queue != null) {
      const next: Promise<void> = this.queue.then(async () => {
        if (this.error != null) throw this.error
        await this.copyIn(parts)
      })
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

  /** Hashes the current slot's `fill` bytes and writes them (padded to a block), giving the slot back after. */
  private issue (): void {
    const slot = this.slot!
    const bytes = this.fill
    const position = this.slotAt
    this.slot = undefined
    this.slotAt += bytes
    this.fill = 0
    this.hash.update(slot.subarray(0, bytes))
    const length = Math.ceil(bytes / DIRECT_ALIGN) * DIRECT_ALIGN
    slot.fill(0, bytes, length)
    const p: Promise<void> = this.writeFully(slot, length, position)
      .catch((err: Error) => { this.error ??= err })
      .finally(() => { this.writing.delete(p); slots!.give(slot) })
    this.writing.add(p)
  }

  private async writeFully (slot: Uint8Array, length: number, position: number): Promise<void> {
    let done = 0
    while (done < length) {
      const { bytesWritten } = await this.fh.write(slot, done, length - done, position + done)
      if (bytesWritten === 0) throw new Error('direct write made no progress')
      done += bytesWritten
    }
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
        slots!.give(this.slot)
        this.slot = undefined
      }
    }
    while (this.writing.size > 0) await Promise.all(this.writing)
    slots!.fileClosed()
    if (!digest || this.error != null) return undefined
    if (padded) await this.fh.truncate(size)
    return this.hash.digest('hex')
  }
}
