import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as fsp from 'node:fs/promises'
import { constants, openSync, closeSync, writeSync, unlinkSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AtomicFileWriter, HashMismatchError, partialPathFor } from '../../src/fs/atomic-writer.js'
import { DIRECT_ALIGN, DIRECT_IO_MIN, setDirectIo } from '../../src/fs/direct-io.js'
import { LargeFileReader } from '../../src/fs/large-file-reader.js'
import { TEMP_PREFIX } from '../../src/manifest/scan.js'
import type { Entry } from '../../src/manifest/types.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

function entryFor (path: string, content: Uint8Array, o: Partial<Entry> = {}): Entry {
  return { path, type: 'file', mode: 0o640, mtime: 1_700_000_000, mtimeNsec: 5, size: content.byteLength, hash: sha(content), ...o }
}

let base: string
let n = 0
before(async () => { base = await fsp.mkdtemp(join(tmpdir(), 'gosync-direct-')) })
after(async () => { setDirectIo(true); await fsp.rm(base, { recursive: true, force: true }) })
async function freshDir (): Promise<string> {
  const d = join(base, `d${n++}`)
  await fsp.mkdir(d)
  return d
}

/** Whether this directory's file system takes O_DIRECT writes (checked here, not by the code under test). */
function takesDirect (dir: string): boolean {
  const p = join(dir, 'probe')
  let fd: number | undefined
  try {
    fd = openSync(p, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600)
    writeSync(fd, new Uint8Array(new WebAssembly.Memory({ initial: 1 }).buffer, 0, 4096), 0, 4096, 0)
    return true
  } catch {
    return false
  } finally {
    if (fd != null) closeSync(fd)
    try { unlinkSync(p) } catch {}
  }
}

/** Whether one of our temp files in `dir` is open with O_DIRECT (/proc shows the flags in octal). */
async function openWithDirect (dir: string): Promise<boolean> {
  for (const fd of await fsp.readdir('/proc/self/fd')) {
    const target = await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '')
    if (!target.startsWith(join(dir, TEMP_PREFIX))) continue
    const info = await fsp.readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '')
    const flags = parseInt(/flags:\s*(\d+)/.exec(info)?.[1] ?? '0', 8)
    if ((flags & constants.O_DIRECT) !== 0) return true
  }
  return false
}

/** `content` in pieces of random sizes (1 byte to 300 KiB), as the network delivers it. */
function* pieces (content: Uint8Array): Generator<Uint8Array> {
  let at = 0
  while (at < content.byteLength) {
    const len = Math.min(content.byteLength - at, 1 + Math.floor(Math.random() * 300 * 1024))
    yield content.subarray(at, at + len)
    at += len
  }
}

describe('large files with O_DIRECT', () => {
  const size = DIRECT_IO_MIN + 3 * 1024 * 1024 + 12345 // not a multiple of the block or the slot
  const content = randomBytes(size)

  test('a file of odd size, in odd pieces: byte for byte, mode and mtime, written with O_DIRECT where the file system takes it', async () => {
    const dir = await freshDir()
    const final = join(dir, 'big.bin')
    const w = await AtomicFileWriter.create(final, entryFor('big.bin', content))
    assert.equal(await openWithDirect(dir), takesDirect(dir), 'O_DIRECT used exactly where the file system supports it')
    const writes: Array<Promise<void>> = []
    let pos = 0
    for (const p of pieces(content)) { writes.push(w.writeAt([p], pos)); pos += p.byteLength }
    await Promise.all(writes)
    assert.equal(await fsp.stat(final).then(() => true, () => false), false, 'nothing at the final path before commit')
    await w.commit()
    const got = await fsp.readFile(final)
    assert.equal(got.byteLength, size)
    assert.ok(got.equals(content), 'content differs')
    const st = await fsp.stat(final)
    assert.equal(st.mode & 0o7777, 0o640)
    assert.equal(Math.floor(st.mtimeMs / 1000), 1_700_000_000)
    assert.deepEqual((await fsp.readdir(dir)).filter(f => f.startsWith(TEMP_PREFIX)), [])
  })

  test('one byte wrong: the hash check refuses it, no file at the final path, no temp file left', async () => {
    const dir = await freshDir()
    const final = join(dir, 'big.bin')
    const bad = Buffer.from(content)
    bad[DIRECT_IO_MIN - 1] ^= 1
    const w = await AtomicFileWriter.create(final, entryFor('big.bin', content))
    let pos = 0
    for (const p of pieces(bad)) { await w.writeAt([p], pos); pos += p.byteLength }
    await assert.rejects(w.commit(), HashMismatchError)
    assert.deepEqual(await fsp.readdir(dir), [])
  })

  test('a part kept at an unaligned length is exactly the bytes received, and resumes to the whole file', async () => {
    const dir = await freshDir()
    const final = join(dir, 'big.bin')
    const e = entryFor('big.bin', content)
    const w = await AtomicFileWriter.create(final, e)
    const cut = 2 * 1024 * 1024 + 777
    await w.writeAt([content.subarray(0, cut)], 0)
    await w.keepPartial()
    const part = await fsp.readFile(partialPathFor(final, e))
    assert.equal(part.byteLength, cut)
    assert.ok(part.equals(content.subarray(0, cut)))
    const r = await AtomicFileWriter.resume(final, e, cut)
    await r.writeAt([content.subarray(cut)], cut)
    await r.commit()
    assert.ok((await fsp.readFile(final)).equals(content))
    assert.deepEqual(await fsp.readdir(dir), ['big.bin'])
  })

  test('bytes out of order are refused, not written at the wrong place', async () => {
    const dir = await freshDir()
    const w = await AtomicFileWriter.create(join(dir, 'big.bin'), entryFor('big.bin', content))
    await w.writeAt([content.subarray(0, 1000)], 0)
    await assert.rejects(w.writeAt([content.subarray(2000, 3000)], 2000), /out of order/)
    await w.abort()
    assert.deepEqual(await fsp.readdir(dir), [])
  })

  test('--no-direct-io: the same file through the page cache', async () => {
    setDirectIo(false)
    try {
      const dir = await freshDir()
      const final = join(dir, 'big.bin')
      const w = await AtomicFileWriter.create(final, entryFor('big.bin', content))
      assert.equal(await openWithDirect(dir), false)
      let pos = 0
      for (const p of pieces(content)) { await w.writeAt([p], pos); pos += p.byteLength }
      await w.commit()
      assert.ok((await fsp.readFile(final)).equals(content))
    } finally {
      setDirectIo(true)
    }
  })

  test('several direct files at once share the staging buffers without mixing bytes', async () => {
    const dir = await freshDir()
    const files = [0, 1, 2].map(i => { const c = randomBytes(DIRECT_IO_MIN + i * DIRECT_ALIGN + 1); return { c, e: entryFor(`f${i}`, c) } })
    const writers = await Promise.all(files.map(async f => await AtomicFileWriter.create(join(dir, f.e.path), f.e)))
    const its = files.map(f => pieces(f.c))
    const pos = [0, 0, 0]
    for (let done = 0; done < 3;) {
      done = 0
      for (let i = 0; i < 3; i++) {
        const next = its[i].next()
        if (next.done === true) { done++; continue }
        await writers[i].writeAt([next.value], pos[i])
        pos[i] += next.value.byteLength
      }
    }
    await Promise.all(writers.map(async w => { await w.commit() }))
    for (const f of files) assert.ok((await fsp.readFile(join(dir, f.e.path))).equals(f.c), f.e.path)
  })
})

describe('large files where O_DIRECT cannot be used or slots are scarce', () => {
  test('a file system that refuses O_DIRECT (ramfs): the file is written buffered, whole, no temp file left', async (t) => {
    const dir = await freshDir()
    const m = spawnSync('mount', ['-t', 'ramfs', 'ramfs', dir], { encoding: 'utf8' })
    if (m.status !== 0) return t.skip(`cannot mount a ramfs here: ${(m.stderr ?? '').trim()}`)
    try {
      if (takesDirect(dir)) return t.skip('this ramfs takes O_DIRECT')
      const content = randomBytes(DIRECT_IO_MIN + 5)
      const final = join(dir, 'big.bin')
      const w = await AtomicFileWriter.create(final, entryFor('big.bin', content))
      let pos = 0
      for (const p of pieces(content)) { await w.writeAt([p], pos); pos += p.byteLength }
      await w.commit()
      assert.ok((await fsp.readFile(final)).equals(content))
      assert.deepEqual(await fsp.readdir(dir), ['big.bin'])
    } finally {
      spawnSync('umount', ['-l', dir])
    }
  })

  test('more direct files than shared slots, each holding a half-filled slot: none waits for another', async () => {
    const dir = await freshDir()
    // six files (more than the 4 shared slots), each given half a slot, then the rest: with
    // only the shared slots the fifth file's first write would wait for ever
    const files = Array.from({ length: 6 }, (_, i) => { const c = randomBytes(DIRECT_IO_MIN + i); return { c, e: entryFor(`f${i}`, c) } })
    const writers = await Promise.all(files.map(async f => await AtomicFileWriter.create(join(dir, f.e.path), f.e)))
    const half = 512 * 1024
    const within = async (p: Promise<void>, what: string): Promise<void> => {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what} waited for a slot`)) }, 5000) })
      try { await Promise.race([p, late]) } finally { clearTimeout(timer) }
    }
    for (const [i, w] of writers.entries()) await within(w.writeAt([files[i].c.subarray(0, half)], 0), `file ${i}`)
    for (const [i, w] of writers.entries()) await within(w.writeAt([files[i].c.subarray(half)], half), `the rest of file ${i}`)
    await Promise.all(writers.map(async w => { await w.commit() }))
    for (const f of files) assert.ok((await fsp.readFile(join(dir, f.e.path))).equals(f.c), f.e.path)
  })
})

describe('LargeFileReader', () => {
  test('reads in frames and hashes the whole file, a resumed prefix included', async () => {
    const dir = await freshDir()
    const content = randomBytes(5 * 1024 * 1024 + 99)
    const p = join(dir, 'src.bin')
    await fsp.writeFile(p, content)
    for (const from of [0, 1024 * 1024 + 3]) {
      const r = await LargeFileReader.open(p, from)
      const got: Buffer[] = []
      for (let at = from; at < content.byteLength;) {
        const b = await r.read(at, Math.min(512 * 1024, content.byteLength - at))
        assert.ok(b.byteLength > 0)
        got.push(b)
        at += b.byteLength
      }
      assert.ok(Buffer.concat(got).equals(content.subarray(from)))
      assert.equal(await r.close(), sha(content))
    }
    // without hashing: no digest
    const r = await LargeFileReader.open(p)
    assert.equal((await r.read(0, 10)).byteLength, 10)
    assert.equal(await r.close(), undefined)
  })

  test('a file that shrank: short reads, then none', async () => {
    const dir = await freshDir()
    const p = join(dir, 'src.bin')
    await fsp.writeFile(p, randomBytes(3000))
    const r = await LargeFileReader.open(p, 0)
    await fsp.truncate(p, 1000)
    assert.equal((await r.read(0, 3000)).byteLength, 1000)
    assert.equal((await r.read(1000, 2000)).byteLength, 0)
    await r.close()
  })

  test('refuses a symlink', async () => {
    const dir = await freshDir()
    await fsp.writeFile(join(dir, 'real'), 'x')
    await fsp.symlink(join(dir, 'real'), join(dir, 'link'))
    await assert.rejects(LargeFileReader.open(join(dir, 'link'), 0), /ELOOP|symbolic link/)
  })
})
