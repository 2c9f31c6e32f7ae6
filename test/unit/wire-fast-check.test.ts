import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { EntriesMsg, HashesMsg, isEntriesMsg, isHashesMsg, isWireEntry, WireEntry } from '../../protocols/control/messages.js'

// The plain-code checks of large messages must accept exactly what the schemas accept: each
// valid value is broken one field at a time, in every way a hostile source could.
const H = 'ab'.repeat(32)
const valid: Array<Record<string, unknown>> = [
  { path: 'a', type: 'file', mode: 0o644, mtime: 1_700_000_000, nsec: 5, size: 3, hash: H },
  { path: 'd/e', type: 'dir', mode: 0o755, mtime: -86_400, nsec: 0 },
  { path: 'l', type: 'symlink', mode: 0o777, mtime: 0, nsec: 999_999_999, target: '../x', uid: 0, gid: 65534 },
  { path: 'x'.repeat(4096), type: 'file', mode: 0, mtime: 1, nsec: 1, size: 0 },
  { path: 'f', type: 'file', mode: 0o644, mtime: 1, nsec: 1, size: 1, hash: 'not hex: the manifest check refuses it later' },
  { path: 'f', type: 'file', mode: 0o644, mtime: 1, nsec: 1, unknownKey: 'ignored' }
]
const badValues: unknown[] = [undefined, null, -1, 1.5, '1', true, [], {}, '', 'x'.repeat(4097), 2 ** 53, -(2 ** 53), 'other', Number.NaN, Infinity]

function mutations (v: Record<string, unknown>): unknown[] {
  const out: unknown[] = []
  for (const k of ['path', 'type', 'mode', 'mtime', 'nsec', 'size', 'hash', 'target', 'uid', 'gid']) {
    for (const b of badValues) out.push({ ...v, [k]: b })
    const { [k]: _, ...without } = v
    out.push(without)
  }
  out.push(null, [], 'entry', 42, [v])
  return out
}

describe('fast checks of large control messages agree with their schemas', () => {
  test('WireEntry', () => {
    let accepted = 0
    let n = 0
    for (const v of valid) {
      for (const m of [v, ...mutations(v)]) {
        n++
        const want = WireEntry.safeParse(m).success
        assert.equal(isWireEntry(m), want, `entry ${JSON.stringify(m)?.slice(0, 200)}: schema says ${String(want)}`)
        if (want) accepted++
      }
    }
    // the corpus has both kinds: a check that refused (or accepted) everything would fail above
    assert.ok(accepted > 20 && accepted < n - 100, `${accepted} of ${n} accepted`)
  })

  test('EntriesMsg', () => {
    const cases: unknown[] = [
      { type: 'entries', entries: valid },
      { type: 'entries', entries: [] },
      { type: 'entries', entries: [...valid, { ...valid[0], mode: -1 }] },
      { type: 'entries', entries: Array.from({ length: 100_001 }, () => valid[0]) },
      { type: 'entries', entries: Array.from({ length: 100_000 }, () => valid[1]) },
      { type: 'entrie', entries: valid },
      { type: 'entries', entries: {} },
      { type: 'entries' },
      { entries: valid },
      null
    ]
    for (const c of cases) assert.equal(isEntriesMsg(c), EntriesMsg.safeParse(c).success, JSON.stringify(c)?.slice(0, 200))
  })

  test('HashesMsg', () => {
    const pair = [3, H]
    const cases: unknown[] = [
      { type: 'hashes', hashes: [pair] },
      { type: 'hashes', hashes: Array.from({ length: 4096 }, (_, i) => [i, H]) },
      { type: 'hashes', hashes: Array.from({ length: 4097 }, (_, i) => [i, H]) },
      { type: 'hashes', hashes: [] },
      { type: 'hashes', hashes: [[3, H, 'extra']] },
      { type: 'hashes', hashes: [[3]] },
      { type: 'hashes', hashes: [[-1, H]] },
      { type: 'hashes', hashes: [[1.5, H]] },
      { type: 'hashes', hashes: [['3', H]] },
      { type: 'hashes', hashes: [[3, H.toUpperCase()]] },
      { type: 'hashes', hashes: [[3, H + '0']] },
      { type: 'hashes', hashes: [[3, H.slice(1)]] },
      { type: 'hashes', hashes: [{ 0: 3, 1: H }] },
      { type: 'hashes', hashes: [pair, null] },
      { type: 'hash', hashes: [pair] },
      { type: 'hashes' },
      { type: 'hashes', hashes: [pair], extra: 1 }
    ]
    for (const c of cases) assert.equal(isHashesMsg(c), HashesMsg.safeParse(c).success, JSON.stringify(c)?.slice(0, 200))
  })
})
