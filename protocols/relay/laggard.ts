/**
 * Which child holds a tree back. Credit is end to end (PROTOCOLS §5), so one slow host paces
 * every node above it and, through them, every node of its class: one host on a 20 Mbit/s link
 * made three others on 200 Mbit/s links take 6–9 times as long. A parent measures how long each
 * child keeps it waiting for credit; the child says, in each credit message, how long it was
 * itself kept waiting by its own children (`held`) and how long it waited for a CPU (`queued`,
 * run-queue.ts). What is left (blame) is the child's own doing: its link, its disk, its own
 * work. A child to blame for at least half of a sustained window is cut from the tree (by a
 * relay only: see ChildLink.onTooSlow); the source re-attaches it in a round of its own (and its
 * subtree in another), where it goes at its own pace and no longer paces anyone else.
 */

/**
 * A child that reports `queued` is judged over the last this many ms of the transfer (not
 * before it has lasted that long), and over the last half of it too: a laggard is slow
 * throughout and still slow now. Measured (docs/PERFORMANCE.md, "A slow host in the tree"):
 * with the CPU waits excused, no healthy child of a relay was blamed for any share of a window
 * (nine daemons on two cores); the 20 Mbit/s host among 200 Mbit/s ones for most of any.
 */
export const LAGGARD_WINDOW_MS = 3000
/**
 * ... and one that does not (no scheduler statistics, or an older peer) over this long: without
 * the CPU waits excused, a healthy child kept from the CPU was blamed for 0.50 of one 3 s window
 * (0.77 of 1 s), never for half of 6 s.
 */
export const LAGGARD_WINDOW_UNEXCUSED_MS = 6000
/**
 * The share of both windows a child must have kept its parent waiting by itself: at 0.5 the
 * parent could go at least twice as fast as the child lets it.
 */
export const LAGGARD_SHARE = 0.5

/** What a child says with a credit: cumulative ms, its own clocks (absent from a leaf or an older peer). */
export interface ChildClocks {
  /** waited for its own children's credit */
  held?: number
  /** waited, runnable, for a CPU */
  queued?: number
  /** ran on a CPU (its main thread) */
  ran?: number
}

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
 * arrives (then its own clocks are fresh: during a long wait it cannot report them).
 */
export class LaggardMeter {
  /** (time, blame so far) samples, oldest first; the first is at or before the window's start */
  private samples: Array<{ t: number, blame: number }> = []
  private readonly held = new ChildClock()
  private readonly queued = new ChildClock()
  private readonly ran = new ChildClock()
  /** the highest share judged, the lower of the two windows' (for traces and calibration) */
  maxShare = 0

  constructor (
    private readonly windowMs = LAGGARD_WINDOW_MS,
    private readonly share = LAGGARD_SHARE,
    private readonly unexcusedWindowMs = LAGGARD_WINDOW_UNEXCUSED_MS,
    /** excuse the child's own CPU work too (the source's judge: src/sync/source-judge.ts) */
    private readonly excuseRan = false
  ) {}

  /**
   * A credit arrived at `t`: the parent has waited `waitedMs` for this child so far, the child
   * reports its clocks. True when the child is to blame for at least `share` of the last window
   * and of its last half.
   */
  sample (t: number, waitedMs: number, child: ChildClocks): boolean {
    const last = this.samples.at(-1)
    this.held.take(child.held, Infinity)
    // no more CPU wait than time went by: a child cannot excuse itself beyond that
    const elapsed = last == null ? 0 : t - last.t
    this.queued.take(child.queued, elapsed)
    if (this.excuseRan) this.ran.take(child.ran, elapsed)
    const blame = waitedMs - this.held.seen - this.queued.seen - this.ran.seen
    this.samples.push({ t, blame })
    const windowMs = this.judgedOverMs
    // keep one sample at or before the window's start
    while (this.samples.length > 2 && this.samples[1].t <= t - windowMs) this.samples.shift()
    if (t - this.samples[0].t < windowMs) return false
    const share = Math.min(this.shareSince(t - windowMs, t, blame), this.shareSince(t - windowMs / 2, t, blame))
    if (share > this.maxShare) this.maxShare = share
    return share >= this.share
  }

  /** the window this child is judged over: the shorter one once it has reported its CPU waits */
  get judgedOverMs (): number {
    return this.queued.reported ? this.windowMs : this.unexcusedWindowMs
  }

  /** Blame per ms from the last sample at or before `from` up to now. */
  private shareSince (from: number, t: number, blame: number): number {
    let k = 0
    while (k + 1 < this.samples.length && this.samples[k + 1].t <= from) k++
    const s = this.samples[k]
    return t > s.t ? (blame - s.blame) / (t - s.t) : 0
  }
}

/** One of a child's cumulative clocks, counted from its first report (what it did before this edge is not ours). */
class ChildClock {
  /** the highest report so far */
  private last?: number
  /** growth since the first report, never going back */
  seen = 0
  get reported (): boolean { return this.last != null }

  /** A report (ignored unless a finite number ≥ 0); its growth since the last one counts up to `maxGrowth`. */
  take (ms: number | undefined, maxGrowth: number): void {
    if (ms == null || !Number.isFinite(ms) || ms < 0) return
    if (this.last != null && ms > this.last) this.seen += Math.min(ms - this.last, maxGrowth)
    this.last = Math.max(this.last ?? ms, ms)
  }
}
