// The laggard rule on made-up clocks: a child is blamed only for waits it caused itself,
// only over a whole window, and only past the share.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HeldClock, LaggardMeter } from '../../protocols/relay/laggard.js';

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

describe('LaggardMeter', () => {
  /** feed one credit every `step` ms for `ms`; the parent waits `waitShare` of the time, the child reports `heldShare` */
  function run(m: LaggardMeter, ms: number, waitShare: number, heldShare: number | undefined, step = 50): number | undefined {
    for (let t = step; t <= ms; t += step) {
      if (m.sample(t, t * waitShare, heldShare == null ? undefined : 1000 + t * heldShare)) return t;
    }
    return undefined;
  }

  test('a child that keeps its parent waiting 90 % of the time is cut once a full window has passed', () => {
    const cutAt = run(new LaggardMeter(3000, 0.5), 10_000, 0.9, undefined);
    assert.equal(cutAt, 3050, 'not before the window (the first sample starts it)');
  });

  test('a child below the share is never cut', () => {
    const m = new LaggardMeter(3000, 0.5);
    assert.equal(run(m, 60_000, 0.45, undefined), undefined);
    assert.ok(m.maxShare > 0.44 && m.maxShare < 0.46, String(m.maxShare));
  });

  test('a child held back by its own children is not to blame for that part', () => {
    // the parent waits 90 % of the time, 80 % of it because the child itself waits for its children
    assert.equal(run(new LaggardMeter(3000, 0.5), 60_000, 0.9, 0.8), undefined);
    // the same waits, reported as the child's own: cut
    assert.notEqual(run(new LaggardMeter(3000, 0.5), 60_000, 0.9, 0.3), undefined);
  });

  test('only the last window counts: a slow start is forgiven, a slow end is not', () => {
    const m = new LaggardMeter(3000, 0.5);
    let waited = 0;
    let cut: number | undefined;
    for (let t = 50; t <= 20_000 && cut == null; t += 50) {
      // slow for the first second, fast until 10 s, then slow again
      waited += (t <= 1000 || t > 10_000) ? 45 : 5;
      if (m.sample(t, waited, undefined)) cut = t;
    }
    assert.ok(cut != null && cut > 10_000 && cut < 12_000, String(cut));
  });

  test('a burst is forgiven: a child kept from the CPU for 2.5 s of a fast transfer is not cut', () => {
    const m = new LaggardMeter(6000, 0.5);
    let waited = 0;
    for (let t = 50; t <= 30_000; t += 50) {
      // 5 % of the time, but all of it from 10 s to 12.5 s
      waited += (t > 10_000 && t <= 12_500) ? 50 : 2.5;
      assert.equal(m.sample(t, waited, undefined), false, `cut at ${t}`);
    }
    // the last 3 s alone saw 0.8 of it; the 6 s window 0.43
    assert.ok(m.maxShare < 0.5, String(m.maxShare));
  });

  test('slow through most of the window but no longer: not cut (the last half must agree)', () => {
    const m = new LaggardMeter(6000, 0.5);
    let waited = 0;
    for (let t = 50; t <= 30_000; t += 50) {
      waited += t <= 3500 ? 50 : 2.5;
      // at 6 s the whole window's share is 0.6, its last half's 0.21
      assert.equal(m.sample(t, waited, undefined), false, `cut at ${t}`);
    }
  });

  test('a report of held time that goes backwards or is not a number changes nothing', () => {
    const m = new LaggardMeter(3000, 0.5);
    let cut: number | undefined;
    for (let t = 50; t <= 10_000 && cut == null; t += 50) {
      const held = t < 1000 ? t * 0.9 : (t % 100 === 0 ? Number.NaN : 0);
      if (m.sample(t, t * 0.9, held)) cut = t;
    }
    // the child once claimed 0.9 s held: that much is forgiven, no more
    assert.ok(cut != null && cut <= 4100, String(cut));
  });
});
