import { chmod, lstat, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { diffTrees, isNoop, resolveVerified, type TargetChanges } from '../diff/diff.js'
import { applyStructure, finalizeDirectories, prepareRoot } from '../fs/apply.js'
import { partialPathFor } from '../fs/atomic-writer.js'
import { DestinationRoot } from '../fs/safe-path.js'
import { hashFile } from '../manifest/hash.js'
import { scanTree } from '../manifest/scan.js'
import type { Entry, Manifest } from '../manifest/types.js'
import type { SinkResult } from './file-sink.js'

export interface ChangeCounts { created: number, deleted: number, updated: number }

export interface RelayAssignment {
  classId: number
  /** PeerId of the only peer allowed to open this session's relay stream */
  parent: string
  children: Array<{ peer: string, addrs: string[] }>
  frameBytes: number
}

export interface TargetSessionInit {
  id: string
  sourcePeer: string
  dst: string
  delete: boolean
  dryRun: boolean
  compress: boolean
  manifest: Manifest
  onWarning?: (msg: string) => void
}

export type TargetOutcome = { status: 'ok' | 'unchanged' | 'failed', error?: string, files: number, bytes: number, changes: ChangeCounts }

const isRoot = process.getuid?.() === 0

/**
 * One sync session on a target: diff against the local tree, apply the structure, take
 * the file data of its class from the relay, then finalize directories. The control
 * handler drives it; the relay handler feeds it (see attachRelay).
 */
export class TargetSession {
  readonly dst: DestinationRoot
  changes?: TargetChanges
  counts: ChangeCounts = { created: 0, deleted: 0, updated: 0 }
  relay?: RelayAssignment
  /** temp files of earlier, dead sessions found (and removed) in the destination */
  staleTempFiles = 0
  /** files this session continues from a kept part: index → bytes already there */
  readonly resumeOffsets = new Map<number, number>()
  private relayClaimed = false
  /** set once the session stops taking data (finished or given up) */
  private closed = false
  private relayDone?: PromiseWithResolvers<SinkResult>
  /** progress of the data phase, for heartbeats */
  progress = { files: 0, bytes: 0 }
  /** set by the control handler: tells the source that a relay child failed */
  onChildFailed?: (peer: string, error: string) => void
  /** last time the relay parent connected or sent a frame */
  private lastActivity = Date.now()

  touch (): void { this.lastActivity = Date.now() }

  constructor (readonly init: TargetSessionInit) {
    this.dst = new DestinationRoot(init.dst)
  }

  get id (): string { return this.init.id }
  get entries (): readonly Entry[] { return this.init.manifest.entries }

  /** Diff and (unless dry-run) apply dirs, symlinks, deletions and metadata fixes. Returns the files to fetch. */
  async prepare (signal?: AbortSignal): Promise<{ files: number[], bytes: number, resume: Array<[number, number]> }> {
    const { manifest } = this.init
    const exists = await lstat(this.init.dst).then(() => true, () => false)
    if (!this.init.dryRun) await prepareRoot(this.init.dst)
    // temp files left by a session that died (crash, kill, power loss): this session holds
    // the destination's lock, so no live writer owns any of them
    const stale: string[] = []
    const local = exists ? (await scanTree(this.init.dst, { hash: false, onWarning: this.init.onWarning, onTempFile: (p) => { stale.push(p) }, signal })).entries : []
    let changes = diffTrees(manifest.entries, local, { delete: this.init.delete, owners: isRoot })
    if (changes.verify.length > 0) {
      const hashes = new Map<number, string | undefined>()
      for (const i of changes.verify) {
        hashes.set(i, await hashFile(join(this.init.dst, manifest.entries[i].path), signal).catch(() => undefined))
      }
      changes = resolveVerified(changes, manifest.entries, hashes)
    }
    this.changes = changes
    const localPaths = new Set(local.map(e => e.path))
    const removed = new Set(changes.remove)
    let created = 0
    let updated = changes.meta.length
    for (const i of [...changes.mkdir, ...changes.symlink, ...changes.fetch]) {
      const p = manifest.entries[i].path
      if (localPaths.has(p) && !removed.has(p)) updated++
      else created++
    }
    this.counts = { created, deleted: changes.remove.length, updated }
    if (!this.init.dryRun) {
      await applyStructure(this.dst, manifest.entries, changes)
      if (!isRoot) await this.makeDirsWritable(local)
    }
    const bytes = changes.fetch.reduce((n, i) => n + manifest.entries[i].size, 0)
    // parts of files an interrupted session kept: resume those this session needs, remove the rest
    const keep = new Set<string>()
    for (const i of changes.fetch) {
      const e = manifest.entries[i]
      const part = partialPathFor(join(this.init.dst, e.path), e)
      const st = await lstat(part).catch(() => undefined)
      if (st?.isFile() === true && st.size > 0 && st.size < e.size) {
        this.resumeOffsets.set(i, st.size)
        keep.add(part)
      }
    }
    if (!this.init.dryRun) {
      for (const p of stale) {
        const abs = join(this.init.dst, p)
        if (!keep.has(abs)) await rm(abs, { force: true, recursive: true }).catch(() => {})
      }
    } else {
      this.resumeOffsets.clear()
    }
    this.staleTempFiles = stale.length - keep.size
    const resumed = [...this.resumeOffsets.values()].reduce((n, o) => n + o, 0)
    return { files: changes.fetch, bytes: bytes - resumed, resume: [...this.resumeOffsets] }
  }

  /** Existing directories we must write into but may not (e.g. 0555): owner rwx until finalizeDirectories. */
  private async makeDirsWritable (local: readonly Entry[]): Promise<void> {
    const wanted = new Set(this.init.manifest.entries.filter(e => e.type === 'dir').map(e => e.path))
    const removed = this.changes!.remove
    for (const d of local) {
      if (d.type !== 'dir' || (d.mode & 0o700) === 0o700 || !wanted.has(d.path)) continue
      if (removed.some(r => d.path === r || d.path.startsWith(r + '/'))) continue
      await chmod(await this.dst.resolve(d.path), d.mode | 0o700)
    }
    const rootSt = await lstat(this.init.dst)
    if ((rootSt.mode & 0o700) !== 0o700) await chmod(this.init.dst, (rootSt.mode & 0o7777) | 0o700)
  }

  /** Best effort after a failure: no more data, and directories get their real modes back. */
  async abandon (): Promise<void> {
    this.closed = true
    this.receiver?.abort(new Error('session abandoned'))
    if (this.changes != null && !this.init.dryRun) await finalizeDirectories(this.dst, this.init.manifest).catch(() => {})
  }

  setRelay (relay: RelayAssignment | null): void {
    if (relay == null) return
    this.relay = relay
    this.touch()
    this.relayDone = Promise.withResolvers<SinkResult>()
    this.relayDone.promise.catch(() => {})
  }

  /**
   * Called by the relay handler for an incoming stream. Only the parent the source named,
   * only once, only for the class it was told.
   */
  claimRelay (remotePeer: string, classId: number): string | undefined {
    if (this.relay == null) return 'this target expects no data in this session'
    if (remotePeer !== this.relay.parent) return `relay stream from ${remotePeer}, but the source named ${this.relay.parent} as parent`
    if (classId !== this.relay.classId) return 'wrong class id'
    if (this.relayClaimed) return 'relay stream already attached'
    if (this.closed) return 'this session no longer accepts data'
    this.relayClaimed = true
    return undefined
  }

  relayFinished (result: SinkResult): void { this.relayDone?.resolve(result) }
  relayFailed (err: Error): void { this.relayDone?.reject(err) }

  private receiver?: { abort: (err: Error) => void, done: Promise<void> }
  /** The relay receiver registers itself so a session that gives up can stop it before finalizing. */
  attachReceiver (abort: (err: Error) => void, done: Promise<void>): void { this.receiver = { abort, done } }

  /**
   * Wait for the data (if any), then finalize directories. `stallMs`: how long to wait
   * for the parent's stream to arrive and for progress while it runs.
   */
  async finish (stallMs: number): Promise<TargetOutcome> {
    const c = this.changes!
    let files = 0
    let bytes = 0
    const failures: string[] = []
    if (this.relayDone != null) {
      const timer = setInterval(() => {
        if (Date.now() - this.lastActivity > stallMs) {
          this.relayFailed(new Error(this.relayClaimed ? `no data from parent ${this.relay!.parent} for ${stallMs} ms` : `parent ${this.relay!.parent} did not connect within ${stallMs} ms`))
        }
      }, Math.min(1000, stallMs / 4))
      try {
        const r = await this.relayDone.promise
        files = r.files
        bytes = r.bytes
        failures.push(...r.failures)
      } catch (err) {
        failures.push((err as Error).message)
        // make sure nothing is still being written while directories are finalized
        this.receiver?.abort(err as Error)
        await Promise.race([this.receiver?.done, new Promise(resolve => setTimeout(resolve, 10_000))])
      } finally {
        clearInterval(timer)
      }
    }
    this.closed = true
    let dirsChanged = 0
    if (!this.init.dryRun) {
      try {
        dirsChanged = await finalizeDirectories(this.dst, this.init.manifest)
      } catch (err) {
        failures.push(`finalizing directories: ${(err as Error).message}`)
      }
    }
    const noop = isNoop(c) && dirsChanged === 0
    if (failures.length > 0) {
      const more = failures.length > 3 ? ` (and ${failures.length - 3} more)` : ''
      return { status: 'failed', error: failures.slice(0, 3).join('; ') + more, files, bytes, changes: this.counts }
    }
    return { status: noop ? 'unchanged' : 'ok', files, bytes, changes: this.counts }
  }
}
