import type { FramedStream } from '../framing/framed-stream.js'
import { ProtocolError, readJson } from '../framing/json.js'
import { isHashesMsg, LateSourceMsg } from './messages.js'

export interface SwitchVerdict { go: boolean, reason?: string }

/**
 * A target's one reader of the control stream after `ready`: deferred hashes during the
 * data phase, then (--atomic) the source's heartbeats and its switch verdict, then the end
 * of the stream. A message that breaks the protocol ends the session through `onFatal`.
 */
export class SourceInbox {
  private lastHeard = performance.now()
  private verdict?: SwitchVerdict
  private ended?: Error
  private wake?: () => void
  /** settles when the source closes its side (or the stream fails) */
  readonly done: Promise<void>

  /**
   * `onFatal`: the source broke the protocol; `onEnd`: the source closed its side (normal
   * after the result; before it, no hash will come any more).
   */
  constructor (fs: FramedStream, onHash: (index: number, hash: string) => string | undefined, onFatal: (err: Error) => void, onEnd: (err: Error) => void) {
    this.done = this.run(fs, onHash, onFatal, onEnd)
  }

  private async run (fs: FramedStream, onHash: (index: number, hash: string) => string | undefined, onFatal: (err: Error) => void, onEnd: (err: Error) => void): Promise<void> {
    try {
      for (;;) {
        // no timer here: each wait that matters (a hash, the verdict) has its own
        const m = await readJson(fs, LateSourceMsg, undefined, isHashesMsg)
        if (m == null) {
          this.ended = new ProtocolError('the source closed the control stream')
          onEnd(this.ended)
          return
        }
        this.lastHeard = performance.now()
        if (m.type === 'hash') {
          const refused = onHash(m.index, m.hash)
          if (refused != null) throw new ProtocolError(refused)
        } else if (m.type === 'hashes') {
          takeHashes(m.hashes, onHash)
        } else if (m.type === 'switch') {
          this.verdict = { go: m.go, reason: m.reason }
        }
        this.wake?.()
      }
    } catch (err) {
      this.ended = err as Error
      onFatal(err as Error)
    } finally {
      this.wake?.()
    }
  }

  /** --atomic: the verdict; fails if the source closes, breaks the protocol or is silent for `stallMs`. */
  async switchVerdict (stallMs: number): Promise<SwitchVerdict> {
    // the data phase may have been long and quiet on this stream: the stall clock starts now
    this.lastHeard = Math.max(this.lastHeard, performance.now())
    for (;;) {
      if (this.verdict != null) return this.verdict
      if (this.ended != null) throw this.ended
      if (performance.now() - this.lastHeard > stallMs) throw new ProtocolError(`no word from the source for ${Math.round(stallMs / 1000)} s while waiting for the switch`)
      await new Promise<void>(resolve => { this.wake = resolve; setTimeout(resolve, Math.min(1000, stallMs / 4)) })
    }
  }
}

/** A hashes message's pairs, in order; the first one refused ends the session. (A hot loop in a function of its own: docs/ARCHITECTURE.md.) */
function takeHashes (hashes: ReadonlyArray<readonly [number, string]>, onHash: (index: number, hash: string) => string | undefined): void {
  for (const [index, hash] of hashes) {
    const refused = onHash(index, hash)
    if (refused != null) throw new ProtocolError(refused)
  }
}
