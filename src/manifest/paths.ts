/**
 * Every path that arrives from the wire passes through checkRelativePath before it is
 * used: no absolute paths, no '.' or '..' segments, no empty segments, no NUL, and
 * bounded lengths. Together with "every parent is a directory entry of the same
 * manifest" (checkManifestShape) this keeps writes inside the destination.
 */

export const MAX_PATH_BYTES = 4096
export const MAX_NAME_BYTES = 255

export class InvalidPathError extends Error {
  override name = 'InvalidPathError'
  constructor (readonly path: string, reason: string) {
    super(`invalid path ${JSON.stringify(path)}: ${reason}`)
  }
}

export function checkRelativePath (path: string): void {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidPathError(String(path), 'empty')
  if (path.includes('\0')) throw new InvalidPathError(path, 'contains NUL')
  // a lone surrogate (JSON allows "\ud800") becomes U+FFFD on disk: two such names would be
  // one file there, and a check made for one would pass for the other
  if (!path.isWellFormed()) throw new InvalidPathError(path, 'not valid Unicode (a lone surrogate)')
  if (path.startsWith('/')) throw new InvalidPathError(path, 'absolute')
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) throw new InvalidPathError(path, `longer than ${MAX_PATH_BYTES} bytes`)
  for (const seg of path.split('/')) {
    if (seg === '') throw new InvalidPathError(path, 'empty segment')
    if (seg === '.' || seg === '..') throw new InvalidPathError(path, `'${seg}' segment`)
    // (UTF-16 length ≥ UTF-8 bytes / 3: only long names need counting)
    if (seg.length * 3 > MAX_NAME_BYTES && Buffer.byteLength(seg, 'utf8') > MAX_NAME_BYTES) throw new InvalidPathError(path, `name longer than ${MAX_NAME_BYTES} bytes`)
  }
}

/** The parent of a relative path, or '' for top-level entries. */
export function parentOf (path: string): string {
  const i = path.lastIndexOf('/')
  return i < 0 ? '' : path.slice(0, i)
}

/**
 * Order used everywhere a tree is listed: by UTF-16 code units of the path, except that
 * '/' sorts before every other character, so a directory's contents directly follow it
 * ("a", "a/b", "a-b" rather than "a", "a-b", "a/b").
 */
export function comparePaths (a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i)
    const cb = b.charCodeAt(i)
    if (ca === cb) continue
    if (ca === 47) return -1
    if (cb === 47) return 1
    return ca - cb
  }
  return a.length - b.length
}

/** True when one of `a` and `b` is the other or lies below it: writing one touches the other. */
export function overlaps (a: string, b: string): boolean {
  return isWithin(a, b) || isWithin(b, a)
}

/** True when `path` is `dir` or lies below it (relative paths, or absolute ones: '/' holds every absolute path). */
export function isWithin (path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : dir + '/')
}
