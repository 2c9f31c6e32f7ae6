import { trace } from '../../src/trace.js'
import type { Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { FramedStream } from '../framing/framed-stream.js'
import { dialPeer } from '../../src/node/dial.js'
import { readJson, writeJson, ProtocolError } from '../framing/json.js'
import type { Entry } from '../../src/manifest/types.js'
import type { ManifestStream } from '../../src/manifest/manifest-stream.js'
import { CONTROL_PROTOCOL, DIAL_TIMEOUT_MS, ENTRIES_PER_BATCH, HASHES_PER_SEND, HEARTBEAT_MS, MAX_CONTROL_FRAME, PROTOCOL_VERSION, SCAN_MAX_AGE_MS } from './consts.js'
import { TargetMsg, fromEntry, fromRoot, type Counts } from './messages.js'

export class RemoteError extends Error {
  override name = 'RemoteError'
  constructor (readonly code: string, message: string) { super(message) }
}
export class TargetStalledError extends Error {
  override name = 'TargetStalledError'
}

export interface SessionOptions {
  session: string
  dst: string
  delete: boolean
  dryRun: boolean
  compress: boolean
  atomic?: boolean
}

export interface RelayPlan {
  classId: number
  parent: string
  children: Array<{ peer: string, addrs: string[] }>
  frameBytes: number
}

type Msg = TargetMsg
type Of<T extends Msg['type']> = Extract<Msg, { type: T }>

/**
 * The source's end of one control session with one target. Every wait is bounded by
 * the stall timeout, which heartbeats from the target reset.
 */
export class TargetLink {
  progress = { files: 0, bytes: 0 }
  /** a relay child of this target failed (reported by the target; the child reports its own outcome too) */
  onChildFailed?: (peer: string, error: string, tooSlow: boolean) => void
  private constructor (readonly peer: string, readonly remoteAddr: string, readonly muxer: string | undefined, private readonly fs: FramedStream, private readonly stallMs: number) {}

  static async open (node: Libp2p, target: PeerId | Multiaddr | Multiaddr[], stallMs: number): Promise<TargetLink> {
    const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS)
    let conn, stream
    try {
      conn = await dialPeer(node, target, signal)
      trace('source: connected')
      stream = await conn.newStream(CONTROL_PROTOCOL, { signal, runOnLimitedConnection: true })
    } catch (err) {
      if (signal.aborted || (err as Error).name === 'TimeoutError') throw new TargetStalledError(`could not connect within ${DIAL_TIMEOUT_MS / 1000} s`)
      throw err
    }
    return new TargetLink(conn.remotePeer.toString(), conn.remoteAddr.toString(), conn.multiplexer, new FramedStream(stream, { maxFrameBytes: MAX_CONTROL_FRAME }), stallMs)
  }

  /**
   * Opens the session. Sent before the source has scanned its tree, so the target scans
   * its own meanwhile; heartbeats keep the session alive until sendManifest.
   */
  async sendOpen (opts: SessionOptions): Promise<void> {
    await writeJson(this.fs, { type: 'open', version: PROTOCOL_VERSION, session: opts.session, dst: opts.dst, delete: opts.delete, dryRun: opts.dryRun, compress: opts.compress, atomic: opts.atomic === true ? true : undefined }, AbortSignal.timeout(this.stallMs))
    this.beat ??= setInterval(() => { writeJson(this.fs, { type: 'heartbeat' }).catch(() => {}) }, HEARTBEAT_MS)
    this.openedAt = performance.now()
  }

  private openedAt = 0

  /**
   * Sends the manifest, or only `manifest-known` when `allowKnown` and the target has
   * announced that its tree is this manifest's. Returns true in that case. A target that
   * announced no tree (or when `allowKnown` is false) gets the entries while the source's walk
   * still produces them; otherwise the walk's end decides.
   */
  async sendManifest (manifest: ManifestStream, allowKnown = false): Promise<boolean> {
    try {
      // (heartbeats go on while this end waits) the target's first word: the tree its last
      // session left there, if any; if it is this very tree, the target's check decides
      const { digest } = await this.next('tree')
      if (allowKnown && digest != null) {
        const whole = await manifest.done()
        const known = digest === whole.digest && (await this.next('tree-check')).same &&
          // the check is no older than the open: not taken after a long scan here
          performance.now() - this.openedAt <= SCAN_MAX_AGE_MS
        if (known) {
          this.stopBeating()
          await writeJson(this.fs, { type: 'manifest-known', digest: whole.digest }, AbortSignal.timeout(this.stallMs))
          return true
        }
      }
      await writeJson(this.fs, { type: 'manifest', root: fromRoot(await manifest.root()) }, AbortSignal.timeout(this.stallMs))
      // heartbeats go on between batches: the walk may pause (a slow disk, a huge directory)
      for await (const batch of manifest.entries()) {
        for (const frame of entriesFrames(batch)) await this.fs.write(frame, AbortSignal.timeout(this.stallMs))
      }
      const whole = await manifest.done()
      this.stopBeating()
      await writeJson(this.fs, { type: 'manifest-end', digest: whole.digest, incomplete: whole.incomplete === true ? true : undefined }, AbortSignal.timeout(this.stallMs))
      return false
    } finally {
      this.stopBeating()
    }
  }

  private stopBeating (): void {
    clearInterval(this.beat)
    this.beat = undefined
  }

  /** The next message of type `want`; heartbeats and child reports are absorbed on the way. */
  async next<T extends Msg['type']> (want: T, stallMs = this.stallMs): Promise<Of<T>> {
    for (;;) {
      let m: Msg | null
      const quiet = AbortSignal.timeout(stallMs)
      try {
        m = await readJson(this.fs, TargetMsg, quiet)
      } catch (err) {
        // only our own timer means silence; a TimeoutError from below (say, the connection
        // aborted by a failed keep-alive ping) is reported as what it is
        if (quiet.aborted) throw new TargetStalledError(`no word from the target for ${Math.round(stallMs / 1000)} s`)
        throw err
      }
      if (m == null) throw new ProtocolError(`target closed the control stream while we waited for '${want}'`)
      if (m.type === 'error') throw new RemoteError(m.code, m.message)
      if (m.type === 'heartbeat') { this.progress = { files: m.files, bytes: m.bytes }; continue }
      // a tree check the source did not wait for (the digest was not this manifest's)
      if (m.type === 'tree-check' && want !== 'tree-check') continue
      if (m.type === 'child-failed') { this.onChildFailed?.(m.peer, m.error, m.slow === true); continue }
      if (m.type !== want) throw new ProtocolError(`expected '${want}', got '${m.type}'`)
      return m as Of<T>
    }
  }

  async needs (): Promise<{ files: number[], bytes: number, resume?: Array<[number, number]>, have?: Array<[number, string]>, changes: Counts }> {
    return await this.next('needs')
  }

  async sendPlan (relay: RelayPlan | null, same: number[] = []): Promise<void> {
    await writeJson(this.fs, { type: 'plan', relay, same: same.length > 0 ? same : undefined }, AbortSignal.timeout(this.stallMs))
    await this.next('ready')
  }

  async result (): Promise<Of<'result'>> {
    const r = this.waiting != null ? await this.resultAfterWait() : await this.next('result')
    await this.fs.closeWrite()
    return r
  }

  /** --atomic: the result arrives through the reader keepWaiting() started. */
  private async resultAfterWait (): Promise<Of<'result'>> {
    for (;;) {
      const done = await Promise.race([this.waiting!.then(() => true), new Promise<boolean>(resolve => setTimeout(() => { resolve(false) }, 1000))])
      if (done) break
      if (performance.now() - this.heard > this.stallMs) throw new TargetStalledError(`no word from the target for ${Math.round(this.stallMs / 1000)} s`)
    }
    if (this.waitError != null) throw this.waitError
    const m = this.early!
    if (m.type === 'error') throw new RemoteError(m.code, m.message)
    if (m.type !== 'result') throw new ProtocolError(`expected 'result', got '${m.type}'`)
    return m
  }

  private pendingHashes: Array<[number, string]> = []
  private hashFlushQueued = false

  /**
   * The hash of a deferred file this target receives; fire and forget (a dead link shows
   * elsewhere). Hashes go out in `hashes` messages: at once when HASHES_PER_SEND are
   * waiting or on flushHashes(), else at the end of this event-loop turn.
   */
  sendHash (index: number, hash: string): void {
    this.pendingHashes.push([index, hash])
    if (this.pendingHashes.length >= HASHES_PER_SEND) this.flushHashes()
    else if (!this.hashFlushQueued) {
      this.hashFlushQueued = true
      setImmediate(() => { this.flushHashes() })
    }
  }

  /** Send the hashes waiting now (before the data they are for, where the caller can). */
  flushHashes (): void {
    this.hashFlushQueued = false
    if (this.pendingHashes.length === 0) return
    const hashes = this.pendingHashes
    this.pendingHashes = []
    writeJson(this.fs, { type: 'hashes', hashes }).catch(() => {})
  }

  /** --atomic: the target has received (and verified) all it needs into its stage, or failed. */
  async staged (): Promise<Of<'staged'>> {
    return await this.next('staged')
  }

  private beat?: NodeJS.Timeout
  private waiting?: Promise<void>
  private heard = performance.now()
  private early?: Msg
  private waitError?: Error

  /**
   * --atomic: heartbeats to a staged target while other targets are still on their way, and
   * a reader of its heartbeats, so a staged target that dies or goes silent is known before
   * the verdict (stillStaged) instead of after the others were told to switch.
   */
  keepWaiting (): void {
    this.beat ??= setInterval(() => { writeJson(this.fs, { type: 'heartbeat' }).catch(() => {}) }, HEARTBEAT_MS)
    this.heard = performance.now()
    this.waiting ??= (async () => {
      try {
        for (;;) {
          // no timer on the read: liveness is judged from `heard` (stillStaged, resultAfterWait)
          const m = await readJson(this.fs, TargetMsg)
          if (m == null) throw new ProtocolError('the target closed the control stream while staged')
          this.heard = performance.now()
          if (m.type === 'heartbeat') continue
          if (m.type === 'child-failed') { this.onChildFailed?.(m.peer, m.error, m.slow === true); continue }
          this.early = m
          return
        }
      } catch (err) {
        this.waitError = err as Error
      }
    })()
  }

  /** --atomic: the staged target is still there: its stream is open and it sent a heartbeat lately. */
  get stillStaged (): boolean {
    return this.waitError == null && this.early == null && performance.now() - this.heard <= Math.min(this.stallMs, 3 * HEARTBEAT_MS)
  }

  /** Why stillStaged is false. */
  get stagedProblem (): string {
    if (this.waitError != null) return this.waitError.message
    if (this.early?.type === 'error') return this.early.message
    if (this.early != null) return `sent '${this.early.type}' while staged`
    return `no heartbeat for ${Math.round((performance.now() - this.heard) / 1000)} s while staged`
  }

  /** --atomic: the verdict. `go`: every target staged, switch now. */
  async sendSwitch (go: boolean, reason?: string): Promise<void> {
    clearInterval(this.beat)
    await writeJson(this.fs, { type: 'switch', go, reason }, AbortSignal.timeout(this.stallMs))
  }

  abort (err: Error): void {
    clearInterval(this.beat)
    this.fs.abort(err)
  }
}

/** Encoded `entries` messages of each batch, made once for every target that is sent the batch. */
const encodedBatches = new WeakMap<readonly Entry[], Uint8Array[]>()
const encoder = new TextEncoder()

function entriesFrames (batch: readonly Entry[]): Uint8Array[] {
  let frames = encodedBatches.get(batch)
  if (frames == null) {
    frames = []
    for (let i = 0; i < batch.length; i += ENTRIES_PER_BATCH) {
      frames.push(encoder.encode(JSON.stringify({ type: 'entries', entries: batch.slice(i, i + ENTRIES_PER_BATCH).map(fromEntry) })))
    }
    encodedBatches.set(batch, frames)
  }
  return frames
}
