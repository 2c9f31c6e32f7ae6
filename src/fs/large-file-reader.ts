import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import type { Entry } from '../manifest/types.js'
import { fdChangeSinceScan } from './changed-since-scan.js'
import { fileWorker, workerError, type WorkerReply } from './file-worker.js'

let nextFile = 0

/**
 * Reads a large file for sending, frame by frame, in the file worker: the worker reads each
 * frame into a fresh buffer, hashes it when the file's SHA-256 is still to be computed (a
 * deferred hash), and hands the buffer over without a copy (transferred). The source's main
 * thread is left with encryption and framing: on 2 cores, reading and hashing a GiB took it
 * ~1.1 of its ~2.5 CPU-s.
 */
export class LargeFileReader {
  private readonly file = nextFile++
  private closed = false

  private constructor (private readonly fh: FileHandle) {}

  /**
   * Opens `path` (O_NOFOLLOW). `hashFrom`: hash the file (from byte 0) while reading from
   * that offset on; the bytes before it are read and hashed first (a resumed file).
   */
  static async open (path: string, hashFrom?: number): Promise<LargeFileReader> {
    const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
    const r = new LargeFileReader(fh)
    try {
      check(await fileWorker({ op: 'read-open', file: r.file, fd: fh.fd, hashPrefix: hashFrom ?? -1 }))
    } catch (err) {
      await fh.close().catch(() => {})
      throw err
    }
    return r
  }

  /** Up to `length` bytes at `position` (fewer only at the end of the file), hashed in the order they are asked for. */
  async read (position: number, length: number): Promise<Buffer> {
    const r = check(await fileWorker({ op: 'read', file: this.file, position, length }))
    return Buffer.from(r.data!, 0, r.results![0].bytes!)
  }

  /** What changed since the scan described by `scanned` (see changeSinceScan), or undefined. Ask once no read is under way. */
  changeSinceScan (scanned: Entry): string | undefined {
    return fdChangeSinceScan(this.fh.fd, scanned)
  }

  /** Closes the file; the SHA-256 of everything read (when hashing), undefined otherwise. */
  async close (): Promise<string | undefined> {
    if (this.closed) return undefined
    this.closed = true
    try {
      return check(await fileWorker({ op: 'read-close', file: this.file })).results?.[0]?.hash
    } finally {
      await this.fh.close().catch(() => {})
    }
  }
}

function check (r: WorkerReply): WorkerReply {
  const e = r.results?.[0]
  if (e?.error != null) throw workerError(e)
  return r
}
