import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { FileHashCache } from '../../src/manifest/hash-cache-file.js'
import { scanTree } from '../../src/manifest/scan.js'

const H = 'a'.repeat(64)
const OLD = 1_600_000_000 // an mtime long before any scan

test('stored hashes survive a reload and match only the same size, mtime and inode', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gs-hc-'))
  try {
    const c = await FileHashCache.load(dir, '/src')
    c.store('f', 10, OLD, 5, 77, H)
    await c.save('/src')
    const d = await FileHashCache.load(dir, '/src')
    assert.equal(d.lookup('f', 10, OLD, 5, 77), H)
    assert.equal(d.lookup('f', 11, OLD, 5, 77), undefined, 'size differs')
    assert.equal(d.lookup('f', 10, OLD, 6, 77), undefined, 'mtime differs')
    assert.equal(d.lookup('f', 10, OLD, 5, 78), undefined, 'inode differs')
    assert.equal(d.lookup('g', 10, OLD, 5, 77), undefined)
    assert.equal((await FileHashCache.load(dir, '/other')).lookup('f', 10, OLD, 5, 77), undefined, 'per root')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a file modified just now is not cached (it could change again within the same timestamp)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gs-hc-'))
  try {
    const c = await FileHashCache.load(dir, '/src')
    c.store('fresh', 1, Math.floor(Date.now() / 1000), 0, 1, H)
    await c.save('/src')
    assert.equal((await FileHashCache.load(dir, '/src')).lookup('fresh', 1, Math.floor(Date.now() / 1000), 0, 1), undefined)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('the racy window is exact to the nanosecond: 1 ns older than scan start - 2 s is cached, the limit itself is not', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gs-hc-'))
  try {
    const before = BigInt(Date.now()) * 1_000_000n
    const c = await FileHashCache.load(dir, '/src')
    const after = BigInt(Date.now()) * 1_000_000n
    const split = (ns: bigint): [number, number] => [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)]
    // the limit lies in [before - 2 s, after - 2 s]; pick nanoseconds inside a second, not 0
    const [oldSec, oldNsec] = split(before - 2_000_000_000n - 1n)
    const [newSec, newNsec] = split(after - 2_000_000_000n)
    c.store('old', 1, oldSec, oldNsec, 1, H)
    c.store('new', 1, newSec, newNsec, 1, H)
    await c.save('/src')
    const d = await FileHashCache.load(dir, '/src')
    assert.equal(d.lookup('old', 1, oldSec, oldNsec, 1), H)
    assert.equal(d.lookup('new', 1, newSec, newNsec, 1), undefined)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('scanTree uses the cache: an unchanged tree is not re-read, a changed file is', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gs-hc-'))
  const root = join(dir, 'tree')
  const cdir = join(dir, 'cache')
  try {
    await mkdir(root)
    await writeFile(join(root, 'a'), 'one')
    await writeFile(join(root, 'b'), 'two')
    await utimes(join(root, 'a'), OLD, OLD)
    await utimes(join(root, 'b'), OLD, OLD)
    const c1 = await FileHashCache.load(cdir, root)
    const m1 = await scanTree(root, { hash: true, hashCache: c1 })
    await c1.save(root)
    assert.equal(c1.misses, 2)
    const c2 = await FileHashCache.load(cdir, root)
    const m2 = await scanTree(root, { hash: true, hashCache: c2 })
    assert.equal(c2.hits, 2)
    assert.equal(m2.digest, m1.digest)
    await writeFile(join(root, 'b'), 'TWO')
    await utimes(join(root, 'b'), OLD + 5, OLD + 5)
    const c3 = await FileHashCache.load(cdir, root)
    const m3 = await scanTree(root, { hash: true, hashCache: c3 })
    assert.equal(c3.hits, 1)
    assert.notEqual(m3.entries.find(e => e.path === 'b')!.hash, m1.entries.find(e => e.path === 'b')!.hash)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('saves of one cache run in the order they were started, and a load waits for them', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gs-hc-'))
  try {
    // two tasks over the same root: the first one's last save is still running (not awaited,
    // as a daemon runs it after its report) when the second one starts
    const a = await FileHashCache.load(dir, '/src')
    const b = await FileHashCache.load(dir, '/src')
    b.store('from-b', 1, OLD, 0, 1, H)
    a.store('from-a', 2, OLD, 0, 2, H)
    const savedB = b.save('/src')
    const savedA = a.save('/src') // started last: its rows are what the file keeps
    const next = await FileHashCache.load(dir, '/src')
    assert.equal(next.lookup('from-a', 2, OLD, 0, 2), H, 'the load saw the save started before it')
    assert.equal(next.lookup('from-b', 1, OLD, 0, 1), undefined, 'the later save replaced the earlier one')
    await Promise.all([savedA, savedB])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
