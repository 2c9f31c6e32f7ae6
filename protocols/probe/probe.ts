import type { Libp2p } from '@libp2p/interface'
import { FramedStream, GREETING_LIMITS } from '../framing/framed-stream.js'
import { expectJson, ProtocolError, readJson, writeJson } from '../framing/json.js'
import { dialKnownPeer, type KnownPeer } from '../../src/node/dial.js'
import { PROBE_DEADLINE_MS, PROBE_FRAME_BYTES, PROBE_MAX_BYTES, PROBE_MS, PROBE_PROTOCOL, PROBE_WINDOW_BYTES } from './consts.js'
import { ProbeReplyMsg } from './messages.js'

export class ProbeRefusedError extends Error {
  override name = 'ProbeRefusedError'
}

export type ProbeTarget = KnownPeer

export interface ProbeOptions {
  /** called when the data starts to flow: the span the rate is measured over begins */
  onStart?: () => void
  maxBytes?: number
  ms?: number
  signal?: AbortSignal
}

export interface ProbeResult {
  /** data acknowledged by the target */
  bytes: number
  /** from the start of the data to the last acknowledgement (or to the end, without any) */
  ms: number
  bytesPerSecond: number
}

/** Every probe sends these bytes (Noise encrypts them: nothing on the way can shrink them). */
const ZEROS = new Uint8Array(PROBE_FRAME_BYTES)

/**
 * How fast this node can send to `target` now, alongside whatever else it is sending: data for
 * up to `ms` or `maxBytes`, whichever ends first, with at most PROBE_WINDOW_BYTES unacknowledged;
 * the rate is what the target acknowledged over that span. The target reads and drops it, for
 * a session it serves with this node as the source (handler.ts).
 */
export async function probeSendRate (node: Libp2p, target: ProbeTarget, session: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const maxBytes = opts.maxBytes ?? PROBE_MAX_BYTES
  const ms = opts.ms ?? PROBE_MS
  const signal = opts.signal != null ? AbortSignal.any([opts.signal, AbortSignal.timeout(PROBE_DEADLINE_MS)]) : AbortSignal.timeout(PROBE_DEADLINE_MS)
  const conn = await dialKnownPeer(node, target, signal)
  const stream = await conn.newStream(PROBE_PROTOCOL, { signal, runOnLimitedConnection: true })
  const fs = new FramedStream(stream, GREETING_LIMITS)
  try {
    await writeJson(fs, { type: 'probe', session }, signal)
    const first = await expectJson(fs, ProbeReplyMsg, signal)
    if (first.type === 'refuse') throw new ProbeRefusedError(`${target.peer} refused the probe: ${first.error}`)
    if (first.type !== 'ready') throw new ProtocolError(`expected ready, got ${first.type}`)
    const t0 = performance.now()
    opts.onStart?.()
    let acked = 0
    let lastAckAt = t0
    let sent = 0
    let wake: (() => void) | undefined
    let readError: Error | undefined
    // acknowledgements, read while sending
    const reading = (async () => {
      try {
        for (;;) {
          const m = await readJson(fs, ProbeReplyMsg, signal)
          if (m == null) throw new ProtocolError(`${target.peer} ended the probe early`)
          if (m.type === 'done') return
          if (m.type !== 'ack' || m.bytes < acked || m.bytes > sent) throw new ProtocolError(`unexpected ${m.type} in a probe`)
          acked = m.bytes
          lastAckAt = performance.now()
          wake?.()
        }
      } catch (err) {
        readError = err as Error
        wake?.()
      }
    })()
    const over = (): boolean => acked >= maxBytes || performance.now() - t0 >= ms
    const timer = setTimeout(() => wake?.(), ms)
    try {
      while (!over() && readError == null) {
        if (sent - acked + ZEROS.byteLength > PROBE_WINDOW_BYTES || sent >= maxBytes) {
          await new Promise<void>((resolve) => { wake = resolve })
          wake = undefined
          continue
        }
        sent += ZEROS.byteLength
        await fs.write(ZEROS, signal)
      }
    } finally {
      clearTimeout(timer)
    }
    // a target that broke the protocol, or acknowledged nothing, gives no figures
    if (readError != null) throw readError
    if (acked === 0) throw new ProtocolError(`${target.peer} acknowledged nothing of the probe within ${ms} ms`)
    void reading
    const span = lastAckAt - t0
    return { bytes: acked, ms: span, bytesPerSecond: span > 0 ? acked * 1000 / span : 0 }
  } finally {
    // the figures are in: the target's `done` is not waited for (nor a graceful close, which
    // a target that stopped reading could hold up)
    fs.abort(new Error('probe over'))
  }
}
