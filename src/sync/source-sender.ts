import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { deflateRaw } from 'node:zlib'
import type { Libp2p } from '@libp2p/interface'
import { ChildLink, type ChildTarget } from '../../protocols/relay/child-link.js'
import { DATA_HEADER, DATAZ_HEADER, encodeBegin, encodeSkip } from '../../protocols/relay/frames.js'
import type { Entry } from '../manifest/types.js'

const deflate = promisify(deflateRaw)

export interface SendClassOptions {
  session: string
  classId: number
  frameBytes: number
  compress: boolean
  stallMs: number
  onChildFailed: (peer: string, error: string) => void
}

/**
 * The source's part of one class: read each needed file once and send it, frame by frame,
 * to the source's children in the class tree. A fresh buffer per frame: a buffer is never
 * reused while a send may still hold it.
 */
export async function sendClass (node: Libp2p, srcRoot: string, entries: readonly Entry[], files: readonly number[], children: ChildTarget[], opts: SendClassOptions): Promise<void> {
  const links = (await Promise.all(children.map(async (c) => {
    try {
      return await ChildLink.open(node, c, opts.session, opts.classId, opts.stallMs)
    } catch (err) {
      opts.onChildFailed(c.peer, `cannot open relay stream: ${(err as Error).message}`)
      return undefined
    }
  }))).filter((l): l is ChildLink => l != null)
  const sendAll = async (parts: Uint8Array[]): Promise<void> => {
    await Promise.all(links.map(async l => { await l.send(parts) }))
  }
  const anyAlive = (): boolean => links.some(l => l.alive)

  for (const index of files) {
    if (!anyAlive()) break
    const e = entries[index]
    let fh: FileHandle | undefined
    try {
      fh = await open(join(srcRoot, e.path), constants.O_RDONLY | constants.O_NOFOLLOW)
    } catch (err) {
      await sendAll([encodeSkip(index, (err as NodeJS.ErrnoException).code ?? (err as Error).message)])
      continue
    }
    try {
      await sendAll([encodeBegin(index, 0)])
      let sent = 0
      // read ahead one frame while the previous one is being sent
      const readChunk = async (): Promise<Buffer> => {
        const want = Math.min(opts.frameBytes, e.size - sent)
        const buf = Buffer.allocUnsafe(want)
        let got = 0
        while (got < want) {
          const { bytesRead } = await fh!.read(buf, got, want - got, sent + got)
          if (bytesRead === 0) break
          got += bytesRead
        }
        return buf.subarray(0, got)
      }
      let next = e.size > 0 ? readChunk() : undefined
      while (next != null) {
        const chunk = await next
        if (chunk.byteLength === 0) {
          await sendAll([encodeSkip(index, 'file shrank while being sent')])
          break
        }
        sent += chunk.byteLength
        next = sent < e.size ? readChunk() : undefined
        if (opts.compress) await sendAll([DATAZ_HEADER, await deflate(chunk, { level: 1 })])
        else await sendAll([DATA_HEADER, chunk])
      }
    } catch (err) {
      await sendAll([encodeSkip(index, (err as Error).message)])
    } finally {
      await fh.close().catch(() => {})
    }
  }
  const verdicts = await Promise.all(links.map(async l => ({ peer: l.peer, ...(await l.finish()) })))
  for (const v of verdicts) if (!v.ok) opts.onChildFailed(v.peer, v.error ?? 'failed')
}
