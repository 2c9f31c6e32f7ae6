import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { HashCache } from './hash.js'

/**
 * The source's persistent hash cache: for one source root, the SHA-256 last computed for
 * each (path, size, mtime, inode). A scan of an unchanged tree then reads no file
 * content. Stored as <home>/hashcache/<sha256 of the root path>.json, replaced atomically.
 *
 * Like git's "racily clean" rule, a file modified within RACY_WINDOW_NS of the scan is
 * not cached: it could change again within the same timestamp.
 */
const RACY_WINDOW_NS = 2_000_000_000n
const FORMAT = 1

type Row = [size: number, mtime: number, nsec: number, ino: number, hash: string]

/**
 * Saves under way in this process, per cache file. Saves of one file run one after the other,
 * in the order they were started, and a load waits for them: a daemon saves a task's last
 * hashes after it has answered, and the next task must still see them.
 */
const saving = new Map<string, Promise<void>>()

export class FileHashCache implements HashCache {
  private readonly next = new Map<string, Row>()
  hits = 0
  misses = 0
  /** files modified at or after this time (seconds, nanoseconds) are too recent to cache */
  private readonly racySec: number
  private readonly racyNsec: number

  private constructor (private readonly file: string, private readonly prev: Map<string, Row>, scanStartNs: bigint) {
    const racy = scanStartNs - RACY_WINDOW_NS
    this.racySec = Number(racy / 1_000_000_000n)
    this.racyNsec = Number(racy % 1_000_000_000n)
  }

  static fileFor (dir: string, root: string): string {
    return join(dir, createHash('sha256').update(root).digest('hex').slice(0, 32) + '.json')
  }

  /** Load the cache of `root` (empty when missing or unreadable: the cache is only an optimisation). */
  static async load (dir: string, root: string): Promise<FileHashCache> {
    const file = FileHashCache.fileFor(dir, root)
    await saving.get(file)
    const prev = new Map<string, Row>()
    try {
      const doc = JSON.parse(await readFile(file, 'utf8')) as { format: number, root: string, rows: Record<string, Row> }
      if (doc.format === FORMAT && doc.root === root) for (const [p, r] of Object.entries(doc.rows)) prev.set(p, r)
    } catch {}
    return new FileHashCache(file, prev, BigInt(Date.now()) * 1_000_000n)
  }

  lookup (path: string, size: number, mtime: number, mtimeNsec: number, ino: number): string | undefined {
    const r = this.prev.get(path)
    if (r != null && r[0] === size && r[1] === mtime && r[2] === mtimeNsec && r[3] === ino) {
      this.hits++
      this.next.set(path, r)
      return r[4]
    }
    this.misses++
    return undefined
  }

  store (path: string, size: number, mtime: number, mtimeNsec: number, ino: number, hash: string): void {
    // compared as (seconds, nanoseconds): no BigInt per file
    if (mtime > this.racySec || (mtime === this.racySec && mtimeNsec >= this.racyNsec)) return
    this.next.set(path, [size, mtime, mtimeNsec, ino, hash])
    this.stored++
  }

  private stored = 0

  /** Write what this scan saw (entries of deleted files drop out). */
  async save (root: string): Promise<void> {
    // every row was looked up and found, none added: the file already says this
    if (this.stored === 0 && this.next.size === this.prev.size && this.hits === this.prev.size) return
    const prior = saving.get(this.file)
    const write = (async () => {
      await prior
      await mkdir(join(this.file, '..'), { recursive: true, mode: 0o700 })
      const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
      await writeFile(tmp, JSON.stringify({ format: FORMAT, root, rows: Object.fromEntries(this.next) }), { mode: 0o600 })
      await rename(tmp, this.file)
    })()
    // what waits on `saving` never sees this save's error: its caller does
    const settled = write.catch(() => {})
    saving.set(this.file, settled)
    try {
      await write
    } finally {
      if (saving.get(this.file) === settled) saving.delete(this.file)
    }
  }
}
