import { realpath } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, normalize } from 'node:path'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { FramedStream } from '../framing/framed-stream.js'
import { expectJson, readJson, writeJson } from '../framing/json.js'
import { manifestDigest } from '../../src/manifest/digest.js'
import { checkManifestShape } from '../../src/manifest/validate.js'
import type { Entry } from '../../src/manifest/types.js'
import { scanDestination, TargetSession } from '../../src/sync/target-session.js'
import type { SessionRegistry } from '../../src/sync/sessions.js'
import { signReceipt, type Receipt, type Signer } from '../../src/sync/receipt.js'
import { HEARTBEAT_MS, MAX_CONTROL_FRAME, MAX_ENTRIES, PLAN_TIMEOUT_MS, PROTOCOL_VERSION } from './consts.js'
import { SourceInbox } from './source-inbox.js'
import { EntriesMsg, ManifestEndMsg, OpenMsg, PlanMsg, toEntry, toRoot } from './messages.js'

export interface TargetHandlerOptions {
  node: Libp2p
  sessions: SessionRegistry
  isTrusted: (peer: string) => boolean
  /** destinations must lie under one of these; empty = any absolute path */
  allowedRoots: string[]
  stallMs: number
  /** signs receipts with this node's identity key; none = results carry no receipt */
  sign?: Signer
  log: (msg: string) => void
}

/** A refusal or failure sent to the source as an `error` message. */
export class ControlRefusal extends Error {
  override name = 'ControlRefusal'
  constructor (readonly code: string, message: string) { super(message) }
}

const within = (path: string, root: string): boolean => path === root || path.startsWith(root === '/' ? '/' : root + '/')

/**
 * The destination must be absolute and, when roots are configured, lie under one of them
 * both as written and as resolved: the deepest part of it that exists is resolved with
 * realpath, so a symlink (even one a trusted source planted earlier) cannot lead out.
 */
async function checkDestination (dst: string, roots: string[]): Promise<string> {
  if (!isAbsolute(dst)) throw new ControlRefusal('bad-destination', `destination must be an absolute path, got ${JSON.stringify(dst)}`)
  if (dst.includes('\0')) throw new ControlRefusal('bad-destination', 'destination contains NUL')
  const norm = normalize(dst).replace(/\/+$/, '') || '/'
  if (roots.length === 0) return norm
  const refuse = (): never => { throw new ControlRefusal('destination-not-allowed', `destination ${norm} is outside the allowed roots: ${roots.join(', ')}`) }
  if (!roots.some(r => within(norm, r))) refuse()
  let existing = norm
  let rest = ''
  for (;;) {
    const real = await realpath(existing).catch(() => undefined)
    if (real != null) {
      const resolved = rest === '' ? real : join(real, rest)
      const realRoots = await Promise.all(roots.map(async r => await realpath(r).catch(() => r)))
      if (!realRoots.some(r => within(resolved, r))) refuse()
      return norm
    }
    if (existing === '/') refuse()
    rest = rest === '' ? basename(existing) : join(basename(existing), rest)
    existing = dirname(existing)
  }
}

/**
 * Inbound /gosync/control/1 on a target: trust check, manifest, diff and apply, needs,
 * plan, then the result. See docs/PROTOCOLS.md for the state machine.
 */
export async function handleControlStream (stream: Stream, connection: Connection, opts: TargetHandlerOptions): Promise<void> {
  const fs = new FramedStream(stream, { maxFrameBytes: MAX_CONTROL_FRAME })
  const remote = connection.remotePeer.toString()
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
    if (open.version !== PROTOCOL_VERSION) throw new ControlRefusal('version', `protocol version ${open.version} not supported (this daemon speaks ${PROTOCOL_VERSION})`)
    if (open.entryCount > MAX_ENTRIES) throw new ControlRefusal('too-large', `manifest of ${open.entryCount} entries exceeds the limit of ${MAX_ENTRIES}`)
    const dst = await checkDestination(open.dst, opts.allowedRoots)
    opts.sessions.lockDestination(dst, open.session)
    locked = { dst, id: open.session }
    // the destination is scanned while the manifest arrives
    const localScan = scanDestination(dst, opts.log)
    localScan.catch(() => {})

    const entries: Entry[] = []
    while (entries.length < open.entryCount) {
      const m = await expectJson(fs, EntriesMsg, stepSignal())
      if (entries.length + m.entries.length > open.entryCount) throw new ControlRefusal('bad-manifest', 'more entries than announced')
      for (const w of m.entries) entries.push(toEntry(w))
    }
    const end = await expectJson(fs, ManifestEndMsg, stepSignal())
    try {
      checkManifestShape(entries)
    } catch (err) {
      throw new ControlRefusal('bad-manifest', (err as Error).message)
    }
    const root = toRoot(open.root)
    const digest = manifestDigest(root, entries)
    if (digest !== end.digest) throw new ControlRefusal('bad-digest', `manifest digest mismatch: computed ${digest}, announced ${end.digest}`)

    session = new TargetSession({ id: open.session, sourcePeer: remote, dst, delete: open.delete, dryRun: open.dryRun, compress: open.compress, atomic: open.atomic, stallMs: opts.stallMs, localScan, manifest: { root, entries, digest }, onWarning: opts.log })
    opts.sessions.add(session)
    const s = session
    session.onChildFailed = (peer, error) => { writeJson(fs, { type: 'child-failed', peer, error: error.slice(0, 4000) }).catch(() => {}) }
    heartbeat = setInterval(() => {
      writeJson(fs, { type: 'heartbeat', files: s.progress.files, bytes: s.progress.bytes }).catch(() => {})
    }, HEARTBEAT_MS)

    const needs = await session.prepare()
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
    session.setRelay(plan.relay)
    // from here on one reader takes what the source sends: deferred hashes, the switch
    let broken: Error | undefined
    const inbox = new SourceInbox(fs, (i, h) => s.setHash(i, h), (err) => { broken ??= err; s.relayFailed(err) }, (err) => { s.endHashes(err) })
    await writeJson(fs, { type: 'ready' })
    let outcome = await session.finish(opts.stallMs)
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
    clearInterval(heartbeat)
    let receipt: Receipt | undefined
    if (outcome.status !== 'failed' && !open.dryRun && opts.sign != null) receipt = await signReceipt(opts.sign, { session: open.session, dst: open.dst, digest })
    // the destination is free before the source hears the result: it may start the next
    // session (a re-attach after a cut) at once, but not before this one's writes have stopped
    await session.receiverStopped()
    opts.sessions.remove(session)
    opts.sessions.unlock(locked.dst, locked.id)
    released = true
    await writeJson(fs, { type: 'result', ...outcome, receipt })
    await fs.closeWrite()
    // let the source read to the end and hang up first (closing early can lose data)
    await Promise.race([inbox.done, new Promise(resolve => setTimeout(resolve, 10_000).unref())])
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
    if (session != null) opts.sessions.remove(session)
    if (locked != null) opts.sessions.unlock(locked.dst, locked.id)
  }
}
