import type { Stream } from '@libp2p/interface'

/**
 * Relay streams' muxer frames: half a 512 KiB relay frame, with room for the frame's own prefix
 * and header, so a DATA frame leaves as two muxer frames. One takes 10.5 ms at 200 Mbit/s,
 * against 21 ms for a whole relay frame. Frames of 128 KiB (5.2 ms) were no faster on the
 * benchmark's 2-core lab and cost more CPU (docs/PERFORMANCE.md, "Muxer frames").
 */
export const RELAY_MUXER_FRAME = 256 * 1024 + 64

/**
 * Caps the muxer frames that a stream's writes are cut into at `max` bytes.
 *
 * js-libp2p's streams (`AbstractMessageStream` of @libp2p/utils) cut their write buffer into
 * pieces of `maxMessageSize` bytes, one muxer frame each, and yamux sets that to its whole send
 * window (4–16 MiB here): a 512 KiB relay frame left as one yamux frame, and the next node's
 * yamux hands on nothing of a frame before its last byte is in. So each relay held every frame
 * for one frame time before it could forward any of it: 21 ms per hop at 200 Mbit/s, 0.17 s over
 * a chain of eight. With smaller muxer frames a relay forwards a frame's first part while the
 * rest still arrives.
 *
 * The muxer's own value applies when it is smaller: yamux lowers it to what is left of the send
 * window, 0 when none is.
 */
export function capMuxerFrames (stream: Stream, max: number): void {
  const s = stream as unknown as { maxMessageSize?: number }
  // mplex leaves it unset (the whole write buffer at once, cut into 1 MiB messages)
  let muxers = typeof s.maxMessageSize === 'number' ? s.maxMessageSize : Infinity
  Object.defineProperty(s, 'maxMessageSize', {
    configurable: true,
    enumerable: true,
    get: () => Math.min(muxers, max),
    set: (value: number) => { muxers = value }
  })
}
