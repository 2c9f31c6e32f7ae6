// The source's check that a file read for sending is still the one its scan described.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as fsp from 'node:fs/promises'
import { closeSync, openSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { scanTree } from '../../src/manifest/scan.js'
import { fdChangeSinceScan } from '../../src/fs/changed-since-scan.js'
import { readSmallFileSync } from '../../src/fs/read-small.js'
import { hashAsScanned } from '../../src/manifest/hash.js'
import { createHash } from 'node:crypto'
import type { Entry } from '../../src/manifest/types.js'

let root: string
before(async () => { root = await fsp.mkdtemp(join(tmpdir(), 'gosync-changed-')) })
after(async () => { await fsp.rm(root, { recursive: true, force: true }) })

async function scanned (dir: string): Promise<Map<string, Entry>> {
  const m = await scanTree(dir, { hash: false })
  return new Map(m.entries.map(e => [e.path, e]))
}

function changeOf (dir: string, e: Entry): string | undefined {
  const fd = openSync(join(dir, e.path), 'r')
  try { return fdChangeSinceScan(fd, e) } finally { closeSync(fd) }
}

test('an untouched file is unchanged, whatever its times (no false alarm from rounding)', async () => {
  const dir = await fsp.mkdtemp(join(root, 'same-'))
  // fresh nanosecond times from the kernel, and times set by hand (fractions, before 1970, far ahead)
  const times = [undefined, 1_234_567_890.123456, 0.000001, -86_400.5, 4_102_444_800.999999, 1_700_000_000]
  for (let i = 0; i < 300; i++) {
    const p = join(dir, `f${i}`)
    await fsp.writeFile(p, 'x'.repeat(i))
    const t = times[i % times.length]
    if (t !== undefined) await fsp.utimes(p, t, t)
  }
  const entries = await scanned(dir)
  assert.equal(entries.size, 300)
  for (const e of entries.values()) assert.equal(changeOf(dir, e), undefined, e.path)
})

test('a write, a grown file, a chmod and a replaced file are each seen', async () => {
  const dir = await fsp.mkdtemp(join(root, 'changed-'))
  for (const n of ['written', 'grown', 'touched', 'chmod', 'replaced']) {
    await fsp.writeFile(join(dir, n), 'original content')
    await fsp.utimes(join(dir, n), 1_600_000_000, 1_600_000_000)
  }
  const entries = await scanned(dir)
  const e = (n: string): Entry => entries.get(n)!
  // an in-place write of the same size, the mtime put back as it was: the ctime tells
  const fh = await fsp.open(join(dir, 'written'), 'r+')
  await fh.write('ORIGINAL', 0)
  await fh.close()
  await fsp.utimes(join(dir, 'written'), 1_600_000_000, 1_600_000_000)
  assert.equal(changeOf(dir, e('written')), 'changed since the scan: ctime')
  await fsp.appendFile(join(dir, 'grown'), '!')
  assert.equal(changeOf(dir, e('grown')), 'changed since the scan: size 16 → 17')
  await fsp.utimes(join(dir, 'touched'), 1_600_000_001, 1_600_000_001)
  assert.equal(changeOf(dir, e('touched')), 'changed since the scan: mtime')
  await fsp.chmod(join(dir, 'chmod'), 0o600)
  assert.equal(changeOf(dir, e('chmod')), 'changed since the scan: ctime')
  // replaced by a rename, same size and mtime: the inode tells (the ctime would too; left out to see it)
  await fsp.writeFile(join(dir, 'new'), 'ORIGINAL content')
  await fsp.utimes(join(dir, 'new'), 1_600_000_000, 1_600_000_000)
  await fsp.rename(join(dir, 'new'), join(dir, 'replaced'))
  assert.equal(changeOf(dir, { ...e('replaced'), ctimeMs: undefined }), 'changed since the scan: replaced (inode)')
})

test('reading a small file for sending fails with the change', async () => {
  const dir = await fsp.mkdtemp(join(root, 'read-'))
  await fsp.writeFile(join(dir, 'a'), 'abc')
  const e = (await scanned(dir)).get('a')!
  assert.deepEqual(readSmallFileSync(join(dir, 'a'), 3, e), Buffer.from('abc'))
  await fsp.utimes(join(dir, 'a'), 1, 1)
  const r = readSmallFileSync(join(dir, 'a'), 3, e)
  assert.ok(r instanceof Error)
  assert.equal(r.message, 'changed since the scan: mtime')
  // without a scan to compare with, only the size is checked
  assert.deepEqual(readSmallFileSync(join(dir, 'a'), 3), Buffer.from('abc'))
})

test('hashing a scanned file (to answer a target that has it) refuses one that changed since', async () => {
  const dir = await fsp.mkdtemp(join(root, 'hash-'))
  const big = Buffer.alloc(3 * 1024 * 1024, 7)
  await fsp.writeFile(join(dir, 'big'), big)
  await fsp.writeFile(join(dir, 'small'), 'small')
  const entries = await scanned(dir)
  const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')
  assert.equal(await hashAsScanned(join(dir, 'big'), entries.get('big')!), sha(big))
  assert.equal(await hashAsScanned(join(dir, 'small'), entries.get('small')!), sha('small'))
  // same size, other bytes, the mtime put back: it would be filed under the scan's metadata
  for (const name of ['big', 'small']) {
    const fh = await fsp.open(join(dir, name), 'r+')
    await fh.write('X', 1)
    await fh.close()
    const e = entries.get(name)!
    await fsp.utimes(join(dir, name), e.mtime + e.mtimeNsec / 1e9, e.mtime + e.mtimeNsec / 1e9)
    await assert.rejects(hashAsScanned(join(dir, name), e), /changed since the scan/, name)
  }
})
