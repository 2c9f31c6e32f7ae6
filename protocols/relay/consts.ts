export const RELAY_PROTOCOL = '/gosync/relay/1'
/**
 * Payload of one DATA frame: the measured best of 128 KiB – 1 MiB (docs/PERFORMANCE.md, "Frame size").
 * Smaller frames cost more per byte (noise, muxer, syscalls); larger ones keep more memory in flight
 * and lengthen a chain's fill (one frame time per hop).
 */
export const DEFAULT_FRAME_BYTES = 512 * 1024
export const MIN_FRAME_BYTES = 16 * 1024
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
/** Bytes a parent may have in flight to one child before it waits for credit. Bounds every node's memory. */
export const WINDOW_BYTES = 4 * 1024 * 1024
/** A child must accept a relay stream within this time. */
export const ACCEPT_TIMEOUT_MS = 15_000
/** A relay stream for a known session that arrives before the session's plan waits this long for it (below ACCEPT_TIMEOUT_MS). */
export const PLAN_WAIT_MS = 10_000
export const MAX_INBOUND_STREAMS = 64
/**
 * A relay child gives up on a parent that sends less than this in any stall period (besides one
 * that sends nothing for the stall timeout): a parent trickling tiny frames would otherwise keep
 * the session, and with it the task, for ever. A whole DATA frame (512 KiB) is 8 times as much.
 */
export const MIN_BYTES_PER_STALL = 64 * 1024
