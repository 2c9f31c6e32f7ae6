import { contentDigest } from '../manifest/digest.js'
import { chmod, lstat, mkdir, readdir, rename, rm, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { diffTrees, isNoop, resolveVerified, type TargetChanges } from '../diff/diff.js'
import { applyStructure, finalizeDirectories, placeStagedFile, prepareRoot, setMetadata } from '../fs/apply.js'
import { contentKey, PART_PREFIX, partialPathFor } from '../fs/atomic-writer.js'
import { DestinationRoot } from '../fs/safe-path.js'
import { hashFile } from '../manifest/hash.js'
import { trace } from '../trace.js'
import { scanTree, TEMP_PREFIX } from '../manifest/scan.js'
import type { Entry, Manifest, RootMeta } from '../manifest/types.js'
import type { SinkResult } from './file-sink.js'
import { MIN_BYTES_PER_STALL } from '../../protocols/relay/consts.js'

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
  /** stage every file, change the tree only in switchOver() */
  atomic?: boolean
  manifest: Manifest
  /** how long to wait for a deferred hash once a file's data is in (default 30 s) */
  stallMs?: number
  /** the destination's scan, if already started (see scanDestination) */
  localScan?: Promise<LocalScan>
  onWarning?: (msg: string) => void
}

/** What is at a destination now: its entries, and temp names left by dead sessions. */
export interface LocalScan { exists: boolean, entries: Entry[], stale: string[], root?: RootMeta }

/**
 * Scan a destination (no hashing). The control handler starts this as soon as the
 * destination is known, so it runs while the manifest is still arriving.
 */
export async function scanDestination (dst: string, onWarning?: (msg: string) => void, signal?: AbortSignal): Promise<LocalScan> {
  const exists = await lstat(dst).then(() => true, () => false)
  const stale: string[] = []
  const scan = exists ? await scanTree(dst, { hash: false, digest: false, onWarning, onTempFile: (p) => { stale.push(p) }, signal }) : undefined
  return { exists, entries: scan?.entries ?? [], stale, root: scan?.root }
}

export type TargetOutcome = {
  status: 'ok' | 'unchanged' | 'failed'
  error?: string
  /** files completed and verified, and their bytes received this session */
  files: number
  bytes: number
  changes: ChangeCounts
  /** file data taken from the relay, including files not completed */
  received?: number
  /** bytes not asked for again because kept parts were continued */
  resumed?: number
}

const isRoot = process.getuid?.() === 0
const euid = process.geteuid?.() ?? -1

/**
 * --atomic: verified files wait here, named by their SHA-256, until the switch. A temp
 * name, so scans skip it; kept after a session that did not switch, so the next --atomic
 * run re-uses what is staged (after hashing it again); a plain session removes it.
 */
export const STAGE_DIR = TEMP_PREFIX + 'stage'

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
  /** file indices asked from the source (--atomic: minus contents already staged, one per content) */
  wanted: number[] = []
  /** --atomic: what the data phase received, reported again after the switch */
  private staged = { files: 0, bytes: 0 }
  private local: readonly Entry[] = []
  private relayClaimed = false
  /** set once the session stops taking data (finished or given up) */
  private closed = false
  private relayDone?: PromiseWithResolvers<SinkResult>
  /** progress of the data phase, for heartbeats */
  progress = { files: 0, bytes: 0 }
  /** file data taken from the relay so far (set by the receiver) */
  received = 0
  private get resumed (): number { return [...this.resumeOffsets.values()].reduce((n, o) => n + o, 0) }
  /** set by the control handler: tells the source that a relay child failed */
  onChildFailed?: (peer: string, error: string, tooSlow?: boolean) => void
  /** last time the relay parent connected or sent a frame */
  private lastActivity = performance.now()

  /** bytes from the relay parent since `since` (the current stall period: see finish) */
  private inPeriod = { since: performance.now(), bytes: 0 }
  /** The relay parent connected or sent `bytes` (of a frame, or inflated from one). */
  touch (bytes = 0): void {
    this.lastActivity = performance.now()
    this.inPeriod.bytes += bytes
  }

  /** the parent sent END: what is left is this node's own commits, which no parent silence can stall */
  private endTaken = false
  endReceived (): void { this.endTaken = true }

  constructor (readonly init: TargetSessionInit) {
    this.dst = new DestinationRoot(init.dst)
  }

  get id (): string { return this.init.id }
  get entries (): readonly Entry[] { return this.init.manifest.entries }
  get atomic (): boolean { return this.init.atomic === true && !this.init.dryRun }
  private get stageDir (): string { return join(this.init.dst, STAGE_DIR) }

  /** Where the relay writes file `index`: its final path, or its place in the stage. */
  readonly placeFile = (_index: number, e: Entry): string | Promise<string> =>
    this.atomic ? join(this.stageDir, contentKey(e)) : this.dst.resolveFast(e.path)

  /** Diff and (unless dry-run) apply dirs, symlinks, deletions and metadata fixes. Returns the files to fetch. */
  async prepare (signal?: AbortSignal): Promise<{ files: number[], bytes: number, resume: Array<[number, number]>, have: Array<[number, string]> }> {
    const { manifest } = this.init
    // temp files left by a session that died (crash, kill, power loss): this session holds
    // the destination's lock, so no live writer owns any of them
    const { entries: local, stale } = await (this.init.localScan ?? scanDestination(this.init.dst, this.init.onWarning, signal))
    this.local = local
    trace('target: prepare: scan taken')
    if (!this.init.dryRun) await prepareRoot(this.init.dst)
    let changes = diffTrees(manifest.entries, local, { delete: this.init.delete, owners: isRoot })
    if (changes.verify.length > 0) {
      const hashes = new Map<number, string | undefined>()
      for (const i of changes.verify) {
        hashes.set(i, await hashFile(join(this.init.dst, manifest.entries[i].path), signal).catch(() => undefined))
      }
      // same size, other mtime, and the source's hash is deferred: ask, and say what we have
      for (const i of changes.verify) {
        const h = hashes.get(i)
        if (manifest.entries[i].hash == null && h != null) this.have.set(i, h)
      }
      changes = resolveVerified(changes, manifest.entries, hashes)
    }
    this.changes = changes
    this.counts = countChanges(manifest.entries, local, changes)
    trace('target: prepare: diffed')
    if (!this.init.dryRun && !this.atomic) {
      // (a daemon that is not root may create and remove in an existing 0555 directory only so)
      if (!isRoot) await this.makeDirsWritable(local)
      await applyStructure(this.dst, manifest.entries, changes)
      trace('target: prepare: structure applied')
    }
    // (--atomic with nothing to fetch makes no stage: an untouched tree stays `unchanged`)
    const staging = this.atomic && changes.fetch.length > 0
    this.wanted = staging ? await this.prepareStage(changes.fetch, signal) : changes.fetch
    const bytes = this.wanted.reduce((n, i) => n + manifest.entries[i].size, 0)
    // parts of files an interrupted session kept: resume those this session needs, remove the rest
    const keep = new Set<string>()
    if (staging) keep.add(this.stageDir)
    // without --atomic only temp names the scan saw can be parts (none seen: nothing to look
    // for); with it, parts are in the stage, which is not scanned: look there
    const staleSet = new Set(stale.map(p => join(this.init.dst, p)))
    for (const i of this.atomic || staleSet.size > 0 ? this.wanted : []) {
      const e = manifest.entries[i]
      const part = partialPathFor(this.atomic ? join(this.stageDir, contentKey(e)) : join(this.init.dst, e.path), e)
      if (!this.atomic && !staleSet.has(part)) continue
      // two files of one content in one directory share a part's name: it continues one of them
      if (keep.has(part)) continue
      const st = await lstat(part).catch(() => undefined)
      if (st?.isFile() === true && st.size > 0 && st.size < e.size) {
        this.resumeOffsets.set(i, st.size)
        keep.add(part)
      }
    }
    if (!this.init.dryRun) {
      this.staleToRemove = stale.filter(p => !keep.has(join(this.init.dst, p)))
      // --atomic: the tree stays untouched (directory mtimes too) until the switch
      if (!this.atomic) await this.removeStale()
    } else {
      this.resumeOffsets.clear()
    }
    this.staleTempFiles = stale.filter(p => !keep.has(join(this.init.dst, p))).length
    return { files: this.wanted, bytes: bytes - this.resumed, resume: [...this.resumeOffsets], have: [...this.have] }
  }

  private readonly sameAsSource = new Set<number>()
  /** Local hashes of files asked for only because the source's hash is deferred (needs.have). */
  private readonly have = new Map<number, string>()

  /**
   * plan.same: the source found these `have` files equal to its own. They become
   * metadata-only changes: not fetched; mode, owner and mtime set now (at the switch with --atomic).
   */
  async applySame (same: readonly number[]): Promise<void> {
    if (same.length === 0) return
    const c = this.changes!
    const drop = new Set(same)
    for (const i of drop) if (!this.have.has(i)) throw new Error(`plan.same names entry ${i}, which this target did not offer`)
    for (const i of drop) this.sameAsSource.add(i)
    this.wanted = this.wanted.filter(i => !drop.has(i))
    c.fetch = c.fetch.filter(i => !drop.has(i))
    c.meta = [...c.meta, ...drop].sort((a, b) => a - b)
    for (const i of drop) this.resumeOffsets.delete(i)
    if (!this.atomic && !this.init.dryRun) {
      for (const i of drop) await setMetadata(await this.dst.resolve(this.entries[i].path), this.entries[i])
    }
  }

  /** `wanted` as a set (rebuilt when `wanted` is replaced): one lookup per deferred hash */
  private wantedSet?: { list: readonly number[], set: Set<number> }
  private readonly lateHashes = new Map<number, string>()
  private readonly hashWaiters = new Map<number, { resolve: (h: string) => void, reject: (err: Error) => void, timer: NodeJS.Timeout }>()
  private hashesClosed?: Error

  /** The hash file `index` must have: the manifest's, or the deferred one from the source (waits for it). */
  readonly expectedHash = (index: number, e: Entry): string | Promise<string> => {
    if (e.hash != null) return e.hash
    const known = this.lateHashes.get(index)
    if (known != null) return known
    return this.awaitHash(index, e)
  }

  private async awaitHash (index: number, e: Entry): Promise<string> {
    if (this.hashesClosed != null) throw this.hashesClosed
    const waitMs = this.init.stallMs ?? 30_000
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.hashWaiters.delete(index)
        reject(new Error(`${e.path}: the source sent no hash for it within ${waitMs / 1000} s`))
      }, waitMs)
      this.hashWaiters.set(index, { resolve, reject, timer })
    })
  }

  /** A deferred hash from the source (control stream). Returns an error text for a hash it may not send. */
  setHash (index: number, hash: string): string | undefined {
    const e = this.entries[index]
    if (this.wantedSet?.list !== this.wanted) this.wantedSet = { list: this.wanted, set: new Set(this.wanted) }
    if (e == null || e.type !== 'file' || e.hash != null || !this.wantedSet.set.has(index)) return `hash for entry ${index}, which this target is not receiving with a deferred hash`
    const known = this.lateHashes.get(index)
    if (known != null) return known === hash ? undefined : `two different hashes for entry ${index}`
    this.lateHashes.set(index, hash)
    const w = this.hashWaiters.get(index)
    if (w != null) { clearTimeout(w.timer); this.hashWaiters.delete(index); w.resolve(hash) }
    return undefined
  }

  /** The SHA-256 this session established for deferred file `index`: the source's, or this target's own under plan.same. */
  establishedHash (index: number): string | undefined {
    return this.lateHashes.get(index) ?? (this.sameAsSource.has(index) ? this.have.get(index) : undefined)
  }

  /** What this session's receipt binds: the manifest digest, with the deferred hashes it established (§4.6). */
  receiptDigest (): string {
    return contentDigest(this.init.manifest.digest, this.entries, (i) => this.establishedHash(i))
  }

  /**
   * The manifest with the hashes this session learnt for deferred files (received, or
   * found equal: plan.same), for the tree record; undefined if a file's hash is unknown.
   */
  hashedManifest (): Manifest | undefined {
    const { root, entries } = this.init.manifest
    const filled = entries.map((e, i) => e.type !== 'file' || e.hash != null ? e : { ...e, hash: this.establishedHash(i) })
    if (filled.some(e => e.type === 'file' && e.hash == null)) return undefined
    return { root, entries: filled, digest: '' }
  }

  /** No more hashes will come (the session ends): waiters fail at once. */
  endHashes (err: Error): void {
    this.hashesClosed ??= err
    for (const w of this.hashWaiters.values()) { clearTimeout(w.timer); w.reject(err) }
    this.hashWaiters.clear()
  }

  /** temp files the scan saw, relative: removed through checked directories only */
  private staleToRemove: string[] = []
  private async removeStale (): Promise<void> {
    for (const rel of this.staleToRemove) {
      // the structure was applied since the scan: a directory of the path may be a symlink now
      const abs = await this.dst.resolve(rel).catch(() => undefined)
      if (abs != null) await rm(abs, { force: true, recursive: true }).catch(() => {})
    }
    this.staleToRemove = []
  }

  /**
   * --atomic: make the stage directory, keep what an earlier --atomic session staged and
   * this one needs (hashed again), and parts to resume; remove the rest. Returns the files
   * to ask for: one per content not staged yet.
   */
  private async prepareStage (fetch: readonly number[], signal?: AbortSignal): Promise<number[]> {
    const dir = this.stageDir
    const st = await lstat(dir).catch(() => undefined)
    // only a stage this daemon's user made and nobody else can write is re-used
    if (st?.isDirectory() !== true || st.uid !== euid || (st.mode & 0o077) !== 0) {
      // the tree must look untouched until the switch: keep the root's mtime (read before
      // anything changes it) and mode (a daemon that is not root writes into a 0555 root only so)
      const root = await lstat(this.init.dst)
      const lend = !isRoot && (root.mode & 0o700) !== 0o700
      if (lend) await chmod(this.init.dst, (root.mode & 0o7777) | 0o700)
      try {
        if (st != null) await rm(dir, { force: true, recursive: true })
        await mkdir(dir, { mode: 0o700 })
      } finally {
        if (lend) await chmod(this.init.dst, root.mode & 0o7777)
        await utimes(this.init.dst, root.atime, root.mtime)
      }
    }
    const firstUse = new Map<string, number>()
    for (const i of fetch) if (!firstUse.has(contentKey(this.entries[i]))) firstUse.set(contentKey(this.entries[i]), i)
    const keepNames = new Set<string>()
    const wanted: number[] = []
    const stagedAs = async (name: string, e: Entry): Promise<boolean> => {
      const s = await lstat(join(dir, name)).catch(() => undefined)
      return s?.isFile() === true && s.size === e.size && await hashFile(join(dir, name), signal).catch(() => '') === e.hash
    }
    for (const [hash, i] of firstUse) {
      const e = this.entries[i]
      // (a deferred content cannot be checked before its data: it is always fetched)
      if (e.hash != null) {
        if (await stagedAs(hash, e)) { keepNames.add(hash); continue }
        // staged by a session that had this content's hash deferred: it is named by path and mtime
        const asDeferred = contentKey({ ...e, hash: undefined })
        if (await stagedAs(asDeferred, e)) {
          await rename(join(dir, asDeferred), join(dir, hash))
          keepNames.add(hash)
          continue
        }
      }
      wanted.push(i)
      keepNames.add(PART_PREFIX + hash.slice(0, 40))
    }
    for (const name of await readdir(dir)) {
      if (!keepNames.has(name)) await rm(join(dir, name), { force: true, recursive: true })
    }
    return wanted
  }

  /**
   * --atomic, once the source says every target has staged: the whole change (removals,
   * directories, symlinks, metadata, staged files renamed into place, directory modes)
   * in one quick pass, then the stage is removed.
   */
  async switchOver (): Promise<TargetOutcome> {
    const c = this.changes!
    const entries = this.entries
    if (!isRoot) await this.makeDirsWritable(this.local)
    await applyStructure(this.dst, entries, c)
    // a content used by several entries: the last one takes the staged file, the others a copy
    const lastUse = new Map<string, number>()
    for (const i of c.fetch) lastUse.set(contentKey(entries[i]), i)
    for (const i of c.fetch) {
      const e = entries[i]
      await placeStagedFile(join(this.stageDir, contentKey(e)), await this.dst.resolve(e.path), e, lastUse.get(contentKey(e)) === i)
    }
    // before finalizing: removing the stage and stale temp files changes directory mtimes
    await rm(this.stageDir, { recursive: true, force: true })
    await this.removeStale()
    const dirsChanged = await finalizeDirectories(this.dst, this.init.manifest)
    return { status: isNoop(c) && dirsChanged === 0 ? 'unchanged' : 'ok', files: this.staged.files, bytes: this.staged.bytes, changes: this.counts, received: this.received, resumed: this.resumed }
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
    this.planTaken.resolve()
    this.endHashes(new Error('session abandoned'))
    // nothing may still be written (kept parts included) once the handler lets the destination go
    await this.stopReceiver(new Error('session abandoned'))
    if (this.changes != null && !this.init.dryRun && !this.atomic) await finalizeDirectories(this.dst, this.init.manifest).catch(() => {})
  }

  private readonly planTaken = Promise.withResolvers<void>()

  /**
   * Settles once the plan is taken or the session is over, or after `ms`: a parent opens its
   * relay stream as soon as it has its own plan, which may be before this node has its own.
   */
  async planned (ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.planTaken.promise, new Promise<void>(resolve => { timer = setTimeout(resolve, ms).unref() })])
    clearTimeout(timer)
  }

  setRelay (relay: RelayAssignment | null): void {
    this.planTaken.resolve()
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
    this.inPeriod = { since: performance.now(), bytes: 0 }
    return undefined
  }

  private probes = { taken: 0, running: false }
  /**
   * A probe stream (protocols/probe) for this session: only from its source, one at a time, at
   * most `max` in all. Accepted: a function to call when it ends; refused: the reason.
   */
  claimProbe (remotePeer: string, max: number): string | (() => void) {
    if (remotePeer !== this.init.sourcePeer) return `probe from ${remotePeer}, but this session's source is ${this.init.sourcePeer}`
    if (this.closed) return 'this session is over'
    if (this.probes.running) return 'a probe is already running'
    if (this.probes.taken >= max) return `this session took its ${max} probes`
    this.probes.taken++
    this.probes.running = true
    return () => { this.probes.running = false }
  }

  relayFinished (result: SinkResult): void { this.relayDone?.resolve(result) }
  relayFailed (err: Error): void {
    this.endHashes(err)
    this.relayDone?.reject(err)
  }

  private receiver?: { abort: (err: Error) => void, done: Promise<void> }
  /**
   * Settles when the relay receiver (if any) has stopped writing: kept parts and small-file
   * batches included. The destination is not released before (at most 10 min).
   */
  /** Stops the relay receiver and waits (at most a minute) until it has stopped writing. */
  private async stopReceiver (err: Error): Promise<void> {
    this.receiver?.abort(err)
    await Promise.race([this.receiver?.done, new Promise(resolve => setTimeout(resolve, 60_000).unref())])
  }

  async receiverStopped (): Promise<void> {
    await Promise.race([this.receiver?.done, new Promise(resolve => setTimeout(resolve, 10 * 60_000).unref())])
  }

  /** The relay receiver registers itself so a session that gives up can stop it before finalizing. */
  attachReceiver (abort: (err: Error) => void, done: Promise<void>): void {
    this.receiver = { abort, done }
    if (this.closed) abort(new Error('session abandoned'))
  }

  /**
   * Wait for the data (if any), then finalize directories. `stallMs`: how long to wait
   * for the parent's stream to arrive and for progress while it runs.
   */
  async finish (stallMs: number): Promise<TargetOutcome> {
    const c = this.changes!
    let files = 0
    let bytes = 0
    const failures: string[] = []
    let moreFailures = 0
    if (this.relayDone != null) {
      const timer = setInterval(() => {
        if (this.endTaken) return
        const now = performance.now()
        if (now - this.lastActivity > stallMs) {
          this.relayFailed(new Error(this.relayClaimed ? `no data from parent ${this.relay!.parent} for ${stallMs} ms` : `parent ${this.relay!.parent} did not connect within ${stallMs} ms`))
        } else if (this.relayClaimed && now - this.inPeriod.since >= stallMs) {
          if (this.inPeriod.bytes < MIN_BYTES_PER_STALL) this.relayFailed(new Error(`parent ${this.relay!.parent} sent only ${this.inPeriod.bytes} bytes in ${Math.round(now - this.inPeriod.since)} ms: too little to go on`))
          else this.inPeriod = { since: now, bytes: 0 }
        }
      }, Math.min(1000, stallMs / 4))
      try {
        const r = await this.relayDone.promise
        files = r.files
        bytes = r.bytes
        failures.push(...r.failures)
        moreFailures = r.moreFailures
      } catch (err) {
        failures.push((err as Error).message)
        // make sure nothing is still being written while directories are finalized
        await this.stopReceiver(err as Error)
      } finally {
        clearInterval(timer)
      }
    }
    this.closed = true
    this.staged = { files, bytes }
    let dirsChanged = 0
    if (!this.init.dryRun && !this.atomic) {
      try {
        dirsChanged = await finalizeDirectories(this.dst, this.init.manifest)
      } catch (err) {
        failures.push(`finalizing directories: ${(err as Error).message}`)
      }
    }
    const noop = isNoop(c) && dirsChanged === 0
    if (failures.length > 0) {
      const more = failures.length + moreFailures > 3 ? ` (and ${failures.length + moreFailures - 3} more)` : ''
      return { status: 'failed', error: failures.slice(0, 3).join('; ') + more, files, bytes, changes: this.counts, received: this.received, resumed: this.resumed }
    }
    return { status: noop ? 'unchanged' : 'ok', files, bytes, changes: this.counts, received: this.received, resumed: this.resumed }
  }
}

/** The report's counts: entries created, deleted, and updated (replaced, or metadata only). (A hot loop in a function of its own: docs/ARCHITECTURE.md.) */
function countChanges (entries: readonly Entry[], local: readonly Entry[], changes: TargetChanges): { created: number, deleted: number, updated: number } {
  const localPaths = new Set(local.map(e => e.path))
  const removed = new Set(changes.remove)
  let created = 0
  let updated = changes.meta.length
  for (const list of [changes.mkdir, changes.symlink, changes.fetch]) {
    for (const i of list) {
      const p = entries[i].path
      if (localPaths.has(p) && !removed.has(p)) updated++
      else created++
    }
  }
  return { created, deleted: changes.remove.length, updated }
}
