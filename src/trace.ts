import { appendFileSync } from 'node:fs'

/**
 * Opt-in phase timing for performance work: GOSYNC_TRACE=1 prints one stderr line per
 * phase with a wall-clock timestamp (ms, so lines of different daemons can be merged);
 * GOSYNC_TRACE=/some/file appends the lines to that file instead (daemons whose stderr
 * a harness keeps, e.g. the benchmark's).
 */
const setting = process.env.GOSYNC_TRACE ?? ''
const enabled = setting !== '' && setting !== '0'
const file = setting.includes('/') ? setting : undefined

export function trace (what: string): void {
  if (!enabled) return
  const ms = (performance.timeOrigin + performance.now()) % 1e6
  const line = `[trace ${ms.toFixed(1)} ${process.pid}] ${what}\n`
  try {
    if (file != null) appendFileSync(file, line)
    else process.stderr.write(line)
  } catch {} // tracing never fails the work it watches
}
