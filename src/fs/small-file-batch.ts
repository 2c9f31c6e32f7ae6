import { dirname } from 'node:path'
import type { Entry } from '../manifest/types.js'
import { utimesValue } from '../manifest/time.js'
import { createMode, metadataSteps, tempNameIn } from './atomic-writer.js'
import { fileWorker, workerError, type CreateJob } from './file-worker.js'

/** Files up to this size (verified in memory) take the batched path. */
export const SMALL_FILE_MAX = 64 * 1024
/** Start a batch's sync at once when this many files wait; otherwise after BATCH_DELAY_MS. */
const BATCH_FILES = 2048
const BATCH_DELAY_MS = 20
/** Files go to the worker in requests of up to this many files or bytes (or what one event-loop turn gave). */
const SEND_FILES = 256
const SEND_BYTES = 1024 * 1024

interface Waiting { temp: string, final: string, dev: number, resolve: () => void, reject: (err: unknown) => void }
interface Outgoing { job: CreateJob, data: Uint8Array[], created: (dev: number) => void, failed: (err: Error) => void }

/**
 * Small files, already verified against their hash in memory, written by the file worker
 * thread (synchronous calls there, off the main thread) under a temp name in their final
 * directory. They are renamed into place in batches, each after one
 * syncfs of the file systems involved: the same guarantee as fsync-then-rename per file
 * (no file is visible before its data is durable), at one journal commit per batch
 * instead of one per file. Without `sync -f`, each file of the batch is fsynced instead.
 */
export class SmallFileBatch {
  private waiting: Waiting[] = []
  private timer?: NodeJS.Timeout
  private running?: Promise<void>
  private syncfsWorks = true
  /** files not yet sent to the worker */
  private outgoing: Outgoing[] = []
  private outgoingBytes = 0
  private sendQueued = false
  /** create requests the worker has not answered yet */
  private readonly creating = new Set<Promise<void>>()

  constructor (private readonly opts: { delayMs?: number } = {}) {}

  /**
   * Write `data` (exactly the file's bytes) for `entry`; settles once it is at `finalPath`.
   * `handedOver` is called once the bytes are in a temp file (or the file failed): `data`
   * is read until then.
   */
  async write (finalPath: string, entry: Entry, data: readonly Uint8Array[], handedOver?: () => void): Promise<void> {
    const temp = tempNameIn(dirname(finalPath))
    const steps = metadataSteps(entry)
    let length = 0
    for (const p of data) length += p.byteLength
    let dev: number
    try {
      dev = await new Promise<number>((resolve, reject) => {
        this.outgoing.push({
          job: { temp, createMode: createMode(entry.mode), offset: 0, length, chown: steps.chown ? [entry.uid!, entry.gid!] : undefined, chmod: steps.chmod ? entry.mode : undefined, mtime: utimesValue(entry) },
          data: [...data],
          created: resolve,
          failed: reject
        })
        this.outgoingBytes += length
        if (this.outgoing.length >= SEND_FILES || this.outgoingBytes >= SEND_BYTES) this.send()
        else if (!this.sendQueued) {
          this.sendQueued = true
          setImmediate(() => { this.sendQueued = false; this.send() })
        }
      })
    } finally {
      handedOver?.()
    }
    await new Promise<void>((resolve, reject) => {
      this.waiting.push({ temp, final: finalPath, dev, resolve, reject })
      if (this.waiting.length >= BATCH_FILES) this.kick()
      else this.timer ??= setTimeout(() => { this.kick() }, this.opts.delayMs ?? BATCH_DELAY_MS)
    })
  }

  /** Hand the queued files to the worker: their bytes in one transferred buffer. */
  private send (): void {
    if (this.outgoing.length === 0) return
    const batch = this.outgoing
    const buf = new Uint8Array(new ArrayBuffer(this.outgoingBytes))
    this.outgoing = []
    this.outgoingBytes = 0
    let off = 0
    for (const o of batch) {
      o.job.offset = off
      for (const p of o.data) { buf.set(p, off); off += p.byteLength }
      o.data = []
    }
    const p = fileWorker({ op: 'create', jobs: batch.map(o => o.job), data: buf.buffer }, [buf.buffer]).then((reply) => {
      batch.forEach((o, i) => {
        const r = reply.results[i]
        if (r?.dev != null) o.created(r.dev)
        else o.failed(workerError(r ?? { error: 'the file worker gave no result' }))
      })
    }, (err: Error) => { for (const o of batch) o.failed(err) }).finally(() => { this.creating.delete(p) })
    this.creating.add(p)
  }

  /** Make everything written so far durable and visible; resolves when done. */
  async flush (): Promise<void> {
    for (;;) {
      this.send()
      if (this.creating.size > 0) { await Promise.all(this.creating); await Promise.resolve(); continue }
      if (this.waiting.length === 0 && this.running == null) return
      this.kick()
      await this.running
    }
  }

  /** Start a batch unless one is running (the next starts when it ends: group commit). */
  private kick (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.running != null || this.waiting.length === 0) return
    const batch = this.waiting
    this.waiting = []
    this.running = this.commit(batch).finally(() => {
      this.running = undefined
      if (this.waiting.length > 0) this.kick()
    })
  }

  /** Durable, then visible: one syncfs per file system (or an fsync each), then the renames; all in the worker. */
  private async commit (batch: Waiting[]): Promise<void> {
    const oneEach = new Map<number, string>()
    for (const w of batch) if (!oneEach.has(w.dev)) oneEach.set(w.dev, w.temp)
    try {
      const reply = await fileWorker({ op: 'commit', syncPaths: this.syncfsWorks ? [...oneEach.values()] : null, items: batch.map(w => [w.temp, w.final]) })
      if (reply.syncfsUnsupported === true) this.syncfsWorks = false
      batch.forEach((w, i) => {
        const r = reply.results[i]
        if (r != null && r.error == null) w.resolve()
        else w.reject(workerError(r ?? { error: 'the file worker gave no result' }))
      })
    } catch (err) {
      for (const w of batch) w.reject(err)
    }
  }
}
