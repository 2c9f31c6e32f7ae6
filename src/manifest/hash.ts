import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { changeSinceScan } from '../fs/changed-since-scan.js'
import { hashSmallFileSync, readSmallFileSync, SYNC_READ_MAX } from '../fs/read-small.js'
import type { Entry } from './types.js'

/** Read buffer for hashing: large reads keep syscall overhead negligible. */
const HASH_READ_SIZE = 1 << 20

/** Hex SHA-256 of a file's content. SHA-256 uses the CPU's SHA extensions: faster than md5 here. */
export async function hashFile (path: string, signal?: AbortSignal, sizeHint?: number): Promise<string> {
  if (sizeHint != null && sizeHint <= SYNC_READ_MAX) {
    const h = hashSmallFileSync(path, sizeHint)
    if (typeof h === 'string') return h
    if (h != null) throw h
    // a size other than the hint: the file changed; hash what is there the slow way
  }
  // never through a symlink: a file replaced by a link after the scan is not read
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    // small files get a small buffer: a fresh 1 MiB per file would dominate a tree of small files
    return await hashOpenFile(fh, Math.min(HASH_READ_SIZE, (sizeHint ?? HASH_READ_SIZE) + 1), signal)
  } finally {
    await fh.close()
  }
}

/** Hex SHA-256 of an open file from where it stands to its end, read `bufBytes` at a time. */
async function hashOpenFile (fh: FileHandle, bufBytes: number, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256')
  const buf = Buffer.allocUnsafe(bufBytes)
  for (;;) {
    signal?.throwIfAborted()
    const { bytesRead } = await fh.read(buf, 0, buf.length, null)
    if (bytesRead === 0) break
    h.update(buf.subarray(0, bytesRead))
  }
  return h.digest('hex')
}

/**
 * Hex SHA-256 of a file that must still be the one the scan described (`scanned`: size,
 * mtime, ctime, inode, checked after the read); throws if it is not, so that a hash is never
 * filed under metadata that belongs to other content.
 */
export async function hashAsScanned (path: string, scanned: Entry): Promise<string> {
  if (scanned.size <= SYNC_READ_MAX) {
    const content = readSmallFileSync(path, scanned.size, scanned)
    if (content instanceof Error) throw content
    return createHash('sha256').update(content).digest('hex')
  }
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    const hash = await hashOpenFile(fh, HASH_READ_SIZE)
    const changed = changeSinceScan(await fh.stat(), scanned)
    if (changed != null) throw new Error(changed)
    return hash
  } finally {
    await fh.close()
  }
}

/**
 * The previous state of a file, as the scanner asks for it: a hash known for exactly
 * this (path, size, mtime, inode) is reused instead of reading the file again.
 */
export interface HashCache {
  lookup (path: string, size: number, mtime: number, mtimeNsec: number, ino: number): string | undefined
  store? (path: string, size: number, mtime: number, mtimeNsec: number, ino: number, hash: string): void
}
