import { lstat, realpath } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { checkRelativePath, isWithin, parentOf } from '../manifest/paths.js'

export class UnsafePathError extends Error {
  override name = 'UnsafePathError'
}

/**
 * Resolves relative paths under a destination root so that no write goes through a
 * symlink: every ancestor directory is checked with lstat to be a real directory. Checked
 * directories are remembered for the life of one session.
 */
export class DestinationRoot {
  private readonly verified = new Set<string>([''])
  constructor (readonly root: string) {}

  /** Absolute path of `rel`, after checking its ancestors. The last segment itself is not followed by callers. */
  async resolve (rel: string): Promise<string> {
    checkRelativePath(rel)
    await this.checkDir(parentOf(rel))
    return join(this.root, rel)
  }

  /** As resolve(), but a plain string when `rel`'s directory is verified already (no promise per file). */
  resolveFast (rel: string): string | Promise<string> {
    checkRelativePath(rel)
    return this.verified.has(parentOf(rel)) ? join(this.root, rel) : this.resolve(rel)
  }

  /** The directory `rel` ('' = root) must be a real directory all the way down. */
  async checkDir (rel: string): Promise<void> {
    if (this.verified.has(rel)) return
    // many files of one directory arrive at once: one lstat for all of them
    let p = this.checking.get(rel)
    if (p == null) {
      p = this.check(rel).finally(() => { this.checking.delete(rel) })
      this.checking.set(rel, p)
    }
    await p
  }

  private readonly checking = new Map<string, Promise<void>>()

  private async check (rel: string): Promise<void> {
    await this.checkDir(parentOf(rel))
    const st = await lstat(join(this.root, rel)).catch((err: NodeJS.ErrnoException) => {
      throw new UnsafePathError(`${rel}: ${err.code === 'ENOENT' ? 'parent directory is missing' : err.message}`)
    })
    if (!st.isDirectory()) throw new UnsafePathError(`${rel} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; refusing to write below it`)
    this.verified.add(rel)
  }

  /** `rel` is a real directory: this session just made it, or lstat-ed it. */
  markVerified (rel: string): void {
    this.verified.add(rel)
  }

  /** Forget a verified directory (it was removed or replaced). */
  forget (rel: string): void {
    for (const d of this.verified) {
      if (d === rel || d.startsWith(rel + '/')) this.verified.delete(d)
    }
  }
}

/**
 * `path` (absolute, normalized) as resolved: the realpath of its deepest existing part, with
 * the rest appended. A path that does not exist yet resolves like its nearest existing parent.
 */
export async function resolveDeepest (path: string): Promise<string> {
  let existing = path
  let rest = ''
  for (;;) {
    const real = await realpath(existing).catch(() => undefined)
    if (real != null) return rest === '' ? real : join(real, rest)
    if (existing === '/') return path
    rest = rest === '' ? basename(existing) : join(basename(existing), rest)
    existing = dirname(existing)
  }
}

/** `resolved` (see resolveDeepest) lies under one of `roots`, each taken as it resolves. */
export async function underRoots (resolved: string, roots: readonly string[]): Promise<boolean> {
  const real = await Promise.all(roots.map(async r => await realpath(r).catch(() => r)))
  return real.some(r => isWithin(resolved, r))
}
