// The laggard rule on made-up clocks: a child is blamed only for waits it caused itself,
// only over a whole window, and only past the share.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as fs from 'node:fs';
import { cpuClocks } from '../../protocols/relay/run-queue.js';
import { HeldClock, LaggardMeter, LAGGARD_WINDOW_MS, LAGGARD_WINDOW_UNEXCUSED_MS, type ChildClocks } from '../../protocols/relay/laggard.js';

describe('HeldClock', () => {
  test('counts the time during which at least one wait runs, once', () => {
    let now = 0;
    const c = new HeldClock(() => now);
    c.begin(); now = 100;
    c.begin(); now = 150; // a second child's wait overlaps the first
    c.end(); now = 300;
    assert.equal(c.ms, 300, 'a wait still running counts');
    c.end(); now = 1000;
    assert.equal(c.ms, 300);
    c.begin(); now = 1100; c.end();
    assert.equal(c.ms, 400);
  });
});

describe('cpuClocks', () => {
  test('reads the CPU wait of this thread, in ms, where Linux keeps it', () => {
    const file = '/proc/thread-self/schedstat';
    if (!fs.existsSync(file)) {
      assert.equal(cpuClocks()?.queued, undefined);
      return;
    }
    const waitedNs = () => Number(fs.readFileSync(file, 'latin1').trim().split(' ')[1]);
    const before = waitedNs();
    const a = cpuClocks()?.queued;
    const after = waitedNs();
    assert.ok(a != null && Number.isInteger(a), String(a));
    // the second field (ns), in ms, as it was between the two reads
    assert.ok(a >= Math.floor(before / 1e6) && a <= Math.ceil(after / 1e6), `${a} ms, the field ${before}..${after} ns`);
    const b = cpuClocks()?.queued;
    assert.ok(b != null && b >= a, `${b} after ${a}`);
  });
});

describe('LaggardMeter', () => {
  /** a meter judging over `windowMs` whether or not the child reports its CPU waits */
  const meter = (windowMs: number) => new LaggardMeter(windowMs, 0.5, windowMs);
  /** feed one credit every `step` ms for `ms`; the parent waits `waitShare` of the time, the child reports `heldShare` (and `queuedShare`) */
  function run(m: LaggardMeter, ms: number, waitShare: number, heldShare: number | undefined, queuedShare?: number, step = 50): number | undefined {
    for (let t = step; t <= ms; t += step) {
      const clocks: ChildClocks = {
        held: heldShare == null ? undefined : 1000 + t * heldShare,
        queued: queuedShare == null ? undefined : 5000 + t * queuedShare,
      };
      if (m.sample(t, t * waitShare, clocks)) return t;
    }
    return undefined;
  }

  test('a child that keeps its parent waiting 90 % of the time is cut once a full window has passed', () => {
    const cutAt = run(meter(3000), 10_000, 0.9, undefined);
    assert.equal(cutAt, 3050, 'not before the window (the first sample starts it)');
  });

  test('a child below the share is never cut', () => {
    const m = meter(3000);
    assert.equal(run(m, 60_000, 0.45, undefined), undefined);
    assert.ok(m.maxShare > 0.44 && m.maxShare < 0.46, String(m.maxShare));
  });

  test('a child held back by its own children is not to blame for that part', () => {
    // the parent waits 90 % of the time, 80 % of it because the child itself waits for its children
    assert.equal(run(meter(3000), 60_000, 0.9, 0.8), undefined);
    // the same waits, reported as the child's own: cut
    assert.notEqual(run(meter(3000), 60_000, 0.9, 0.3), undefined);
  });

  test('only the last window counts: a slow start is forgiven, a slow end is not', () => {
    const m = meter(3000);
    let waited = 0;
    let cut: number | undefined;
    for (let t = 50; t <= 20_000 && cut == null; t += 50) {
      // slow for the first second, fast until 10 s, then slow again
      waited += (t <= 1000 || t > 10_000) ? 45 : 5;
      if (m.sample(t, waited, {})) cut = t;
    }
    assert.ok(cut != null && cut > 10_000 && cut < 12_000, String(cut));
  });

  test('a burst is forgiven: a child kept from the CPU for 2.5 s of a fast transfer is not cut', () => {
    const m = meter(6000);
    let waited = 0;
    for (let t = 50; t <= 30_000; t += 50) {
      // 5 % of the time, but all of it from 10 s to 12.5 s
      waited += (t > 10_000 && t <= 12_500) ? 50 : 2.5;
      assert.equal(m.sample(t, waited, {}), false, `cut at ${t}`);
    }
    // the last 3 s alone saw 0.8 of it; the 6 s window 0.43
    assert.ok(m.maxShare < 0.5, String(m.maxShare));
  });

  test('slow through most of the window but no longer: not cut (the last half must agree)', () => {
    const m = meter(6000);
    let waited = 0;
    for (let t = 50; t <= 30_000; t += 50) {
      waited += t <= 3500 ? 50 : 2.5;
      // at 6 s the whole window's share is 0.6, its last half's 0.21
      assert.equal(m.sample(t, waited, {}), false, `cut at ${t}`);
    }
  });

  test('a report of held time that goes backwards or is not a number changes nothing', () => {
    const m = meter(3000);
    let cut: number | undefined;
    for (let t = 50; t <= 10_000 && cut == null; t += 50) {
      const held = t < 1000 ? t * 0.9 : (t % 100 === 0 ? Number.NaN : 0);
      if (m.sample(t, t * 0.9, { held })) cut = t;
    }
    // the child once claimed 0.9 s held: that much is forgiven, no more
    assert.ok(cut != null && cut <= 4100, String(cut));
  });

  test('time the child waited for a CPU is not its fault', () => {
    // the parent waits 90 % of the time, the child was runnable but not running for 70 % of it
    assert.equal(run(meter(3000), 60_000, 0.9, undefined, 0.7), undefined);
    // the same child on a CPU of its own: cut
    assert.notEqual(run(meter(3000), 60_000, 0.9, undefined, 0.05), undefined);
  });

  test('a child excuses no more CPU wait than time went by', () => {
    const m = meter(3000);
    let cut: number | undefined;
    for (let t = 50; t <= 10_000 && cut == null; t += 50) {
      // one report claims a minute of CPU wait, to be spent on the next 60 s of waits
      if (m.sample(t, t * 0.9, { queued: t >= 1000 ? 60_000 : 0 })) cut = t;
    }
    // 50 ms of it counted, no more: cut as soon as the window allows
    assert.ok(cut != null && cut <= 3100, String(cut));
  });

  test('the shorter window once the child reports its CPU waits, the longer one while it does not', () => {
    assert.equal(LAGGARD_WINDOW_MS < LAGGARD_WINDOW_UNEXCUSED_MS, true);
    assert.equal(run(new LaggardMeter(), 60_000, 0.9, undefined, 0), LAGGARD_WINDOW_MS + 50);
    assert.equal(run(new LaggardMeter(), 60_000, 0.9, undefined), LAGGARD_WINDOW_UNEXCUSED_MS + 50);
  });
});
