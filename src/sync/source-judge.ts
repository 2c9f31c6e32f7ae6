import { ChildTooSlowError } from '../../protocols/relay/child-link.js'
import { LAGGARD_WINDOW_MS, LAGGARD_WINDOW_UNEXCUSED_MS, LaggardMeter, type ChildClocks } from '../../protocols/relay/laggard.js'
import type { ProbeResult, ProbeTarget } from '../../protocols/probe/probe.js'
import { trace } from '../trace.js'

/**
 * The share of the window (and of its last half) the source must have spent sending to a child,
 * the child's own waits and CPU work excused, before it probes. On healthy chains the source's
 * first child reached 0.59 on a loaded machine (the source stores nothing, so it always waits
 * for someone); a first child on a 20 Mbit/s link among 200 Mbit/s ones 0.99
 * (docs/PERFORMANCE.md, "A slow host in the tree").
 */
export const SOURCE_TRIGGER_SHARE = 0.8
/**
 * A child is cut when, while the probe ran, the source sent (everything it sends, the probe
 * included) at least this many times as fast as it sent before it.
 */
export const PROBE_FACTOR = 3
/**
 * Probes per child and round at most, at least PROBE_COOLDOWN_MS apart: the second only if the
 * first failed. A verdict stands for the round (a source whose uplink is the slow link would
 * otherwise give a probe's worth of it away again and again).
 */
export const PROBES_PER_CHILD = 2
export const PROBE_COOLDOWN_MS = 5000
/**
 * Neither probed nor cut: a child with less left to take than this many seconds at its rate.
 * Its subtree would gain less than the re-attach costs (new sessions, ~0.5–1 s).
 */
export const MIN_LEFT_SECONDS = 3

/** What the judge uses of a ChildLink (protocols/relay/child-link.ts). */
export interface JudgedLink {
  readonly peer: string
  readonly alive: boolean
  /** the child confirmed the end of the transfer (too late to cut it) */
  readonly finished: boolean
  /** bytes credited so far */
  readonly credited: number
  /** ms a send to the child was under way so far */
  readonly sendingMs: number
  onCredit?: (clocks: ChildClocks) => void
  abort: (err: Error) => void
}

/**
 * Every link the source sends on in one task (all classes, all rounds): what it has sent in all,
 * as credited. Two flows split a shared uplink in any ratio, so only the total tells whether a
 * probe found room or took its share from the others.
 */
export class SourceUplink {
  private readonly links: Array<{ readonly credited: number }> = []
  add (link: { readonly credited: number }): void { this.links.push(link) }
  get credited (): number {
    let n = 0
    for (const l of this.links) n += l.credited
    return n
  }
}

/** What a probe found about one of the source's children. Rates in bytes per second. */
export interface ProbeVerdict {
  /** the child judged */
  peer: string
  /** the target that took the probe */
  via: string
  /** the child's rate (credited) over the window before the probe */
  childRate: number
  /** the source's, all its links, over the same window */
  sentRate: number
  /** the source's, all its links and the probe, while the probe ran */
  sentRateDuring: number
  /** the probe's own */
  probeRate: number
  /** the child was cut off as a laggard */
  cut: boolean
}

/**
 * The source's judge of one of its own children in a class tree. A relay judges its children by
 * how long they keep it waiting (laggard.ts); the source cannot do that alone: it stores nothing,
 * so it always waits for its child, and a child on a slow link looks, from the source, exactly
 * like a slow uplink of the source's own (the connection is slow either way, the child idle).
 * Cutting the child in the second case would split that uplink between two rounds and slow
 * everyone. So when a child keeps the source waiting by itself for most of the window, the source
 * sends a probe of a few MB to another target of the task (protocols/probe) and compares what it
 * sent in all, per second, before and while the probe ran. If the child's link is the slow one,
 * the source sends several times as fast with the probe: the uplink had room, and the child is
 * cut (the same as a relay's cut: it goes on in a round of its own, and the hosts below it in
 * another). If the uplink is the slow link, the probe takes its share from the others and the
 * total stays: nothing changes.
 */
export class SourceJudge {
  private readonly meter = new LaggardMeter(LAGGARD_WINDOW_MS, SOURCE_TRIGGER_SHARE, LAGGARD_WINDOW_UNEXCUSED_MS, true)
  private probing = false
  private decided = false
  private probes = 0
  private lastProbeEnd = -Infinity
  /** (time, bytes the child and the source had credited so far) at each credit over the last window, oldest first */
  private readonly samples: Array<{ t: number, child: number, sent: number }> = []

  constructor (
    private readonly link: JudgedLink,
    /** bytes the child is still to take in this class, given what it has credited */
    private readonly bytesLeft: () => number,
    private readonly uplink: SourceUplink,
    private readonly probeTarget: ProbeTarget,
    private readonly probe: (target: ProbeTarget, onStart: () => void) => Promise<ProbeResult>,
    /** told of every verdict; of a cut before the link is cut (its owner must know why the child fails) */
    private readonly onVerdict: (v: ProbeVerdict) => void,
    private readonly now: () => number = () => performance.now()
  ) {
    link.onCredit = (clocks) => { this.credit(clocks) }
  }

  /** the highest share of a window the child kept the source sending (for traces and calibration) */
  get maxShare (): number { return this.meter.maxShare }
  get peer (): string { return this.link.peer }

  private credit (clocks: ChildClocks): void {
    const now = this.now()
    this.samples.push({ t: now, child: this.link.credited, sent: this.uplink.credited })
    while (this.samples.length > 2 && this.samples[1].t <= now - LAGGARD_WINDOW_MS) this.samples.shift()
    if (!this.meter.sample(now, this.link.sendingMs, clocks)) return
    if (this.probing || this.decided || this.probes >= PROBES_PER_CHILD || now - this.lastProbeEnd < PROBE_COOLDOWN_MS || !this.link.alive) return
    if (this.bytesLeft() < this.rateBefore().child * MIN_LEFT_SECONDS) return
    void this.runProbe()
  }

  /** The child's and the source's rates over the samples kept (the last window). */
  private rateBefore (): { child: number, sent: number } {
    const first = this.samples[0]
    const last = this.samples.at(-1)!
    const ms = Math.max(1, last.t - first.t)
    return { child: (last.child - first.child) * 1000 / ms, sent: (last.sent - first.sent) * 1000 / ms }
  }

  private async runProbe (): Promise<void> {
    this.probing = true
    this.probes++
    const before = this.rateBefore()
    let sent = this.uplink.credited
    let t0 = this.now()
    try {
      const r = await this.probe(this.probeTarget, () => {
        sent = this.uplink.credited
        t0 = this.now()
      })
      const sentRateDuring = (this.uplink.credited - sent) * 1000 / Math.max(1, this.now() - t0) + r.bytesPerSecond
      this.decided = true
      // the child's transfer ended meanwhile, or all but ended: nothing left worth a cut
      if (!this.link.alive || this.link.finished || this.bytesLeft() < before.child * MIN_LEFT_SECONDS) return
      const cut = sentRateDuring >= PROBE_FACTOR * before.sent
      trace(`source: probe via ${this.probeTarget.peer}: ${Math.round(r.bytesPerSecond / 1e3)} kB/s (${r.bytes} B in ${Math.round(r.ms)} ms); the source sent ${Math.round(before.sent / 1e3)} kB/s before (${this.link.peer} ${Math.round(before.child / 1e3)}), ${Math.round(sentRateDuring / 1e3)} kB/s with the probe: ${cut ? 'cut' : 'kept'}`)
      this.onVerdict({ peer: this.link.peer, via: this.probeTarget.peer, childRate: before.child, sentRate: before.sent, sentRateDuring, probeRate: r.bytesPerSecond, cut })
      if (cut) {
        this.link.abort(new ChildTooSlowError(`${this.link.peer} took ${formatRate(before.child)} while the source could send at ${formatRate(sentRateDuring)} (a probe to ${this.probeTarget.peer}): too slow for this tree`))
      }
    } catch (err) {
      // no verdict: the child stays (a target that cannot take a probe says nothing of the uplink)
      trace(`source: probe via ${this.probeTarget.peer} failed: ${(err as Error).message}`)
    } finally {
      this.probing = false
      this.lastProbeEnd = this.now()
    }
  }
}

export function formatRate (bytesPerSecond: number): string {
  return `${(bytesPerSecond * 8 / 1e6).toFixed(1)} Mbit/s`
}
