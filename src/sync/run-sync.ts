import { trace } from '../trace.js'
import { randomBytes } from 'node:crypto'
import { isAbsolute, join } from 'node:path'
import { hashAsScanned } from '../manifest/hash.js'
import { contentDigest } from '../manifest/digest.js'
import type { Libp2p } from '@libp2p/interface'
import { parseTarget } from '../node/targets.js'
import type { KnownPeer } from '../node/dial.js'
import { TargetLink } from '../../protocols/control/target-link.js'
import { DEFAULT_STALL_TIMEOUT_MS } from '../../protocols/control/consts.js'
import { DEFAULT_FRAME_BYTES, MAX_FRAME_BYTES, MIN_FRAME_BYTES } from '../../protocols/relay/consts.js'
import { openLinks } from '../../protocols/relay/early-links.js'
import { LAGGARD_WINDOW_MS } from '../../protocols/relay/laggard.js'
import { scanTree } from '../manifest/scan.js'
import { ManifestStream } from '../manifest/manifest-stream.js'
import { FileHashCache } from '../manifest/hash-cache-file.js'
import type { Entry, Manifest } from '../manifest/types.js'
import { classify, splitOut } from '../plan/classify.js'
import type { LaggardMemory } from '../home/laggards.js'
import { planTree, type RelayTree } from '../plan/tree.js'
import type { SyncEvent, SyncReport, TargetReport } from './report.js'
import { sendClass } from './source-sender.js'
import { formatRate, SourceJudge, SourceUplink } from './source-judge.js'
import { probeSendRate, type ProbeResult, type ProbeTarget } from '../../protocols/probe/probe.js'
import type { ChildLink } from '../../protocols/relay/child-link.js'
import { verifyReceipt } from './receipt.js'
import type { ResultMsg } from '../../protocols/control/messages.js'
import type { z } from 'zod/v3'

export interface SyncTask {
  src: string
  dst: string
  targets: string[]
  delete: boolean
  compress: boolean
  dryRun: boolean
  /** stage on every target, switch all only when every target has staged */
  atomic?: boolean
  /** extra rounds for targets whose transfer was cut (default 1) */
  retries?: number
  /** children per node in a class tree; 1 = chain */
  fanout?: number
  frameBytes?: number
  stallMs?: number
}

export class TaskError extends Error {
  override name = 'TaskError'
}

export const DEFAULT_FANOUT = 1
export const DEFAULT_RETRIES = 1
/**
 * New content at least this large (every non-empty file) is not hashed before the manifest:
 * the source hashes it while sending it and tells each receiving target the hash on the
 * control stream. Saves a full read before the first byte goes out: ~1 s per GiB, and
 * ~0.2 s for 20 000 small files (their opens).
 */
export const DEFER_HASH_MIN = 1
/** Targets cut within this long of each other are re-attached together (one tree). */
export const REJOIN_DELAY_MS = 500
/**
 * A parent's word that it cut a target for being slow, coming this long after the target was
 * re-attached with others, is about that new round: no judge can cut sooner (LAGGARD_WINDOW_MS).
 */
const LATE_WORD_MS = LAGGARD_WINDOW_MS

/**
 * Run one sync with this node as the source: scan, layer-1 sessions with every target,
 * classes, one relay tree per class, results. Never throws for a target's failure: each
 * target ends ok, unchanged or failed; TaskError is for a task that cannot run at all.
 */
/** How this node runs tasks as a source (local settings, never from the wire). */
export interface SourceOptions {
  /** where the persistent hash cache lives (e.g. <home>/hashcache); none = hash every file */
  hashCacheDir?: string
  /**
   * Given: the task's last hash-cache save is handed over here and runs after the report
   * (the daemon waits for such work before it stops). Not given: runSync waits for it.
   */
  afterReport?: (work: Promise<void>) => void
  /**
   * Cancels the task (the user pressed Ctrl-C, or the CLI that asked for it went away): every
   * target's session and relay stream is cut at once, each target keeps the file it was
   * receiving as a part for the next run, and every target not yet done is reported failed.
   */
  signal?: AbortSignal
  /** peers cut off as laggards in recent tasks: each goes in a class of its own (src/home/laggards.ts) */
  laggards?: LaggardMemory
}

/** What a cancelled task tells its targets and reports for each. */
export const CANCELLED = 'the task was cancelled'

/**
 * Everything of a task that a cancel must cut: target links and relay links, also those that
 * open after the cancel (they are cut at once).
 */
class Cancel {
  private readonly live = new Set<{ abort: (err: Error) => void }>()
  readonly reason = new Error(CANCELLED)
  private readonly onAbort = (): void => { for (const l of this.live) l.abort(this.reason) }
  constructor (private readonly taskSignal?: AbortSignal) {
    taskSignal?.addEventListener('abort', this.onAbort, { once: true })
  }

  /** The task is over: a signal that fires later (the CLI closing its connection after the report) cuts nothing. */
  close (): void {
    this.taskSignal?.removeEventListener('abort', this.onAbort)
    this.live.clear()
  }

  get requested (): boolean { return this.taskSignal?.aborted === true }
  /** aborts with the task (never, without a signal) */
  get signal (): AbortSignal | undefined { return this.taskSignal }

  add<L extends { abort: (err: Error) => void }> (link: L): L {
    if (this.requested) link.abort(this.reason)
    else this.live.add(link)
    return link
  }
}

export async function runSync (node: Libp2p, task: SyncTask, onEvent: (e: SyncEvent) => void = () => {}, source: SourceOptions = {}): Promise<SyncReport> {
  const started = performance.now()
  trace('source: task start')
  if (!isAbsolute(task.src) || !isAbsolute(task.dst)) throw new TaskError('--src and --dst must be absolute paths')
  if (task.targets.length === 0) throw new TaskError('no targets given')
  const stallMs = task.stallMs ?? DEFAULT_STALL_TIMEOUT_MS
  const fanout = task.fanout ?? DEFAULT_FANOUT
  const frameBytes = Math.min(MAX_FRAME_BYTES / 4, Math.max(MIN_FRAME_BYTES, task.frameBytes ?? DEFAULT_FRAME_BYTES))
  const self = node.peerId.toString()

  const targets: TargetState[] = task.targets.map((given) => ({
    given,
    report: { peer: given, address: given, status: 'failed', files: 0, bytes: 0, created: 0, deleted: 0, updated: 0 }
  }))
  const firstSession = randomBytes(16).toString('hex')
  const knownSlowLoad = source.laggards?.recent() ?? Promise.resolve(new Set<string>())
  const cancel = new Cancel(source.signal)
  // Open every target's session (dial, Noise, muxer, control stream, `open`) while the tree
  // is scanned: each target scans its own destination at the same time.
  // targets cut off as laggards (relay/laggard.ts), by peer: each is re-attached in a round of its own
  const tooSlow = new Set<string>()
  /**
   * targets re-attached in a round with others because, when the round formed, no parent had
   * said it cut them for being slow: that word travels on the parent's own control stream and
   * may come later than the target's own failure (a busy machine: over REJOIN_DELAY_MS). Only
   * for LATE_WORD_MS: a word after that is about the new round (which cannot judge sooner).
   */
  const rejoinedWithOthers = new Map<string, { t: TargetState, at: number }>()
  /** laggards cut off in this task, remembered for the next ones */
  const cutSlow = new Set<string>()
  const onTooSlow = (peer: string): void => {
    tooSlow.add(peer)
    const late = rejoinedWithOthers.get(peer)
    rejoinedWithOthers.delete(peer)
    if (late == null || performance.now() - late.at > LATE_WORD_MS) return
    // too late to give it a round of its own this time; it is still reported and remembered as one
    late.t.report.laggard = true
    cutSlow.add(peer)
    onEvent({ type: 'warning', message: `${peer} held the others back (said after it was re-attached with them): reported and remembered as a laggard` })
  }
  const linkCtx = { node, task, stallMs, self, onEvent, cancel, onTooSlow }
  const seen = new Set<string>()
  const opened = new Map(targets.map(t => [t, connect(linkCtx, t, firstSession, seen)]))
  for (const p of opened.values()) p.catch(() => {})

  let manifest: Manifest
  /** entries of the source's tree that exist but could not be read */
  let unreadable = 0
  let hashCache: FileHashCache | undefined
  let firstSave: Promise<void> | undefined
  // The manifest goes to each target of the first round while the tree is walked (a target
  // that may already hold this tree waits for the walk's end: its digest decides).
  const walked = new ManifestStream()
  const manifestSent = new Map(targets.map(t => [t, opened.get(t)!.then(async link => await link.sendManifest(walked, !isAtomic(task)))]))
  for (const p of manifestSent.values()) p.catch(() => {})
  try {
    // the cache loads while the tree is walked (the walk yields: the targets' sessions open meanwhile)
    const cacheLoad = source.hashCacheDir != null ? FileHashCache.load(source.hashCacheDir, task.src) : undefined
    manifest = await scanTree(task.src, {
      hash: true,
      signal: source.signal,
      hashCache: cacheLoad,
      deferHashMin: DEFER_HASH_MIN,
      onWarning: (message) => { onEvent({ type: 'warning', message }) },
      onReadError: () => { unreadable++ },
      // the prefix is gosync's own on every target (temps, kept parts, the stage): never sent
      onTempFile: (path) => { onEvent({ type: 'warning', message: `skipping ${path}: names starting with .gosync-tmp- are reserved for gosync's temp files` }) },
      onRoot: (root) => { walked.setRoot(root) },
      onEntries: (entries) => { walked.push(entries) }
    })
    if (unreadable > 0) {
      manifest.incomplete = true
      if (task.delete) onEvent({ type: 'warning', message: `${unreadable} entr${unreadable === 1 ? 'y' : 'ies'} of the source could not be read: the targets delete nothing this time (as rsync does after an I/O error)` })
    }
    walked.end(manifest)
    hashCache = await cacheLoad
    trace('source: scanned')
    // written while the targets take the manifest, not before: 20k rows cost ~50 ms
    firstSave = hashCache?.save(task.src).catch((err: Error) => { onEvent({ type: 'warning', message: `cannot save the hash cache: ${err.message}` }) })
  } catch (err) {
    const unreadable = new Error('the source could not read its tree')
    walked.fail(unreadable)
    for (const p of opened.values()) p.then(link => { link.abort(unreadable) }, () => {})
    cancel.close()
    if (cancel.requested) throw new TaskError(CANCELLED)
    throw new TaskError(`cannot read source ${task.src}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  onEvent({ type: 'scanned', entries: manifest.entries.length, bytes: manifest.entries.reduce((n, e) => n + e.size, 0) })

  const ctx: RoundContext = { node, task, manifest, stallMs, fanout, frameBytes, self, onEvent, hashCache, sourceHashes: new Map(), cancel, onTooSlow, knownSlow: await knownSlowLoad, uplink: new SourceUplink() }
  // A target whose transfer was cut (a relay above it died) but which still answers is
  // re-attached at once, while the other targets go on: targets cut by the same failure
  // (within REJOIN_DELAY_MS) form one new round fed from this source, which continues each
  // interrupted file from the part the target kept; files it already verified are not sent again.
  const retriesLeft = new Map(targets.map(t => [t, task.retries ?? DEFAULT_RETRIES]))
  const rounds: Array<Promise<void>> = []
  let cut: TargetState[] = []
  let rejoinTimer: NodeJS.Timeout | undefined
  const rejoin = (): void => {
    rejoinTimer = undefined
    const again = cut
    cut = []
    onEvent({ type: 'warning', message: `re-attaching ${again.length} target(s) whose transfer was cut: ${again.map(t => t.report.peer).join(', ')}` })
    for (const t of again) {
      // what the cut round did counts in the end (added once, after every round: see below)
      t.carried = {
        files: (t.carried?.files ?? 0) + t.report.files,
        bytes: (t.carried?.bytes ?? 0) + t.report.bytes,
        changes: t.carried?.changes ?? { created: t.report.created, deleted: t.report.deleted, updated: t.report.updated }
      }
      t.link = undefined
      t.report.error = undefined
      t.report.status = 'failed'
      t.report.files = 0
      t.report.bytes = 0
    }
    // A laggard goes on alone, fed by this source at its own pace; the targets cut with it
    // (its subtree) form a round of their own. Being slow is no failure: it costs no retry (onCut).
    const slow = again.filter(t => tooSlow.has(t.report.peer))
    const others = again.filter(t => !tooSlow.has(t.report.peer))
    for (const t of slow) {
      tooSlow.delete(t.report.peer)
      rejoinedWithOthers.delete(t.report.peer)
      cutSlow.add(t.report.peer)
      t.report.laggard = true
      onEvent({ type: 'warning', message: `${t.report.peer} held the others back: it continues in a round of its own` })
      rounds.push(runRound(ctx, [t], randomBytes(16).toString('hex'), onCut))
    }
    for (const t of others) rejoinedWithOthers.set(t.report.peer, { t, at: performance.now() })
    if (others.length > 0) rounds.push(runRound(ctx, others, randomBytes(16).toString('hex'), onCut))
  }
  const onCut = (t: TargetState): boolean => {
    // a laggard is re-attached whatever its retries: its cut costs none
    const left = (retriesLeft.get(t) ?? 0) + (tooSlow.has(t.report.peer) ? 1 : 0)
    if (left <= 0 || task.dryRun || cancel.requested) return false
    retriesLeft.set(t, left - 1)
    cut.push(t)
    rejoinTimer ??= setTimeout(rejoin, REJOIN_DELAY_MS)
    return true
  }
  rounds.push(runRound(ctx, targets, firstSession, onCut, opened, manifestSent))
  for (;;) {
    const n = rounds.length
    await Promise.all(rounds)
    if (rounds.length === n && rejoinTimer == null) break
    if (rejoinTimer != null) await new Promise(resolve => setTimeout(resolve, REJOIN_DELAY_MS / 5))
  }

  // every round is over: from here (--atomic: the switch, all or none) a cancel no longer applies
  cancel.close()
  await source.laggards?.remember([...cutSlow]).catch((err: Error) => { onEvent({ type: 'warning', message: `cannot remember the laggards: ${err.message}` }) })
  const switched = isAtomic(task) ? await switchAll(ctx, targets) : undefined
  for (const t of targets) {
    if (t.carried == null) continue
    t.report.files += t.carried.files
    t.report.bytes += t.carried.bytes
    // without --atomic the first round applied the structure: its counts are the changes
    if (!isAtomic(task)) Object.assign(t.report, t.carried.changes)
    if (t.report.status === 'unchanged') t.report.status = 'ok'
  }
  // hashes computed while sending: the next run need not read those files again. A daemon
  // writes them after it has answered (20k rows take 30-50 ms); save() queues itself behind
  // earlier saves of the file at once, so the next task's load waits for it. (firstSave is long
  // done: its warning still goes out before the report.)
  await firstSave
  const lastSave = hashCache?.save(task.src).catch(() => {}) ?? Promise.resolve()
  if (source.afterReport != null) source.afterReport(lastSave)
  else await lastSave

  const reports = targets.map(t => t.report)
  return {
    // a partial tree is not a success, even where every target took what could be read
    ok: reports.every(r => r.status !== 'failed') && unreadable === 0,
    unreadable: unreadable > 0 ? unreadable : undefined,
    session: firstSession,
    source: self,
    src: task.src,
    dst: task.dst,
    dryRun: task.dryRun,
    atomic: isAtomic(task) ? true : undefined,
    switched,
    digest: manifest.digest,
    targets: reports,
    totals: { files: reports.reduce((n, r) => n + r.files, 0), bytes: reports.reduce((n, r) => n + r.bytes, 0), seconds: (performance.now() - started) / 1000 }
  }
}

interface TargetState {
  given: string
  report: TargetReport
  link?: TargetLink
  /** the session (round) this target is in */
  session?: string
  files?: number[]
  resume?: Array<[number, number]>
  bytes?: number
  /** --atomic: everything received and verified in the target's stage, waiting for the switch */
  staged?: boolean
  /** files of needs.have whose content equals the source's: metadata only (plan.same) */
  same?: number[]
  /** deferred files' hashes this target's sessions established (sent to it, or `same`): what its receipt binds */
  hashes?: Map<number, string>
  /** re-attached: what the cut rounds completed (files, bytes) and the first round's changes */
  carried?: { files: number, bytes: number, changes: { created: number, deleted: number, updated: number } }
}

const isAtomic = (task: SyncTask): boolean => task.atomic === true && !task.dryRun

/** A target's result into its report; a receipt is checked against the target's PeerId. */
async function takeResult (ctx: RoundContext, t: TargetState, r: z.infer<typeof ResultMsg>): Promise<void> {
  t.report.status = r.status
  if (r.error != null) t.report.error = r.error
  Object.assign(t.report, r.changes)
  if (r.received != null) t.report.received = (t.report.received ?? 0) + r.received
  if (r.resumed != null) t.report.resumed = (t.report.resumed ?? 0) + r.resumed
  if (r.receipt != null) {
    // deferred files bind the hashes this target's session established: those of the files it received or had (plan.same)
    const established = new Set([...(t.files ?? []), ...(t.same ?? [])])
    const digest = contentDigest(ctx.manifest.digest, ctx.manifest.entries, (i) => established.has(i) ? t.hashes?.get(i) : undefined)
    const verified = await verifyReceipt(t.link!.peer, { session: t.session!, dst: ctx.task.dst, digest }, r.receipt)
    t.report.receipt = { ...r.receipt, session: t.session!, verified }
    if (!verified) {
      t.report.status = 'failed'
      t.report.error = 'the receipt does not verify: it is not signed by this target for this tree'
    }
  }
}

/**
 * --atomic, after every round: if every target staged, all switch; otherwise none does
 * (each keeps its stage for the next --atomic run).
 */
async function switchAll (ctx: RoundContext, targets: TargetState[]): Promise<boolean> {
  // a staged target that died or went silent while the others were on their way: no go
  for (const t of targets) {
    if (t.staged === true && !t.link!.stillStaged) {
      t.staged = false
      t.report.status = 'failed'
      t.report.error = `lost while staged: ${t.link!.stagedProblem}`
      t.link!.abort(new Error(t.report.error))
      ctx.onEvent({ type: 'target-done', target: t.report })
    }
  }
  const missing = targets.filter(t => t.staged !== true)
  const go = missing.length === 0
  const reason = go ? undefined : `--atomic: ${missing.length} of ${targets.length} target(s) failed (${missing.map(t => t.report.peer).join(', ')})`
  if (!go) ctx.onEvent({ type: 'warning', message: `${reason}; no target switches` })
  await Promise.all(targets.filter(t => t.staged === true).map(async (t) => {
    try {
      await t.link!.sendSwitch(go, reason)
      await takeResult(ctx, t, await t.link!.result())
    } catch (err) {
      t.report.status = 'failed'
      t.report.error = err instanceof Error ? err.message : String(err)
      t.link?.abort(new Error(t.report.error))
    }
    ctx.onEvent({ type: 'target-done', target: t.report })
  }))
  return go
}

interface RoundContext {
  node: Libp2p
  task: SyncTask
  manifest: Manifest
  stallMs: number
  fanout: number
  frameBytes: number
  self: string
  onEvent: (e: SyncEvent) => void
  hashCache?: FileHashCache
  /** hashes of deferred files computed on a target's `have` (one read per file per task) */
  sourceHashes: Map<number, Promise<string | undefined>>
  cancel: Cancel
  /** a parent cut this peer off as a laggard */
  onTooSlow: (peer: string) => void
  /** peers cut off as laggards in recent tasks */
  knownSlow: ReadonlySet<string>
  /** every link the source sends on in this task (source-judge.ts) */
  uplink: SourceUplink
}

/**
 * The source's hash of a deferred file, read now (memoized): to answer a target's `have`.
 * Undefined when it cannot be read or is no longer the file the scan saw (the target is then
 * sent the file, and the sender finds the change too).
 */
async function sourceHashOf (ctx: RoundContext, i: number): Promise<string | undefined> {
  let h = ctx.sourceHashes.get(i)
  if (h == null) {
    const e = ctx.manifest.entries[i]
    h = hashAsScanned(join(ctx.task.src, e.path), e).then((hash) => {
      ctx.hashCache?.store(e.path, e.size, e.mtime, e.mtimeNsec, e.ino ?? 0, hash)
      return hash
    }, () => undefined)
    ctx.sourceHashes.set(i, h)
  }
  return await h
}

/**
 * Checks the target, connects, opens its control stream and sends `open`: the target
 * starts scanning its destination. Heartbeats keep the session until the manifest.
 */
async function connect (ctx: Pick<RoundContext, 'node' | 'task' | 'stallMs' | 'self' | 'onEvent' | 'cancel' | 'onTooSlow'>, t: TargetState, session: string, seen: Set<string>): Promise<TargetLink> {
  const { node, task, stallMs, self, onEvent, cancel } = ctx
  const { dial, peer } = parseTarget(t.given)
  if (peer != null) t.report.peer = peer
  if (peer === self) throw new TaskError('target is the source itself')
  if (peer != null && seen.has(peer)) throw new TaskError('target listed twice')
  if (peer != null) seen.add(peer)
  if (cancel.requested) throw new Error(CANCELLED)
  const link = cancel.add(await TargetLink.open(node, dial, stallMs))
  link.onChildFailed = (peer, error, tooSlow) => {
    if (tooSlow) ctx.onTooSlow(peer)
    onEvent({ type: 'warning', message: `relay from ${link.peer} to ${peer}: ${error}` })
  }
  t.report.peer = link.peer
  t.report.muxer = link.muxer
  t.session = session
  await link.sendOpen({ session, dst: task.dst, delete: task.delete, dryRun: task.dryRun, compress: task.compress, atomic: isAtomic(task) })
  trace('source: opened')
  return link
}

/** One session with the given targets: layer 1, classes, relay trees, results. */
async function runRound (ctx: RoundContext, targets: TargetState[], session: string, onCut: (t: TargetState) => boolean, opened?: Map<TargetState, Promise<TargetLink>>, manifestSent?: Map<TargetState, Promise<boolean>>): Promise<void> {
  type T = TargetState
  const { node, task, manifest, stallMs, fanout, frameBytes, self, onEvent } = ctx
  const seen = new Set<string>()
  const fail = (t: T, err: unknown): void => {
    if (t.report.error != null) return
    t.report.status = 'failed'
    t.report.error = err instanceof Error ? err.message : String(err)
    t.link?.abort(new Error(t.report.error))
  }

  // layer 1: manifest to every target, needs back
  await Promise.all(targets.map(async (t) => {
    try {
      t.link = await (opened?.get(t) ?? connect(ctx, t, session, seen))
      // the first round's manifest went out during the walk; a later round's goes now
      if (await (manifestSent?.get(t) ?? t.link.sendManifest(ManifestStream.of(manifest), !isAtomic(task)))) t.report.treeKnown = true
      trace('source: manifest sent')
      const needs = await t.link.needs()
      trace('source: needs received')
      t.files = needs.files
      t.resume = needs.resume ?? []
      t.bytes = needs.bytes
      Object.assign(t.report, needs.changes)
      checkNeededFiles(needs.files, manifest.entries)
      const asked = new Set(needs.files)
      for (const [i, o] of t.resume) {
        if (!asked.has(i) || !Number.isInteger(o) || o <= 0 || o >= manifest.entries[i].size) throw new TaskError('target asked to resume a file at an impossible offset')
      }
      // files asked for because their hash is deferred, which the target may already have
      t.same = []
      for (const [i, h] of needs.have ?? []) {
        if (!asked.has(i) || manifest.entries[i].hash != null) throw new TaskError('target offered a file it may not offer')
        if (await sourceHashOf(ctx, i) === h) {
          t.same.push(i)
          t.hashes ??= new Map()
          t.hashes.set(i, h)
        }
      }
      if (t.same.length > 0) {
        const same = new Set(t.same)
        t.files = t.files.filter(i => !same.has(i))
        t.resume = t.resume.filter(([i]) => !same.has(i))
        const offset = new Map(needs.resume ?? [])
        t.bytes -= t.same.reduce((n, i) => n + manifest.entries[i].size - (offset.get(i) ?? 0), 0)
      }
    } catch (err) {
      fail(t, err)
    }
  }))

  const live = targets.filter(t => t.link != null && t.report.error == null)
  const planned = task.dryRun ? [] : classify(live.map(t => ({ target: t, files: t.files!, resume: t.resume })))
  // a host a relay found slow in a recent task goes alone from the start: it paces nobody
  const knownSlow = (t: T): boolean => ctx.knownSlow.has(t.link!.peer)
  for (const c of planned) if (c.members.length > 1) for (const m of c.members) if (knownSlow(m)) m.report.laggard = true
  const classes = splitOut(planned, knownSlow)
  const bytesTotal = classes.reduce((n, c) => n + c.members.length * c.files.reduce((m, i) => m + manifest.entries[i].size, 0), 0)
  onEvent({ type: 'planned', classes: classes.length, bytesToSend: bytesTotal, targets: live.length })

  // plans: every live target learns its parent and children (or that it gets no data)
  const classOf = new Map<T, number>()
  classes.forEach((c, k) => { for (const m of c.members) classOf.set(m, k) })
  const trees = classes.map(c => planTree<T | 'source'>('source', c.members, fanout))
  const childInfo = (n: T | 'source', k: number): KnownPeer[] =>
    (trees[k].children.get(n) ?? []).map(c => peerInfo(c as T))
  const judges: SourceJudge[][] = classes.map(() => [])
  // the source's own links open while the plans go out (a child that has no plan yet waits for it)
  const rootLinks = classes.map((_c, k) => openLinks(node, childInfo('source', k), session, k, stallMs))
  await Promise.all(live.map(async (t) => {
    try {
      const k = classOf.get(t)
      if (k == null) { await t.link!.sendPlan(null, t.same); return }
      const p = trees[k].parent.get(t)!
      await t.link!.sendPlan({ classId: k, parent: p === 'source' ? self : (p as T).link!.peer, children: childInfo(t, k), frameBytes }, t.same)
    } catch (err) {
      fail(t, err)
    }
  }))

  // progress for displays
  const progress = setInterval(() => {
    onEvent({ type: 'progress', bytesDone: live.reduce((n, t) => n + (t.link?.progress.bytes ?? 0), 0), bytesTotal })
  }, 500)

  // layer 2 (every class at once) while layer 1 waits for every result
  const sending = classes.map(async (c, k) => {
    // this round's links: a member re-attached meanwhile has a new link (and session)
    const memberLinks = c.members.map(m => m.link)
    await sendClass(node, task.src, manifest.entries, c.files, childInfo('source', k), {
      session, classId: k, frameBytes, compress: task.compress, stallMs, offsets: c.offsets, opened: rootLinks[k],
      onLinks: (links) => {
        for (const l of links) { ctx.cancel.add(l); ctx.uplink.add(l) }
        if (c.members.length > 1) {
          for (const l of links) {
            const j = judgeSourceChild(ctx, session, c, trees[k], l)
            if (j != null) judges[k].push(j)
          }
        }
      },
      beforeSend: () => { for (const l of memberLinks) l?.flushHashes() },
      onFileHash: (i, hash) => {
        // each target's receipt binds what this class sent it (a file read again later may differ)
        for (const m of c.members) (m.hashes ??= new Map()).set(i, hash)
        for (const l of memberLinks) l?.sendHash(i, hash)
        const e = manifest.entries[i]
        ctx.hashCache?.store(e.path, e.size, e.mtime, e.mtimeNsec, e.ino ?? 0, hash)
      },
      onChildFailed: (peer, error) => { onEvent({ type: 'warning', message: `relay to ${peer}: ${error}` }) }
    }).catch((err) => { onEvent({ type: 'warning', message: `class ${k}: ${(err as Error).message}` }) })
    for (const j of judges[k]) trace(`source: judge of ${j.peer}: highest share ${j.maxShare.toFixed(2)}`)
  })
  await Promise.all([...sending, ...live.map(async (t) => {
    try {
      if (isAtomic(task)) {
        const st = await t.link!.staged()
        t.report.files = st.files
        t.report.bytes = st.bytes
        if (st.ok) {
          // the switch (or not) comes once every target is through
          t.staged = true
          t.report.status = 'ok'
          t.link!.keepWaiting()
          return
        }
      }
      const r = await t.link!.result()
      trace('source: result received')
      await takeResult(ctx, t, r)
      t.report.files = r.files
      t.report.bytes = r.bytes
      // the target answered to the end: if it failed, a new round may still save it
      if (r.status === 'failed' && onCut(t)) return
    } catch (err) {
      fail(t, err)
    }
    onEvent({ type: 'target-done', target: t.report })
  })])
  clearInterval(progress)

}

/** How a relay node dials target `t`: its PeerId and the address the source reached it at. */
function peerInfo (t: TargetState): KnownPeer {
  return { peer: t.link!.peer, addrs: t.link!.remoteAddr !== '' ? [`${t.link!.remoteAddr.replace(/\/p2p\/[^/]+$/, '')}/p2p/${t.link!.peer}`] : [] }
}

/**
 * The source judges its child on link `l` in class `c` (of more than one member) with a probe
 * (source-judge.ts): to a host below the child (the one it holds back), or else to the member
 * after it (so the source's children probe different members). A verdict goes into the child's
 * report; a cut is announced (onTooSlow) before the link is cut.
 */
function judgeSourceChild (ctx: RoundContext, session: string, c: { members: TargetState[], files: number[], offsets?: ReadonlyMap<number, number> }, tree: RelayTree<TargetState | 'source'>, l: ChildLink): SourceJudge | undefined {
  const at = c.members.findIndex(m => m.link?.peer === l.peer)
  if (at < 0) return undefined
  const child = c.members[at]
  const via = (tree.children.get(child)?.[0] as TargetState | undefined) ?? c.members[(at + 1) % c.members.length]
  if (via === child) return undefined
  // what this class sends the child (kept parts excluded)
  const bytes = c.files.reduce((n, i) => n + ctx.manifest.entries[i].size - (c.offsets?.get(i) ?? 0), 0)
  const probe = async (target: ProbeTarget, onStart: () => void): Promise<ProbeResult> => await probeSendRate(ctx.node, target, session, { onStart, signal: ctx.cancel.signal })
  return new SourceJudge(l, () => bytes - l.credited, ctx.uplink, peerInfo(via), probe, (v) => {
    child.report.probe = { via: v.via, rate: Math.round(v.childRate), sentRate: Math.round(v.sentRate), sentRateDuring: Math.round(v.sentRateDuring), probeRate: Math.round(v.probeRate), cut: v.cut }
    const rates = `it sent ${formatRate(v.sentRateDuring)} with a probe to ${v.via}, ${formatRate(v.sentRate)} before, ${v.peer} taking ${formatRate(v.childRate)}`
    if (v.cut) {
      // before the cut: the child's own failure must find it known as a laggard
      ctx.onTooSlow(v.peer)
      ctx.onEvent({ type: 'warning', message: `${v.peer} held the source back (${rates}): cut off as a laggard` })
    } else {
      ctx.onEvent({ type: 'warning', message: `${v.peer} kept the source waiting, but the source's own uplink is the limit (${rates})` })
    }
  })
}

/** Every index a target asks for names a file of the manifest. (A hot loop in a function of its own: docs/ARCHITECTURE.md.) */
function checkNeededFiles (files: readonly number[], entries: readonly Entry[]): void {
  for (const i of files) {
    if (!Number.isInteger(i) || i < 0 || i >= entries.length || entries[i].type !== 'file') throw new TaskError('target asked for an entry that is not a file of the manifest')
  }
}
