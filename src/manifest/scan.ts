import { lstatSync, readdirSync, readlinkSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ManifestDigester } from './digest.js'
import { hashFile, type HashCache } from './hash.js'
import { hashSmallFileSync, SYNC_READ_MAX } from '../fs/read-small.js'
import { fileWorker, workerError } from '../fs/file-worker.js'
import { availableParallelism } from 'node:os'
import type { Entry, Manifest, RootMeta } from './types.js'
import { splitNs, type SplitTime } from './time.js'
import type { BigIntStats } from 'node:fs'

/** Our own temp files (atomic writer) are invisible to scans on both ends. */
export const TEMP_PREFIX = '.gosync-tmp-'
/** Entries stat-ed between two turns of the event loop during a scan (and per batch, streaming). */
const YIELD_EVERY = 1000
export function isTempName (name: string): boolean {
  return name.startsWith(TEMP_PREFIX)
}

export interface ScanOptions {
  /** compute SHA-256 of every file (the source does; a target hashes only what it must) */
  hash: boolean
  /** may be a promise: a cache still loading is awaited only after the walk */
  hashCache?: HashCache | Promise<HashCache | undefined>
  /** called for entries that are skipped (sockets, fifos, devices, unreadable) */
  onWarning?: (message: string) => void
  /**
   * called (after onWarning) for each entry that exists but could not be read (a directory
   * not listed, an lstat, readlink or hash that failed): the tree is then incomplete
   */
  onReadError?: () => void
  /** called with the relative path of every temp file met (they are never entries) */
  onTempFile?: (path: string) => void
  signal?: AbortSignal
  /** files hashed in parallel */
  hashConcurrency?: number
  /** false: leave Manifest.digest empty (default: computed) */
  digest?: boolean
  /**
   * Streaming: called with the root's metadata first, then with each batch of entries as the
   * walk produces them, in manifest order, hashed as they will be in the result (see
   * scanTree). The returned manifest holds the same entries.
   */
  onRoot?: (root: RootMeta) => void
  onEntries?: (entries: readonly Entry[]) => void
  /**
   * Files at least this large whose hash the cache does not know are left without one:
   * the source hashes them while it sends them and gives the hash on the control stream
   * (deferred hashing, see docs/PROTOCOLS.md). Unset: every file is hashed here.
   */
  deferHashMin?: number
}

export class NotADirectoryError extends Error {
  override name = 'NotADirectoryError'
}

function timeOf (st: BigIntStats): SplitTime {
  return splitNs(st.mtimeNs)
}

function rootMeta (st: BigIntStats): RootMeta {
  return { mode: Number(st.mode) & 0o7777, ...timeOf(st), uid: Number(st.uid), gid: Number(st.gid) }
}

/**
 * Walk `root` (never following symlinks) into a sorted manifest. The process working
 * directory is never touched, so concurrent scans are independent.
 *
 * The walk visits each directory's names in sorted order, depth first, which is exactly the
 * manifest's order (comparePaths sorts '/' before every other character): entries are final
 * as soon as they are seen. With `onEntries`, each batch is hashed (cache, deferral) and
 * handed on at once, so a source can send its manifest while it still walks.
 */
export async function scanTree (root: string, opts: ScanOptions): Promise<Manifest> {
  // the root itself may be a symlink to a directory (as with rsync SRC/); nothing below it is followed
  const rootSt = await stat(root, { bigint: true })
  if (!rootSt.isDirectory()) throw new NotADirectoryError(`${root} is not a directory`)
  const rootM = rootMeta(rootSt)
  opts.onRoot?.(rootM)
  const digester = opts.digest === false ? undefined : new ManifestDigester(rootM)
  // Each batch is hashed before it is handed on (entries that cannot be read are dropped).
  // Without onEntries the walk gives one batch, the whole tree, where many small files keep
  // both cores busy (hashEntries' worker).
  const kept: Entry[] = []
  const take = async (batch: Entry[]): Promise<void> => {
    const ok = opts.hash ? await hashedOnly(root, batch, opts) : batch
    appendAll(kept, ok)
    digester?.update(ok)
    if (ok.length > 0) opts.onEntries?.(ok)
  }
  await take(await walk(root, opts, opts.onEntries != null ? take : undefined))
  // a target's scan of its own tree never needs the digest (≈ 1 µs per entry)
  return { root: rootM, entries: kept, digest: digester?.digest() ?? '' }
}

/** `to` += `from`, in a loop of its own (a whole tree's entries when not streaming: docs/ARCHITECTURE.md, "Hot loops"). */
function appendAll (to: Entry[], from: readonly Entry[]): void {
  for (const e of from) to.push(e)
}

/** The entries whose hash is known or deferred after hashing `entries`' files; the unreadable are left out. */
async function hashedOnly (root: string, entries: Entry[], opts: ScanOptions): Promise<Entry[]> {
  const deferred = await hashEntries(root, entries.filter(e => e.type === 'file'), opts)
  return entries.filter(e => e.type !== 'file' || e.hash != null || deferred.has(e))
}

/**
 * Every entry under `root`, in manifest order: a depth-first walk over each directory's sorted
 * names. With `take`, batches of entries are handed to it as the walk goes and only the last,
 * partial batch is returned. (A hot loop in a function of its own: docs/ARCHITECTURE.md.)
 */
async function walk (root: string, opts: ScanOptions, take?: (batch: Entry[]) => Promise<void>): Promise<Entry[]> {
  let entries: Entry[] = []
  const warn = opts.onWarning ?? (() => {})
  const readError = (message: string): void => { warn(message); opts.onReadError?.() }

  // Synchronous lstat/readdir/readlink: ~4 µs each, against ~30 µs for the thread-pool
  // versions here; the event loop gets a turn every YIELD_EVERY entries.
  let sinceYield = 0
  // the directories being listed, innermost last: each with its sorted names and the next to visit
  const open: Array<{ rel: string, names: string[], next: number }> = []
  const list = (rel: string): void => {
    try {
      // names sort by UTF-16 code units, as comparePaths does within one directory
      open.push({ rel, names: readdirSync(rel === '' ? root : join(root, rel)).sort(), next: 0 })
    } catch (err: any) {
      readError(`cannot read directory ${rel === '' ? '.' : rel}: ${err.code ?? err.message}`)
    }
  }
  list('')
  while (open.length > 0) {
    const dir = open[open.length - 1]
    if (dir.next >= dir.names.length) { open.pop(); continue }
    const name = dir.names[dir.next++]
    const rel = dir.rel
    if (isTempName(name)) {
      opts.onTempFile?.(rel === '' ? name : `${rel}/${name}`)
      continue
    }
    if (name.includes('\uFFFD')) {
      warn(`skipping a name under ${rel === '' ? '.' : rel} that is not valid UTF-8`)
      continue
    }
    if (++sinceYield >= YIELD_EVERY) {
      sinceYield = 0
      if (take != null && entries.length > 0) { const batch = entries; entries = []; await take(batch) }
      await new Promise(resolve => setImmediate(resolve))
      opts.signal?.throwIfAborted()
    }
    const e = statEntry(root, rel === '' ? name : `${rel}/${name}`, warn, readError)
    if (e == null) continue
    entries.push(e)
    // its contents come next: depth first
    if (e.type === 'dir') list(e.path)
  }
  return entries
}

/** The entry for one path (lstat, never following a symlink), or undefined with a warning. */
function statEntry (root: string, path: string, warn: (message: string) => void, readError: (message: string) => void): Entry | undefined {
  let st: BigIntStats
  try {
    st = lstatSync(join(root, path), { bigint: true })
  } catch (err: any) {
    if (err.code !== 'ENOENT') readError(`cannot stat ${path}: ${err.code ?? err.message}`)
    return undefined
  }
  // one literal with every field, in one order: all entries share a hidden class, which
  // keeps every later pass over them (digest, diff, wire encoding) fast
  const { mtime, mtimeNsec } = timeOf(st)
  const mode = Number(st.mode) & 0o7777
  const uid = Number(st.uid)
  const gid = Number(st.gid)
  const ino = Number(st.ino)
  // in ms, as a non-bigint stat gives it (the sender compares its fstat within 1 µs: changed-since-scan.ts)
  const ctimeMs = Number(st.ctimeNs) / 1e6
  if (st.isDirectory()) return { path, type: 'dir', mode, mtime, mtimeNsec, size: 0, hash: undefined, target: undefined, uid, gid, ino, ctimeMs }
  if (st.isFile()) return { path, type: 'file', mode, mtime, mtimeNsec, size: Number(st.size), hash: undefined, target: undefined, uid, gid, ino, ctimeMs }
  if (st.isSymbolicLink()) {
    try {
      return { path, type: 'symlink', mode, mtime, mtimeNsec, size: 0, hash: undefined, target: readlinkSync(join(root, path)), uid, gid, ino, ctimeMs }
    } catch (err: any) {
      readError(`cannot read link ${path}: ${err.code ?? err.message}`)
      return undefined
    }
  }
  warn(`skipping ${path}: not a regular file, directory or symlink`)
  return undefined
}

/** Small files hashed per chunk (between two turns of the event loop, or per request to the file worker). */
const HASH_CHUNK = 256
/** With at least this many small files to hash (and more than one core), the file worker hashes some of them. */
const WORKER_HASH_MIN = 2048

/** Fill in `hash` for the given file entries, using the cache where it knows the file. Returns the entries left for deferred hashing. */
export async function hashEntries (root: string, files: Entry[], opts: Pick<ScanOptions, 'hashCache' | 'onWarning' | 'onReadError' | 'signal' | 'hashConcurrency' | 'deferHashMin'>): Promise<Set<Entry>> {
  const deferred = new Set<Entry>()
  const cache = await opts.hashCache
  const small: Entry[] = []
  const other: Entry[] = []
  for (const e of files) {
    const cached = cache?.lookup(e.path, e.size, e.mtime, e.mtimeNsec, e.ino ?? 0)
    if (cached != null) { e.hash = cached; continue }
    if (opts.deferHashMin != null && e.size >= opts.deferHashMin) { deferred.add(e); continue }
    if (e.size <= SYNC_READ_MAX) small.push(e)
    else other.push(e)
  }
  const hashed = (e: Entry, hash: string): void => {
    e.hash = hash
    cache?.store?.(e.path, e.size, e.mtime, e.mtimeNsec, e.ino ?? 0, hash)
  }
  const unreadable = (e: Entry, err: NodeJS.ErrnoException): void => {
    opts.signal?.throwIfAborted()
    opts.onWarning?.(`cannot read ${e.path}: ${err.code ?? err.message}`)
    // (vanished since its lstat: as if the walk had not met it)
    if (err.code !== 'ENOENT') opts.onReadError?.()
  }

  // Small files, read whole with synchronous calls, chunk by chunk; with many of them the
  // file worker thread takes chunks too, so a second core hashes while this one does.
  // A file whose size changed since its lstat joins the others (hashed as it is now).
  let next = 0
  const chunk = (): Entry[] => small.slice(next, (next += HASH_CHUNK))
  const here = async (): Promise<void> => {
    for (let c = chunk(); c.length > 0; c = chunk()) {
      for (const e of c) {
        const h = hashSmallFileSync(join(root, e.path), e.size)
        if (typeof h === 'string') hashed(e, h)
        else if (h != null) unreadable(e, h)
        else other.push(e)
      }
      // a turn of the event loop: the worker's answers, heartbeats, sessions opening
      await new Promise(resolve => setImmediate(resolve))
      opts.signal?.throwIfAborted()
    }
  }
  const inWorker = async (): Promise<void> => {
    for (let c = chunk(); c.length > 0; c = chunk()) {
      const reply = await fileWorker({ op: 'hash', items: c.map(e => [join(root, e.path), e.size]) })
      c.forEach((e, i) => {
        const r = reply.results?.[i]
        if (r?.hash != null) hashed(e, r.hash)
        else if (r?.error != null) unreadable(e, workerError(r))
        else other.push(e)
      })
    }
  }
  const useWorker = small.length >= WORKER_HASH_MIN && availableParallelism() > 1
  await Promise.all([here(), useWorker ? inWorker() : undefined])

  // larger files: streamed, several at once
  let k = 0
  const streamer = async (): Promise<void> => {
    while (k < other.length) {
      const e = other[k++]
      try {
        hashed(e, await hashFile(join(root, e.path), opts.signal, e.size))
      } catch (err) {
        unreadable(e, err as NodeJS.ErrnoException)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, opts.hashConcurrency ?? 8) }, streamer))
  return deferred
}
