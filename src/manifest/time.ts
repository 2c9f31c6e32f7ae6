/**
 * Modification times as (whole seconds, nanoseconds 0..999_999_999), floor-divided so
 * times before 1970 keep a non-negative nanosecond part.
 */
export interface SplitTime { mtime: number, mtimeNsec: number }

export function splitNs (ns: bigint): SplitTime {
  let sec = ns / 1_000_000_000n
  let nsec = ns % 1_000_000_000n
  if (nsec < 0n) { nsec += 1_000_000_000n; sec -= 1n }
  return { mtime: Number(sec), mtimeNsec: Number(nsec) }
}

/**
 * The value to hand to fs.utimes/lutimes. Node replaces negative numbers with "now", so
 * times before 1970 go as a Date (millisecond precision); later ones as seconds
 * (microsecond precision in libuv).
 */
export function utimesValue (t: SplitTime): number | Date {
  const s = t.mtime + t.mtimeNsec / 1e9
  return s >= 0 ? s : new Date(t.mtime * 1000 + Math.floor(t.mtimeNsec / 1e6))
}
