/** What a sync returns, to the CLI (text or --json) and over the task protocol. */
export type TargetStatus = 'ok' | 'unchanged' | 'failed'

export interface TargetReport {
  /** PeerId, or the target as given when it could not be resolved */
  peer: string
  /** the target as given on the command line */
  address?: string
  status: TargetStatus
  error?: string
  /** stream muxer negotiated with this target, e.g. /yamux/1.0.0 */
  muxer?: string
  /** file bodies received and verified */
  files: number
  bytes: number
  created: number
  deleted: number
  updated: number
  /** file data taken from the wire over all rounds, files completed or not (re-sent data counts twice) */
  received?: number
  /** bytes continued from kept parts of interrupted files instead of being sent again */
  resumed?: number
  /**
   * a relay parent found this target holding the others of its tree back (its link, disk or CPU
   * much slower than theirs), in this task or within the last hour: it went alone (cut off and
   * re-attached in a round of its own, or in a class of its own from the start), at its own pace
   */
  laggard?: boolean
  /**
   * this target, the source's own child in its class tree, kept the source waiting, and the
   * source sent a probe to another target (`via`) to see whether its own uplink was the limit
   * (src/sync/source-judge.ts; the last probe). Bytes per second: this target's rate before the
   * probe, the source's (all it sent) before and while the probe ran (probe included), and the
   * probe's. `cut`: the source sent at least three times as fast with the probe; this target is
   * then a `laggard` too
   */
  probe?: { via: string, rate: number, sentRate: number, sentRateDuring: number, probeRate: number, cut: boolean }
  /** the target showed that its tree was already this manifest's (its record of the last session matched its scan): no manifest was sent */
  treeKnown?: boolean
  /** the target's signed statement that it holds the manifest's tree (ok/unchanged only) */
  receipt?: { digest: string, signature: string, /** the session the target signed (a re-attached target's own round) */ session: string, /** checked here against the target's PeerId */ verified: boolean }
}

export interface SyncReport {
  ok: boolean
  session: string
  source: string
  src: string
  dst: string
  dryRun: boolean
  /** --atomic: every target switched, or none did */
  atomic?: boolean
  /** --atomic: every target staged and was told to switch */
  switched?: boolean
  /** manifest digest of the source tree */
  digest?: string
  /**
   * entries of the source's tree that exist but could not be read (left out; warnings name
   * them): the task is not ok, and no target deleted anything
   */
  unreadable?: number
  targets: TargetReport[]
  totals: { files: number, bytes: number, seconds: number }
}

export type SyncEvent =
  | { type: 'scanned', entries: number, bytes: number }
  | { type: 'planned', classes: number, bytesToSend: number, targets: number }
  | { type: 'progress', bytesDone: number, bytesTotal: number }
  | { type: 'target-done', target: TargetReport }
  | { type: 'warning', message: string }
