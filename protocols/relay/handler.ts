import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { FramedStream, GREETING_LIMITS } from '../framing/framed-stream.js'
import { expectJson, writeJson } from '../framing/json.js'
import type { SessionRegistry } from '../../src/sync/sessions.js'
import { ACCEPT_TIMEOUT_MS, MAX_FRAME_BYTES, PLAN_WAIT_MS, WINDOW_BYTES } from './consts.js'
import { HelloMsg } from './frames.js'
import { runReceiver } from './receiver.js'

/**
 * Inbound /gosync/relay/1: accepted only for a session this daemon serves, only from the
 * parent its (trusted) source named. Anything else is refused with a reason and closed.
 */
export async function handleRelayStream (node: Libp2p, stream: Stream, connection: Connection, sessions: SessionRegistry, stallMs: number): Promise<void> {
  // until the parent is accepted, only its `hello` may come: anyone may open this stream
  const fs = new FramedStream(stream, GREETING_LIMITS)
  try {
    const hello = await expectJson(fs, HelloMsg, AbortSignal.timeout(ACCEPT_TIMEOUT_MS))
    const session = sessions.get(hello.session)
    // the parent may have its plan before this node has its own (see early-links.ts)
    await session?.planned(PLAN_WAIT_MS)
    const refusal = session == null ? 'unknown session' : session.claimRelay(connection.remotePeer.toString(), hello.classId)
    if (refusal != null || session == null) {
      await writeJson(fs, { type: 'refuse', error: refusal ?? 'unknown session' })
      await fs.closeWrite()
      return
    }
    fs.setLimits({ maxFrameBytes: MAX_FRAME_BYTES + 16, highWaterBytes: WINDOW_BYTES + 2 * MAX_FRAME_BYTES })
    await runReceiver(node, fs, session, stallMs)
  } catch (err) {
    fs.abort(err as Error)
  }
}
