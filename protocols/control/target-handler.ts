import { trace } from '../../src/trace.js'
import { isAbsolute, normalize, resolve } from 'node:path'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { FramedStream, GREETING_LIMITS } from '../framing/framed-stream.js'
import { expectJson, readJson, writeJson } from '../framing/json.js'
import { ManifestDigester } from '../../src/manifest/digest.js'
import { ManifestShapeChecker } from '../../src/manifest/validate.js'
import type { Entry, RootMeta } from '../../src/manifest/types.js'
import { isWithin, overlaps } from '../../src/manifest/paths.js'
import { resolveDeepest, underRoots } from '../../src/fs/safe-path.js'
import { scanDestination, TargetSession, type LocalScan } from '../../src/sync/target-session.js'
import { recordFor, scanFingerprint, type ScannedTree, type TreeRecordStore } from '../../src/sync/tree-record.js'
import type { SessionRegistry } from '../../src/sync/sessions.js'
import { signReceipt, type Receipt, type Signer } from '../../src/sync/receipt.js'
import { HEARTBEAT_MS, MAX_CONTROL_FRAME, MAX_ENTRIES, MAX_MANIFEST_CHARS, PLAN_TIMEOUT_MS, PROTOCOL_VERSION, SCAN_MAX_AGE_MS } from './consts.js'
import { SourceInbox } from './source-inbox.js'
import { dropChildLinks, openChildLinksEarly } from '../relay/early-links.js'
import { MAX_FRAME_BYTES, MIN_FRAME_BYTES } from '../relay/consts.js'
import { isEntriesMsg, ManifestOrHeartbeatMsg, ManifestPartMsg, OpenMsg, PlanMsg, toEntry, toRoot, type ManifestMsg, type ManifestKnownMsg } from './messages.js'
import type { z } from 'zod/v3'

export interface TargetHandlerOptions {
  node: Libp2p
  sessions: SessionRegistry
  isTrusted: (peer: string) => boolean
  /** destinations must lie under one of these; empty = any absolute path */
  allowedRoots: string[]
  /** the daemon's home: no destination may lie in it or hold it */
  home?: string
  stallMs: number
  /** what each destination held after its last session (none: every re-sync sends the manifest) */
  trees?: TreeRecordStore
  /** signs receipts with this node's identity key; none = results carry no receipt */
  sign?: Signer
  log: (msg: string) => void
}

/** A refusal or failure sent to the source as an `error` message. */
export class ControlRefusal extends Error {
  override name = 'ControlRefusal'
  constructor (readonly code: string, message: string) { super(message) }
}


/**
 * The destination must be absolute and, when roots are configured, lie under one of them
 * both as written and as resolved: the deepest part of it that exists is resolved with
 * realpath, so a symlink (even one a trusted source planted earlier) cannot lead out. It may
 * neither lie in the daemon's home nor hold it (its identity key and trust list).
 * Returns the path as written (normalized) and as resolved: sessions lock the resolved one,
 * so two spellings of one directory (a planted `alias -> .`) are never written at once.
 */
async function checkDestination (dst: string, roots: string[], home?: string): Promise<{ path: string, resolved: string }> {
  if (!isAbsolute(dst)) throw new ControlRefusal('bad-destination', `destination must be an absolute path, got ${JSON.stringify(dst)}`)
  if (dst.includes('\0')) throw new ControlRefusal('bad-destination', 'destination contains NUL')
  // a lone surrogate becomes U+FFFD on disk: two spellings of one directory
  if (!dst.isWellFormed()) throw new ControlRefusal('bad-destination', 'destination is not valid Unicode (a lone surrogate)')
  const norm = normalize(dst).replace(/\/+$/, '') || '/'
  const refuse = (): never => { throw new ControlRefusal('destination-not-allowed', `destination ${norm} is outside the allowed roots: ${roots.join(', ')}`) }
  if (roots.length > 0 && !roots.some(r => isWithin(norm, r))) refuse()
  const resolved = await resolveDeepest(norm)
  if (roots.length > 0 && !await underRoots(resolved, roots)) refuse()
  if (home != null) {
    const realHome = await resolveDeepest(resolve(home))
    if (overlaps(resolved, realHome)) throw new ControlRefusal('destination-not-allowed', `destination ${norm} is or holds this daemon's home ${realHome} (its key and trust list); give the daemon another --home to write there`)
  }
  return { path: norm, resolved }
}

const isRoot = process.getuid?.() === 0

function toScanned (scan: LocalScan): ScannedTree {
  if (scan.root == null || scan.stale.length > 0) throw new Error('no tree to record')
  return { root: scan.root, entries: scan.entries }
}

/**
 * The target's first message (`tree`): the tree the last session left, at once; then, if
 * there was one, whether the scan shows the destination still exactly so (`tree-check`).
 * Returns the digest if so.
 */
async function announceTree (fs: FramedStream, dst: string, open: z.infer<typeof OpenMsg>, localScan: Promise<LocalScan>, trees?: TreeRecordStore): Promise<string | undefined> {
  const rec = open.atomic === true ? undefined : await trees?.get(dst)
  const usable = rec != null && (!open.delete || rec.exact)
  await writeJson(fs, { type: 'tree', digest: usable ? rec.digest : null })
  if (!usable) return undefined
  let same = false
  try {
    same = scanFingerprint(toScanned(await localScan)) === rec.fingerprint
  } catch {}
  await writeJson(fs, { type: 'tree-check', same })
  trace(`target: tree check ${same}`)
  return same ? rec.digest : undefined
}

/** After the result: close this side, and let the source read to the end and hang up first (closing early can lose data). */
async function endAfterResult (fs: FramedStream, inbox: SourceInbox): Promise<void> {
  await fs.closeWrite()
  await Promise.race([inbox.done, new Promise(resolve => setTimeout(resolve, 10_000).unref())])
}

/** The source's manifest is the tree here: nothing to do but confirm it (needs, plan, ready). */
async function serveKnownTree (fs: FramedStream, digest: string, open: z.infer<typeof OpenMsg>, opts: TargetHandlerOptions): Promise<void> {
  await writeJson(fs, { type: 'needs', files: [], bytes: 0, changes: { created: 0, deleted: 0, updated: 0 } })
  const plan = await expectJson(fs, PlanMsg, AbortSignal.timeout(PLAN_TIMEOUT_MS))
  if (plan.relay != null || (plan.same?.length ?? 0) > 0) throw new ControlRefusal('bad-plan', 'a plan for a target that needs nothing')
  await writeJson(fs, { type: 'ready' })
  opts.log(`session ${open.session}: ${open.dst} is already the source's tree ${digest.slice(0, 16)}…`)
}

/**
 * The manifest's entries, batch by batch until `manifest-end` (source heartbeats between are
 * signs of life), each checked (checkManifestShape) and digested as it comes: the source sends
 * them while it still walks its tree. Refuses more than `maxEntries` entries or a digest that
 * is not the announced one.
 */
export async function receiveManifest (fs: FramedStream, root: RootMeta, stepSignal: () => AbortSignal, maxEntries = MAX_ENTRIES, maxChars = MAX_MANIFEST_CHARS): Promise<{ entries: Entry[], digest: string, incomplete: boolean }> {
  const entries: Entry[] = []
  const digester = new ManifestDigester(root)
  const end = await receiveEntries(fs, entries, new ManifestShapeChecker(), digester, stepSignal, maxEntries, maxChars)
  const digest = digester.digest()
  if (digest !== end.digest) throw new ControlRefusal('bad-digest', `manifest digest mismatch: computed ${digest}, announced ${end.digest}`)
  return { entries, digest, incomplete: end.incomplete === true }
}

/** receiveManifest's loop (a hot loop in a function of its own: docs/ARCHITECTURE.md); returns `manifest-end`. */
async function receiveEntries (fs: FramedStream, entries: Entry[], shape: ManifestShapeChecker, digester: ManifestDigester, stepSignal: () => AbortSignal, maxEntries: number, maxChars: number): Promise<{ digest: string, incomplete?: boolean }> {
  let chars = 0
  for (;;) {
    const m = await expectJson(fs, ManifestPartMsg, stepSignal(), isEntriesMsg)
    if (m.type === 'manifest-end') return m
    if (m.type === 'heartbeat') continue
    if (entries.length + m.entries.length > maxEntries) throw new ControlRefusal('too-large', `manifest of more than ${maxEntries} entries`)
    for (const e of m.entries) chars += e.path.length + (e.target?.length ?? 0)
    if (chars > maxChars) throw new ControlRefusal('too-large', `manifest whose paths and link targets take more than ${maxChars} characters`)
    const batch = m.entries.map(toEntry)
    try {
      shape.check(batch)
    } catch (err) {
      throw new ControlRefusal('bad-manifest', (err as Error).message)
    }
    digester.update(batch)
    for (const e of batch) entries.push(e)
  }
}

/**
 * Inbound /gosync/control/1 on a target: trust check, manifest, diff and apply, needs,
 * plan, then the result. See docs/PROTOCOLS.md for the state machine.
 */
export async function handleControlStream (stream: Stream, connection: Connection, opts: TargetHandlerOptions): Promise<void> {
  const remote = connection.remotePeer.toString()
  // an untrusted peer is refused before anything is read: it may not make this daemon buffer more than a greeting
  const fs = new FramedStream(stream, opts.isTrusted(remote) ? { maxFrameBytes: MAX_CONTROL_FRAME } : GREETING_LIMITS)
  const stepSignal = (): AbortSignal => AbortSignal.timeout(opts.stallMs)
  let session: TargetSession | undefined
  let heartbeat: NodeJS.Timeout | undefined
  let locked: { dst: string, id: string } | undefined
  let released = false
  try {
    if (!opts.isTrusted(remote)) {
      throw new ControlRefusal('untrusted', `peer ${remote} is not trusted by ${opts.node.peerId.toString()}; on that host run: gosync trust ${remote}`)
    }
    const open = await expectJson(fs, OpenMsg, stepSignal())
    trace('target: open received')
    if (open.version !== PROTOCOL_VERSION) throw new ControlRefusal('version', `protocol version ${open.version} not supported (this daemon speaks ${PROTOCOL_VERSION})`)
    const { path: dst, resolved } = await checkDestination(open.dst, opts.allowedRoots, opts.home)
    opts.sessions.lockDestination(resolved, open.session)
    locked = { dst: resolved, id: open.session }
    // the destination is scanned while the source scans its tree
    const scanStarted = performance.now()
    let localScan = scanDestination(dst, opts.log)
    localScan.then(() => { trace('target: local scan done') }, () => {})
    // from here to the result the source may wait on this target (its scan, its work): heartbeats
    heartbeat = setInterval(() => {
      writeJson(fs, { type: 'heartbeat', files: session?.progress.files ?? 0, bytes: session?.progress.bytes ?? 0 }).catch(() => {})
    }, HEARTBEAT_MS)
    // the tree may be what the last session left: say so, and the source may skip the manifest
    const announced = announceTree(fs, dst, open, localScan, opts.trees)
    announced.catch(() => {})

    // the source scans its tree after the open: its heartbeats come until the manifest starts
    let start: z.infer<typeof ManifestMsg> | z.infer<typeof ManifestKnownMsg> | undefined
    while (start == null) {
      const m = await expectJson(fs, ManifestOrHeartbeatMsg, stepSignal())
      if (m.type !== 'heartbeat') start = m
    }
    if (start.type === 'manifest-known') {
      if (await announced.catch(() => undefined) !== start.digest) throw new ControlRefusal('bad-manifest', 'manifest-known for a tree this target did not announce')
      await serveKnownTree(fs, start.digest, open, opts)
      clearInterval(heartbeat)
      opts.sessions.unlock(locked.dst, locked.id)
      locked = undefined
      await writeJson(fs, { type: 'result', status: 'unchanged', files: 0, bytes: 0, changes: { created: 0, deleted: 0, updated: 0 }, received: 0, resumed: 0, receipt: open.dryRun || opts.sign == null ? undefined : await signReceipt(opts.sign, { session: open.session, dst: open.dst, digest: start.digest }) })
      await endAfterResult(fs, new SourceInbox(fs, () => 'no hash is due: the tree is known', () => {}, () => {}))
      return
    }
    trace('target: manifest starts')
    const root = toRoot(start.root)
    const { entries, digest, incomplete } = await receiveManifest(fs, root, stepSignal)
    trace('target: manifest checked')
    if (incomplete && open.delete) opts.log(`session ${open.session}: the source could not read all of its tree: nothing is deleted in ${dst}`)
    // the source walked its tree for long: what this end's scan saw may have changed since
    if (performance.now() - scanStarted > SCAN_MAX_AGE_MS) {
      localScan = scanDestination(dst, opts.log)
      localScan.catch(() => {})
    }
    session = new TargetSession({ id: open.session, sourcePeer: remote, dst, delete: open.delete && !incomplete, dryRun: open.dryRun, compress: open.compress, atomic: open.atomic, stallMs: opts.stallMs, localScan, manifest: { root, entries, digest }, onWarning: opts.log })
    opts.sessions.add(session)
    const s = session
    session.onChildFailed = (peer, error, tooSlow) => { writeJson(fs, { type: 'child-failed', peer, error: error.slice(0, 4000), ...(tooSlow === true ? { slow: true } : {}) }).catch(() => {}) }
    const needs = await session.prepare()
    trace('target: prepared')
    await writeJson(fs, { type: 'needs', files: needs.files, bytes: needs.bytes, resume: needs.resume, have: needs.have.length > 0 ? needs.have : undefined, changes: session.counts })
    // the plan may take a while: the source waits for every target's needs first
    const plan = await expectJson(fs, PlanMsg, AbortSignal.timeout(PLAN_TIMEOUT_MS))
    try {
      await session.applySame(plan.same ?? [])
    } catch (err) {
      throw new ControlRefusal('bad-plan', (err as Error).message)
    }
    if (plan.relay != null && (open.dryRun || session.wanted.length === 0)) throw new ControlRefusal('bad-plan', 'relay assigned to a target that needs no data')
    if (plan.relay == null && session.wanted.length > 0 && !open.dryRun) throw new ControlRefusal('bad-plan', 'no relay assigned but files are needed')
    // frameBytes bounds what a compressed frame may inflate to, here and on every node below
    if (plan.relay != null && (plan.relay.frameBytes < MIN_FRAME_BYTES || plan.relay.frameBytes > MAX_FRAME_BYTES)) throw new ControlRefusal('bad-plan', `frameBytes ${plan.relay.frameBytes} is outside ${MIN_FRAME_BYTES}..${MAX_FRAME_BYTES}`)
    session.setRelay(plan.relay)
    openChildLinksEarly(opts.node, session, opts.stallMs)
    // from here on one reader takes what the source sends: deferred hashes, the switch
    let broken: Error | undefined
    const inbox = new SourceInbox(fs, (i, h) => s.setHash(i, h), (err) => { broken ??= err; s.relayFailed(err) }, (err) => { s.endHashes(err) })
    await writeJson(fs, { type: 'ready' })
    trace('target: plan taken, ready')
    let outcome = await session.finish(opts.stallMs)
    trace('target: finished')
    // a bad late message fails the session even when no data phase was running to stop
    if (broken != null) outcome = { ...outcome, status: 'failed', error: `the source broke the protocol: ${broken.message}` }
    if (session.atomic) {
      // two-phase: report the stage, switch only on the source's word; heartbeats go on, so
      // the source knows this target is still there when it decides
      await writeJson(fs, { type: 'staged', ok: outcome.status !== 'failed', error: outcome.error, files: outcome.files, bytes: outcome.bytes })
      if (outcome.status !== 'failed') {
        const verdict = await inbox.switchVerdict(opts.stallMs)
        outcome = verdict.go
          ? await session.switchOver()
          : { ...outcome, status: 'failed', error: `staged and verified, not switched: ${verdict.reason ?? 'the source called the switch off'}` }
      }
    }
    let receipt: Receipt | undefined
    if (outcome.status !== 'failed' && !open.dryRun && opts.sign != null) receipt = await signReceipt(opts.sign, { session: open.session, dst: open.dst, digest: session.receiptDigest() })
    // the destination is free before the source hears the result: it may start the next
    // session (a re-attach after a cut) at once, but not before this one's writes have stopped
    // (which may wait for this node's relay children to confirm: heartbeats go on meanwhile)
    await session.receiverStopped()
    clearInterval(heartbeat)
    opts.sessions.remove(session)
    opts.sessions.unlock(locked.dst, locked.id)
    released = true
    await writeJson(fs, { type: 'result', ...outcome, receipt })
    trace('target: result sent')
    if (outcome.status !== 'failed' && !open.dryRun && !session.atomic && opts.trees != null) {
      const hashed = session.hashedManifest()
      // nothing changed: the first scan is the tree; else scan again (after the result: off the critical path)
      if (hashed != null) opts.trees.putLater(dst, async () => recordFor(hashed, outcome.status === 'unchanged' ? toScanned(await localScan) : toScanned(await scanDestination(dst)), isRoot))
    }
    await endAfterResult(fs, inbox)
  } catch (err) {
    const e = err as Error
    const code = e instanceof ControlRefusal ? e.code : (e.name === 'DestinationBusyError' ? 'busy' : 'failed')
    opts.log(`control session from ${remote} failed: ${e.message}`)
    // once released, the destination may belong to another session: leave it alone
    if (!released) await session?.abandon()
    await writeJson(fs, { type: 'error', code, message: e.message }).catch(() => {})
    await fs.closeWrite()
    setTimeout(() => { fs.abort(e) }, 5000).unref()
  } finally {
    clearInterval(heartbeat)
    if (session != null) dropChildLinks(session, new Error('the session ended before its relay stream came'))
    if (session != null) opts.sessions.remove(session)
    if (locked != null) opts.sessions.unlock(locked.dst, locked.id)
  }
}
