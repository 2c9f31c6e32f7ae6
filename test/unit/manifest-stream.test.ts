import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as fsp from 'node:fs/promises'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { streamPair } from '@libp2p/utils'
import { FramedStream } from '../../protocols/framing/framed-stream.js'
import { writeJson } from '../../protocols/framing/json.js'
import { fromEntry } from '../../protocols/control/messages.js'
import { receiveManifest, ControlRefusal } from '../../protocols/control/target-handler.js'
import { ManifestStream } from '../../src/manifest/manifest-stream.js'
import { scanTree } from '../../src/manifest/scan.js'
import { manifestDigest } from '../../src/manifest/digest.js'
import { comparePaths } from '../../src/manifest/paths.js'
import type { Entry, Manifest, RootMeta } from '../../src/manifest/types.js'

const ROOT: RootMeta = { mode: 0o755, mtime: 1_700_000_000, mtimeNsec: 0, uid: 1000, gid: 1000 }
const dir = (path: string): Entry => ({ path, type: 'dir', mode: 0o755, mtime: 1_700_000_000, mtimeNsec: 0, size: 0 })
const file = (path: string): Entry => ({ path, type: 'file', mode: 0o644, mtime: 1_700_000_000, mtimeNsec: 5, size: 3, hash: 'ab'.repeat(32) })

async function collect (s: ManifestStream): Promise<Entry[]> {
  const out: Entry[] = []
  for await (const batch of s.entries()) out.push(...batch)
  return out
}

describe('ManifestStream', () => {
  test('each reader gets every batch, pushed before or after it started, then the end', async () => {
    const s = new ManifestStream()
    s.setRoot(ROOT)
    s.push([dir('a'), file('a/x')])
    const early = collect(s)
    await new Promise(resolve => setImmediate(resolve))
    s.push([file('b')])
    const late = collect(s)
    const m: Manifest = { root: ROOT, entries: [dir('a'), file('a/x'), file('b')], digest: 'd'.repeat(64) }
    s.end(m)
    assert.deepEqual((await early).map(e => e.path), ['a', 'a/x', 'b'])
    assert.deepEqual((await late).map(e => e.path), ['a', 'a/x', 'b'])
    assert.equal(await s.done(), m)
    assert.deepEqual(await s.root(), ROOT)
  })

  test('a failed walk fails the readers that wait and those that come later', async () => {
    const s = new ManifestStream()
    s.push([dir('a')])
    const waiting = collect(s)
    const done = s.done()
    s.fail(new Error('walk failed'))
    await assert.rejects(waiting, /walk failed/)
    await assert.rejects(done, /walk failed/)
    await assert.rejects(s.root(), /walk failed/)
    await assert.rejects(collect(s), /walk failed/)
  })

  test('of(): a complete stream of a manifest scanned before', async () => {
    const m: Manifest = { root: ROOT, entries: [dir('a'), file('a/x')], digest: 'e'.repeat(64) }
    const s = ManifestStream.of(m)
    assert.deepEqual(await collect(s), m.entries)
    assert.equal(await s.done(), m)
    assert.deepEqual(await collect(ManifestStream.of({ root: ROOT, entries: [], digest: 'f'.repeat(64) })), [])
  })
})

describe('scanTree, streaming', () => {
  let base: string
  before(async () => {
    base = await fsp.mkdtemp(join(tmpdir(), 'gosync-mstream-'))
    // names that sort differently by whole path and by component ('/' first): a, a-b, a.b, a/…
    for (const d of ['a', 'a/b', 'a-b', 'a.b', 'z', 'z/é', 'z/e']) await fsp.mkdir(join(base, d))
    // readdir gives names in byte order (libuv sorts them with strcmp): UTF-16 order differs for
    // a name above U+FFFF ('😀', surrogates D83D…) against one in U+E000–U+FFFF ('！' FF01)
    for (const f of ['a/b/f', 'a/b-', 'a-b/g', 'a.b/h', 'a0', 'z/é/1', 'z/e/2', 'Z', 'z/！', 'z/😀']) await fsp.writeFile(join(base, f), f)
    // enough entries for several batches
    await fsp.mkdir(join(base, 'many'))
    for (let i = 0; i < 2500; i++) await fsp.writeFile(join(base, 'many', `f${i}`), i % 3 === 0 ? '' : `${i}`)
    await fsp.symlink('a/b/f', join(base, 'link'))
  })
  after(async () => { await fsp.rm(base, { recursive: true, force: true }) })

  test('batches come in manifest order while the walk goes on, and make up the manifest', async () => {
    const batches: Array<readonly Entry[]> = []
    let root: RootMeta | undefined
    const m = await scanTree(base, {
      hash: true,
      deferHashMin: 1,
      onRoot: (r) => { root = r },
      onEntries: (b) => {
        // a file made when the first batch comes (in 'many/') is seen later by the same walk in
        // 'z/': the batch was handed on while the walk went on
        if (batches.length === 0) writeFileSync(join(base, 'z', 'late'), 'late')
        batches.push(b)
      }
    })
    assert.ok(batches.length >= 3, `${batches.length} batches for ${m.entries.length} entries`)
    assert.ok(batches[0].every(e => e.path !== 'z/late'))
    assert.ok(batches.slice(1).some(b => b.some(e => e.path === 'z/late')), 'the walk went on after the first batch')
    assert.ok(root != null && root.mode === m.root.mode)
    const streamed = batches.flat()
    assert.deepEqual(streamed.map(e => e.path), m.entries.map(e => e.path))
    for (let i = 1; i < streamed.length; i++) assert.ok(comparePaths(streamed[i - 1].path, streamed[i].path) < 0, `${streamed[i - 1].path} before ${streamed[i].path}`)
    assert.equal(m.digest, manifestDigest(m.root, m.entries))
    // deferred: non-empty files have no hash yet; empty ones are hashed at once
    const empty = m.entries.find(e => e.path === 'many/f0')!
    assert.equal(empty.hash, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    assert.equal(m.entries.find(e => e.path === 'many/f1')!.hash, undefined)
    // the same manifest as a scan that does not stream
    const whole = await scanTree(base, { hash: true, deferHashMin: 1 })
    assert.deepEqual(whole.entries, m.entries)
    assert.equal(whole.digest, m.digest)
  })
})

describe('receiveManifest (a target reading a streamed manifest)', () => {
  async function pair (): Promise<{ source: FramedStream, target: FramedStream }> {
    const [a, b] = await streamPair()
    return { source: new FramedStream(a, { maxFrameBytes: 1 << 20 }), target: new FramedStream(b, { maxFrameBytes: 1 << 20 }) }
  }
  const step = (): AbortSignal => AbortSignal.timeout(2000)
  const entries = [dir('a'), file('a/x'), dir('b'), file('b/y'), file('c')]

  async function refusal (p: Promise<unknown>): Promise<ControlRefusal> {
    try {
      await p
    } catch (err) {
      assert.ok(err instanceof ControlRefusal, `not a refusal: ${String(err)}`)
      return err
    }
    assert.fail('accepted')
  }

  test('batches with heartbeats between: the entries and their digest', async () => {
    const { source, target } = await pair()
    const got = receiveManifest(target, ROOT, step)
    await writeJson(source, { type: 'entries', entries: entries.slice(0, 2).map(fromEntry) })
    await writeJson(source, { type: 'heartbeat' })
    await writeJson(source, { type: 'entries', entries: entries.slice(2).map(fromEntry) })
    await writeJson(source, { type: 'heartbeat' })
    await writeJson(source, { type: 'manifest-end', digest: manifestDigest(ROOT, entries) })
    const r = await got
    assert.deepEqual(r.entries.map(e => e.path), entries.map(e => e.path))
    assert.equal(r.digest, manifestDigest(ROOT, entries))
  })

  test('more entries than the limit: too-large, at the batch that crosses it', async () => {
    const { source, target } = await pair()
    const got = refusal(receiveManifest(target, ROOT, step, 4))
    await writeJson(source, { type: 'entries', entries: entries.slice(0, 3).map(fromEntry) })
    await writeJson(source, { type: 'entries', entries: entries.slice(3).map(fromEntry) })
    const err = await got
    assert.equal(err.code, 'too-large')
  })

  test('paths and link targets over the character budget: too-large, at the batch that crosses it', async () => {
    const { source, target } = await pair()
    // 'a', 'a/x', 'b': 5 characters; the second batch ('b/y', 'c') takes it to 9
    const got = refusal(receiveManifest(target, ROOT, step, 1000, 7))
    await writeJson(source, { type: 'entries', entries: entries.slice(0, 3).map(fromEntry) })
    await writeJson(source, { type: 'entries', entries: entries.slice(3).map(fromEntry) })
    const err = await got
    assert.equal(err.code, 'too-large')
    assert.match(err.message, /more than 7 characters/)
  })

  test('a digest that is not the entries\': bad-digest', async () => {
    const { source, target } = await pair()
    const got = refusal(receiveManifest(target, ROOT, step))
    await writeJson(source, { type: 'entries', entries: entries.map(fromEntry) })
    await writeJson(source, { type: 'manifest-end', digest: manifestDigest({ ...ROOT, mode: 0o700 }, entries) })
    assert.equal((await got).code, 'bad-digest')
  })

  test('order and parents are checked across batches: bad-manifest', async () => {
    for (const [what, batches] of [
      ['out of order', [[dir('b')], [dir('a')]]],
      ['parent missing', [[dir('a')], [file('b/y')]]]
    ] as const) {
      const { source, target } = await pair()
      const got = refusal(receiveManifest(target, ROOT, step))
      for (const b of batches) await writeJson(source, { type: 'entries', entries: b.map(fromEntry) })
      await writeJson(source, { type: 'manifest-end', digest: manifestDigest(ROOT, batches.flat()) })
      assert.equal((await got).code, 'bad-manifest', what)
    }
  })
})
