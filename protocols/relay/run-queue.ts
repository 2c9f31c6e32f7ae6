import { openSync, readSync } from 'node:fs'

/**
 * How long this thread has waited, runnable, for a CPU (`queued`: the second field of
 * /proc/thread-self/schedstat, ns, Linux) and how long it ran on one (`ran`: the first), in ms;
 * undefined where there is no such file.
 *
 * A node reports it with each credit (PROTOCOLS §5.4) so that its parent does not blame it for
 * time it could not run: on one machine running every daemon of a lab, or on any overloaded
 * host, a busy node waits for a core 3–4 times as long as it runs, and that is not its link.
 * `ran` lets the source excuse a child's own CPU work (src/sync/source-judge.ts). Read with
 * pread on a kept descriptor (~2 µs); called from the main thread, which credits.
 */
export function cpuClocks (): { ran: number, queued: number } | undefined {
  if (fd === null) return undefined
  try {
    fd ??= openSync('/proc/thread-self/schedstat', 'r')
    const n = readSync(fd, buf, 0, buf.length, 0)
    const fields = buf.toString('latin1', 0, n).split(' ')
    const ranNs = Number(fields[0])
    const waitedNs = Number(fields[1])
    if (!Number.isFinite(ranNs) || ranNs < 0 || !Number.isFinite(waitedNs) || waitedNs < 0) throw new Error('unexpected schedstat')
    return { ran: Math.round(ranNs / 1e6), queued: Math.round(waitedNs / 1e6) }
  } catch {
    fd = null // not Linux, or no scheduler statistics: never tried again
    return undefined
  }
}

let fd: number | null | undefined
const buf = Buffer.alloc(128)
