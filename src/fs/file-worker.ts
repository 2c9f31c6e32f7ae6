import { availableParallelism } from 'node:os'
import { SHARE_ENV, Worker } from 'node:worker_threads'

/**
 * Worker threads that do the system calls of small files (create, write, metadata, close;
 * syncfs and rename), so the main thread can go on decrypting and verifying the next ones; a
 * source's scan also hashes part of its small files there, and large files to send are read
 * and hashed there (large-file-reader.ts). Requests are batched: the data of
 * many files travels in one transferred buffer. Started on first use; they do not keep the
 * process alive when idle.
 */

/**
 * Small files to create under temp names in their final directories: file i is
 * `lengths[i]` bytes of `data` (one after another), must have SHA-256 `hashes[i]`, goes to
 * `finals[i]` once committed; `meta` holds 6 numbers per file: create mode, mode to set
 * after creation or -1, uid and gid to set or -1, mtime seconds, nanoseconds. `seq` is the
 * first file's number: the worker keeps created files until a `commit`.
 */
export interface FilesRequest {
  /** the SmallFileBatch that sends them: a commit covers its own files only */
  owner: number
  seq: number
  data: ArrayBuffer
  finals: string[]
  lengths: number[]
  hashes: string[]
  meta: number[]
}

export type WorkerRequest =
  | ({ id: number, op: 'files' } & FilesRequest)
  /** make every file created so far durable (one syncfs per file system, or an fsync each: `fsyncEach`) and rename it into place */
  | { id: number, op: 'commit', owner: number, fsyncEach: boolean }
  /** SHA-256 of small files (read whole, O_NOFOLLOW), for a scan: [path, expected size] */
  | { id: number, op: 'hash', items: Array<[path: string, size: number]> }
  /** a large file to send (large-file-reader.ts); `hashPrefix` ≥ 0: hash it, its first `hashPrefix` bytes at once */
  | { id: number, op: 'read-open', file: number, fd: number, hashPrefix: number }
  /** read (and hash) up to `length` bytes at `position`: replied in `data`, transferred */
  | { id: number, op: 'read', file: number, position: number, length: number }
  /** forget the file; reply with its SHA-256 when it was hashed */
  | { id: number, op: 'read-close', file: number }

/** A file that failed: its number (`seq`), the error and its code. */
export type FileFailure = [seq: number, error: string, code: string | undefined]

/**
 * read-*: one result, with the error of a failed call, read-close's hash, or the bytes read
 * (`bytes` of `data`).
 * hash: per file its hash, the error, or `changed` (no longer the expected size: hash it the
 * ordinary way). files: the files that could not be created. commit: every file of the owner
 * created before it is settled; those in `failed` did not get in place.
 */
export interface WorkerResult { hash?: string, error?: string, code?: string, changed?: boolean, bytes?: number }
export interface WorkerReply { id: number, results?: WorkerResult[], data?: ArrayBuffer, failed?: FileFailure[], syncfsUnsupported?: boolean, fatal?: string }

/**
 * Worker threads for small files: the kernel's work of creating files (tens of µs each here)
 * is the longest thread of a target taking a tree of small files, so a batch spreads its
 * requests over two lanes when the machine has two cores or more. Lane 0 also does everything
 * else (scan hashes, large files to send); a lane's thread starts on its first request.
 */
export const FILE_LANES = Math.min(2, availableParallelism())

interface Lane {
  worker?: Worker
  /** how many threads this lane has started: a new one knows nothing of its predecessor's files */
  generation: number
  pending: Map<number, { resolve: (r: WorkerReply) => void, reject: (err: Error) => void }>
}
const lanes: Lane[] = Array.from({ length: FILE_LANES }, () => ({ generation: 0, pending: new Map() }))
let nextId = 0

function failAll (lane: Lane, err: Error): void {
  for (const p of lane.pending.values()) p.reject(err)
  lane.pending.clear()
  lane.worker = undefined
}

function theWorker (lane: Lane): Worker {
  if (lane.worker != null) return lane.worker
  const w = new Worker(new URL('./file-worker-thread.js', import.meta.url), { env: SHARE_ENV })
  w.on('message', (reply: WorkerReply) => {
    const p = lane.pending.get(reply.id)
    if (p == null) return
    lane.pending.delete(reply.id)
    if (lane.pending.size === 0) w.unref()
    if (reply.fatal != null) p.reject(new Error(`file worker: ${reply.fatal}`))
    else p.resolve(reply)
  })
  w.on('error', (err) => { if (lane.worker === w) failAll(lane, err) })
  w.on('exit', (code) => { if (lane.worker === w) failAll(lane, new Error(`file worker exited (${code})`)) })
  w.unref()
  lane.worker = w
  lane.generation++
  return w
}

/**
 * The generation of the thread that takes the next request of `lane` (call it right after
 * fileWorker(), which posts synchronously). A commit answered by another generation than the
 * one that created a file cannot have renamed that file: its thread died with it.
 */
export function laneGeneration (lane: number): number {
  return lanes[lane % FILE_LANES].generation
}

/** Ends the thread of `lane` as a crash would (for tests). */
export async function stopFileLane (lane: number): Promise<void> {
  await lanes[lane % FILE_LANES].worker?.terminate()
}

/** How many lanes have a running thread (for tests). */
export function fileLanesRunning (): number {
  return lanes.filter(l => l.worker != null).length
}

/** Send one request to the worker of `lane` (0 unless a caller spreads small files); resolves with its reply. */
export async function fileWorker (req: WorkerRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never, transfer: ArrayBuffer[] = [], lane = 0): Promise<WorkerReply> {
  const l = lanes[lane % FILE_LANES]
  const w = theWorker(l)
  const id = nextId++
  return await new Promise<WorkerReply>((resolve, reject) => {
    l.pending.set(id, { resolve, reject })
    w.ref()
    w.postMessage({ ...req, id }, transfer)
  })
}

/** An Error with the worker's message and code, as if the call had failed here. */
export function workerError (r: { error?: string, code?: string }): NodeJS.ErrnoException {
  return Object.assign(new Error(r.error), r.code != null ? { code: r.code } : {})
}
