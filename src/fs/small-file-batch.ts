import type { Entry } from '../manifest/types.js'
import { createMode, metadataSteps } from './atomic-writer.js'
import { FILE_LANES, fileWorker, laneGeneration, workerError, type FileFailure, type FilesRequest } from './file-worker.js'

/** Files up to this size (verified by the file worker before they are written) take the batched path. */
export const SMALL_FILE_MAX = 64 * 1024
/** Start a batch's sync at once when this many files wait; otherwise after BATCH_DELAY_MS. */
const BATCH_FILES = 2048
const BATCH_DELAY_MS = 20
/** Files go to the worker in requests of up to this many files or bytes (or what one event-loop turn gave). */
const SEND_FILES = 256
const SEND_BYTES = 1024 * 1024
/** A batch's first requests go to lane 0 only: a handful of files never starts a second thread. */
const SPREAD_AFTER = 2

/** A file is at its final path (no error), or failed. */
export type FileSettled = (entry: Entry, err?: Error) => void

/** Numbers files across every batch of this process: the worker keeps them apart by owner. */
let nextOwner = 0

/** The request being filled: the files' bytes are copied in as they are added. */
interface Filling extends Omit<FilesRequest, 'data'> { buf: Uint8Array, used: number, entries: Entry[] }

/**
 * Small files, written by the file worker thread (synchronous calls there, off the main
 * thread): it checks each file's SHA-256, writes it under a temp name in its final
 * directory and keeps it until a commit, which makes a batch durable with one syncfs per file
 * system and then renames its files into place: the same guarantee as fsync-then-rename per
 * file (no file is visible before its data is durable and verified), at one journal commit
 * per batch instead of one per file. Without `sync -f`, each file of the batch is fsynced
 * instead.
 *
 * The main thread keeps no object per file beyond its entry: bytes are copied into the next
 * request at once, and outcomes come back as lists of failures. A tree of small files puts
 * tens of thousands of files through here, and what V8 must keep alive between its
 * collections is what costs.
 */
export class SmallFileBatch {
  private readonly owner = nextOwner++
  private seq = 0
  private filling?: Filling
  /** requests sent to the worker lanes so far */
  private requests = 0
  /** the files sent since the last commit started: [lane, first seq, end seq), and the lane's thread (generation) that took them */
  private sinceCommit: Array<[lane: number, from: number, to: number, generation: number]> = []
  private sendQueued = false
  /** files sent to the worker, by number from `base` on; undefined once settled; all below `head` are */
  private inWorker: Array<Entry | undefined> = []
  private base = 0
  private head = 0
  /** files the worker has created since the last commit started */
  private createdSinceCommit = 0
  private timer?: NodeJS.Timeout
  private running?: Promise<void>
  private fsyncEach = false
  /** bytes added and not yet written by the worker */
  private queued = 0
  private drainWaiters: Array<() => void> = []
  /** requests the worker has not answered yet */
  private readonly creating = new Set<Promise<void>>()
  /** write(): one waiter per entry */
  private readonly waiters = new Map<Entry, { resolve: () => void, reject: (err: Error) => void }>()

  constructor (private readonly opts: { delayMs?: number, onSettled?: FileSettled } = {}) {}

  /** Bytes of added files not yet written to their temp files. */
  get queuedBytes (): number { return this.queued }

  /** Settles once queuedBytes is below `bytes` (or nothing is queued). */
  async drainedBelow (bytes: number): Promise<void> {
    while (this.queued >= bytes && this.queued > 0) await new Promise<void>(resolve => { this.drainWaiters.push(resolve) })
  }

  /** As add(), as a promise that settles when the file is in place. */
  async write (finalPath: string, entry: Entry, data: readonly Uint8Array[], sha256: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.waiters.set(entry, { resolve, reject })
      this.add(finalPath, entry, data, sha256)
    })
  }

  /**
   * Write `data` (the file's bytes; copied now, so the caller may drop them) to `finalPath`
   * once it is verified to have SHA-256 `sha256`; onSettled(entry) reports the outcome.
   */
  add (finalPath: string, entry: Entry, data: readonly Uint8Array[], sha256: string): void {
    let length = 0
    for (const p of data) length += p.byteLength
    let f = this.filling
    if (f != null && f.used + length > f.buf.byteLength) { this.send(); f = undefined }
    if (f == null) {
      f = this.filling = { owner: this.owner, seq: this.seq, buf: new Uint8Array(Math.max(SEND_BYTES, length)), used: 0, finals: [], lengths: [], hashes: [], meta: [], entries: [] }
    }
    for (const p of data) { f.buf.set(p, f.used); f.used += p.byteLength }
    const steps = metadataSteps(entry)
    f.finals.push(finalPath)
    f.lengths.push(length)
    f.hashes.push(sha256)
    f.meta.push(createMode(entry.mode), steps.chmod ? entry.mode : -1, steps.chown ? entry.uid! : -1, steps.chown ? entry.gid! : -1, entry.mtime, entry.mtimeNsec)
    f.entries.push(entry)
    this.seq++
    this.queued += length
    if (f.finals.length >= SEND_FILES) this.send()
    else if (!this.sendQueued) {
      this.sendQueued = true
      setImmediate(() => { this.sendQueued = false; this.send() })
    }
  }

  /**
   * Hand the filled request to a worker lane (its buffer is transferred, not copied). Requests
   * alternate between the lanes, so two threads create files while the main thread decrypts.
   */
  private send (): void {
    const f = this.filling
    if (f == null) return
    this.filling = undefined
    const lane = this.requests < SPREAD_AFTER ? 0 : this.requests % FILE_LANES
    this.requests++
    for (const e of f.entries) this.inWorker.push(e)
    const req = { op: 'files' as const, owner: f.owner, seq: f.seq, data: f.buf.buffer as ArrayBuffer, finals: f.finals, lengths: f.lengths, hashes: f.hashes, meta: f.meta }
    const count = f.finals.length
    const bytes = f.used
    const reply = fileWorker(req, [req.data], lane)
    this.sinceCommit.push([lane, f.seq, f.seq + count, laneGeneration(lane)])
    const p = reply.then((reply) => {
      for (const fail of reply.failed ?? []) this.settle(fail[0], failureError(fail))
      this.createdSinceCommit += count - (reply.failed?.length ?? 0)
    }, (err: Error) => {
      for (let i = 0; i < count; i++) this.settle(f.seq + i, err)
    }).finally(() => {
      this.creating.delete(p)
      this.queued -= bytes
      this.wakeDrained()
      if (this.createdSinceCommit >= BATCH_FILES) this.kick()
      else if (this.createdSinceCommit > 0) this.timer ??= setTimeout(() => { this.kick() }, this.opts.delayMs ?? BATCH_DELAY_MS)
    })
    this.creating.add(p)
  }

  private wakeDrained (): void {
    if (this.drainWaiters.length === 0) return
    const w = this.drainWaiters
    this.drainWaiters = []
    for (const r of w) r()
  }

  /** Report file `seq` (once): in place, or failed. */
  private settle (seq: number, err?: Error): void {
    const k = seq - this.base
    const entry = this.inWorker[k]
    if (entry == null) return
    this.inWorker[k] = undefined
    while (this.head < this.inWorker.length && this.inWorker[this.head] == null) this.head++
    // the settled prefix is dropped now and then, so the list holds only files on their way
    if (this.head >= 1024 && this.head * 2 >= this.inWorker.length) {
      this.inWorker.splice(0, this.head)
      this.base += this.head
      this.head = 0
    }
    this.opts.onSettled?.(entry, err)
    const w = this.waiters.get(entry)
    if (w != null) {
      this.waiters.delete(entry)
      if (err != null) w.reject(err)
      else w.resolve()
    }
  }

  /** Make everything added so far durable and visible; resolves when done. */
  async flush (): Promise<void> {
    for (;;) {
      this.send()
      if (this.creating.size > 0) { await Promise.all(this.creating); await Promise.resolve(); continue }
      if (this.createdSinceCommit === 0 && this.running == null) return
      this.kick()
      await this.running
    }
  }

  /** Start a commit unless one is running (the next starts when it ends: group commit). */
  private kick (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.running != null || this.createdSinceCommit === 0) return
    this.createdSinceCommit = 0
    this.running = this.commit().finally(() => {
      this.running = undefined
      if (this.createdSinceCommit > 0) this.kick()
    })
  }

  /**
   * Durable, then visible: in each lane that got files since the last commit, one syncfs per
   * file system (or an fsync each), then the renames. A lane handles its requests in order, so
   * its commit covers every file sent to it before: those files are settled by its reply.
   */
  private async commit (): Promise<void> {
    const ranges = this.sinceCommit
    this.sinceCommit = []
    const lanes = [...new Set(ranges.map(([lane]) => lane))]
    const posted = lanes.map(lane => {
      const reply = fileWorker({ op: 'commit', owner: this.owner, fsyncEach: this.fsyncEach }, [], lane)
      return { lane, reply, generation: laneGeneration(lane) }
    })
    const replies = await Promise.allSettled(posted.map(async p => await p.reply))
    const lost = new Error('the file worker thread stopped before the file was committed')
    for (let i = 0; i < posted.length; i++) {
      const r = replies[i]
      if (r.status === 'fulfilled') {
        if (r.value.syncfsUnsupported === true) this.fsyncEach = true
        for (const fail of r.value.failed ?? []) this.settle(fail[0], failureError(fail))
      }
      // the rest of the lane's files: in place, or failed with the whole commit, or lost
      // with a thread that died after creating them (the commit went to its successor)
      const err = r.status === 'rejected' ? r.reason as Error : undefined
      for (const [lane, from, to, generation] of ranges) {
        if (lane !== posted[i].lane) continue
        const why = err ?? (generation !== posted[i].generation ? lost : undefined)
        for (let s = from; s < to; s++) this.settle(s, why)
      }
    }
  }
}

function failureError ([, error, code]: FileFailure): Error {
  return workerError({ error, code })
}
