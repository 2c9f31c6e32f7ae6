import { SHARE_ENV, Worker } from 'node:worker_threads'

/**
 * One worker thread per process that does the system calls of small files (create, write,
 * metadata, close; syncfs and rename), so the main thread can go on decrypting and
 * verifying the next ones; a source's scan also hashes part of its small files there. Requests are batched: the data of many files travels in one
 * transferred buffer. Started on first use; it does not keep the process alive when idle.
 */

/** One file to create under a temp name: `length` bytes at `offset` of the request's data. */
export interface CreateJob {
  temp: string
  createMode: number
  offset: number
  length: number
  /** [uid, gid] when the owner must be set (as root) */
  chown?: [number, number]
  /** mode to set after creation (umask, setuid bits) */
  chmod?: number
  /** mtime for futimes: seconds, or a Date before 1970 */
  mtime: number | Date
}

export type WorkerRequest =
  | { id: number, op: 'create', jobs: CreateJob[], data: ArrayBuffer }
  /** syncPaths: one path per file system for `sync -f`; null: fsync each file instead */
  | { id: number, op: 'commit', syncPaths: string[] | null, items: Array<[temp: string, final: string]> }
  /** SHA-256 of small files (read whole, O_NOFOLLOW), for a scan: [path, expected size] */
  | { id: number, op: 'hash', items: Array<[path: string, size: number]> }

/**
 * Per file: its device (create), nothing (rename done), its hash (hash), or the error;
 * `changed`: the file no longer has the expected size (hash it the ordinary way).
 */
export interface WorkerResult { dev?: number, hash?: string, error?: string, code?: string, changed?: boolean }
export interface WorkerReply { id: number, results: WorkerResult[], syncfsUnsupported?: boolean, fatal?: string }

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
export function workerError (r: WorkerResult): NodeJS.ErrnoException {
  return Object.assign(new Error(r.error), r.code != null ? { code: r.code } : {})
}
