import { createHash } from 'node:crypto'
import type { Entry, RootMeta } from './types.js'

/**
 * The manifest digest: SHA-256 over one canonical JSON line per item, root first.
 * Both ends compute it; a target refuses a manifest whose digest does not match.
 */
export function canonicalLine (e: Entry): string {
  // the same text as JSON.stringify([path, type, mode, size, mtime, nsec, hash, target, uid, gid]),
  // built by hand: only the two free-form strings need JSON escaping (≈ 3× faster)
  const hash = e.hash ?? ''
  const q = (s: string): string => /^[\w./ -]*$/.test(s) ? `"${s}"` : JSON.stringify(s)
  return `[${q(e.path)},"${e.type}",${e.mode},${e.size},${e.mtime},${e.mtimeNsec},${q(hash)},${q(e.target ?? '')},${e.uid ?? -1},${e.gid ?? -1}]\n`
}

/** Lines are hashed in chunks of about this many characters (one update per line costs more). */
const CHUNK_CHARS = 64 * 1024

export function manifestDigest (root: RootMeta, entries: Iterable<Entry>): string {
  const d = new ManifestDigester(root)
  d.update(entries)
  return d.digest()
}

/** manifestDigest computed piece by piece, as a streamed manifest's entries come or go. */
export class ManifestDigester {
  private readonly h = createHash('sha256')
  private text: string

  constructor (root: RootMeta) {
    this.text = JSON.stringify(['.', root.mode, root.mtime, root.mtimeNsec, root.uid ?? -1, root.gid ?? -1]) + '\n'
  }

  /** The next entries, in manifest order. */
  update (entries: Iterable<Entry>): void {
    let text = this.text
    for (const e of entries) {
      text += canonicalLine(e)
      if (text.length >= CHUNK_CHARS) { this.h.update(text); text = '' }
    }
    this.text = text
  }

  /** The digest of everything given; the digester is used up. */
  digest (): string {
    this.h.update(this.text)
    this.text = ''
    return this.h.digest('hex')
  }
}

/**
 * What a receipt binds (docs/PROTOCOLS.md §4.6): the manifest digest itself when no file's
 * hash is deferred; otherwise SHA-256 over `gosync-content/1\n<manifest digest>\n` and one
 * line `<index> <sha256>\n` per deferred file in index order, `sha256` being the hash the
 * session established for it (the source's `hashes`, or equal content under plan.same),
 * empty when it established none (the file was not received: quick check).
 */
export function contentDigest (manifestDigest: string, entries: readonly Entry[], established: (index: number) => string | undefined): string {
  let text = ''
  let h: ReturnType<typeof createHash> | undefined
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]
    if (e.type !== 'file' || e.hash != null) continue
    h ??= createHash('sha256').update(`gosync-content/1\n${manifestDigest}\n`)
    text += `${i} ${established(i) ?? ''}\n`
    if (text.length >= CHUNK_CHARS) { h.update(text); text = '' }
  }
  if (h == null) return manifestDigest
  h.update(text)
  return h.digest('hex')
}
