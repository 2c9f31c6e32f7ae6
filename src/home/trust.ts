import { readFileSync, statSync } from 'node:fs'
import { appendFile, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'

export const TRUST_FILE = 'trusted_peers'

export class InvalidPeerIdError extends Error {
  override name = 'InvalidPeerIdError'
}

export function checkPeerId (id: string): string {
  try {
    return peerIdFromString(id).toString()
  } catch {
    throw new InvalidPeerIdError(`not a valid PeerId: ${JSON.stringify(id)}`)
  }
}

function parse (text: string): Set<string> {
  const out = new Set<string>()
  for (const line of text.split('\n')) {
    const id = line.replace(/#.*/, '').trim().split(/\s+/)[0]
    if (id != null && id !== '') out.add(id)
  }
  return out
}

/**
 * The peers allowed to start tasks on this node and to send it manifests, like SSH's
 * authorized_keys: one PeerId per line in <home>/trusted_peers, '#' starts a comment.
 * Re-read when the file changes, so `gosync trust` takes effect without a restart.
 */
export class TrustList {
  private cached = new Set<string>()
  private cachedMtime = -1
  constructor (readonly home: string, private readonly extra: Iterable<string> = [], readonly trustAll = false) {}

  get path (): string { return join(this.home, TRUST_FILE) }

  isTrusted (peer: string): boolean {
    if (this.trustAll) return true
    for (const p of this.extra) if (p === peer) return true
    return this.load().has(peer)
  }

  private load (): Set<string> {
    let mtime = -2
    try { mtime = statSync(this.path).mtimeMs } catch {}
    if (mtime !== this.cachedMtime) {
      this.cachedMtime = mtime
      try { this.cached = parse(readFileSync(this.path, 'utf8')) } catch { this.cached = new Set() }
    }
    return this.cached
  }

  async list (): Promise<string[]> {
    return [...parse(await readFile(this.path, 'utf8').catch(() => ''))]
  }

  /** Returns false when the peer was not trusted. Comments and other lines are kept. */
  async remove (peer: string): Promise<boolean> {
    const id = checkPeerId(peer)
    const text = await readFile(this.path, 'utf8').catch(() => '')
    const lines = text.split('\n')
    const kept = lines.filter(l => l.replace(/#.*/, '').trim().split(/\s+/)[0] !== id)
    if (kept.length === lines.length) return false
    const tmp = `${this.path}.${process.pid}.tmp`
    await writeFile(tmp, kept.join('\n'), { mode: 0o600 })
    await rename(tmp, this.path)
    return true
  }

  /** Returns false when the peer was already trusted. */
  async add (peer: string, comment?: string): Promise<boolean> {
    const id = checkPeerId(peer)
    if ((await this.list()).includes(id)) return false
    await appendFile(this.path, `${id}${comment != null ? `  # ${comment}` : ''}\n`, { mode: 0o600 })
    return true
  }
}
