import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as fsp from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { scanTree, NotADirectoryError, isTempName, TEMP_PREFIX } from '../../src/manifest/scan.js'
import { hashFile, type HashCache } from '../../src/manifest/hash.js'
import { comparePaths } from '../../src/manifest/paths.js'
import { checkManifestShape } from '../../src/manifest/validate.js'
import type { Entry } from '../../src/manifest/types.js'

const sha = (s: string | Uint8Array): string => createHash('sha256').update(s).digest('hex')
const T1 = 1_234_567_890.5
const T2 = 1_500_000_000.25

function hasMkfifo (): boolean {
  try { execFileSync('mkfifo', ['--version'], { stdio: 'ignore' }); return true } catch { return false }
}

let base: string
before(async () => { base = await fsp.mkdtemp(join(tmpdir(), 'gosync-scan-')) })
after(async () => { await fsp.rm(base, { recursive: true, force: true }) })

async function freshDir (name: string): Promise<string> {
  const d = join(base, name)
  await fsp.mkdir(d)
  return d
}

const CONTENT: Record<string, string> = {
  'a.txt': 'hello\n',
  'd/x': 'x content',
  'd/sub/deep': 'deep',
  'd-e': 'sibling after d/',
  'd.f': '',
  'big.bin': 'z'.repeat(3 * 1024 * 1024 + 7)
}

/** A tree with every entry kind; directory mtimes are set last. */
async function buildTree (root: string, fifo: boolean): Promise<void> {
  await fsp.mkdir(join(root, 'd/sub'), { recursive: true })
  await fsp.mkdir(join(root, 'empty'))
  for (const [p, c] of Object.entries(CONTENT)) await fsp.writeFile(join(root, p), c)
  await fsp.chmod(join(root, 'a.txt'), 0o640)
  await fsp.chmod(join(root, 'd/x'), 0o755)
  await fsp.chmod(join(root, 'd-e'), 0o4711)
  await fsp.symlink('a.txt', join(root, 'link'))
  await fsp.symlink('../nowhere/at all', join(root, 'd/dangling'))
  // our own temp files, a file and a directory, are invisible
  await fsp.writeFile(join(root, TEMP_PREFIX + 'abc123'), 'partial')
  await fsp.mkdir(join(root, 'd', TEMP_PREFIX + 'dir'))
  await fsp.writeFile(join(root, 'd', TEMP_PREFIX + 'dir', 'inner'), 'hidden')
  if (fifo) execFileSync('mkfifo', [join(root, 'd/pipe')])
  await fsp.utimes(join(root, 'a.txt'), T1, T1)
  await fsp.utimes(join(root, 'd/x'), T2, T2)
  for (const d of ['d/sub', 'd', 'empty']) await fsp.utimes(join(root, d), T1, T1)
  await fsp.chmod(join(root, 'empty'), 0o700)
}

describe('scanTree', () => {
  const fifo = hasMkfifo()
  let root: string
  let warnings: string[]
  let entries: Entry[]
  let byPath: Map<string, Entry>
  let digest: string

  before(async () => {
    root = await freshDir('tree')
    await fsp.chmod(root, 0o755)
    await buildTree(root, fifo)
    warnings = []
    const m = await scanTree(root, { hash: true, onWarning: w => warnings.push(w) })
    entries = m.entries
    digest = m.digest
    byPath = new Map(entries.map(e => [e.path, e]))
  })

  test('lists files, dirs, empty dirs and symlinks, sorted with comparePaths', () => {
    assert.deepEqual(entries.map(e => e.path), [
      'a.txt', 'big.bin', 'd', 'd/dangling', 'd/sub', 'd/sub/deep', 'd/x', 'd-e', 'd.f', 'empty', 'link'
    ])
    const paths = entries.map(e => e.path)
    assert.deepEqual([...paths].sort(comparePaths), paths)
    assert.deepEqual(entries.map(e => e.type), [
      'file', 'file', 'dir', 'symlink', 'dir', 'file', 'file', 'file', 'file', 'dir', 'symlink'
    ])
  })

  test('ignores .gosync-tmp-* names', () => {
    assert.ok(isTempName(TEMP_PREFIX + 'x'))
    assert.ok(!isTempName('x' + TEMP_PREFIX))
    assert.ok(entries.every(e => !e.path.split('/').some(isTempName)))
  })

  test('a fifo is skipped with a warning', { skip: !fifo && 'mkfifo not available' }, () => {
    assert.ok(!byPath.has('d/pipe'))
    assert.equal(warnings.length, 1, warnings.join('\n'))
    assert.match(warnings[0], /d\/pipe/)
  })

  test('file hashes are SHA-256 hex of the content, sizes are byte counts', async () => {
    for (const [p, c] of Object.entries(CONTENT)) {
      const e = byPath.get(p)!
      assert.equal(e.hash, sha(c), p)
      assert.equal(e.size, Buffer.byteLength(c), p)
    }
    assert.equal(byPath.get('d.f')!.hash, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    assert.equal(await hashFile(join(root, 'big.bin')), sha(CONTENT['big.bin']))
  })

  test('dirs and symlinks have size 0 and no hash; symlink targets are verbatim, dangling too', () => {
    for (const e of entries.filter(e => e.type !== 'file')) {
      assert.equal(e.size, 0, e.path)
      assert.equal(e.hash, undefined, e.path)
    }
    assert.equal(byPath.get('link')!.target, 'a.txt')
    assert.equal(byPath.get('d/dangling')!.target, '../nowhere/at all')
    assert.equal(byPath.get('d')!.target, undefined)
  })

  test('modes are the permission bits (including setuid)', () => {
    assert.equal(byPath.get('a.txt')!.mode, 0o640)
    assert.equal(byPath.get('d/x')!.mode, 0o755)
    assert.equal(byPath.get('d-e')!.mode, 0o4711)
    assert.equal(byPath.get('empty')!.mode, 0o700)
  })

  test('mtimes are split into seconds and nanoseconds', () => {
    assert.deepEqual([byPath.get('a.txt')!.mtime, byPath.get('a.txt')!.mtimeNsec], [1_234_567_890, 500_000_000])
    assert.deepEqual([byPath.get('d/x')!.mtime, byPath.get('d/x')!.mtimeNsec], [1_500_000_000, 250_000_000])
    assert.deepEqual([byPath.get('d/sub')!.mtime, byPath.get('d/sub')!.mtimeNsec], [1_234_567_890, 500_000_000])
    assert.deepEqual([byPath.get('empty')!.mtime, byPath.get('empty')!.mtimeNsec], [1_234_567_890, 500_000_000])
  })

  test('the manifest of a real tree passes checkManifestShape', () => {
    assert.doesNotThrow(() => checkManifestShape(entries))
  })

  test('digest is stable across scans and changes with a byte, a mode or an mtime', async () => {
    const again = await scanTree(root, { hash: true })
    assert.equal(again.digest, digest)
    assert.match(digest, /^[0-9a-f]{64}$/)

    // one byte, same size, same mtime
    const p = join(root, 'd/x')
    await fsp.writeFile(p, 'X content')
    await fsp.utimes(p, T2, T2)
    const byte = await scanTree(root, { hash: true })
    assert.notEqual(byte.digest, digest)
    const x = byte.entries.find(e => e.path === 'd/x')!
    assert.equal(x.size, byPath.get('d/x')!.size)
    assert.equal(x.mtimeNsec, byPath.get('d/x')!.mtimeNsec)

    await fsp.writeFile(p, CONTENT['d/x'])
    await fsp.utimes(p, T2, T2)
    assert.equal((await scanTree(root, { hash: true })).digest, digest, 'restoring the byte restores the digest')

    await fsp.chmod(p, 0o750)
    assert.notEqual((await scanTree(root, { hash: true })).digest, digest)
    await fsp.chmod(p, 0o755)
    assert.equal((await scanTree(root, { hash: true })).digest, digest)

    await fsp.utimes(p, T2, T2 + 0.001)
    assert.notEqual((await scanTree(root, { hash: true })).digest, digest)
    await fsp.utimes(p, T2, T2)
    assert.equal((await scanTree(root, { hash: true })).digest, digest)

    await fsp.chmod(root, 0o711)
    const rootMode = await scanTree(root, { hash: true })
    assert.equal(rootMode.root.mode, 0o711)
    assert.notEqual(rootMode.digest, digest, 'root metadata is part of the digest')
    await fsp.chmod(root, 0o755)
    const restored = await scanTree(root, { hash: true })
    assert.equal(restored.digest, digest)
  })

  test('without hash: no hashes, cache never consulted', async () => {
    const cache: HashCache = { lookup: () => { throw new Error('lookup must not be called') } }
    const m = await scanTree(root, { hash: false, hashCache: cache })
    assert.ok(m.entries.filter(e => e.type === 'file').every(e => e.hash === undefined))
    assert.equal(m.entries.length, entries.length)
  })

  test('a HashCache hit is used instead of reading the file; misses are hashed and stored', async () => {
    const fake = 'f'.repeat(64)
    const lookups: Array<[string, number, number, number, number]> = []
    const stores = new Map<string, string>()
    const cache: HashCache = {
      lookup (path, size, mtime, mtimeNsec, ino) {
        lookups.push([path, size, mtime, mtimeNsec, ino])
        return path === 'a.txt' ? fake : undefined
      },
      store (path, _size, _mtime, _nsec, _ino, hash) { stores.set(path, hash) }
    }
    const m = await scanTree(root, { hash: true, hashCache: cache, hashConcurrency: 2 })
    const a = m.entries.find(e => e.path === 'a.txt')!
    assert.equal(a.hash, fake, 'the cached hash must be used as-is')
    assert.equal(m.entries.find(e => e.path === 'd/x')!.hash, sha(CONTENT['d/x']))
    // consulted once per file, with the file's identity
    const files = m.entries.filter(e => e.type === 'file')
    assert.deepEqual(lookups.map(l => l[0]).sort(), files.map(e => e.path).sort())
    const st = await fsp.lstat(join(root, 'a.txt'), { bigint: true })
    assert.deepEqual(lookups.find(l => l[0] === 'a.txt'), ['a.txt', 6, 1_234_567_890, 500_000_000, Number(st.ino)])
    assert.ok(!stores.has('a.txt'))
    assert.equal(stores.get('d/x'), sha(CONTENT['d/x']))
    assert.equal(stores.size, files.length - 1)
    assert.notEqual(m.digest, digest, 'the fake hash is part of the digest')
  })

  test('deferHashMin: large files the cache does not know are left unhashed, kept, and cost no read', async () => {
    const fake = 'f'.repeat(64)
    const cache: HashCache = { lookup: (path) => path === 'a.txt' ? fake : undefined, store () {} }
    const m = await scanTree(root, { hash: true, hashCache: cache, deferHashMin: 3 })
    const files = m.entries.filter(e => e.type === 'file')
    assert.equal(files.length, entries.filter(e => e.type === 'file').length, 'deferred files stay in the manifest')
    for (const e of files) {
      if (e.path === 'a.txt') assert.equal(e.hash, fake, 'a cache hit is used, however large')
      else if (e.size >= 3) assert.equal(e.hash, undefined, `${e.path} (${e.size} B) deferred`)
      else assert.equal(e.hash, sha(CONTENT[e.path]), `${e.path} (${e.size} B) hashed`)
    }
    assert.ok(files.some(e => e.size < 3) && files.some(e => e.size >= 3 && e.path !== 'a.txt'), 'the tree has files on both sides of the limit')
  })

  test('throws NotADirectoryError for a file root', async () => {
    await assert.rejects(scanTree(join(root, 'a.txt'), { hash: true }), NotADirectoryError)
  })

  test('an empty root has no entries', async () => {
    const d = await freshDir('empty-root')
    const m = await scanTree(d, { hash: true })
    assert.deepEqual(m.entries, [])
    assert.match(m.digest, /^[0-9a-f]{64}$/)
  })

  test('an already aborted signal stops the scan', async () => {
    await assert.rejects(scanTree(root, { hash: true, signal: AbortSignal.abort() }), { name: 'AbortError' })
  })

  // Pre-1970 mtimes: st.mtimeNs is negative and BigInt division truncates towards zero,
  // giving mtimeNsec < 0, which checkManifestShape (and the wire schema) then rejects.
  test('a pre-1970 mtime gives a nanosecond part in 0..999_999_999', async () => {
    const d = await freshDir('pre-epoch')
    const p = join(d, 'old')
    await fsp.writeFile(p, 'old')
    execFileSync('touch', ['-m', '-d', '1969-12-31 23:59:58.5 UTC', p])
    const st = await fsp.lstat(p, { bigint: true })
    assert.equal(st.mtimeNs, -1_500_000_000n, 'filesystem keeps pre-epoch times')
    const m = await scanTree(d, { hash: true })
    const e = m.entries[0]
    assert.equal(e.mtime * 1e9 + e.mtimeNsec, -1_500_000_000)
    assert.ok(e.mtimeNsec >= 0 && e.mtimeNsec <= 999_999_999, `mtimeNsec ${e.mtimeNsec} out of range (mtime ${e.mtime})`)
    assert.doesNotThrow(() => checkManifestShape(m.entries))
  })
})

describe('hashEntries with many small files (the file worker hashes some)', () => {
  test('every hash right; a vanished file is a warning; a file that changed size is hashed as it is now', async () => {
    const dir = await freshDir('many-small')
    const n = 2600 // above the worker threshold
    const content = (i: number): string => `file ${i} `.repeat(1 + (i % 7))
    await Promise.all(Array.from({ length: 26 }, async (_, d) => {
      await fsp.mkdir(join(dir, `d${d}`))
      for (let i = d * 100; i < (d + 1) * 100 && i < n; i++) await fsp.writeFile(join(dir, `d${d}`, `f${i}`), content(i))
    }))
    const files: Entry[] = (await scanTree(dir, { hash: false, digest: false })).entries.filter(e => e.type === 'file')
    assert.equal(files.length, n)
    // between the scan and the hashing: one file vanishes, one grows
    const gone = files.find(e => e.path === 'd3/f300')!
    const grown = files.find(e => e.path === 'd25/f2599')!
    await fsp.rm(join(dir, gone.path))
    await fsp.appendFile(join(dir, grown.path), 'more')
    const warnings: string[] = []
    const { hashEntries } = await import('../../src/manifest/scan.js')
    await hashEntries(dir, files, { onWarning: (m) => { warnings.push(m) } })
    for (const e of files) {
      if (e === gone) { assert.equal(e.hash, undefined); continue }
      const i = Number(e.path.slice(e.path.lastIndexOf('f') + 1))
      assert.equal(e.hash, sha(content(i) + (e === grown ? 'more' : '')), e.path)
    }
    assert.deepEqual(warnings, ['cannot read d3/f300: ENOENT'])
  })
})
