import { UsageError } from './exit-codes.js'

/**
 * The original gosync spelled options Go-style: `-t="a,b" -src="/x" -dst="/y" -d=true
 * -z=true`. Translate those into our long options before parsing (a plain parser would
 * read `-src` as `-s -r -c`). Pure, so it is unit-tested.
 */
const VALUE_FLAGS: Record<string, string> = { t: '--targets', src: '--src', dst: '--dst', from: '--from', home: '--home' }
const BOOL_FLAGS: Record<string, string> = { d: '--delete', z: '--compress', n: '--dry-run' }

export function translateSeedArgs (argv: readonly string[]): string[] {
  const out: string[] = []
  for (const arg of argv) {
    const m = /^-([a-z]+)=(.*)$/s.exec(arg)
    if (m == null) { out.push(arg); continue }
    const [, name, value] = m
    if (Object.hasOwn(VALUE_FLAGS, name)) { out.push(`${VALUE_FLAGS[name]}=${value}`); continue }
    if (Object.hasOwn(BOOL_FLAGS, name) || name === 'o') {
      const v = value.toLowerCase()
      if (v !== 'true' && v !== 'false') throw new UsageError(`-${name} takes true or false, got ${JSON.stringify(value)}`)
      if (name === 'o') {
        // the seed's "overwrite" (default true): we always replace changed files atomically
        if (v === 'false') throw new UsageError('-o=false (never overwrite) is not supported')
        continue
      }
      if (v === 'true') out.push(BOOL_FLAGS[name])
      continue
    }
    out.push(arg)
  }
  return out
}
