import { promisify } from 'node:util'
import { inflateRaw } from 'node:zlib'
import type { Libp2p } from '@libp2p/interface'
import type { FramedStream } from '../framing/framed-stream.js'
import { writeJson } from '../framing/json.js'
import { FileSink } from '../../src/sync/file-sink.js'
import type { TargetSession } from '../../src/sync/target-session.js'
import { ChildLink } from './child-link.js'
import { WINDOW_BYTES } from './consts.js'
import { BadFrameError, decodeFrame, FrameKind } from './frames.js'

const inflate = promisify(inflateRaw)

/**
 * The receiving end of a relay edge, on an accepted stream: each frame is forwarded to
 * every child and stored locally at the same time, then credited to the parent, so the
 * slowest of (own disk, own children) paces the parent. Ends with a `done` to the parent
 * and a verdict to the session.
 */
export async function runReceiver (node: Libp2p, fs: FramedStream, session: TargetSession, stallMs: number): Promise<void> {
  const relay = session.relay!
  const sink = new FileSink(session.dst, session.entries, session.changes!.fetch)
  await writeJson(fs, { type: 'accept', window: WINDOW_BYTES })
  // children connect while the first frames arrive
  const childrenReady = Promise.all(relay.children.map(async (c) => {
    try {
      return await ChildLink.open(node, c, session.id, relay.classId, stallMs)
    } catch (err) {
      session.onChildFailed?.(c.peer, `cannot open relay stream: ${(err as Error).message}`)
      return undefined
    }
  })).then(links => links.filter((l): l is ChildLink => l != null))
  let links: ChildLink[] = []
  const finished = Promise.withResolvers<void>()
  session.attachReceiver((err) => { fs.abort(err) }, finished.promise)
  try {
    links = await childrenReady
    for (;;) {
      const frame = await fs.read(AbortSignal.timeout(stallMs))
      if (frame == null) throw new BadFrameError('parent closed the relay stream before END')
      session.touch()
      const raw = frame.subarray()
      const f = decodeFrame(raw)
      // END goes to children through ChildLink.finish, which then waits for their verdict
      const forward = f.kind === FrameKind.End ? undefined : Promise.all(links.map(async l => { await l.send([raw]) }))
      let local: Promise<unknown>
      switch (f.kind) {
        case FrameKind.Begin: local = sink.begin(f.index, f.offset); break
        case FrameKind.Data: local = sink.data(f.data); break
        case FrameKind.DataZ: local = inflate(f.data, { maxOutputLength: relay.frameBytes }).then(async d => { await sink.data(d) }); break
        case FrameKind.Skip: local = sink.skip(f.index, f.reason); break
        case FrameKind.End: local = Promise.resolve()
      }
      await Promise.all([forward, local])
      session.progress = { files: sink.filesDone, bytes: sink.bytesDone }
      if (f.kind === FrameKind.End) break
      await writeJson(fs, { type: 'credit', bytes: raw.byteLength })
    }
    const result = await sink.end()
    await writeJson(fs, { type: 'done', ok: result.failures.length === 0, error: result.failures[0] }).catch(() => {})
    await fs.closeWrite()
    session.relayFinished(result)
  } catch (err) {
    await sink.abort()
    const e = err as Error
    fs.abort(e)
    for (const l of links) l.abort(new Error(`upstream failed: ${e.message}`))
    session.relayFailed(e)
  } finally {
    // children report their own outcome to the source; here we only learn about failures
    await Promise.all(links.map(async (l) => {
      const r = await l.finish()
      if (!r.ok) session.onChildFailed?.(l.peer, r.error ?? 'failed')
    }))
    finished.resolve()
  }
}
