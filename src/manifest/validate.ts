import { checkRelativePath, comparePaths, parentOf, InvalidPathError } from './paths.js'
import { isTempName } from './scan.js'
import type { Entry } from './types.js'

export class InvalidManifestError extends Error {
  override name = 'InvalidManifestError'
}

const HEX64 = /^[0-9a-f]{64}$/

/**
 * Structural checks on a manifest from the wire, on top of checkRelativePath: strictly
 * sorted (so no duplicates), every parent is a directory entry of the same manifest (so
 * no entry can be written through a symlink or a file of the manifest), and every field
 * in range. Throws InvalidManifestError naming the first bad entry.
 */
export function checkManifestShape (entries: readonly Entry[]): void {
  new ManifestShapeChecker().check(entries)
}

/** checkManifestShape piece by piece, for a manifest whose entries arrive in batches. */
export class ManifestShapeChecker {
  private readonly dirs = new Set<string>([''])
  private prev: string | undefined

  /** The next entries, in manifest order. */
  check (entries: readonly Entry[]): void {
    const dirs = this.dirs
    let prev = this.prev
    for (const e of entries) {
      try {
        checkRelativePath(e.path)
      } catch (err) {
        throw new InvalidManifestError((err as InvalidPathError).message)
      }
      if (prev !== undefined && comparePaths(prev, e.path) >= 0) {
        throw new InvalidManifestError(`entries out of order or duplicated at ${JSON.stringify(e.path)}`)
      }
      prev = e.path
      // temp names belong to gosync's own writers on the target (temps, parts, the stage)
      if (isTempName(e.path.slice(e.path.lastIndexOf('/') + 1))) throw new InvalidManifestError(`${JSON.stringify(e.path)} uses gosync's reserved temp prefix .gosync-tmp-`)
      if (!dirs.has(parentOf(e.path))) {
        throw new InvalidManifestError(`parent of ${JSON.stringify(e.path)} is not a directory of the manifest`)
      }
      if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o7777) throw new InvalidManifestError(`bad mode for ${e.path}`)
      if (!Number.isSafeInteger(e.mtime) || !Number.isInteger(e.mtimeNsec) || e.mtimeNsec < 0 || e.mtimeNsec > 999_999_999) throw new InvalidManifestError(`bad mtime for ${e.path}`)
      switch (e.type) {
        case 'dir':
          dirs.add(e.path)
          break
        case 'file':
          if (!Number.isSafeInteger(e.size) || e.size < 0) throw new InvalidManifestError(`bad size for ${e.path}`)
          // no hash: deferred, the source sends it on the control stream once it has read the file
          if (e.hash != null && !HEX64.test(e.hash)) throw new InvalidManifestError(`bad hash for ${e.path}`)
          break
        case 'symlink':
          if (typeof e.target !== 'string' || e.target.length === 0 || e.target.length > 4096 || e.target.includes('\0') || !e.target.isWellFormed()) {
            throw new InvalidManifestError(`bad symlink target for ${e.path}`)
          }
          break
        default:
          throw new InvalidManifestError(`bad type for ${e.path}`)
      }
    }
    this.prev = prev
  }
}
