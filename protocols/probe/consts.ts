export const PROBE_PROTOCOL = '/gosync/probe/1'
/** Bytes of one probe DATA frame. */
export const PROBE_FRAME_BYTES = 128 * 1024
/** A probe sends at most this much... */
export const PROBE_MAX_BYTES = 8 * 1024 * 1024
/** ... for at most this long (the first acknowledged byte to the last). */
export const PROBE_MS = 1000
/** Bytes the prober has unacknowledged at most: enough for 200 Mbit/s over a 40 ms round trip. */
export const PROBE_WINDOW_BYTES = 1024 * 1024
/** The target acknowledges what it has read each time this many more bytes came in. */
export const PROBE_ACK_BYTES = 128 * 1024
/** A target reads at most this much from one probe stream (PROBE_MAX_BYTES with room for frames in flight). */
export const PROBE_READ_LIMIT = PROBE_MAX_BYTES + PROBE_WINDOW_BYTES + PROBE_FRAME_BYTES
/** A probe stream lasts at most this long on either side. */
export const PROBE_DEADLINE_MS = 10_000
/** Probes one session accepts in all (a source probes each of its slow children at most twice). */
export const PROBES_PER_SESSION = 8
export const MAX_INBOUND_STREAMS = 4
