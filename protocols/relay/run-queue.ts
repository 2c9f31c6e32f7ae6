import { openSync, readSync } from 'node:fs'

/**
 * How long this thread has waited, runnable, for a CPU: the second field of
 * /proc/thread-self/schedstat (ns, Linux), in ms; undefined where there is no such file.
 *
 * A node reports it with each credit (PROTOCOLS §5.4) so that its parent does not blame it for
 * time it could not run: on one machine running every daemon of a lab, or on any overloaded
 * host, a busy node waits for a core 3–4 times as long as it runs, and that is not its link.
 * Read with pread on a kept descriptor (~2 µs); called from the main thread, which credits.
 */
export function runQueueMs (): number | undefined {
  if (fd === null) return undefined
  try {
    fd ??= openSync('/proc/thread-self/schedstat', 'r')
    const n = readSync(fd, buf, 0, buf.length, 0)
    const waitedNs = Number(buf.toString('latin1', 0, n).split(' ')[1])
    if (!Number.isFinite(waitedNs) || waitedNs < 0) throw new Error('unexpected schedstat')
    return Math.round(waitedNs / 1e6)
  } catch {
    fd = null // not Linux, or no scheduler statistics: never tried again
    return undefined
  }
}

let fd: number | null | undefined
const buf = Buffer.alloc(128)
