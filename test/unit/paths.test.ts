import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import {
  checkRelativePath, comparePaths, parentOf, isWithin, InvalidPathError, MAX_NAME_BYTES, MAX_PATH_BYTES
} from '../../src/manifest/paths.js'

const bytes = (s: string): number => new TextEncoder().encode(s).byteLength

/** An ASCII path of exactly n bytes made of 9-char names. */
function asciiPathOf (n: number): string {
  let p = ''
  while (p.length + 10 <= n) p += 'abcdefghi/'
  p += 'x'.repeat(n - p.length)
  if (p.endsWith('/')) throw new Error('bad helper length')
  return p
}

describe('checkRelativePath', () => {
  for (const ok of ['a', 'a/b', 'a b/c d', '.hidden', '..foo', 'foo..', 'a/...', 'a/.b/c', 'é/ü/日本', 'a\\b', '-', 'emoji \ud83d\ude00/ok']) {
    test(`accepts ${JSON.stringify(ok)}`, () => {
      assert.doesNotThrow(() => checkRelativePath(ok))
    })
  }

  const bad: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['absolute', '/a', /absolute/],
    ['absolute root', '/', /absolute/],
    ['dotdot alone', '..', /'\.\.'/],
    ['dotdot inside', 'a/../b', /'\.\.'/],
    ['dotdot at end', 'a/..', /'\.\.'/],
    ['dot alone', '.', /'\.'/],
    ['dot first', './a', /'\.'/],
    ['dot inside', 'a/./b', /'\.'/],
    ['empty segment', 'a//b', /empty segment/],
    ['trailing slash', 'a/', /empty segment/],
    ['NUL', 'a\0b', /NUL/],
    ['NUL alone', '\0', /NUL/],
    // one name on disk (U+FFFD) for many strings
    ['a lone high surrogate', 'a\ud800', /lone surrogate/],
    ['a lone low surrogate', 'd/\udc00x', /lone surrogate/],
    ['surrogates in the wrong order', '\ude00\ud83d', /lone surrogate/]
  ]
  for (const [name, p, reason] of bad) {
    test(`rejects ${name}`, () => {
      assert.throws(() => checkRelativePath(p), (err: unknown) => {
        assert.ok(err instanceof InvalidPathError)
        assert.equal(err.name, 'InvalidPathError')
        assert.equal(err.path, p)
        assert.match(err.message, reason)
        return true
      })
    })
  }

  test('rejects non-strings', () => {
    assert.throws(() => checkRelativePath(undefined as unknown as string), InvalidPathError)
    assert.throws(() => checkRelativePath(42 as unknown as string), InvalidPathError)
  })

  test('name length limit counts UTF-8 bytes', () => {
    assert.equal(MAX_NAME_BYTES, 255)
    assert.doesNotThrow(() => checkRelativePath('x'.repeat(255)))
    assert.doesNotThrow(() => checkRelativePath('d/' + 'x'.repeat(255)))
    assert.throws(() => checkRelativePath('x'.repeat(256)), /name longer/)
    assert.throws(() => checkRelativePath('d/' + 'x'.repeat(256) + '/e'), /name longer/)
    // 'é' is 2 bytes: 127 of them + 'x' = 255 bytes, 128 of them = 256 bytes (only 128 UTF-16 units)
    const ok = 'é'.repeat(127) + 'x'
    const tooLong = 'é'.repeat(128)
    assert.equal(bytes(ok), 255)
    assert.equal(bytes(tooLong), 256)
    assert.doesNotThrow(() => checkRelativePath(ok))
    assert.throws(() => checkRelativePath(tooLong), InvalidPathError)
    // 4-byte characters (surrogate pairs): 64 × 4 = 256 bytes
    assert.throws(() => checkRelativePath('😀'.repeat(64)), InvalidPathError)
    assert.doesNotThrow(() => checkRelativePath('😀'.repeat(63) + 'abc'))
  })

  test('total length limit counts UTF-8 bytes', () => {
    assert.equal(MAX_PATH_BYTES, 4096)
    assert.equal(asciiPathOf(4096).length, 4096)
    assert.doesNotThrow(() => checkRelativePath(asciiPathOf(4096)))
    assert.throws(() => checkRelativePath(asciiPathOf(4097)), /longer than 4096/)
    // multibyte: 20 names of 100 × 'é' (200 bytes) + '/' = 4020 bytes, then 38 × 'é' = 4096 bytes
    const unit = 'é'.repeat(100) + '/'
    const atLimit = unit.repeat(20) + 'é'.repeat(38)
    const overLimit = unit.repeat(20) + 'é'.repeat(39)
    assert.equal(bytes(atLimit), 4096)
    assert.ok(overLimit.length < 4096)
    assert.doesNotThrow(() => checkRelativePath(atLimit))
    assert.throws(() => checkRelativePath(overLimit), /longer than 4096/)
  })
})

describe('comparePaths', () => {
  const sorted = (xs: string[]): string[] => [...xs].sort(comparePaths)

  test("'/' sorts before every other character", () => {
    assert.deepEqual(sorted(['a-b', 'a/b', 'a', 'a.b']), ['a', 'a/b', 'a-b', 'a.b'])
    assert.deepEqual(sorted(['a!', 'a b', 'a/b', 'a']), ['a', 'a/b', 'a b', 'a!'])
    assert.deepEqual(sorted(['ab', 'a/c', 'a/b/c', 'a!', 'a/b', 'a']), ['a', 'a/b', 'a/b/c', 'a/c', 'a!', 'ab'])
    assert.ok(comparePaths('a/z', 'a\u0001') < 0)
    assert.ok(comparePaths('a\u0001', 'a/z') > 0)
  })

  test('other characters by code unit, prefix first', () => {
    assert.ok(comparePaths('a', 'b') < 0)
    assert.ok(comparePaths('B', 'a') < 0)
    assert.ok(comparePaths('a', 'ab') < 0)
    assert.ok(comparePaths('ab', 'a') > 0)
    assert.equal(comparePaths('a/b', 'a/b'), 0)
    assert.equal(comparePaths('', ''), 0)
  })

  test('antisymmetric and a directory\'s contents are contiguous right after it', () => {
    // deterministic pseudo-random paths over a small alphabet that includes chars on both sides of '/'
    let seed = 12345
    const rnd = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 16) % n }
    const alphabet = ['a', 'b', '-', '.', ' ', '!', '0', 'é']
    const set = new Set<string>()
    while (set.size < 300) {
      const depth = 1 + rnd(3)
      const segs: string[] = []
      for (let d = 0; d < depth; d++) {
        let s = ''
        const len = 1 + rnd(3)
        for (let k = 0; k < len; k++) s += alphabet[rnd(alphabet.length)]
        segs.push(s)
      }
      // add every ancestor too, like a real tree
      for (let d = 1; d <= segs.length; d++) set.add(segs.slice(0, d).join('/'))
    }
    const all = sorted([...set])
    for (let i = 0; i < all.length; i++) {
      for (let j = 0; j < all.length; j++) {
        const c1 = Math.sign(comparePaths(all[i], all[j]))
        const c2 = Math.sign(comparePaths(all[j], all[i]))
        assert.equal(c1, -c2 || 0)
        assert.equal(c1, Math.sign(i - j), `${all[i]} vs ${all[j]}`)
      }
    }
    for (let i = 0; i < all.length; i++) {
      const dir = all[i]
      let j = i + 1
      while (j < all.length && all[j].startsWith(dir + '/')) j++
      for (let k = j; k < all.length; k++) {
        assert.ok(!all[k].startsWith(dir + '/'), `${all[k]} is separated from its ancestor ${dir}`)
      }
    }
  })
})

describe('parentOf', () => {
  test('returns the parent, or empty for top level', () => {
    assert.equal(parentOf('a'), '')
    assert.equal(parentOf('a/b'), 'a')
    assert.equal(parentOf('a/b/c'), 'a/b')
    assert.equal(parentOf('a.b/c-d'), 'a.b')
  })
})

describe('isWithin', () => {
  test('the directory itself and paths below it', () => {
    assert.equal(isWithin('a', 'a'), true)
    assert.equal(isWithin('a/b', 'a'), true)
    assert.equal(isWithin('a/b/c', 'a'), true)
    assert.equal(isWithin('a/b/c', 'a/b'), true)
  })
  test('siblings sharing a prefix are not within', () => {
    assert.equal(isWithin('ab', 'a'), false)
    assert.equal(isWithin('a-b/c', 'a'), false)
    assert.equal(isWithin('a.b', 'a'), false)
    assert.equal(isWithin('a', 'a/b'), false)
    assert.equal(isWithin('b/a', 'a'), false)
  })
})
