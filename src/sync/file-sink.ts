import type { Entry } from '../manifest/types.js'
import { trace } from '../trace.js'
import { AtomicFileWriter } from '../fs/atomic-writer.js'
import { SMALL_FILE_MAX, SmallFileBatch } from '../fs/small-file-batch.js'
import { DestinationRoot } from '../fs/safe-path.js'

/**
 * Where file `index` of the manifest is written: its final path, or (--atomic) a stage path.
 * A plain string when known at once (the usual case: its directory was checked already).
 */
export type FilePlacer = (index: number, entry: Entry) => string | Promise<string>

/**
 * Files being written at once (opened and not yet committed). File system calls cost
 * tens of microseconds each here and are served by libuv's thread pool, so overlapping
 * many small files is several times faster than one at a time.
 */
const MAX_FILES_IN_FLIGHT = 32
/** Small files whose bytes may wait in memory (for their path check or deferred hash) at once. */
const SMALL_HELD_MAX = 16 * 1024 * 1024

export class SequenceError extends Error {
  override name = 'SequenceError'
}

export interface SinkResult {
  files: number
  bytes: number
  /** the first FAILURES_KEPT failures' messages */
  failures: string[]
  /** failures after those, counted only */
  moreFailures: number
}

/** Failure messages a sink keeps (a report shows three): a parent that SKIPs every file cannot fill memory with them. */
const FAILURES_KEPT = 16

/** The SHA-256 a file must have: the manifest's, or (deferred) the one the source sends (a promise while it has not come). */
export type ExpectedHash = (index: number, entry: Entry) => string | undefined | Promise<string | undefined>

interface OpenFile {
  index: number
  entry: Entry
  /** resolves to the writer, or undefined if it could not be created */
  writer: Promise<AtomicFileWriter | undefined>
  /** a small file: its bytes, kept in memory until verified, then written by the SmallFileBatch */
  small?: { chunks: Uint8Array[] }
  received: number
  /** where this session started the file (a resumed part) */
  offset: number
  writes: Array<Promise<void>>
  failed: boolean
}

/**
 * Stores the files of one transfer class on this host, in the order the class lists
 * them. Calls must come in frame order; each returns a promise that settles when that
 * frame's bytes are on disk (or the file has failed locally), while different files
 * proceed in parallel. Each file goes through an AtomicFileWriter (hash verified before
 * rename). A local failure (disk full, bad hash) costs that file only; frames out of
 * order throw SequenceError, which ends the session.
 */
export class FileSink {
  private next = 0
  private current?: OpenFile
  private readonly inFlight = new Set<Promise<void>>()
  /** small files on their way to the SmallFileBatch, then waiting for their batch to be durable */
  private smallPending = 0
  /** end()/abort() waiting for smallPending to reach 0 */
  private smallIdle?: PromiseWithResolvers<void>
  /** bytes of small files kept in memory until written (their frames are credited already) */
  private smallHeld = 0
  /** begin() and wholeFiles() calls waiting for held small-file bytes to drop below SMALL_HELD_MAX */
  private heldWaiters: Array<() => void> = []
  private readonly batch = new SmallFileBatch({ onSettled: (entry, err) => { this.smallSettled(entry, err) } })
  private readonly result: SinkResult = { files: 0, bytes: 0, failures: [], moreFailures: 0 }

  private readonly place: FilePlacer

  constructor (dst: DestinationRoot | FilePlacer, private readonly entries: readonly Entry[], private readonly files: readonly number[], private readonly offsets: ReadonlyMap<number, number> = new Map(), private readonly expected: ExpectedHash = (_i, e) => e.hash) {
    this.place = dst instanceof DestinationRoot ? (_i, e) => dst.resolveFast(e.path) : dst
  }

  get filesDone (): number { return this.result.files }
  /** file data taken this session, finished files or not */
  get bytesReceived (): number { return this.received }
  private received = 0
  get bytesDone (): number { return this.result.bytes }

  /** Start the next file; waits while MAX_FILES_IN_FLIGHT files are still being written. */
  async begin (index: number, offset: number): Promise<void> {
    this.takeNext(index, 'BEGIN')
    if (offset !== (this.offsets.get(index) ?? 0)) throw this.violation(`file index ${index} begins at offset ${offset}, but this target asked for offset ${this.offsets.get(index) ?? 0}`)
    const entry = this.entries[index]
    if (entry.size <= SMALL_FILE_MAX && offset === 0) {
      await this.heldBelowMax()
      const file: OpenFile = { index, entry, writer: Promise.resolve(undefined), small: { chunks: [] }, received: 0, offset: 0, writes: [], failed: false }
      this.current = file
      if (entry.size === 0) this.complete(file)
      return
    }
    // (a path refused by place() fails this file only, as a rejection)
    const writer = new Promise<string>(resolve => { resolve(this.place(index, entry)) })
      .then(async abs => offset > 0
        ? await AtomicFileWriter.resume(abs, entry, offset)
        : await AtomicFileWriter.create(abs, entry))
      .catch((err: Error) => { this.fail(entry, err); return undefined })
    const file: OpenFile = { index, entry, writer, received: offset, offset, writes: [], failed: false }
    this.current = file
    // a resumed file hashes its kept prefix first: later DATA must wait for that
    if (offset > 0) await writer
    if (entry.size === 0) this.complete(file)
    while (this.inFlight.size >= MAX_FILES_IN_FLIGHT) await Promise.race(this.inFlight)
  }

  /**
   * Append to the current file; settles when written. The writer hashes the bytes in order
   * and writes them at their offset, so writes of one file overlap too.
   */
  async data (chunk: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const file = this.current
    if (file == null) throw this.violation('DATA outside a file')
    const parts: Uint8Array[] = chunk instanceof Uint8Array ? [chunk] : [...chunk]
    let len = 0
    for (const p of parts) len += p.byteLength
    const position = file.received
    file.received += len
    this.received += len
    if (file.received > file.entry.size) throw this.violation(`${file.entry.path}: more data than its size ${file.entry.size}`)
    if (file.small != null) {
      file.small.chunks.push(...parts)
      if (file.received === file.entry.size) this.complete(file)
      return
    }
    const written = file.writer.then(async (w) => {
      if (w == null || file.failed) return
      try {
        await w.writeAt(parts, position)
      } catch (err) {
        if (!file.failed) {
          file.failed = true
          this.fail(file.entry, err as Error)
        }
      }
    })
    file.writes.push(written)
    if (file.received === file.entry.size) this.complete(file)
    await written
  }

  /**
   * Whole small files from one FILES frame, in order: each is taken as BEGIN + DATA would
   * take it, without a promise per step. Settles when the held small-file bytes allow the
   * next frame.
   */
  async wholeFiles (files: ReadonlyArray<{ index: number, data: Uint8Array }>): Promise<void> {
    for (const { index, data } of files) {
      this.takeNext(index, 'FILES record')
      if ((this.offsets.get(index) ?? 0) !== 0) throw this.violation(`file index ${index} came whole, but this target asked for it from offset ${this.offsets.get(index) ?? 0}`)
      const entry = this.entries[index]
      if (data.byteLength !== entry.size) throw this.violation(`${entry.path}: FILES record of ${data.byteLength} bytes, but the file has ${entry.size}`)
      if (entry.size > SMALL_FILE_MAX) throw this.violation(`${entry.path}: ${entry.size} bytes is too large for a FILES record`)
      this.received += data.byteLength
      this.storeSmall(index, entry, [data])
    }
    await this.heldBelowMax()
  }

  /** File `index` must be the next of the class, with no file open: it becomes the current one's turn. */
  private takeNext (index: number, what: string): void {
    if (this.current != null) throw this.violation(`${what} ${index} before file ${this.current.entry.path} was complete`)
    if (this.next >= this.files.length || this.files[this.next] !== index) throw this.violation(`unexpected file index ${index}`)
    this.next++
  }

  /** Waits while the small files held in memory reach SMALL_HELD_MAX. */
  private async heldBelowMax (): Promise<void> {
    for (;;) {
      if (this.batch.queuedBytes >= SMALL_HELD_MAX) await this.batch.drainedBelow(SMALL_HELD_MAX)
      else if (this.smallHeld >= SMALL_HELD_MAX && this.smallPending > 0) await new Promise<void>(resolve => { this.heldWaiters.push(resolve) })
      else return
    }
  }

  async skip (index: number, reason: string): Promise<void> {
    const file = this.current
    if (file != null) {
      if (this.entries[index] !== file.entry) throw this.violation(`SKIP ${index} while another file is open`)
      this.current = undefined
      file.failed = true
      await Promise.all(file.writes)
      await file.writer.then(async w => { await w?.abort() })
    } else {
      if (this.files[this.next] !== index) throw this.violation(`unexpected SKIP of file index ${index}`)
      this.next++
    }
    this.failure(`${this.entries[index].path}: not sent by the source (${reason})`)
  }

  /** END frame: every expected file must have been accounted for; waits for every commit. */
  async end (): Promise<SinkResult> {
    if (this.current != null) throw this.violation(`END while ${this.current.entry.path} is incomplete`)
    if (this.next !== this.files.length) throw this.violation(`END after ${this.next} of ${this.files.length} files`)
    trace(`target: END received; ${this.smallPending} small files not yet durable, ${this.inFlight.size} large in flight`)
    await Promise.all(this.inFlight)
    await this.smallDone()
    trace('target: every file durable')
    return this.result
  }

  /** The session ends early: the file being received is kept as a part for a later session (unless it failed). */
  async abort (): Promise<void> {
    const file = this.current
    this.current = undefined
    await Promise.all(this.inFlight)
    // verified small files are whole: they still go in place
    await this.smallDone()
    if (file?.small != null) return
    if (file != null) {
      const keep = !file.failed
      file.failed = true
      await Promise.all(file.writes)
      await file.writer.then(async w => { if (keep) await w?.keepPartial(); else await w?.abort() })
    }
  }

  /** Verify, fsync and rename in the background once the last byte is queued. */
  private complete (file: OpenFile): void {
    this.current = undefined
    if (file.small != null) {
      this.storeSmall(file.index, file.entry, file.small.chunks)
      return
    }
    const p: Promise<void> = file.writer.then(async (w) => {
      if (w == null) return // failed earlier: already recorded
      await Promise.all(file.writes)
      if (file.failed) { await w.abort(); return }
      try {
        const want = await Promise.resolve(this.expected(file.index, file.entry)).catch(async (err) => { await w.abort(); throw err })
        await w.commit(want)
        this.result.files++
        this.result.bytes += file.entry.size - file.offset
      } catch (err) {
        this.fail(file.entry, err as Error)
      }
    }).finally(() => { this.inFlight.delete(p) })
    this.inFlight.add(p)
  }

  /**
   * A complete small file: to the SmallFileBatch, which copies its bytes at once and has the
   * file worker verify them. Synchronous when its path and hash are known (the usual case);
   * otherwise its bytes are held here until they are (at most SMALL_HELD_MAX in all).
   */
  private storeSmall (index: number, entry: Entry, chunks: Uint8Array[]): void {
    this.smallPending++
    try {
      const placed = this.place(index, entry)
      const want = this.expected(index, entry)
      if (typeof placed === 'string' && typeof want === 'string') { this.batch.add(placed, entry, chunks, want); return }
      this.smallHeld += entry.size
      Promise.all([placed, want]).then(([abs, sha256]) => {
        if (sha256 == null) throw new Error('no hash to check it against')
        this.batch.add(abs, entry, chunks, sha256)
      }).catch((err: Error) => { this.smallSettled(entry, err) }).finally(() => {
        this.smallHeld -= entry.size
        if (this.smallHeld < SMALL_HELD_MAX && this.heldWaiters.length > 0) {
          const waiters = this.heldWaiters
          this.heldWaiters = []
          for (const w of waiters) w()
        }
      })
    } catch (err) {
      this.smallSettled(entry, err as Error)
    }
  }

  private smallSettled (entry: Entry, err?: Error): void {
    if (err != null) this.fail(entry, err)
    else {
      this.result.files++
      this.result.bytes += entry.size
    }
    if (--this.smallPending === 0) this.smallIdle?.resolve()
  }

  /** Settles when no small file is on its way any more (the batch commits what comes later by itself). */
  private async smallDone (): Promise<void> {
    await this.batch.flush()
    while (this.smallPending > 0) {
      this.smallIdle ??= Promise.withResolvers<void>()
      await this.smallIdle.promise
      this.smallIdle = undefined
    }
  }

  /** A frame out of order: the parent cannot be trusted with the open file, so it is not kept as a part. */
  private violation (message: string): SequenceError {
    if (this.current != null) this.current.failed = true
    return new SequenceError(message)
  }

  private fail (e: Entry, err: Error): void {
    this.failure(err.message.startsWith(`${e.path}: `) ? err.message : `${e.path}: ${err.message}`)
  }

  private failure (message: string): void {
    if (this.result.failures.length < FAILURES_KEPT) this.result.failures.push(message)
    else this.result.moreFailures++
  }
}
