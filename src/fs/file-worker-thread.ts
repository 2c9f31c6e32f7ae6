/**
 * The file worker thread (see file-worker.ts): verifies (SHA-256), creates, writes and
 * renames small files with synchronous calls, off the daemon's main thread, and hashes small
 * files for a scan. File creation is the costliest
 * step of a tree of small files (tens of µs each in the kernel); here it overlaps with
 * the main thread's decryption, framing and hashing.
 */
import { execFile } from 'node:child_process'
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, fsyncSync, futimesSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { parentPort } from 'node:worker_threads'
import { createHash, hash, type Hash } from 'node:crypto'
import { dirname } from 'node:path'
import type { FileFailure, FilesRequest, WorkerReply, WorkerRequest, WorkerResult } from './file-worker.js'
import { hashSmallFileSync } from './read-small.js'
import { tempNameIn } from './atomic-writer.js'
import { utimesValue } from '../manifest/time.js'

function failure (err: unknown): WorkerResult {
  const e = err as NodeJS.ErrnoException
  return { error: e.message ?? String(err), code: e.code }
}

function fileFailure (seq: number, err: unknown): FileFailure {
  const { error, code } = failure(err)
  return [seq, error!, code]
}

/** Created files waiting for their owner's commit (each SmallFileBatch is an owner). */
let created: Array<{ owner: number, seq: number, temp: string, final: string, dev: number }> = []

/** Verify, create, write, set metadata, close: one small file of a `files` request. */
function createOne (req: FilesRequest, i: number, data: Uint8Array, offset: number, devOf: Map<string, number>): void {
  const length = req.lengths[i]
  const bytes = data.subarray(offset, offset + length)
  const digest = hash('sha256', bytes, 'hex')
  if (digest !== req.hashes[i]) throw Object.assign(new Error(`SHA-256 ${digest} does not match the source's`), { code: 'EHASH' })
  const m = 6 * i
  const dir = dirname(req.finals[i])
  const temp = tempNameIn(dir)
  let fd: number | undefined
  try {
    // O_EXCL: never opens an existing file or follows a planted symlink
    fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, req.meta[m])
    let off = 0
    while (off < length) off += writeSync(fd, bytes, off, length - off)
    if (req.meta[m + 2] >= 0) fchownSync(fd, req.meta[m + 2], req.meta[m + 3])
    if (req.meta[m + 1] >= 0) fchmodSync(fd, req.meta[m + 1])
    futimesSync(fd, new Date(), utimesValue({ mtime: req.meta[m + 4], mtimeNsec: req.meta[m + 5] }))
    // a file is on its directory's file system: one fstat per directory and request
    let dev = devOf.get(dir)
    if (dev == null) { dev = fstatSync(fd).dev; devOf.set(dir, dev) }
    const done = fd
    fd = undefined // never closed twice (a descriptor number is reused at once, by any thread)
    closeSync(done)
    created.push({ owner: req.owner, seq: req.seq + i, temp, final: req.finals[i], dev })
  } catch (err) {
    if (fd != null) try { closeSync(fd) } catch {}
    try { unlinkSync(temp) } catch {}
    throw err
  }
}

function createFiles (req: FilesRequest): FileFailure[] {
  const data = new Uint8Array(req.data)
  const failed: FileFailure[] = []
  const devOf = new Map<string, number>()
  let offset = 0
  for (let i = 0; i < req.finals.length; i++) {
    try {
      createOne(req, i, data, offset, devOf)
    } catch (err) {
      failed.push(fileFailure(req.seq + i, err))
    }
    offset += req.lengths[i]
  }
  return failed
}

/** syncfs(2) on the file systems holding these paths, by coreutils `sync -f` (Node has no syncfs). */
async function syncFileSystems (paths: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('sync', ['-f', '--', ...paths], { timeout: 10 * 60_000 }, (err, _out, stderr) => {
      if (err == null) { resolve(); return }
      // no `sync`, or one without -f: fsync instead; anything else (EIO, ENOSPC, a timeout)
      // means the batch's data may not be on disk
      const unsupported = (err as NodeJS.ErrnoException).code === 'ENOENT' || /invalid option|unrecognized option/.test(String(stderr))
      reject(Object.assign(err, { unsupported }))
    })
  })
}

function hashSmall (path: string, size: number): WorkerResult {
  const h = hashSmallFileSync(path, size)
  return typeof h === 'string' ? { hash: h } : h != null ? failure(h) : { changed: true }
}

/** Large files being read for sending: their descriptor and, for a deferred hash, the running hash. */
const reading = new Map<number, { fd: number, hash?: Hash }>()

/** Reads up to `length` bytes at `position` into `buf`; fewer only at the end of the file. */
function readFully (fd: number, buf: Uint8Array, length: number, position: number): number {
  let got = 0
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got)
    if (n === 0) break
    got += n
  }
  return got
}

function readOpen (req: Extract<WorkerRequest, { op: 'read-open' }>): WorkerResult {
  const f: { fd: number, hash?: Hash } = { fd: req.fd, hash: req.hashPrefix >= 0 ? createHash('sha256') : undefined }
  try {
    if (f.hash != null && req.hashPrefix > 0) {
      const buf = Buffer.allocUnsafe(Math.min(req.hashPrefix, 1 << 20))
      for (let pos = 0; pos < req.hashPrefix;) {
        const n = readFully(f.fd, buf, Math.min(buf.length, req.hashPrefix - pos), pos)
        if (n === 0) throw new Error('file shrank while being sent')
        f.hash.update(buf.subarray(0, n))
        pos += n
      }
    }
  } catch (err) {
    return failure(err)
  }
  reading.set(req.file, f)
  return {}
}

function read (req: Extract<WorkerRequest, { op: 'read' }>): WorkerReply {
  const f = reading.get(req.file)
  if (f == null) return { id: req.id, results: [{ error: 'file worker: unknown file (the worker restarted?)' }] }
  try {
    // not zero-filled: every byte given back is read from the file
    const buf = Buffer.allocUnsafeSlow(req.length)
    const bytes = readFully(f.fd, buf, req.length, req.position)
    f.hash?.update(buf.subarray(0, bytes))
    return { id: req.id, results: [{ bytes }], data: buf.buffer as ArrayBuffer }
  } catch (err) {
    return { id: req.id, results: [failure(err)] }
  }
}

async function handle (req: WorkerRequest): Promise<WorkerReply> {
  if (req.op === 'read') return read(req)
  if (req.op === 'read-open') return { id: req.id, results: [readOpen(req)] }
  if (req.op === 'read-close') {
    const f = reading.get(req.file)
    reading.delete(req.file)
    return { id: req.id, results: [{ hash: f?.hash?.digest('hex') }] }
  }
  if (req.op === 'hash') return { id: req.id, results: req.items.map(([path, size]) => hashSmall(path, size)) }
  if (req.op === 'files') return { id: req.id, failed: createFiles(req) }
  // commit: make the temp files durable (one syncfs per file system, or an fsync each), then rename
  const items = created.filter(c => c.owner === req.owner)
  created = created.filter(c => c.owner !== req.owner)
  // a temp file on each file system involved: what `sync -f` is given
  const onDevice = new Map<number, string>()
  for (const c of items) if (!onDevice.has(c.dev)) onDevice.set(c.dev, c.temp)
  const syncPaths = [...onDevice.values()]
  let fsyncEach = req.fsyncEach
  if (!fsyncEach && syncPaths.length > 0) {
    try {
      await syncFileSystems(syncPaths)
    } catch (err) {
      if ((err as { unsupported?: boolean }).unsupported !== true) {
        const message = `could not make the files durable (sync -f): ${(err as Error).message.split('\n')[0]}`
        for (const { temp } of items) try { unlinkSync(temp) } catch {}
        return { id: req.id, failed: items.map(({ seq }) => [seq, message, undefined]) }
      }
      fsyncEach = true
    }
  }
  const failed: FileFailure[] = []
  for (const { seq, temp, final } of items) {
    try {
      if (fsyncEach) {
        const fd = openSync(temp, constants.O_RDONLY | constants.O_NOFOLLOW)
        try { fsyncSync(fd) } finally { closeSync(fd) }
      }
      renameSync(temp, final)
    } catch (err) {
      try { unlinkSync(temp) } catch {}
      failed.push(fileFailure(seq, err))
    }
  }
  return { id: req.id, failed, syncfsUnsupported: fsyncEach && !req.fsyncEach }
}

parentPort?.on('message', (req: WorkerRequest) => {
  handle(req).then(
    (reply) => { parentPort!.postMessage(reply, reply.data != null ? [reply.data] : []) },
    (err) => { parentPort!.postMessage({ id: req.id, results: [], fatal: String(err) }) }
  )
})
