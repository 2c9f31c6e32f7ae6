import { chmodSync, constants, lstatSync, mkdirSync, rmSync } from 'node:fs'
import { chmod, copyFile, lchown, lstat, lutimes, mkdir, readdir, rename, rm, stat, symlink, utimes, open, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { sameMtime, type TargetChanges } from '../diff/diff.js'
import type { Entry, Manifest } from '../manifest/types.js'
import { splitNs, utimesValue } from '../manifest/time.js'
import { processUmask, tempNameIn } from './atomic-writer.js'
import type { DestinationRoot } from './safe-path.js'

const isRoot = process.getuid?.() === 0

/** Directories are created writable for us; their real mode is set in finalizeDirectories. */
const DIR_CREATE_MODE = 0o700

const seconds = utimesValue
/** Directories created between two turns of the event loop. */
const YIELD_EVERY = 256

/**
 * Ensure the destination root exists as a directory (created with parents if missing).
 */
export async function prepareRoot (root: string): Promise<void> {
  const st = await lstat(root).catch(() => undefined)
  if (st == null) {
    await mkdir(root, { recursive: true, mode: 0o755 })
    return
  }
  if (!st.isDirectory()) {
    // a symlink to a directory is accepted as a root, as rsync does
    const target = await stat(root).catch(() => undefined)
    if (target?.isDirectory() !== true) throw new Error(`destination ${root} exists and is not a directory`)
  }
}

/**
 * Phase 1 on a target, before any data arrives: removals, directories, symlinks and
 * metadata-only fixes. Runs in manifest order so parents always exist first.
 */
export async function applyStructure (dst: DestinationRoot, entries: readonly Entry[], changes: TargetChanges): Promise<void> {
  for (const rel of changes.remove) {
    const abs = await dst.resolve(rel)
    await removeTree(abs)
    dst.forget(rel)
  }
  const todo = [...changes.mkdir.map(i => ({ i, kind: 'dir' as const })), ...changes.symlink.map(i => ({ i, kind: 'link' as const }))]
  todo.sort((a, b) => a.i - b.i)
  let done = 0
  for (const { i, kind } of todo) {
    if (++done % YIELD_EVERY === 0) await new Promise(resolve => setImmediate(resolve))
    const e = entries[i]
    const abs = await dst.resolve(e.path)
    if (kind === 'dir') {
      // synchronous calls: a few µs each, against tens through the thread pool (trees have many dirs)
      const want = e.mode | DIR_CREATE_MODE
      let made = false
      try {
        mkdirSync(abs, { mode: want & 0o777 })
        made = true
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        if (!lstatSync(abs).isDirectory()) {
          rmSync(abs, { recursive: true, force: true })
          dst.forget(e.path)
          mkdirSync(abs, { mode: want & 0o777 })
          made = true
        }
      }
      // mkdir's mode passed the umask: a chmod only when that took bits away (or for an existing dir)
      if (!made || want > 0o777 || (want & processUmask) !== 0) chmodSync(abs, want)
      // a directory we just made (or lstat-ed): what resolve() would check for the entries below it
      dst.markVerified(e.path)
    } else {
      await placeSymlink(abs, e)
      // whatever was there (a directory checked earlier, say) is gone: nothing may be placed below it
      dst.forget(e.path)
    }
  }
  for (const i of changes.meta) {
    const e = entries[i]
    if (e.type === 'dir') continue // directories are finalized after the transfer
    await setMetadata(await dst.resolve(e.path), e)
  }
}

/**
 * rm -r; a daemon that is not root cannot empty a directory it may not write (0555): such
 * directories below `abs` are given owner rwx first (never through a symlink), as rsync does.
 */
async function removeTree (abs: string): Promise<void> {
  try {
    await rm(abs, { recursive: true, force: true })
  } catch (err) {
    if (isRoot || (err as NodeJS.ErrnoException).code !== 'EACCES') throw err
    await ownerMayWrite(abs)
    await rm(abs, { recursive: true, force: true })
  }
}

async function ownerMayWrite (abs: string): Promise<void> {
  const st = await lstat(abs)
  if (!st.isDirectory()) return
  if ((st.mode & 0o700) !== 0o700) await chmod(abs, (st.mode & 0o7777) | 0o700)
  for (const name of await readdir(abs)) await ownerMayWrite(join(abs, name))
}

/** Create the link under a temp name and rename it over whatever is there: atomic replace. */
async function placeSymlink (abs: string, e: Entry): Promise<void> {
  const tmp = tempNameIn(dirname(abs))
  await symlink(e.target!, tmp)
  try {
    if (isRoot && e.uid != null && e.gid != null) await lchown(tmp, e.uid, e.gid)
    await lutimes(tmp, new Date(), seconds(e))
    const st = await lstat(abs).catch(() => undefined)
    if (st?.isDirectory() === true) await rm(abs, { recursive: true, force: true })
    await rename(tmp, abs)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

/**
 * A descriptor of a regular file to set its metadata through, never through a symlink. A
 * daemon that is not root may not read its own file of mode 0200 (write-only) or 0000: then it
 * opens it for writing (nothing is written), or gives itself read first.
 */
async function openForMetadata (abs: string): Promise<FileHandle> {
  try {
    return await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if (isRoot || (err as NodeJS.ErrnoException).code !== 'EACCES') throw err
  }
  try {
    return await open(abs, constants.O_WRONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err
  }
  const st = await lstat(abs)
  if (!st.isFile()) throw new Error(`${abs} is not a regular file`)
  await chmod(abs, (st.mode & 0o7777) | 0o400)
  return await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW)
}

/** Mode, owner and mtime of an existing file or symlink, never following the link. */
export async function setMetadata (abs: string, e: Entry): Promise<void> {
  if (e.type === 'symlink') {
    if (isRoot && e.uid != null && e.gid != null) await lchown(abs, e.uid, e.gid)
    await lutimes(abs, new Date(), seconds(e))
    return
  }
  // O_NOFOLLOW: metadata goes to the entry itself, never through a planted link
  const fh = await openForMetadata(abs)
  try {
    if (isRoot && e.uid != null && e.gid != null) await fh.chown(e.uid, e.gid)
    await fh.chmod(e.mode)
    await fh.utimes(new Date(), seconds(e))
  } finally {
    await fh.close()
  }
}

/**
 * After every file is in place: give directories their real modes and mtimes, deepest
 * first (writing into a directory changes its mtime), then the root itself.
 */
export async function finalizeDirectories (dst: DestinationRoot, manifest: Manifest): Promise<number> {
  let changed = 0
  const dirs = manifest.entries.filter(e => e.type === 'dir')
  for (let k = dirs.length - 1; k >= -1; k--) {
    const e: Pick<Entry, 'mode' | 'mtime' | 'mtimeNsec' | 'uid' | 'gid'> = k >= 0 ? dirs[k] : manifest.root
    const abs = k >= 0 ? await dst.resolve(dirs[k].path) : dst.root
    const st = await lstat(abs, { bigint: true })
    if (!st.isDirectory()) continue
    const cur = splitNs(st.mtimeNs)
    let touched = false
    if (isRoot && e.uid != null && e.gid != null && (Number(st.uid) !== e.uid || Number(st.gid) !== e.gid)) {
      await lchown(abs, e.uid, e.gid)
      touched = true
    }
    if ((Number(st.mode) & 0o7777) !== e.mode) {
      await chmod(abs, e.mode)
      touched = true
    }
    if (!sameMtime(cur, e)) {
      await utimes(abs, new Date(), seconds(e))
      touched = true
    }
    if (touched) changed++
  }
  return changed
}

/**
 * --atomic switch: put a staged (already verified) file at its final path. `move`: the
 * staged file itself is renamed into place; otherwise (its content is used by another
 * entry too, or the stage is on another file system) a copy is made under a temp name,
 * fsynced and renamed. Metadata is set before the rename, never through a symlink.
 */
export async function placeStagedFile (staged: string, abs: string, e: Entry, move: boolean): Promise<void> {
  if (move) {
    await setMetadata(staged, e)
    try {
      await rename(staged, abs)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
    }
  }
  const tmp = tempNameIn(dirname(abs))
  try {
    // the staged file carries a final mode, maybe without owner read (0200): we own it
    const st = await lstat(staged)
    if ((st.mode & 0o400) === 0) await chmod(staged, (st.mode & 0o7777) | 0o600)
    await copyFile(staged, tmp, constants.COPYFILE_EXCL)
    const fh = await open(tmp, constants.O_RDONLY | constants.O_NOFOLLOW)
    try { await fh.sync() } finally { await fh.close() }
    await setMetadata(tmp, e)
    await rename(tmp, abs)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}
