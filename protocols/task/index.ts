import { z } from 'zod/v3'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { FramedStream, GREETING_LIMITS } from '../framing/framed-stream.js'
import { expectJson, readJson, writeJson, ProtocolError } from '../framing/json.js'
import { runSync, TaskError, type SourceOptions, type SyncTask } from '../../src/sync/run-sync.js'
import { resolveDeepest, underRoots } from '../../src/fs/safe-path.js'
import { isAbsolute, normalize, resolve } from 'node:path'
import { overlaps } from '../../src/manifest/paths.js'
import { parseTarget } from '../../src/node/targets.js'
import type { SyncEvent, SyncReport } from '../../src/sync/report.js'

/**
 * /gosync/task/1: a trusted peer asks this node to run a sync as the source (the CLI's
 * --from). Request: one `task` frame. Response: `event` frames, then one `report` or
 * `error` frame.
 */
export const TASK_PROTOCOL = '/gosync/task/1'
const MAX_TASK_FRAME = 16 * 1024 * 1024

export const TaskSchema = z.object({
  src: z.string().min(1).max(4096),
  dst: z.string().min(1).max(4096),
  targets: z.array(z.string().min(1).max(1024)).min(1).max(10_000),
  delete: z.boolean(),
  compress: z.boolean(),
  dryRun: z.boolean(),
  atomic: z.boolean().optional(),
  fanout: z.number().int().min(1).max(64).optional(),
  retries: z.number().int().min(0).max(5).optional(),
  frameBytes: z.number().int().positive().optional(),
  stallMs: z.number().int().positive().max(3_600_000).optional()
})
const Request = z.object({ type: z.literal('task'), task: TaskSchema })
const Response = z.discriminatedUnion('type', [
  z.object({ type: z.literal('event'), event: z.any() }),
  z.object({ type: z.literal('report'), report: z.any() }),
  z.object({ type: z.literal('error'), code: z.string(), message: z.string() })
])

export class TaskRefusedError extends Error {
  override name = 'TaskRefusedError'
  constructor (readonly code: string, message: string) { super(message) }
}

/** What a peer's task may read on this host: never the daemon's home, and only under `roots` when some are set. */
export interface TaskSourcePolicy {
  /** the daemon's home (its identity key, trust list, address book) */
  home: string
  /** the daemon's --allow-root roots; empty = any directory outside the home */
  roots: string[]
  /**
   * Holds the resolved source for the task's length: no session may write in it or over it
   * meanwhile (it could put a symlink where the check found a directory). Returns the release;
   * throws when a session writes there now.
   */
  hold?: (resolved: string) => () => void
}

/**
 * Refuses a task's source directory that the policy does not allow, as resolved (realpath of
 * its deepest existing part), so a symlink cannot lead to the home or out of the roots. A
 * trusted peer may write under the roots; it may not read this host's key and impersonate it to
 * every peer that trusts it. Returns the resolved path: the task reads that, not the path given.
 */
export async function checkTaskSource (src: string, policy: TaskSourcePolicy): Promise<string> {
  if (!isAbsolute(src)) throw new TaskError('--src must be an absolute path')
  const resolved = await resolveDeepest(normalize(src).replace(/\/+$/, '') || '/')
  const home = await resolveDeepest(resolve(policy.home))
  if (overlaps(resolved, home)) throw new TaskError(`source ${src} is, or holds, this daemon's home ${home}: a peer's task may not read it`)
  if (policy.roots.length === 0) return resolved
  if (!await underRoots(resolved, policy.roots)) throw new TaskError(`source ${src} is outside this daemon's allowed roots (${policy.roots.join(', ')}): a peer's task may read only there`)
  return resolved
}

export async function handleTaskStream (node: Libp2p, stream: Stream, connection: Connection, isTrusted: (peer: string) => boolean, policy: TaskSourcePolicy, source: SourceOptions = {}): Promise<void> {
  const remote = connection.remotePeer.toString()
  const fs = new FramedStream(stream, isTrusted(remote) ? { maxFrameBytes: MAX_TASK_FRAME } : GREETING_LIMITS)
  // the requester keeps its end open until the report: if it closes or resets it first, it is
  // gone (Ctrl-C), and so is the point of the task
  const gone = new AbortController()
  const cancel = (): void => { gone.abort(new Error('the requester went away')) }
  let release: (() => void) | undefined
  try {
    if (!isTrusted(remote)) {
      await writeJson(fs, { type: 'error', code: 'untrusted', message: `peer ${remote} is not trusted by ${node.peerId.toString()} to start tasks; on that host run: gosync trust ${remote}` })
      return
    }
    const req = await expectJson(fs, Request, AbortSignal.timeout(30_000))
    stream.addEventListener('remoteCloseWrite', cancel)
    stream.addEventListener('close', cancel)
    if (stream.status !== 'open' || stream.remoteWriteStatus === 'closed') cancel()
    const src = await checkTaskSource(req.task.src, policy)
    try {
      release = policy.hold?.(src)
    } catch (err) {
      throw new TaskError(`the source ${src} is being written by a session now: ${(err as Error).message}`)
    }
    // a session that ended between the check and the hold may have changed what the path leads to
    if (policy.hold != null && await checkTaskSource(req.task.src, policy) !== src) throw new TaskError(`the source ${req.task.src} changed while it was being checked`)
    const report = await runSync(node, { ...req.task, src }, (event) => { writeJson(fs, { type: 'event', event }).catch(() => {}) }, { ...source, signal: gone.signal })
    await writeJson(fs, { type: 'report', report })
  } catch (err) {
    const e = err as Error
    await writeJson(fs, { type: 'error', code: e instanceof TaskError ? 'task' : 'failed', message: e.message }).catch(() => {})
  } finally {
    release?.()
    await fs.closeWrite()
    await readJson(fs, Request, AbortSignal.timeout(10_000)).catch(() => {})
  }
}

/** Ask `from` to run `task` as the source; events stream back until the report. */
export async function runRemoteTask (node: Libp2p, from: string, task: SyncTask, onEvent: (e: SyncEvent) => void, signal?: AbortSignal): Promise<SyncReport> {
  const { dial } = parseTarget(from)
  const stream = await node.dialProtocol(dial, TASK_PROTOCOL, { signal: AbortSignal.timeout(15_000) })
  const fs = new FramedStream(stream, { maxFrameBytes: MAX_TASK_FRAME })
  // cancelled: the remote daemon sees the stream go and cancels the task it runs
  const onAbort = (): void => { fs.abort(new Error('the task was cancelled')) }
  signal?.addEventListener('abort', onAbort, { once: true })
  if (signal?.aborted === true) onAbort()
  try {
    await writeJson(fs, { type: 'task', task })
    for (;;) {
      const m = await readJson(fs, Response)
      if (m == null) throw new ProtocolError(`${from} closed the task stream without a report`)
      if (m.type === 'event') onEvent(m.event as SyncEvent)
      else if (m.type === 'report') return m.report as SyncReport
      else throw new TaskRefusedError(m.code, m.message)
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    await fs.closeWrite()
  }
}
