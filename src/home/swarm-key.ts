import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKey } from '@libp2p/pnet'

/**
 * An optional private-network key (libp2p pnet, the same file format as IPFS's swarm.key):
 * when <home>/swarm.key exists, this node only talks to nodes holding the same key —
 * others cannot even complete a connection. Copy the file to every host of the swarm.
 */
export const SWARM_KEY_FILE = 'swarm.key'
/** "/key/swarm/psk/1.0.0/\n/base16/\n" + 64 hex digits */
const KEY_FILE_BYTES = 95

export async function loadSwarmKey (home: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(join(home, SWARM_KEY_FILE)))
  } catch (err: any) {
    if (err.code === 'ENOENT') return undefined
    throw new Error(`cannot read ${join(home, SWARM_KEY_FILE)}: ${err.message}`)
  }
}

/** Create a new key unless one exists; returns its path and whether it was created. */
export async function createSwarmKey (home: string): Promise<{ path: string, created: boolean }> {
  const path = join(home, SWARM_KEY_FILE)
  const key = new Uint8Array(KEY_FILE_BYTES)
  generateKey(key)
  try {
    await writeFile(path, key, { mode: 0o600, flag: 'wx' })
    return { path, created: true }
  } catch (err: any) {
    if (err.code === 'EEXIST') return { path, created: false }
    throw err
  }
}
