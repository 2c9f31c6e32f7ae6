import type { Stream } from '@libp2p/interface'

/**
 * Relay streams' muxer frames: half a 512 KiB relay frame, with room for the frame's own prefix
 * and header, so a DATA frame leaves as two muxer frames. One takes 10.5 ms at 200 Mbit/s,
 * against 21 ms for a whole relay frame (docs/PERFORMANCE.md, "Muxer frames").
 */
export const BULK_MUXER_FRAME = 256 * 1024 + 64

/**
 * Makes `stream` the sending end of a bulk transfer that shares its connection fairly:
 *
 * - **Muxer frames of at most `maxFrame` bytes.** js-libp2p's streams (`AbstractMessageStream`
 *   of @libp2p/utils) cut their write buffer into pieces of `maxMessageSize` bytes, one muxer
 *   frame each, and yamux sets that to its whole send window (4–16 MiB here): a 512 KiB relay
 *   frame left as one yamux frame, and the next node's yamux hands on nothing of a frame before
 *   its last byte is in. So each relay held every frame for one frame time before it could
 *   forward any of it: 21 ms per hop at 200 Mbit/s. The muxer's own value applies when it is
 *   smaller (yamux lowers it to what is left of the send window, 0 when none is).
 * - **Other streams first when the connection drains.** The muxer tells its streams in the
 *   order they were opened, and each sends what it holds; a bulk stream with data queued fills
 *   the connection again before a stream behind it in the list gets its turn, every time. A
 *   stream opened later (a keep-alive ping, a control message) then starved until its timeout:
 *   libp2p's connection monitor aborted a busy connection because its ping waited 5 s behind
 *   relay data. Taking the bulk stream's turn one microtask later lets the others go first.
 */
export function asBulkSender (stream: Stream, maxFrame = BULK_MUXER_FRAME): void {
  const s = stream as unknown as { maxMessageSize?: number, onMuxerDrain?: () => void }
  // mplex leaves it unset (the whole write buffer at once, cut into 1 MiB messages)
  let muxers = typeof s.maxMessageSize === 'number' ? s.maxMessageSize : Infinity
  Object.defineProperty(s, 'maxMessageSize', {
    configurable: true,
    enumerable: true,
    get: () => Math.min(muxers, maxFrame),
    set: (value: number) => { muxers = value }
  })
  if (typeof s.onMuxerDrain === 'function') {
    const own = s.onMuxerDrain.bind(s)
    // the other streams queued their sends (microtasks) in the same loop over the streams
    s.onMuxerDrain = () => { queueMicrotask(own) }
  }
}

/**
 * The receiving end of a bulk transfer: yamux grants window once half of it is used instead of
 * after every data frame (go-yamux and rust-yamux do the same). With muxer frames of 256 KiB that
 * is one window update per 2–8 MiB instead of one per frame.
 */
export function asBulkReceiver (stream: Stream): void {
  const s = stream as unknown as { sendWindowUpdate?: () => void, state?: number, recvWindow?: number, recvWindowCapacity?: number }
  if (typeof s.sendWindowUpdate !== 'function' || typeof s.recvWindow !== 'number' || typeof s.recvWindowCapacity !== 'number') return
  const own = s.sendWindowUpdate.bind(s)
  s.sendWindowUpdate = () => {
    // state 3: established, nothing else to signal (SYN/ACK go out as before); more than half left
    if (s.state === YAMUX_ESTABLISHED && (s.recvWindowCapacity as number) * 2 >= (s.recvWindow as number)) return
    own()
  }
}

/** @libp2p/yamux's `StreamState.Established` (not exported from the package). */
const YAMUX_ESTABLISHED = 3
