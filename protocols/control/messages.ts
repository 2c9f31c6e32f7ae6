import { z } from 'zod/v3'
import type { Entry, RootMeta } from '../../src/manifest/types.js'
import { HASHES_PER_MESSAGE_MAX } from './consts.js'

/**
 * Messages of /gosync/control/1, each one length-prefixed UTF-8 JSON frame with a
 * `type` field. Defined once here; converted to domain types at the edge (toEntry /
 * fromEntry) and never used past this module's callers.
 */

const int = z.number().int()
const uint = int.nonnegative()
const peerId = z.string().min(1).max(128)

export const WireRoot = z.object({ mode: uint, mtime: int, nsec: uint, uid: uint.optional(), gid: uint.optional() })
export const WireEntry = z.object({
  path: z.string().min(1).max(4096),
  type: z.enum(['file', 'dir', 'symlink']),
  mode: uint,
  mtime: int,
  nsec: uint,
  size: uint.optional(),
  hash: z.string().optional(),
  target: z.string().optional(),
  uid: uint.optional(),
  gid: uint.optional()
})
export type WireEntry = z.infer<typeof WireEntry>

/**
 * The rules of WireEntry as plain code: a manifest of 20 000 entries took ~50 ms and much
 * garbage to parse with the schema. test/unit/wire-fast-check.test.ts checks that the two
 * agree on valid and broken entries; readJson falls back to the schema for the error text.
 */
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v)
const isUint = (v: unknown): v is number => isInt(v) && v >= 0
const isOptUint = (v: unknown): boolean => v === undefined || isUint(v)
const isOptString = (v: unknown): boolean => v === undefined || typeof v === 'string'
export function isWireEntry (v: unknown): v is WireEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const e = v as Record<string, unknown>
  return typeof e.path === 'string' && e.path.length >= 1 && e.path.length <= 4096 &&
    (e.type === 'file' || e.type === 'dir' || e.type === 'symlink') &&
    isUint(e.mode) && isInt(e.mtime) && isUint(e.nsec) && isOptUint(e.size) &&
    isOptString(e.hash) && isOptString(e.target) && isOptUint(e.uid) && isOptUint(e.gid)
}

// source → target
export const OpenMsg = z.object({
  type: z.literal('open'),
  version: int,
  session: z.string().regex(/^[0-9a-f]{32}$/),
  dst: z.string().min(1).max(4096),
  delete: z.boolean(),
  dryRun: z.boolean(),
  compress: z.boolean(),
  /** stage everything, switch only when the source says every target staged (see 'switch') */
  atomic: z.boolean().optional()
})
/** Starts the manifest: `entries` batches follow as the source's walk produces them, then `manifest-end` (source heartbeats may come before and between). */
export const ManifestMsg = z.object({ type: z.literal('manifest'), root: WireRoot })
export const EntriesMsg = z.object({ type: z.literal('entries'), entries: z.array(WireEntry).max(100_000) })
/** EntriesMsg's rules as plain code (see isWireEntry). */
export function isEntriesMsg (v: unknown): v is z.infer<typeof EntriesMsg> {
  if (typeof v !== 'object' || v === null) return false
  const m = v as Record<string, unknown>
  return m.type === 'entries' && Array.isArray(m.entries) && m.entries.length <= 100_000 && m.entries.every(isWireEntry)
}
/** `incomplete`: the source could not read all of its tree (protocol 6): the target deletes nothing, whatever `open.delete` says */
export const ManifestEndMsg = z.object({ type: z.literal('manifest-end'), digest: z.string().regex(/^[0-9a-f]{64}$/), incomplete: z.boolean().optional() })
export const ChildInfo = z.object({ peer: peerId, addrs: z.array(z.string().max(1024)).max(32) })
const hex64 = z.string().regex(/^[0-9a-f]{64}$/)
export const PlanMsg = z.object({
  type: z.literal('plan'),
  /** entries of needs.have whose content is the source's: metadata only, no data */
  same: z.array(uint).max(1_000_000).optional(),
  /** null: this target receives no file data (it needs none) */
  relay: z.object({ classId: uint, parent: peerId, children: z.array(ChildInfo).max(1024), frameBytes: uint }).nullable()
})
/** The SHA-256 of a file whose manifest entry has none (deferred), once the source has read it. */
export const HashMsg = z.object({ type: z.literal('hash'), index: uint, hash: hex64 })
/** Several deferred hashes at once, [index, SHA-256] pairs (gosync sends these: a small file's hash is deferred too). */
export const HashesMsg = z.object({ type: z.literal('hashes'), hashes: z.array(z.tuple([uint, hex64])).min(1).max(HASHES_PER_MESSAGE_MAX) })
const HEX64 = /^[0-9a-f]{64}$/
/** HashesMsg's rules as plain code (see isWireEntry). */
export function isHashesMsg (v: unknown): v is z.infer<typeof HashesMsg> {
  if (typeof v !== 'object' || v === null) return false
  const m = v as Record<string, unknown>
  return m.type === 'hashes' && Array.isArray(m.hashes) && m.hashes.length >= 1 && m.hashes.length <= HASHES_PER_MESSAGE_MAX &&
    m.hashes.every((p: unknown) => Array.isArray(p) && p.length === 2 && isUint(p[0]) && typeof p[1] === 'string' && HEX64.test(p[1]))
}
/** --atomic: the source's verdict once every target has staged (or one failed) */
export const SwitchMsg = z.object({ type: z.literal('switch'), go: z.boolean(), reason: z.string().max(4096).optional() })
/** sent while the source scans (between open and manifest) and, --atomic, while a staged target waits for the verdict */
export const SourceHeartbeatMsg = z.object({ type: z.literal('heartbeat') })
/** What the source may send after the plan: hashes during the data phase, then (--atomic) heartbeats and the switch. */
export const LateSourceMsg = z.discriminatedUnion('type', [HashMsg, HashesMsg, SwitchMsg, SourceHeartbeatMsg])
/** Instead of the manifest: it is the one the target announced in `tree` (no entries follow). */
export const ManifestKnownMsg = z.object({ type: z.literal('manifest-known'), digest: hex64 })
/** What the target takes between open and the manifest. */
export const ManifestOrHeartbeatMsg = z.discriminatedUnion('type', [ManifestMsg, ManifestKnownMsg, SourceHeartbeatMsg])
/** What the target takes after `manifest`, until `manifest-end`. */
export const ManifestPartMsg = z.discriminatedUnion('type', [EntriesMsg, ManifestEndMsg, SourceHeartbeatMsg])
export const SourceMsg = z.discriminatedUnion('type', [OpenMsg, ManifestMsg, ManifestKnownMsg, EntriesMsg, ManifestEndMsg, PlanMsg, HashMsg, HashesMsg, SwitchMsg, SourceHeartbeatMsg])

// target → source
export const Counts = z.object({ created: uint, deleted: uint, updated: uint })
export const NeedsMsg = z.object({
  type: z.literal('needs'),
  files: z.array(uint).max(1_000_000),
  bytes: uint,
  /** [file index, offset]: continue these files at the offset (the target kept a part) */
  resume: z.array(z.tuple([uint, uint])).max(1_000_000).optional(),
  /** [file index, local SHA-256]: asked for because the source's hash is deferred, but this content may be the same */
  have: z.array(z.tuple([uint, hex64])).max(1_000_000).optional(),
  changes: Counts
})
/**
 * The target's first message, right after `open`: the digest of the manifest whose tree
 * the last session left in the destination (null: none known, or --atomic). With a digest,
 * `tree-check` follows once the destination is scanned.
 */
export const TreeMsg = z.object({ type: z.literal('tree'), digest: z.string().regex(/^[0-9a-f]{64}$/).nullable() })
/** After `tree`, once the destination is scanned: `same` = it is still that tree (the source may answer `manifest-known`). */
export const TreeCheckMsg = z.object({ type: z.literal('tree-check'), same: z.boolean() })
export const ReadyMsg = z.object({ type: z.literal('ready') })
export const HeartbeatMsg = z.object({ type: z.literal('heartbeat'), files: uint, bytes: uint })
/** `slow`: the child was cut off as a laggard (it held the tree back; relay/laggard.ts), not lost */
export const ChildFailedMsg = z.object({ type: z.literal('child-failed'), peer: peerId, error: z.string().max(4096), slow: z.boolean().optional() })
/** --atomic: every needed file is received and verified in the stage; nothing switched yet */
export const StagedMsg = z.object({ type: z.literal('staged'), ok: z.boolean(), error: z.string().max(65536).optional(), files: uint, bytes: uint })
/** The target's signature over its final state (see src/sync/receipt.ts) */
export const WireReceipt = z.object({ digest: z.string().regex(/^[0-9a-f]{64}$/), signature: z.string().max(1024) })
export const ResultMsg = z.object({
  type: z.literal('result'),
  status: z.enum(['ok', 'unchanged', 'failed']),
  error: z.string().max(65536).optional(),
  files: uint,
  bytes: uint,
  changes: Counts,
  /** file data taken from the relay this session, finished files or not */
  received: uint.optional(),
  /** bytes of kept parts this session continued instead of asking again */
  resumed: uint.optional(),
  receipt: WireReceipt.optional()
})
export const ErrorMsg = z.object({ type: z.literal('error'), code: z.string().max(64), message: z.string().max(65536) })
export const TargetMsg = z.discriminatedUnion('type', [TreeMsg, TreeCheckMsg, NeedsMsg, ReadyMsg, HeartbeatMsg, ChildFailedMsg, StagedMsg, ResultMsg, ErrorMsg])
export type TargetMsg = z.infer<typeof TargetMsg>
export type Counts = z.infer<typeof Counts>

export function fromEntry (e: Entry): WireEntry {
  const w: WireEntry = { path: e.path, type: e.type, mode: e.mode, mtime: e.mtime, nsec: e.mtimeNsec }
  if (e.type === 'file') { w.size = e.size; w.hash = e.hash }
  if (e.type === 'symlink') w.target = e.target
  if (e.uid != null) w.uid = e.uid
  if (e.gid != null) w.gid = e.gid
  return w
}

export function toEntry (w: WireEntry): Entry {
  return { path: w.path, type: w.type, mode: w.mode, mtime: w.mtime, mtimeNsec: w.nsec, size: w.type === 'file' ? (w.size ?? -1) : 0, hash: w.hash, target: w.target, uid: w.uid, gid: w.gid }
}

export function fromRoot (r: RootMeta): z.infer<typeof WireRoot> {
  return { mode: r.mode, mtime: r.mtime, nsec: r.mtimeNsec, uid: r.uid, gid: r.gid }
}
export function toRoot (w: z.infer<typeof WireRoot>): RootMeta {
  return { mode: w.mode, mtime: w.mtime, mtimeNsec: w.nsec, uid: w.uid, gid: w.gid }
}
