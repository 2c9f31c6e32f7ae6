import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { FileTreeRecords, recordFor, scanFingerprint, type ScannedTree } from '../../src/sync/tree-record.js'
import { manifestDigest } from '../../src/manifest/digest.js'
import type { Entry, Manifest, RootMeta } from '../../src/manifest/types.js'

const H = 'c'.repeat(64)
const root: RootMeta = { mode: 0o755, mtime: 1_600_000_000, mtimeNsec: 5 }
const dir = (path: string): Entry => ({ path, type: 'dir', mode: 0o755, mtime: 1_600_000_001, mtimeNsec: 0, size: 0 })
const file = (path: string, size = 3): Entry => ({ path, type: 'file', mode: 0o644, mtime: 1_600_000_002, mtimeNsec: 7000, size, hash: H })
const link = (path: string, target: string): Entry => ({ path, type: 'symlink', mode: 0o777, mtime: 1_600_000_003, mtimeNsec: 0, size: 0, target })

const entries = [dir('d'), file('d/a'), link('d/l', 'a'), file('z', 10)]
const manifest: Manifest = { root, entries, digest: manifestDigest(root, entries) }
/** what a target's scan of that tree gives: no hashes, inodes */
const scanned = (es: Entry[] = entries, r: RootMeta = root): ScannedTree => ({ root: r, entries: es.map((e, i) => ({ ...e, hash: undefined, ino: 100 + i })) })

test('a scan equal to the manifest gives a record of the manifest digest', () => {
  const r = recordFor(manifest, scanned(), false)
  assert.ok(r != null)
  assert.equal(r.digest, manifest.digest)
  assert.equal(r.fingerprint, scanFingerprint(scanned()))
  assert.equal(r.exact, true)
})

test('no record for a scan that differs in anything a sync would change', () => {
  const cases: Array<[string, ScannedTree]> = [
    ['size', scanned([entries[0]!, file('d/a', 4), entries[2]!, entries[3]!])],
    ['mtime', scanned([entries[0]!, { ...file('d/a'), mtime: 1_600_000_009 }, entries[2]!, entries[3]!])],
    ['mode', scanned([entries[0]!, { ...file('d/a'), mode: 0o600 }, entries[2]!, entries[3]!])],
    ['symlink target', scanned([entries[0]!, entries[1]!, link('d/l', 'b'), entries[3]!])],
    ['missing entry', scanned([entries[0]!, entries[1]!, entries[3]!])],
    ['type', scanned([entries[0]!, entries[1]!, entries[2]!, { ...dir('z') }])],
    ['root mode', scanned(entries, { ...root, mode: 0o700 })],
    ['root mtime', scanned(entries, { ...root, mtime: root.mtime + 1 })],
    ['dir mtime', scanned([{ ...dir('d'), mtime: 1 }, entries[1]!, entries[2]!, entries[3]!])],
  ]
  for (const [what, s] of cases) assert.equal(recordFor(manifest, s, false), undefined, what)
})

test('owners count only when asked (the daemon runs as root)', () => {
  const owned = scanned(entries.map(e => ({ ...e, uid: 1, gid: 1 })))
  const m: Manifest = { ...manifest, entries: entries.map(e => ({ ...e, uid: 2, gid: 2 })) }
  assert.ok(recordFor(m, owned, false) != null)
  assert.equal(recordFor(m, owned, true), undefined)
})

test('extra entries: a record, but not exact (--delete would remove them)', () => {
  const r = recordFor(manifest, scanned([...entries.slice(0, 3), file('extra'), entries[3]!]), false)
  assert.ok(r != null)
  assert.equal(r.exact, false)
})

test('no record while a file hash is unknown (deferred and never learnt)', () => {
  const es = [entries[0]!, { ...file('d/a'), hash: undefined }, entries[2]!, entries[3]!]
  assert.equal(recordFor({ root, entries: es, digest: '' }, scanned(), false), undefined)
})

test('the fingerprint changes with an inode, a size, an mtime nanosecond, a path', () => {
  const base = scanFingerprint(scanned())
  const alter = (f: (e: Entry) => Entry) => scanFingerprint({ root, entries: scanned().entries.map((e, i) => i === 1 ? f(e) : e) })
  assert.notEqual(alter(e => ({ ...e, ino: 999 })), base)
  assert.notEqual(alter(e => ({ ...e, size: 4 })), base)
  assert.notEqual(alter(e => ({ ...e, mtimeNsec: e.mtimeNsec + 1 })), base)
  assert.notEqual(alter(e => ({ ...e, path: 'd/b' })), base)
  assert.notEqual(scanFingerprint({ ...scanned(), root: { ...root, mtimeNsec: 6 } }), base)
  assert.equal(scanFingerprint(scanned()), base)
})

test('records persist per destination; unreadable or foreign records are ignored', async () => {
  const home = await mkdtemp(join(tmpdir(), 'gs-trees-'))
  try {
    const dirPath = join(home, 'trees')
    const a = new FileTreeRecords(dirPath)
    const rec = { digest: 'a'.repeat(64), fingerprint: 'b'.repeat(64), exact: true }
    assert.equal(await a.get('/dst'), undefined)
    a.putLater('/dst', async () => rec)
    await a.get('/dst') // waits for the record being written
    const b = new FileTreeRecords(dirPath)
    assert.deepEqual(await b.get('/dst'), rec)
    assert.equal(await b.get('/other'), undefined)
    // putLater: a get that follows waits for the record being made
    b.putLater('/dst', async () => { await new Promise(resolve => setTimeout(resolve, 50)); return { ...rec, exact: false } })
    assert.equal((await b.get('/dst'))?.exact, false)
    // a compute that finds nothing to record keeps the old record
    b.putLater('/dst', async () => undefined)
    assert.equal((await b.get('/dst'))?.exact, false)
    // a damaged file is no record
    const [name] = await readdir(dirPath)
    await writeFile(join(dirPath, name!), '{"format":1,"dst":"/dst","digest":"zz"')
    assert.equal(await b.get('/dst'), undefined)
    await writeFile(join(dirPath, name!), JSON.stringify({ format: 1, dst: '/elsewhere', ...rec }))
    assert.equal(await b.get('/dst'), undefined, 'a record of another destination (hash clash) is ignored')
  } finally {
    await rm(home, { recursive: true, force: true })
  }
})

test('a record still being made is waited for briefly, then taken as none', async () => {
  const home = await mkdtemp(join(tmpdir(), 'gs-trees-'))
  try {
    const store = new FileTreeRecords(join(home, 'trees'))
    const rec = { digest: 'd'.repeat(64), fingerprint: 'e'.repeat(64), exact: true }
    let finish!: () => void
    store.putLater('/dst', async () => { await new Promise<void>(resolve => { finish = resolve }); return rec })
    const t0 = Date.now()
    // (the store's timer does not hold a process open; a daemon's event loop is alive anyway)
    const alive = setInterval(() => {}, 100)
    const got = await store.get('/dst').finally(() => { clearInterval(alive) })
    assert.equal(got, undefined, 'a session does not wait for a long rescan')
    const waited = Date.now() - t0
    assert.ok(waited >= 900 && waited < 5000, `waited ${waited} ms`)
    finish()
    assert.deepEqual(await store.get('/dst'), rec)
  } finally {
    await rm(home, { recursive: true, force: true })
  }
})
