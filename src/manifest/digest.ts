import { createHash } from 'node:crypto'
import type { Entry, RootMeta } from './types.js'

/**
 * The manifest digest: SHA-256 over one canonical JSON line per item, root first.
 * Both ends compute it; a target refuses a manifest whose digest does not match.
 */
export function canonicalLine (e: Entry): string {
  return JSON.stringify([e.path, e.type, e.mode, e.size, e.mtime, e.mtimeNsec, e.hash ?? '', e.target ?? '', e.uid ?? -1, e.gid ?? -1]) + '\n'
}

export function manifestDigest (root: RootMeta, entries: Iterable<Entry>): string {
  const h = createHash('sha256')
  h.update(JSON.stringify(['.', root.mode, root.mtime, root.mtimeNsec, root.uid ?? -1, root.gid ?? -1]) + '\n')
  for (const e of entries) h.update(canonicalLine(e))
  return h.digest('hex')
}
