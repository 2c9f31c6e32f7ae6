import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { diffTrees, isNoop, sameMtime } from '../diff/diff.js'
import { manifestDigest } from '../manifest/digest.js'
import type { Entry, Manifest, RootMeta } from '../manifest/types.js'

/**
 * A target's memory of the last manifest its destination was found to equal, so that a
 * re-sync of an unchanged tree needs no manifest on the wire (the `tree` and
 * `manifest-known` messages, docs/PROTOCOLS.md).
 *
 * `fingerprint` hashes the destination's scan as it was when it equalled the manifest
 * `digest`: every entry's path, type, mode, size, mtime (ns), owner, symlink target and
 * inode, and the root's metadata. A later scan with the same fingerprint is that same
 * tree, so it still equals the manifest by the rule the full diff applies (rsync's quick
 * check: size and mtime). `exact`: nothing beyond the manifest was there (so --delete
 * has nothing to remove).
 */
export interface TreeRecord { digest: string, fingerprint: string, exact: boolean }

/** Where a daemon keeps its tree records: one per destination. */
export interface TreeRecordStore {
  /** the record of `dst`; one still being made is waited for briefly, then taken as none */
  get: (dst: string) => Promise<TreeRecord | undefined>
  /** make the record in the background (`compute` may rescan); undefined: keep the old one */
  putLater: (dst: string, compute: () => Promise<TreeRecord | undefined>) => void
}

/** What a destination scan gives: its root's metadata and its entries. */
export interface ScannedTree { root: RootMeta, entries: readonly Entry[] }

export function scanFingerprint (tree: ScannedTree): string {
  const h = createHash('sha256')
  const r = tree.root
  // paths and link targets are length-prefixed (they may hold any character but NUL); every
  // other field is a number or a fixed word
  let text = `${r.mode}\0${r.mtime}\0${r.mtimeNsec}\0${r.uid ?? -1}\0${r.gid ?? -1}\n`
  for (const e of tree.entries) {
    const target = e.target ?? ''
    text += `${e.path.length}:${e.path}\0${e.type}\0${e.mode}\0${e.size}\0${e.mtime}\0${e.mtimeNsec}\0${e.uid ?? -1}\0${e.gid ?? -1}\0${e.ino ?? -1}\0${target.length}:${target}\n`
    if (text.length >= 64 * 1024) { h.update(text); text = '' }
  }
  h.update(text)
  return h.digest('hex')
}

/**
 * The record for a destination scan that equals `manifest` (every file with its hash), or
 * undefined when the scan differs from it in anything a sync would change.
 * `owners`: owners count (the daemon runs as root), as in the diff.
 */
export function recordFor (manifest: Manifest, tree: ScannedTree, owners: boolean): TreeRecord | undefined {
  if (manifest.entries.some(e => e.type === 'file' && e.hash == null)) return undefined
  const root = manifest.root
  if (tree.root.mode !== root.mode || !sameMtime(tree.root, root)) return undefined
  if (owners && ((root.uid != null && root.uid !== tree.root.uid) || (root.gid != null && root.gid !== tree.root.gid))) return undefined
  if (!isNoop(diffTrees(manifest.entries, tree.entries, { delete: false, owners }))) return undefined
  const exact = diffTrees(manifest.entries, tree.entries, { delete: true, owners }).remove.length === 0
  return { digest: manifestDigest(root, manifest.entries), fingerprint: scanFingerprint(tree), exact }
}

const FORMAT = 1
/** How long a session waits for the record its destination's previous session is still making. */
const RECORD_WAIT_MS = 1000

/** Tree records as files <home>/trees/<sha256 of dst>.json, replaced atomically. */
export class FileTreeRecords implements TreeRecordStore {
  /** records being written: a session for the same destination reads after them */
  private readonly writing = new Map<string, Promise<void>>()

  constructor (private readonly dir: string) {}

  private fileFor (dst: string): string {
    return join(this.dir, createHash('sha256').update(dst).digest('hex').slice(0, 32) + '.json')
  }

  async get (dst: string): Promise<TreeRecord | undefined> {
    // a record still being made (a rescan after a large session) is waited for only briefly
    const pending = this.writing.get(dst)
    if (pending != null) {
      const written = await Promise.race([pending.then(() => true), new Promise<boolean>(resolve => setTimeout(() => { resolve(false) }, RECORD_WAIT_MS).unref())])
      if (!written) return undefined
    }
    try {
      const doc = JSON.parse(await readFile(this.fileFor(dst), 'utf8'))
      if (doc.format !== FORMAT || doc.dst !== dst) return undefined
      const hex = (x: unknown): x is string => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x)
      if (!hex(doc.digest) || !hex(doc.fingerprint) || typeof doc.exact !== 'boolean') return undefined
      return { digest: doc.digest, fingerprint: doc.fingerprint, exact: doc.exact }
    } catch {
      return undefined
    }
  }

  /** Record the tree in the background once `compute` has it (a later get waits for it). */
  putLater (dst: string, compute: () => Promise<TreeRecord | undefined>): void {
    void this.inTurn(dst, async () => {
      const r = await compute()
      if (r != null) await this.write(dst, r)
    })
  }

  /** Writes for one destination happen one after the other; failures only lose the shortcut. */
  private async inTurn (dst: string, job: () => Promise<void>): Promise<void> {
    const p = (this.writing.get(dst) ?? Promise.resolve()).then(job).catch(() => {})
    this.writing.set(dst, p)
    await p
    if (this.writing.get(dst) === p) this.writing.delete(dst)
  }

  private async write (dst: string, record: TreeRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const file = this.fileFor(dst)
    const tmp = `${file}.${process.pid}.tmp`
    await writeFile(tmp, JSON.stringify({ format: FORMAT, dst, ...record }), { mode: 0o600 })
    await rename(tmp, file)
  }
}
