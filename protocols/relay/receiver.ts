import { promisify } from 'node:util'
import { inflateRaw } from 'node:zlib'
import type { Libp2p } from '@libp2p/interface'
import type { FramedStream, PassThrough } from '../framing/framed-stream.js'
import { writeJson } from '../framing/json.js'
import { FileSink } from '../../src/sync/file-sink.js'
import type { TargetSession } from '../../src/sync/target-session.js'
import type { ChildLink } from './child-link.js'
import { takeChildLinks } from './early-links.js'
import { HeldClock } from './laggard.js'
import { cpuClocks } from './run-queue.js'
import { trace } from '../../src/trace.js'
import { MAX_FRAME_BYTES, WINDOW_BYTES } from './consts.js'
import { BadFrameError, decodeFilesFrame, decodeFrame, FrameKind, type DataFrame } from './frames.js'

/** Credit is returned at least every this many bytes (well below the window). */
const CREDIT_BATCH = 1024 * 1024
/**
 * ... or at the latest this long after the first byte owed: below 1 MiB per 25 ms (42 MB/s) the
 * 4 MiB window lasts 100 ms or more. Each credit is a packet each way; 5 ms sent ~500 per 64 MiB
 * at 200 Mbit/s, 25 ms ~110 (the eight targets of a chain: 5.3–6.1 → 5.25–5.5 CPU-s, warm).
 */
const CREDIT_DELAY_MS = 25

const inflate = promisify(inflateRaw)
/** Frames a relay passes on to its children as they arrive (not END, nor an unknown kind). */
const FORWARDED_KINDS = new Set<number>([FrameKind.Begin, FrameKind.Data, FrameKind.DataZ, FrameKind.Skip, FrameKind.Files])

/**
 * The receiving end of a relay edge, on an accepted stream: each frame is forwarded to
 * every child and stored locally at the same time, then credited to the parent, so the
 * slowest of (own disk, own children) paces the parent. Ends with a `done` to the parent
 * and a verdict to the session.
 */
export async function runReceiver (node: Libp2p, fs: FramedStream, session: TargetSession, stallMs: number): Promise<void> {
  const relay = session.relay!
  const sink = new FileSink(session.placeFile, session.entries, session.wanted, session.resumeOffsets, session.expectedHash)
  const finished = Promise.withResolvers<void>()
  // before the first await: a session abandoned meanwhile stops this receiver at once
  session.attachReceiver((err) => { fs.abort(err) }, finished.promise)
  session.touch()
  try {
    await writeJson(fs, { type: 'accept', window: WINDOW_BYTES })
  } catch (err) {
    finished.resolve()
    throw err
  }
  // children connect while the first frames arrive (most were connected when the plan came)
  const childrenReady = takeChildLinks(node, session, stallMs)
  let links: ChildLink[] = []
  /** time this node waits for its children: reported with each credit, so the parent blames the right node */
  const held = new HeldClock()
  // children report their own outcome to the source; here we only learn about failures
  let childrenFinished: Promise<unknown> | undefined
  const finishChildren = async (): Promise<unknown> => await Promise.all(links.map(async (l) => {
    const r = await l.finish()
    if (!r.ok) session.onChildFailed?.(l.peer, r.error ?? 'failed')
  }))
  trace('relay: stream accepted')
  // Local writes and forwarding run as two ordered chains, so reading the next frame
  // overlaps both; the parent's credit window bounds how far they can fall behind.
  let localChain: Promise<void> = Promise.resolve()
  let failure: Error | undefined
  const fail = (err: Error): void => {
    if (failure == null) { failure = err; fs.abort(err) }
  }
  try {
    links = await childrenReady
    trace(`relay: ${links.length} children ready`)
    // a child that holds this node back holds its ancestors too: it may be cut (laggard.ts)
    for (const l of links) {
      l.nodeHeld = held
      l.onTooSlow = (err) => { session.onChildFailed?.(l.peer, err.message, true) }
    }
    let forwardChain: Promise<void> = Promise.resolve()
    // returns once the frame is handed to the sink (order kept); `done` settles when it is on disk
    const applyLocal = async (f: DataFrame, payload: Uint8Array[]): Promise<{ done: Promise<void> }> => {
      // frames queued before a failure are not stored: the sink is being aborted
      if (failure != null) return { done: Promise.resolve() }
      switch (f.kind) {
        case FrameKind.Begin: await sink.begin(f.index, f.offset); return { done: Promise.resolve() }
        case FrameKind.Data: return { done: sink.data(payload) }
        // compressed: wait for the write before taking the next frame, since credit counts
        // compressed bytes and a window of tiny frames could otherwise inflate without bound
        case FrameKind.DataZ: {
          if (!session.init.compress) throw new BadFrameError('a compressed DATA frame in a session without compression')
          const data = await inflate(Buffer.concat(payload), { maxOutputLength: relay.frameBytes })
          // (a frame of zeros is a few hundred bytes on the wire: what it holds is the progress)
          session.touch(data.byteLength)
          await sink.data(data)
          return { done: Promise.resolve() }
        }
        case FrameKind.Skip: await sink.skip(f.index, f.reason); return { done: Promise.resolve() }
        // whole small files are stored once held in memory, as after BEGIN + DATA
        case FrameKind.Files: await sink.wholeFiles(f.files); return { done: Promise.resolve() }
        default: return { done: Promise.resolve() }
      }
    }
    // Forwarding is cut-through: the bytes of a frame go to the children as they arrive (in
    // pieces of at least 32 KiB), not once the frame is whole, so each hop of a chain adds a
    // piece's time to the transfer instead of a frame's (21 ms for 512 KiB at 200 Mbit/s).
    // Pieces that queue up while a send is in flight go out together in the next one.
    // No deadlock on credit: the bytes queued here plus those in flight to a child are never
    // more than this node owes its parent (credit follows forwarding), at most the window it
    // granted (WINDOW_BYTES), and a child's window is at least that (ChildLink.open), so every
    // queued send fits once the child credits what it has.
    let forwardQueue: Uint8Array[] = []
    let forwardBody = 0
    const pumpForward = async (): Promise<void> => {
      if (forwardQueue.length === 0) return
      const pieces = forwardQueue
      const body = forwardBody
      forwardQueue = []
      forwardBody = 0
      await Promise.all(links.map(async l => { await l.sendBytes(pieces, body) }))
    }
    const passOn: PassThrough = {
      // END is not passed on: ChildLink.finish sends it, then waits for the child's verdict
      accepts: (kind) => FORWARDED_KINDS.has(kind),
      onBytes: (pieces, body) => {
        for (const p of pieces) forwardQueue.push(p)
        forwardBody += body
        // every promise here ends in fail(): a bad frame aborts this stream, never the process
        forwardChain = forwardChain.then(pumpForward).catch(fail)
      }
    }
    // credit is coalesced: at once per CREDIT_BATCH bytes, else within CREDIT_DELAY_MS (each
    // message costs a muxer frame and a socket write; the window is much larger than the batch)
    let owed = 0
    /** frame bytes taken and not yet credited to the parent: an honest parent keeps them within the window */
    let uncredited = 0
    let creditScheduled = false
    const sendCredit = (): void => {
      creditScheduled = false
      if (owed === 0) return
      const bytes = owed
      owed = 0
      uncredited -= bytes
      const cpu = cpuClocks()
      writeJson(fs, { type: 'credit', bytes, ...(links.length > 0 ? { held: Math.round(held.ms) } : {}), ...(cpu != null ? { queued: cpu.queued, ran: cpu.ran } : {}) }).catch(() => {})
    }
    const credit = (n: number): void => {
      owed += n
      if (owed >= CREDIT_BATCH) sendCredit()
      else if (!creditScheduled) { creditScheduled = true; setTimeout(sendCredit, CREDIT_DELAY_MS) }
    }
    let first = true
    for (;;) {
      let frame
      try {
        // no timer per read: the session's stall check (touched below) aborts this stream
        frame = links.length > 0 ? await fs.readThrough(passOn) : await fs.read()
      } catch (err) {
        throw failure ?? err
      }
      if (failure != null) throw failure
      if (frame == null) throw new BadFrameError('parent closed the relay stream before END')
      session.touch(frame.byteLength)
      if (first) { first = false; trace('relay: first frame') }
      // DATA payloads stay as the received chunks (no copy); control frames are tiny
      const kind = frame.get(0)
      const f: DataFrame = kind === FrameKind.Data || kind === FrameKind.DataZ
        ? { kind, data: new Uint8Array(0) }
        // FILES: records stay views of the received chunks where they can
        : kind === FrameKind.Files ? { kind, files: decodeFilesFrame([...frame]) } : decodeFrame(frame.subarray())
      const payload = f.kind === FrameKind.Data || f.kind === FrameKind.DataZ ? [...frame.sublist(1)] : []
      const frameBytes = frame.byteLength
      // a parent that ignores the credit it was given would fill this node's memory
      uncredited += frameBytes
      if (uncredited > WINDOW_BYTES + MAX_FRAME_BYTES + 64) throw new BadFrameError(`the parent sent beyond the credit it was given: ${uncredited} bytes unacknowledged (window ${WINDOW_BYTES})`)
      if (f.kind === FrameKind.End) {
        // END goes to the children (ChildLink.finish, which then waits for their verdict) as soon
        // as they have every frame, not after this node's own files are durable: a chain would
        // otherwise add each node's last fsync and rename to the time of every node below it
        trace('relay: END received')
        session.endReceived()
        await forwardChain
        if (failure != null) throw failure
        childrenFinished ??= finishChildren()
        await localChain
        if (failure != null) throw failure
        break
      }
      // the frame's bytes are all queued for the children by now (passOn)
      const handed = localChain.then(async () => await applyLocal(f, payload))
      localChain = handed.then(() => {}, fail)
      const stored = handed.then(async h => { await h.done })
      Promise.all([forwardChain, stored]).then(() => {
        if (failure != null) return
        session.progress = { files: sink.filesDone, bytes: sink.bytesDone }
        session.received = sink.bytesReceived
        credit(frameBytes)
      }).catch(fail)
    }
    const result = await sink.end()
    trace('relay: own files durable')
    await writeJson(fs, { type: 'done', ok: result.failures.length === 0, error: result.failures[0] }).catch(() => {})
    await fs.closeWrite()
    session.relayFinished(result)
  } catch (err) {
    failure ??= err as Error
    // files whose data is in but whose deferred hash is not: they cannot finish now
    session.endHashes(err as Error)
    // frames handed on before the failure finish (later ones are skipped) before the sink ends
    await localChain.catch(() => {})
    await sink.abort()
    session.received = sink.bytesReceived
    const e = err as Error
    fs.abort(e)
    // after END the children have every frame: a failure here (this node's own files) is not theirs
    if (childrenFinished == null) for (const l of links) l.abort(new Error(`upstream failed: ${e.message}`))
    session.relayFailed(e)
  } finally {
    await (childrenFinished ??= finishChildren())
    finished.resolve()
  }
}
