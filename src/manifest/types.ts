/** Domain types of a tree manifest. The wire form lives in protocols/; these never leave the process as-is. */

export type EntryType = 'file' | 'dir' | 'symlink'

/** One entry of a tree, relative to its root. */
export interface Entry {
  /** POSIX relative path, '/'-separated, validated by checkRelativePath */
  path: string
  type: EntryType
  /** permission bits (0o7777) */
  mode: number
  /** whole seconds of the modification time */
  mtime: number
  /** nanoseconds part of the modification time (0..999_999_999) */
  mtimeNsec: number
  /** bytes; 0 for dirs and symlinks */
  size: number
  /** hex SHA-256 of the content (files only) */
  hash?: string
  /** the link text, stored verbatim (symlinks only) */
  target?: string
  uid?: number
  gid?: number
  /** inode number, local only: never sent, used by the hash cache */
  ino?: number
  /** inode change time in ms, local only (a source's scan): a file read for sending is checked against it */
  ctimeMs?: number
}

/** Metadata of the root directory itself (rsync's "./"). */
export interface RootMeta {
  mode: number
  mtime: number
  mtimeNsec: number
  uid?: number
  gid?: number
}

export interface Manifest {
  root: RootMeta
  /** sorted by path (see comparePaths), unique */
  entries: Entry[]
  /** hex SHA-256 over the canonical form of root + entries */
  digest: string
  /**
   * the source could not read every entry of its tree (they are left out): a target must then
   * delete nothing, as rsync skips deletion after an I/O error (a source's scan only)
   */
  incomplete?: boolean
}
