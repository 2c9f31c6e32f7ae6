/**
 * Opt-in phase timing for performance work: GOSYNC_TRACE=1 prints one stderr line per
 * phase with a wall-clock timestamp (ms, so lines of different daemons can be merged).
 */
const enabled = (process.env.GOSYNC_TRACE ?? '') !== '' && process.env.GOSYNC_TRACE !== '0'

export function trace (what: string): void {
  if (!enabled) return
  const ms = (performance.timeOrigin + performance.now()) % 1e6
  process.stderr.write(`[trace ${ms.toFixed(1)} ${process.pid}] ${what}\n`)
}
