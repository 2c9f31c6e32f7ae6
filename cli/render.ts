import type { SyncEvent, SyncReport, TargetReport } from '../src/sync/report.js'

export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}

function targetLine (t: TargetReport): string {
  const who = t.address != null && t.address !== t.peer ? `${t.peer} (${t.address})` : t.peer
  const moved = `${t.files} files, ${formatBytes(t.bytes)}`
  const changes = `+${t.created} ~${t.updated} -${t.deleted}`
  switch (t.status) {
    case 'ok': return `ok         ${who}: ${moved}, ${changes}${t.laggard === true ? ' (held the others back: finished in a round of its own)' : ''}`
    case 'unchanged': return `unchanged  ${who}${t.treeKnown === true ? ' (tree known: no manifest sent)' : ''}`
    case 'failed': return `FAILED     ${who}: ${t.error ?? 'unknown error'}`
  }
}

/** A receipt line: what the target signed, and whether the signature checked out. */
function receiptLine (t: TargetReport): string {
  if (t.receipt == null) return '           no receipt'
  const sig = t.receipt.signature.slice(0, 16)
  return `           receipt: tree ${t.receipt.digest.slice(0, 16)}… signed ${sig}… ${t.receipt.verified ? '(signature verified)' : '(BAD SIGNATURE)'}`
}

export function renderReport (r: SyncReport): string {
  const lines = r.targets.flatMap(t => r.atomic === true && t.status !== 'failed' ? [targetLine(t), receiptLine(t)] : [targetLine(t)])
  if (r.atomic === true) {
    const bad = r.targets.filter(t => t.status === 'failed').length
    if (r.switched !== true) lines.push('atomic: NOT switched; every target keeps its previous tree (staged files are kept for the next --atomic run)')
    else if (bad === 0) lines.push(`atomic: all ${r.targets.length} targets switched to tree ${r.digest?.slice(0, 16) ?? '?'}…`)
    else lines.push(`atomic: every target staged, but ${bad} failed while switching (see above)`)
  }
  const failed = r.targets.filter(t => t.status === 'failed').length
  const unchanged = r.targets.filter(t => t.status === 'unchanged').length
  const ok = r.targets.length - failed - unchanged
  if (r.unreadable != null) lines.push(`source: ${r.unreadable} entr${r.unreadable === 1 ? 'y' : 'ies'} could not be read (see the warnings): they were not sent, and nothing was deleted`)
  lines.push(`${r.dryRun ? 'dry run: ' : ''}${r.targets.length} targets: ${ok} ok, ${unchanged} unchanged, ${failed} failed; ${r.totals.files} files, ${formatBytes(r.totals.bytes)} received in ${r.totals.seconds.toFixed(1)} s`)
  return lines.join('\n') + '\n'
}

/** A one-line progress display on a terminal (stderr), redrawn in place. */
export class ProgressLine {
  private last = -Infinity
  private lastBytes = 0
  private lastTime = performance.now()
  constructor (private readonly out: NodeJS.WriteStream) {}

  onEvent (e: SyncEvent): void {
    if (e.type === 'progress' && e.bytesTotal > 0) {
      const now = performance.now()
      if (now - this.last < 200) return
      const rate = (e.bytesDone - this.lastBytes) / Math.max(0.001, (now - this.lastTime) / 1000)
      this.last = now
      this.lastBytes = e.bytesDone
      this.lastTime = now
      const pct = Math.min(100, (100 * e.bytesDone) / e.bytesTotal)
      this.out.write(`\r\x1b[K${pct.toFixed(0)}%  ${formatBytes(e.bytesDone)} / ${formatBytes(e.bytesTotal)}  ${formatBytes(rate)}/s`)
    } else if (e.type === 'warning') {
      this.clear()
      this.out.write(`warning: ${e.message}\n`)
    }
  }

  clear (): void { if (this.last > 0) this.out.write('\r\x1b[K') }
}
