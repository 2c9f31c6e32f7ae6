import { fstatSync, type Stats } from 'node:fs'
import type { Entry } from '../manifest/types.js'

/**
 * Times compared as doubles of milliseconds (a non-bigint fstat: ~1.7 µs, no BigInt work)
 * are exact to a fraction of a microsecond; two real changes of a file are further apart.
 */
const TIME_SLACK_MS = 0.001

/**
 * What changed in a file since the scan's lstat of it, judged from a stat of the file as it
 * is read for sending (size, mtime, ctime, inode), or undefined if nothing did. Any write
 * moves the mtime and ctime, so a stat taken after the last read proves that the bytes read
 * are the file the manifest describes: a file written while it was sent (a torn copy,
 * verifying as exactly the bytes read when its hash is computed while sending) is told apart.
 * The one blind spot is the kernel's timestamp granularity: a write in the same clock tick
 * as the scan's lstat leaves the times unchanged (rsync and Syncthing share it).
 */
export function changeSinceScan (st: Stats, e: Entry): string | undefined {
  if (st.size !== e.size) return `changed since the scan: size ${e.size} → ${st.size}`
  if (Math.abs(st.mtimeMs - (e.mtime * 1000 + e.mtimeNsec / 1e6)) > TIME_SLACK_MS) return 'changed since the scan: mtime'
  if (e.ctimeMs != null && Math.abs(st.ctimeMs - e.ctimeMs) > TIME_SLACK_MS) return 'changed since the scan: ctime'
  if (e.ino != null && st.ino !== e.ino) return 'changed since the scan: replaced (inode)'
  return undefined
}

/** changeSinceScan for an open descriptor. */
export function fdChangeSinceScan (fd: number, e: Entry): string | undefined {
  return changeSinceScan(fstatSync(fd), e)
}
