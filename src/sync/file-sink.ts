import type { Entry } from '../manifest/types.js'
import { AtomicFileWriter } from '../fs/atomic-writer.js'
import type { DestinationRoot } from '../fs/safe-path.js'

/** Files verified and renamed in the background at once. */
const MAX_PENDING_COMMITS = 32

export class SequenceError extends Error {
  override name = 'SequenceError'
}

export interface SinkResult {
  files: number
  bytes: number
  failures: string[]
}

/**
 * Stores the files of one transfer class on this host, in the order the class lists
 * them. Each file goes through an AtomicFileWriter (hash verified before rename). A
 * local failure (disk full, bad hash) costs that file only; frames out of order are a
 * protocol error and end the session.
 */
export class FileSink {
  private next = 0
  private writer?: AtomicFileWriter
  private current?: Entry
  private readonly result: SinkResult = { files: 0, bytes: 0, failures: [] }

  constructor (private readonly dst: DestinationRoot, private readonly entries: readonly Entry[], private readonly files: readonly number[]) {}

  get filesDone (): number { return this.result.files }
  get bytesDone (): number { return this.result.bytes }

  async begin (index: number, offset: number): Promise<void> {
    if (this.current != null) throw new SequenceError(`BEGIN ${index} before file ${this.current.path} was complete`)
    if (this.next >= this.files.length || this.files[this.next] !== index) throw new SequenceError(`unexpected file index ${index}`)
    if (offset !== 0) throw new SequenceError('resuming at an offset is not supported by this version')
    this.next++
    this.current = this.entries[index]
    this.received = 0
    try {
      this.writer = await AtomicFileWriter.create(await this.dst.resolve(this.current.path), this.current)
    } catch (err) {
      this.localFailure(err as Error)
    }
    if (this.current.size === 0) await this.complete()
  }

  async data (chunk: Uint8Array): Promise<void> {
    const e = this.current
    if (e == null) throw new SequenceError('DATA outside a file')
    this.received += chunk.byteLength
    if (this.received > e.size) throw new SequenceError(`${e.path}: more data than its size ${e.size}`)
    if (this.writer != null) {
      try {
        await this.writer.write(chunk)
      } catch (err) {
        this.localFailure(err as Error)
      }
    }
    if (this.received === e.size) await this.complete()
  }

  /** bytes received for the current file */
  private received = 0

  async skip (index: number, reason: string): Promise<void> {
    if (this.current != null) {
      if (this.entries[index] !== this.current) throw new SequenceError(`SKIP ${index} while another file is open`)
      await this.writer?.abort()
      this.writer = undefined
      this.current = undefined
    } else {
      if (this.files[this.next] !== index) throw new SequenceError(`unexpected SKIP of file index ${index}`)
      this.next++
    }
    this.result.failures.push(`${this.entries[index].path}: not sent by the source (${reason})`)
  }

  /** END frame: every expected file must have been accounted for. */
  async end (): Promise<SinkResult> {
    if (this.current != null) throw new SequenceError(`END while ${this.current.path} is incomplete`)
    if (this.next !== this.files.length) throw new SequenceError(`END after ${this.next} of ${this.files.length} files`)
    await Promise.all(this.pending)
    return this.result
  }

  async abort (): Promise<void> {
    await Promise.all(this.pending)
    await this.writer?.abort()
    this.writer = undefined
  }

  /**
   * Verify and rename in the background: fsyncs of consecutive small files overlap (the
   * journal commits them together) instead of costing one disk flush each in turn.
   */
  private async complete (): Promise<void> {
    const e = this.current!
    const w = this.writer
    this.current = undefined
    this.writer = undefined
    if (w == null) return // failed earlier: already recorded
    const p = w.commit().then(() => {
      this.result.files++
      this.result.bytes += e.size
    }, (err: Error) => {
      this.result.failures.push(`${e.path}: ${err.message}`)
    }).finally(() => { this.pending.delete(p) })
    this.pending.add(p)
    while (this.pending.size >= MAX_PENDING_COMMITS) await Promise.race(this.pending)
  }

  private readonly pending = new Set<Promise<void>>()

  private localFailure (err: Error): void {
    const e = this.current!
    this.result.failures.push(`${e.path}: ${err.message}`)
    void this.writer?.abort()
    this.writer = undefined
  }
}
