import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { marchTrees, diffTrees, resolveVerified, isNoop, sameMtime, type TargetChanges } from '../../src/diff/diff.js'
import type { Entry } from '../../src/manifest/types.js'

const T = 1_600_000_000
const hashOf = (c: string): string => c.padEnd(64, '0').slice(0, 64)
const dir = (path: string, o: Partial<Entry> = {}): Entry => ({ path, type: 'dir', mode: 0o755, mtime: T, mtimeNsec: 0, size: 0, ...o })
const file = (path: string, o: Partial<Entry> = {}): Entry => ({ path, type: 'file', mode: 0o644, mtime: T, mtimeNsec: 0, size: 10, hash: hashOf('a'), ...o })
const link = (path: string, target: string, o: Partial<Entry> = {}): Entry => ({ path, type: 'symlink', mode: 0o777, mtime: T, mtimeNsec: 0, size: 0, target, ...o })
/** A target scan: same entries, but targets usually do not hash. */
const unhashed = (es: Entry[]): Entry[] => es.map(e => { const c = { ...e }; delete c.hash; return c })

const DEL = { delete: true, owners: false }
const KEEP = { delete: false, owners: false }
const none: TargetChanges = { remove: [], mkdir: [], symlink: [], fetch: [], meta: [], verify: [] }
const changes = (c: Partial<TargetChanges>): TargetChanges => ({ ...none, ...c })

const SOURCE: Entry[] = [
  dir('a'),
  file('a/f'),
  dir('a/sub'),
  link('a/sub/l', '../f'),
  file('a-b', { size: 0 }),
  dir('empty'),
  link('z', '/abs')
]

describe('marchTrees', () => {
  test('calls back once per path, in order, with source indices', () => {
    const calls: string[] = []
    marchTrees(
      [dir('a'), file('a/x'), file('a-b'), file('c')],
      [dir('a'), file('a/y'), file('b'), file('c'), file('d')],
      {
        onlyInSource: (s, i) => calls.push(`src ${s.path} ${i}`),
        onlyInTarget: d => calls.push(`dst ${d.path}`),
        inBoth: (s, d, i) => { assert.equal(s.path, d.path); calls.push(`both ${s.path} ${i}`) }
      })
    assert.deepEqual(calls, ['both a 0', 'src a/x 1', 'dst a/y', 'src a-b 2', 'dst b', 'both c 3', 'dst d'])
  })

  test('empty sides', () => {
    const calls: string[] = []
    const cb = { onlyInSource: (s: Entry, i: number) => calls.push(`src ${s.path} ${i}`), onlyInTarget: (d: Entry) => calls.push(`dst ${d.path}`), inBoth: () => calls.push('both') }
    marchTrees([], [], cb)
    assert.deepEqual(calls, [])
    marchTrees([file('a'), file('b')], [], cb)
    marchTrees([], [file('c')], cb)
    assert.deepEqual(calls, ['src a 0', 'src b 1', 'dst c'])
  })
})

describe('sameMtime', () => {
  test('equal within 2 µs, different from 2 µs on', () => {
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 0 }, { mtime: T, mtimeNsec: 0 }), true)
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 0 }, { mtime: T, mtimeNsec: 1999 }), true)
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 1999 }, { mtime: T, mtimeNsec: 0 }), true)
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 0 }, { mtime: T, mtimeNsec: 2000 }), false)
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 0 }, { mtime: T, mtimeNsec: 1_000_000 }), false)
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 0 }, { mtime: T + 1, mtimeNsec: 0 }), false)
    // across a second boundary
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 999_999_500 }, { mtime: T + 1, mtimeNsec: 500 }), true)
    assert.equal(sameMtime({ mtime: T + 1, mtimeNsec: 500 }, { mtime: T, mtimeNsec: 999_999_500 }), true)
    assert.equal(sameMtime({ mtime: T, mtimeNsec: 999_000_000 }, { mtime: T + 1, mtimeNsec: 0 }), false)
  })
})

describe('diffTrees', () => {
  test('identical trees are a no-op', () => {
    const c = diffTrees(SOURCE, unhashed(SOURCE), DEL)
    assert.deepEqual(c, none)
    assert.equal(isNoop(c), true)
    assert.equal(isNoop(diffTrees([], [], DEL)), true)
  })

  test('isNoop is false as soon as any list is non-empty', () => {
    for (const k of Object.keys(none) as Array<keyof TargetChanges>) {
      const c = changes({ [k]: k === 'remove' ? ['x'] : [0] })
      assert.equal(isNoop(c), false, k)
    }
  })

  test('new file, dir and symlink into an empty target', () => {
    assert.deepEqual(diffTrees(SOURCE, [], DEL), changes({ mkdir: [0, 2, 5], fetch: [1, 4], symlink: [3, 6] }))
  })

  test('new entries next to existing ones', () => {
    const target = unhashed([dir('a'), file('a/f'), dir('empty')])
    assert.deepEqual(diffTrees(SOURCE, target, DEL), changes({ mkdir: [2], symlink: [3, 6], fetch: [4] }))
  })

  test('size change → fetch', () => {
    const target = unhashed(SOURCE.map(e => e.path === 'a/f' ? { ...e, size: 11 } : e))
    assert.deepEqual(diffTrees(SOURCE, target, DEL), changes({ fetch: [1] }))
    // even when the mtime differs too, size decides without hashing
    const t2 = unhashed(SOURCE.map(e => e.path === 'a/f' ? { ...e, size: 9, mtime: T - 100 } : e))
    assert.deepEqual(diffTrees(SOURCE, t2, DEL), changes({ fetch: [1] }))
  })

  test('same size, different mtime → verify; resolveVerified moves it to meta or fetch', () => {
    const source = [file('a', { hash: hashOf('1') }), file('b', { hash: hashOf('2') }), file('c', { hash: hashOf('3') }), file('d', { mode: 0o600 })]
    const target = unhashed([
      file('a', { mtime: T + 5 }),
      file('b', { mtime: T - 5 }),
      file('c', { mtimeNsec: 1_000_000 }),
      file('d') // mode only
    ])
    const c = diffTrees(source, target, DEL)
    assert.deepEqual(c, changes({ verify: [0, 1, 2], meta: [3] }))
    assert.equal(isNoop(c), false)

    const local = new Map<number, string | undefined>([[0, hashOf('1')], [1, hashOf('x')], [2, undefined]])
    const r = resolveVerified(c, source, local)
    assert.deepEqual(r, changes({ meta: [0, 3], fetch: [1, 2] }))
    // the input is left alone
    assert.deepEqual(c.verify, [0, 1, 2])
    assert.deepEqual(c.meta, [3])
  })

  test('a deferred source hash (none in the manifest) is fetched, whatever the local hash', () => {
    const source = unhashed([file('a'), file('b')])
    const c = diffTrees(source, unhashed([file('a', { mtime: T + 1 }), file('b', { mtime: T + 1 })]), DEL)
    assert.deepEqual(c, changes({ verify: [0, 1] }))
    const r = resolveVerified(c, source, new Map<number, string | undefined>([[0, hashOf('1')], [1, undefined]]))
    assert.deepEqual(r, changes({ fetch: [0, 1] }))
  })

  test('resolveVerified keeps meta and fetch sorted by index', () => {
    const source = [file('a', { hash: hashOf('1') }), file('b', { hash: hashOf('2') }), file('c', { hash: hashOf('3') }), file('d', { hash: hashOf('4') })]
    const r = resolveVerified(changes({ fetch: [2], meta: [3], verify: [0, 1] }), source, new Map([[0, hashOf('1')], [1, hashOf('no')]]))
    assert.deepEqual(r, changes({ fetch: [1, 2], meta: [0, 3] }))
  })

  test('same size, different mtime, target already hashed → decided directly', () => {
    const source = [file('a', { hash: hashOf('1') }), file('b', { hash: hashOf('2') })]
    const target = [file('a', { mtime: T + 1, hash: hashOf('1') }), file('b', { mtime: T + 1, hash: hashOf('x') })]
    assert.deepEqual(diffTrees(source, target, DEL), changes({ meta: [0], fetch: [1] }))
  })

  test('mtime within 2 µs is equal, 1 ms is not', () => {
    const source = [file('f', { mtimeNsec: 500_000 })]
    assert.equal(isNoop(diffTrees(source, unhashed([file('f', { mtimeNsec: 501_999 })]), DEL)), true)
    assert.equal(isNoop(diffTrees(source, unhashed([file('f', { mtimeNsec: 498_001 })]), DEL)), true)
    assert.deepEqual(diffTrees(source, unhashed([file('f', { mtimeNsec: 1_500_000 })]), DEL), changes({ verify: [0] }))
    assert.deepEqual(diffTrees([dir('d', { mtimeNsec: 0 })], [dir('d', { mtimeNsec: 1999 })], DEL), none)
    assert.deepEqual(diffTrees([dir('d', { mtimeNsec: 0 })], [dir('d', { mtimeNsec: 1_000_000 })], DEL), changes({ meta: [0] }))
  })

  test('mode-only change → meta (files and dirs); a symlink\'s mode is ignored', () => {
    const target = unhashed(SOURCE.map(e => ({ ...e, mode: e.mode ^ 0o022 })))
    assert.deepEqual(diffTrees(SOURCE, target, DEL), changes({ meta: [0, 1, 2, 4, 5] }))
  })

  test('symlink mtime change → meta; target change → symlink', () => {
    const target = unhashed(SOURCE.map(e => e.path === 'z' ? { ...e, mtime: T - 1 } : e.path === 'a/sub/l' ? { ...e, target: 'f' } : e))
    assert.deepEqual(diffTrees(SOURCE, target, DEL), changes({ symlink: [3], meta: [6] }))
  })

  test('owners are compared only when asked', () => {
    const source = [file('f', { uid: 1000, gid: 1000 }), dir('g', { uid: 0, gid: 0 })]
    const target = unhashed([file('f', { uid: 1001, gid: 1000 }), dir('g', { uid: 0, gid: 5 })])
    assert.deepEqual(diffTrees(source, target, { delete: true, owners: false }), none)
    assert.deepEqual(diffTrees(source, target, { delete: true, owners: true }), changes({ meta: [0, 1] }))
  })

  test('type flip file → dir', () => {
    const source = [dir('a'), file('a/x'), file('b')]
    const target = unhashed([file('a'), file('b')])
    for (const opts of [DEL, KEEP]) {
      assert.deepEqual(diffTrees(source, target, opts), changes({ remove: ['a'], mkdir: [0], fetch: [1] }))
    }
  })

  test('type flip dir → file: the dir is removed once, its children are not listed', () => {
    const source = [file('a'), file('a-b'), file('c')]
    const target = unhashed([dir('a'), file('a/x'), dir('a/y'), file('a/y/z'), link('a/y/l', 'q'), file('a-b'), file('c')])
    assert.deepEqual(diffTrees(source, target, DEL), changes({ remove: ['a'], fetch: [0] }))
    // without --delete the flipped dir still has to go
    assert.deepEqual(diffTrees(source, target, KEEP), changes({ remove: ['a'], fetch: [0] }))
  })

  test('type flips to and from symlinks', () => {
    const source = [link('a', 't'), dir('b'), file('c'), link('d', 't')]
    const target = unhashed([file('a'), link('b', 't'), link('c', 't'), dir('d'), file('d/inner')])
    assert.deepEqual(diffTrees(source, target, DEL), changes({ remove: ['a', 'b', 'c', 'd'], symlink: [0, 3], mkdir: [1], fetch: [2] }))
  })

  test('delete on: extra entries are removed, a removed dir\'s contents are not listed', () => {
    const source = [dir('k'), file('k/keep')]
    const target = unhashed([
      file('extra'),
      dir('k'), file('k/gone'), file('k/keep'),
      dir('y'), dir('y/deep'), file('y/deep/f'), link('y/l', 'x'),
      file('y-z'), // a sibling sharing the prefix: listed
      link('zz', 'nowhere')
    ])
    assert.deepEqual(diffTrees(source, target, DEL), changes({ remove: ['extra', 'k/gone', 'y', 'y-z', 'zz'] }))
  })

  test('delete off: extra entries are kept', () => {
    const source = [dir('k'), file('k/keep')]
    const target = unhashed([file('extra'), dir('k'), file('k/gone'), file('k/keep'), dir('y'), file('y/f')])
    const c = diffTrees(source, target, KEEP)
    assert.deepEqual(c, none)
    assert.equal(isNoop(c), true)
  })

  test('no path in remove lies within another', () => {
    const source = [file('a'), dir('b'), file('b/c')]
    const target = unhashed([dir('a'), dir('a/a'), file('a/a/a'), dir('b'), dir('b/c'), file('b/c/d'), dir('b/e'), file('b/e/f'), dir('x'), dir('x/y')])
    const c = diffTrees(source, target, DEL)
    assert.deepEqual(c.remove, ['a', 'b/c', 'b/e', 'x'])
    assert.deepEqual(c.fetch, [0, 2])
  })
})
