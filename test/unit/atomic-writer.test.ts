import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as fsp from 'node:fs/promises'
import { readdirSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AtomicFileWriter, HashMismatchError, tempNameIn } from '../../src/fs/atomic-writer.js'
import { FileSink, SequenceError } from '../../src/sync/file-sink.js'
import { SmallFileBatch } from '../../src/fs/small-file-batch.js'
import { FILE_LANES, fileLanesRunning, stopFileLane } from '../../src/fs/file-worker.js'
import { DestinationRoot, UnsafePathError } from '../../src/fs/safe-path.js'
import { InvalidPathError } from '../../src/manifest/paths.js'
import { TEMP_PREFIX } from '../../src/manifest/scan.js'
import type { Entry } from '../../src/manifest/types.js'

const enc = new TextEncoder()
const sha = (s: string | Uint8Array): string => createHash('sha256').update(s).digest('hex')
const T = 1_234_567_890
const NSEC = 123_456_789

function fileEntry (path: string, content: string, o: Partial<Entry> = {}): Entry {
  return { path, type: 'file', mode: 0o640, mtime: T, mtimeNsec: NSEC, size: Buffer.byteLength(content), hash: sha(content), ...o }
}

let base: string
let n = 0
before(async () => { base = await fsp.mkdtemp(join(tmpdir(), 'gosync-writer-')) })
after(async () => { await fsp.rm(base, { recursive: true, force: true }) })
async function freshDir (): Promise<string> {
  const d = join(base, `d${n++}`)
  await fsp.mkdir(d)
  return d
}

/** All names below `dir`, recursively, as relative paths. */
async function listAll (dir: string): Promise<string[]> {
  return (await fsp.readdir(dir, { recursive: true })).map(String).sort()
}
async function tempLeftovers (dir: string): Promise<string[]> {
  return (await listAll(dir)).filter(p => p.split('/').some(s => s.startsWith(TEMP_PREFIX)))
}
async function exists (p: string): Promise<boolean> {
  return await fsp.lstat(p).then(() => true, () => false)
}
function assertMtime (st: { mtimeNs: bigint }, mtime: number, nsec: number): void {
  const want = BigInt(mtime) * 1_000_000_000n + BigInt(nsec)
  const diff = st.mtimeNs - want
  assert.ok(diff > -2000n && diff < 2000n, `mtime ${st.mtimeNs} differs from ${want} by ${diff} ns`)
}

describe('AtomicFileWriter', () => {
  test('the file appears only after commit, with the manifest\'s mode and mtime', async () => {
    const dir = await freshDir()
    const final = join(dir, 'f.txt')
    const content = 'hello atomic world'
    const w = await AtomicFileWriter.create(final, fileEntry('f.txt', content))
    assert.ok(w.tempPath.startsWith(join(dir, TEMP_PREFIX)))
    await w.write(enc.encode(content.slice(0, 5)))
    assert.equal(w.complete, false)
    await w.write(enc.encode(content.slice(5)))
    assert.equal(w.bytesWritten, content.length)
    assert.equal(w.complete, true)
    assert.equal(await exists(final), false, 'nothing at the final path before commit')
    assert.equal((await tempLeftovers(dir)).length, 1)
    await w.commit()
    assert.equal(await fsp.readFile(final, 'utf8'), content)
    const st = await fsp.stat(final, { bigint: true })
    assert.equal(Number(st.mode) & 0o7777, 0o640)
    assertMtime(st, T, NSEC)
    assert.deepEqual(await listAll(dir), ['f.txt'])
  })

  test('commit replaces an existing file atomically and keeps special mode bits', async () => {
    const dir = await freshDir()
    const final = join(dir, 'f')
    await fsp.writeFile(final, 'old content that is longer')
    const w = await AtomicFileWriter.create(final, fileEntry('f', 'new', { mode: 0o2755 }))
    await w.write(enc.encode('new'))
    assert.equal(await fsp.readFile(final, 'utf8'), 'old content that is longer')
    await w.commit()
    assert.equal(await fsp.readFile(final, 'utf8'), 'new')
    assert.equal((await fsp.stat(final)).mode & 0o7777, 0o2755)
  })

  test('an empty file', async () => {
    const dir = await freshDir()
    const w = await AtomicFileWriter.create(join(dir, 'e'), fileEntry('e', '', { mode: 0o600 }))
    await w.commit()
    assert.equal((await fsp.stat(join(dir, 'e'))).size, 0)
    assert.deepEqual(await listAll(dir), ['e'])
  })

  test('a wrong hash leaves no file and no temp file', async () => {
    const dir = await freshDir()
    const final = join(dir, 'f')
    const w = await AtomicFileWriter.create(final, fileEntry('f', 'expected'))
    await w.write(enc.encode('EXPECTED'))
    await assert.rejects(w.commit(), HashMismatchError)
    assert.equal(await exists(final), false)
    assert.deepEqual(await listAll(dir), [])
  })

  test('a wrong hash leaves an existing file untouched', async () => {
    const dir = await freshDir()
    const final = join(dir, 'f')
    await fsp.writeFile(final, 'previous')
    const w = await AtomicFileWriter.create(final, fileEntry('f', 'expected'))
    await w.write(enc.encode('EXPECTED'))
    await assert.rejects(w.commit(), HashMismatchError)
    assert.equal(await fsp.readFile(final, 'utf8'), 'previous')
    assert.deepEqual(await listAll(dir), ['f'])
  })

  test('too few bytes fail the commit; too many fail the write', async () => {
    const dir = await freshDir()
    const short = await AtomicFileWriter.create(join(dir, 's'), fileEntry('s', 'abcdef'))
    await short.write(enc.encode('abc'))
    await assert.rejects(short.commit(), HashMismatchError)
    const long = await AtomicFileWriter.create(join(dir, 'l'), fileEntry('l', 'abc'))
    await long.write(enc.encode('ab'))
    await assert.rejects(long.write(enc.encode('cd')), HashMismatchError)
    assert.equal(long.bytesWritten, 2)
    await long.abort()
    assert.deepEqual(await listAll(dir), [])
  })

  test('abort removes the temp file', async () => {
    const dir = await freshDir()
    const w = await AtomicFileWriter.create(join(dir, 'f'), fileEntry('f', 'abc'))
    await w.write(enc.encode('ab'))
    await w.abort()
    await w.abort() // idempotent
    assert.deepEqual(await listAll(dir), [])
  })

  test('temp names are unique and hidden from scans', async () => {
    const a = tempNameIn('/x')
    const b = tempNameIn('/x')
    assert.notEqual(a, b)
    assert.ok(a.startsWith('/x/' + TEMP_PREFIX))
  })

  // Node's utimes() replaces any negative number of seconds with the current time, so a
  // manifest mtime before 1970 (valid per checkManifestShape) is silently not applied.
  test('a pre-1970 mtime is applied', async () => {
    const dir = await freshDir()
    const final = join(dir, 'old')
    const w = await AtomicFileWriter.create(final, fileEntry('old', 'x', { mtime: -2, mtimeNsec: 500_000_000 }))
    await w.write(enc.encode('x'))
    await w.commit()
    assertMtime(await fsp.stat(final, { bigint: true }), -2, 500_000_000)
  })
})

describe('DestinationRoot', () => {
  let dst: string
  let outside: string
  before(async () => {
    dst = await freshDir()
    outside = await freshDir()
    await fsp.mkdir(join(dst, 'real/sub'), { recursive: true })
    await fsp.writeFile(join(dst, 'file'), 'x')
    await fsp.symlink(outside, join(dst, 'evil'))
    await fsp.symlink(outside, join(dst, 'real/evil'))
    await fsp.symlink('real', join(dst, 'relative-link'))
  })

  test('resolves paths below real directories', async () => {
    const r = new DestinationRoot(dst)
    assert.equal(await r.resolve('top'), join(dst, 'top'))
    assert.equal(await r.resolve('real/x'), join(dst, 'real/x'))
    assert.equal(await r.resolve('real/sub/x'), join(dst, 'real/sub/x'))
    // the last segment is not checked: callers never follow it
    assert.equal(await r.resolve('evil'), join(dst, 'evil'))
  })

  test('refuses a path whose parent is a symlink to outside', async () => {
    const r = new DestinationRoot(dst)
    await assert.rejects(r.resolve('evil/x'), UnsafePathError)
    await assert.rejects(r.resolve('evil/a/b'), UnsafePathError)
    await assert.rejects(r.resolve('real/evil/x'), UnsafePathError)
    await assert.rejects(r.resolve('relative-link/x'), UnsafePathError, 'even a symlink that stays inside')
  })

  test('refuses a path whose parent is a file or missing', async () => {
    const r = new DestinationRoot(dst)
    await assert.rejects(r.resolve('file/x'), UnsafePathError)
    await assert.rejects(r.resolve('missing/x'), /missing/)
    await assert.rejects(r.resolve('real/missing/x'), UnsafePathError)
  })

  test('invalid relative paths are refused before touching the disk', async () => {
    const r = new DestinationRoot(dst)
    for (const p of ['../x', '/etc/passwd', 'real/../../x', 'a//b', '', 'real/']) {
      await assert.rejects(r.resolve(p), InvalidPathError, p)
    }
  })

  test('checked directories are remembered until forget()', async () => {
    const d = await freshDir()
    await fsp.mkdir(join(d, 'a/b'), { recursive: true })
    const r = new DestinationRoot(d)
    await r.resolve('a/b/x')
    // replace a/b with a symlink behind the resolver's back
    await fsp.rm(join(d, 'a/b'), { recursive: true })
    await fsp.symlink(outside, join(d, 'a/b'))
    assert.equal(await r.resolve('a/b/x'), join(d, 'a/b/x'), 'cached for the session')
    r.forget('a')
    await assert.rejects(r.resolve('a/b/x'), UnsafePathError)
    assert.deepEqual(await listAll(outside), [])
  })
})

describe('FileSink', () => {
  const contents = ['', 'first file', '', 'third, in d', 'fourth']
  // index 0 is the dir 'd'; files 1..4
  const entries: Entry[] = [
    { path: 'd', type: 'dir', mode: 0o755, mtime: T, mtimeNsec: 0, size: 0 },
    fileEntry('a', contents[1], { mode: 0o600 }),
    fileEntry('b-empty', ''),
    fileEntry('d/c', contents[3], { mode: 0o755, mtime: T + 1, mtimeNsec: 0 }),
    fileEntry('e', contents[4])
  ]

  async function sinkIn (files = [1, 2, 3, 4], es = entries): Promise<{ dir: string, sink: FileSink }> {
    const dir = await freshDir()
    await fsp.mkdir(join(dir, 'd'))
    return { dir, sink: new FileSink(new DestinationRoot(dir), es, files) }
  }

  test('stores every file of the class in order', async () => {
    const { dir, sink } = await sinkIn()
    await sink.begin(1, 0)
    await sink.data(enc.encode('first '))
    assert.equal(await exists(join(dir, 'a')), false)
    await sink.data(enc.encode('file'))
    await sink.begin(2, 0) // empty: complete at once
    await sink.begin(3, 0)
    await sink.data(enc.encode(contents[3]))
    await sink.begin(4, 0)
    await sink.data(enc.encode(contents[4]))
    // commits (verify, fsync, rename) run in the background; end() waits for all of them
    const r = await sink.end()
    assert.equal(await fsp.readFile(join(dir, 'a'), 'utf8'), 'first file')
    assert.deepEqual(r, { files: 4, bytes: 10 + 11 + 6, failures: [], moreFailures: 0 })
    assert.equal(sink.filesDone, 4)
    assert.equal(sink.bytesDone, 27)
    assert.deepEqual(await listAll(dir), ['a', 'b-empty', 'd', 'd/c', 'e'])
    assert.equal((await fsp.stat(join(dir, 'a'))).mode & 0o7777, 0o600)
    assert.equal((await fsp.stat(join(dir, 'd/c'))).mode & 0o7777, 0o755)
    assertMtime(await fsp.stat(join(dir, 'd/c'), { bigint: true }), T + 1, 0)
    assertMtime(await fsp.stat(join(dir, 'a'), { bigint: true }), T, NSEC)
    assert.equal(await fsp.readFile(join(dir, 'd/c'), 'utf8'), contents[3])
  })

  test('a wrong hash costs that file only: no file, no temp leftovers', async () => {
    const bad = [...entries]
    bad[1] = { ...entries[1], hash: sha('something else') }
    const { dir, sink } = await sinkIn([1, 4], bad)
    await sink.begin(1, 0)
    await sink.data(enc.encode(contents[1]))
    await sink.begin(4, 0)
    await sink.data(enc.encode(contents[4]))
    const r = await sink.end()
    assert.equal(r.files, 1)
    assert.equal(r.failures.length, 1)
    assert.match(r.failures[0], /^a: .*SHA-256/)
    assert.equal(await exists(join(dir, 'a')), false)
    assert.deepEqual(await tempLeftovers(dir), [])
    assert.deepEqual(await listAll(dir), ['d', 'e'])
  })

  test('BEGIN of an unexpected index is a SequenceError', async () => {
    const { sink } = await sinkIn()
    await assert.rejects(sink.begin(3, 0), SequenceError)
    await assert.rejects(sink.begin(0, 0), SequenceError)
    await assert.rejects(sink.begin(99, 0), SequenceError)
  })

  test('BEGIN at a non-zero offset is a SequenceError', async () => {
    const { sink } = await sinkIn()
    await assert.rejects(sink.begin(1, 5), SequenceError)
  })

  test('BEGIN while a file is open is a SequenceError', async () => {
    const { dir, sink } = await sinkIn()
    await sink.begin(1, 0)
    await sink.data(enc.encode('first'))
    await assert.rejects(sink.begin(2, 0), SequenceError)
    await sink.abort()
    assert.deepEqual(await tempLeftovers(dir), [])
  })

  test('BEGIN after the last file is a SequenceError', async () => {
    const { sink } = await sinkIn([2])
    await sink.begin(2, 0)
    await assert.rejects(sink.begin(2, 0), SequenceError)
    await assert.rejects(sink.begin(3, 0), SequenceError)
  })

  test('DATA past the size is a SequenceError, and abort cleans up', async () => {
    const { dir, sink } = await sinkIn()
    await sink.begin(1, 0)
    await sink.data(enc.encode('first'))
    await assert.rejects(sink.data(enc.encode(' file and more')), SequenceError)
    await sink.abort()
    assert.deepEqual(await tempLeftovers(dir), [])
    assert.equal(await exists(join(dir, 'a')), false)
  })

  test('DATA outside a file is a SequenceError', async () => {
    const { sink } = await sinkIn([2, 1])
    await assert.rejects(sink.data(enc.encode('x')), SequenceError)
    await sink.begin(2, 0) // empty file, already complete
    await assert.rejects(sink.data(enc.encode('x')), SequenceError)
  })

  test('END early is a SequenceError (mid-file, and with files missing)', async () => {
    const { dir, sink } = await sinkIn()
    await assert.rejects(sink.end(), SequenceError)
    await sink.begin(1, 0)
    await sink.data(enc.encode('fir'))
    await assert.rejects(sink.end(), SequenceError)
    await sink.data(enc.encode('st file'))
    await assert.rejects(sink.end(), /END after 1 of 4/)
    await sink.abort()
    assert.deepEqual(await tempLeftovers(dir), [])
  })

  test('SKIP records a failure and moves on; SKIP of an open file drops it', async () => {
    const { dir, sink } = await sinkIn()
    await sink.skip(1, 'vanished')
    await assert.rejects(sink.skip(1, 'again'), SequenceError)
    await sink.begin(2, 0)
    await sink.begin(3, 0)
    await sink.data(enc.encode('third'))
    await assert.rejects(sink.skip(4, 'other'), SequenceError)
    await sink.skip(3, 'read error')
    await sink.begin(4, 0)
    await sink.data(enc.encode(contents[4]))
    const r = await sink.end()
    assert.equal(r.files, 2)
    assert.equal(r.failures.length, 2)
    assert.match(r.failures[0], /^a: .*vanished/)
    assert.match(r.failures[1], /^d\/c: .*read error/)
    assert.deepEqual(await listAll(dir), ['b-empty', 'd', 'e'])
  })

  test('a file below a symlinked directory is a local failure and nothing is written outside', async () => {
    const outside = await freshDir()
    const es: Entry[] = [
      { path: 'evil', type: 'dir', mode: 0o755, mtime: T, mtimeNsec: 0, size: 0 },
      fileEntry('evil/x', 'payload'),
      fileEntry('ok', 'fine')
    ]
    const dir = await freshDir()
    await fsp.symlink(outside, join(dir, 'evil'))
    const sink = new FileSink(new DestinationRoot(dir), es, [1, 2])
    await sink.begin(1, 0)
    await sink.data(enc.encode('payload'))
    await sink.begin(2, 0)
    await sink.data(enc.encode('fine'))
    const r = await sink.end()
    assert.equal(r.files, 1)
    assert.equal(r.failures.length, 1)
    assert.match(r.failures[0], /^evil\/x: /)
    assert.deepEqual(await listAll(outside), [])
    assert.equal(await fsp.readFile(join(dir, 'ok'), 'utf8'), 'fine')
  })
})

describe('SmallFileBatch', () => {
  const files = ['one', 'two, a little longer', '']
  const entryOf = (i: number): Entry => fileEntry(`f${i}`, files[i], { mode: i === 0 ? 0o640 : 0o644, mtime: T + i })

  async function writeAll (dir: string): Promise<void> {
    // a batch that commits only when flushed: the state before the commit can be looked at
    const batch = new SmallFileBatch({ delayMs: 60_000 })
    const writes = files.map(async (c, i) => { await batch.write(join(dir, `f${i}`), entryOf(i), [enc.encode(c)], sha(c)) })
    // the worker writes them under temp names; nothing is at a final path before the batch is durable
    const deadline = Date.now() + 10_000
    while (readdirSync(dir).filter(n => n.startsWith(TEMP_PREFIX)).length < files.length && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    const now = readdirSync(dir)
    assert.equal(now.filter(n => n.startsWith(TEMP_PREFIX)).length, files.length)
    assert.deepEqual(now.filter(n => !n.startsWith(TEMP_PREFIX)), [])
    await batch.flush()
    await Promise.all(writes)
  }

  async function checkFiles (dir: string): Promise<void> {
    assert.deepEqual(await listAll(dir), ['f0', 'f1', 'f2'])
    for (const [i, c] of files.entries()) {
      assert.equal(await fsp.readFile(join(dir, `f${i}`), 'utf8'), c)
      const st = await fsp.stat(join(dir, `f${i}`), { bigint: true })
      assert.equal(Number(st.mode & 0o7777n), entryOf(i).mode)
      assertMtime(st, T + i, NSEC)
    }
  }

  test('files appear, whole and with their metadata, only once their batch is synced', async () => {
    const dir = await freshDir()
    await writeAll(dir)
    await checkFiles(dir)
  })

  test('without `sync -f` on the PATH every file is fsynced instead', async () => {
    const dir = await freshDir()
    const path = process.env.PATH
    process.env.PATH = '/nonexistent'
    try {
      await writeAll(dir)
    } finally {
      process.env.PATH = path
    }
    await checkFiles(dir)
  })

  test('a file that cannot be created fails alone, leaving no temp file', async () => {
    const dir = await freshDir()
    const batch = new SmallFileBatch()
    await assert.rejects(batch.write(join(dir, 'missing-dir', 'x'), fileEntry('x', 'x'), [enc.encode('x')], sha('x')), /ENOENT/)
    await batch.write(join(dir, 'y'), fileEntry('y', 'y'), [enc.encode('y')], sha('y'))
    assert.deepEqual(await listAll(dir), ['y'])
  })

  test('bytes that do not have the expected SHA-256 are never written; the other files are', async () => {
    const dir = await freshDir()
    const batch = new SmallFileBatch()
    const bad = batch.write(join(dir, 'bad'), fileEntry('bad', 'bad'), [enc.encode('BAD')], sha('bad'))
    const good = batch.write(join(dir, 'good'), fileEntry('good', 'good'), [enc.encode('go'), enc.encode('od')], sha('good'))
    await assert.rejects(bad, /SHA-256 [0-9a-f]{64} does not match the source's/)
    await good
    assert.deepEqual(await listAll(dir), ['good'])
    assert.equal(await fsp.readFile(join(dir, 'good'), 'utf8'), 'good')
  })

  test('files of two batches (two sessions) are committed each by their own batch', async () => {
    const dir = await freshDir()
    const a = new SmallFileBatch({ delayMs: 60_000 })
    const b = new SmallFileBatch({ delayMs: 60_000 })
    const wa = a.write(join(dir, 'a'), fileEntry('a', 'a'), [enc.encode('a')], sha('a'))
    const wb = b.write(join(dir, 'b'), fileEntry('b', 'b'), [enc.encode('b')], sha('b'))
    const deadline = Date.now() + 10_000
    while ((await tempLeftovers(dir)).length < 2 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    assert.equal((await tempLeftovers(dir)).length, 2, 'both files are created under temp names')
    await a.flush()
    await wa
    // b's file is created, but only b's commit puts it in place
    assert.deepEqual((await listAll(dir)).filter(n => !n.startsWith(TEMP_PREFIX)), ['a'])
    assert.equal((await tempLeftovers(dir)).length, 1)
    await b.flush()
    await wb
    assert.deepEqual(await listAll(dir), ['a', 'b'])
  })
  test('a large batch is spread over the worker lanes: every file lands once its lane commits, bad ones fail alone', async () => {
    const dir = await freshDir()
    await fsp.mkdir(join(dir, 'a'))
    await fsp.mkdir(join(dir, 'b'))
    const batch = new SmallFileBatch({ delayMs: 60_000 })
    const count = 1500 // six requests of 256 files: the later ones alternate between lanes
    const content = (i: number): string => `file ${i} `.repeat(i % 7)
    const bad = new Set([800, 1300]) // in requests 3 and 5, i.e. lane 1 when there are two
    const missing = 1100 // its directory does not exist
    const writes = Array.from({ length: count }, async (_, i) => {
      const rel = `${i < 750 ? 'a' : 'b'}/f${i}`
      const c = content(i)
      const path = i === missing ? join(dir, 'nowhere', 'x') : join(dir, rel)
      // the outcome, taken at once (a failure settles long before the test looks)
      return await batch.write(path, fileEntry(rel, c, { mtime: T + i }), [enc.encode(bad.has(i) ? c + '!' : c)], sha(c)).then(() => undefined, (err: Error) => err)
    })
    const deadline = Date.now() + 10_000
    while ((await tempLeftovers(dir)).length < count - 3 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    assert.equal((await tempLeftovers(dir)).length, count - 3, 'created under temp names, none in place before the commit')
    if (FILE_LANES > 1) assert.equal(fileLanesRunning(), FILE_LANES, 'both lanes took files')
    await batch.flush()
    const outcomes = await Promise.all(writes)
    const failed = outcomes.flatMap((err, i) => err != null ? [i] : [])
    assert.deepEqual(failed, [800, 1100, 1300])
    assert.deepEqual(await tempLeftovers(dir), [])
    for (let i = 0; i < count; i++) {
      const p = join(dir, `${i < 750 ? 'a' : 'b'}/f${i}`)
      if (failed.includes(i)) { assert.equal(await exists(p), false); continue }
      assert.equal(await fsp.readFile(p, 'utf8'), content(i))
      assertMtime(await fsp.stat(p, { bigint: true }), T + i, NSEC)
    }
  })
  test('a lane whose thread dies after creating its files: those files fail, the other lane\'s land', async (t) => {
    if (FILE_LANES < 2) return t.skip('one core: one lane')
    const dir = await freshDir()
    const batch = new SmallFileBatch({ delayMs: 60_000 })
    const count = 1024 // requests 0-2 go to lane 0, request 3 (files 768-1023) to lane 1
    const writes = Array.from({ length: count }, async (_, i) => {
      const c = `small ${i}`
      return await batch.write(join(dir, `f${i}`), fileEntry(`f${i}`, c), [enc.encode(c)], sha(c)).then(() => undefined, (err: Error) => err)
    })
    const deadline = Date.now() + 10_000
    while ((await tempLeftovers(dir)).length < count && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    assert.equal((await tempLeftovers(dir)).length, count, 'every file created under a temp name')
    await stopFileLane(1) // lane 1's thread, and the list of the files it created, are gone
    await batch.flush()
    const outcomes = await Promise.all(writes)
    for (let i = 0; i < count; i++) {
      const landed = await exists(join(dir, `f${i}`))
      if (i < 768) {
        assert.equal(outcomes[i], undefined, `file ${i}: ${String(outcomes[i])}`)
        assert.ok(landed, `file ${i} is in place`)
      } else {
        assert.match(String(outcomes[i]), /stopped before the file was committed/, `file ${i}`)
        assert.equal(landed, false, `file ${i} is not in place`)
      }
    }
  })
})

describe('FileSink with deferred hashes', () => {
  const big = 'x'.repeat(70 * 1024) + 'end' // above the small-file limit: the AtomicFileWriter path
  const small = 'small file'
  const entries: Entry[] = [fileEntry('big', big, { hash: undefined }), fileEntry('small', small, { hash: undefined })]
  const hashes = [sha(big), sha(small)]

  async function run (expected: (i: number) => Promise<string | undefined>): Promise<{ dir: string, r: Awaited<ReturnType<FileSink['end']>> }> {
    const dir = await freshDir()
    const sink = new FileSink(new DestinationRoot(dir), entries, [0, 1], new Map(), async (i) => await expected(i))
    await sink.begin(0, 0)
    await sink.data(enc.encode(big.slice(0, 1000)))
    await sink.data(enc.encode(big.slice(1000)))
    await sink.begin(1, 0)
    await sink.data(enc.encode(small))
    return { dir, r: await sink.end() }
  }

  test('files wait for the hash from the source, then are verified against it', async () => {
    const { dir, r } = await run(async (i) => { await new Promise(resolve => setTimeout(resolve, 20)); return hashes[i] })
    assert.deepEqual(r.failures, [])
    assert.equal(r.files, 2)
    assert.equal(await fsp.readFile(join(dir, 'big'), 'utf8'), big)
    assert.equal(await fsp.readFile(join(dir, 'small'), 'utf8'), small)
  })

  test('a hash that does not match, or none at all, fails the file and leaves nothing', async () => {
    for (const expected of [async () => sha('other'), async () => { throw new Error('the source sent no hash') }]) {
      const { dir, r } = await run(expected)
      assert.equal(r.files, 0)
      assert.equal(r.failures.length, 2, r.failures.join('; '))
      assert.deepEqual(await listAll(dir), [])
    }
  })
})
