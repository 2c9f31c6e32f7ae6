import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { checkManifestShape, InvalidManifestError } from '../../src/manifest/validate.js'
import type { Entry } from '../../src/manifest/types.js'

const H = 'a'.repeat(64)
const T = 1_700_000_000
const dir = (path: string, o: Partial<Entry> = {}): Entry => ({ path, type: 'dir', mode: 0o755, mtime: T, mtimeNsec: 0, size: 0, ...o })
const file = (path: string, o: Partial<Entry> = {}): Entry => ({ path, type: 'file', mode: 0o644, mtime: T, mtimeNsec: 0, size: 3, hash: H, ...o })
const link = (path: string, target: string, o: Partial<Entry> = {}): Entry => ({ path, type: 'symlink', mode: 0o777, mtime: T, mtimeNsec: 0, size: 0, target, ...o })

function rejects (entries: Entry[], message?: RegExp): void {
  assert.throws(() => checkManifestShape(entries), (err: unknown) => {
    assert.ok(err instanceof InvalidManifestError, `expected InvalidManifestError, got ${String(err)}`)
    assert.equal(err.name, 'InvalidManifestError')
    if (message != null) assert.match(err.message, message)
    return true
  })
}

describe('checkManifestShape', () => {
  test('a valid manifest passes', () => {
    assert.doesNotThrow(() => checkManifestShape([]))
    assert.doesNotThrow(() => checkManifestShape([
      dir('a'),
      file('a/b'),
      dir('a/c'),
      file('a/c/d', { size: 0, mode: 0o4755, mtimeNsec: 999_999_999 }),
      link('a/l', '../../outside/is/fine/as/text'),
      file('a-b'),
      link('a.l', '/absolute'),
      dir('empty', { mode: 0 })
    ]))
  })

  test("gosync's temp names are reserved: a manifest cannot plant a stage, part or temp file", () => {
    rejects([link('.gosync-tmp-stage', '/etc')], /reserved temp prefix/)
    rejects([dir('d'), file('d/.gosync-tmp-part-0123')], /reserved temp prefix/)
    assert.doesNotThrow(() => checkManifestShape([file('.gosync-tmp'), file('x.gosync-tmp-y')]))
  })

  test('duplicates are rejected', () => {
    rejects([file('a'), file('a')], /out of order or duplicated/)
    rejects([dir('d'), dir('d')], /out of order or duplicated/)
  })

  test('out of order entries are rejected', () => {
    rejects([file('b'), file('a')], /"a"/)
    // '/' sorts first: a directory's contents must come right after it, before 'a-b'
    rejects([dir('a'), file('a-b'), file('a/b')], /out of order/)
    rejects([dir('a'), file('a/c'), file('a/b')], /out of order/)
  })

  test('parent must be a directory of the manifest', () => {
    rejects([file('x/y')], /parent of "x\/y"/)
    rejects([link('l', 'somewhere'), file('l/x')], /parent/)
    rejects([file('f'), file('f/x')], /parent/)
    rejects([dir('a'), file('a/b/c')], /parent/)
    // a parent that appears later (out of order anyway) is not accepted either
    rejects([file('z/x'), dir('z')])
  })

  test('paths are checked with checkRelativePath', () => {
    rejects([file('/abs')], /absolute/)
    rejects([dir('a'), file('a/../b')])
    rejects([file('a/')])
    rejects([file('')])
    rejects([file('n\0ul')])
  })

  test('bad hash', () => {
    rejects([file('f', { hash: 'A'.repeat(64) })], /bad hash/)
    rejects([file('f', { hash: 'a'.repeat(63) })], /bad hash/)
    rejects([file('f', { hash: 'a'.repeat(65) })], /bad hash/)
    rejects([file('f', { hash: 'g'.repeat(64) })], /bad hash/)
    rejects([file('f', { hash: ' ' + 'a'.repeat(63) })], /bad hash/)
  })

  test('a file without a hash is accepted: its hash is deferred to the control stream', () => {
    assert.doesNotThrow(() => checkManifestShape([file('f', { hash: undefined })]))
  })

  test('bad size', () => {
    rejects([file('f', { size: -1 })], /bad size/)
    rejects([file('f', { size: 1.5 })], /bad size/)
    rejects([file('f', { size: Number.MAX_SAFE_INTEGER + 1 })], /bad size/)
  })

  test('bad mode', () => {
    rejects([file('f', { mode: -1 })], /bad mode/)
    rejects([file('f', { mode: 0o10000 })], /bad mode/)
    rejects([dir('d', { mode: 0o755 + 0.5 })], /bad mode/)
    rejects([dir('d', { mode: NaN })], /bad mode/)
    assert.doesNotThrow(() => checkManifestShape([file('f', { mode: 0o7777 })]))
  })

  test('bad mtime', () => {
    rejects([file('f', { mtimeNsec: 1_000_000_000 })], /bad mtime/)
    rejects([file('f', { mtimeNsec: -1 })], /bad mtime/)
    rejects([file('f', { mtimeNsec: 0.5 })], /bad mtime/)
    rejects([file('f', { mtime: 1.5 })], /bad mtime/)
  })

  test('bad symlink target', () => {
    rejects([link('l', '')], /bad symlink target/)
    rejects([link('l', 'a\0b')], /bad symlink target/)
    rejects([link('l', 'x'.repeat(4097))], /bad symlink target/)
    rejects([{ ...link('l', 'x'), target: undefined }], /bad symlink target/)
    assert.doesNotThrow(() => checkManifestShape([link('l', 'x'.repeat(4096))]))
  })

  test('bad type', () => {
    rejects([{ ...file('f'), type: 'fifo' as Entry['type'] }], /bad type/)
  })

  test('names the first bad entry', () => {
    rejects([file('ok'), file('zz', { hash: 'nope' }), file('zzz', { mode: -1 })], /bad hash for zz$/)
  })
})
