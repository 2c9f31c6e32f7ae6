import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { canonicalLine, contentDigest, manifestDigest, ManifestDigester } from '../../src/manifest/digest.js'
import type { Entry, RootMeta } from '../../src/manifest/types.js'

// The definition in docs/PROTOCOLS.md: one JSON array per entry, root first.
const reference = (e: Entry): string =>
  JSON.stringify([e.path, e.type, e.mode, e.size, e.mtime, e.mtimeNsec, e.hash ?? '', e.target ?? '', e.uid ?? -1, e.gid ?? -1]) + '\n'
const referenceDigest = (root: RootMeta, entries: Entry[]): string => {
  const h = createHash('sha256')
  h.update(JSON.stringify(['.', root.mode, root.mtime, root.mtimeNsec, root.uid ?? -1, root.gid ?? -1]) + '\n')
  for (const e of entries) h.update(reference(e))
  return h.digest('hex')
}

const odd: Entry[] = [
  { path: 'plain-name_1.txt', type: 'file', mode: 0o644, mtime: 1_700_000_000, mtimeNsec: 5, size: 3, hash: 'ab'.repeat(32) },
  { path: 'quote"back\\slash', type: 'file', mode: 0o4755, mtime: -86_400, mtimeNsec: 999_999_999, size: 0, hash: 'cd'.repeat(32), uid: 0, gid: 0 },
  { path: 'ctl\u0001tab\tnew\nline', type: 'dir', mode: 0, mtime: 0, mtimeNsec: 0, size: 0 },
  { path: 'ünïcödé/日本語 and space', type: 'symlink', mode: 0o777, mtime: 1, mtimeNsec: 1, size: 0, target: '../a "b"\\c', uid: 65534, gid: 65534 },
  { path: 'lone\ud800surrogate', type: 'symlink', mode: 0o777, mtime: 1, mtimeNsec: 1, size: 0, target: 'plain/target' }
]

describe('manifest digest', () => {
  test('canonicalLine is exactly the documented JSON line, escapes included', () => {
    for (const e of odd) assert.equal(canonicalLine(e), reference(e))
  })

  test('hashing in chunks gives the per-line digest, for small and large manifests', () => {
    const root: RootMeta = { mode: 0o755, mtime: 1_700_000_000, mtimeNsec: 42 }
    assert.equal(manifestDigest(root, odd), referenceDigest(root, odd))
    const many: Entry[] = Array.from({ length: 5000 }, (_, i) => ({ ...odd[i % odd.length], path: `${i}/${odd[i % odd.length].path}` }))
    assert.equal(manifestDigest(root, many), referenceDigest(root, many))
    assert.notEqual(manifestDigest(root, many), manifestDigest({ ...root, mtimeNsec: 43 }, many))
  })

  test('ManifestDigester: the same digest whatever the batches, empty ones included', () => {
    const root: RootMeta = { mode: 0o755, mtime: 1, mtimeNsec: 2, uid: 3, gid: 4 }
    const many: Entry[] = Array.from({ length: 3000 }, (_, i) => ({ ...odd[i % odd.length], path: `p${String(i).padStart(5, '0')}/${odd[i % odd.length].path}` }))
    const whole = referenceDigest(root, many)
    for (const cuts of [[0], [1, 2, 3], [999, 1000, 2999], [1500, 1500]]) {
      const d = new ManifestDigester(root)
      let from = 0
      for (const c of [...cuts, many.length]) { d.update(many.slice(from, c)); from = c }
      assert.equal(d.digest(), whole, `cuts ${cuts.join(',')}`)
    }
    assert.equal(new ManifestDigester(root).digest(), referenceDigest(root, []))
  })

  test('contentDigest: the manifest digest without deferred hashes; else the documented text over each deferred file', () => {
    const md = 'ef'.repeat(32)
    const full: Entry[] = [odd[0], odd[2]]
    assert.equal(contentDigest(md, full, () => 'x'), md)
    const deferred: Entry[] = [odd[2], { ...odd[0], hash: undefined }, odd[1], { ...odd[0], path: 'b', hash: undefined }]
    const known = new Map([[1, '12'.repeat(32)]])
    const want = createHash('sha256').update(`gosync-content/1\n${md}\n1 ${'12'.repeat(32)}\n3 \n`).digest('hex')
    assert.equal(contentDigest(md, deferred, (i) => known.get(i)), want)
    // each established hash and each missing one changes it
    assert.notEqual(contentDigest(md, deferred, (i) => i === 1 ? '34'.repeat(32) : undefined), want)
    assert.notEqual(contentDigest(md, deferred, (i) => '12'.repeat(32)), want)
    assert.notEqual(contentDigest('00'.repeat(32), deferred, (i) => known.get(i)), want)
    // many deferred files: hashed in chunks, the same as one update
    const many: Entry[] = Array.from({ length: 5000 }, (_, i) => ({ ...odd[0], path: `f${i}`, hash: undefined }))
    const text = `gosync-content/1\n${md}\n` + many.map((_, i) => `${i} ${i % 2 === 0 ? 'ab'.repeat(32) : ''}\n`).join('')
    assert.equal(contentDigest(md, many, (i) => i % 2 === 0 ? 'ab'.repeat(32) : undefined), createHash('sha256').update(text).digest('hex'))
  })
})
