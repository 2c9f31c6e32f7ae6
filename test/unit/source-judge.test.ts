// The source's judge of its own children (src/sync/source-judge.ts), on a simulated clock: it
// probes only a child that keeps it waiting by itself for most of the window and still has a
// few seconds' worth to take, and cuts it only when the source sent (on all its links and the
// probe) several times as fast with the probe as before it. A probe that only takes its share
// of a shared uplink from the other flows changes nothing: kept.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChildTooSlowError } from '../../protocols/relay/child-link.js';
import type { ChildClocks } from '../../protocols/relay/laggard.js';
import type { ProbeResult, ProbeTarget } from '../../protocols/probe/probe.js';
import { PROBE_COOLDOWN_MS, SourceJudge, SourceUplink, type JudgedLink, type ProbeVerdict } from '../../src/sync/source-judge.js';

const MB = 1e6;

/** A child link on a simulated clock: it takes `rate` bytes/s, and the source is sending to it `sendingShare` of the time. */
class FakeLink implements JudgedLink {
  readonly peer = 'child';
  alive = true;
  finished = false;
  credited = 0;
  sendingMs = 0;
  onCredit?: (clocks: ChildClocks) => void;
  aborted?: Error;
  abort(err: Error): void { this.aborted = err; this.alive = false; }
}

interface Scenario {
  /** bytes/s the child takes before and while a probe runs */
  rate: number;
  rateDuring: number;
  /** bytes/s the probe goes at (undefined: the probe fails) */
  probeRate?: number;
  /** share of the time the source is sending to the child */
  sendingShare: number;
  /** the child's own CPU time, as a share of the time */
  ranShare?: number;
  /** how long to run, ms */
  ms: number;
  /** the child confirms the end of its transfer while the probe runs */
  finishDuringProbe?: boolean;
  /** the source's other links together (other children, other classes): bytes/s before and while a probe runs */
  others?: { rate: number; rateDuring: number };
  /** bytes the child has to take in all (default: no end) */
  bytes?: number;
}

async function run(s: Scenario): Promise<{ link: FakeLink; verdicts: ProbeVerdict[]; probes: number }> {
  let t = 0;
  const link = new FakeLink();
  const verdicts: ProbeVerdict[] = [];
  let probes = 0;
  /** the probe under way: it ends 1 s after it starts, on the simulated clock */
  let probeEnds: { at: number; resolve: (r: ProbeResult) => void; reject: (e: Error) => void } | undefined;
  const probe = async (_target: ProbeTarget, onStart: () => void): Promise<ProbeResult> => {
    probes++;
    onStart();
    return await new Promise<ProbeResult>((resolve, reject) => { probeEnds = { at: t + 1000, resolve, reject }; });
  };
  const uplink = new SourceUplink();
  const others = { credited: 0 };
  uplink.add(link);
  uplink.add(others);
  // eslint-disable-next-line no-new
  new SourceJudge(link, () => (s.bytes ?? Infinity) - link.credited, uplink, { peer: 'other', addrs: [] }, probe, (v) => { verdicts.push(v); }, () => t);
  const step = 50;
  for (; t < s.ms && link.alive; ) {
    t += step;
    const rate = probeEnds != null ? s.rateDuring : s.rate;
    link.credited += rate * step / 1000;
    others.credited += (probeEnds != null ? s.others?.rateDuring ?? 0 : s.others?.rate ?? 0) * step / 1000;
    link.sendingMs += s.sendingShare * step;
    link.onCredit?.({ queued: 0, ran: Math.round((s.ranShare ?? 0.05) * t) });
    if (probeEnds != null && s.finishDuringProbe === true) link.finished = true;
    if (probeEnds != null && t >= probeEnds.at) {
      const p = probeEnds;
      probeEnds = undefined;
      if (s.probeRate == null) p.reject(new Error('refused'));
      else p.resolve({ bytes: s.probeRate, ms: 1000, bytesPerSecond: s.probeRate });
      // let the judge take the outcome
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return { link, verdicts, probes };
}

describe('SourceJudge', () => {
  test('a child on a slow link, the uplink with room: probed once and cut', async () => {
    // h2 at 20 Mbit/s under a 200 Mbit/s uplink (the lab: 2.4 MB/s before, 1.4 meanwhile, the probe 21.9)
    const { link, verdicts, probes } = await run({ rate: 2.4 * MB, rateDuring: 1.4 * MB, probeRate: 21.9 * MB, sendingShare: 1, ms: 10_000 });
    assert.equal(probes, 1);
    assert.equal(verdicts.length, 1);
    assert.equal(verdicts[0]!.cut, true, JSON.stringify(verdicts));
    assert.ok(link.aborted instanceof ChildTooSlowError, String(link.aborted));
    const v = verdicts[0]!;
    assert.ok(Math.abs(v.childRate - 2.4 * MB) < 0.05 * MB && Math.abs(v.sentRate - 2.4 * MB) < 0.05 * MB, JSON.stringify(v));
    assert.ok(Math.abs(v.sentRateDuring - 23.3 * MB) < 0.3 * MB, JSON.stringify(v));
  });

  test('the uplink is the slow link: the child slows while the probe runs; kept, and not probed again', async () => {
    // the lab: 2.4 MB/s before, 0.45 meanwhile, the probe 1.8
    const { link, verdicts, probes } = await run({ rate: 2.4 * MB, rateDuring: 0.45 * MB, probeRate: 1.8 * MB, sendingShare: 1, ms: 30_000 });
    assert.equal(probes, 1, 'a verdict stands for the round');
    assert.equal(verdicts[0]?.cut, false, JSON.stringify(verdicts));
    assert.equal(link.aborted, undefined);
  });

  test('a child that keeps the source waiting less than 80 % of the time is not probed', async () => {
    const { probes } = await run({ rate: 2.4 * MB, rateDuring: 2.4 * MB, probeRate: 100 * MB, sendingShare: 0.7, ms: 30_000 });
    assert.equal(probes, 0);
  });

  test('a child busy with its own CPU is not probed (the source excuses its CPU time)', async () => {
    const { probes } = await run({ rate: 2.4 * MB, rateDuring: 2.4 * MB, probeRate: 100 * MB, sendingShare: 1, ranShare: 0.5, ms: 30_000 });
    assert.equal(probes, 0);
  });

  test('not before the window has passed', async () => {
    const { probes } = await run({ rate: 2.4 * MB, rateDuring: 2.4 * MB, probeRate: 100 * MB, sendingShare: 1, ms: 2900 });
    assert.equal(probes, 0);
  });

  test('a failed probe says nothing: one more try after the cool-down, and no more', async () => {
    const { link, verdicts, probes } = await run({ rate: 2.4 * MB, rateDuring: 2.4 * MB, sendingShare: 1, ms: 3000 + 2 * (1000 + PROBE_COOLDOWN_MS) + 10_000 });
    assert.equal(probes, 2);
    assert.equal(verdicts.length, 0);
    assert.equal(link.aborted, undefined);
  });

  test('a child that finished while the probe ran is neither judged nor cut', async () => {
    const { link, verdicts, probes } = await run({ rate: 2.4 * MB, rateDuring: 1.4 * MB, probeRate: 21.9 * MB, sendingShare: 1, ms: 20_000, finishDuringProbe: true });
    assert.equal(probes, 1);
    assert.equal(verdicts.length, 0);
    assert.equal(link.aborted, undefined);
  });

  test('four flows share the uplink: the probe takes most of it from all four; kept', async () => {
    // the child and three others at 0.6 MB/s each (2.4 in all); with the probe, 0.15 each and
    // the probe 1.8: the probe alone is 3 times the child's rate before, the total is unchanged
    const { link, verdicts } = await run({ rate: 0.6 * MB, rateDuring: 0.15 * MB, others: { rate: 1.8 * MB, rateDuring: 0.45 * MB }, probeRate: 1.8 * MB, sendingShare: 1, ms: 10_000 });
    assert.equal(verdicts[0]?.cut, false, JSON.stringify(verdicts));
    assert.equal(link.aborted, undefined);
  });

  test('a child with less than 3 s of data left is not probed', async () => {
    // 8 MB at 2.4 MB/s: 3.3 s in all; at the window's end (3 s) 0.8 MB are left
    const { probes } = await run({ rate: 2.4 * MB, rateDuring: 1.4 * MB, probeRate: 21.9 * MB, sendingShare: 1, ms: 10_000, bytes: 8 * MB });
    assert.equal(probes, 0);
  });
});
