import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { streamPair } from '@libp2p/utils'
import { FramedStream } from '../../protocols/framing/framed-stream.js'
import { writeJson } from '../../protocols/framing/json.js'
import { SourceInbox } from '../../protocols/control/source-inbox.js'

async function pair (): Promise<{ source: FramedStream, target: FramedStream }> {
  const [a, b] = await streamPair()
  return { source: new FramedStream(a, { maxFrameBytes: 1 << 16 }), target: new FramedStream(b, { maxFrameBytes: 1 << 16 }) }
}

describe('SourceInbox (a target reading the source after ready)', () => {
  test('a data phase longer than the stall timeout, with no message, does not fail the switch wait', async () => {
    const { source, target } = await pair()
    const inbox = new SourceInbox(target, () => undefined, () => {}, () => {})
    await sleep(300) // a quiet data phase, longer than the stall time below
    const verdict = inbox.switchVerdict(200)
    await sleep(100)
    await writeJson(source, { type: 'switch', go: true })
    assert.deepEqual(await verdict, { go: true, reason: undefined })
  })

  test('heartbeats keep the wait alive; silence then fails it', async () => {
    const { source, target } = await pair()
    const inbox = new SourceInbox(target, () => undefined, () => {}, () => {})
    const verdict = inbox.switchVerdict(250)
    for (let i = 0; i < 4; i++) { await sleep(100); await writeJson(source, { type: 'heartbeat' }) }
    await assert.rejects(verdict, /no word from the source/)
  })

  test('hashes go to onHash; a refused one or an unknown message is fatal; end of stream ends the hashes', async () => {
    const { source, target } = await pair()
    const got: Array<[number, string]> = []
    const fatal: Error[] = []
    const ended: Error[] = []
    const h = 'a'.repeat(64)
    const inbox = new SourceInbox(target, (i, hash) => { got.push([i, hash]); return i === 7 ? 'not yours' : undefined }, (e) => fatal.push(e), (e) => ended.push(e))
    await writeJson(source, { type: 'hash', index: 3, hash: h })
    await writeJson(source, { type: 'hash', index: 7, hash: h })
    await inbox.done
    assert.deepEqual(got, [[3, h], [7, h]])
    assert.match(fatal[0]?.message ?? '', /not yours/)
    assert.deepEqual(ended, [])

    const p2 = await pair()
    const fatal2: Error[] = []
    const inbox2 = new SourceInbox(p2.target, () => undefined, (e) => fatal2.push(e), () => {})
    await writeJson(p2.source, { type: 'plan', relay: null })
    await inbox2.done
    assert.equal(fatal2.length, 1)

    const p3 = await pair()
    const ended3: Error[] = []
    const inbox3 = new SourceInbox(p3.target, () => undefined, () => {}, (e) => ended3.push(e))
    await p3.source.closeWrite()
    await inbox3.done
    assert.equal(ended3.length, 1)
    await assert.rejects(inbox3.switchVerdict(1000), /closed the control stream/)
  })
})
