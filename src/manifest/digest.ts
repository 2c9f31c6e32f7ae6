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
  const h = createHash('sha256')
  let text = JSON.stringify(['.', root.mode, root.mtime, root.mtimeNsec, root.uid ?? -1, root.gid ?? -1]) + '\n'
  for (const e of entries) {
    text += canonicalLine(e)
    if (text.length >= CHUNK_CHARS) { h.update(text); text = '' }
  }
  h.update(text)
  return h.digest('hex')
}
