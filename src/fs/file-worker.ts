import { SHARE_ENV, Worker } from 'node:worker_threads'

/**
 * One worker thread per process that does the system calls of small files (create, write,
 * metadata, close; syncfs and rename), so the main thread can go on decrypting and
 * verifying the next ones; a source's scan also hashes part of its small files there. Requests are batched: the data of many files travels in one
 * transferred buffer. Started on first use; it does not keep the process alive when idle.
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
  /** a large file written with O_DIRECT (direct-io.ts): its descriptor */
  | { id: number, op: 'direct-open', file: number, fd: number }
  /** hash the first `bytes` of `data` (transferred, and back in the reply) and write them at `position`, padded with zeros to a block */
  | { id: number, op: 'direct-write', file: number, data: ArrayBuffer, bytes: number, position: number }
  /** forget the file; with `digest`, reply with the SHA-256 of everything hashed */
  | { id: number, op: 'direct-close', file: number, digest: boolean }
  /** a large file to send (large-file-reader.ts); `hashPrefix` ≥ 0: hash it, its first `hashPrefix` bytes at once */
  | { id: number, op: 'read-open', file: number, fd: number, hashPrefix: number }
  /** read (and hash) up to `length` bytes at `position`: replied in `data`, transferred */
  | { id: number, op: 'read', file: number, position: number, length: number }
  /** forget the file; reply with its SHA-256 when it was hashed */
  | { id: number, op: 'read-close', file: number }

/** A file that failed: its number (`seq`), the error and its code. */
export type FileFailure = [seq: number, error: string, code: string | undefined]

/**
 * direct-*, read-*: one result, with the error of a failed call, direct-close's or
 * read-close's hash, or the bytes read (`bytes` of `data`).
 * hash: per file its hash, the error, or `changed` (no longer the expected size: hash it the
 * ordinary way). files: the files that could not be created. commit: the files up to
 * `through` are settled; those in `failed` did not get in place.
 */
export interface WorkerResult { hash?: string, error?: string, code?: string, changed?: boolean, bytes?: number }
export interface WorkerReply { id: number, results?: WorkerResult[], data?: ArrayBuffer, failed?: FileFailure[], through?: number, syncfsUnsupported?: boolean, fatal?: string }

let worker: Worker | undefined
let nextId = 0
const pending = new Map<number, { resolve: (r: WorkerReply) => void, reject: (err: Error) => void }>()

function failAll (err: Error): void {
  for (const p of pending.values()) p.reject(err)
  pending.clear()
  worker = undefined
}

function theWorker (): Worker {
  if (worker != null) return worker
  const w = new Worker(new URL('./file-worker-thread.js', import.meta.url), { env: SHARE_ENV })
  w.on('message', (reply: WorkerReply) => {
    const p = pending.get(reply.id)
    if (p == null) return
    pending.delete(reply.id)
    if (pending.size === 0) w.unref()
    if (reply.fatal != null) p.reject(new Error(`file worker: ${reply.fatal}`))
    else p.resolve(reply)
  })
  w.on('error', (err) => { failAll(err) })
  w.on('exit', (code) => { if (worker === w) failAll(new Error(`file worker exited (${code})`)) })
  w.unref()
  worker = w
  return w
}

/** Send one request to the worker; resolves with its reply. */
export async function fileWorker (req: WorkerRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
  const w = theWorker()
  const id = nextId++
  return await new Promise<WorkerReply>((resolve, reject) => {
    pending.set(id, { resolve, reject })
    w.ref()
    w.postMessage({ ...req, id }, transfer)
  })
}

/** An Error with the worker's message and code, as if the call had failed here. */
export function workerError (r: { error?: string, code?: string }): NodeJS.ErrnoException {
  return Object.assign(new Error(r.error), r.code != null ? { code: r.code } : {})
}
