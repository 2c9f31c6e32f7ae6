/**
 * The file worker thread (see file-worker.ts): creates, writes and renames small files
 * with synchronous calls, off the daemon's main thread, and hashes small files for a scan. File creation is the costliest
 * step of a tree of small files (tens of µs each in the kernel); here it overlaps with
 * the main thread's decryption, framing and hashing.
 */
import { execFile } from 'node:child_process'
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, fsyncSync, futimesSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { parentPort } from 'node:worker_threads'
import type { CreateJob, WorkerReply, WorkerRequest, WorkerResult } from './file-worker.js'
import { hashSmallFileSync } from './read-small.js'

function failure (err: unknown): WorkerResult {
  const e = err as NodeJS.ErrnoException
  return { error: e.message ?? String(err), code: e.code }
}

function create (job: CreateJob, data: Uint8Array): WorkerResult {
  let fd: number | undefined
  try {
    // O_EXCL: never opens an existing file or follows a planted symlink
    fd = openSync(job.temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, job.createMode)
    let off = 0
    while (off < job.length) off += writeSync(fd, data, job.offset + off, job.length - off)
    if (job.chown != null) fchownSync(fd, job.chown[0], job.chown[1])
    if (job.chmod != null) fchmodSync(fd, job.chmod)
    futimesSync(fd, new Date(), job.mtime)
    const dev = fstatSync(fd).dev
    const done = fd
    fd = undefined // never closed twice (a descriptor number is reused at once, by any thread)
    closeSync(done)
    return { dev }
  } catch (err) {
    if (fd != null) try { closeSync(fd) } catch {}
    try { unlinkSync(job.temp) } catch {}
    return failure(err)
  }
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

async function handle (req: WorkerRequest): Promise<WorkerReply> {
  if (req.op === 'hash') return { id: req.id, results: req.items.map(([path, size]) => hashSmall(path, size)) }
  if (req.op === 'create') {
    const data = new Uint8Array(req.data)
    return { id: req.id, results: req.jobs.map(job => create(job, data)) }
  }
  // commit: make the temp files durable (one syncfs per file system, or an fsync each), then rename
  let fsyncEach = req.syncPaths == null
  if (req.syncPaths != null) {
    try {
      await syncFileSystems(req.syncPaths)
    } catch (err) {
      if ((err as { unsupported?: boolean }).unsupported !== true) {
        const message = `could not make the files durable (sync -f): ${(err as Error).message.split('\n')[0]}`
        for (const [temp] of req.items) try { unlinkSync(temp) } catch {}
        return { id: req.id, results: req.items.map(() => ({ error: message })), syncfsUnsupported: false }
      }
      fsyncEach = true
    }
  }
  const results = req.items.map(([temp, final]): WorkerResult => {
    try {
      if (fsyncEach) {
        const fd = openSync(temp, constants.O_RDONLY | constants.O_NOFOLLOW)
        try { fsyncSync(fd) } finally { closeSync(fd) }
      }
      renameSync(temp, final)
      return {}
    } catch (err) {
      try { unlinkSync(temp) } catch {}
      return failure(err)
    }
  })
  return { id: req.id, results, syncfsUnsupported: fsyncEach && req.syncPaths != null }
}

parentPort?.on('message', (req: WorkerRequest) => {
  handle(req).then(
    (reply) => { parentPort!.postMessage(reply) },
    (err) => { parentPort!.postMessage({ id: req.id, results: [], fatal: String(err) }) }
  )
})
