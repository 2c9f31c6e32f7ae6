import { hash } from 'node:crypto'
import { closeSync, constants, openSync, readSync } from 'node:fs'
import type { Entry } from '../manifest/types.js'
import { fdChangeSinceScan } from './changed-since-scan.js'

/**
 * Files up to this size are read with synchronous calls on the calling thread: one such
 * read costs ~20–40 µs here, several times less than the promise + thread-pool round
 * trips of open/read/close (which dominated trees of small files).
 */
export const SYNC_READ_MAX = 64 * 1024

/**
 * The whole content of a small file (never through a symlink), or the error; a size other
 * than `size` is an error, and so is any change since the scan described by `scanned`.
 */
export function readSmallFileSync (path: string, size: number, scanned?: Entry): Buffer | Error {
  const buf = Buffer.allocUnsafe(size + 1)
  const got = readSmallFileInto(path, size, buf, 0, scanned)
  return got instanceof Error ? got : buf.subarray(0, size)
}

/**
 * SHA-256 (hex) of a small file read whole; its error (with a code) if it cannot be read;
 * undefined if its size is no longer `size` (hash it the streaming way, as it is now).
 */
export function hashSmallFileSync (path: string, size: number): string | NodeJS.ErrnoException | undefined {
  const content = readSmallFileSync(path, size)
  if (!(content instanceof Error)) return hash('sha256', content, 'hex')
  return (content as NodeJS.ErrnoException).code != null ? content : undefined
}

/**
 * A small file read whole into `into` at `at` (never through a symlink). Returns the size, or
 * the error (a size other than `size` is one; with `scanned`, so is any change since that
 * scan, checked after the read). Needs `size + 1` bytes of room at `at`: the byte after the
 * file shows growth, and may be overwritten. A short read of a regular file is its end, so the
 * usual file takes one read, not a second one that returns 0.
 */
export function readSmallFileInto (path: string, size: number, into: Uint8Array, at: number, scanned?: Entry): number | Error {
  let fd: number | undefined
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW)
    let got = 0
    while (got < size + 1) {
      const n = readSync(fd, into, at + got, size + 1 - got, got)
      if (n === 0) break
      got += n
      if (got === size) break
    }
    if (got !== size) return new Error('file changed size since the scan')
    const changed = scanned != null ? fdChangeSinceScan(fd, scanned) : undefined
    return changed == null ? size : new Error(changed)
  } catch (err) {
    return err as Error
  } finally {
    if (fd != null) closeSync(fd)
  }
}
