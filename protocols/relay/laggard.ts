/**
 * Which child holds a tree back. Credit is end to end (PROTOCOLS §5), so one slow host paces
 * every node above it and, through them, every node of its class: one host on a 20 Mbit/s link
 * made three others on 200 Mbit/s links take 6–9 times as long. A parent measures how long each
 * child keeps it waiting for credit; the child says, in each credit message, how long it was
 * itself kept waiting by its own children. What is left (blame) is the child's own doing: its
 * link, its disk or its CPU. A child to blame for at least half of a sustained window is cut
 * from the tree (by a relay only: see ChildLink.onTooSlow); the source re-attaches it in a
 * round of its own (and its subtree in another), where it goes at its own pace and no longer
 * paces anyone else.
 */

/**
 * A child is judged over the last this many ms of the transfer (not before it has lasted that
 * long), and over the last half of it too: a laggard is slow throughout and still slow now.
 */
export const LAGGARD_WINDOW_MS = 6000
/**
 * The share of both windows a child must have kept its parent waiting by itself: at 0.5 the
 * parent could go at least twice as fast as the child lets it. Measured (docs/PERFORMANCE.md,
 * "A slow host in the tree"): on equal 200 Mbit/s links with nine daemons on two cores, a relay's
 * child was held to blame for up to 0.50 of one 3 s window (a daemon kept from the CPU for a
 * while: 0.77 over 1 s), never for half of 6 s; a 20 Mbit/s host among 200 Mbit/s ones is to
 * blame for most of any window.
 */
export const LAGGARD_SHARE = 0.5

/** Time during which at least one of a node's sends waits for a child's credit. */
export class HeldClock {
  private waiting = 0
  private since = 0
  private total = 0
  constructor (private readonly now: () => number = () => performance.now()) {}

  begin (): void {
    if (this.waiting++ === 0) this.since = this.now()
  }

  end (): void {
    if (--this.waiting === 0) this.total += this.now() - this.since
  }

  /** ms waited so far, including a wait still running */
  get ms (): number {
    return this.total + (this.waiting > 0 ? this.now() - this.since : 0)
  }
}

/**
 * One child's blame over a sliding window, from cumulative figures sampled whenever its credit
 * arrives (then its own `held` is fresh: during a long wait it cannot report it).
 */
export class LaggardMeter {
  /** (time, blame so far) samples, oldest first; the first is at or before the window's start */
  private samples: Array<{ t: number, blame: number }> = []
  private childHeldBase?: number
  private childHeldSeen = 0
  /** the highest share judged, the lower of the two windows' (for traces and calibration) */
  maxShare = 0

  constructor (private readonly windowMs = LAGGARD_WINDOW_MS, private readonly share = LAGGARD_SHARE) {}

  /**
   * A credit arrived at `t`: the parent has waited `waitedMs` for this child so far, the child
   * reports `childHeldMs` (cumulative, its own; absent from a leaf or an older peer). True when
   * the child is to blame for at least `share` of the last window and of its last half.
   */
  sample (t: number, waitedMs: number, childHeldMs: number | undefined): boolean {
    if (childHeldMs != null && Number.isFinite(childHeldMs) && childHeldMs >= 0) {
      // counted from the first report: what the child did before this edge began is not ours
      this.childHeldBase ??= childHeldMs
      this.childHeldSeen = Math.max(this.childHeldSeen, childHeldMs - this.childHeldBase)
    }
    const blame = waitedMs - this.childHeldSeen
    this.samples.push({ t, blame })
    // keep one sample at or before the window's start
    while (this.samples.length > 2 && this.samples[1].t <= t - this.windowMs) this.samples.shift()
    if (t - this.samples[0].t < this.windowMs) return false
    const share = Math.min(this.shareSince(t - this.windowMs, t, blame), this.shareSince(t - this.windowMs / 2, t, blame))
    if (share > this.maxShare) this.maxShare = share
    return share >= this.share
  }

  /** Blame per ms from the last sample at or before `from` up to now. */
  private shareSince (from: number, t: number, blame: number): number {
    let k = 0
    while (k + 1 < this.samples.length && this.samples[k + 1].t <= from) k++
    const s = this.samples[k]
    return t > s.t ? (blame - s.blame) / (t - s.t) : 0
  }
}
