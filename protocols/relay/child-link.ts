import type { Libp2p } from '@libp2p/interface'
import { FramedStream } from '../framing/framed-stream.js'
import { asBulkSender } from '../../src/node/bulk-stream.js'
import { dialKnownPeer, type KnownPeer } from '../../src/node/dial.js'
import { trace } from '../../src/trace.js'
import { expectJson, readJson, writeJson, ProtocolError } from '../framing/json.js'
import { ACCEPT_TIMEOUT_MS, MAX_FRAME_BYTES, RELAY_PROTOCOL } from './consts.js'
import { ChildMsg, END_FRAME } from './frames.js'
import { HeldClock, LAGGARD_SHARE, LaggardMeter, type ChildClocks } from './laggard.js'

export class ChildStalledError extends Error {
  override name = 'ChildStalledError'
}
/** The child kept its parent waiting, by itself, for at least half of the last few seconds (laggard.ts). */
export class ChildTooSlowError extends Error {
  override name = 'ChildTooSlowError'
}
export class RelayRefusedError extends Error {
  override name = 'RelayRefusedError'
}

export type ChildTarget = KnownPeer

/**
 * The sending end of one relay edge (parent → child). Sends are bounded by the child's
 * credit: at most `window` bytes are unacknowledged, whatever the muxer, so a slow child
 * slows its parent instead of filling memory. A child that grants no credit for
 * `stallTimeoutMs` is cut off; one failed child never stops the others. A relay also cuts
 * off a child that holds it back by itself (`onTooSlow`, laggard.ts).
 */
export class ChildLink {
  private inflight = 0
  private window = 0
  /** time this node has waited for this child's credit */
  private readonly waited = new HeldClock()
  private readonly meter = new LaggardMeter()
  /** set by a relay: time it waits for any of its children (reported to its parent with each credit) */
  nodeHeld?: HeldClock
  /**
   * Set by a relay, which then judges this child: one that holds it back is cut off as a laggard
   * (laggard.ts), and this is called once. A relay judges by its waits alone: it is a target
   * itself, so being held back shows that the targets differ. The source is faster than any
   * target (it stores nothing), so its own waits show nothing of the kind (on one machine
   * running all the daemons, its first child took the blame for the whole chain's shared CPU):
   * it judges its children with a probe instead (onCredit, src/sync/source-judge.ts).
   */
  onTooSlow?: (err: ChildTooSlowError) => void
  /** Set by the source, which judges its own children another way (src/sync/source-judge.ts): told of every credit. */
  onCredit?: (clocks: ChildClocks) => void
  /** time during which a send to this child was under way: waiting for credit or for the connection to take it */
  private readonly sending = new HeldClock()
  /** bytes the child has credited so far */
  credited = 0
  private creditWaiter?: () => void
  private doneResult?: { ok: boolean, error?: string }
  private doneWaiter?: () => void
  failure?: Error
  private constructor (readonly peer: string, private readonly fs: FramedStream, private readonly stallTimeoutMs: number) {}

  static async open (node: Libp2p, child: ChildTarget, session: string, classId: number, stallTimeoutMs: number): Promise<ChildLink> {
    const signal = AbortSignal.timeout(ACCEPT_TIMEOUT_MS)
    const conn = await dialKnownPeer(node, child, signal)
    const stream = await conn.newStream(RELAY_PROTOCOL, { signal, runOnLimitedConnection: true })
    // the child forwards each muxer frame as soon as it is in; control streams keep their turn
    asBulkSender(stream)
    const fs = new FramedStream(stream, { maxFrameBytes: 1 << 20 })
    try {
      await writeJson(fs, { type: 'hello', session, classId }, signal)
      const reply = await expectJson(fs, ChildMsg, signal)
      if (reply.type === 'refuse') throw new RelayRefusedError(`${child.peer} refused the relay stream: ${reply.error}`)
      if (reply.type !== 'accept') throw new ProtocolError(`expected accept, got ${reply.type}`)
      const link = new ChildLink(child.peer, fs, stallTimeoutMs)
      link.window = Math.max(reply.window, MAX_FRAME_BYTES + 64)
      void link.readLoop()
      return link
    } catch (err) {
      fs.abort(err as Error)
      throw err
    }
  }

  private async readLoop (): Promise<void> {
    try {
      for (;;) {
        const m = await readJson(this.fs, ChildMsg)
        if (m == null) break
        if (m.type === 'credit') {
          this.inflight = Math.max(0, this.inflight - m.bytes)
          this.credited += m.bytes
          this.judge(m)
          this.onCredit?.(m)
          this.wakeCredit()
        } else if (m.type === 'done') {
          this.doneResult = { ok: m.ok, error: m.error }
          this.doneWaiter?.()
        } else {
          throw new ProtocolError(`unexpected ${m.type} from child`)
        }
      }
      if (this.doneResult == null) this.fail(new ProtocolError(`${this.peer} closed the relay stream early`))
    } catch (err) {
      this.fail(err as Error)
    }
  }

  /** After each credit: cut this child if it alone has held the tree back for at least half of the last window and of its last half. */
  private judge (clocks: ChildClocks): void {
    if (this.onTooSlow == null || !this.meter.sample(performance.now(), this.waited.ms, clocks)) return
    const err = new ChildTooSlowError(`${this.peer} kept the others waiting for at least ${LAGGARD_SHARE * 100} % of the last ${this.meter.judgedOverMs / 1000} s: too slow for this tree`)
    // the source hears of it before the child's own report of a cut transfer
    this.onTooSlow(err)
    this.fail(err)
  }

  private wakeCredit (): void {
    const w = this.creditWaiter
    this.creditWaiter = undefined
    w?.()
  }

  private fail (err: Error): void {
    if (this.failure != null) return
    this.failure = err
    this.fs.abort(err)
    this.wakeCredit()
    this.doneWaiter?.()
  }

  get alive (): boolean { return this.failure == null }
  /** the child has confirmed the end of the transfer */
  get finished (): boolean { return this.doneResult != null }

  /** Send frames (each a list of parts) once credit allows; never throws (a failed child is marked and skipped). */
  async send (frames: Uint8Array[][]): Promise<void> {
    let len = 0
    for (const parts of frames) for (const p of parts) len += p.byteLength
    await this.transmit(len, async (signal) => { await this.fs.writeFrames(frames, signal) })
  }

  /**
   * Send bytes that are already framed, passed on from the parent's stream (maybe part of a
   * frame); `bodyBytes` is what the child will credit for them: frame bytes without prefixes.
   */
  async sendBytes (pieces: Uint8Array[], bodyBytes: number): Promise<void> {
    await this.transmit(bodyBytes, async (signal) => { await this.fs.writeBytes(pieces, signal) })
  }

  private async transmit (creditBytes: number, write: (signal: AbortSignal) => Promise<void>): Promise<void> {
    if (this.failure != null) return
    this.sending.begin()
    try {
      while (this.failure == null && this.inflight + creditBytes > this.window) {
        await this.waitCredit()
      }
      if (this.failure != null) return
      this.inflight += creditBytes
      await write(AbortSignal.timeout(this.stallTimeoutMs))
    } catch (err) {
      this.fail(err as Error)
    } finally {
      this.sending.end()
    }
  }

  /** ms during which a send to this child was under way (for credit or for the connection), including one under way now */
  get sendingMs (): number { return this.sending.ms }

  private async waitCredit (): Promise<void> {
    this.waited.begin()
    this.nodeHeld?.begin()
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.fail(new ChildStalledError(`${this.peer} granted no credit for ${this.stallTimeoutMs} ms`))
        }, this.stallTimeoutMs)
        this.creditWaiter = () => { clearTimeout(timer); resolve() }
      })
    } finally {
      this.waited.end()
      this.nodeHeld?.end()
    }
  }

  /** Send END and wait for the child's verdict on its own files. */
  async finish (): Promise<{ ok: boolean, error?: string }> {
    trace(`relay edge to ${this.peer}: waited ${Math.round(this.waited.ms)} ms for credit, highest blame share ${this.meter.maxShare.toFixed(2)}`)
    await this.send([[END_FRAME]])
    if (this.failure == null && this.doneResult == null) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.fail(new ChildStalledError(`${this.peer} did not confirm the end of the transfer within ${this.stallTimeoutMs} ms`))
        }, this.stallTimeoutMs)
        this.doneWaiter = () => { clearTimeout(timer); resolve() }
      })
    }
    await this.fs.closeWrite()
    if (this.doneResult != null) return this.doneResult
    return { ok: false, error: this.failure?.message ?? 'relay failed' }
  }

  abort (err: Error): void { this.fail(err) }
}
