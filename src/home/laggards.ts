import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const LAGGARDS_FILE = 'laggards.json'
/** A peer cut off as a laggard is sent to alone for this long after (then it is judged again). */
export const LAGGARD_MEMORY_MS = 60 * 60 * 1000
/** At most this many peers are remembered (the most recent). */
const MAX_REMEMBERED = 1024

/**
 * Peers a relay cut off as laggards in this home's recent tasks (<home>/laggards.json: PeerId →
 * when, ms since the epoch). A task plans each of them in a class of its own from the start, so a
 * host known to be slow paces nobody, also in a transfer too short for a relay to judge it. The
 * entry is not renewed while the peer goes alone (nobody can judge it then): after
 * LAGGARD_MEMORY_MS it is back in the tree, and a relay cuts it off again if it still lags.
 * A file that cannot be read or parsed counts as empty: this is an optimisation, never a failure.
 */
export class LaggardMemory {
  constructor (readonly home: string, private readonly now: () => number = Date.now) {}
  get path (): string { return join(this.home, LAGGARDS_FILE) }

  private async read (): Promise<Record<string, number>> {
    try {
      const doc = JSON.parse(await readFile(this.path, 'utf8')) as unknown
      if (doc == null || typeof doc !== 'object' || Array.isArray(doc)) return {}
      const out: Record<string, number> = {}
      for (const [peer, at] of Object.entries(doc)) if (typeof at === 'number' && Number.isFinite(at)) out[peer] = at
      return out
    } catch {
      return {}
    }
  }

  /** Peers cut off as laggards within the last LAGGARD_MEMORY_MS. */
  async recent (): Promise<Set<string>> {
    const since = this.now() - LAGGARD_MEMORY_MS
    return new Set(Object.entries(await this.read()).filter(([, at]) => at > since && at <= this.now()).map(([peer]) => peer))
  }

  /** Remember `peers` as cut off now (expired entries are dropped). */
  async remember (peers: readonly string[]): Promise<void> {
    if (peers.length === 0) return
    const since = this.now() - LAGGARD_MEMORY_MS
    const all = await this.read()
    for (const p of peers) all[p] = this.now()
    const kept = Object.entries(all).filter(([, at]) => at > since).sort((a, b) => b[1] - a[1]).slice(0, MAX_REMEMBERED)
    const tmp = `${this.path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
    await writeFile(tmp, JSON.stringify(Object.fromEntries(kept), null, 2) + '\n', { mode: 0o600 })
    await rename(tmp, this.path)
  }
}
