import type { Connection, Stream } from '@libp2p/interface'
import { FramedStream, GREETING_LIMITS } from '../framing/framed-stream.js'
import { expectJson, ProtocolError, writeJson } from '../framing/json.js'
import type { SessionRegistry } from '../../src/sync/sessions.js'
import { PROBE_ACK_BYTES, PROBE_DEADLINE_MS, PROBE_FRAME_BYTES, PROBE_READ_LIMIT, PROBES_PER_SESSION } from './consts.js'
import { ProbeHelloMsg } from './messages.js'

/**
 * Inbound /gosync/probe/1: the source of a session this daemon serves measures how fast it can
 * send here (protocols/probe/probe.ts). Accepted only from that session's source, one at a time,
 * a few per session; every read is bounded in size and time, and what is read is dropped.
 */
export async function handleProbeStream (stream: Stream, connection: Connection, sessions: SessionRegistry): Promise<void> {
  const fs = new FramedStream(stream, GREETING_LIMITS)
  const signal = AbortSignal.timeout(PROBE_DEADLINE_MS)
  let release: (() => void) | undefined
  try {
    const hello = await expectJson(fs, ProbeHelloMsg, signal)
    const claim = sessions.get(hello.session)?.claimProbe(connection.remotePeer.toString(), PROBES_PER_SESSION) ?? 'unknown session'
    if (typeof claim === 'string') {
      await writeJson(fs, { type: 'refuse', error: claim }, signal)
      await closeBy(fs, signal)
      return
    }
    release = claim
    fs.setLimits({ maxFrameBytes: PROBE_FRAME_BYTES })
    await writeJson(fs, { type: 'ready' }, signal)
    let bytes = 0
    let acked = 0
    for (;;) {
      const frame = await fs.read(signal)
      if (frame == null) break
      bytes += frame.byteLength
      if (bytes > PROBE_READ_LIMIT) throw new ProtocolError(`probe of more than ${PROBE_READ_LIMIT} bytes`)
      if (bytes - acked >= PROBE_ACK_BYTES) {
        acked = bytes
        await writeJson(fs, { type: 'ack', bytes }, signal)
      }
    }
    await writeJson(fs, { type: 'done', bytes }, signal)
    await closeBy(fs, signal)
  } catch (err) {
    fs.abort(err as Error)
  } finally {
    release?.()
  }
}

/** Close the write half gracefully, but not past `signal` (a peer that stopped reading could hold it up). */
async function closeBy (fs: FramedStream, signal: AbortSignal): Promise<void> {
  await Promise.race([fs.closeWrite(), new Promise((resolve) => { signal.addEventListener('abort', resolve, { once: true }) })])
  if (signal.aborted) fs.abort(new Error('probe stream past its deadline'))
}
