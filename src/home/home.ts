import { mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

/** --home, else $GOSYNC_HOME, else ~/.gosync */
export function resolveHome (home?: string): string {
  return home ?? process.env.GOSYNC_HOME ?? join(homedir(), '.gosync')
}

/** The home holds a private key: only its owner may enter it. */
export async function ensureHome (home: string): Promise<void> {
  await mkdir(home, { recursive: true, mode: 0o700 })
}
