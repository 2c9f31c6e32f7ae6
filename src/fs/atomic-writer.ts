import { createHash, randomBytes, type Hash } from 'node:crypto'
import { constants } from 'node:fs'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { TEMP_PREFIX } from '../manifest/scan.js'
import type { Entry } from '../manifest/types.js'
import { utimesValue } from '../manifest/time.js'
import { createDirect, DirectAppender, wantsDirectIo } from './direct-io.js'

export class HashMismatchError extends Error {
  override name = 'HashMismatchError'
}

const tempPrefix = randomBytes(5).toString('hex')
let tempCounter = 0

/** Prefix of kept parts of interrupted files: a temp name too (scans never list it). */
export const PART_PREFIX = TEMP_PREFIX + 'part-'

/**
 * A name for a file's content: its SHA-256, or, while that is deferred (not known before the
 * data), a digest of path, size and mtime: the same file, the same key, in the next session too.
 */
export function contentKey (entry: Entry): string {
  return entry.hash ?? createHash('sha256').update(`deferred\0${entry.path}\0${entry.size}\0${entry.mtime}\0${entry.mtimeNsec}`).digest('hex')
}

/** Where the part of `entry`'s content is kept: same directory, named by its content key. */
export function partialPathFor (finalPath: string, entry: Entry): string {
  return join(dirname(finalPath), PART_PREFIX + contentKey(entry).slice(0, 40))
}

export function tempNameIn (dir: string): string {
  // unique without a random draw per file: a per-process random prefix and a counter
  return join(dir, `${TEMP_PREFIX}${tempPrefix}${(tempCounter++).toString(16).padStart(6, '0')}`)
}

const isRoot = process.getuid?.() === 0
const euid = process.geteuid?.() ?? -1
const egid = process.getegid?.() ?? -1
/** read once: new files get (mode & ~umask) */
const umask = process.umask()
export const processUmask = umask

/** Permission bits for a new temp file: the final ones, but always readable and writable by us. */
export function createMode (mode: number): number {
  return (mode & 0o777) | 0o600
}

/** What a temp file created with createMode() still needs: chown (as root, to another owner), chmod. */
export function metadataSteps (entry: Entry): { chown: boolean, chmod: boolean } {
  const chown = isRoot && entry.uid != null && entry.gid != null && (entry.uid !== euid || entry.gid !== egid)
  // chown clears setuid/setgid bits, so chmod comes after it
  return { chown, chmod: chown || (createMode(entry.mode) & ~umask) !== entry.mode }
}

/**
 * Writes one file under a temp name in its final directory and renames it into place
 * only after size and SHA-256 match the manifest: nothing half-written is ever visible
 * at the final path. Mode, mtime (and owner, as root) are set before the rename.
 */
/**
 * A large file is flushed to disk as it is written, every this many bytes, so the fsync
 * before the rename finds little left to do (it is on the critical path: the last file of a
 * transfer is renamed only after it).
 */
const ROLLING_SYNC_BYTES = 32 * 1024 * 1024

export class AtomicFileWriter {
  private readonly hash: Hash = createHash('sha256')
  private written = 0
  private unsynced = 0
  private syncing?: Promise<void>
  private flushError?: Error
  private fh?: FileHandle
  /** set when the file is written with O_DIRECT (large files, in order, from offset 0) */
  private direct?: DirectAppender
  readonly tempPath: string

  private constructor (readonly finalPath: string, readonly entry: Entry) {
    this.tempPath = tempNameIn(dirname(finalPath))
  }

/**
   * Continue an interrupted file: the part kept by keepPartial() is moved to a fresh temp
   * name, cut to `offset` and its first `offset` bytes hashed again. Throws when no part of
   * at least `offset` bytes exists.
   */
  static async resume (finalPath: string, entry: Entry, offset: number): Promise<AtomicFileWriter> {
    const w = new AtomicFileWriter(finalPath, entry)
    const part = partialPathFor(finalPath, entry)
    await rename(part, w.tempPath)
    w.fh = await open(w.tempPath, constants.O_RDWR | constants.O_NOFOLLOW)
    try {
      const st = await w.fh.stat()
      if (!st.isFile() || st.size < offset) throw new HashMismatchError(`${entry.path}: the kept part has ${st.size} bytes, cannot resume at ${offset}`)
      await w.fh.truncate(offset)
      const buf = Buffer.allocUnsafe(Math.min(offset, 1 << 20) || 1)
      let pos = 0
      while (pos < offset) {
        const { bytesRead } = await w.fh.read(buf, 0, Math.min(buf.length, offset - pos), pos)
        if (bytesRead === 0) throw new HashMismatchError(`${entry.path}: the kept part ended early`)
        w.hash.update(buf.subarray(0, bytesRead))
        pos += bytesRead
      }
      w.written = offset
      return w
    } catch (err) {
      await w.abort()
      throw err
    }
  }

  /**
   * Keep what was written (the source or a relay died): the temp file becomes the part of
   * this content, resumed by a later session instead of sent again. Nothing at the final path.
   */
  async keepPartial (): Promise<void> {
    if (this.written === 0) { await this.abort(); return }
    if (this.direct != null) {
      try { await this.direct.finish() } catch { await this.abort(); return }
    }
    await this.syncing
    await this.fh?.close().catch(() => {})
    this.fh = undefined
    await rename(this.tempPath, partialPathFor(this.finalPath, this.entry)).catch(async () => { await unlink(this.tempPath).catch(() => {}) })
  }

  static async create (finalPath: string, entry: Entry): Promise<AtomicFileWriter> {
    const w = new AtomicFileWriter(finalPath, entry)
    // 'wx' = O_CREAT|O_EXCL: never opens an existing file or follows a planted symlink.
    // Created with the final permission bits when the umask allows, to spare a chmod.
    if (wantsDirectIo(entry.size)) {
      w.fh = await createDirect(w.tempPath, createMode(entry.mode))
      if (w.fh != null) w.direct = new DirectAppender(w.fh)
    }
    w.fh ??= await open(w.tempPath, 'wx', createMode(entry.mode))
    return w
  }

  get bytesWritten (): number { return this.written }
  get complete (): boolean { return this.written === this.entry.size }

  /**
   * Write the next bytes of the file (`position` must be where the last call ended), hashing
   * them in order: on this thread, or for a direct file in the file worker. Settles when
   * they are written (direct: copied into a staging slot); calls may overlap.
   */
  async writeAt (parts: readonly Uint8Array[], position: number): Promise<void> {
    let len = 0
    for (const p of parts) len += p.byteLength
    if (position !== this.written) throw new Error(`${this.entry.path}: written out of order (at ${position}, expected ${this.written})`)
    if (position + len > this.entry.size) throw new HashMismatchError(`${this.entry.path}: more data than the manifest size ${this.entry.size}`)
    this.written += len
    if (this.direct != null) {
      await this.direct.append(parts)
      // the last bytes: to the disk now, not when the expected hash is known (frees the slot)
      if (this.written === this.entry.size) await this.direct.finish()
      return
    }
    for (const p of parts) this.hash.update(p)
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
    this.unsynced += len
    if (this.unsynced >= ROLLING_SYNC_BYTES && this.syncing == null && this.fh != null) {
      this.unsynced = 0
      // in the background; commit() waits for it. A write-back error is reported once per
      // open file: keep it, so commit() fails instead of trusting its own fsync
      this.syncing = this.fh.datasync().catch((err: Error) => { this.flushError ??= err }).finally(() => { this.syncing = undefined })
    }
  }

  /** Append bytes (one buffer or several). */
  async write (data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    await this.writeAt(data instanceof Uint8Array ? [data] : data, this.written)
  }

  /**
   * Verify, fsync, set metadata, rename into place. On any failure the temp file is removed.
   * `expected`: the hash to match (the manifest's, or the source's deferred one).
   */
  async commit (expected: string | undefined = this.entry.hash): Promise<void> {
    try {
      if (this.written !== this.entry.size) throw new HashMismatchError(`${this.entry.path}: got ${this.written} bytes, manifest says ${this.entry.size}`)
      const digest = this.direct != null ? await this.direct.finish() : this.hash.digest('hex')
      if (expected == null || digest !== expected) throw new HashMismatchError(`${this.entry.path}: SHA-256 ${digest} does not match ${expected == null ? 'any hash from the source' : 'the source\'s'}`)
      const fh = this.fh!
      await this.syncing
      if (this.flushError != null) throw this.flushError
      await fh.sync()
      // chown before chmod: chown clears setuid/setgid bits. Both only when needed.
      const steps = metadataSteps(this.entry)
      if (steps.chown) await fh.chown(this.entry.uid!, this.entry.gid!)
      if (steps.chmod) await fh.chmod(this.entry.mode)
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
    await this.direct?.release()
    await this.syncing
    await this.fh?.close().catch(() => {})
    this.fh = undefined
    await unlink(this.tempPath).catch(() => {})
  }
}
