export const CONTROL_PROTOCOL = '/gosync/control/1'
/**
 * 2: --atomic (staged/switch), deferred hashes (hash, needs.have, plan.same), receipts.
 * 3: `open` is sent before the source's scan (the target scans its tree meanwhile); the
 *    manifest starts with its own `manifest` message; source heartbeats in between.
 * 4: relay data may carry FILES frames (runs of whole small files); a version-3 child would
 *    take them for a protocol violation, so a version-3 target is refused at `open`.
 * 5: the manifest is streamed: `manifest` has no `entryCount`; `entries` come while the source
 *    still walks its tree, with source heartbeats between, until `manifest-end`.
 * 6: `manifest-end.incomplete`: the source could not read all of its tree, so the target must
 *    delete nothing; a version-5 target would ignore it and delete what the source missed.
 */
export const PROTOCOL_VERSION = 6

/** One control frame: an entries batch is ~0.5 MiB; a needs list of MAX_ENTRIES indices stays below (≤ 8 bytes each). */
export const MAX_CONTROL_FRAME = 16 * 1024 * 1024
/** Entries per 'entries' message at most (the source's walk hands on ~1000 at a time): keeps frames around 200–400 KiB. */
export const ENTRIES_PER_BATCH = 2000
/** Largest tree a target accepts (entries); bounds its memory. */
export const MAX_ENTRIES = 1_000_000
/**
 * ... and the characters of its paths and link targets together: 1,000,000 entries of paths and
 * targets up to 4096 characters each would be ~8 G; real trees average ~100 per entry.
 */
export const MAX_MANIFEST_CHARS = 256 * 1024 * 1024
/** The source waits for every target's needs before it plans; it fails stalled targets itself. */
export const PLAN_TIMEOUT_MS = 30 * 60_000
/** A target sends a heartbeat this often while it works, so the source can tell stalled from busy. */
export const HEARTBEAT_MS = 2000
/**
 * A target's scan starts at `open`, the manifest comes after the source's scan. The known-tree
 * shortcut is taken only within this long of the open (the target's check is at most this old),
 * and a target whose scan began longer ago than this before the manifest scans again.
 */
export const SCAN_MAX_AGE_MS = 10_000
/** Dialing a target and opening the stream. */
export const DIAL_TIMEOUT_MS = 15_000
/** No message from a target (or from a relay parent) for this long = stalled. */
export const DEFAULT_STALL_TIMEOUT_MS = 30_000
/** Concurrent control sessions a daemon serves. */
export const MAX_INBOUND_STREAMS = 32

/** Deferred hashes per `hashes` message: at most this many are accepted, gosync sends at most HASHES_PER_SEND. */
export const HASHES_PER_MESSAGE_MAX = 4096
export const HASHES_PER_SEND = 1024
