import { comparePaths, isWithin } from '../manifest/paths.js'
import type { Entry } from '../manifest/types.js'

/** rclone-style march: one callback per side, one for paths both sides have. */
export interface DiffCallbacks {
  onlyInSource (src: Entry, index: number): void
  onlyInTarget (dst: Entry): void
  inBoth (src: Entry, dst: Entry, index: number): void
}

/** Walk two sorted entry lists together. `index` is the position in `source`. */
export function marchTrees (source: readonly Entry[], target: readonly Entry[], cb: DiffCallbacks): void {
  let i = 0
  let j = 0
  while (i < source.length || j < target.length) {
    const c = i >= source.length ? 1 : j >= target.length ? -1 : comparePaths(source[i].path, target[j].path)
    if (c < 0) { cb.onlyInSource(source[i], i); i++ } else if (c > 0) { cb.onlyInTarget(target[j]); j++ } else { cb.inBoth(source[i], target[j], i); i++; j++ }
  }
}

/** Modification times equal within the microsecond resolution that utimes offers. */
export function sameMtime (a: Pick<Entry, 'mtime' | 'mtimeNsec'>, b: Pick<Entry, 'mtime' | 'mtimeNsec'>): boolean {
  const da = (a.mtime - b.mtime) * 1e9 + (a.mtimeNsec - b.mtimeNsec)
  return Math.abs(da) < 2000
}

export interface DiffOptions {
  /** delete target entries the source does not have (rsync --delete) */
  delete: boolean
  /** compare owner and group too (only meaningful when the target runs as root) */
  owners: boolean
}

/** What a target must do to equal the source. Paths are relative; indices point into the source list. */
export interface TargetChanges {
  /** remove recursively, before anything else; no path lies within another */
  remove: string[]
  /** source indices of directories to create */
  mkdir: number[]
  /** source indices of symlinks to create (after `remove`) */
  symlink: number[]
  /** source indices of files whose content must be transferred */
  fetch: number[]
  /** source indices of files and dirs that exist with the right content/type but wrong metadata */
  meta: number[]
  /** source indices of files whose size matches but mtime differs: hash locally to decide */
  verify: number[]
}

function metaDiffers (s: Entry, d: Entry, opts: DiffOptions): boolean {
  if (s.type !== 'symlink' && s.mode !== d.mode) return true
  if (!sameMtime(s, d)) return true
  if (opts.owners && ((s.uid != null && s.uid !== d.uid) || (s.gid != null && s.gid !== d.gid))) return true
  return false
}

/**
 * Pure diff of a source manifest against a target's scan. A file with equal size and
 * mtime is taken as equal (rsync's quick check); equal size with another mtime goes to
 * `verify`, where a local hash decides between `meta` and `fetch` (resolveVerified).
 */
export function diffTrees (source: readonly Entry[], target: readonly Entry[], opts: DiffOptions): TargetChanges {
  const out: TargetChanges = { remove: [], mkdir: [], symlink: [], fetch: [], meta: [], verify: [] }
  let removedDir: string | undefined
  const remove = (path: string, isDir: boolean): void => {
    if (removedDir !== undefined && isWithin(path, removedDir)) return
    out.remove.push(path)
    if (isDir) removedDir = path
  }
  marchTrees(source, target, {
    onlyInSource (s, i) {
      if (s.type === 'dir') out.mkdir.push(i)
      else if (s.type === 'symlink') out.symlink.push(i)
      else out.fetch.push(i)
    },
    onlyInTarget (d) {
      if (opts.delete) remove(d.path, d.type === 'dir')
    },
    inBoth (s, d, i) {
      if (removedDir !== undefined && isWithin(d.path, removedDir)) {
        // its parent was replaced: recreate from scratch
        this.onlyInSource(s, i)
        return
      }
      if (s.type !== d.type) {
        remove(d.path, d.type === 'dir')
        this.onlyInSource(s, i)
        return
      }
      if (s.type === 'symlink') {
        if (s.target !== d.target) out.symlink.push(i)
        else if (metaDiffers(s, d, opts)) out.meta.push(i)
      } else if (s.type === 'dir') {
        if (metaDiffers(s, d, opts)) out.meta.push(i)
      } else if (s.size !== d.size) {
        out.fetch.push(i)
      } else if (!sameMtime(s, d)) {
        if (d.hash != null) out[d.hash === s.hash ? 'meta' : 'fetch'].push(i)
        else out.verify.push(i)
      } else if (metaDiffers(s, d, opts)) {
        out.meta.push(i)
      }
    }
  })
  return out
}

/** Move `verify` entries to `meta` or `fetch` once their local hashes are known. */
export function resolveVerified (changes: TargetChanges, source: readonly Entry[], localHashes: ReadonlyMap<number, string | undefined>): TargetChanges {
  const meta = [...changes.meta]
  const fetch = [...changes.fetch]
  for (const i of changes.verify) {
    // a deferred source hash decides later (needs.have / plan.same): fetch for now
    if (source[i].hash != null && localHashes.get(i) === source[i].hash) meta.push(i)
    else fetch.push(i)
  }
  const byIndex = (a: number, b: number): number => a - b
  return { ...changes, meta: meta.sort(byIndex), fetch: fetch.sort(byIndex), verify: [] }
}

export function isNoop (c: TargetChanges): boolean {
  return c.remove.length + c.mkdir.length + c.symlink.length + c.fetch.length + c.meta.length + c.verify.length === 0
}
