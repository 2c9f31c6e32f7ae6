import { createHash, randomBytes, type Hash } from 'node:crypto'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { TEMP_PREFIX } from '../manifest/scan.js'
import type { Entry } from '../manifest/types.js'
import { utimesValue } from '../manifest/time.js'

export class HashMismatchError extends Error {
  override name = 'HashMismatchError'
}

const tempPrefix = randomBytes(5).toString('hex')
let tempCounter = 0

export function tempNameIn (dir: string): string {
  // unique without a random draw per file: a per-process random prefix and a counter
  return join(dir, `${TEMP_PREFIX}${tempPrefix}${(tempCounter++).toString(16).padStart(6, '0')}`)
}

const isRoot = process.getuid?.() === 0
const euid = process.geteuid?.() ?? -1
const egid = process.getegid?.() ?? -1
/** read once: new files get (mode & ~umask) */
const umask = process.umask()

/** Permission bits for a new temp file: the final ones, but always readable and writable by us. */
function createMode (mode: number): number {
  return (mode & 0o777) | 0o600
}

/**
 * Writes one file under a temp name in its final directory and renames it into place
 * only after size and SHA-256 match the manifest: nothing half-written is ever visible
 * at the final path. Mode, mtime (and owner, as root) are set before the rename.
 */
export class AtomicFileWriter {
  private readonly hash: Hash = createHash('sha256')
  private written = 0
  private fh?: FileHandle
  readonly tempPath: string

  private constructor (readonly finalPath: string, readonly entry: Entry) {
    this.tempPath = tempNameIn(dirname(finalPath))
  }

  static async create (finalPath: string, entry: Entry): Promise<AtomicFileWriter> {
    const w = new AtomicFileWriter(finalPath, entry)
    // 'wx' = O_CREAT|O_EXCL: never opens an existing file or follows a planted symlink.
    // Created with the final permission bits when the umask allows, to spare a chmod.
    w.fh = await open(w.tempPath, 'wx', createMode(entry.mode))
    return w
  }

  get bytesWritten (): number { return this.written }
  get complete (): boolean { return this.written === this.entry.size }

  /**
   * Write bytes at a position without hashing them: the caller hashes in order and
   * passes the digest to commit(). Writes at different positions may run concurrently.
   */
  async writeAt (parts: readonly Uint8Array[], position: number): Promise<void> {
    let len = 0
    for (const p of parts) len += p.byteLength
    if (position + len > this.entry.size) throw new HashMismatchError(`${this.entry.path}: more data than the manifest size ${this.entry.size}`)
    // writev can write short: finish the rest with plain writes
    let done = (await this.fh!.writev(parts as Uint8Array[], position)).bytesWritten
    let skip = done
    for (const p of parts) {
      if (skip >= p.byteLength) { skip -= p.byteLength; continue }
      let off = skip
      skip = 0
      while (off < p.byteLength) {
        const r = await this.fh!.write(p, off, p.byteLength - off, position + done)
        off += r.bytesWritten
        done += r.bytesWritten
      }
    }
    this.written += len
  }

  /** Append bytes (one buffer or several), hashing them: for callers that write in order. */
  async write (data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const parts: Uint8Array[] = data instanceof Uint8Array ? [data] : [...data]
    let len = 0
    for (const p of parts) len += p.byteLength
    if (this.written + len > this.entry.size) {
      throw new HashMismatchError(`${this.entry.path}: more data than the manifest size ${this.entry.size}`)
    }
    for (const p of parts) this.hash.update(p)
    await this.writeAt(parts, this.written)
  }

  /** Verify, fsync, set metadata, rename into place. On any failure the temp file is removed. */
  /** `digest`: the SHA-256 the caller computed over everything given to writeAt, in file order. */
  async commit (digest?: string): Promise<void> {
    try {
      if (this.written !== this.entry.size) throw new HashMismatchError(`${this.entry.path}: got ${this.written} bytes, manifest says ${this.entry.size}`)
      digest ??= this.hash.digest('hex')
      if (digest !== this.entry.hash) throw new HashMismatchError(`${this.entry.path}: SHA-256 ${digest} does not match the manifest`)
      const fh = this.fh!
      await fh.sync()
      // chown before chmod: chown clears setuid/setgid bits. Both only when needed.
      const chown = isRoot && this.entry.uid != null && this.entry.gid != null && (this.entry.uid !== euid || this.entry.gid !== egid)
      if (chown) await fh.chown(this.entry.uid!, this.entry.gid!)
      if (chown || (createMode(this.entry.mode) & ~umask) !== this.entry.mode) await fh.chmod(this.entry.mode)
      await fh.utimes(new Date(), utimesValue(this.entry))
      await fh.close()
      this.fh = undefined
      await rename(this.tempPath, this.finalPath)
    } catch (err) {
      await this.abort()
      throw err
    }
  }

  async abort (): Promise<void> {
    await this.fh?.close().catch(() => {})
    this.fh = undefined
    await unlink(this.tempPath).catch(() => {})
  }
}
