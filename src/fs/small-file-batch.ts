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

/** Called once per file: without an error when it is at its final path. */
export type FileDone = (err?: Error) => void
interface Waiting { temp: string, final: string, done: FileDone }
interface Outgoing { job: CreateJob, final: string, data: Uint8Array[], handedOver?: () => void, done: FileDone }

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
  /** a temp file of `waiting` on each file system (device) they are on */
  private waitingDevs = new Map<number, string>()
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

  /** As add(), as a promise. */
  async write (finalPath: string, entry: Entry, data: readonly Uint8Array[], handedOver?: () => void): Promise<void> {
    await new Promise<void>((resolve, reject) => { this.add(finalPath, entry, data, handedOver, (err) => { if (err != null) reject(err); else resolve() }) })
  }

  /**
   * Write `data` (exactly the file's bytes) for `entry`; `done` is called once it is at
   * `finalPath` (or failed). `handedOver` is called once the bytes are in a temp file (or the
   * file failed): `data` is read until then. Callbacks, not promises: a tree of small files
   * passes tens of thousands through here, and what waits for a batch's sync is kept small.
   */
  add (finalPath: string, entry: Entry, data: readonly Uint8Array[], handedOver: (() => void) | undefined, done: FileDone): void {
    const steps = metadataSteps(entry)
    let length = 0
    for (const p of data) length += p.byteLength
    this.outgoing.push({
      job: { temp: tempNameIn(dirname(finalPath)), createMode: createMode(entry.mode), offset: 0, length, chown: steps.chown ? [entry.uid!, entry.gid!] : undefined, chmod: steps.chmod ? entry.mode : undefined, mtime: utimesValue(entry) },
      final: finalPath,
      data: [...data],
      handedOver,
      done
    })
    this.outgoingBytes += length
    if (this.outgoing.length >= SEND_FILES || this.outgoingBytes >= SEND_BYTES) this.send()
    else if (!this.sendQueued) {
      this.sendQueued = true
      setImmediate(() => { this.sendQueued = false; this.send() })
    }
  }

  /** A file is in its temp file on `dev`: it waits for the next batch's sync. */
  private created (o: Outgoing, dev: number): void {
    o.handedOver?.()
    this.waiting.push({ temp: o.job.temp, final: o.final, done: o.done })
    if (!this.waitingDevs.has(dev)) this.waitingDevs.set(dev, o.job.temp)
    if (this.waiting.length >= BATCH_FILES) this.kick()
    else this.timer ??= setTimeout(() => { this.kick() }, this.opts.delayMs ?? BATCH_DELAY_MS)
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
        if (r?.dev != null) this.created(o, r.dev)
        else { o.handedOver?.(); o.done(workerError(r ?? { error: 'the file worker gave no result' })) }
      })
    }, (err: Error) => { for (const o of batch) { o.handedOver?.(); o.done(err) } }).finally(() => { this.creating.delete(p) })
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
    const oneEach = [...this.waitingDevs.values()]
    this.waiting = []
    this.waitingDevs = new Map()
    this.running = this.commit(batch, oneEach).finally(() => {
      this.running = undefined
      if (this.waiting.length > 0) this.kick()
    })
  }

  /** Durable, then visible: one syncfs per file system (`oneEach`: a temp file on each), or an fsync each, then the renames; all in the worker. */
  private async commit (batch: Waiting[], oneEach: string[]): Promise<void> {
    try {
      const reply = await fileWorker({ op: 'commit', syncPaths: this.syncfsWorks ? oneEach : null, items: batch.map(w => [w.temp, w.final]) })
      if (reply.syncfsUnsupported === true) this.syncfsWorks = false
      batch.forEach((w, i) => {
        const r = reply.results[i]
        if (r != null && r.error == null) w.done()
        else w.done(workerError(r ?? { error: 'the file worker gave no result' }))
      })
    } catch (err) {
      for (const w of batch) w.done(err as Error)
    }
  }
}
